//! A shard's run queue: the instances (lessors and lessees of every app on
//! the shard) that have work, ordered by the policy's rank of the message at
//! the head of each one's mailbox; ties in the order they were queued.
//!
//! An instance is in the queue at most once (its slot's `queued` flag).
//! Its rank is taken when it is queued; the head of a FIFO mailbox changes
//! only when the instance runs, and it is queued again, re-ranked, after each
//! run, so ranks never go stale while waiting.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::policy::Rank;

/// Queued items of type `T`, lowest rank first.
#[derive(Debug)]
pub(crate) struct RunQueue<T> {
    heap: BinaryHeap<Reverse<(Rank, u64, Item<T>)>>,
    seq: u64,
}

/// Wraps the payload so it takes no part in the order.
#[derive(Debug)]
struct Item<T>(T);

impl<T> PartialEq for Item<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<T> Eq for Item<T> {}
impl<T> PartialOrd for Item<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Item<T> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<T> Default for RunQueue<T> {
    fn default() -> Self {
        RunQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> RunQueue<T> {
    pub(crate) fn push(&mut self, rank: Rank, item: T) {
        self.seq += 1;
        self.heap.push(Reverse((rank, self.seq, Item(item))));
    }

    /// The item of lowest rank (earliest queued among equals).
    pub(crate) fn pop(&mut self) -> Option<T> {
        self.heap.pop().map(|Reverse((_, _, Item(t)))| t)
    }

    /// Keep only the items `keep` says yes to.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.heap.retain(|Reverse((_, _, Item(t)))| keep(t));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_rank_first_then_queue_order() {
        let mut q = RunQueue::default();
        q.push(Rank(5, 0), "c");
        q.push(Rank(1, 9), "b");
        q.push(Rank(1, 2), "a");
        q.push(Rank(5, 0), "d");
        q.push(Rank::URGENT, "urgent");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, ["urgent", "a", "b", "c", "d"]);
        assert!(q.is_empty());
    }
}
