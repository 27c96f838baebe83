//! Running ready instances: up to `step_budget` steps or `run_quota` of time
//! per turn, instances in the policy's rank order (one message per step,
//! FIFO within an instance), each re-ranked after its step.

use super::slots::InstRef;
use super::Shard;
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
        for _ in 0..self.cfg.step_budget {
            if ran > 0 && self.env.clock.now_ns().saturating_sub(start) >= quota {
                break;
            }
            let Some(r) = self.ready.pop() else {
                break;
            };
            ran += 1;
            let Some(plan) = self.apps.get(&r.actor().app).cloned() else {
                continue;
            };
            if plan.failure().is_some() {
                // A failed app runs nothing more; its instance stays marked
                // queued, so it is not queued again until undeploy.
                continue;
            }
            match r {
                InstRef::Lessor(a) => self.step_lessor(a, &plan),
                InstRef::Lessee(a, l) => self.step_lessee(a, l, &plan),
            }
        }
        ran
    }

    /// One step of `a`'s lessor, popped from the run queue.
    fn step_lessor(&mut self, a: ActorId, plan: &Plan) {
        let Some(slot) = self.lessors.get_mut(&a) else {
            return;
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
            return;
        }
        let mut fx = self.env.fx(a, plan, false);
        slot.m.step(&mut fx);
        let now = self.env.clock.now_ns();
        slot.last_active_ns = now;
        let more = slot.m.has_work();
        slot.schedule(a, &mut self.ready, &mut *self.env.policy, plan, || now);
        // A run changes what the policy predicts (a learned cost, a shorter
        // queue): ask again while work is left.
        if more {
            self.maybe_lease(a, plan, now);
        }
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

    /// One step of lessee `l` of `a`, popped from the run queue; a lessee
    /// that finished (released) is dropped, one out of work arms its idle
    /// timer.
    fn step_lessee(&mut self, a: ActorId, l: LeaseId, plan: &Plan) {
        let Some(slot) = self.lessees.get_mut(&(a, l)) else {
            return;
        };
        assert!(
            slot.queued,
            "{a} {l:?}: popped from the run queue, so marked queued"
        );
        slot.queued = false;
        let mut fx = self.env.fx(a, plan, true);
        slot.m.step(&mut fx);
        let now = self.env.clock.now_ns();
        slot.last_active_ns = now;
        if slot.m.is_finished() {
            self.lessees.remove(&(a, l));
            return;
        }
        if !slot.m.has_work() {
            Self::arm_idle_timer(
                &mut self.idle_timers,
                &mut *self.env.policy,
                &self.cfg,
                plan,
                slot,
                (a, l),
                now,
            );
        }
        slot.schedule((a, l), &mut self.ready, &mut *self.env.policy, plan, || {
            self.env.clock.now_ns()
        });
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
