//! What a client thread asks of a shard: commands on the shard's two
//! channels (ingest and barriers on the bounded inbox, everything else on
//! the control channel), each with its reply channel where it has one.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use super::metrics::ShardStats;
use crate::func::ErasedState;
use crate::model::{ActorId, AnyBox, AppId, Barrier, OperatorId};
use crate::plan::Plan;
use crate::protocol::{LeaseId, ShardId};

/// What a client thread asks of a shard.
pub(crate) enum Command {
    /// Deploy `plan`; the states are those of operators homed here, restored
    /// from a checkpoint, each taken by the operator's first activation.
    Deploy(
        Arc<Plan>,
        Vec<(OperatorId, Box<dyn ErasedState>)>,
        Sender<()>,
    ),
    Undeploy(AppId, Sender<()>),
    /// `at_ns`: when the client handed the batch over (node clock), so time
    /// spent in the inbox counts toward latency.
    Ingest {
        app: AppId,
        source: OperatorId,
        at_ns: u64,
        events: Vec<(u64, AnyBox)>,
    },
    Barrier {
        app: AppId,
        source: OperatorId,
        barrier: Barrier,
    },
    Lease {
        actor: ActorId,
        shard: ShardId,
        reply: Sender<Option<LeaseId>>,
    },
    Revoke {
        actor: ActorId,
        shard: Option<ShardId>,
        reply: Sender<usize>,
    },
    Stats(Sender<ShardStats>),
    Stop,
    /// Panic the shard's thread (`fault-injection` builds only).
    #[cfg(feature = "fault-injection")]
    Panic,
}

impl Command {
    /// Events (or the one barrier) a data command brings in; 0 for control.
    pub(crate) fn items(&self) -> usize {
        match self {
            Command::Ingest { events, .. } => events.len(),
            Command::Barrier { .. } => 1,
            _ => 0,
        }
    }
}
