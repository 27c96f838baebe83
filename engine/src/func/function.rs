//! What a user writes: a [`Function`] (typed input, output and state) and
//! the [`Context`] it emits through.
//!
//! `on_message` runs on the lessor or on any lessee, on that instance's part
//! of the state; `on_critical` runs on the lessor alone, on the whole,
//! consolidated state. The state type (see `state`) picks how the dual-mode
//! protocol may split it.

use super::state::OperatorState;
use super::timers::EventClock;
use crate::model::{Barrier, Header};
use crate::protocol::{EdgeId, Time};

/// Where a function's outputs go, and what it may know of the message and
/// of event time.
pub struct Context<'a, O> {
    header: &'a Header,
    out: &'a mut Vec<(u64, O)>,
    now_ns: u64,
    /// The key of the message (or timer) being run.
    key: u64,
    clock: &'a mut EventClock,
}

impl<'a, O> Context<'a, O> {
    pub(crate) fn new(
        header: &'a Header,
        out: &'a mut Vec<(u64, O)>,
        now_ns: u64,
        key: u64,
        clock: &'a mut EventClock,
    ) -> Self {
        Context {
            header,
            out,
            now_ns,
            key,
            clock,
        }
    }

    /// The instance's input watermark: event time up to which every input
    /// has arrived (an event at or before it is late). `0` before the
    /// first watermark; `Time::MAX` once every input is done; while every
    /// input is idle, the highest of their watermarks.
    pub fn watermark(&self) -> Time {
        self.clock.watermark
    }

    /// Fire [`Function::on_timer`] for this message's key once the
    /// watermark reaches `at` (at the next advance if it already has), on
    /// the instance that owns the key then. Setting the same timer twice
    /// sets it once. `false`: the instance holds its most timers
    /// (`limits::MAX_TIMERS_PER_INSTANCE`) and this one was not set.
    #[must_use]
    pub fn set_timer(&mut self, at: Time) -> bool {
        self.clock.timers.set(self.key, at)
    }

    /// Delete this key's timer at `at`, if set.
    pub fn delete_timer(&mut self, at: Time) {
        self.clock.timers.delete(self.key, at);
    }

    /// Fire [`Function::on_processing_timer`] for this message's key once
    /// the node clock ([`Context::now_ns`]) reaches `at_ns` (at once if it
    /// has), on the instance that owns the key then. Setting the same
    /// timer twice sets it once. Processing-time timers move with their
    /// keys on lease and revoke, are saved in a durable operator's
    /// checkpoint at wall-clock time (after a restart, one already past
    /// fires at once), and keep their actor active until they fire.
    /// `false`: the instance holds its most processing-time timers
    /// (`limits::MAX_TIMERS_PER_INSTANCE`) and this one was not set.
    #[must_use]
    pub fn set_processing_timer(&mut self, at_ns: u64) -> bool {
        self.clock.proc.set(self.key, at_ns)
    }

    /// Delete this key's processing-time timer at `at_ns`, if set.
    pub fn delete_processing_timer(&mut self, at_ns: u64) {
        self.clock.proc.delete(self.key, at_ns);
    }

    /// Count the event being run as late (`AppStats::late_events`).
    pub fn late(&mut self) {
        self.clock.late += 1;
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
    /// What the operator takes on its input edges.
    type In: Send + 'static;
    /// What it emits (cloned for the second and later downstream edges).
    type Out: Clone + Send + 'static;
    /// Its state, whose type picks how the state splits across instances.
    type State: OperatorState;

    /// A data message `input` with key hash `key` arrived: update this
    /// instance's part of the state, emit through `ctx`.
    fn on_message(
        &self,
        state: &mut Self::State,
        key: u64,
        input: Self::In,
        ctx: &mut Context<'_, Self::Out>,
    );

    /// The event-time timer of `key` at `at` fired: the watermark reached
    /// it. Runs on the instance that owns `key`, after every message that
    /// arrived before the watermark did. (Timers are for `Keyed` and
    /// `Sequential` states: on a `Merged` state a timer fires on the
    /// instance that set it, on that instance's part.)
    fn on_timer(
        &self,
        _state: &mut Self::State,
        _key: u64,
        _at: Time,
        _ctx: &mut Context<'_, Self::Out>,
    ) {
    }

    /// The processing-time timer of `key` at `at_ns` fired: the node clock
    /// reached it. Runs on the instance that owns `key`, between messages
    /// (in no fixed order with those that arrive meanwhile).
    fn on_processing_timer(
        &self,
        _state: &mut Self::State,
        _key: u64,
        _at_ns: u64,
        _ctx: &mut Context<'_, Self::Out>,
    ) {
    }

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
