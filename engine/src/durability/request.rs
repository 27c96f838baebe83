//! What the journal of a durable app is asked, and how it hands logged input
//! on: the journal's request types ([`JournalMsg`]), the [`Forward`] seam to
//! the shards, and the meaning of a checkpoint barrier's tag.
//!
//! A leaf: the client API (`api`) sends these requests, the shards
//! (`runtime`) implement `Forward` and decode checkpoint tags, and the
//! journal serves them; none of them needs the others' types.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use rkyv::util::AlignedVec;

use crate::model::{AnyBox, BarrierKind, EngineError, OperatorId, Result};
use crate::plan::SavedState;
use crate::protocol::Epoch;

/// Events handed back with the reason they were not acknowledged.
pub(crate) type IngestReply = std::result::Result<(), (EngineError, Vec<(u64, AnyBox)>)>;

/// A durable send's events, until the journal takes them to log them. A
/// client whose timeout passes first takes them back: then they were never
/// logged, and the journal skips the request.
pub(crate) type EventSlot = Arc<Mutex<Option<Vec<(u64, AnyBox)>>>>;

/// What the journal tells a durable send, in order: `Logged` then
/// `Applied`, or one of the others.
pub(crate) enum IngestOutcome {
    /// Not logged: the events come back.
    Refused(EngineError, Vec<(u64, AnyBox)>),
    /// The log failed while the request was being written: some or all of
    /// it may be in the log (and applied by the next deploy). Nothing comes
    /// back, so nothing can be sent twice.
    Unknown(EngineError),
    /// In the log (committed): applied now or, if the node stops first, by
    /// recovery.
    Logged,
    /// Handed to the source's shard.
    Applied,
}

/// What the journal thread is asked.
pub(crate) enum JournalMsg {
    /// Log these events (already encoded by the client), then forward them.
    Ingest {
        source: OperatorId,
        at_ns: u64,
        events: EventSlot,
        encoded: Vec<AlignedVec>,
        /// flume: a blocking client and a task on a shard both wait on it.
        reply: flume::Sender<IngestOutcome>,
    },
    /// Log a client barrier, then inject it at every source.
    Barrier {
        kind: BarrierKind,
        tag: u64,
        reply: flume::Sender<Result<Epoch>>,
    },
    /// Take a checkpoint: the reply carries its number once committed.
    Checkpoint {
        reply: Sender<Result<u64>>,
    },
    /// From a shard: an operator's state for a checkpoint.
    State(SavedState),
    Stop,
}

/// How the journal hands what it logged to the app's shards. The runtime's
/// ingress handle implements it, so the journal never sees a shard.
pub(crate) trait Forward: Send + Sync {
    /// Replay: hand events to their source's shard, waiting for room under
    /// the app's message limit and then out a full inbox, for as long as
    /// the node runs. The events come back if the app is closed or the node
    /// stopped.
    fn forward_ingest(
        &self,
        source: OperatorId,
        at_ns: u64,
        events: Vec<(u64, AnyBox)>,
    ) -> IngestReply;
    /// Like `forward_ingest` for events whose client reserved their room
    /// before they were logged (`AppIngress::reserve`): never refused for
    /// room; a refusal gives the reservation back.
    fn forward_reserved(
        &self,
        source: OperatorId,
        at_ns: u64,
        events: Vec<(u64, AnyBox)>,
    ) -> IngestReply;
    /// Inject a barrier at every source now, all or nothing.
    fn inject_now(&self, kind: BarrierKind, tag: u64) -> Result<Epoch>;
    /// `Ok` while the app takes input and the node runs.
    fn ensure_open(&self) -> Result<()>;
    /// Most events in one ingest batch.
    fn max_batch(&self) -> usize;
    /// The node clock, ns.
    fn now_ns(&self) -> u64;
}

/// The tag of a checkpoint barrier: the checkpoint's number, and whether
/// every operator saves its whole state (else only its changes, where it
/// can).
pub(crate) fn checkpoint_tag(id: u64, full: bool) -> u64 {
    assert!(id < 1 << 63, "checkpoint number {id} out of range");
    id << 1 | u64::from(full)
}

/// The checkpoint number and fullness of a checkpoint barrier's tag.
pub(crate) fn split_checkpoint_tag(tag: u64) -> (u64, bool) {
    (tag >> 1, tag & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_tags_round_trip() {
        for id in [0, 1, 7, (1 << 63) - 1] {
            for full in [false, true] {
                assert_eq!(split_checkpoint_tag(checkpoint_tag(id, full)), (id, full));
            }
        }
    }
}
