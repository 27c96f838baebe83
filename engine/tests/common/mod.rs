//! Helpers shared by the end-to-end tests (each test binary uses some of
//! them).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use dirigo_engine::{Node, NodeConfig, NodeStats, Placement, SinkEvent, SinkReceiver};

/// A node of `shards` unpinned shards whose leases come from the test
/// alone (autoscaling off, every lease taken), actors quick to go
/// dormant: what the tests that lease and revoke at random run on.
pub(crate) fn leasing_node(shards: usize) -> Node {
    Node::start(NodeConfig {
        shards,
        placement: Placement::Unpinned,
        idle_deactivate: Duration::from_millis(5),
        spin_before_park: Duration::from_micros(20),
        autoscale: dirigo_engine::AutoScale {
            enabled: false,
            accept_below: usize::MAX,
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("node starts")
}

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

/// Now and then lease `op` on a random shard (15%) or revoke its leases
/// (8%): the leases granted and revokes done.
pub(crate) fn churn(
    app: &dirigo_engine::AppHandle,
    op: &str,
    shards: usize,
    rng: &mut impl rand::Rng,
) -> (u32, usize) {
    match rng.gen_range(0..100) {
        0..=14 => {
            let got = app.lease(op, rng.gen_range(0..shards)).expect("lease call");
            (u32::from(got.is_some()), 0)
        }
        15..=22 => (0, app.revoke(op, None).unwrap_or(0)),
        _ => (0, 0),
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

/// Wait (at most 20 s) until at least `min` actors are spilled over the
/// node's shards; the stats then. The timeout names what each shard holds.
pub(crate) fn wait_spilled(node: &Node, min: usize) -> NodeStats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = node.stats().expect("stats");
        if s.shards.iter().map(|s| s.spilled).sum::<usize>() >= min {
            return s;
        }
        let brief: Vec<_> = s
            .shards
            .iter()
            .map(|s| (s.lessors, s.lessees, s.dormant, s.spilled, s.spill_errors))
            .collect();
        assert!(
            Instant::now() < deadline,
            "fewer than {min} spilled; (lessors, lessees, dormant, spilled, errors) per shard: \
             {brief:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
