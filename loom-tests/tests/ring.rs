//! Models of the mesh's SPSC ring (`dirigo_engine::mesh::ring`), on loom's atomics
//! and `UnsafeCell` (through `dirigo_engine::sync`): loom checks every slot
//! access for a data race, besides the assertions here.
//!
//! - FIFO and no loss: a producer pushes more items than the ring holds
//!   (so it wraps around and finds it full), while a consumer pops them all.
//! - Drop: items still in the ring when both ends are gone are dropped once,
//!   whichever end goes last, and popped ones are not dropped again.

#![cfg(loom)]

use dirigo_engine::mesh::ring::ring;
use dirigo_loom_tests::explore::explore;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Items pushed through a ring of capacity 2.
const ITEMS: u32 = 3;

/// No preemption bound: every interleaving.
#[test]
fn ring_is_fifo_and_loses_nothing_across_wraparound() {
    explore("ring/fifo across wraparound", None, || {
        let (mut tx, mut rx) = ring::<u32>(2);
        let producer = thread::spawn(move || {
            for i in 0..ITEMS {
                let mut v = i;
                // Full: wait for the consumer (loom runs it on a yield).
                while let Err(back) = tx.push(v) {
                    v = back;
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < ITEMS as usize {
            match rx.pop() {
                Some(v) => got.push(v),
                None => thread::yield_now(),
            }
        }
        producer
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        assert_eq!(got, (0..ITEMS).collect::<Vec<_>>(), "ring broke FIFO");
        assert!(rx.is_empty() && rx.pop().is_none(), "ring invented an item");
    });
}

/// Counts its drops.
struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// No preemption bound: every interleaving.
#[test]
fn ring_drops_unread_items_exactly_once() {
    explore("ring/drop of unread items", None, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut tx, mut rx) = ring::<Token>(2);
        let d = drops.clone();
        let producer = thread::spawn(move || {
            for _ in 0..2 {
                if tx.push(Token(d.clone())).is_err() {
                    panic!("a ring of 2 refused its second item");
                }
            }
            // `tx` dropped here, maybe before the consumer is done.
        });
        let consumer = thread::spawn(move || {
            // One pop, racing the pushes: takes 0 or 1 item.
            usize::from(rx.pop().is_some())
            // The popped item and `rx` are dropped here.
        });
        producer
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        let popped = consumer
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        // Both ends are gone: every item was dropped, once.
        assert_eq!(
            drops.load(Ordering::Relaxed),
            2,
            "{popped} popped; unread items leaked or dropped twice"
        );
    });
}
