//! Model 5: lease requests racing the deactivation of an idle actor.
//!
//! The home shard deactivates the actor (`Lessor::into_dormant`) whenever its
//! lessor is idle, and reactivates it (`Lessor::from_dormant`) when an input
//! or a client command arrives for it, as the engine's shard does. A client
//! thread sends data and lease requests for shard 1 at any time relative to
//! the grants, releases and deactivations; shard 1's lessees ask to leave
//! once they ran a message, so leases end and the actor goes idle again. Properties: an actor never deactivates with a lease in flight
//! (no protocol message ever reaches a dormant actor), a lease id is never
//! reused across activations, and the state survives deactivation (exactly
//! once, final state = sequential run).

#![cfg(loom)]

use dirigo_engine::protocol::Strategy;
use dirigo_loom_tests::explore::{assert_covered, explore_covering};
use dirigo_loom_tests::fault::Fault;
use dirigo_loom_tests::mesh::Feed;
use dirigo_loom_tests::msg::{nth_key_in, Msg};
use dirigo_loom_tests::shard::{Leave, Plan, HOME};
use dirigo_loom_tests::world::{Outcome, Scenario};

/// Preemption bound of these models: 2 (four threads: the model's main
/// thread, two shards, the client).
const BOUND: usize = 2;

fn scenario(strategy: Strategy) -> Scenario {
    // In the partitions a first lessee gets, so Keyed forwards too.
    let key = nth_key_in(0..32, 0);
    let home = Plan {
        deactivate_idle: true,
        ..Plan::default()
    };
    Scenario::new(strategy, 1)
        .shard(home)
        .shard(Plan::leaving_host(Leave::AfterRuns(1)))
        .source([
            Feed::Input(Msg::data(1, key, 0, 0)),
            Feed::Lease(1),
            Feed::Input(Msg::data(2, key, 0, 0)),
            Feed::Lease(1),
            Feed::Input(Msg::data(3, key, 0, 0)),
        ])
}

fn facts(o: &Outcome) -> Vec<&'static str> {
    let mut f = Vec::new();
    let deactivated = o.first(|e| e.is_did(HOME, "deactivated"));
    let asked = |n: usize| {
        o.trace
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_did(HOME, "asked for lease"))
            .nth(n)
            .map(|(i, _)| i)
    };
    if deactivated.is_some() && asked(0) > deactivated {
        f.push("a lease was requested of a deactivated actor");
    }
    if asked(1).is_some()
        && o.trace
            .iter()
            .enumerate()
            .any(|(i, e)| e.is_did(HOME, "deactivated") && asked(0) < Some(i) && Some(i) < asked(1))
    {
        f.push("a second lease after a deactivation between the two");
    }
    if asked(1).is_some() {
        f.push("two leases in one run");
    }
    if o.trace
        .iter()
        .filter(|e| e.is_did(HOME, "deactivated"))
        .count()
        >= 2
    {
        f.push("deactivated twice");
    }
    if o.any(|e| e.ran_on(1)) {
        f.push("a lessee ran data");
    }
    f
}

const COVERAGE: &[&str] = &[
    "a lease was requested of a deactivated actor",
    "a second lease after a deactivation between the two",
    "two leases in one run",
    "deactivated twice",
    "a lessee ran data",
];

#[test]
fn lease_requests_race_deactivation_mergeable() {
    let s = scenario(Strategy::Mergeable);
    let seen = explore_covering("5 dormant/mergeable", Some(BOUND), move || facts(&s.run()));
    assert_covered(&seen, COVERAGE);
}

#[test]
fn lease_requests_race_deactivation_keyed() {
    let s = scenario(Strategy::Keyed);
    let seen = explore_covering("5 dormant/keyed", Some(BOUND), move || facts(&s.run()));
    assert_covered(&seen, COVERAGE);
}

/// Broken driver: reactivation starts a fresh lessor, forgetting the state
/// (and lease counter) deactivation kept.
#[test]
#[should_panic(expected = "final state differs from a sequential run")]
fn caught_forgotten_dormant_state() {
    let s = scenario(Strategy::Mergeable).fault(Fault::ForgetDormant);
    explore_covering("5 dormant/broken: forget dormant", Some(BOUND), move || {
        facts(&s.run())
    });
}
