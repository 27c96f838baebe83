//! A shard's inbound side: packets from the mesh rings and the local queue
//! (inputs for lessors homed here, wires between lessors and lessees), each
//! handed to the protocol and its instance scheduled.
//!
//! Packets for an app that is gone (undeployed while in flight) are counted
//! as dropped, never run.

use std::collections::hash_map::Entry;

use super::asleep::WakeError;
use super::fx::ShardFx;
use super::instance::{Instance, Part};
use super::slots::{LesseeSlot, LessorSlot};
use super::{Packet, Shard};
use crate::model::{ActorId, Message, Payload};
use crate::plan::{Plan, PlanKind};
use crate::protocol::{LeaseId, Lessee, ShardId, Wire};
use crate::quiesce::ShardCounters;
use crate::sync::Ordering;

impl Shard {
    /// Move every packet waiting on the rings into the shard's queues. The
    /// rings are transport, not queues: the backlog must be visible to the
    /// scale rule and the run queue. Each ring gives at most what it held
    /// when we looked (its capacity), so a fast peer cannot hold us here.
    ///
    /// One clock read per drain: every packet taken in it counts as
    /// arrived then.
    pub(super) fn drain_inbound(&mut self) -> usize {
        let mut n = 0;
        let now = self.env.clock.now_ns();
        for i in 0..self.inbound.len() {
            let waiting = self.inbound[i].1.len();
            for _ in 0..waiting {
                let Some(p) = self.inbound[i].1.pop() else {
                    break;
                };
                self.on_packet(p, now);
                n += 1;
            }
        }
        while let Some(p) = self.env.outbox.local.pop_front() {
            self.on_packet(p, now);
            n += 1;
        }
        n
    }

    /// One packet from the mesh (or the local queue), arrived at `now`.
    pub(super) fn on_packet(&mut self, p: Packet, now: u64) {
        match p {
            Packet::Input(msg) => self.on_input(msg, now),
            Packet::ToLessor { actor, wire } => self.on_lessor_wire(actor, wire),
            Packet::ToLessee { actor, wire } => self.on_lessee_wire(actor, wire),
        }
    }

    /// A wire from one of `actor`'s lessees to its lessor here.
    pub(super) fn on_lessor_wire(&mut self, actor: ActorId, wire: Wire<Message, Part>) {
        let Some(plan) = self.apps.get(&actor.app).cloned() else {
            self.stats.dropped += 1;
            return;
        };
        let Some(slot) = self.lessors.get_mut(&actor) else {
            debug_assert!(false, "lessor message for an inactive actor {actor}");
            self.stats.dropped += 1;
            return;
        };
        let mut fx = self.env.fx(actor, &plan, false);
        slot.m.on_wire(wire, &mut fx);
        // A lessee's state came home with its timers.
        slot.arm(actor, &mut self.wakeups);
        slot.schedule(actor, &mut self.ready, &mut *self.env.policy, &plan, || {
            self.env.clock.now_ns()
        });
    }

    /// A message for the lessor of its actor, homed here, arrived at `now`:
    /// wake the actor if it is not active, hand the message to the
    /// protocol, schedule.
    pub(super) fn on_input(&mut self, msg: Message, now: u64) {
        let actor = msg.header.actor;
        let Some(plan) = self.apps.get(&actor.app).cloned() else {
            self.stats.dropped += 1;
            return;
        };
        let Some(node) = plan.node(actor.op) else {
            self.stats.dropped += 1;
            return;
        };
        assert_eq!(
            node.home, self.env.id,
            "input for {actor} at the wrong shard"
        );
        let PlanKind::Function { f, .. } = &node.kind else {
            self.stats.dropped += 1;
            return;
        };
        if plan.failure().is_some() {
            self.stats.dropped += 1;
            return;
        }
        if !self.asleep.waking.is_empty() {
            if let Some(waiting) = self.asleep.waking.get_mut(&actor) {
                waiting.push(msg); // behind the ones already waiting
                return;
            }
        }
        // One lookup for an active lessor; the wake path otherwise.
        let slot = match self.lessors.entry(actor) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                match self.asleep.wake(
                    &mut self.stats,
                    actor,
                    node,
                    f,
                    (self.env.id, plan.timed, self.env.clock.unix_origin_ns()),
                ) {
                    Ok(m) => e.insert(LessorSlot::new(m, now)),
                    Err(WakeError::Retry) => {
                        self.asleep.waking.insert(actor, vec![msg]);
                        return;
                    }
                    Err(WakeError::Damaged(cause)) => {
                        plan.fail(cause);
                        self.stats.dropped += 1;
                        return;
                    }
                }
            }
        };
        slot.last_active_ns = now;
        let mut msg = msg;
        msg.header.enqueued_ns = now;
        let me = self.env.id;
        let mut fx = self.env.fx(actor, &plan, false);
        hand_over(slot, msg, &mut fx, &plan.counters[me as usize]);
        // Woken with a checkpoint's timers, or a critical ran and set some.
        slot.arm(actor, &mut self.wakeups);
        slot.schedule(actor, &mut self.ready, &mut *self.env.policy, &plan, || now);
        self.maybe_lease(actor, &plan, now);
    }

    /// Hand the messages held for actors whose spill could not be read
    /// back to `on_input` again, in order (each wakes its actor, or waits
    /// again). Returns how many were retried.
    pub(super) fn retry_waking(&mut self) -> usize {
        let waking = std::mem::take(&mut self.asleep.waking);
        let mut n = 0;
        for (_, msgs) in waking {
            let now = self.env.clock.now_ns();
            for msg in msgs {
                self.on_input(msg, now);
                n += 1;
            }
        }
        n
    }

    /// A wire from `actor`'s lessor to a lessee here (or a lease request).
    pub(super) fn on_lessee_wire(&mut self, actor: ActorId, mut wire: Wire<Message, Part>) {
        let Some(plan) = self.apps.get(&actor.app).cloned() else {
            self.stats.dropped += 1;
            return;
        };
        let now = self.env.clock.now_ns();
        if let Wire::Deliver { msg, .. } = &mut wire {
            msg.header.enqueued_ns = now;
        }
        if let Wire::LeaseRequest { lease, lessor, .. } = wire {
            self.on_lease_request(actor, &plan, lease, lessor, now);
            return;
        }
        let lease = wire.lease();
        let Some(slot) = self.lessees.get_mut(&(actor, lease)) else {
            debug_assert!(false, "message for a missing lessee {actor} {lease:?}");
            self.stats.dropped += 1;
            return;
        };
        slot.last_active_ns = now;
        slot.m.on_wire(wire);
        // An `Assign` brings its partitions' timers.
        slot.arm((actor, lease), &mut self.wakeups);
        slot.schedule(
            (actor, lease),
            &mut self.ready,
            &mut *self.env.policy,
            &plan,
            || self.env.clock.now_ns(),
        );
    }

    /// `actor`'s lessor on shard `lessor` asks for a lessee here: accept
    /// while this shard's own backlog is low and it is not stopping.
    pub(super) fn on_lease_request(
        &mut self,
        actor: ActorId,
        plan: &Plan,
        lease: LeaseId,
        lessor: ShardId,
        now: u64,
    ) {
        let backlog = self.env.gauge().backlog.load(Ordering::Relaxed);
        let node = plan.node(actor.op);
        let mut fx = self.env.fx(actor, plan, true);
        let f = match node.map(|n| &n.kind) {
            Some(PlanKind::Function { f, .. })
                if backlog < self.cfg.autoscale.accept_below && !self.stopping =>
            {
                f
            }
            _ => return Lessee::<Message, Instance>::refuse(lease, lessor, &mut fx),
        };
        let outs = node.map_or(0, |n| n.outs.len());
        let m = Lessee::accept(lease, lessor, Instance::new(f.new_state(), outs), &mut fx);
        let mut slot = LesseeSlot::new(m, now);
        // A lessee that never gets work goes home too.
        Self::arm_idle_timer(
            &mut self.idle_timers,
            &mut *self.env.policy,
            &self.cfg,
            plan,
            &mut slot,
            (actor, lease),
            now,
        );
        self.lessees.insert((actor, lease), slot);
    }
}

/// Give `msg` to its lessor: a mark to its clock (each tick it made is
/// work in flight, the lessor's copy, until it runs; the mark itself is
/// done), anything else as an input.
fn hand_over(slot: &mut LessorSlot, msg: Message, fx: &mut ShardFx<'_>, c: &ShardCounters) {
    match msg.payload {
        Payload::Mark(mark) => {
            let before = slot.m.stats().ticks;
            slot.m.on_watermark(msg.header.edge, mark, fx);
            c.count_sent(slot.m.stats().ticks - before);
            c.count_done(1);
        }
        _ => slot.m.on_input(msg, fx),
    }
}
