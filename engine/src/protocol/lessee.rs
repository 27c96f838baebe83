//! The lessee side of the protocol: a shadow instance of an actor on a shard
//! that lent its idle core.
//!
//! A lessee runs what its lessor delivers, in delivery order. `Block` and
//! `Revoke` travel on the same FIFO channel as deliveries, so the lessee queues
//! them behind the deliveries that preceded them: when one reaches the head of
//! the mailbox, everything delivered before it has run, and the lessee answers
//! with its whole state. That is the entire argument for invariant 1 on the
//! lessee side.

use std::collections::VecDeque;

use super::time::{Instance, Tick};
use super::{Effects, Epoch, LeaseId, PartialState, Routable, ShardId, Wire};

enum Entry<M> {
    Run(M),
    /// A tick of the actor's input watermark, in order among deliveries.
    Tick(Tick),
    Block(Epoch),
    Revoke,
}

/// A lessee instance of one actor on one shard.
pub struct Lessee<M, S: PartialState> {
    lease: LeaseId,
    lessor: ShardId,
    state: S,
    mailbox: VecDeque<Entry<M>>,
    /// Entries in `mailbox`, batches counted by their weight.
    weight: usize,
    epoch: Epoch,
    /// The epoch of the latest message or tick run, or of the latest
    /// `Assign`: the epoch of what the state held here was last changed
    /// in.
    running: Epoch,
    release_requested: bool,
    finished: bool,
}

impl<M: Routable, S: PartialState> Lessee<M, S> {
    /// Accept a lease: the new lessee starts at the identity state `state`
    /// and answers `Granted`.
    pub fn accept(lease: LeaseId, lessor: ShardId, state: S, fx: &mut impl Effects<M, S>) -> Self {
        fx.send(lessor, Wire::Granted { lease });
        Lessee {
            lease,
            lessor,
            state,
            mailbox: VecDeque::new(),
            weight: 0,
            epoch: 0,
            running: 0,
            release_requested: false,
            finished: false,
        }
    }

    /// Refuse a lease request without creating a lessee.
    pub fn refuse(lease: LeaseId, lessor: ShardId, fx: &mut impl Effects<M, S>) {
        fx.send(lessor, Wire::Refused { lease });
    }

    /// The lease this lessee serves.
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// The lessor's (home) shard, where this lessee's answers go.
    pub fn lessor(&self) -> ShardId {
        self.lessor
    }

    /// The lessor's epoch as of the last `Assign` (0 before any).
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Run `f` on the state held here with the epoch of its outputs now,
    /// between protocol calls and outside the message order: for work
    /// that is no message (processing-time timers). A lessee that
    /// consolidated holds the identity (no timers) until its next
    /// `Assign` or delivery, which are of the next epoch; before that, its
    /// state is of the epoch it last ran, and what `f` emits in it goes
    /// home in the tally with the state, before the barrier's critical.
    pub fn visit<R>(&mut self, f: impl FnOnce(&mut S, Epoch) -> R) -> R {
        f(&mut self.state, self.running.max(self.epoch))
    }

    /// The partial state held here (left at the identity by each
    /// `Consolidate`).
    pub fn state(&self) -> &S {
        &self.state
    }

    /// True once the lessee answered a `Revoke`: the driver drops it.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether a `step` would do anything.
    pub fn has_work(&self) -> bool {
        !self.mailbox.is_empty()
    }

    /// The message the next [`Lessee::step`] runs, if its next entry is a
    /// message (not a `Block` or a `Revoke` to answer).
    pub fn next(&self) -> Option<&M> {
        match self.mailbox.front() {
            Some(Entry::Run(m)) => Some(m),
            _ => None,
        }
    }

    /// Mailbox entries not yet taken: deliveries (a batch counted as its
    /// weight), and `Block`s and `Revoke`s to answer.
    pub fn backlog(&self) -> usize {
        self.weight
    }

    fn pop(&mut self) -> Option<Entry<M>> {
        let e = self.mailbox.pop_front()?;
        self.weight -= match &e {
            Entry::Run(m) => m.weight() as usize,
            Entry::Tick(_) => 0,
            Entry::Block(_) | Entry::Revoke => 1,
        };
        Some(e)
    }

    /// A message from the lessor arrived (in channel order).
    pub fn on_wire(&mut self, wire: Wire<M, S::Part>) {
        assert!(!self.finished, "message for a released lessee");
        assert_eq!(wire.lease(), self.lease);
        match wire {
            Wire::Assign {
                parts: _,
                state,
                epoch,
                ..
            } => {
                // Assign only carries partitions no queued delivery touches
                // (the lessor holds their messages until this is sent), so it
                // applies at once.
                if let Some(part) = state {
                    self.state.absorb(part);
                }
                self.epoch = epoch;
            }
            Wire::Deliver { msg, .. } => {
                self.weight += msg.weight() as usize;
                self.mailbox.push_back(Entry::Run(msg));
            }
            Wire::Tick { tick, .. } => self.mailbox.push_back(Entry::Tick(tick)),
            Wire::Block { barrier, .. } => {
                self.weight += 1;
                self.mailbox.push_back(Entry::Block(barrier));
            }
            Wire::Revoke { .. } => {
                self.weight += 1;
                self.mailbox.push_back(Entry::Revoke);
            }
            other => unreachable!("lessor-bound message sent to a lessee: {:?}", other.lease()),
        }
    }

    /// Run at most one data message or tick; answer any `Block`/`Revoke`
    /// that reaches the head of the mailbox on the way. Returns true if a
    /// message or tick ran.
    pub fn step(&mut self, fx: &mut impl Effects<M, S>) -> bool {
        while let Some(entry) = self.pop() {
            match entry {
                Entry::Run(msg) => {
                    self.running = self.running.max(msg.epoch());
                    fx.run(&mut self.state, msg);
                    self.answer_markers(fx);
                    return true;
                }
                Entry::Tick(tick) => {
                    self.running = self.running.max(tick.epoch);
                    fx.tick(&mut self.state, tick, Instance::Lease(self.lease), &[]);
                    self.answer_markers(fx);
                    return true;
                }
                Entry::Block(barrier) => self.consolidate(barrier, fx),
                Entry::Revoke => {
                    self.release(fx);
                    return false;
                }
            }
        }
        false
    }

    /// Answer markers now at the head, so a lessee whose last delivery just
    /// ran does not wait for another step to answer its lessor.
    fn answer_markers(&mut self, fx: &mut impl Effects<M, S>) {
        loop {
            match self.mailbox.front() {
                Some(Entry::Block(barrier)) => {
                    let barrier = *barrier;
                    self.pop();
                    self.consolidate(barrier, fx);
                }
                Some(Entry::Revoke) => {
                    self.pop();
                    self.release(fx);
                    return;
                }
                _ => return,
            }
        }
    }

    fn consolidate(&mut self, barrier: Epoch, fx: &mut impl Effects<M, S>) {
        let state = self.state.take_all();
        fx.send(
            self.lessor,
            Wire::Consolidate {
                lease: self.lease,
                barrier,
                state,
            },
        );
    }

    fn release(&mut self, fx: &mut impl Effects<M, S>) {
        assert!(
            self.mailbox.is_empty(),
            "revoke must be the last thing delivered"
        );
        let state = self.state.take_all();
        fx.send(
            self.lessor,
            Wire::Released {
                lease: self.lease,
                state,
            },
        );
        fx.retired(self.lease);
        self.finished = true;
    }

    /// The lessee's shard wants its core back; the lessor answers with a
    /// `Revoke` (or ignores a duplicate). Idempotent.
    pub fn request_release(&mut self, fx: &mut impl Effects<M, S>) {
        if !self.release_requested && !self.finished {
            self.release_requested = true;
            fx.send(self.lessor, Wire::ReleaseRequest { lease: self.lease });
        }
    }
}
