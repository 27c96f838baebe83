//! Bytes of memory per queued message: one shard, an app whose sink nobody
//! reads and whose queue holds one output, so every event after the first
//! waits in the sink's mailbox; the app's message limit is raised to hold
//! them all. The resident memory grown while `n` events queue, over `n`:
//! sent one per `send` (a message each) and in client batches of 4096 (batch
//! messages of `BATCH_EVENTS`).

use std::time::{Duration, Instant};

use dirigo_engine::{AppBuilder, Node, NodeConfig, Placement, SinkPolicy};

use crate::Error;

/// Resident memory of this process, bytes.
fn rss() -> Result<u64, Error> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(kb * 1024)
}

/// Bytes per event queued, `n` events sent in client batches of `batch`.
pub(crate) fn bytes_per_event(n: u64, batch: u64) -> Result<f64, Error> {
    let node = Node::start(NodeConfig {
        shards: 1,
        placement: Placement::Unpinned,
        max_in_flight: 2 * n as usize,
        max_backlog: 2 * n as usize,
        ..Default::default()
    })?;
    let mut b = AppBuilder::new("pipeline-queued");
    let src = b.source::<u64>("events");
    let _unread = b.sink_with("out", src, SinkPolicy::Block { capacity: 1 });
    let app = node.deploy(b.build()?)?;
    let src = app.source::<u64>("events")?;
    let before = rss()?;
    for lo in (0..n).step_by(batch as usize) {
        let events = (lo..(lo + batch).min(n)).map(|i| (i, i)).collect();
        src.send_batch(events, Duration::from_secs(10))
            .map_err(|r| r.error)?;
    }
    // Every event but those the sink took is queued once the shard took
    // every command.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let queued: u64 = node.stats()?.shards.iter().map(|s| s.backlog as u64).sum();
        if queued + BATCH_SLACK >= n {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {queued} of {n} events queued").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let grown = rss()?.saturating_sub(before);
    node.shutdown();
    Ok(grown as f64 / n as f64)
}

/// The sink may have taken one batch message before it was held.
const BATCH_SLACK: u64 = dirigo_engine::limits::BATCH_EVENTS as u64;
