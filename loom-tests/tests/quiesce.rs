//! Model of app quiescence (`dirigo_engine::quiesce`): how `undeploy` knows,
//! from lock-free counters alone, that everything a client handed the app
//! has been processed before the shards drop the app's actors.
//!
//! A client submits one command (an ingest batch) through the app's `Gate`
//! while the main thread undeploys: it closes the gate, then reads the
//! counters in two waves. The command goes to shard A over a mesh ring; A
//! takes it and sends one message over another ring to shard B, which
//! processes it. Each shard bumps only its own `ShardCounters`, as the
//! engine's shards do. Properties:
//! - if the two waves agree that the app settled, nothing happens after them
//!   (the final counters equal the waves': no accepted command or message was
//!   still in flight, so dropping the actors loses nothing);
//! - a command the gate refused leaves no trace (no count, no message);
//!
//! and the ring's and the counters' accesses are checked for data races.

#![cfg(loom)]

use dirigo_engine::mesh::ring::{ring, Consumer};
use dirigo_engine::quiesce::{Gate, ShardCounters, Snapshot};
use dirigo_loom_tests::explore::{assert_covered, explore_covering};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Notify};
use loom::thread;

/// Preemption bound: 3 (four threads: the undeploying main thread, the
/// client, shards A and B).
const BOUND: usize = 3;

/// Deliberate bugs in the shards' use of the counters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Shard A counts the command as taken before it counts (and sends) the
    /// message the command causes.
    TakenBeforeSent,
    /// Shard B counts the message done before it has processed it, i.e.
    /// before its effect (and any output) exists.
    DoneBeforeProcessed,
}

/// A link between two threads of the model: a mesh ring, plus a doorbell
/// (loom's `Notify`, which parks the thread as a shard parks on its
/// doorbell) and an end-of-stream flag, so the receiver blocks instead of
/// spinning (loom cannot explore a spin loop).
struct Link {
    bell: Notify,
    closed: AtomicBool,
}

impl Link {
    fn new() -> Arc<Link> {
        Arc::new(Link {
            bell: Notify::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// The sender is done: after its last push, say so and ring.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.bell.notify();
    }

    /// Wait for an item on `rx`, or for the sender to be done without one.
    /// Returns whether an item came.
    fn take_one(&self, rx: &mut Consumer<u32>) -> bool {
        loop {
            if rx.pop().is_some() {
                return true;
            }
            // The sender pushes before it closes (Release), so once `closed`
            // is seen (Acquire) an empty ring stays empty.
            if self.closed.load(Ordering::Acquire) && rx.is_empty() {
                return false;
            }
            self.bell.wait();
        }
    }
}

fn one_run(fault: Fault) -> Vec<&'static str> {
    let gate = Arc::new(Gate::new());
    let counters: Arc<[ShardCounters; 2]> = Arc::new(Default::default());
    let effects = Arc::new(AtomicBool::new(false));
    let (mut to_a, mut a_in) = ring::<u32>(2);
    let (mut to_b, mut b_in) = ring::<u32>(2);
    let (client_to_a, a_to_b) = (Link::new(), Link::new());

    let client = {
        let (gate, link) = (gate.clone(), client_to_a.clone());
        thread::spawn(move || {
            let accepted = gate.enter().is_ok();
            if accepted {
                assert!(to_a.push(1).is_ok(), "an empty ring refused a command");
            }
            link.close();
            accepted
        })
    };
    let shard_a = {
        let (counters, inbox, outbox) = (counters.clone(), client_to_a.clone(), a_to_b.clone());
        thread::spawn(move || {
            if inbox.take_one(&mut a_in) {
                let me = &counters[0];
                if fault == Fault::TakenBeforeSent {
                    me.count_taken();
                }
                me.count_sent(1);
                assert!(to_b.push(2).is_ok(), "an empty ring refused a message");
                if fault != Fault::TakenBeforeSent {
                    me.count_taken();
                }
            }
            outbox.close();
        })
    };
    let shard_b = {
        let (counters, inbox, effects) = (counters.clone(), a_to_b.clone(), effects.clone());
        thread::spawn(move || {
            if inbox.take_one(&mut b_in) {
                let me = &counters[1];
                if fault == Fault::DoneBeforeProcessed {
                    me.count_done(1);
                }
                // The message's effect on the actor's state.
                effects.store(true, Ordering::Relaxed);
                if fault != Fault::DoneBeforeProcessed {
                    me.count_done(1);
                }
            }
        })
    };

    // Undeploy: close, then two waves.
    gate.close();
    let first = Snapshot::take(&gate, &counters[..]);
    let second = Snapshot::take(&gate, &counters[..]);
    let settled = first.settled(&second);
    // What undeploy would now drop: the effects seen when it decided.
    let effects_then = settled && effects.load(Ordering::Acquire);

    let accepted = client
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    for t in [shard_a, shard_b] {
        t.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    }
    let last = Snapshot::take(&gate, &counters[..]);
    let effects_last = effects.load(Ordering::Relaxed);

    if settled {
        assert_eq!(
            second, last,
            "quiesce said settled ({second:?}) but work went on after it (final {last:?})"
        );
        assert_eq!(
            effects_then, effects_last,
            "quiesce said settled before the message had taken effect"
        );
    }
    if accepted {
        assert_eq!(
            (last.submitted, last.taken, last.sent, last.done),
            (1, 1, 1, 1),
            "an accepted command did not run through"
        );
    } else {
        assert_eq!(
            (last, effects_last),
            (
                Snapshot {
                    submitted: 0,
                    taken: 0,
                    sent: 0,
                    done: 0
                },
                false
            ),
            "a refused command left a trace"
        );
    }

    let mut facts = Vec::new();
    match (accepted, settled) {
        (true, true) => facts.push("settled after an accepted command ran through"),
        (true, false) => facts.push("the waves saw an accepted command in flight"),
        (false, _) => facts.push("the gate refused the command"),
    }
    if accepted && !first.balanced() && second.balanced() {
        facts.push("the first wave was unbalanced, the second balanced");
    }
    if first.balanced() && !first.settled(&second) {
        facts.push("a balanced first wave that the second wave contradicted");
    }
    facts
}

#[test]
fn undeploy_waits_for_every_accepted_command() {
    let seen = explore_covering("quiesce/undeploy vs submit", Some(BOUND), || {
        one_run(Fault::None)
    });
    assert_covered(
        &seen,
        &[
            "settled after an accepted command ran through",
            "the waves saw an accepted command in flight",
            "the gate refused the command",
            "a balanced first wave that the second wave contradicted",
        ],
    );
}

/// Broken shard: a command counted as taken before what it sends is counted
/// lets both waves read a balanced, unchanging app while the message is sent.
#[test]
#[should_panic(expected = "but work went on after it")]
fn caught_taken_counted_before_sent() {
    explore_covering("quiesce/broken: taken before sent", Some(BOUND), || {
        one_run(Fault::TakenBeforeSent)
    });
}

/// Broken shard: a message counted done before it is processed.
#[test]
#[should_panic(expected = "before the message had taken effect")]
fn caught_done_counted_before_processed() {
    explore_covering("quiesce/broken: done before processed", Some(BOUND), || {
        one_run(Fault::DoneBeforeProcessed)
    });
}
