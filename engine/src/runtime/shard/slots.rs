//! The shard's instance slots (a lessor or a lessee with its scheduling
//! marks), the run-queue entry that names one, and a source's counters.
//!
//! Invariant: an instance is in the run queue at most once; its slot's
//! `queued` flag says whether it is, set by [`schedule`] when it is pushed
//! and cleared when the run loop pops it (asserted there).

use super::instance::Instance;
use crate::model::{ActorId, Message};
use crate::plan::Plan;
use crate::protocol::{Epoch, LeaseId, Lessee, Lessor, Time};
use crate::sched::policy::{Policy, Rank};
use crate::sched::runq::RunQueue;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// An active lessor and its scheduling marks.
pub(super) struct LessorSlot {
    pub(super) m: Lessor<Message, Instance>,
    pub(super) queued: bool,
    pub(super) last_active_ns: u64,
    /// No scale decision before this time (after a lease was asked for).
    pub(super) scale_after_ns: u64,
    /// When its next processing-time timer wakes it (`NOT_ARMED`: none).
    pub(super) wake_at: u64,
}

/// A lessee hosted here and its scheduling marks.
pub(super) struct LesseeSlot {
    pub(super) m: Lessee<Message, Instance>,
    pub(super) queued: bool,
    pub(super) last_active_ns: u64,
    /// An idle timer for this lessee is pending in `Shard::idle_timers`.
    pub(super) timer_armed: bool,
    /// It asked to go home (`request_release`); it finishes on the revoke.
    pub(super) release_asked: bool,
    /// When its next processing-time timer wakes it (`NOT_ARMED`: none).
    pub(super) wake_at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
/// An instance in the run queue (or in the processing-timer heap).
pub(super) enum InstRef {
    Lessor(ActorId),
    Lessee(ActorId, LeaseId),
}

/// A source homed here: its epoch, sequence and per-edge emission tally,
/// and its watermarks if it is on event time.
pub(super) struct SourceState {
    pub(super) epoch: Epoch,
    pub(super) seq: u64,
    pub(super) tally: Vec<u64>,
    pub(super) clock: Option<SourceClock>,
}

/// A source's watermark generator.
#[derive(Debug, Default)]
pub(super) struct SourceClock {
    /// The latest event time seen.
    pub(super) latest: Time,
    /// The highest watermark a client sent.
    pub(super) client: Time,
    /// The last mark sent (its time and whether it said idle), and how
    /// many.
    pub(super) sent: (Time, bool),
    pub(super) marks: u64,
    pub(super) last_event_ns: u64,
    pub(super) last_mark_ns: u64,
    /// Quiet for its idle time: its watermark is `Time::MAX` until its
    /// next event.
    pub(super) idle: bool,
}

impl InstRef {
    /// The actor this instance is of.
    pub(super) fn actor(self) -> ActorId {
        match self {
            InstRef::Lessor(a) | InstRef::Lessee(a, _) => a,
        }
    }
}

/// Queue `r` if it has work and is not queued yet, at the rank `rank()`
/// gives (called only then).
fn schedule(
    ready: &mut RunQueue<InstRef>,
    queued: &mut bool,
    has_work: bool,
    r: InstRef,
    rank: impl FnOnce() -> Rank,
) {
    if has_work && !*queued {
        *queued = true;
        ready.push(rank(), r);
    }
}

/// The run-queue rank of an instance whose next step runs `next` (protocol
/// work when `None`: urgent).
fn rank_of(policy: &mut dyn Policy, plan: &Plan, next: Option<&Message>, now: u64) -> Rank {
    match next {
        Some(m) => policy.rank(&m.header, &plan.op_view(m.header.actor.op), now),
        None => Rank::URGENT,
    }
}

impl LessorSlot {
    /// Queue this lessor of `actor` if it has work and is not queued yet,
    /// ranked by the policy at `now()` (read only then).
    pub(super) fn schedule(
        &mut self,
        actor: ActorId,
        ready: &mut RunQueue<InstRef>,
        policy: &mut dyn Policy,
        plan: &Plan,
        now: impl FnOnce() -> u64,
    ) {
        let r = InstRef::Lessor(actor);
        schedule(ready, &mut self.queued, self.m.has_work(), r, || {
            rank_of(policy, plan, self.m.next(), now())
        });
    }

    /// A lessor just activated (or woken) at `now`.
    pub(super) fn new(m: Lessor<Message, Instance>, now: u64) -> LessorSlot {
        LessorSlot {
            m,
            queued: false,
            last_active_ns: now,
            scale_after_ns: 0,
            wake_at: NOT_ARMED,
        }
    }

    /// Arm its wake-up for its earliest processing-time timer (after
    /// anything that may have set one or brought one home).
    pub(super) fn arm(&mut self, actor: ActorId, wakeups: &mut Wakeups) {
        let next = self.m.state().clock.proc.next();
        wakeups.arm(&mut self.wake_at, next, InstRef::Lessor(actor));
    }
}

impl LesseeSlot {
    /// Queue this lessee (`key`) if it has work and is not queued yet,
    /// ranked by the policy at `now()` (read only then).
    pub(super) fn schedule(
        &mut self,
        key: (ActorId, LeaseId),
        ready: &mut RunQueue<InstRef>,
        policy: &mut dyn Policy,
        plan: &Plan,
        now: impl FnOnce() -> u64,
    ) {
        let r = InstRef::Lessee(key.0, key.1);
        schedule(ready, &mut self.queued, self.m.has_work(), r, || {
            rank_of(policy, plan, self.m.next(), now())
        });
    }

    /// A lessee just accepted at `now`.
    pub(super) fn new(m: Lessee<Message, Instance>, now: u64) -> LesseeSlot {
        LesseeSlot {
            m,
            queued: false,
            last_active_ns: now,
            timer_armed: false,
            release_asked: false,
            wake_at: NOT_ARMED,
        }
    }

    /// Arm its wake-up for its earliest processing-time timer (after
    /// anything that may have set one or brought one in).
    pub(super) fn arm(&mut self, key: (ActorId, LeaseId), wakeups: &mut Wakeups) {
        let next = self.m.state().clock.proc.next();
        wakeups.arm(&mut self.wake_at, next, InstRef::Lessee(key.0, key.1));
    }
}

/// A slot's `wake_at` when it is not in the heap.
pub(super) const NOT_ARMED: u64 = u64::MAX;

/// Instances to wake, by the time of their earliest processing timer
/// (fired by `proc_timers`). An entry whose time is not its slot's
/// `wake_at` is stale and skipped.
#[derive(Default)]
pub(super) struct Wakeups {
    pub(super) heap: BinaryHeap<Reverse<(u64, InstRef)>>,
}

impl Wakeups {
    /// Make sure `r`, armed for `wake_at`, is woken by `next` (its
    /// earliest timer, if any).
    pub(super) fn arm(&mut self, wake_at: &mut u64, next: Option<u64>, r: InstRef) {
        if let Some(t) = next.filter(|&t| t < *wake_at) {
            *wake_at = t;
            self.heap.push(Reverse((t, r)));
        }
    }

    /// The earliest wake-up (perhaps stale).
    pub(super) fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    pub(super) fn pop_due(&mut self, now: u64) -> Option<(u64, InstRef)> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}
