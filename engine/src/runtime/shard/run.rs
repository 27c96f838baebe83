//! Running ready instances: up to `step_budget` steps or `run_quota` of time
//! per turn, instances in the policy's rank order (one message per step,
//! FIFO within an instance).
//!
//! An instance popped from the run queue runs a *batch*: up to `STEP_BATCH`
//! steps, or `STEP_SLICE` of time, while it has work, then it is re-ranked
//! once (Seastar's task quota). The rank, the clock read after the batch,
//! the schedule and the lease decision are paid per batch; each run still
//! reads the clock once, for its cost and latency (a run starts when the one
//! before it ended). A batch delays a better-ranked instance by at most
//! `STEP_SLICE` (plus one message).

use super::fx::ShardFx;
use super::slots::InstRef;
use super::Shard;
use crate::limits::{STEP_BATCH, STEP_SLICE};
use crate::model::ActorId;
use crate::plan::{Plan, PlanKind};
use crate::protocol::LeaseId;
use crate::runtime::clock::nanos;

impl Shard {
    /// Run ready instances until the budget or the quota is spent. Returns
    /// how many steps ran.
    pub(super) fn run_ready(&mut self) -> usize {
        let mut ran = 0;
        let quota = nanos(self.cfg.run_quota);
        let start = self.env.clock.now_ns();
        let mut now = start;
        while ran < self.cfg.step_budget {
            if ran > 0 && now.saturating_sub(start) >= quota {
                break;
            }
            let Some(r) = self.ready.pop() else {
                break;
            };
            let Some(plan) = self.apps.get(&r.actor().app).cloned() else {
                ran += 1;
                continue;
            };
            if plan.failure().is_some() {
                // A failed app runs nothing more; its instance stays marked
                // queued, so it is not queued again until undeploy.
                ran += 1;
                continue;
            }
            let (steps, end) = match r {
                InstRef::Lessor(a) => self.step_lessor(a, &plan, now),
                InstRef::Lessee(a, l) => self.step_lessee(a, l, &plan, now),
            };
            ran += steps.max(1);
            now = end;
        }
        ran
    }

    /// A batch of steps of `a`'s lessor, popped from the run queue at
    /// `now`. Returns the steps run and the time after them.
    fn step_lessor(&mut self, a: ActorId, plan: &Plan, now: u64) -> (usize, u64) {
        let Some(slot) = self.lessors.get_mut(&a) else {
            return (0, now);
        };
        assert!(
            slot.queued,
            "{a}: popped from the run queue, so marked queued"
        );
        slot.queued = false;
        if !may_run(plan, a) {
            // A held sink can be queued again by a new input: once here.
            if !self.held_sinks.contains(&a) {
                self.held_sinks.push(a);
            }
            return (0, now);
        }
        let mut fx = self.env.fx(a, plan, false);
        let steps = run_batch(&mut fx, now, |fx| {
            slot.m.step(fx);
            slot.m.has_work() && may_run(plan, a)
        });
        fx.finish();
        let end = self.env.clock.now_ns();
        slot.last_active_ns = end;
        slot.arm(a, &mut self.wakeups);
        let more = slot.m.has_work();
        slot.schedule(a, &mut self.ready, &mut *self.env.policy, plan, || end);
        // A run changes what the policy predicts (a learned cost, a shorter
        // queue): ask again while work is left.
        if more {
            self.maybe_lease(a, plan, end);
        }
        (steps, end)
    }

    /// Put back in the run queue the held sinks whose reader made room.
    /// Returns how many went back.
    pub(super) fn retry_held_sinks(&mut self) -> usize {
        if self.held_sinks.is_empty() {
            return 0;
        }
        let mut back = 0;
        for a in std::mem::take(&mut self.held_sinks) {
            let (Some(plan), Some(slot)) = (self.apps.get(&a.app), self.lessors.get_mut(&a)) else {
                continue; // undeployed meanwhile
            };
            if !may_run(plan, a) {
                self.held_sinks.push(a);
                continue;
            }
            back += 1;
            slot.schedule(a, &mut self.ready, &mut *self.env.policy, plan, || {
                self.env.clock.now_ns()
            });
        }
        back
    }

    /// A batch of steps of lessee `l` of `a`, popped from the run queue at
    /// `now`; a lessee that finished (released) is dropped, one out of work
    /// arms its idle timer. Returns the steps run and the time after them.
    fn step_lessee(&mut self, a: ActorId, l: LeaseId, plan: &Plan, now: u64) -> (usize, u64) {
        let Some(slot) = self.lessees.get_mut(&(a, l)) else {
            return (0, now);
        };
        assert!(
            slot.queued,
            "{a} {l:?}: popped from the run queue, so marked queued"
        );
        slot.queued = false;
        let mut fx = self.env.fx(a, plan, true);
        let steps = run_batch(&mut fx, now, |fx| {
            slot.m.step(fx);
            !slot.m.is_finished() && slot.m.has_work()
        });
        fx.finish();
        let end = self.env.clock.now_ns();
        slot.last_active_ns = end;
        if slot.m.is_finished() {
            self.lessees.remove(&(a, l));
            return (steps, end);
        }
        slot.arm((a, l), &mut self.wakeups);
        if !slot.m.has_work() {
            Self::arm_idle_timer(
                &mut self.idle_timers,
                &mut *self.env.policy,
                &self.cfg,
                plan,
                slot,
                (a, l),
                end,
            );
        }
        slot.schedule((a, l), &mut self.ready, &mut *self.env.policy, plan, || end);
        (steps, end)
    }
}

/// Run `step` (one protocol step; it says whether the instance can take
/// another) as a batch begun at `now`: until it says no, `STEP_BATCH` steps
/// ran, or `STEP_SLICE` passed. Returns the steps run.
fn run_batch(
    fx: &mut ShardFx<'_>,
    now: u64,
    mut step: impl FnMut(&mut ShardFx<'_>) -> bool,
) -> usize {
    fx.begin_at(now);
    let mut steps = 0;
    loop {
        let more = step(fx);
        steps += 1;
        let at = fx.last_ns().unwrap_or(now);
        let full = steps >= STEP_BATCH || at.saturating_sub(now) >= nanos(STEP_SLICE);
        if full || !more {
            return steps;
        }
    }
}

/// Whether `a`'s lessor may take a step: a sink waits while its queue is
/// full (`SinkPolicy::Block`); every other operator always may.
fn may_run(plan: &Plan, a: ActorId) -> bool {
    match plan.node(a.op).map(|n| &n.kind) {
        Some(PlanKind::Function { f, sink: true }) => f.ready(),
        _ => true,
    }
}
