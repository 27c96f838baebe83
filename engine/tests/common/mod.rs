//! Helpers shared by the end-to-end tests.

use std::time::{Duration, Instant};

use dirigo_engine::{Node, NodeStats, SinkEvent, SinkReceiver};

/// Poll the node's stats until `ok` holds (at most 20 s; panics naming
/// `what` on timeout). `DBG=1` prints each poll.
pub(crate) fn wait_for(
    node: &Node,
    what: &str,
    mut ok: impl FnMut(&NodeStats) -> bool,
) -> NodeStats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = node.stats().expect("stats");
        if ok(&s) {
            return s;
        }
        if std::env::var("DBG").is_ok() {
            eprintln!(
                "apps (runs, leases, lessees): {:?}; shards (lessors, lessees, runs): {:?}",
                s.apps
                    .values()
                    .map(|a| (a.runs, a.leases_granted, a.lessees))
                    .collect::<Vec<_>>(),
                s.shards
                    .iter()
                    .map(|s| (s.lessors, s.lessees, s.runs))
                    .collect::<Vec<_>>()
            );
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The data values a sink received so far.
pub(crate) fn values<T>(rx: &SinkReceiver<T>) -> Vec<T> {
    rx.drain()
        .into_iter()
        .filter_map(|e| match e {
            SinkEvent::Data { value, .. } => Some(value),
            _ => None,
        })
        .collect()
}
