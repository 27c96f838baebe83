//! What a client thread asks of a shard: commands on the shard's two
//! channels (ingest and barriers on the bounded inbox, everything else on
//! the control channel), each with its reply channel where it has one.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use super::metrics::ShardStats;
use crate::func::batches_into;
use crate::func::Restored;
use crate::model::{ActorId, AnyBox, AppId, Barrier, Batch, OperatorId, Seqs};
use crate::plan::{Plan, Rebatch};
use crate::protocol::{LeaseId, ShardId, Time};

/// What a client thread asks of a shard.
pub(crate) enum Command {
    /// Deploy `plan`; the states are those of operators homed here, restored
    /// from a checkpoint, each taken by the operator's first activation.
    Deploy(Arc<Plan>, Vec<(OperatorId, Restored)>, Sender<()>),
    Undeploy(AppId, Sender<()>),
    /// `at_ns`: when the client handed the batch over (node clock), so time
    /// spent in the inbox counts toward latency.
    Ingest {
        app: AppId,
        source: OperatorId,
        at_ns: u64,
        events: Events,
    },
    Barrier {
        app: AppId,
        source: OperatorId,
        barrier: Barrier,
    },
    /// A client's watermark for a source on event time.
    Watermark {
        app: AppId,
        source: OperatorId,
        time: Time,
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
    /// Start a task on the shard's executor, beside the dispatcher.
    Spawn(Arc<TaskMaker>),
    Stop,
    /// Panic the shard's thread (`fault-injection` builds only).
    #[cfg(feature = "fault-injection")]
    Panic,
}

/// Makes the future of a task for a shard (given its number), on that
/// shard's thread: the future need not be `Send`.
pub(crate) type TaskMaker =
    dyn Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + Sync;

/// The events of an ingest command: boxed one by one (what the journal or
/// a replay forwards), or a client's typed batch as it was handed over,
/// cut into batch messages (or boxed, one event) by the shard that takes
/// it, so every allocation is made and freed on one thread (a box made on
/// the client's thread and freed on the shard's costs the allocator far
/// more).
pub(crate) enum Events {
    Boxed(Vec<(u64, AnyBox)>),
    Typed {
        /// A `Vec<(u64, T)>`.
        batch: AnyBox,
        len: usize,
        boxed: fn(AnyBox) -> Vec<(u64, AnyBox)>,
        /// Cut into batches, the first event of sequence number `u64`.
        batches: fn(AnyBox, u64) -> Vec<Batch>,
    },
}

/// What a shard makes of an ingest command's events.
pub(crate) enum Incoming {
    /// One message per event.
    Singles(Vec<(u64, AnyBox)>),
    /// Batch messages of at most `BATCH_EVENTS` events, in order.
    Batches(Vec<Batch>),
}

impl Events {
    /// A client's batch, kept typed until a shard takes it.
    pub(crate) fn typed<T: Clone + Send + 'static>(events: Vec<(u64, T)>) -> Events {
        Events::Typed {
            len: events.len(),
            batch: Box::new(events),
            boxed: |batch| {
                let events = batch
                    .downcast::<Vec<(u64, T)>>()
                    .expect("a typed batch holds the type it was made with");
                events
                    .into_iter()
                    .map(|(k, v)| (k, Box::new(v) as AnyBox))
                    .collect()
            },
            batches: |batch, first_seq| {
                let events = batch
                    .downcast::<Vec<(u64, T)>>()
                    .expect("a typed batch holds the type it was made with");
                let mut out =
                    Vec::with_capacity(events.len().div_ceil(crate::limits::BATCH_EVENTS));
                batches_into(*events, Seqs::From(first_seq), &mut out);
                out
            },
        }
    }

    /// The events as the shard sends them on: two or more as batch
    /// messages (the first event of sequence number `first_seq`; boxed
    /// ones through the source's `rebatch`), one as one message.
    pub(crate) fn incoming(self, first_seq: u64, rebatch: Rebatch) -> Incoming {
        match self {
            Events::Typed {
                batch,
                len,
                batches,
                ..
            } if len > 1 => Incoming::Batches(batches(batch, first_seq)),
            Events::Boxed(v) if v.len() > 1 => Incoming::Batches(rebatch(v, first_seq)),
            events => Incoming::Singles(events.into_boxed()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Events::Boxed(v) => v.len(),
            Events::Typed { len, .. } => *len,
        }
    }

    /// Every event boxed, in order.
    pub(crate) fn into_boxed(self) -> Vec<(u64, AnyBox)> {
        match self {
            Events::Boxed(v) => v,
            Events::Typed { batch, boxed, .. } => boxed(batch),
        }
    }

    /// The events as the client handed them over (they are `T`s).
    pub(crate) fn into_typed<T: 'static>(self) -> Vec<(u64, T)> {
        match self {
            Events::Typed { batch, .. } => *batch
                .downcast::<Vec<(u64, T)>>()
                .expect("a client's batch comes back to its own handle"),
            Events::Boxed(v) => v
                .into_iter()
                .map(|(k, v)| (k, *v.downcast::<T>().expect("events of this source are T")))
                .collect(),
        }
    }
}

impl Command {
    /// Events (or the one barrier) a data command brings in; 0 for control.
    pub(crate) fn items(&self) -> usize {
        match self {
            Command::Ingest { events, .. } => events.len(),
            Command::Barrier { .. } | Command::Watermark { .. } => 1,
            _ => 0,
        }
    }
}
