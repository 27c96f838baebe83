//! Virtual actors and the policies' backlog scale rule, end to end: an idle
//! actor is deactivated and comes back with its state on the next message; a
//! backlog makes the lessor lease a lessee, which is released once idle.

mod common;

use std::time::{Duration, Instant};

use common::{values, wait_for};
use dirigo_engine::{
    AppBuilder, AutoScale, Context, Function, Keyed, Merged, Node, NodeConfig, Placement,
};

/// Running sum per key: its output shows whether state survived.
struct RunningSum;
impl Function for RunningSum {
    type In = u64;
    type Out = u64;
    type State = Keyed<u64>;
    fn on_message(&self, st: &mut Keyed<u64>, key: u64, v: u64, ctx: &mut Context<'_, u64>) {
        let s = st.entry(key);
        *s += v;
        ctx.emit(key, *s);
    }
}

/// Slow and parallel: a candidate for lessees.
struct Slow;
impl Function for Slow {
    type In = u64;
    type Out = u64;
    type State = Merged<u64>;
    fn on_message(&self, st: &mut Merged<u64>, key: u64, v: u64, ctx: &mut Context<'_, u64>) {
        let until = Instant::now() + Duration::from_micros(100);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        st.0 += 1;
        ctx.emit(key, v);
    }
}

#[test]
fn idle_actor_deactivates_and_reactivates_with_its_state() {
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        idle_deactivate: Duration::from_millis(20),
        ..Default::default()
    })
    .expect("node starts");
    let mut b = AppBuilder::new("sums");
    let src = b.source::<u64>("in");
    let sum = b.operator("sum", RunningSum, &[src]);
    let rx = b.sink("out", sum);
    let app = node.deploy(b.build().expect("valid")).expect("deploys");
    let src = app.source::<u64>("in").expect("source");

    src.send_batch((0..10).map(|_| (7, 1)).collect(), Duration::from_secs(5))
        .expect("accepted");
    app.quiesce(Duration::from_secs(10)).expect("quiesces");
    let active = node.stats().expect("stats");
    assert!(
        active.shards.iter().map(|s| s.lessors).sum::<usize>() >= 2,
        "sum and sink active"
    );

    wait_for(&node, "deactivation", |s| {
        s.shards.iter().map(|s| s.lessors).sum::<usize>() == 0
            && s.shards.iter().map(|s| s.dormant).sum::<usize>() >= 2
    });

    src.send(7, 5).expect("accepted");
    app.quiesce(Duration::from_secs(10)).expect("quiesces");
    let sums: Vec<u64> = values(&rx);
    assert_eq!(
        sums,
        (1..=10).chain([15]).collect::<Vec<_>>(),
        "state survived deactivation"
    );
    node.shutdown();
}

#[test]
fn a_backlog_leases_a_lessee_and_idleness_releases_it() {
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        autoscale: AutoScale {
            enabled: true,
            up_backlog: 32,
            max_lessees: 1,
            accept_below: 1 << 20,
            lessee_idle: Duration::from_millis(30),
        },
        ..Default::default()
    })
    .expect("node starts");
    let mut b = AppBuilder::new("burst");
    let src = b.source::<u64>("in");
    let slow = b.operator("slow", Slow, &[src]);
    let rx = b.sink("out", slow);
    let app = node.deploy(b.build().expect("valid")).expect("deploys");
    let src = app.source::<u64>("in").expect("source");

    const N: u64 = 4000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        src.send_batch(
            chunk.iter().map(|&i| (i, i)).collect(),
            Duration::from_secs(10),
        )
        .expect("accepted");
    }
    let during = wait_for(&node, "a lease", |s| {
        s.app("burst").is_some_and(|a| a.leases_granted > 0)
    });
    app.quiesce(Duration::from_secs(60)).expect("quiesces");
    let after = wait_for(&node, "the release", |s| {
        s.app("burst")
            .is_some_and(|a| a.lessees == 0 && a.revokes > 0)
    });
    let a = after.app("burst").expect("app stats");
    assert!(a.lessee_runs > 0, "the lessee ran part of the burst");
    assert!(
        during.app("burst").expect("app stats").leases_granted <= a.revokes,
        "every lessee granted during the burst went home"
    );

    let mut got: Vec<u64> = values(&rx);
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "every event exactly once");
    node.shutdown();
}
