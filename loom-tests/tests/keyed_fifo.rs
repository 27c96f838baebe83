//! Model 4: `Keyed` mode keeps per-key FIFO across a lease and a revoke.
//!
//! Key `k` lives in the partitions the first lessee gets. The home shard
//! (taking its inputs from its own script) leases to shard 1 while `k`'s
//! messages keep arriving, the first three in one ingest batch, so that a
//! backlog is queued when the grant comes: the grant hands `k`'s partition
//! to the lessee with its state and, behind it, the queued messages of `k`;
//! later ones follow them to the lessee. Then the lease ends, either because the lessee asks to leave (its
//! `ReleaseRequest` races the inputs) or because the client revokes it, and
//! `k`'s messages arriving while the `Revoke` is in flight are held until the
//! state comes home. Property: per key, messages ran in the order they were
//! sent (the key's list in the final state), besides exactly-once and the
//! final state.

#![cfg(loom)]

use dirigo_engine::protocol::Strategy;
use dirigo_loom_tests::explore::{assert_covered, explore_covering};
use dirigo_loom_tests::fault::Fault;
use dirigo_loom_tests::mesh::{Event, Feed};
use dirigo_loom_tests::msg::{nth_key_in, Msg};
use dirigo_loom_tests::shard::{Leave, Plan};
use dirigo_loom_tests::world::{Outcome, Scenario};

/// Preemption bound of these models: 5 (three threads: the model's main
/// thread, two shards; the home shard takes its inputs from its script).
const BOUND: usize = 5;

fn msg(id: u64) -> Msg {
    Msg::data(id, nth_key_in(0..32, 0), 0, 0)
}

fn k(id: u64) -> Feed {
    Feed::Input(msg(id))
}

/// `k`'s first three messages, in one batch.
fn first_three() -> Feed {
    Feed::Batch(vec![msg(1), msg(2), msg(3)])
}

/// The lessee leaves on its own, once it ran one of `k`'s messages.
fn lessee_leaves() -> Scenario {
    Scenario::new(Strategy::Keyed, 1)
        .shard(Plan::home([
            Feed::Lease(1),
            first_three(),
            k(4),
            k(5),
            k(6),
        ]))
        .shard(Plan::leaving_host(Leave::AfterRuns(1)))
}

/// The client revokes the lease between `k`'s messages.
fn client_revokes() -> Scenario {
    Scenario::new(Strategy::Keyed, 1)
        .shard(Plan::home([
            Feed::Lease(1),
            first_three(),
            Feed::Revoke(1),
            k(4),
            k(5),
        ]))
        .shard(Plan::host())
}

fn facts(o: &Outcome) -> Vec<&'static str> {
    let mut f = Vec::new();
    let granted = o.first(|e| e.is_wire(0, "Granted"));
    let assigned = o.first(|e| e.is_wire(1, "Assign"));
    let revoke_sent = o
        .first(|e| e.is_wire(0, "ReleaseRequest"))
        .or(o.first(Event::is_revoke_command));
    let released = o.first(|e| e.is_wire(0, "Released"));
    let k_ids = [1, 2, 3, 4, 5, 6];
    let arrived = |id: u64| o.first(|e| e.is_input(id));
    if k_ids
        .iter()
        .any(|&id| arrived(id) > granted && granted.is_some() && arrived(id) < assigned)
    {
        f.push("a message arrived while its partition's hand-off was pending");
    }
    if k_ids
        .iter()
        .any(|&id| arrived(id) > revoke_sent && revoke_sent.is_some() && arrived(id) < released)
    {
        f.push("a message arrived while its partition's revoke was in flight");
    }
    if k_ids
        .iter()
        .any(|&id| arrived(id) < granted && o.any(|e| e.is_deliver(1, id)))
    {
        f.push("the grant handed queued messages to the lessee");
    }
    if o.any(|e| e.ran_on(1)) {
        f.push("the lessee ran some of the key's messages");
    }
    if k_ids
        .iter()
        .any(|&id| o.first(|e| e.is_ran(0, id)) > released && released.is_some())
    {
        f.push("the key ran at home again after the revoke");
    }
    f
}

const COVERAGE: &[&str] = &[
    "the grant handed queued messages to the lessee",
    "a message arrived while its partition's hand-off was pending",
    "a message arrived while its partition's revoke was in flight",
    "the lessee ran some of the key's messages",
    "the key ran at home again after the revoke",
];

#[test]
fn per_key_fifo_when_the_lessee_leaves() {
    let s = lessee_leaves();
    let seen = explore_covering("4 keyed fifo/lessee leaves", Some(BOUND), move || {
        facts(&s.run())
    });
    assert_covered(&seen, COVERAGE);
}

#[test]
fn per_key_fifo_when_the_client_revokes() {
    let s = client_revokes();
    let seen = explore_covering("4 keyed fifo/client revokes", Some(BOUND), move || {
        facts(&s.run())
    });
    assert_covered(&seen, COVERAGE);
}

/// Broken transport: two deliveries to the lessee swap places.
#[test]
#[should_panic(expected = "per-key run order differs from send order")]
fn caught_reordered_deliveries() {
    let s = lessee_leaves().fault(Fault::ReorderDeliveries);
    explore_covering(
        "4 keyed fifo/broken: reordered deliveries",
        Some(BOUND),
        move || facts(&s.run()),
    );
}
