//! A colocated app (`AppBuilder::colocated`) has every actor on one shard:
//! its messages never cross shards until it leases, and it computes what a
//! spread app computes.

mod common;

use std::time::Duration;

use common::values;
use dirigo_engine::{
    AppBuilder, AutoScale, Context, Function, Merged, Node, NodeConfig, Placement,
};

struct AddOne;
impl Function for AddOne {
    type In = u64;
    type Out = u64;
    type State = Merged<()>;
    fn on_message(&self, _: &mut Merged<()>, key: u64, v: u64, ctx: &mut Context<'_, u64>) {
        ctx.emit(key, v + 1);
    }
}

/// Runs a 4-actor chain (3 operators and a sink) on 4 shards; returns the
/// outputs and the shards that activated an actor of it.
fn run(name: &str, colocated: bool) -> (Vec<u64>, Vec<usize>) {
    let node = Node::start(NodeConfig {
        shards: 4,
        placement: Placement::Unpinned,
        autoscale: AutoScale {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("node starts");
    let mut b = AppBuilder::new(name);
    if colocated {
        b = b.colocated();
    }
    let src = b.source::<u64>("in");
    let a = b.operator("a", AddOne, &[src]);
    let c = b.operator("b", AddOne, &[a]);
    let d = b.operator("c", AddOne, &[c]);
    let out = b.sink("out", d);
    let app = node.deploy(b.build().expect("valid")).expect("deploys");
    let src = app.source::<u64>("in").expect("source");
    src.send_batch((0..1000).map(|i| (i, i)).collect(), Duration::from_secs(5))
        .expect("accepted");
    for i in 1000..1010 {
        src.send(i, i).expect("accepted");
    }
    app.quiesce(Duration::from_secs(20)).expect("quiesces");
    let stats = node.stats().expect("stats");
    let shards = stats
        .shards
        .iter()
        .filter(|s| s.lessors > 0)
        .map(|s| s.shard)
        .collect();
    let mut got = values(&out);
    got.sort_unstable();
    node.shutdown();
    (got, shards)
}

#[test]
fn a_colocated_chain_runs_on_one_shard_with_the_outputs_of_a_spread_one() {
    let want: Vec<u64> = (3..1013).collect();
    let (spread, spread_on) = run("chain-x", false);
    assert_eq!(spread, want);
    assert!(spread_on.len() > 1, "spread over shards {spread_on:?}");
    let (together, together_on) = run("chain-x", true);
    assert_eq!(together, want);
    assert_eq!(
        together_on.len(),
        1,
        "one shard holds every actor: {together_on:?}"
    );
}
