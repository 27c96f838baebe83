//! Models of the park handshake (`dirigo_engine::mesh::doorbell::ParkFlag`) with
//! the mesh ring as the source of work, as the shard uses them: a sender
//! publishes a packet (ring push), then asks `should_wake`; the sleeper
//! announces `prepare_park`, then re-checks its ring and sleeps only if it is
//! empty. Property: never "the sleeper sleeps" while "no sender wakes it"
//! (no lost wake-up), and at most one sender rings per park.
//!
//! The broken variant, a flag without the SeqCst fences, lives here: it is the
//! textbook store-buffering bug, and loom finds the lost wake-up.

#![cfg(loom)]

use dirigo_engine::mesh::doorbell::ParkFlag;
use dirigo_engine::mesh::ring::{ring, Consumer};
use dirigo_loom_tests::explore::explore;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

/// The two halves of a park handshake.
trait Park: Send + Sync + 'static {
    fn prepare_park(&self);
    fn cancel_park(&self);
    fn should_wake(&self) -> bool;
}

impl Park for ParkFlag {
    fn prepare_park(&self) {
        ParkFlag::prepare_park(self)
    }
    fn cancel_park(&self) {
        ParkFlag::cancel_park(self)
    }
    fn should_wake(&self) -> bool {
        ParkFlag::should_wake(self)
    }
}

/// Broken on purpose: `ParkFlag` without its fences. SeqCst on the flag
/// alone does not order the flag against the ring's Release/Acquire indices.
#[derive(Default)]
struct FencelessFlag {
    parked: AtomicBool,
}

impl Park for FencelessFlag {
    fn prepare_park(&self) {
        self.parked.store(true, Ordering::SeqCst);
    }
    fn cancel_park(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }
    fn should_wake(&self) -> bool {
        self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst)
    }
}

/// The sleeper's side: announce, re-check every ring, sleep if all are empty.
/// Returns whether it went to sleep.
fn park(flag: &impl Park, rings: &[Consumer<u32>]) -> bool {
    flag.prepare_park();
    if rings.iter().all(Consumer::is_empty) {
        true
    } else {
        flag.cancel_park();
        false
    }
}

/// One sender, one sleeper.
fn one_sender<P: Park>(flag: P) {
    let flag = Arc::new(flag);
    let (mut tx, rx) = ring::<u32>(2);
    let f = flag.clone();
    let sender = thread::spawn(move || {
        assert!(tx.push(7).is_ok(), "an empty ring refused an item");
        f.should_wake()
    });
    let slept = park(&*flag, std::slice::from_ref(&rx));
    let woke = sender
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(
        !slept || woke,
        "lost wake-up: the sleeper slept on a packet and nobody woke it"
    );
}

/// No preemption bound: every interleaving.
#[test]
fn park_flag_never_loses_a_wakeup() {
    explore("park/one sender", None, || one_sender(ParkFlag::new()));
}

/// No preemption bound: every interleaving.
#[test]
fn park_flag_wakes_once_per_park() {
    explore("park/two senders", None, || {
        let flag = Arc::new(ParkFlag::new());
        let mut rings = Vec::new();
        let mut senders = Vec::new();
        for _ in 0..2 {
            let (mut tx, rx) = ring::<u32>(2);
            rings.push(rx);
            let f = flag.clone();
            senders.push(thread::spawn(move || {
                assert!(tx.push(7).is_ok(), "an empty ring refused an item");
                f.should_wake()
            }));
        }
        let slept = park(&*flag, &rings);
        let wakes = senders
            .into_iter()
            .map(|s| s.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .filter(|w| *w)
            .count();
        assert!(wakes <= 1, "{wakes} senders rang for one park");
        assert!(
            !slept || wakes == 1,
            "lost wake-up: the sleeper slept on two packets and nobody woke it"
        );
    });
}

/// Without the fences, the sleeper can miss the packet while the sender
/// misses the flag.
#[test]
#[should_panic(expected = "lost wake-up")]
fn caught_flag_without_fences() {
    explore("park/broken: no fences", None, || {
        one_sender(FencelessFlag::default())
    });
}
