//! The dual-mode actor protocol as one sans-IO state machine.
//!
//! An actor has one [`Lessor`] (its home shard) and zero or more [`Lessee`]s on
//! other shards. This module owns every rule of lease, block, consolidate,
//! critical, resume and revoke; it owns *no* I/O and no executor. Inputs are
//! method calls (a message arrived, a control message arrived, the driver asks
//! to run one step); outputs go through the [`Effects`] the caller passes in
//! (run this message on this state, send this control message to that shard).
//! The engine drives it on glommio shards, the seeded simulation in
//! `engine/tests/protocol_sim.rs` and the loom models drive the very same code.
//!
//! # Invariants (see ARCHITECTURE.md for where each is checked)
//! 1. A critical message of barrier `b` observes the effect of every data
//!    message of epoch `< b` and of none of epoch `>= b`.
//! 2. Every data message is run exactly once, across lease, revoke, block and
//!    resume.
//! 3. `Keyed`: messages of one key run in the order the lessor received them.
//! 4. Every `Block` is answered (by `Consolidate`, or by the `Released` of a
//!    revoke already in flight).
//! 5. The lessor's state after consolidation equals a sequential run.
//!
//! The channels between shards must be FIFO per ordered pair of shards; that is
//! the only thing the protocol asks of the transport.

mod lessee;
mod lessor;
mod partition;
pub mod time;
mod wire;

pub use lessee::Lessee;
pub use lessor::{Dormant, Lessor, LessorMode, LessorStats};
pub use partition::{PartitionSet, PARTITIONS};
pub use time::{Instance, Tick, Time, WatermarkMark};
pub use wire::Wire;

/// Index of a shard (one per core by default).
pub type ShardId = u16;
/// Number of completed barriers of an actor; a data message carries the epoch
/// its sender was in when it emitted it.
pub type Epoch = u64;
/// Index of an input edge of an operator (0..inputs).
pub type EdgeId = u16;

/// Identifies one lease of one actor: unique for the actor's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub u32);

/// How an operator's state is split across lessor and lessees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// State is a map by key; each instance owns a set of hash partitions;
    /// consolidation moves partitions home. Keeps per-key order.
    Keyed,
    /// Lessees start from the identity; partial states are merged by the
    /// user's `merge`. Any message may run on any instance.
    Mergeable,
    /// Never leased: order-sensitive state runs on the lessor only.
    Sequential,
}

/// The barrier mark of a critical message: the barrier it closes and how many
/// data messages its sender emitted on this edge during the epoch it closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CriticalMark {
    /// The barrier the critical closes: barrier `b` closes epoch `b - 1`.
    pub barrier: Epoch,
    /// Data messages the sender emitted on this edge during epoch
    /// `barrier - 1`, summed over all its instances: the lessor holds the
    /// critical until as many have arrived.
    pub sent: u64,
}

/// What the protocol needs to know of a message. The engine's envelope
/// implements it from its header; tests implement it on plain structs.
///
/// A message may be a *batch*: several data messages of one sender and one
/// epoch travelling as one (`weight` of them, of keys in `partitions`).
/// The protocol counts a batch as `weight` messages everywhere it counts
/// (barrier alignment, backlogs), routes it whole where every key it holds
/// runs on one instance, and otherwise cuts it into one piece per instance
/// (`split_by`; `split` into messages of one key, in order, where a lease
/// takes partitions with queued batches): per-key order and exactly-once
/// are those of the messages it stands for.
pub trait Routable: Sized {
    /// Hash of the message key (selects the partition in `Keyed` mode);
    /// unused for a batch, whose keys are in `partitions`.
    fn key_hash(&self) -> u64;
    /// Data messages this one stands for: 1, or a batch's length.
    fn weight(&self) -> u64 {
        1
    }
    /// The partitions of the keys it carries (`Keyed`).
    fn partitions(&self) -> PartitionSet {
        PartitionSet::single(PartitionSet::partition_of(self.key_hash()))
    }
    /// A batch as messages of weight 1, in order, each with the batch's
    /// edge, epoch and (no) critical mark; any other message as itself.
    fn split(self) -> Vec<Self> {
        vec![self]
    }
    /// A batch cut by `groups` (disjoint partition sets that cover its
    /// keys): for each group holding some of its keys, one message of
    /// those keys' messages in the batch's order, with the group's index,
    /// in group order. By default, the messages of `split`, each with its
    /// group.
    fn split_by(self, groups: &[PartitionSet]) -> Vec<(usize, Self)> {
        self.split()
            .into_iter()
            .map(|m| {
                let p = m.partitions();
                let g = groups.iter().position(|g| p.minus(*g).is_empty());
                (g.expect("the groups cover the batch's keys"), m)
            })
            .collect()
    }
    /// The input edge of the receiving operator the message arrived on.
    fn edge(&self) -> EdgeId;
    /// The sender's epoch when it emitted the message.
    fn epoch(&self) -> Epoch;
    /// `Some` for a critical message.
    fn critical(&self) -> Option<CriticalMark>;
}

/// The state of one actor instance, as the protocol moves it around.
pub trait PartialState {
    /// A piece of state in transit between instances.
    type Part;
    /// Remove and return the state of the given partitions (`Keyed`).
    fn take_partitions(&mut self, parts: PartitionSet) -> Self::Part;
    /// Remove and return everything this instance holds; the instance is left
    /// at the identity (empty map, zero count).
    fn take_all(&mut self) -> Self::Part;
    /// Fold a part into this instance (`Keyed`: insert its partitions;
    /// `Mergeable`: the user's merge).
    fn absorb(&mut self, part: Self::Part);
}

/// The effects the protocol asks of its driver.
pub trait Effects<M, S: PartialState> {
    /// Run one data message on an instance's state.
    fn run(&mut self, state: &mut S, msg: M);
    /// Run the critical messages of `barrier` (one per input edge, in edge
    /// order) on the consolidated state, alone.
    fn run_critical(&mut self, state: &mut S, barrier: Epoch, msgs: Vec<M>);
    /// Send a control or delivery message to a shard (FIFO per shard pair).
    fn send(&mut self, to: ShardId, wire: Wire<M, S::Part>);
    /// Run a tick of the actor's input watermark on an instance (after
    /// every message routed to it before the tick): fire the timers it
    /// makes due on this instance's state, then send mark `tick.seq` on
    /// every out-edge, after the outputs sent before it, from `from`, with
    /// `roster` (the leases that got the tick; empty from a lease). A
    /// driver whose actors get no watermarks never sees one.
    fn tick(&mut self, state: &mut S, tick: Tick, from: Instance, roster: &[LeaseId]) {
        let _ = (state, tick, from, roster);
    }
    /// A lessee is gone (it answered a `Revoke`): send, after its outputs,
    /// its last mark (`time::RETIRED`) from `Instance::Lease(lease)` on
    /// every out-edge, so downstream stops waiting for its marks.
    fn retired(&mut self, lease: LeaseId) {
        let _ = lease;
    }
    /// A `Mergeable` actor with lessees chooses where `msg` runs: an index
    /// into `shards` (the home shard first, then the shard of each lessee
    /// taking work). `None` (the default), or an index out of range, leaves
    /// it to the protocol's round robin. Any choice keeps the properties:
    /// any message of a `Mergeable` actor may run on any instance.
    fn choose(&mut self, msg: &M, shards: &[ShardId]) -> Option<usize> {
        let _ = (msg, shards);
        None
    }
}
