//! Scaling on the message path: a lessor with a backlog asks the policy
//! whether to lease (`maybe_lease`, at most once per housekeeping period
//! per actor, only while no lease of it is pending), and idle lessees go
//! home by per-lessee timers (`arm_idle_timer`, `fire_idle_timers`), in a
//! heap checked every turn.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::slots::LesseeSlot;
use super::Shard;
use crate::model::ActorId;
use crate::plan::Plan;
use crate::protocol::{LeaseId, LessorMode, ShardId, Strategy};
use crate::runtime::clock::nanos;
use crate::runtime::config::NodeConfig;
use crate::sched::policy::{Policy, QueueView, Scale};
use crate::sync::Ordering;

impl Shard {
    /// Implicit scaling, on the message path: a message was just queued at
    /// `actor`'s lessor, or its lessor ran one and has more; if the actor may
    /// take another lessee now, ask the policy, and on `Lease` request one
    /// on the least loaded shard that accepts (by the relaxed backlog
    /// gauges).
    pub(super) fn maybe_lease(&mut self, actor: ActorId, plan: &Plan, now: u64) {
        let auto = &self.cfg.autoscale;
        if !auto.enabled || self.stopping {
            return;
        }
        let Some(slot) = self.lessors.get_mut(&actor) else {
            return;
        };
        let m = &slot.m;
        let pending = m.lessee_shards().count() != m.lessee_count();
        if m.strategy() == Strategy::Sequential
            || m.mode() != LessorMode::Runnable
            || m.lessee_count() >= auto.max_lessees
            || pending
            || now < slot.scale_after_ns
        {
            return;
        }
        let q = QueueView {
            backlog: m.backlog(),
            lessees: m.lessee_count(),
            head: m.next().map(|x| &x.header),
        };
        let view = plan.op_view(actor.op);
        if self.env.policy.on_backlog(&q, &view, &self.limits, now) != Scale::Lease {
            return;
        }
        // Whatever comes of it, do not ask again for a housekeeping period.
        slot.scale_after_ns = now.saturating_add(nanos(self.cfg.housekeeping));
        let taken: Vec<ShardId> = m.lessee_shards().map(|(_, sh)| sh).collect();
        let target = (0..self.env.gauges.len() as ShardId)
            .filter(|s| *s != self.env.id && !taken.contains(s))
            .map(|s| {
                (
                    self.env.gauges[s as usize].backlog.load(Ordering::Relaxed),
                    s,
                )
            })
            .filter(|(load, _)| *load < auto.accept_below)
            .min();
        if let Some((_, shard)) = target {
            self.with_lessor(actor, |m, fx| m.request_lease(shard, fx));
        }
    }

    /// `slot` (lessee `key`) just ran out of work: unless a timer is pending
    /// already, look at it again once the policy's idle time has passed.
    pub(super) fn arm_idle_timer(
        timers: &mut BinaryHeap<Reverse<(u64, ActorId, LeaseId)>>,
        policy: &mut dyn Policy,
        cfg: &NodeConfig,
        plan: &Plan,
        slot: &mut LesseeSlot,
        key: (ActorId, LeaseId),
        now: u64,
    ) {
        if slot.timer_armed || slot.release_asked || !cfg.autoscale.enabled {
            return;
        }
        let idle = policy.release_after(&plan.op_view(key.0.op), &cfg.autoscale.limits());
        slot.timer_armed = true;
        timers.push(Reverse((now.saturating_add(nanos(idle)), key.0, key.1)));
    }

    /// Idle timers that are due: a lessee idle since its timer was armed
    /// asks to go home; one that worked meanwhile is looked at again later.
    pub(super) fn fire_idle_timers(&mut self, now: u64) -> usize {
        let mut did = 0;
        while let Some(Reverse((due, actor, lease))) = self.idle_timers.peek().copied() {
            if due > now {
                break;
            }
            self.idle_timers.pop();
            let Some(plan) = self.apps.get(&actor.app).cloned() else {
                continue;
            };
            let Some(slot) = self.lessees.get_mut(&(actor, lease)) else {
                continue;
            };
            slot.timer_armed = false;
            let idle = nanos(
                self.env
                    .policy
                    .release_after(&plan.op_view(actor.op), &self.limits),
            );
            if slot.m.has_work() || slot.release_asked {
                continue; // re-armed when it runs out of work again
            }
            if now.saturating_sub(slot.last_active_ns) < idle {
                slot.timer_armed = true;
                self.idle_timers.push(Reverse((
                    slot.last_active_ns.saturating_add(idle),
                    actor,
                    lease,
                )));
                continue;
            }
            let mut fx = self.env.fx(actor, &plan, true);
            slot.m.request_release(&mut fx);
            slot.release_asked = true;
            did += 1;
        }
        did
    }
}
