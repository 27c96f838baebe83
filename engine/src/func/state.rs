//! Operator state and the strategies that split it across a lessor and its
//! lessees ([`OperatorState::STRATEGY`]):
//! - [`Keyed`]: a map by message key; lessees own hash partitions, per-key
//!   order is kept across scaling;
//! - [`Merged`]: a value with an identity (`Default`) and a user [`Merge`];
//! - [`Sequential`]: any value; the operator is never leased.
//!
//! Invariant: the parts of one `Keyed` state on different instances hold
//! disjoint keys; `absorb` asserts it when parts come home.

use std::collections::HashMap;

use crate::model::hash::{KeyMap, KeySet};
use std::hash::Hash;

use crate::protocol::{PartitionSet, Strategy};

/// State of an operator, with the strategy that splits it.
///
/// Its methods are the engine's, for moving state between a lessor and its
/// lessees; a function should not call them on its own state (to reset a
/// `Keyed` state, `drain` it or assign `Keyed::default()`).
pub trait OperatorState: Default + Send + 'static {
    /// How the protocol may split this state across a lessor and lessees.
    const STRATEGY: Strategy;
    /// Remove and return the entries of these partitions (`Keyed` only).
    fn take_partitions(&mut self, parts: PartitionSet) -> Self;
    /// Fold another instance's part in.
    fn absorb(&mut self, other: Self);
    /// Remove and return the whole state, leaving an empty one of the same
    /// kind (consolidation).
    fn take_all(&mut self) -> Self {
        std::mem::take(self)
    }
}

/// Combine two partial states of a [`Merged`] operator. Must be associative
/// and commutative, with `Default` as its identity.
pub trait Merge {
    /// Fold `other` into `self`.
    fn merge(&mut self, other: Self);
}

macro_rules! merge_by_add {
    ($($t:ty)*) => {$(
        impl Merge for $t {
            fn merge(&mut self, other: Self) { *self += other; }
        }
    )*};
}
merge_by_add!(u32 u64 i64 usize f64);

/// The state of a stateless operator: parallel on any instance.
impl Merge for () {
    fn merge(&mut self, _: ()) {}
}

impl<K: Hash + Eq, V: Merge> Merge for HashMap<K, V> {
    fn merge(&mut self, other: Self) {
        for (k, v) in other {
            match self.get_mut(&k) {
                Some(mine) => mine.merge(v),
                None => {
                    self.insert(k, v);
                }
            }
        }
    }
}

/// Keyed state: one value per message key hash. Lessees own hash partitions;
/// per-key message order is kept across scaling.
///
/// A function writes the key of the message it runs (the `key` it is
/// given): on a lessee, another key may be owned by another instance, and
/// the two values would collide when the parts come home (the one coming
/// home wins). A state shared by every key belongs in a `Merged` operator.
///
/// The state of a durable operator also tracks which keys may have changed
/// since its last checkpoint (every key reached through a `&mut` accessor),
/// so a checkpoint can save only those (see `DurableState`). Tracking is off for
/// operators that are not durable, and in a state a function replaced with
/// `Keyed::default()`: such a state is saved whole at the next checkpoint.
/// A change made through a shared reference (interior mutability in a
/// value reached by `get` or `iter`) is not seen: write through `get_mut`,
/// `entry`, `insert` or `iter_mut`.
#[derive(Debug)]
pub struct Keyed<V> {
    map: KeyMap<V>,
    /// Keys written since the last checkpoint; `None`: not tracked.
    changed: Option<KeySet>,
}

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Keyed {
            map: KeyMap::default(),
            changed: None,
        }
    }
}

impl<V> Keyed<V> {
    pub(crate) fn map_ref(&self) -> &KeyMap<V> {
        &self.map
    }
    pub(crate) fn from_parts(map: KeyMap<V>, changed: Option<KeySet>) -> Self {
        Keyed { map, changed }
    }
    /// Remove `key`'s entry without marking it changed.
    pub(crate) fn take_entry(&mut self, key: u64) -> Option<V> {
        self.map.remove(&key)
    }
    /// The whole map, leaving it empty, without marking anything changed.
    pub(crate) fn take_map(&mut self) -> KeyMap<V> {
        std::mem::take(&mut self.map)
    }
    /// Put entries (back) without marking them changed.
    pub(crate) fn put_back(&mut self, entries: KeyMap<V>) {
        if self.map.is_empty() {
            self.map = entries;
        } else {
            self.map.extend(entries);
        }
    }
    /// Keys changed since the last checkpoint (`None` when not tracked).
    pub(crate) fn changed(&self) -> Option<&KeySet> {
        self.changed.as_ref()
    }
    /// Track changes from now on, starting from none.
    pub(crate) fn track(&mut self) {
        self.changed = Some(KeySet::default());
    }
    /// A checkpoint saved the state (whole, or its changes): no change is
    /// pending any more, and changes are tracked from here on (a state that
    /// was not tracking, e.g. one a function replaced with `default()`, was
    /// saved whole).
    pub(crate) fn forget_changes(&mut self) {
        match &mut self.changed {
            Some(c) => c.clear(),
            None => self.changed = Some(KeySet::default()),
        }
    }
    #[inline]
    fn touch(&mut self, key: u64) {
        if let Some(c) = &mut self.changed {
            c.insert(key);
        }
    }
    fn touch_all(&mut self) {
        if let Some(c) = &mut self.changed {
            c.extend(self.map.keys().copied());
        }
    }
    /// The value of `key`, if any.
    pub fn get(&self, key: u64) -> Option<&V> {
        self.map.get(&key)
    }
    /// The value of `key` to change, if any (marks it changed).
    pub fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        self.touch(key);
        self.map.get_mut(&key)
    }
    /// The value of `key`, created with `Default` if absent.
    pub fn entry(&mut self, key: u64) -> &mut V
    where
        V: Default,
    {
        self.touch(key);
        self.map.entry(key).or_default()
    }
    /// Set `key`'s value; returns the one it replaced.
    pub fn insert(&mut self, key: u64, v: V) -> Option<V> {
        self.touch(key);
        self.map.insert(key, v)
    }
    /// Remove `key`'s value and return it.
    pub fn remove(&mut self, key: u64) -> Option<V> {
        self.touch(key);
        self.map.remove(&key)
    }
    /// Keys held by this instance.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether this instance holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Every (key, value) of this instance, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.map.iter().map(|(k, v)| (*k, v))
    }
    /// Every (key, value) to change (marks them all changed).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut V)> {
        self.touch_all();
        self.map.iter_mut().map(|(k, v)| (*k, v))
    }
    /// Remove and yield every entry (e.g. at a window close).
    pub fn drain(&mut self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.touch_all();
        self.map.drain()
    }
}

impl<V: Send + 'static> OperatorState for Keyed<V> {
    const STRATEGY: Strategy = Strategy::Keyed;
    fn take_partitions(&mut self, parts: PartitionSet) -> Self {
        let moving: Vec<u64> = self
            .map
            .keys()
            .copied()
            .filter(|k| parts.contains_key(*k))
            .collect();
        let mut out = KeyMap::with_capacity_and_hasher(moving.len(), Default::default());
        for k in moving {
            if let Some(v) = self.map.remove(&k) {
                out.insert(k, v);
            }
        }
        // Pending changes travel with their keys (removed keys included).
        let changed = self.changed.as_mut().map(|mine| {
            let theirs: KeySet = mine
                .iter()
                .copied()
                .filter(|k| parts.contains_key(*k))
                .collect();
            mine.retain(|k| !theirs.contains(k));
            theirs
        });
        Keyed { map: out, changed }
    }
    fn take_all(&mut self) -> Self {
        // What stays keeps tracking, empty.
        let changed = self.changed.as_mut().map(std::mem::take);
        Keyed {
            map: std::mem::take(&mut self.map),
            changed,
        }
    }
    fn absorb(&mut self, other: Self) {
        for (k, v) in other.map {
            let prev = self.map.insert(k, v);
            debug_assert!(prev.is_none(), "key {k:#x} held by two instances");
        }
        // A part that did not track may have changed anything: then the
        // whole is not tracked (saved whole at the next checkpoint).
        self.changed = match (self.changed.take(), other.changed) {
            (Some(mut mine), Some(theirs)) => {
                mine.extend(theirs);
                Some(mine)
            }
            _ => None,
        };
    }
}

/// Mergeable state: lessees start from `Default` and their partials are
/// combined with [`Merge`].
#[derive(Debug, Default)]
pub struct Merged<S>(pub S);

impl<S: Merge + Default + Send + 'static> OperatorState for Merged<S> {
    const STRATEGY: Strategy = Strategy::Mergeable;
    fn take_partitions(&mut self, _parts: PartitionSet) -> Self {
        Merged(S::default())
    }
    fn absorb(&mut self, other: Self) {
        self.0.merge(other.0);
    }
}

/// Order-sensitive state: the operator is never leased.
#[derive(Debug, Default)]
pub struct Sequential<S>(pub S);

impl<S: Default + Send + 'static> OperatorState for Sequential<S> {
    const STRATEGY: Strategy = Strategy::Sequential;
    fn take_partitions(&mut self, _parts: PartitionSet) -> Self {
        Sequential(S::default())
    }
    /// A sequential state is never split, so what comes back is the whole.
    fn absorb(&mut self, other: Self) {
        *self = other;
    }
}
