//! Messages: what flows along an application's edges, and its header.
//!
//! A [`Message`] is plain owned data (`Send`): it crosses shards through the
//! mesh. The header carries everything the engine and the scheduling policy
//! need without looking at the payload: the destination actor and input
//! edge, the kind, the barrier mark of a critical message, the epoch, and the
//! timing fields (ingress time, deadline, priority, sequence).

use std::any::Any;
use std::fmt;

use crate::protocol::{CriticalMark, EdgeId, Epoch, PartitionSet, Routable, WatermarkMark};

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
    /// Several user values of one sender and one epoch, erased once.
    Batch(Batch),
    /// The barrier a critical message belongs to.
    Barrier(Barrier),
    /// A watermark mark from an upstream instance (or a source): travels
    /// as an input, in order with the data of its link, and goes to the
    /// lessor's clock (`Lessor::on_watermark`), never to a mailbox.
    Mark(WatermarkMark),
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Data(_) => f.write_str("Data(..)"),
            Payload::Batch(b) => write!(f, "Batch({} values)", b.len()),
            Payload::Barrier(b) => write!(f, "Barrier({b:?})"),
            Payload::Mark(m) => write!(f, "Mark({m:?})"),
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

/// A batch of user values, `Vec<(u64, T)>` (key hash, value) boxed once:
/// what a client batch, or a batch run's outputs, travel as, so the path
/// pays one allocation, one header and one queue slot per batch instead of
/// per value. Never empty; at most `limits::BATCH_EVENTS` values. Its
/// message's header is every value's, but for `seq`, which each value
/// keeps (`seqs`), so a function sees the header it would have seen had
/// the values come one by one.
pub struct Batch {
    values: AnyBox,
    len: u32,
    /// The partitions of its keys.
    parts: PartitionSet,
    seqs: Seqs,
    ops: &'static BatchOps,
}

/// The root sequence number (`Header::seq`) of each value of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seqs {
    /// `first`, `first + 1`, ... (a client batch, or outputs one per input).
    From(u64),
    /// One per value.
    Each(Vec<u64>),
}

impl Seqs {
    /// The `i`th value's.
    pub fn get(&self, i: usize) -> u64 {
        match self {
            Seqs::From(first) => first + i as u64,
            Seqs::Each(v) => v[i],
        }
    }

    /// Values `lo..hi`'s.
    pub fn slice(&self, lo: usize, hi: usize) -> Seqs {
        match self {
            Seqs::From(first) => Seqs::From(first + lo as u64),
            Seqs::Each(v) => Seqs::Each(v[lo..hi].to_vec()),
        }
    }
}

/// Builds the `Seqs` of a run's outputs as they are emitted, without an
/// allocation while they stay consecutive.
#[derive(Default)]
pub struct SeqsBuilder {
    first: Option<u64>,
    len: u64,
    each: Option<Vec<u64>>,
}

impl SeqsBuilder {
    /// `n` more outputs of root sequence number `seq`.
    #[inline]
    pub fn push(&mut self, seq: u64, n: usize) {
        // The common case: one output, next in line.
        if n == 1 && self.each.is_none() && self.first.is_some_and(|f| seq == f + self.len) {
            self.len += 1;
            return;
        }
        for _ in 0..n {
            let first = *self.first.get_or_insert(seq);
            match &mut self.each {
                Some(v) => v.push(seq),
                None if seq == first + self.len => {}
                None => {
                    let mut v: Vec<u64> = (first..first + self.len).collect();
                    v.push(seq);
                    self.each = Some(v);
                }
            }
            self.len += 1;
        }
    }

    /// The outputs' seqs (`From(0)` if there were none).
    pub fn finish(self) -> Seqs {
        match self.each {
            Some(v) => Seqs::Each(v),
            None => Seqs::From(self.first.unwrap_or(0)),
        }
    }
}

/// Cut a batch's values (with their seqs) by groups of partitions.
type SplitBy = fn(AnyBox, &Seqs, &[PartitionSet]) -> Vec<(usize, Batch)>;

/// What a batch's element type can do, erased (one static per type).
pub struct BatchOps {
    split: fn(AnyBox) -> Vec<(u64, AnyBox)>,
    split_by: SplitBy,
    clone: fn(&AnyBox) -> AnyBox,
}

/// The element type of a batch: sendable values that can be copied for
/// fan-out.
pub trait BatchValue: Clone + Send + 'static {
    /// The erased operations on `Vec<(u64, Self)>`.
    const OPS: BatchOps = BatchOps {
        split: |b| {
            let v = b
                .downcast::<Vec<(u64, Self)>>()
                .expect("a batch holds the type it was made with");
            v.into_iter()
                .map(|(k, x)| (k, Box::new(x) as AnyBox))
                .collect()
        },
        split_by: |b, seqs, groups| {
            let v = b
                .downcast::<Vec<(u64, Self)>>()
                .expect("a batch holds the type it was made with");
            let mut pieces: Vec<(Vec<(u64, Self)>, SeqsBuilder)> =
                groups.iter().map(|_| Default::default()).collect();
            for (i, (k, x)) in v.into_iter().enumerate() {
                let p = PartitionSet::partition_of(k);
                let g = groups.iter().position(|g| g.contains(p));
                let piece = &mut pieces[g.expect("the groups cover the batch's keys")];
                piece.0.push((k, x));
                piece.1.push(seqs.get(i), 1);
            }
            let pieces = pieces.into_iter().enumerate();
            pieces
                .filter_map(|(g, (v, s))| Batch::of(v, s.finish()).map(|b| (g, b)))
                .collect()
        },
        clone: |b| {
            let v = b
                .downcast_ref::<Vec<(u64, Self)>>()
                .expect("a batch holds the type it was made with");
            Box::new(v.clone())
        },
    };
}

impl<T: Clone + Send + 'static> BatchValue for T {}

impl Batch {
    /// `values`, of root sequence numbers `seqs`, as one batch; `None` if
    /// there are none.
    pub fn of<T: BatchValue>(values: Vec<(u64, T)>, seqs: Seqs) -> Option<Batch> {
        if values.is_empty() {
            return None;
        }
        if let Seqs::Each(v) = &seqs {
            assert_eq!(v.len(), values.len(), "one seq per value");
        }
        assert!(
            values.len() <= u32::MAX as usize,
            "a batch's length fits u32"
        );
        let parts = values.iter().fold(PartitionSet::EMPTY, |s, (k, _)| {
            s.union(PartitionSet::single(PartitionSet::partition_of(*k)))
        });
        Some(Batch {
            len: values.len() as u32,
            values: Box::new(values),
            parts,
            seqs,
            ops: &T::OPS,
        })
    }

    /// How many values it holds (at least one).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Never: a batch holds at least one value.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The partitions of its keys.
    pub fn partitions(&self) -> PartitionSet {
        self.parts
    }

    /// Its values, if they are of type `T`.
    pub fn values<T: 'static>(&self) -> Option<&[(u64, T)]> {
        self.values
            .downcast_ref::<Vec<(u64, T)>>()
            .map(Vec::as_slice)
    }

    /// The first value's root sequence number: its message's `Header::seq`.
    pub fn first_seq(&self) -> u64 {
        self.seqs.get(0)
    }

    /// A copy, for a second downstream edge.
    pub fn clone_batch(&self) -> Batch {
        Batch {
            values: (self.ops.clone)(&self.values),
            len: self.len,
            parts: self.parts,
            seqs: self.seqs.clone(),
            ops: self.ops,
        }
    }

    /// The values, as the `Vec<(u64, T)>` they were made from, and their
    /// seqs.
    pub fn into_parts(self) -> (AnyBox, Seqs) {
        (self.values, self.seqs)
    }

    /// One batch per group of partitions holding some of its keys (the
    /// groups cover them), each in this batch's order, with its group.
    pub fn split_by(self, groups: &[PartitionSet]) -> Vec<(usize, Batch)> {
        (self.ops.split_by)(self.values, &self.seqs, groups)
    }

    /// Each value boxed alone, with its seq, in order.
    pub fn split(self) -> Vec<(u64, u64, AnyBox)> {
        let seqs = self.seqs;
        (self.ops.split)(self.values)
            .into_iter()
            .enumerate()
            .map(|(i, (k, v))| (k, seqs.get(i), v))
            .collect()
    }
}

impl Routable for Message {
    fn key_hash(&self) -> u64 {
        self.key
    }
    fn weight(&self) -> u64 {
        match &self.payload {
            Payload::Batch(b) => b.len() as u64,
            _ => 1,
        }
    }
    fn partitions(&self) -> PartitionSet {
        match &self.payload {
            Payload::Batch(b) => b.partitions(),
            _ => PartitionSet::single(PartitionSet::partition_of(self.key)),
        }
    }
    fn split_by(self, groups: &[PartitionSet]) -> Vec<(usize, Message)> {
        let Message {
            header,
            payload,
            key,
        } = self;
        match payload {
            Payload::Batch(b) => b
                .split_by(groups)
                .into_iter()
                .map(|(g, b)| {
                    let header = Header {
                        seq: b.first_seq(),
                        ..header
                    };
                    (
                        g,
                        Message {
                            header,
                            key,
                            payload: Payload::Batch(b),
                        },
                    )
                })
                .collect(),
            payload => {
                let g = groups.iter().position(|g| g.contains_key(key));
                let g = g.expect("the groups cover the message's key");
                vec![(
                    g,
                    Message {
                        header,
                        key,
                        payload,
                    },
                )]
            }
        }
    }
    fn split(self) -> Vec<Message> {
        let Message {
            header, payload, ..
        } = self;
        match payload {
            Payload::Batch(b) => b
                .split()
                .into_iter()
                .map(|(key, seq, v)| Message {
                    header: Header { seq, ..header },
                    key,
                    payload: Payload::Data(v),
                })
                .collect(),
            payload => vec![Message {
                header,
                key: self.key,
                payload,
            }],
        }
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
