//! The protocol's messages between a lessor's shard and a lessee's shard.
//!
//! Every variant names the actor and the lease it is about, so a shard can
//! demultiplex it to the right instance. Variants are plain owned data: they
//! cross shards, so they carry no reference to anything shard-local.

use super::{Epoch, LeaseId, PartitionSet, ShardId, Strategy};

#[derive(Debug)]
pub enum Wire<M, P> {
    // ---- lessor -> lessee's shard ----
    /// Ask a shard to host a lessee of this actor.
    LeaseRequest {
        lease: LeaseId,
        lessor: ShardId,
        strategy: Strategy,
    },
    /// Hand the lessee partitions (with their state), or resume it after a
    /// barrier; `epoch` is the lessor's epoch from now on.
    Assign {
        lease: LeaseId,
        parts: PartitionSet,
        state: Option<P>,
        epoch: Epoch,
    },
    /// A data message for the lessee to run.
    Deliver {
        lease: LeaseId,
        msg: M,
    },
    /// Barrier `barrier` is complete at the lessor: after running everything
    /// delivered before this, send all state home and wait.
    Block {
        lease: LeaseId,
        barrier: Epoch,
    },
    /// Run everything delivered before this, send all state home, and go.
    Revoke {
        lease: LeaseId,
    },

    // ---- lessee's shard -> lessor ----
    Granted {
        lease: LeaseId,
    },
    Refused {
        lease: LeaseId,
    },
    /// Answer to `Block`: the lessee's whole partial state.
    Consolidate {
        lease: LeaseId,
        barrier: Epoch,
        state: P,
    },
    /// Answer to `Revoke`: the lessee's whole state; the lessee is gone.
    Released {
        lease: LeaseId,
        state: P,
    },
    /// The lessee's shard wants its core back (idle lessee, or a busy shard).
    ReleaseRequest {
        lease: LeaseId,
    },
}

impl<M, P> Wire<M, P> {
    pub fn lease(&self) -> LeaseId {
        match self {
            Wire::LeaseRequest { lease, .. }
            | Wire::Assign { lease, .. }
            | Wire::Deliver { lease, .. }
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
                | Wire::Block { .. }
                | Wire::Revoke { .. }
        )
    }
}
