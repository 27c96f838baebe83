//! A shard: one glommio executor (one core) and everything it owns.
//!
//! A shard owns the actor instances homed or leased on it (lessors, lessees,
//! dormant actors), the sources homed on it, its run queue, its metrics and
//! its ends of the mesh. None of it is shared: other shards reach it only by
//! packets on the SPSC rings, clients only by commands on the inbox, and both
//! ring its doorbell when it may be parked. Load is published through relaxed
//! atomic gauges, nothing else.
//!
//! This file is the shard's state and its dispatcher loop; its helpers are
//! beside it, as quinn-proto's `connection/` folder holds one state machine:
//! - `slots`: the instance slots and the run-queue entry of an instance;
//! - `fx`: the protocol's effects on a real shard (`ShardFx`: run user
//!   functions, emit downstream, send wires);
//! - `asleep`: actors that are not active (dormant, restored, spilled);
//! - `inbound`: packets from the mesh (inputs, wires);
//! - `run`: running ready instances in rank order;
//! - `commands`: client commands (deploy, ingest, barriers, lease, stats);
//! - `scale`: leases on the message path and idle-lessee timers;
//! - `housekeeping`: gauges, deactivation and spills, lessee-time, stats.
//!
//! The dispatcher loop, one turn at a time: drain the rings (and the local
//! queue of packets a shard sends itself), take control commands (deploy,
//! stats, lease, stop: always), take ingest and barrier commands while the
//! backlog allows, run up to `step_budget` instance steps or `run_quota` of
//! time (one message each, instances in the policy's rank order, FIFO within
//! an instance), fire due idle timers, housekeep, push spilled packets,
//! ring the doorbells of peers it sent to. A turn with nothing to
//! do spins for `spin_before_park`, then parks on the doorbell.
//!
//! Invariants:
//! - packets to one peer leave in the order they were sent (the `Outbox`);
//! - an instance is in the run queue at most once (`queued` flag, checked
//!   when it is popped);
//! - every deployed app has its stats entry (`Env::fx` relies on it);
//! - per app, `sent` is published before the message can be seen by its
//!   receiver and `done` after it ran, so equal, stable sums mean quiescence.

mod asleep;
mod commands;
mod fx;
mod housekeeping;
mod inbound;
mod instance;
mod packet;
mod proc_timers;
mod run;
mod scale;
mod slots;
mod source;

pub(crate) use packet::Packet;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use self::asleep::Asleep;
use self::fx::ShardFx;
use self::slots::{InstRef, LesseeSlot, LessorSlot, SourceState, Wakeups};
use super::clock::{nanos, Clock, Gauge};
use super::command::Command;
use super::config::NodeConfig;
use super::local::LocalQueue;
use super::metrics::{AppStats, ShardStats};
use crate::limits::{PARK_NAP_MAX, PARK_NAP_MIN, SHARD_TASK_QUOTA, SINK_RETRY_NAP, TIMER_NAP_MIN};
use crate::mesh::doorbell::LocalWaiter;
use crate::mesh::ring::Consumer;
use crate::mesh::{MeshEnds, Outbox};
use crate::model::hash::IdMap;
use crate::model::{ActorId, AppId, OperatorId};
use crate::plan::Plan;
use crate::protocol::{LeaseId, ShardId};
use crate::sched::policy::{Policy, ScaleLimits};
use crate::sched::runq::RunQueue;
use crate::sync::Ordering;

/// Everything a shard is built from (all `Send`; the shard itself is not).
pub(crate) struct ShardParts {
    pub id: ShardId,
    pub cfg: NodeConfig,
    pub clock: Clock,
    pub mesh: MeshEnds<Packet>,
    /// Ingest and barriers (bounded: backpressure).
    pub commands: Receiver<Command>,
    /// Deploy, stats, lease, stop: taken every turn.
    pub control: Receiver<Command>,
    pub gauges: Arc<[Gauge]>,
    /// The node's number in the process (see `runtime::local`).
    pub node_id: u64,
}

/// What the protocol's effects reach on a shard: its id and clock, the
/// load gauges, its outbox, its policy and its per-app stats. Kept apart
/// from the instance tables so an instance and its effects can be borrowed
/// at once.
struct Env {
    id: ShardId,
    clock: Clock,
    gauges: Arc<[Gauge]>,
    outbox: Outbox<Packet>,
    policy: Box<dyn Policy>,
    app_stats: IdMap<AppId, AppStats>,
}

impl Env {
    /// The effects of running an instance of `actor` (a lessee's when
    /// `on_lessee`).
    fn fx<'a>(&'a mut self, actor: ActorId, plan: &'a Plan, on_lessee: bool) -> ShardFx<'a> {
        let stats = self
            .app_stats
            .get_mut(&actor.app)
            .expect("stats exist for deployed apps");
        ShardFx::new(
            (self.id, self.clock, &self.gauges),
            actor,
            plan,
            &mut self.outbox,
            stats,
            &mut *self.policy,
            on_lessee,
        )
    }

    /// This shard's backlog gauge.
    fn gauge(&self) -> &Gauge {
        &self.gauges[self.id as usize]
    }
}

pub(crate) struct Shard {
    env: Env,
    cfg: NodeConfig,
    inbound: Vec<(ShardId, Consumer<Packet>)>,
    waiter: LocalWaiter,
    commands: Receiver<Command>,
    /// Data commands from tasks on this shard's own executor, taken before
    /// the inbox (`runtime::local`).
    local: Rc<LocalQueue>,
    /// A command taken while checking for work before parking.
    pending_cmd: Option<Command>,
    /// Control commands (deploy, stats, lease, stop): taken every turn,
    /// whatever the backlog.
    control: Receiver<Command>,
    pending_ctl: Option<Command>,
    /// The apps deployed here. `Rc` around the shared `Arc`: the shard
    /// clones a plan handle per message, and an `Arc` clone would bounce
    /// the refcount's cache line between the cores of every shard that
    /// runs the app.
    #[allow(clippy::redundant_allocation)] // the shard-local count is the point
    apps: IdMap<AppId, Rc<Arc<Plan>>>,
    lessors: IdMap<ActorId, LessorSlot>,
    lessees: IdMap<(ActorId, LeaseId), LesseeSlot>,
    /// Actors homed here that are not active.
    asleep: Asleep,
    sources: IdMap<(AppId, OperatorId), SourceState>,
    /// Instances with work, by the policy's rank of their next message.
    ready: RunQueue<InstRef>,
    /// Sinks with work whose queue is full (`SinkPolicy::Block`): out of
    /// the run queue until their reader makes room.
    held_sinks: Vec<ActorId>,
    limits: ScaleLimits,
    /// (due, lessee): when an idle lessee should be looked at again.
    idle_timers: BinaryHeap<Reverse<(u64, ActorId, LeaseId)>>,
    /// Instances to wake for their processing-time timers.
    wakeups: Wakeups,
    stats: ShardStats,
    last_housekeeping_ns: u64,
    /// When the idle-deactivation scan last ran.
    last_idle_scan_ns: u64,
    stopping: bool,
    /// Tasks beside the dispatcher that panicked (shared with them).
    task_panics: Rc<std::cell::Cell<u64>>,
    /// Tasks beside the dispatcher still running (shared with them).
    tasks_live: Rc<std::cell::Cell<usize>>,
}

impl Shard {
    pub(crate) fn new(p: ShardParts, local: Rc<LocalQueue>) -> Shard {
        let MeshEnds {
            inbound,
            outbox,
            waiter,
        } = p.mesh;
        Shard {
            env: Env {
                id: p.id,
                clock: p.clock,
                gauges: p.gauges,
                outbox,
                policy: p.cfg.policy.make(p.id),
                app_stats: IdMap::default(),
            },
            inbound,
            waiter: waiter.into_local(),
            commands: p.commands,
            local,
            control: p.control,
            pending_ctl: None,
            pending_cmd: None,
            apps: IdMap::default(),
            lessors: IdMap::default(),
            lessees: IdMap::default(),
            asleep: Asleep::default(),
            sources: IdMap::default(),
            ready: RunQueue::default(),
            held_sinks: Vec::new(),
            limits: p.cfg.autoscale.limits(),
            idle_timers: BinaryHeap::new(),
            wakeups: Wakeups::default(),
            stats: ShardStats {
                shard: p.id as usize,
                ..Default::default()
            },
            last_housekeeping_ns: 0,
            last_idle_scan_ns: 0,
            cfg: p.cfg,
            stopping: false,
            task_panics: Rc::default(),
            tasks_live: Rc::default(),
        }
    }

    /// The dispatcher loop; returns when told to stop.
    pub(crate) async fn run(mut self) {
        let spin_ns = nanos(self.cfg.spin_before_park);
        let quota_ns = nanos(SHARD_TASK_QUOTA);
        let mut idle_since: Option<u64> = None;
        let mut yielded_at = 0;
        while !self.stopping {
            let start = self.env.clock.now_ns();
            let did = self.turn();
            let end = self.env.clock.now_ns();
            if did > 0 {
                self.stats.busy_ns += end - start;
                idle_since = None;
                if self.tasks_live.get() > 0 && end - yielded_at >= quota_ns {
                    // Let the executor poll its ring and run the tasks
                    // beside us (connections); it would not before its
                    // preempt timer otherwise.
                    yielded_at = end;
                    glommio::executor().yield_task_queue_now().await;
                } else {
                    glommio::yield_if_needed().await;
                }
                continue;
            }
            let since = *idle_since.get_or_insert(end);
            if end - since < spin_ns {
                if self.tasks_live.get() > 0 {
                    // The tasks beside us (a connection writing the
                    // output just made) run while we wait for more.
                    glommio::executor().yield_task_queue_now().await;
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            self.park().await;
            idle_since = None;
        }
        self.env.outbox.ring_dirty();
    }

    /// One turn of the dispatcher. Returns how much it did.
    fn turn(&mut self) -> usize {
        let mut did = 0;
        did += self.drain_inbound();
        did += self.take_control();
        did += self.take_commands();
        did += self.retry_held_sinks();
        did += self.run_ready();
        let now = self.env.clock.now_ns();
        did += self.fire_idle_timers(now);
        did += self.fire_processing_timers(now);
        let dt = now.saturating_sub(self.last_housekeeping_ns);
        if dt >= nanos(self.cfg.housekeeping) {
            self.last_housekeeping_ns = now;
            did += self.housekeeping(now, dt);
        }
        did += self.env.outbox.flush_spill();
        self.env.outbox.ring_dirty();
        did
    }

    /// Sleep on the doorbell until a peer or client rings, or until the
    /// next housekeeping or idle timer is due.
    async fn park(&mut self) {
        self.waiter.prepare_park();
        if self.has_work_after_prepare() {
            self.waiter.cancel_park();
            return;
        }
        self.stats.parks += 1;
        // An idle shard says so before it sleeps: a gauge left at the last
        // busy value would make peers' lease requests be refused until the
        // next housekeeping.
        self.env
            .gauge()
            .backlog
            .store(self.backlog(), Ordering::Relaxed);
        let nap = self.nap();
        let woke = futures_lite::future::or(
            async {
                let _ = self.waiter.wait().await;
                true
            },
            async {
                glommio::timer::sleep(nap).await;
                false
            },
        )
        .await;
        if !woke {
            self.waiter.cancel_park();
        }
    }

    /// Re-check everything a peer or client could have given us after our
    /// last look: the doorbell protocol's half of the handshake. A command
    /// found is kept for the next turn.
    fn has_work_after_prepare(&mut self) -> bool {
        self.inbound.iter().any(|(_, c)| !c.is_empty())
            || !self.env.outbox.local.is_empty()
            || !self.ready.is_empty()
            || self.env.outbox.spilled() > 0
            || self.pending_ctl.is_some()
            || Self::peek(&self.control, &mut self.pending_ctl, &mut self.stopping)
            || self.data_waiting()
    }

    /// Whether a data command waits that the backlog lets us take: with no
    /// room, a waiting one is no reason to stay awake (and is not taken).
    fn data_waiting(&mut self) -> bool {
        self.data_pending() && self.data_room() > 0
    }

    /// Take one command from `rx` into `pending` if there is one; a closed
    /// channel means the node is gone, and stops the shard.
    pub(super) fn peek(
        rx: &Receiver<Command>,
        pending: &mut Option<Command>,
        stopping: &mut bool,
    ) -> bool {
        match rx.try_recv() {
            Ok(c) => {
                *pending = Some(c);
                true
            }
            Err(TryRecvError::Empty) => false,
            Err(TryRecvError::Disconnected) => {
                *stopping = true;
                true
            }
        }
    }

    /// How long to sleep without a ring: long enough to be cheap, short
    /// enough for housekeeping (idle deactivation) and the next idle timer.
    fn nap(&self) -> Duration {
        let mut nap = self
            .cfg
            .housekeeping
            .saturating_mul(10)
            .clamp(PARK_NAP_MIN, PARK_NAP_MAX);
        if !self.held_sinks.is_empty() {
            // A reader makes room without ringing: look again soon.
            nap = SINK_RETRY_NAP;
        }
        let idle = self.idle_timers.peek().map(|Reverse((due, ..))| *due);
        match idle.into_iter().chain(self.wakeups.next_due()).min() {
            Some(due) => {
                let until = Duration::from_nanos(due.saturating_sub(self.env.clock.now_ns()));
                nap.min(until.max(TIMER_NAP_MIN))
            }
            None => nap,
        }
    }
}
