//! Client commands: taken from the control channel every turn (deploy,
//! undeploy, lease, revoke, stats, stop: they add no messages) and from the
//! bounded inbox while the backlog allows (ingest, barriers): the inbox
//! filling up is how backpressure reaches clients.

use std::rc::Rc;
use std::sync::mpsc::{Sender, TryRecvError};
use std::sync::Arc;

use super::asleep::WakeError;
use super::fx::ShardFx;
use super::instance::Instance;
use super::slots::{LessorSlot, SourceState};
use super::Shard;
use crate::func::Restored;
use crate::limits::COMMANDS_PER_TURN;
use crate::model::{ActorId, AppId, Message, OperatorId};
use crate::plan::{Plan, PlanKind};
use crate::protocol::{LeaseId, Lessor, ShardId};
use crate::runtime::command::{Command, TaskMaker};
use crate::runtime::metrics::AppStats;

/// A shard's two client channels (see `runtime::shards`).
#[derive(Clone, Copy)]
enum Inbox {
    Control,
    Data,
}

impl Shard {
    /// Messages queued here: at lessors, at lessees, behind full rings.
    pub(super) fn backlog(&self) -> usize {
        self.lessors.values().map(|s| s.m.backlog()).sum::<usize>()
            + self.lessees.values().map(|s| s.m.backlog()).sum::<usize>()
            + self.env.outbox.spilled()
    }

    /// Room for client data under `max_backlog`: the messages queued here
    /// that will drain by this shard's work. Left out, each bounded by its
    /// own app's `max_in_flight` instead: messages held behind barriers (a
    /// barrier that releases them may be the next command), a held sink's
    /// (its reader decides), a failed app's (they never run), so none of
    /// them starves the other apps' sources here.
    pub(super) fn data_room(&self) -> usize {
        let draining = |a: &ActorId| {
            !self.held_sinks.contains(a)
                && self.apps.get(&a.app).is_some_and(|p| p.failure().is_none())
        };
        let queued = self
            .lessors
            .iter()
            .filter(|(a, _)| draining(a))
            .map(|(_, s)| s.m.queued())
            .sum::<usize>()
            + self
                .lessees
                .iter()
                .filter(|((a, _), _)| draining(a))
                .map(|(_, s)| s.m.backlog())
                .sum::<usize>()
            + self.env.outbox.spilled();
        self.cfg.max_backlog.saturating_sub(queued)
    }

    /// Control commands, whatever the backlog (they add no messages).
    pub(super) fn take_control(&mut self) -> usize {
        self.take_from(Inbox::Control, usize::MAX)
    }

    /// Ingest and barriers while the backlog allows, counting what each
    /// command brings in: at most `max_backlog` plus one batch is queued.
    /// Otherwise they stay in the inbox (the one taken before parking too);
    /// when it fills, clients get `Backpressure`.
    ///
    /// The room (a pass over the active instances) is counted only when a
    /// command waits: the first one is taken into `pending_cmd` to know.
    pub(super) fn take_commands(&mut self) -> usize {
        if !self.data_pending() {
            return 0;
        }
        let room = self.data_room();
        if room == 0 {
            return 0;
        }
        self.take_from(Inbox::Data, room)
    }

    /// Whether a data command waits: in the local queue, or in the inbox
    /// (then taken into `pending_cmd` to know).
    pub(super) fn data_pending(&mut self) -> bool {
        self.pending_cmd.is_some()
            || !self.local.is_empty()
            || Self::peek(&self.commands, &mut self.pending_cmd, &mut self.stopping)
    }

    /// Up to `COMMANDS_PER_TURN` commands of one inbox, the one taken
    /// before parking first, until they brought `room` items in.
    fn take_from(&mut self, inbox: Inbox, mut room: usize) -> usize {
        let mut n = 0;
        while n < COMMANDS_PER_TURN && room > 0 && !self.stopping {
            let (pending, rx) = match inbox {
                Inbox::Control => (&mut self.pending_ctl, &self.control),
                Inbox::Data => (&mut self.pending_cmd, &self.commands),
            };
            let taken = match (pending.take(), inbox) {
                (Some(c), _) => Some((c, false)),
                (None, Inbox::Data) => self.local.pop().map(|c| (c, true)),
                (None, Inbox::Control) => None,
            };
            let (cmd, local) = match taken {
                Some(c) => c,
                None => match rx.try_recv().map(|c| (c, false)) {
                    Ok(c) => c,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.stopping = true;
                        break;
                    }
                },
            };
            room = room.saturating_sub(cmd.items());
            if let Command::Ingest { .. } = cmd {
                match local {
                    true => self.stats.local_ingests += 1,
                    false => self.stats.inbox_ingests += 1,
                }
            }
            self.on_command(cmd);
            n += 1;
        }
        n
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Deploy(plan, restored, reply) => {
                self.deploy(plan, restored);
                let _ = reply.send(());
            }
            Command::Undeploy(app, reply) => {
                self.undeploy(app);
                let _ = reply.send(());
            }
            Command::Ingest {
                app,
                source,
                at_ns,
                events,
            } => {
                let n = events.len();
                self.ingest(app, source, at_ns, events);
                self.mark_taken(app, source, n);
            }
            Command::Barrier {
                app,
                source,
                barrier,
            } => {
                self.inject_barrier(app, source, barrier);
                self.mark_taken(app, source, 1);
            }
            Command::Watermark { app, source, time } => {
                self.client_watermark(app, source, time);
                if let Some(plan) = self.apps.get(&app) {
                    plan.counters[self.env.id as usize].count_taken();
                }
            }
            Command::Lease {
                actor,
                shard,
                reply,
            } => self.lease(actor, shard, reply),
            Command::Revoke {
                actor,
                shard,
                reply,
            } => self.revoke(actor, shard, reply),
            Command::Stats(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Command::Spawn(make) => self.spawn_task(&*make),
            Command::Stop => self.stopping = true,
            #[cfg(feature = "fault-injection")]
            Command::Panic => panic!("a panic injected by Node::inject_shard_panic"),
        }
    }

    /// Start a task beside the dispatcher. A panic in it ends that task
    /// alone (counted in `ShardStats::task_panics`), never the shard.
    fn spawn_task(&mut self, make: &TaskMaker) {
        use futures_lite::FutureExt;
        let fut = std::panic::AssertUnwindSafe(make(self.env.id as usize)).catch_unwind();
        let (panics, live) = (self.task_panics.clone(), self.tasks_live.clone());
        live.set(live.get() + 1);
        glommio::spawn_local(async move {
            if fut.await.is_err() {
                panics.set(panics.get() + 1);
            }
            live.set(live.get() - 1);
        })
        .detach();
    }

    /// Take `plan` on: the states a checkpoint restored for operators homed
    /// here (each taken by its operator's first activation, at once for
    /// one with processing-time timers: they must fire without a message),
    /// the sources homed here, the app's stats.
    fn deploy(&mut self, plan: Arc<Plan>, restored: Vec<(OperatorId, Restored)>) {
        let mut with_timers = Vec::new();
        for (op, state) in restored {
            assert_eq!(
                plan.node(op).map(|n| n.home),
                Some(self.env.id),
                "a restored state goes to its operator's home shard"
            );
            let actor = ActorId { app: plan.id, op };
            if state.clock.proc.len() > 0 {
                with_timers.push(actor);
            }
            self.asleep.restored.insert(actor, state);
        }
        for (i, node) in plan.nodes.iter().enumerate() {
            if matches!(node.kind, PlanKind::Source) && node.home == self.env.id {
                self.sources.insert(
                    (plan.id, OperatorId(i as u16)),
                    SourceState {
                        epoch: 0,
                        seq: 0,
                        tally: vec![0; node.outs.len()],
                        clock: node.source_time.as_ref().map(|_| Default::default()),
                    },
                );
            }
        }
        self.env.app_stats.insert(
            plan.id,
            AppStats::new(plan.id, plan.name.clone(), plan.class),
        );
        self.apps.insert(plan.id, Rc::new(plan));
        for actor in with_timers {
            self.with_lessor(actor, |_, _| ());
        }
    }

    /// Drop everything of `app` (its runs stay counted in the shard's).
    fn undeploy(&mut self, app: AppId) {
        self.apps.remove(&app);
        if let Some(gone) = self.env.app_stats.remove(&app) {
            self.stats.runs += gone.runs;
        }
        self.lessors.retain(|a, _| a.app != app);
        self.lessees.retain(|(a, _), _| a.app != app);
        self.asleep.forget_app(app);
        self.sources.retain(|(a, _), _| *a != app);
        self.ready.retain(|r| r.actor().app != app);
        self.held_sinks.retain(|a| a.app != app);
    }

    /// An explicit lease of `actor` on `shard`: its id, or `None` when the
    /// lessor cannot lease there now.
    fn lease(&mut self, actor: ActorId, shard: ShardId, reply: Sender<Option<LeaseId>>) {
        let lease = self
            .with_lessor(actor, |m, fx| m.request_lease(shard, fx))
            .flatten();
        let _ = reply.send(lease);
    }

    /// Revoke `actor`'s lessees (on `shard`, or all); replies how many
    /// revokes started.
    fn revoke(&mut self, actor: ActorId, shard: Option<ShardId>, reply: Sender<usize>) {
        let n = self
            .with_lessor(actor, |m, fx| {
                let leases: Vec<LeaseId> = m
                    .lessee_shards()
                    .filter(|(_, s)| shard.is_none_or(|want| want == *s))
                    .map(|(l, _)| l)
                    .collect();
                leases.into_iter().filter(|l| m.revoke(*l, fx)).count()
            })
            .unwrap_or(0);
        let _ = reply.send(n);
    }

    /// Count a client command as taken, after what it sent was counted:
    /// the command, and the messages its client reserved for it (`items`
    /// events or one barrier, a message each per out-edge of `source`).
    fn mark_taken(&self, app: AppId, source: OperatorId, items: usize) {
        if let Some(plan) = self.apps.get(&app) {
            let outs = plan.node(source).map_or(0, |n| n.outs.len());
            let c = &plan.counters[self.env.id as usize];
            c.count_taken_msgs((items as u64).saturating_mul(outs as u64));
            c.count_taken();
        }
    }

    /// Run `f` on an active lessor with effects, then reschedule it.
    pub(super) fn with_lessor<R>(
        &mut self,
        actor: ActorId,
        f: impl FnOnce(&mut Lessor<Message, Instance>, &mut ShardFx<'_>) -> R,
    ) -> Option<R> {
        let plan = self.apps.get(&actor.app).cloned()?;
        let node = plan.node(actor.op)?;
        let PlanKind::Function { f: func, .. } = &node.kind else {
            return None;
        };
        if plan.failure().is_some() || self.asleep.waking.contains_key(&actor) {
            return None;
        }
        if !self.lessors.contains_key(&actor) {
            match self.asleep.wake(
                &mut self.stats,
                actor,
                node,
                func,
                (self.env.id, plan.timed, self.env.clock.unix_origin_ns()),
            ) {
                Ok(m) => {
                    let now = self.env.clock.now_ns();
                    self.lessors.insert(actor, LessorSlot::new(m, now));
                }
                Err(WakeError::Retry) => return None,
                Err(WakeError::Damaged(cause)) => {
                    plan.fail(cause);
                    return None;
                }
            }
        }
        let slot = self.lessors.get_mut(&actor)?;
        let mut fx = self.env.fx(actor, &plan, false);
        let r = f(&mut slot.m, &mut fx);
        slot.arm(actor, &mut self.wakeups);
        slot.schedule(actor, &mut self.ready, &mut *self.env.policy, &plan, || {
            self.env.clock.now_ns()
        });
        Some(r)
    }
}
