//! Faults that must stay contained (issue 11 items 8 and 14): an operator
//! that panics fails its own app, not the shard it runs on; a shard that
//! dies (an engine bug, injected here) is visible in the stats with its
//! cause, every app with a node on it fails with an error naming it, and a
//! barrier on such an app is refused at once instead of waiting forever
//! for the critical message the dead shard will never send.

mod common;

use std::time::{Duration, Instant};

use dirigo_engine::{
    home_shard, AppBuilder, BarrierKind, Context, EngineError, Function, Keyed, Node, NodeConfig,
    Placement, SinkReceiver,
};

use common::values;

/// Sums per key; panics on the value 13.
struct Fragile;
impl Function for Fragile {
    type In = u64;
    type Out = u64;
    type State = Keyed<u64>;
    fn on_message(&self, st: &mut Keyed<u64>, key: u64, v: u64, ctx: &mut Context<'_, u64>) {
        assert_ne!(v, 13, "thirteen is unlucky");
        *st.entry(key) += v;
        ctx.emit(key, *st.entry(key));
    }
}

fn node() -> Node {
    Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        ..Default::default()
    })
    .expect("node starts")
}

fn app(name: &str) -> (dirigo_engine::App, SinkReceiver<u64>) {
    let mut b = AppBuilder::new(name);
    let src = b.source::<u64>("in");
    let f = b.operator("fragile", Fragile, &[src]);
    let rx = b.sink("out", f);
    (b.build().expect("valid"), rx)
}

/// Wait until `ok` holds of the node's stats.
fn until(node: &Node, what: &str, ok: impl Fn(&dirigo_engine::NodeStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(&node.stats().expect("stats")) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_panicking_operator_fails_its_app_and_nothing_else() {
    let node = node();
    let (a, _rx) = app("fragile");
    let (b, b_rx) = app("sturdy");
    let ha = node.deploy(a).expect("deploys");
    let hb = node.deploy(b).expect("deploys");
    // Both apps' operators on the same shard: the panic happens where the
    // other app runs.
    let op_home = |n: &str| home_shard(n, 1, 2);
    assert_eq!(
        op_home("fragile"),
        op_home("sturdy"),
        "same shard (else rename)"
    );
    let sa = ha.source::<u64>("in").expect("source");
    sa.send(1, 13).expect("accepted");
    until(&node, "the app to fail", |s| {
        s.app("fragile").is_some_and(|a| a.failed.is_some())
    });
    let stats = node.stats().expect("the shard still answers");
    let cause = stats
        .app("fragile")
        .and_then(|a| a.failed.clone())
        .expect("failed");
    assert!(
        cause.contains("thirteen is unlucky") && cause.contains("fragile"),
        "{cause}"
    );
    assert!(!stats.healthy());
    assert!(stats.shards.iter().all(|s| s.died.is_none()));
    // The failed app refuses input, barriers and leases, naming why.
    let e = sa.send(1, 1).expect_err("refused");
    assert!(
        matches!(&e, EngineError::AppFailed { cause, .. } if cause.contains("unlucky")),
        "{e}"
    );
    let e = ha
        .inject_barrier(BarrierKind::Query, 0)
        .expect_err("refused");
    assert!(matches!(e, EngineError::AppFailed { .. }), "{e}");
    // The other app, on the same shard, goes on.
    let sb = hb.source::<u64>("in").expect("source");
    for v in [1, 2, 3] {
        sb.send(9, v).expect("accepted");
    }
    hb.quiesce(Duration::from_secs(10)).expect("quiesces");
    assert_eq!(values(&b_rx), vec![1, 3, 6]);
    // Undeploy clears the failed app away; the name can be used again.
    node.undeploy("fragile", Duration::from_millis(100))
        .expect("undeploys");
    let (a, rx) = app("fragile");
    let ha = node.deploy(a).expect("redeploys");
    ha.source::<u64>("in")
        .expect("source")
        .send(1, 5)
        .expect("accepted");
    ha.quiesce(Duration::from_secs(10)).expect("quiesces");
    assert_eq!(values(&rx), vec![5]);
    node.shutdown();
}

#[test]
fn a_dead_shard_is_visible_and_fails_its_apps_at_once() {
    let node = node();
    // An app with its source on one shard and its operator on the other.
    let name = (0..)
        .map(|i| format!("split-{i}"))
        .find(|n| home_shard(n, 0, 2) != home_shard(n, 1, 2))
        .expect("some name splits");
    let (a, _rx) = app(&name);
    let h = node.deploy(a).expect("deploys");
    let src = h.source::<u64>("in").expect("source");
    src.send(1, 1).expect("accepted");
    h.quiesce(Duration::from_secs(10)).expect("quiesces");
    let dead = home_shard(&name, 1, 2) as usize;
    node.inject_shard_panic(dead).expect("sent");
    until(&node, "the shard to die", |s| s.shards[dead].died.is_some());
    let stats = node.stats().expect("the live shard answers");
    assert!(stats.shards[dead]
        .died
        .as_deref()
        .is_some_and(|c| c.contains("injected")));
    assert!(stats.shards[1 - dead].died.is_none());
    assert!(!stats.healthy());
    // The source's shard is alive, but the app cannot complete anything.
    let e = src.send(1, 1).expect_err("refused");
    assert!(
        matches!(&e, EngineError::AppFailed { cause, .. } if cause.contains(&format!("shard {dead} died"))),
        "{e}"
    );
    // A barrier is refused at once: it would wait forever for the dead
    // shard's critical message.
    let t = Instant::now();
    let e = h
        .inject_barrier(BarrierKind::WindowClose, 1)
        .expect_err("refused");
    assert!(matches!(e, EngineError::AppFailed { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(1));
    // Asking the dead shard itself names it.
    let e = h
        .lease("fragile", 1 - dead)
        .map(|_| ())
        .and_then(|()| h.revoke("fragile", None).map(|_| ()));
    assert!(
        matches!(
            e,
            Err(EngineError::ShardDied { .. }) | Err(EngineError::AppFailed { .. })
        ),
        "{e:?}"
    );
    // Every app on the node has failed (it may have had lessees on the
    // dead shard); undeploy skips the dead shard and frees the name.
    assert!(matches!(
        h.quiesce(Duration::from_secs(5)),
        Err(EngineError::AppFailed { .. })
    ));
    assert!(!node
        .undeploy(&name, Duration::from_millis(50))
        .expect("undeploys"));
    assert!(matches!(node.app(&name), Err(EngineError::UnknownApp(_))));
    node.shutdown();
}

/// A deploy that one shard cannot take leaves the app on no shard (issue
/// 11 item 13): the shards that took it drop it again, and its name stays
/// free.
#[test]
fn a_deploy_that_fails_on_one_shard_is_removed_from_the_others() {
    let node = node();
    node.inject_shard_panic(1).expect("sent");
    until(&node, "the shard to die", |s| s.shards[1].died.is_some());
    let (a, _rx) = app("half");
    let e = node.deploy(a).map(|_| ()).expect_err("shard 1 is dead");
    assert!(matches!(e, EngineError::ShardDied { shard: 1, .. }), "{e}");
    let stats = node.stats().expect("shard 0 answers");
    assert!(stats.app("half").is_none(), "shard 0 kept the plan");
    assert!(matches!(node.app("half"), Err(EngineError::UnknownApp(_))));
    node.shutdown();
}

/// An output whose `Clone` panics on 13 (fan-out clones it).
#[derive(Debug)]
struct Touchy(u64);
impl Clone for Touchy {
    fn clone(&self) -> Self {
        assert_ne!(self.0, 13, "cannot copy thirteen");
        Touchy(self.0)
    }
}

/// Wraps its input in `Touchy`.
struct Wrap;
impl Function for Wrap {
    type In = u64;
    type Out = Touchy;
    type State = Keyed<u64>;
    fn on_message(&self, _: &mut Keyed<u64>, key: u64, v: u64, ctx: &mut Context<'_, Touchy>) {
        ctx.emit(key, Touchy(v));
    }
}

/// The `Clone` of an output, which fan-out calls, is user code too: its
/// panic fails the app, not the shard.
#[test]
fn a_panicking_clone_on_fan_out_fails_its_app_and_nothing_else() {
    let node = node();
    let mut b = AppBuilder::new("touchy");
    let src = b.source::<u64>("in");
    let w = b.operator("wrap", Wrap, &[src]);
    let _one = b.sink("one", w);
    let _two = b.sink("two", w);
    let h = node.deploy(b.build().expect("valid")).expect("deploys");
    let (other, other_rx) = app("sturdy");
    let o = node.deploy(other).expect("deploys");
    h.source::<u64>("in")
        .expect("source")
        .send(1, 13)
        .expect("accepted");
    until(&node, "the app to fail", |s| {
        s.app("touchy").is_some_and(|a| a.failed.is_some())
    });
    let stats = node.stats().expect("the shards still answer");
    let cause = stats
        .app("touchy")
        .and_then(|a| a.failed.clone())
        .expect("failed");
    assert!(
        cause.contains("cloning an output") && cause.contains("thirteen"),
        "{cause}"
    );
    assert!(stats.shards.iter().all(|s| s.died.is_none()));
    o.source::<u64>("in")
        .expect("source")
        .send(2, 4)
        .expect("accepted");
    o.quiesce(Duration::from_secs(10)).expect("quiesces");
    assert_eq!(values(&other_rx), vec![4]);
    node.shutdown();
}
