//! Model 3: a barrier of an actor with two input edges, whose criticals
//! arrive in any order, each possibly ahead of data it counts.
//!
//! Source A feeds edge 0: #1, the critical of barrier 1 (counting 1 message),
//! #3 of epoch 1. Source B feeds edge 1 and stands for two upstream instances
//! whose messages the network reordered: its critical (counting 1) comes
//! before #2, the epoch-0 message it counts, then #4 of epoch 1. The lessor
//! leases to shard 1 meanwhile. Properties: the barrier completes only once
//! both criticals and both counted messages arrived, runs the two criticals
//! together in edge order, and sees exactly #1 and #2.

#![cfg(loom)]

use dirigo_engine::protocol::Strategy;
use dirigo_loom_tests::explore::{assert_covered, explore_covering};
use dirigo_loom_tests::mesh::{Event, Feed};
use dirigo_loom_tests::msg::{nth_key_in, Msg};
use dirigo_loom_tests::shard::Plan;
use dirigo_loom_tests::world::{Outcome, Scenario};

/// Preemption bound of these models: 2 (five threads: the model's main
/// thread, two shards, two sources).
const BOUND: usize = 2;

fn scenario(strategy: Strategy, b_announces: u64) -> Scenario {
    let (a, b) = (nth_key_in(0..32, 0), nth_key_in(0..32, 1));
    Scenario::new(strategy, 2)
        .shard(Plan::home([Feed::Lease(1)]))
        .shard(Plan::host())
        .source([
            Feed::Input(Msg::data(1, a, 0, 0)),
            Feed::Input(Msg::critical(0, 1, 1)),
            Feed::Input(Msg::data(3, a, 0, 1)),
        ])
        .source([
            Feed::Input(Msg::critical(1, 1, b_announces)),
            Feed::Input(Msg::data(2, b, 1, 0)),
            Feed::Input(Msg::data(4, b, 1, 1)),
        ])
}

fn facts(o: &Outcome) -> Vec<&'static str> {
    let mut f = Vec::new();
    let (c0, c1) = (
        o.first(|e| e.is_critical_of(0)),
        o.first(|e| e.is_critical_of(1)),
    );
    f.push(if c0 < c1 {
        "edge 0's critical arrived first"
    } else {
        "edge 1's critical arrived first"
    });
    if o.first(|e| e.is_input(2)) > c0.max(c1) {
        f.push("both criticals arrived before data they count");
    }
    if o.first(|e| e.is_input(3)) < o.first(Event::is_critical_run)
        && o.first(|e| e.is_input(4)) < o.first(Event::is_critical_run)
    {
        f.push("epoch-1 data of both edges arrived before the barrier ran");
    }
    if o.any(|e| e.ran_on(1)) {
        f.push("the lessee ran data");
    }
    f
}

const COVERAGE: &[&str] = &[
    "edge 0's critical arrived first",
    "edge 1's critical arrived first",
    "both criticals arrived before data they count",
    "epoch-1 data of both edges arrived before the barrier ran",
    "the lessee ran data",
];

#[test]
fn two_edge_barrier_mergeable() {
    let s = scenario(Strategy::Mergeable, 1);
    let seen = explore_covering("3 barrier/mergeable", Some(BOUND), move || facts(&s.run()));
    assert_covered(&seen, COVERAGE);
}

#[test]
fn two_edge_barrier_keyed() {
    let s = scenario(Strategy::Keyed, 1);
    let seen = explore_covering("3 barrier/keyed", Some(BOUND), move || facts(&s.run()));
    assert_covered(&seen, COVERAGE);
}

/// Broken upstream: edge 1 announces 2 messages but sends 1, so the barrier
/// can never align. The model's liveness check (invariant 4) catches it.
#[test]
#[should_panic(expected = "a barrier never completed")]
fn caught_overcounting_edge() {
    let s = scenario(Strategy::Mergeable, 2);
    explore_covering(
        "3 barrier/broken: edge over-counts",
        Some(BOUND),
        move || facts(&s.run()),
    );
}
