//! User functions and their per-operator state, and the type-erased form the
//! shards run.
//!
//! A user writes a [`Function`]: typed input, typed output, typed state. The
//! state type picks the strategy by which the dual-mode protocol may split it
//! across a lessor and its lessees ([`OperatorState::STRATEGY`]):
//! - [`Keyed`]: a map by message key; lessees own hash partitions;
//! - [`Merged`]: a value with an identity (`Default`) and a user [`Merge`];
//! - [`Sequential`]: any value; the operator is never leased.
//!
//! Everything typed is erased at the app builder boundary into
//! [`ErasedFunction`] / [`ErasedState`], so a shard can hold operators of
//! every application in one table. The builder checks edge types when the app
//! is built, so the downcasts below cannot fail at run time.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::durable::{DurableState, StateCodec};
use crate::message::{Barrier, Header};
use crate::protocol::{EdgeId, PartitionSet, Strategy};

/// Where a function's outputs go, and what it may know of the message.
pub struct Context<'a, O> {
    header: &'a Header,
    out: &'a mut Vec<(u64, O)>,
    now_ns: u64,
}

impl<'a, O> Context<'a, O> {
    pub(crate) fn new(header: &'a Header, out: &'a mut Vec<(u64, O)>, now_ns: u64) -> Self {
        Context {
            header,
            out,
            now_ns,
        }
    }

    /// Emit an output with the given key hash (see [`crate::key_hash`]) to
    /// every downstream operator.
    pub fn emit(&mut self, key: u64, value: O) {
        self.out.push((key, value));
    }

    /// The header of the message being processed (for a critical message,
    /// the header of the barrier's message on the edge being run).
    pub fn header(&self) -> &Header {
        self.header
    }

    /// The node clock, ns since the node started.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }
}

/// A stateful function: the body of an operator (a virtual actor).
///
/// `on_message` runs on the lessor or on any lessee, on that instance's part
/// of the state; `on_critical` runs on the lessor alone, on the whole state,
/// after every earlier message and before every later one.
pub trait Function: Send + Sync + 'static {
    type In: Send + 'static;
    type Out: Clone + Send + 'static;
    type State: OperatorState;

    fn on_message(
        &self,
        state: &mut Self::State,
        key: u64,
        input: Self::In,
        ctx: &mut Context<'_, Self::Out>,
    );

    /// A critical message of barrier `barrier` arrived on input `edge`.
    fn on_critical(
        &self,
        _state: &mut Self::State,
        _barrier: &Barrier,
        _edge: EdgeId,
        _ctx: &mut Context<'_, Self::Out>,
    ) {
    }
}

/// State of an operator, with the strategy that splits it.
///
/// Its methods are the engine's, for moving state between a lessor and its
/// lessees; a function should not call them on its own state (to reset a
/// `Keyed` state, `drain` it or assign `Keyed::default()`).
pub trait OperatorState: Default + Send + 'static {
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
/// The state of a durable operator also tracks which keys may have changed
/// since its last checkpoint (every key reached through a `&mut` accessor),
/// so a checkpoint can save only those (see `durable`). Tracking is off for
/// operators that are not durable, and in a state a function replaced with
/// `Keyed::default()`: such a state is saved whole at the next checkpoint.
/// A change made through a shared reference (interior mutability in a
/// value reached by `get` or `iter`) is not seen: write through `get_mut`,
/// `entry`, `insert` or `iter_mut`.
#[derive(Debug)]
pub struct Keyed<V> {
    map: HashMap<u64, V>,
    /// Keys written since the last checkpoint; `None`: not tracked.
    changed: Option<HashSet<u64>>,
}

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Keyed {
            map: HashMap::new(),
            changed: None,
        }
    }
}

impl<V> Keyed<V> {
    pub(crate) fn map_ref(&self) -> &HashMap<u64, V> {
        &self.map
    }
    pub(crate) fn from_parts(map: HashMap<u64, V>, changed: Option<HashSet<u64>>) -> Self {
        Keyed { map, changed }
    }
    /// Remove `key`'s entry without marking it changed.
    pub(crate) fn take_entry(&mut self, key: u64) -> Option<V> {
        self.map.remove(&key)
    }
    /// The whole map, leaving it empty, without marking anything changed.
    pub(crate) fn take_map(&mut self) -> HashMap<u64, V> {
        std::mem::take(&mut self.map)
    }
    /// Put entries (back) without marking them changed.
    pub(crate) fn put_back(&mut self, entries: HashMap<u64, V>) {
        if self.map.is_empty() {
            self.map = entries;
        } else {
            self.map.extend(entries);
        }
    }
    /// Keys changed since the last checkpoint (`None` when not tracked).
    pub(crate) fn changed(&self) -> Option<&HashSet<u64>> {
        self.changed.as_ref()
    }
    /// Track changes from now on, starting from none.
    pub(crate) fn track(&mut self) {
        self.changed = Some(HashSet::new());
    }
    /// A checkpoint saved the state (whole, or its changes): no change is
    /// pending any more, and changes are tracked from here on (a state that
    /// was not tracking, e.g. one a function replaced with `default()`, was
    /// saved whole).
    pub(crate) fn forget_changes(&mut self) {
        match &mut self.changed {
            Some(c) => c.clear(),
            None => self.changed = Some(HashSet::new()),
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
    pub fn get(&self, key: u64) -> Option<&V> {
        self.map.get(&key)
    }
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
    pub fn insert(&mut self, key: u64, v: V) -> Option<V> {
        self.touch(key);
        self.map.insert(key, v)
    }
    pub fn remove(&mut self, key: u64) -> Option<V> {
        self.touch(key);
        self.map.remove(&key)
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.map.iter().map(|(k, v)| (*k, v))
    }
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
        let mut out = HashMap::with_capacity(moving.len());
        for k in moving {
            if let Some(v) = self.map.remove(&k) {
                out.insert(k, v);
            }
        }
        // Pending changes travel with their keys (removed keys included).
        let changed = self.changed.as_mut().map(|mine| {
            let theirs: HashSet<u64> = mine
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

// ---------------------------------------------------------------------
// Erased forms
// ---------------------------------------------------------------------

pub(crate) type AnyBox = Box<dyn Any + Send>;

/// The state of one actor instance, type-erased.
pub trait ErasedState: Send {
    fn take_partitions(&mut self, parts: PartitionSet) -> Box<dyn ErasedState>;
    fn take_all(&mut self) -> Box<dyn ErasedState>;
    fn absorb(&mut self, other: Box<dyn ErasedState>);
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<S: OperatorState> ErasedState for S {
    fn take_partitions(&mut self, parts: PartitionSet) -> Box<dyn ErasedState> {
        Box::new(OperatorState::take_partitions(self, parts))
    }
    fn take_all(&mut self) -> Box<dyn ErasedState> {
        Box::new(OperatorState::take_all(self))
    }
    fn absorb(&mut self, other: Box<dyn ErasedState>) {
        let other = other
            .into_any()
            .downcast::<S>()
            .expect("parts of one operator's state have the operator's state type");
        OperatorState::absorb(self, *other);
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// An operator's function, type-erased.
pub(crate) trait ErasedFunction: Send + Sync {
    fn strategy(&self) -> Strategy;
    fn new_state(&self) -> Box<dyn ErasedState>;
    fn run(
        &self,
        state: &mut dyn ErasedState,
        key: u64,
        input: AnyBox,
        header: &Header,
        now_ns: u64,
        out: &mut Vec<(u64, AnyBox)>,
    );
    fn run_critical(
        &self,
        state: &mut dyn ErasedState,
        barrier: &Barrier,
        header: &Header,
        now_ns: u64,
        out: &mut Vec<(u64, AnyBox)>,
    );
    /// Copy an output for the second and later downstream edges.
    fn clone_output(&self, v: &AnyBox) -> AnyBox;
    /// How to checkpoint and restore this operator's state, if it is
    /// durable (see `durable`).
    fn state_codec(&self) -> Option<StateCodec>;
}

pub(crate) struct Typed<F> {
    f: F,
    codec: Option<StateCodec>,
}

impl<F: Function> Typed<F> {
    pub fn new(f: F) -> Self {
        Typed { f, codec: None }
    }
}

impl<F: Function> Typed<F>
where
    F::State: DurableState,
{
    pub fn durable(f: F) -> Self {
        Typed {
            f,
            codec: Some(StateCodec::of::<F::State>()),
        }
    }
}

impl<F: Function> ErasedFunction for Typed<F> {
    fn strategy(&self) -> Strategy {
        F::State::STRATEGY
    }
    fn new_state(&self) -> Box<dyn ErasedState> {
        match &self.codec {
            Some(c) => (c.fresh)(),
            None => Box::new(F::State::default()),
        }
    }
    fn run(
        &self,
        state: &mut dyn ErasedState,
        key: u64,
        input: AnyBox,
        header: &Header,
        now_ns: u64,
        out: &mut Vec<(u64, AnyBox)>,
    ) {
        let state = downcast_state::<F::State>(state);
        let input = *input
            .downcast::<F::In>()
            .expect("the app builder checked this edge's type");
        let mut typed = Vec::new();
        self.f.on_message(
            state,
            key,
            input,
            &mut Context::new(header, &mut typed, now_ns),
        );
        out.extend(typed.into_iter().map(|(k, v)| (k, Box::new(v) as AnyBox)));
    }
    fn run_critical(
        &self,
        state: &mut dyn ErasedState,
        barrier: &Barrier,
        header: &Header,
        now_ns: u64,
        out: &mut Vec<(u64, AnyBox)>,
    ) {
        let state = downcast_state::<F::State>(state);
        let mut typed = Vec::new();
        self.f.on_critical(
            state,
            barrier,
            header.edge,
            &mut Context::new(header, &mut typed, now_ns),
        );
        out.extend(typed.into_iter().map(|(k, v)| (k, Box::new(v) as AnyBox)));
    }
    fn clone_output(&self, v: &AnyBox) -> AnyBox {
        let v = v
            .downcast_ref::<F::Out>()
            .expect("outputs of an operator have its output type");
        Box::new(v.clone())
    }
    fn state_codec(&self) -> Option<StateCodec> {
        self.codec
    }
}

fn downcast_state<S: 'static>(state: &mut dyn ErasedState) -> &mut S {
    state
        .as_any_mut()
        .downcast_mut::<S>()
        .expect("an actor instance holds its operator's state type")
}
