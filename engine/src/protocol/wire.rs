//! The protocol's messages between a lessor's shard and a lessee's shard.
//!
//! Every variant names the actor and the lease it is about, so a shard can
//! demultiplex it to the right instance. Variants are plain owned data: they
//! cross shards, so they carry no reference to anything shard-local.

use super::time::Tick;
use super::{Epoch, LeaseId, PartitionSet, ShardId, Strategy};

/// A protocol message between an actor's lessor and one of its lessees:
/// `M` is the data message, `P` a piece of state in transit
/// ([`PartialState::Part`](super::PartialState::Part)).
#[derive(Debug)]
pub enum Wire<M, P> {
    // ---- lessor -> lessee's shard ----
    /// Ask a shard to host a lessee of this actor.
    /// Sent by [`Lessor::request_lease`](super::Lessor::request_lease); the shard
    /// answers with [`Lessee::accept`](super::Lessee::accept) (`Granted`) or
    /// [`Lessee::refuse`](super::Lessee::refuse) (`Refused`).
    LeaseRequest {
        /// The new lease, chosen by the lessor.
        lease: LeaseId,
        /// The lessor's (home) shard, where the answers go.
        lessor: ShardId,
        /// The actor's strategy (never `Sequential`).
        strategy: Strategy,
    },
    /// Hand the lessee partitions (with their state), or resume it after a
    /// barrier; `epoch` is the lessor's epoch from now on.
    /// `Keyed` only: sent at grant (ahead of those partitions' queued
    /// messages, on the same link) and at resume. No delivery queued at the
    /// lessee touches these partitions, so the lessee absorbs the state at
    /// once rather than queue it.
    Assign {
        /// The lease the message is about.
        lease: LeaseId,
        /// The partitions the lessee owns from now on.
        parts: PartitionSet,
        /// Their state, taken from the lessor (`Some` in every `Assign` the
        /// lessor sends).
        state: Option<P>,
        /// The lessor's epoch (barriers completed) when it sent this.
        epoch: Epoch,
    },
    /// A data message for the lessee to run.
    /// Sent whenever the lessor routes a message to this lessee, and at grant
    /// for the queued messages that move with it; the lessee queues it and
    /// runs it in delivery order.
    Deliver {
        /// The lease the message is about.
        lease: LeaseId,
        /// The data message, as the lessor received it.
        msg: M,
    },
    /// A tick of the actor's input watermark: run it after everything
    /// delivered before it (fire the timers it makes due, send its mark
    /// downstream). Sent to every active lessee when the lessor makes or
    /// releases a tick, and at grant for the ticks queued among the
    /// messages that move with it.
    Tick {
        /// The lease the message is about.
        lease: LeaseId,
        /// The tick.
        tick: Tick,
    },
    /// Barrier `barrier` is complete at the lessor: after running everything
    /// delivered before this, send all state home and wait.
    /// Sent to every active lessee when the barrier aligns; the lessee queues
    /// it behind its deliveries and answers `Consolidate` when it reaches the
    /// head of its mailbox. The lessor delivers nothing more until the
    /// critical has run.
    Block {
        /// The lease the message is about.
        lease: LeaseId,
        /// The barrier that aligned (the lessor's epoch + 1).
        barrier: Epoch,
    },
    /// Run everything delivered before this, send all state home, and go.
    /// Sent when a revoke wanted by the API or by the lessee's
    /// `ReleaseRequest` is allowed (lease granted, no barrier in progress);
    /// it is the last message of the lease. The lessee answers `Released`
    /// and is finished.
    Revoke {
        /// The lease the message is about.
        lease: LeaseId,
    },

    // ---- lessee's shard -> lessor ----
    /// Answer to `LeaseRequest`: a lessee exists, at the identity state. The
    /// lessor marks the lease active and, unless blocked, gives it work at
    /// once (`Keyed`: about half its partitions; `Mergeable`: the newer half
    /// of its queue), or revokes it if a revoke was asked meanwhile.
    Granted {
        /// The lease the message is about.
        lease: LeaseId,
    },
    /// Answer to `LeaseRequest`: the shard will not host a lessee (busy,
    /// stopping, or the operator is not a function). The lessor forgets the
    /// pending lease.
    Refused {
        /// The lease the message is about.
        lease: LeaseId,
    },
    /// Answer to `Block`: the lessee's whole partial state.
    /// The lessor absorbs it (`Keyed`: the lessee's partitions come home)
    /// and runs the critical once every lessee answered and its own mailbox
    /// drained. The lease stays active, at the identity state.
    Consolidate {
        /// The lease the message is about.
        lease: LeaseId,
        /// The barrier of the `Block` it answers.
        barrier: Epoch,
        /// Everything the lessee held (it is left at the identity).
        state: P,
    },
    /// Answer to `Revoke`: the lessee's whole state; the lessee is gone.
    /// The lessor absorbs it and forgets the lease; during a barrier it
    /// stands in for the `Consolidate` of a lessee whose revoke was in
    /// flight when the barrier aligned (invariant 4).
    Released {
        /// The lease the message is about.
        lease: LeaseId,
        /// Everything the lessee held.
        state: P,
    },
    /// The lessee's shard wants its core back (idle lessee, or a busy shard).
    /// Sent once by [`Lessee::request_release`](super::Lessee::request_release);
    /// the lessor answers with `Revoke` as soon as the protocol allows.
    ReleaseRequest {
        /// The lease the message is about.
        lease: LeaseId,
    },
}

impl<M, P> Wire<M, P> {
    /// The lease the message is about (every variant names one).
    pub fn lease(&self) -> LeaseId {
        match self {
            Wire::LeaseRequest { lease, .. }
            | Wire::Assign { lease, .. }
            | Wire::Deliver { lease, .. }
            | Wire::Tick { lease, .. }
            | Wire::Block { lease, .. }
            | Wire::Revoke { lease }
            | Wire::Granted { lease }
            | Wire::Refused { lease }
            | Wire::Consolidate { lease, .. }
            | Wire::Released { lease, .. }
            | Wire::ReleaseRequest { lease } => *lease,
        }
    }

    /// Whether the lessee side (as opposed to the lessor) handles it.
    pub fn is_for_lessee(&self) -> bool {
        matches!(
            self,
            Wire::LeaseRequest { .. }
                | Wire::Assign { .. }
                | Wire::Deliver { .. }
                | Wire::Tick { .. }
                | Wire::Block { .. }
                | Wire::Revoke { .. }
        )
    }
}
