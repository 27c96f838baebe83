//! The sending side of one shard's mesh links: a ring to every peer, a
//! spill queue behind each ring, a local queue for packets a shard sends
//! itself, and the doorbells to ring once per turn.
//!
//! Invariant: packets to one peer leave in the order they were sent. Once a
//! packet spilled (its ring was full), every later packet to that peer
//! queues behind it until the spill drains: a non-empty spill means no
//! direct ring push (`send` pushes into a ring only past an empty spill).
//! That per-link FIFO is the only thing the
//! protocol asks of the transport.

use std::collections::VecDeque;
use std::sync::Arc;

use super::doorbell::Doorbell;
use super::ring::Producer;
use crate::protocol::ShardId;

/// A shard's ends of the links to its peers, for packets of type `P`.
pub(crate) struct Outbox<P> {
    me: ShardId,
    out: Vec<Option<Producer<P>>>,
    spill: Vec<VecDeque<P>>,
    bells: Vec<Arc<Doorbell>>,
    /// Peers sent to this turn, to ring once at the end of it.
    dirty: Vec<bool>,
    /// Packets this shard sent itself, taken by its next drain.
    pub(crate) local: VecDeque<P>,
}

impl<P> Outbox<P> {
    /// The outbox of shard `me`: `out[j]` is the ring to shard `j` (`None`
    /// for `me`), `bells[j]` shard `j`'s doorbell.
    pub(crate) fn new(
        me: ShardId,
        out: Vec<Option<Producer<P>>>,
        bells: Vec<Arc<Doorbell>>,
    ) -> Self {
        let n = out.len();
        assert_eq!(n, bells.len(), "a doorbell per shard");
        assert!(out[me as usize].is_none(), "no ring to itself");
        Outbox {
            me,
            out,
            spill: (0..n).map(|_| VecDeque::new()).collect(),
            bells,
            dirty: vec![false; n],
            local: VecDeque::new(),
        }
    }

    /// Send `p` to shard `to`: into its ring, or behind its spill.
    pub(crate) fn send(&mut self, to: ShardId, p: P) {
        let i = to as usize;
        if to == self.me {
            self.local.push_back(p);
            return;
        }
        self.dirty[i] = true;
        if !self.spill[i].is_empty() {
            self.spill[i].push_back(p);
            return;
        }
        let ring = self.out[i].as_mut().expect("a link to every other shard");
        if let Err(p) = ring.push(p) {
            self.spill[i].push_back(p);
        }
    }

    /// Move spilled packets into their rings, in order. Returns how many moved.
    pub(crate) fn flush_spill(&mut self) -> usize {
        let mut moved = 0;
        for i in 0..self.spill.len() {
            while let Some(p) = self.spill[i].pop_front() {
                let ring = self.out[i].as_mut().expect("spill only to peers");
                match ring.push(p) {
                    Ok(()) => {
                        moved += 1;
                        self.dirty[i] = true;
                    }
                    Err(p) => {
                        self.spill[i].push_front(p);
                        break;
                    }
                }
            }
        }
        moved
    }

    /// Packets waiting behind full rings, all peers.
    pub(crate) fn spilled(&self) -> usize {
        self.spill.iter().map(|q| q.len()).sum()
    }

    /// Ring the doorbell of every peer sent to since the last call.
    pub(crate) fn ring_dirty(&mut self) {
        for (i, d) in self.dirty.iter_mut().enumerate() {
            if std::mem::take(d) {
                self.bells[i].ring();
            }
        }
    }
}
