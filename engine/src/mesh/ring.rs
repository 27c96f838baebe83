//! The shard mesh's link: a bounded single-producer single-consumer ring.
//!
//! Why our own: glommio's `shared_channel` wakes the peer executor through an
//! eventfd on every send, which costs tens of microseconds per hop. A shard
//! that is busy polls its inbound rings every turn anyway, so a send only
//! needs to publish a slot; waking is left to the doorbell, and only for a
//! peer that has parked.
//!
//! Layout: producer and consumer each own one index (`tail`, `head`), on
//! separate cache lines, and keep a cached copy of the other side's index so
//! that a push or pop touches the shared line of the other side only when the
//! ring looks full or empty. Indices grow without bound (wrapping) and are
//! masked into a power-of-two buffer.
//!
//! Memory ordering: the producer writes the slot, then publishes `tail` with
//! Release; the consumer loads `tail` with Acquire before reading the slot,
//! and publishes `head` with Release after moving the value out, which the
//! producer Acquires before reusing the slot.

use std::mem::MaybeUninit;

use crate::sync::{Arc, AtomicUsize, CachePadded, Ordering, UnsafeCell};

struct Shared<T> {
    /// Next slot the consumer reads; written only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// Next slot the producer writes; written only by the producer.
    tail: CachePadded<AtomicUsize>,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
}

// SAFETY: a slot is touched by exactly one side at a time (the producer
// before publishing `tail` past it, the consumer after observing that and
// before publishing `head` past it), so sharing `Shared` across threads only
// moves `T`s between them; that needs `T: Send` and nothing more.
unsafe impl<T: Send> Sync for Shared<T> {}
// SAFETY: as above; `Shared` owns `T`s and moving it moves them.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Both ends are gone (we are the last `Arc`), so the indices are
        // stable and the values between them are initialised and unread.
        let mut i = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        while i != tail {
            self.slots[i & self.mask].with_mut(|p| {
                // SAFETY: slots in [head, tail) were written by push and not
                // yet moved out by pop; nobody else can reach them now.
                unsafe { (*p).assume_init_drop() }
            });
            i = i.wrapping_add(1);
        }
    }
}

/// The sending end. `!Clone`: one producer.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    tail: usize,
    cached_head: usize,
}

/// The receiving end. `!Clone`: one consumer.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    head: usize,
    cached_tail: usize,
}

/// A ring holding at least `capacity` items (rounded up to a power of two,
/// at least 2).
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let cap = capacity.max(2).next_power_of_two();
    let slots = (0..cap)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded(AtomicUsize::new(0)),
        tail: CachePadded(AtomicUsize::new(0)),
        slots,
        mask: cap - 1,
    });
    (
        Producer {
            shared: shared.clone(),
            tail: 0,
            cached_head: 0,
        },
        Consumer {
            shared,
            head: 0,
            cached_tail: 0,
        },
    )
}

impl<T> Producer<T> {
    /// Append `v`, or hand it back if the ring is full.
    #[inline]
    pub fn push(&mut self, v: T) -> Result<(), T> {
        let cap = self.shared.mask + 1;
        if self.tail.wrapping_sub(self.cached_head) == cap {
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.cached_head) == cap {
                return Err(v);
            }
        }
        debug_assert!(self.tail.wrapping_sub(self.cached_head) < cap);
        self.shared.slots[self.tail & self.shared.mask].with_mut(|p| {
            // SAFETY: the slot is below `head + cap`, so the consumer has
            // moved its previous value out (Acquire on `head` above or at an
            // earlier push) and will not read it before we publish `tail`.
            unsafe { (*p).write(v) };
        });
        self.tail = self.tail.wrapping_add(1);
        self.shared.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Whether the ring has no free slot (as far as the producer can tell).
    pub fn is_full(&mut self) -> bool {
        let cap = self.shared.mask + 1;
        if self.tail.wrapping_sub(self.cached_head) < cap {
            return false;
        }
        self.cached_head = self.shared.head.load(Ordering::Acquire);
        self.tail.wrapping_sub(self.cached_head) == cap
    }

    /// Most values the ring holds at once.
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }
}

impl<T> Consumer<T> {
    /// Take the oldest item, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.cached_tail {
            self.cached_tail = self.shared.tail.load(Ordering::Acquire);
            if self.head == self.cached_tail {
                return None;
            }
        }
        let v = self.shared.slots[self.head & self.shared.mask].with(|p| {
            // SAFETY: `head < tail` as published by the producer with
            // Release and observed with Acquire, so the slot is initialised;
            // we move the value out exactly once, then release the slot by
            // advancing `head`.
            unsafe { (*p).assume_init_read() }
        });
        self.head = self.head.wrapping_add(1);
        self.shared.head.store(self.head, Ordering::Release);
        Some(v)
    }

    /// Whether nothing is waiting. Loads the producer's index: this is the
    /// check a shard makes before parking.
    pub fn is_empty(&self) -> bool {
        self.head == self.shared.tail.load(Ordering::Acquire)
    }

    /// Items waiting right now.
    pub fn len(&self) -> usize {
        self.shared
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head)
    }

    /// Most values the ring holds at once.
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_full() {
        let (mut p, mut c) = ring::<u32>(3);
        assert_eq!(p.capacity(), 4);
        for i in 0..4 {
            p.push(i).unwrap();
        }
        assert!(p.is_full());
        assert_eq!(p.push(9), Err(9));
        assert_eq!(c.len(), 4);
        assert_eq!(c.pop(), Some(0));
        p.push(4).unwrap();
        let got: Vec<_> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert!(c.is_empty());
        assert_eq!(c.pop(), None);
    }

    #[test]
    fn drops_unread_items() {
        let item = std::sync::Arc::new(());
        {
            let (mut p, mut c) = ring(4);
            for _ in 0..3 {
                p.push(item.clone()).unwrap();
            }
            drop(c.pop());
            assert_eq!(std::sync::Arc::strong_count(&item), 3);
        }
        assert_eq!(std::sync::Arc::strong_count(&item), 1);
    }

    #[test]
    fn two_threads_keep_order_across_wraparound() {
        const N: u64 = 200_000;
        let (mut p, mut c) = ring::<u64>(8);
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                if p.push(i).is_ok() {
                    i += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        let mut want = 0;
        while want < N {
            if let Some(v) = c.pop() {
                assert_eq!(v, want);
                want += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        t.join().unwrap();
        assert!(c.is_empty());
    }
}
