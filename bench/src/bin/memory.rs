//! `memory`: what a client that never slows down can make the engine hold
//! (issue 11 items 1 and 2), as RSS growth and messages queued.
//!
//! The trigger: a client retries refused batches at once, in front of a
//! slow operator (20 µs an event), for `--secs`. Each scenario runs in its
//! own child process (this binary, re-run with `--only`), so one
//! scenario's freed memory cannot hide the next one's growth:
//!
//! - `cross-limit` / `cross-nolimit`: the source homed on one shard, the
//!   slow operator on the other, with the app's message limit
//!   (`max_in_flight` 1024) and without it (2^40: what the engine did
//!   before the limit, when only the source shard's own backlog pushed
//!   back);
//! - `same-limit` / `same-nolimit`: both on one shard;
//! - `sink-block` / `sink-huge`: a fast app whose sink nobody reads, with
//!   the default blocking sink (65,536 events) and with one of 2^24 (the
//!   largest allowed: as if unbounded over the run).
//!
//! Rerun: `cargo run --release -p dirigo-bench --bin memory` (2 shards,
//! unpinned; 3 s per scenario). It prints one row per scenario: the most
//! messages queued over the shards in a stats snapshot (plus, for the sink
//! scenarios, the events waiting in the unread sink), the growth of the
//! process's resident memory over the run, events accepted and refusals.

/// The allocator of the binaries (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dirigo_engine::{
    home_shard, AppBuilder, Context, Function, Keyed, Node, NodeConfig, Placement, SinkPolicy,
};

#[derive(Parser, Debug)]
#[command(about = "Memory a client that never slows down makes the engine hold")]
struct Cli {
    /// Seconds per scenario.
    #[arg(long, default_value_t = 3)]
    secs: u64,
    /// Run only this scenario, in this process (how the parent runs each).
    #[arg(long)]
    only: Option<String>,
}

const SCENARIOS: [&str; 6] = [
    "cross-limit",
    "cross-nolimit",
    "same-limit",
    "same-nolimit",
    "sink-block",
    "sink-huge",
];

/// `work` of spinning per event, then the event goes on.
struct Work(Duration);
impl Function for Work {
    type In = u64;
    type Out = u64;
    type State = Keyed<u64>;
    fn on_message(&self, st: &mut Keyed<u64>, key: u64, v: u64, ctx: &mut Context<'_, u64>) {
        let until = Instant::now() + self.0;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        *st.entry(key) += 1;
        ctx.emit(key, v);
    }
}

/// Resident memory of this process, bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// An app name whose source (node 0) and operator (node 1) are homed on
/// different shards (`cross`) or on the same one.
fn name(cross: bool) -> String {
    (0..)
        .map(|i| format!("mem-{i}"))
        .find(|n| (home_shard(n, 0, 2) != home_shard(n, 1, 2)) == cross)
        .expect("some name has each layout")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    if let Some(s) = &cli.only {
        println!("{}", run(s, Duration::from_secs(cli.secs))?);
        return Ok(());
    }
    println!(
        "memory: {} s per scenario, 2 shards unpinned, a child process each",
        cli.secs
    );
    println!(
        "{:<14} {:>12} {:>10} {:>12} {:>10}",
        "scenario", "max queued", "RSS +MiB", "accepted", "refused"
    );
    let exe = std::env::current_exe()?;
    for s in SCENARIOS {
        let out = Command::new(&exe)
            .args(["--only", s, "--secs", &cli.secs.to_string()])
            .output()?;
        if !out.status.success() {
            return Err(format!("{s}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    println!("rerun: cargo run --release -p dirigo-bench --bin memory");
    Ok(())
}

/// One scenario, in this process: its table row.
fn run(scenario: &str, secs: Duration) -> Result<String, Box<dyn std::error::Error>> {
    let limited = !scenario.ends_with("nolimit");
    let sink = scenario.starts_with("sink");
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        max_in_flight: if limited { 1024 } else { 1 << 40 },
        max_batch: 64,
        ..NodeConfig::default()
    })?;
    let app_name = name(scenario.starts_with("cross") || sink);
    let mut b = AppBuilder::new(app_name.as_str());
    let src = b.source::<u64>("in");
    let work = if sink {
        Duration::ZERO
    } else {
        Duration::from_micros(20)
    };
    let op = b.operator("work", Work(work), &[src]);
    let capacity = if scenario == "sink-huge" {
        1 << 24
    } else {
        1 << 16
    };
    let rx = b.sink_with("out", op, SinkPolicy::Block { capacity });
    let h = node.deploy(b.build()?)?;
    let stop = Arc::new(AtomicBool::new(false));
    // Only the sink scenarios leave the sink unread (but held open).
    let mut unread = None;
    let reader = if sink {
        unread = Some(rx);
        None
    } else {
        let stop = stop.clone();
        Some(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = rx.recv_timeout(Duration::from_millis(5));
                let _ = rx.drain();
            }
        }))
    };
    let src = h.source::<u64>("in")?;
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut sent, mut refused, mut next) = (0u64, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<(u64, u64)> = (next..next + 64).map(|i| (i, i)).collect();
                match src.try_send_batch(batch) {
                    Ok(()) => {
                        sent += 64;
                        next += 64;
                    }
                    Err(_) => {
                        refused += 1;
                        std::thread::yield_now();
                    }
                }
            }
            (sent, refused)
        })
    };
    let before = rss();
    let (end, mut queued) = (Instant::now() + secs, 0usize);
    while Instant::now() < end {
        let s = node.stats()?;
        let at_sink = unread.as_ref().map_or(0, |rx| rx.len());
        queued = queued.max(s.shards.iter().map(|s| s.backlog).sum::<usize>() + at_sink);
        std::thread::sleep(Duration::from_millis(10));
    }
    let grew = rss().saturating_sub(before);
    stop.store(true, Ordering::Relaxed);
    let (sent, refused) = client.join().map_err(|_| "client panicked")?;
    if let Some(r) = reader {
        r.join().map_err(|_| "reader panicked")?;
    }
    node.shutdown();
    Ok(format!(
        "{scenario:<14} {queued:>12} {:>10.1} {sent:>12} {refused:>10}",
        grew as f64 / (1 << 20) as f64
    ))
}
