//! `dirigo node` as a child process under load: SIGTERM (a clean shutdown
//! that checkpoints) and SIGKILL (no warning) lose nothing acknowledged,
//! and a restart on the same data folder recovers the durable app: a
//! window closed after the restart counts exactly the acknowledged events,
//! plus the one batch in flight at the signal if its commit made it (a
//! batch is logged whole or not at all), never anything twice. A second
//! signal during a shutdown that cannot finish exits at once.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dirigo_net::apps::{Row, WindowRow};
use dirigo_net::{Client, Lag, Output, WireValue};

const KEYS: usize = 10;
const BATCH: usize = 50;

fn config(dir: &Path) -> std::path::PathBuf {
    config_with(dir, "", "")
}

/// The node's config, with `server` added to its `[server]` section and
/// `more` after its app.
fn config_with(dir: &Path, server: &str, more: &str) -> std::path::PathBuf {
    let text = format!(
        "[node]\nshards = 2\nplacement = \"unpinned\"\ndata_dir = {:?}\n\n[server]\nlisten = \"127.0.0.1:0\"\nhttp = false\n{server}\n\
         [[app]]\nkind = \"aggregate\"\nname = \"totals\"\nslo_ms = 50\ndurable = true\nparams = {{ fn = \"count\" }}\n{more}",
        dir.join("data")
    );
    let p = dir.join("node.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Start the node; its binary protocol's address.
fn start(cfg: &Path) -> (Child, SocketAddr) {
    common::start_node(cfg)
}

fn rows(batch: usize) -> Vec<Row> {
    (0..BATCH)
        .map(|i| Row {
            key: format!("k{}", (batch * BATCH + i) % KEYS),
            value: 1.0,
        })
        .collect()
}

/// Send batches until `signal` is sent to the node after `after`; the
/// counts acknowledged per key, and those of the batch in flight.
fn load_then_signal(
    child: &mut Child,
    addr: SocketAddr,
    signal: i32,
    after: Duration,
) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut c = Client::connect(addr, "").unwrap();
    let (mut acked, start) = (BTreeMap::new(), Instant::now());
    let mut signalled = false;
    for b in 0.. {
        if !signalled && start.elapsed() >= after {
            // SAFETY: kill(2) takes no pointers; the pid is our own child's,
            // not yet waited for, so it names no other process.
            assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
            signalled = true;
        }
        let batch = rows(b);
        let mut in_flight = BTreeMap::new();
        for r in &batch {
            *in_flight.entry(r.key.clone()).or_insert(0) += 1;
        }
        match c.ingest("totals", "events", &batch) {
            Ok(n) => {
                assert_eq!(n as usize, BATCH);
                for (k, n) in in_flight {
                    *acked.entry(k).or_insert(0) += n;
                }
            }
            Err(_) => return (acked, in_flight),
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the node never stopped"
        );
    }
    unreachable!()
}

/// After a restart: the counts of window 1.
fn counts_after_restart(cfg: &Path) -> (Child, BTreeMap<String, u64>) {
    let (child, addr) = start(cfg);
    let mut c = Client::connect(addr, "").unwrap();
    let sub = c.subscribe("totals", "out", Lag::Disconnect).unwrap();
    c.barrier("totals", 1).unwrap();
    let mut got = BTreeMap::new();
    loop {
        let (id, o) = c
            .next_output(Duration::from_secs(20))
            .unwrap()
            .expect("outputs after restart");
        assert_eq!(id, sub);
        match o {
            Output::Data { value, .. } => {
                let (w, k, n) = WindowRow::from_binary(&value).unwrap();
                assert_eq!(w, 1);
                assert!(got.insert(k, n as u64).is_none(), "one row per key");
            }
            Output::Barrier { window: 1 } => return (child, got),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn check(signal: i32) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (mut child, addr) = start(&cfg);
    let (acked, in_flight) = load_then_signal(&mut child, addr, signal, Duration::from_millis(700));
    let status = child.wait().unwrap();
    if signal == libc::SIGTERM {
        assert!(status.success(), "a clean shutdown exits 0: {status:?}");
    }
    assert!(
        acked.values().sum::<u64>() > 0,
        "some load was acknowledged"
    );
    let (mut child, got) = counts_after_restart(&cfg);
    let mut with_last = acked.clone();
    for (k, n) in &in_flight {
        *with_last.entry(k.clone()).or_insert(0) += n;
    }
    assert!(
        got == acked || got == with_last,
        "acked {acked:?}\nin flight {in_flight:?}\ngot {got:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_under_load_loses_nothing_acknowledged() {
    check(libc::SIGTERM);
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged() {
    check(libc::SIGKILL);
}

/// A client that sends without ever reading holds its connection open
/// (the node's answers fill its socket, then the node stops reading it),
/// so the clean shutdown waits out its drain timeout; a second signal then
/// exits at once, with 130.
#[test]
fn a_second_signal_during_a_stuck_shutdown_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fast = "[[app]]\nkind = \"aggregate\"\nname = \"fast\"\nparams = { fn = \"count\" }\n";
    let cfg = config_with(dir.path(), "drain_timeout_ms = 120000", fast);
    let (mut child, addr) = start(&cfg);
    let mut c = Client::connect(addr, "").expect("connects");
    let one = vec![Row {
        key: "k".into(),
        value: 1.0,
    }];
    let req = Client::ingest_request("fast", "events", &one).unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        while c.send(&req).is_ok() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    // Until the node stops reading the client: no send goes through for
    // half a second.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (0, Instant::now());
    while last.1.elapsed() < Duration::from_millis(500) {
        assert!(Instant::now() < deadline, "the client's socket never fills");
        std::thread::sleep(Duration::from_millis(50));
        let n = sent.load(Ordering::Relaxed);
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    let pid = child.id() as i32;
    // SAFETY: `kill` with a child's pid and a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first shutdown waits for the stuck connection"
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the second signal ends the node");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
}
