//! Model 2: a lessor and two lessees; consolidation while a revoke is in
//! flight, and a lessee removed in the middle of a consolidation.
//!
//! The home shard leases to shards 1 and 2 and takes its inputs and client
//! commands from its own script (one item per turn), so the model has three
//! shard threads and no source thread. Shard 1's lessee asks to go home as
//! soon as it ran a message: its `ReleaseRequest` races the barrier, so the
//! lessor either revokes it before the barrier aligns (its `Released` must
//! then count as its answer to the barrier) or while blocked (the revoke
//! waits for the resume). The client revokes shard 2's lease:
//! - `revoke_in_flight`: before the critical, so the `Revoke` (or the pending
//!   grant it waits for) is in flight when the barrier aligns;
//! - `revoke_while_blocked`: right after the critical that aligns the
//!   barrier, so it arrives mid-consolidation and is deferred to the resume.
//!
//! Properties: the critical sees exactly the epoch-0 data; nothing is lost or
//! run twice; the final state equals a sequential run; no lessee is left.

#![cfg(loom)]

use dirigo_engine::protocol::Strategy;
use dirigo_loom_tests::explore::{assert_covered, explore_covering};
use dirigo_loom_tests::fault::Fault;
use dirigo_loom_tests::mesh::{Event, Feed};
use dirigo_loom_tests::msg::{nth_key_in, Msg};
use dirigo_loom_tests::shard::{Leave, Plan};
use dirigo_loom_tests::world::{Outcome, Scenario};

/// Preemption bound of these models: 2 (four threads: the model's main
/// thread, three shards).
const BOUND: usize = 2;

/// Where the client's revoke of shard 2 goes in the home shard's script.
#[derive(Clone, Copy)]
enum Revoke {
    BeforeCritical,
    AfterCritical,
}

fn scenario(strategy: Strategy, revoke: Revoke) -> Scenario {
    // Keyed: the first lessee gets partitions 0..32, the second 32..48.
    let (k1, k2) = (nth_key_in(0..32, 0), nth_key_in(32..48, 0));
    let mut script = vec![
        Feed::Lease(1),
        Feed::Lease(2),
        Feed::Input(Msg::data(1, k1, 0, 0)),
        Feed::Input(Msg::data(2, k2, 0, 0)),
        Feed::Input(Msg::critical(0, 1, 2)),
    ];
    let at = match revoke {
        Revoke::BeforeCritical => 4,
        Revoke::AfterCritical => 5,
    };
    script.insert(at, Feed::Revoke(2));
    Scenario::new(strategy, 1)
        .shard(Plan::home(script))
        .shard(Plan::leaving_host(Leave::AfterRuns(1)))
        .shard(Plan::host())
}

fn facts(o: &Outcome) -> Vec<&'static str> {
    let mut f = Vec::new();
    let aligned = o.first(Event::is_critical_input);
    let ran = o.first(Event::is_critical_run);
    let asked_to_leave = o.first(|e| e.is_wire(0, "ReleaseRequest"));
    let revoke_1 = o.first(|e| e.is_wire(1, "Revoke"));
    let revoke_2 = o.first(Event::is_revoke_command);
    let revoked_2 = o.first(|e| e.is_wire(2, "Revoke"));
    let released = o.last(|e| e.is_wire(0, "Released"));
    if asked_to_leave.is_some() && asked_to_leave < aligned && revoke_1 > aligned {
        // Shard 1 only asks once it ran a message: its `Released` carries
        // state the critical must see.
        f.push("the barrier aligned with shard 1's revoke (and its data) in flight");
    }
    if asked_to_leave > aligned && ran > asked_to_leave {
        f.push("shard 1 asked to leave while the lessor was blocked");
    }
    if revoke_2 < aligned && released > aligned {
        f.push("the barrier aligned with the client's revoke in flight");
    }
    if revoke_2 > aligned && ran > revoke_2 && revoked_2 > ran {
        f.push("the client's revoke waited for the resume");
    }
    let (ran_1, ran_2) = (o.any(|e| e.ran_on(1)), o.any(|e| e.ran_on(2)));
    if ran_1 && ran_2 {
        f.push("both lessees ran data");
    }
    if ran_1 || ran_2 {
        f.push("a lessee ran data");
    }
    f
}

#[test]
fn revoke_in_flight_mergeable() {
    let s = scenario(Strategy::Mergeable, Revoke::BeforeCritical);
    let seen = explore_covering(
        "2 consolidate/revoke in flight, mergeable",
        Some(BOUND),
        move || facts(&s.run()),
    );
    assert_covered(
        &seen,
        &[
            "the barrier aligned with shard 1's revoke (and its data) in flight",
            "shard 1 asked to leave while the lessor was blocked",
            "the barrier aligned with the client's revoke in flight",
            "a lessee ran data",
        ],
    );
}

#[test]
fn revoke_while_blocked_keyed() {
    let s = scenario(Strategy::Keyed, Revoke::AfterCritical);
    let seen = explore_covering(
        "2 consolidate/revoke while blocked, keyed",
        Some(BOUND),
        move || facts(&s.run()),
    );
    assert_covered(
        &seen,
        &[
            "the barrier aligned with shard 1's revoke (and its data) in flight",
            "shard 1 asked to leave while the lessor was blocked",
            "the client's revoke waited for the resume",
            "a lessee ran data",
        ],
    );
}

/// Broken state: `absorb` loses part of what a lessee sends home.
#[test]
#[should_panic(expected = "invariant 1: the critical of barrier 1 saw")]
fn caught_lossy_absorb() {
    let s = scenario(Strategy::Mergeable, Revoke::BeforeCritical).fault(Fault::LossyAbsorb);
    explore_covering(
        "2 consolidate/broken: lossy absorb",
        Some(BOUND),
        move || facts(&s.run()),
    );
}

/// Broken transport: one delivery arrives twice.
#[test]
#[should_panic(expected = "invariant 2: message #")]
fn caught_duplicate_delivery() {
    let s = scenario(Strategy::Mergeable, Revoke::BeforeCritical).fault(Fault::DuplicateDelivery);
    explore_covering(
        "2 consolidate/broken: duplicate delivery",
        Some(BOUND),
        move || facts(&s.run()),
    );
}
