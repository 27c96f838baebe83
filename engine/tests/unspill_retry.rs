//! A transient error while waking a spilled actor does not kill its shard
//! (issue 11 item 8): with the process out of file descriptors, the actor
//! stays dormant, its messages wait, the stats name the error, and once
//! descriptors are back the actor wakes with its state and runs them all.
//!
//! Its own test binary: it lowers `RLIMIT_NOFILE` for the whole process.

mod common;
#[path = "common/counter.rs"]
mod counter;

use std::time::{Duration, Instant};

use common::wait_spilled;
use counter::{oracle, query, Step};
use dirigo_engine::{Node, NodeConfig, Placement};

/// Set the soft limit on open files; returns the old one.
fn set_nofile(soft: libc::rlim_t) -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let old = lim.rlim_cur;
    lim.rlim_cur = soft;
    // SAFETY: `lim` is a valid rlimit; lowering the soft limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    old
}

/// The lowest descriptor number free now (a new descriptor gets it, so a
/// soft limit of it lets none more open): the number `/dev/null` opens on.
fn lowest_free_fd() -> libc::rlim_t {
    use std::os::fd::AsRawFd;
    let probe = std::fs::File::open("/dev/null").expect("/dev/null");
    probe.as_raw_fd() as libc::rlim_t
}

#[test]
fn out_of_descriptors_a_spilled_actor_waits_and_then_wakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(NodeConfig {
        shards: 1,
        placement: Placement::Unpinned,
        data_dir: Some(dir.path().to_owned()),
        idle_deactivate: Duration::from_millis(20),
        ..NodeConfig::default()
    })
    .expect("node starts");
    let (app, rx) = counter::app("starved");
    let h = node.deploy(app).expect("deploys");
    let src = h.source::<counter::Ev>("events").expect("source");
    let send = |lo: u64, hi: u64| {
        src.send_batch(
            (lo..hi).map(counter::event).collect(),
            Duration::from_secs(10),
        )
        .map_err(|r| r.error)
        .expect("acknowledged");
    };
    send(0, 100);
    wait_spilled(&node, 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    // No descriptor left: the next events are logged (the log's files are
    // open), but their actors' spill files cannot be opened.
    let old = set_nofile(lowest_free_fd());
    send(100, 150);
    if std::env::var("DBG").is_ok() {
        let s = node.stats().expect("s");
        eprintln!(
            "after send: spilled {} unspills {} errs {} dormant {} lessors {}",
            s.shards[0].spilled,
            s.shards[0].unspills,
            s.shards[0].unspill_errors,
            s.shards[0].dormant,
            s.shards[0].lessors
        );
    }
    let mut waited = None;
    while Instant::now() < deadline {
        let s = node.stats();
        if let Ok(s) = &s {
            if s.shards[0].unspill_errors > 0 {
                waited = s.shards[0].last_unspill_error.clone();
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    set_nofile(old);
    let cause = waited.expect("the wake failed and the stats say why");
    assert!(cause.contains("cannot be read back"), "{cause}");
    // Descriptors are back: the actors wake, with their state, and run
    // what waited.
    assert_eq!(query(&h, &rx), oracle(&[Step::Events(0, 150)]));
    let s = node.stats().expect("stats");
    assert!(
        s.healthy(),
        "no shard died, no app failed: {:?}",
        s.shards[0].died
    );
    node.shutdown();
}
