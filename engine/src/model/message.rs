//! Messages: what flows along an application's edges, and its header.
//!
//! A [`Message`] is plain owned data (`Send`): it crosses shards through the
//! mesh. The header carries everything the engine and the scheduling policy
//! need without looking at the payload: the destination actor and input
//! edge, the kind, the barrier mark of a critical message, the epoch, and the
//! timing fields (ingress time, deadline, priority, sequence).

use std::any::Any;
use std::fmt;

use crate::protocol::{CriticalMark, EdgeId, Epoch, Routable};

/// An application deployed on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(pub u32);

/// An operator (function, source or sink) of an application, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperatorId(pub u16);

/// A virtual actor: one operator of one application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId {
    /// The application the actor belongs to.
    pub app: AppId,
    /// The operator of that application the actor runs.
    pub op: OperatorId,
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "app{}/op{}", self.app.0, self.op.0)
    }
}

/// User data or engine control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A data message: an event or an operator's output.
    User,
    /// A critical message (barrier): window close, checkpoint, full-state query.
    Control,
}

/// Why a barrier was injected; handed to `Function::on_critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarrierKind {
    /// Close the current window (the tag is the window number).
    WindowClose,
    /// Take a checkpoint (durable apps, `AppHandle::checkpoint`); the tag is
    /// the checkpoint's number shifted left by one, its low bit set when
    /// every state is saved whole rather than only its changes.
    Checkpoint,
    /// Observe the full, consolidated state.
    Query,
}

/// The barrier a critical message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barrier {
    /// The barrier's number in its application: barrier `id` closes epoch
    /// `id - 1`.
    pub id: Epoch,
    /// Why it was injected.
    pub kind: BarrierKind,
    /// What the barrier is about, as `kind` defines it (a window number, a
    /// checkpoint's number; see [`BarrierKind`]).
    pub tag: u64,
}

/// What the engine and the scheduling policy read of a message, without
/// looking at its payload.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    /// Destination actor.
    pub actor: ActorId,
    /// Input edge of the destination operator.
    pub edge: EdgeId,
    /// Data or barrier.
    pub kind: Kind,
    /// `Some` on critical messages: the barrier and the sender's count.
    pub critical: Option<CriticalMark>,
    /// The sender's epoch when it emitted the message.
    pub epoch: Epoch,
    /// When the root message entered the node (ns on the node clock);
    /// children inherit it, so sinks measure end-to-end latency.
    pub ingress_ns: u64,
    /// Absolute deadline (ns on the node clock), from the app's SLO.
    pub deadline_ns: u64,
    /// Priority class, stamped at ingress by the policy (by default 1 for a
    /// latency-critical app, 0 for a best-effort one) and inherited by
    /// children; the `priority` policy runs higher first.
    pub priority: u8,
    /// Ingress sequence number of the root message at its source.
    pub seq: u64,
    /// When the message was queued on the shard that runs it (stamped on
    /// arrival at a lessor's or a lessee's shard): FIFO order and queueing
    /// delay.
    pub enqueued_ns: u64,
}

/// A value of any type, owned and sendable: an event or output on its way
/// between operators, typed again by the operator that takes it.
pub type AnyBox = Box<dyn Any + Send>;

/// The payload of a message: typed by the operator that emitted it; the
/// app builder checks types at build time, so a downcast cannot fail.
pub enum Payload {
    /// A user value (an event, or an operator's output).
    Data(AnyBox),
    /// The barrier a critical message belongs to.
    Barrier(Barrier),
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Data(_) => f.write_str("Data(..)"),
            Payload::Barrier(b) => write!(f, "Barrier({b:?})"),
        }
    }
}

/// One message on an application's edge: header, key, payload.
#[derive(Debug)]
pub struct Message {
    /// Routing, barrier and timing fields.
    pub header: Header,
    /// Hash of the message key: selects the partition of keyed state.
    pub key: u64,
    /// The user value, or the barrier of a critical message.
    pub payload: Payload,
}

impl Routable for Message {
    fn key_hash(&self) -> u64 {
        self.key
    }
    fn edge(&self) -> EdgeId {
        self.header.edge
    }
    fn epoch(&self) -> Epoch {
        self.header.epoch
    }
    fn critical(&self) -> Option<CriticalMark> {
        self.header.critical
    }
}

/// A stable 64-bit hash of a key (FxHash-style on bytes), the same on every
/// shard and every run, so routing is reproducible.
pub fn key_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
