//! The type-erased layer: what a shard holds of a user's function and state,
//! so one table holds operators of every application.
//!
//! Everything typed is erased at the app builder boundary into
//! [`ErasedFunction`] / [`ErasedState`] (and, for durable operators and
//! sources, a [`StateCodec`] / [`EventCodec`] monomorphized when the app is
//! built). The builder checks edge types when the app is built, so the
//! downcasts here cannot fail at run time. This module sits above both the
//! user-facing traits (`function`, `state`) and their byte forms
//! (`persist`), which know nothing of erasure.

use std::any::Any;

use rkyv::util::AlignedVec;

use super::function::{Context, Function};
use super::persist::{DurableState, Persist, PersistError};
use super::state::OperatorState;
use super::timers::{Domain, EventClock};
use crate::limits::BATCH_EVENTS;
use crate::model::{AnyBox, Barrier, Batch, Header, Seqs, SeqsBuilder};
use crate::protocol::{PartitionSet, Strategy, Time};

/// What a run is given besides its input: the header, the node clock, and
/// the instance's event time.
pub(crate) struct RunCtx<'a> {
    pub header: &'a Header,
    pub now_ns: u64,
    pub clock: &'a mut EventClock,
}

/// A durable operator's state as a checkpoint restored it: the user's
/// state and its event clock.
pub(crate) struct Restored {
    pub(crate) user: Box<dyn ErasedState>,
    pub(crate) clock: EventClock,
}

/// The state of one actor instance, type-erased.
pub(crate) trait ErasedState: Send {
    fn take_partitions(&mut self, parts: PartitionSet) -> Box<dyn ErasedState>;
    fn take_all(&mut self) -> Box<dyn ErasedState>;
    fn absorb(&mut self, other: Box<dyn ErasedState>);
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
        cx: RunCtx<'_>,
        out: &mut Vec<(u64, AnyBox)>,
    );
    /// Run every value of `input` in order on one state, as `run` would
    /// one by one; the outputs go to `out` as batches (of at most
    /// `BATCH_EVENTS`), erased once per batch rather than per value.
    fn run_batch(
        &self,
        state: &mut dyn ErasedState,
        input: Batch,
        cx: RunCtx<'_>,
        out: &mut Vec<Batch>,
    );
    fn run_critical(
        &self,
        state: &mut dyn ErasedState,
        barrier: &Barrier,
        cx: RunCtx<'_>,
        out: &mut Vec<(u64, AnyBox)>,
    );
    /// The timers of `keys` at `at` on the `domain` clock fired, in that
    /// order (one typed loop: a window's end fires many keys at once).
    fn run_timers(
        &self,
        state: &mut dyn ErasedState,
        timers: (&[u64], Time, Domain),
        cx: RunCtx<'_>,
        out: &mut Vec<(u64, AnyBox)>,
    );
    /// Copy an output for the second and later downstream edges.
    fn clone_output(&self, v: &AnyBox) -> AnyBox;
    /// How to checkpoint and restore this operator's state, if it is
    /// durable (see `persist`).
    fn state_codec(&self) -> Option<StateCodec>;
    /// Whether the node may run now: a sink whose queue is full may not
    /// (see `api::sink`); every operator may.
    fn ready(&self) -> bool {
        true
    }
}

pub(crate) struct Typed<F> {
    f: F,
    codec: Option<StateCodec>,
}

impl<F: Function> Typed<F> {
    pub(crate) fn new(f: F) -> Self {
        Typed { f, codec: None }
    }
}

impl<F: Function> Typed<F>
where
    F::State: DurableState,
{
    pub(crate) fn durable(f: F) -> Self {
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
        cx: RunCtx<'_>,
        out: &mut Vec<(u64, AnyBox)>,
    ) {
        let state = downcast_state::<F::State>(state);
        let input = *input
            .downcast::<F::In>()
            .expect("the app builder checked this edge's type");
        let mut typed = Vec::new();
        let mut ctx = Context::new(cx.header, &mut typed, cx.now_ns, key, cx.clock);
        self.f.on_message(state, key, input, &mut ctx);
        out.extend(typed.into_iter().map(|(k, v)| (k, Box::new(v) as AnyBox)));
    }
    fn run_timers(
        &self,
        state: &mut dyn ErasedState,
        (keys, at, domain): (&[u64], Time, Domain),
        cx: RunCtx<'_>,
        out: &mut Vec<(u64, AnyBox)>,
    ) {
        let state = downcast_state::<F::State>(state);
        let mut typed = Vec::new();
        for &key in keys {
            let mut ctx = Context::new(cx.header, &mut typed, cx.now_ns, key, cx.clock);
            match domain {
                Domain::Event => self.f.on_timer(state, key, at, &mut ctx),
                Domain::Processing => self.f.on_processing_timer(state, key, at, &mut ctx),
            }
        }
        out.reserve(typed.len());
        out.extend(typed.into_iter().map(|(k, v)| (k, Box::new(v) as AnyBox)));
    }
    fn run_batch(
        &self,
        state: &mut dyn ErasedState,
        input: Batch,
        cx: RunCtx<'_>,
        out: &mut Vec<Batch>,
    ) {
        let state = downcast_state::<F::State>(state);
        let (values, seqs) = input.into_parts();
        let values = *values
            .downcast::<Vec<(u64, F::In)>>()
            .expect("the app builder checked this edge's type");
        let mut typed = Vec::with_capacity(values.len());
        let mut out_seqs = SeqsBuilder::default();
        // Each value sees the header it would have had alone: its own seq.
        let mut h = *cx.header;
        for (i, (key, value)) in values.into_iter().enumerate() {
            h.seq = seqs.get(i);
            let before = typed.len();
            let mut ctx = Context::new(&h, &mut typed, cx.now_ns, key, cx.clock);
            self.f.on_message(state, key, value, &mut ctx);
            out_seqs.push(h.seq, typed.len() - before);
        }
        batches_into(typed, out_seqs.finish(), out);
    }
    fn run_critical(
        &self,
        state: &mut dyn ErasedState,
        barrier: &Barrier,
        cx: RunCtx<'_>,
        out: &mut Vec<(u64, AnyBox)>,
    ) {
        let state = downcast_state::<F::State>(state);
        let mut typed = Vec::new();
        let edge = cx.header.edge;
        let mut ctx = Context::new(cx.header, &mut typed, cx.now_ns, 0, cx.clock);
        self.f.on_critical(state, barrier, edge, &mut ctx);
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

/// Events of type `T`, boxed one by one (as logged input is), as batches of
/// at most `BATCH_EVENTS`, the first of root sequence number `first_seq`.
pub(crate) fn rebatch<T: Clone + Send + 'static>(
    events: Vec<(u64, AnyBox)>,
    first_seq: u64,
) -> Vec<Batch> {
    let typed: Vec<(u64, T)> = events
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                *v.downcast::<T>().expect("a source's events have its type"),
            )
        })
        .collect();
    let mut out = Vec::with_capacity(typed.len().div_ceil(BATCH_EVENTS));
    batches_into(typed, Seqs::From(first_seq), &mut out);
    out
}

/// `values` (of root sequence numbers `seqs`) as batches of at most
/// `BATCH_EVENTS`, in order, onto `out`.
pub(crate) fn batches_into<T: Clone + Send + 'static>(
    values: Vec<(u64, T)>,
    seqs: Seqs,
    out: &mut Vec<Batch>,
) {
    let len = values.len();
    if len <= BATCH_EVENTS {
        out.extend(Batch::of(values, seqs));
        return;
    }
    let mut rest = values.into_iter();
    for lo in (0..len).step_by(BATCH_EVENTS) {
        let chunk: Vec<_> = rest.by_ref().take(BATCH_EVENTS).collect();
        let hi = lo + chunk.len();
        out.extend(Batch::of(chunk, seqs.slice(lo, hi)));
    }
}

fn downcast_state<S: 'static>(state: &mut dyn ErasedState) -> &mut S {
    state
        .as_any_mut()
        .downcast_mut::<S>()
        .expect("an actor instance holds its operator's state type")
}

/// Restores an operator state from its bytes (checkpoint or spill).
pub(crate) type Restore = fn(&[u8]) -> Result<Box<dyn ErasedState>, PersistError>;
type Save = fn(&mut dyn ErasedState) -> Result<AlignedVec, PersistError>;
type SaveChanges = fn(&mut dyn ErasedState) -> Option<Result<AlignedVec, PersistError>>;
type ApplyChanges = fn(&mut dyn ErasedState, &[u8]) -> Result<(), PersistError>;

/// Type-erased checkpoint, restore and spill of one operator's state
/// (monomorphized for the operator's state type when the app is built).
#[derive(Clone, Copy)]
pub(crate) struct StateCodec {
    pub fresh: fn() -> Box<dyn ErasedState>,
    pub save: Save,
    pub save_changes: SaveChanges,
    pub checkpointed: fn(&mut dyn ErasedState),
    pub restore: Restore,
    pub apply_changes: ApplyChanges,
    pub spill: Save,
    pub unspill: Restore,
}

impl StateCodec {
    pub(crate) fn of<S: DurableState>() -> StateCodec {
        StateCodec {
            fresh: || Box::new(S::fresh()),
            save: |state| downcast_state::<S>(state).save(),
            save_changes: |state| downcast_state::<S>(state).save_changes(),
            checkpointed: |state| downcast_state::<S>(state).checkpointed(),
            restore: |bytes| S::restore(bytes).map(|s| Box::new(s) as Box<dyn ErasedState>),
            apply_changes: |state, bytes| downcast_state::<S>(state).apply_changes(bytes),
            spill: |state| downcast_state::<S>(state).spill(),
            unspill: |bytes| S::unspill(bytes).map(|s| Box::new(s) as Box<dyn ErasedState>),
        }
    }
}

/// Type-erased encoding of one durable source's events.
#[derive(Clone, Copy)]
pub(crate) struct EventCodec {
    pub encode: fn(&AnyBox) -> Result<AlignedVec, PersistError>,
    pub decode: fn(&[u8]) -> Result<AnyBox, PersistError>,
}

impl EventCodec {
    pub(crate) fn of<T: Persist + Send + 'static>() -> EventCodec {
        EventCodec {
            encode: |v| {
                v.downcast_ref::<T>()
                    .expect("a source's events have its type")
                    .to_bytes()
            },
            decode: |bytes| T::from_bytes(bytes).map(|v| Box::new(v) as AnyBox),
        }
    }
}
