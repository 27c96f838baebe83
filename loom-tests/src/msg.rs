//! The message and state types the models run the protocol on.
//!
//! [`Msg`] is the smallest thing that is [`Routable`]: an id, a key, an edge,
//! an epoch and an optional barrier mark. [`State`] records, per key, the ids
//! of the messages that ran on an instance in run order, so the state itself
//! is the observation: a critical sees exactly the ids folded into the
//! consolidated state, exactly-once is a count of ids, per-key FIFO is the
//! order of a key's list. Keeping observation inside the state (instead of a
//! shared log) means the models add no synchronisation of their own.

use std::collections::{BTreeMap, BTreeSet};

use dirigo_engine::protocol::{
    CriticalMark, EdgeId, Epoch, PartialState, PartitionSet, Routable, PARTITIONS,
};

use crate::fault::Fault;

/// A message of the models. Data messages have unique ids; a critical has
/// `critical: Some(..)` and an id no data message uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    /// Unique among data messages; a critical's is derived from its barrier
    /// and edge (see [`Msg::critical`]).
    pub id: u64,
    /// The key, which is also its hash: it picks the partition directly.
    pub key: u64,
    /// The input edge of the actor it arrives on.
    pub edge: EdgeId,
    /// The sender's epoch when it emitted the message (a critical of barrier
    /// `b` carries `b - 1`).
    pub epoch: Epoch,
    /// The barrier mark: `Some` for a critical, `None` for data.
    pub critical: Option<CriticalMark>,
}

/// Ids of critical messages start here, far above any data id.
const CRITICAL_IDS: u64 = 1 << 32;

impl Msg {
    /// A data message of `epoch` on `edge`.
    pub fn data(id: u64, key: u64, edge: EdgeId, epoch: Epoch) -> Msg {
        assert!(id < CRITICAL_IDS, "data ids stay below {CRITICAL_IDS}");
        Msg {
            id,
            key,
            edge,
            epoch,
            critical: None,
        }
    }

    /// The critical message of `barrier` on `edge`, announcing that its
    /// sender emitted `sent` data messages on that edge in epoch `barrier - 1`.
    pub fn critical(edge: EdgeId, barrier: Epoch, sent: u64) -> Msg {
        assert!(barrier > 0, "barrier 0 does not exist");
        Msg {
            id: CRITICAL_IDS + barrier * 16 + u64::from(edge),
            key: 0,
            edge,
            epoch: barrier - 1,
            critical: Some(CriticalMark { barrier, sent }),
        }
    }

    /// Whether this is a data message (it has no barrier mark).
    pub fn is_data(&self) -> bool {
        self.critical.is_none()
    }
}

impl Routable for Msg {
    fn key_hash(&self) -> u64 {
        self.key
    }
    fn edge(&self) -> EdgeId {
        self.edge
    }
    fn epoch(&self) -> Epoch {
        self.epoch
    }
    fn critical(&self) -> Option<CriticalMark> {
        self.critical
    }
}

/// State in transit: per key, the ids that ran, in run order.
pub type Part = BTreeMap<u64, Vec<u64>>;

/// The state of one instance (lessor or lessee).
#[derive(Debug)]
pub struct State {
    keyed: bool,
    keys: Part,
    fault: Fault,
}

impl State {
    /// The identity state of an instance.
    pub fn new(keyed: bool, fault: Fault) -> State {
        State {
            keyed,
            keys: Part::new(),
            fault,
        }
    }

    /// Run a data message: append its id to its key's list.
    pub fn apply(&mut self, msg: &Msg) {
        self.keys.entry(msg.key).or_default().push(msg.id);
    }

    /// Every id folded into this state.
    pub fn ids(&self) -> BTreeSet<u64> {
        self.keys.values().flatten().copied().collect()
    }

    /// Per key held here, the ids that ran on this instance, in run order.
    pub fn keys(&self) -> &Part {
        &self.keys
    }

    /// Whether this instance holds no id (a key with an empty list counts as
    /// absent).
    pub fn is_empty(&self) -> bool {
        self.keys.values().all(Vec::is_empty)
    }
}

impl PartialState for State {
    type Part = Part;

    fn take_partitions(&mut self, parts: PartitionSet) -> Part {
        let moving: Vec<u64> = self
            .keys
            .keys()
            .copied()
            .filter(|k| parts.contains_key(*k))
            .collect();
        moving
            .into_iter()
            .filter_map(|k| self.keys.remove(&k).map(|ids| (k, ids)))
            .collect()
    }

    fn take_all(&mut self) -> Part {
        std::mem::take(&mut self.keys)
    }

    fn absorb(&mut self, mut part: Part) {
        if self.fault == Fault::LossyAbsorb {
            // Broken on purpose: lose the newest id of the incoming part.
            if let Some(ids) = part.values_mut().rev().find(|ids| !ids.is_empty()) {
                ids.pop();
            }
        }
        for (k, mut ids) in part {
            let mine = self.keys.entry(k).or_default();
            // Keyed: a key lives on one instance at a time, so a part never
            // meets a key this instance still holds.
            assert!(
                !self.keyed || mine.is_empty(),
                "key {k} on two instances at once"
            );
            mine.append(&mut ids);
        }
    }
}

/// The lowest key (as its own hash) whose partition lies in `range`. The
/// lessor of a keyed actor gives a new lessee its lowest partitions
/// (`0..32` of 64 when it owns them all), so `key_in(0..32)` is a key that
/// moves to the first lessee and `key_in(32..64)` one that stays home.
pub fn key_in(range: std::ops::Range<u32>) -> u64 {
    assert!(range.end <= PARTITIONS && !range.is_empty());
    (0u64..)
        .find(|k| range.contains(&PartitionSet::partition_of(*k)))
        .unwrap_or(0)
}

/// The `n`-th smallest key (0-based) whose partition lies in `range`.
pub fn nth_key_in(range: std::ops::Range<u32>, n: usize) -> u64 {
    assert!(range.end <= PARTITIONS && !range.is_empty());
    (0u64..)
        .filter(|k| range.contains(&PartitionSet::partition_of(*k)))
        .nth(n)
        .unwrap_or(0)
}
