//! A shard: one glommio executor (one core) and everything it owns.
//!
//! A shard owns the actor instances homed or leased on it (lessors, lessees,
//! dormant actors), the sources homed on it, its run queue, its metrics and
//! its ends of the mesh. None of it is shared: other shards reach it only by
//! packets on the SPSC rings, clients only by commands on the inbox, and both
//! ring its doorbell when it may be parked. Load is published through relaxed
//! atomic gauges, nothing else.
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
//! - packets to one peer leave in the order they were sent: once a packet
//!   spills (ring full), later ones spill behind it until the spill drains;
//! - an instance is in the run queue at most once (`queued` flag);
//! - per app, `sent` is published before the message can be seen by its
//!   receiver and `done` after it ran, so equal, stable sums mean quiescence.

use crate::sync::{AtomicUsize, Ordering};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::{Plan, PlanKind, PlanNode};
use crate::config::NodeConfig;
use crate::doorbell::{Doorbell, DoorbellWaiter, LocalWaiter};
use crate::function::{AnyBox, ErasedState};
use crate::instance::{Instance, Part};
use crate::journal::JournalMsg;
use crate::message::{
    ActorId, AppId, Barrier, BarrierKind, Header, Kind, Message, OperatorId, Payload,
};
use crate::metrics::{AppStats, ShardStats};
use crate::policy::{OpView, Policy, QueueView, Rank, Scale, ScaleLimits, ShardLoad};
use crate::protocol::{
    CriticalMark, Dormant, Effects, Epoch, LeaseId, Lessee, Lessor, LessorMode, ShardId, Strategy,
    Wire,
};
use crate::ring::{Consumer, Producer};
use crate::runq::RunQueue;

/// A shard's two client inboxes (see `ShardLink` in `node`).
#[derive(Clone, Copy)]
enum Inbox {
    Control,
    Data,
}

/// What crosses the mesh between shards.
pub(crate) enum Packet {
    /// A message for the lessor of `msg.header.actor`.
    Input(Message),
    ToLessee {
        actor: ActorId,
        wire: Wire<Message, Part>,
    },
    ToLessor {
        actor: ActorId,
        wire: Wire<Message, Part>,
    },
}

/// What a client thread asks of a shard.
pub(crate) enum Command {
    /// Deploy `plan`; the states are those of operators homed here, restored
    /// from a checkpoint, each taken by the operator's first activation.
    Deploy(
        Arc<Plan>,
        Vec<(OperatorId, Box<dyn ErasedState>)>,
        Sender<()>,
    ),
    Undeploy(AppId, Sender<()>),
    /// `at_ns`: when the client handed the batch over (node clock), so time
    /// spent in the inbox counts toward latency.
    Ingest {
        app: AppId,
        source: OperatorId,
        at_ns: u64,
        events: Vec<(u64, AnyBox)>,
    },
    Barrier {
        app: AppId,
        source: OperatorId,
        barrier: Barrier,
    },
    Lease {
        actor: ActorId,
        shard: ShardId,
        reply: Sender<Option<LeaseId>>,
    },
    Revoke {
        actor: ActorId,
        shard: Option<ShardId>,
        reply: Sender<usize>,
    },
    Stats(Sender<ShardStats>),
    Stop,
}

/// A shard's published load, read by other shards when they pick where to
/// lease.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Gauge {
    pub backlog: AtomicUsize,
}

/// The node clock: ns since the node started, the same origin on every shard.
#[derive(Clone, Copy)]
pub(crate) struct Clock(pub Instant);

impl Clock {
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Everything a shard is built from (all `Send`; the shard itself is not).
pub(crate) struct ShardParts {
    pub id: ShardId,
    pub cfg: NodeConfig,
    pub clock: Clock,
    pub inbound: Vec<(ShardId, Consumer<Packet>)>,
    pub outbound: Vec<Option<Producer<Packet>>>,
    pub bells: Vec<Arc<Doorbell>>,
    pub waiter: DoorbellWaiter,
    pub commands: Receiver<Command>,
    pub control: Receiver<Command>,
    pub gauges: Arc<[Gauge]>,
}

/// The sending side of a shard's mesh links.
struct Outbox {
    me: ShardId,
    out: Vec<Option<Producer<Packet>>>,
    spill: Vec<VecDeque<Packet>>,
    bells: Vec<Arc<Doorbell>>,
    /// Peers sent to this turn, to ring once at the end of it.
    dirty: Vec<bool>,
    local: VecDeque<Packet>,
}

impl Outbox {
    fn send(&mut self, to: ShardId, p: Packet) {
        let i = to as usize;
        if to == self.me {
            self.local.push_back(p);
            return;
        }
        self.dirty[i] = true;
        if !self.spill[i].is_empty() {
            self.spill[i].push_back(p);
            return;
        }
        let ring = self.out[i].as_mut().expect("a link to every other shard");
        if let Err(p) = ring.push(p) {
            self.spill[i].push_back(p);
        }
    }

    /// Move spilled packets into their rings, in order. Returns how many moved.
    fn flush_spill(&mut self) -> usize {
        let mut moved = 0;
        for i in 0..self.spill.len() {
            while let Some(p) = self.spill[i].pop_front() {
                let ring = self.out[i].as_mut().expect("spill only to peers");
                match ring.push(p) {
                    Ok(()) => {
                        moved += 1;
                        self.dirty[i] = true;
                    }
                    Err(p) => {
                        self.spill[i].push_front(p);
                        break;
                    }
                }
            }
        }
        moved
    }

    fn spilled(&self) -> usize {
        self.spill.iter().map(|q| q.len()).sum()
    }

    fn ring_dirty(&mut self) {
        for (i, d) in self.dirty.iter_mut().enumerate() {
            if std::mem::take(d) {
                self.bells[i].ring();
            }
        }
    }
}

struct LessorSlot {
    m: Lessor<Message, Instance>,
    queued: bool,
    last_active_ns: u64,
    /// No scale decision before this time (after a lease was asked for).
    scale_after_ns: u64,
}

struct LesseeSlot {
    m: Lessee<Message, Instance>,
    queued: bool,
    last_active_ns: u64,
    /// An idle timer for this lessee is pending in `Shard::idle_timers`.
    timer_armed: bool,
    /// It asked to go home (`request_release`); it finishes on the revoke.
    release_asked: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum InstRef {
    Lessor(ActorId),
    Lessee(ActorId, LeaseId),
}

struct SourceState {
    epoch: Epoch,
    seq: u64,
    tally: Vec<u64>,
}

/// The effects of the protocol on a real shard: run user functions, emit
/// their outputs downstream, send protocol packets.
struct ShardFx<'a> {
    me: ShardId,
    gauges: &'a [Gauge],
    policy: &'a mut dyn Policy,
    actor: ActorId,
    plan: &'a Plan,
    outbox: &'a mut Outbox,
    stats: &'a mut AppStats,
    clock: Clock,
    /// Whether the instance running is a lessee (for the lessee-run tally).
    on_lessee: bool,
    scratch: Vec<(u64, AnyBox)>,
}

impl<'a> ShardFx<'a> {
    /// Hand the operator's whole state to the app's journal for checkpoint
    /// `checkpoint` (durable operators of durable apps only).
    ///
    /// `tag` is the barrier's: the checkpoint number, and whether it is a
    /// full one (`journal::checkpoint_tag`). An incremental checkpoint saves
    /// what changed since the last one where the state can tell.
    fn save_checkpoint(
        &mut self,
        f: &Arc<dyn crate::function::ErasedFunction>,
        state: &mut Instance,
        tag: u64,
    ) {
        let (Some(journal), Some(codec)) = (&self.plan.journal, f.state_codec()) else {
            return;
        };
        let (checkpoint, full) = crate::journal::split_checkpoint_tag(tag);
        let user = &mut *state.user;
        // Changes only where asked and where the state can tell; whole
        // otherwise (a state that stopped tracking says so with `None`).
        let changes = if full {
            None
        } else {
            (codec.save_changes)(user)
        };
        let (bytes, delta) = match changes {
            Some(changes) => (changes, true),
            None => ((codec.save)(user), false),
        };
        if bytes.is_ok() {
            (codec.checkpointed)(user);
        }
        // The journal outlives every plan that names it; if it is gone the
        // app is being torn down and the checkpoint is moot.
        let _ = journal.send(JournalMsg::State {
            checkpoint,
            op: self.actor.op,
            delta,
            bytes: bytes.map_err(|e| e.to_string()),
        });
    }

    fn new(
        here: (ShardId, Clock, &'a [Gauge]),
        actor: ActorId,
        plan: &'a Plan,
        outbox: &'a mut Outbox,
        stats: &'a mut AppStats,
        policy: &'a mut dyn Policy,
        on_lessee: bool,
    ) -> Self {
        let (me, clock, gauges) = here;
        ShardFx {
            me,
            gauges,
            policy,
            actor,
            plan,
            outbox,
            stats,
            clock,
            on_lessee,
            scratch: Vec::new(),
        }
    }

    fn node(&self) -> &PlanNode {
        self.plan
            .node(self.actor.op)
            .expect("an actor's operator exists in its plan")
    }

    fn mark_done(&mut self) {
        self.plan.counters[self.me as usize].count_done();
    }

    /// Send the outputs in `scratch` to every downstream edge, tagged with
    /// the parent's epoch and timing.
    fn emit_scratch(&mut self, tally: &mut [u64], parent: &Header) {
        let outs = self.node().outs.clone();
        let f = match &self.node().kind {
            PlanKind::Function { f, .. } => f.clone(),
            PlanKind::Source => unreachable!("sources do not run"),
        };
        let outputs = std::mem::take(&mut self.scratch);
        if outputs.is_empty() {
            return;
        }
        // What the policy sees of each downstream operator, once per run.
        let plan = self.plan;
        let views: Vec<OpView<'_>> = outs.iter().map(|&(op, _)| plan.op_view(op)).collect();
        for (key, value) in outputs {
            let mut value = Some(value);
            for (i, &(op, edge)) in outs.iter().enumerate() {
                let payload = if i + 1 == outs.len() {
                    value.take().expect("moved once, on the last edge")
                } else {
                    f.clone_output(value.as_ref().expect("present until the last edge"))
                };
                let mut header = Header {
                    actor: ActorId {
                        app: self.actor.app,
                        op,
                    },
                    edge,
                    kind: Kind::User,
                    critical: None,
                    ..*parent
                };
                self.policy.on_emit(parent, &mut header, &views[i]);
                tally[i] += 1;
                send_input(
                    self.me,
                    self.plan,
                    self.outbox,
                    Message {
                        header,
                        key,
                        payload: Payload::Data(payload),
                    },
                );
            }
        }
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

/// Count a message as sent (before anyone can see it) and route it to the
/// lessor of its actor.
fn send_input(me: ShardId, plan: &Plan, outbox: &mut Outbox, msg: Message) {
    plan.counters[me as usize].count_sent();
    let home = plan
        .node(msg.header.actor.op)
        .expect("edges point at existing operators")
        .home;
    outbox.send(home, Packet::Input(msg));
}

impl Effects<Message, Instance> for ShardFx<'_> {
    fn run(&mut self, state: &mut Instance, msg: Message) {
        let now = self.clock.now_ns();
        let header = msg.header;
        self.stats
            .record_queueing(now.saturating_sub(header.enqueued_ns));
        let (f, sink) = match &self.node().kind {
            PlanKind::Function { f, sink } => (f.clone(), *sink),
            PlanKind::Source => unreachable!("sources have no actor"),
        };
        let Payload::Data(input) = msg.payload else {
            debug_assert!(false, "a barrier payload on a data message");
            return;
        };
        f.run(
            &mut *state.user,
            msg.key,
            input,
            &msg.header,
            now,
            &mut self.scratch,
        );
        let done = self.clock.now_ns();
        let cost = done.saturating_sub(now);
        self.plan.learn_cost(self.actor.op, cost);
        self.policy
            .on_complete(&header, &self.plan.op_view(self.actor.op), cost, done);
        self.stats.runs += 1;
        self.stats.lessee_runs += u64::from(self.on_lessee);
        if sink {
            self.stats
                .record_delivery(done.saturating_sub(header.ingress_ns), self.plan.slo_ns);
        }
        self.emit_scratch(&mut state.tally, &header);
        self.mark_done();
    }

    fn run_critical(&mut self, state: &mut Instance, barrier: Epoch, msgs: Vec<Message>) {
        let f = match &self.node().kind {
            PlanKind::Function { f, .. } => f.clone(),
            PlanKind::Source => unreachable!("sources have no actor"),
        };
        let mut last: Option<(Header, Barrier)> = None;
        for m in msgs {
            let Payload::Barrier(b) = m.payload else {
                debug_assert!(false, "a data payload on a critical message");
                continue;
            };
            debug_assert_eq!(b.id, barrier);
            f.run_critical(
                &mut *state.user,
                &b,
                &m.header,
                self.clock.now_ns(),
                &mut self.scratch,
            );
            self.emit_scratch(&mut state.tally, &m.header);
            self.mark_done();
            last = Some((m.header, b));
        }
        self.stats.barriers += 1;
        let Some((parent, b)) = last else { return };
        if b.kind == BarrierKind::Checkpoint {
            // The state is whole and consolidated here (every lessee's part
            // came home before the critical ran): what the checkpoint saves.
            self.save_checkpoint(&f, state, b.tag);
        }
        // Propagate the barrier on every output edge, announcing how many
        // data messages this operator (all instances) sent on it this epoch.
        let outs = self.node().outs.clone();
        for (i, &(op, edge)) in outs.iter().enumerate() {
            let sent = std::mem::take(&mut state.tally[i]);
            let header = Header {
                actor: ActorId {
                    app: self.actor.app,
                    op,
                },
                edge,
                kind: Kind::Control,
                critical: Some(CriticalMark { barrier, sent }),
                epoch: barrier - 1,
                ..parent
            };
            send_input(
                self.me,
                self.plan,
                self.outbox,
                Message {
                    header,
                    key: 0,
                    payload: Payload::Barrier(b),
                },
            );
        }
    }

    fn choose(&mut self, msg: &Message, shards: &[ShardId]) -> Option<usize> {
        let loads: Vec<ShardLoad> = shards
            .iter()
            .map(|&shard| ShardLoad {
                shard,
                backlog: self
                    .gauges
                    .get(shard as usize)
                    .map_or(usize::MAX, |g| g.backlog.load(Ordering::Relaxed)),
            })
            .collect();
        let view = self.plan.op_view(self.actor.op);
        self.policy.route(&msg.header, &view, &loads)
    }

    fn send(&mut self, to: ShardId, wire: Wire<Message, Part>) {
        let actor = self.actor;
        let p = if wire.is_for_lessee() {
            Packet::ToLessee { actor, wire }
        } else {
            Packet::ToLessor { actor, wire }
        };
        self.outbox.send(to, p);
    }
}

/// What a shard keeps of the actors homed on it that are not active.
#[derive(Default)]
struct Asleep {
    /// Deactivated actors: the protocol's record, with the state in memory
    /// or (durable operators) in a spill file.
    dormant: HashMap<ActorId, Dormant<Instance>>,
    /// States restored from a checkpoint at deploy, for each operator's
    /// first activation.
    restored: HashMap<ActorId, Box<dyn ErasedState>>,
    /// Dormant actors whose state is in a spill file (see `spill`).
    spilled: HashMap<ActorId, std::path::PathBuf>,
    /// Spill files written by this shard (their ids and names).
    spill_seq: u64,
}

impl Asleep {
    /// The lessor for `actor`'s first message since deploy or since it went
    /// dormant: from its dormant record (its state read back from its spill
    /// file if it was spilled), else on the state a checkpoint restored,
    /// else fresh.
    fn wake(
        &mut self,
        me: ShardId,
        stats: &mut ShardStats,
        actor: ActorId,
        node: &PlanNode,
        f: &Arc<dyn crate::function::ErasedFunction>,
    ) -> Lessor<Message, Instance> {
        match self.dormant.remove(&actor) {
            Some(d) => {
                let d = self.unspill(me, stats, actor, f, d);
                Lessor::from_dormant(me, node.strategy, node.inputs, d)
            }
            None => {
                let state = self
                    .restored
                    .remove(&actor)
                    .unwrap_or_else(|| f.new_state());
                Lessor::new(
                    me,
                    node.strategy,
                    node.inputs,
                    Instance::new(state, node.outs.len()),
                )
            }
        }
    }

    /// Bring a spilled dormant actor's state back from its file (the
    /// actor's cold start).
    ///
    /// A spill file that cannot be read back (deleted or damaged under the
    /// running node) leaves no state to run the actor on: the shard stops
    /// (panics) rather than run it on an empty one; the app's checkpoint
    /// and ingress log recover it on the next deploy.
    fn unspill(
        &mut self,
        me: ShardId,
        stats: &mut ShardStats,
        actor: ActorId,
        f: &Arc<dyn crate::function::ErasedFunction>,
        mut d: Dormant<Instance>,
    ) -> Dormant<Instance> {
        let Some(path) = self.spilled.remove(&actor) else {
            return d;
        };
        let codec = f
            .state_codec()
            .expect("only durable operators' states are spilled");
        let started = Instant::now();
        match crate::spill::read(&path, codec.unspill) {
            Ok(state) => {
                d.state.user = state;
                stats.unspills += 1;
                stats.unspill_ns += started.elapsed().as_nanos() as u64;
                d
            }
            Err(e) => panic!(
                "shard {me}: the dormant state of {actor} in {} cannot be read back: {e}",
                path.display()
            ),
        }
    }

    /// Drop everything of an undeployed app (its spill files too).
    fn forget_app(&mut self, app: AppId) {
        self.dormant.retain(|a, _| a.app != app);
        self.restored.retain(|a, _| a.app != app);
        self.spilled.retain(|a, path| {
            let keep = a.app != app;
            if !keep {
                let _ = std::fs::remove_file(path);
            }
            keep
        });
    }
}

pub(crate) struct Shard {
    id: ShardId,
    cfg: NodeConfig,
    clock: Clock,
    inbound: Vec<(ShardId, Consumer<Packet>)>,
    outbox: Outbox,
    waiter: LocalWaiter,
    commands: Receiver<Command>,
    /// A command taken while checking for work before parking.
    pending_cmd: Option<Command>,
    /// Control commands (deploy, stats, lease, stop): taken every turn,
    /// whatever the backlog.
    control: Receiver<Command>,
    pending_ctl: Option<Command>,
    gauges: Arc<[Gauge]>,
    apps: HashMap<AppId, Arc<Plan>>,
    lessors: HashMap<ActorId, LessorSlot>,
    lessees: HashMap<(ActorId, LeaseId), LesseeSlot>,
    /// Actors homed here that are not active.
    asleep: Asleep,
    sources: HashMap<(AppId, OperatorId), SourceState>,
    /// Instances with work, by the policy's rank of their next message.
    ready: RunQueue<InstRef>,
    policy: Box<dyn Policy>,
    limits: ScaleLimits,
    /// (due, lessee): when an idle lessee should be looked at again.
    idle_timers: BinaryHeap<Reverse<(u64, ActorId, LeaseId)>>,
    app_stats: HashMap<AppId, AppStats>,
    stats: ShardStats,
    last_housekeeping_ns: u64,
    /// When the idle-deactivation scan last ran.
    last_idle_scan_ns: u64,
    stopping: bool,
}

impl Shard {
    pub fn new(p: ShardParts) -> Shard {
        let n = p.outbound.len();
        Shard {
            id: p.id,
            clock: p.clock,
            inbound: p.inbound,
            outbox: Outbox {
                me: p.id,
                out: p.outbound,
                spill: (0..n).map(|_| VecDeque::new()).collect(),
                bells: p.bells,
                dirty: vec![false; n],
                local: VecDeque::new(),
            },
            waiter: p.waiter.into_local(),
            commands: p.commands,
            control: p.control,
            pending_ctl: None,
            pending_cmd: None,
            gauges: p.gauges,
            apps: HashMap::new(),
            lessors: HashMap::new(),
            lessees: HashMap::new(),
            asleep: Asleep::default(),
            sources: HashMap::new(),
            ready: RunQueue::default(),
            policy: p.cfg.policy.make(p.id),
            limits: p.cfg.autoscale.limits(),
            idle_timers: BinaryHeap::new(),
            app_stats: HashMap::new(),
            stats: ShardStats {
                shard: p.id as usize,
                ..Default::default()
            },
            last_housekeeping_ns: 0,
            last_idle_scan_ns: 0,
            cfg: p.cfg,
            stopping: false,
        }
    }

    /// The dispatcher loop; returns when told to stop.
    pub async fn run(mut self) {
        let spin_ns = self.cfg.spin_before_park.as_nanos() as u64;
        let mut idle_since: Option<u64> = None;
        while !self.stopping {
            let start = self.clock.now_ns();
            let did = self.turn();
            let end = self.clock.now_ns();
            if did > 0 {
                self.stats.busy_ns += end - start;
                idle_since = None;
                glommio::yield_if_needed().await;
                continue;
            }
            let since = *idle_since.get_or_insert(end);
            if end - since < spin_ns {
                std::hint::spin_loop();
                continue;
            }
            self.park().await;
            idle_since = None;
        }
        self.outbox.ring_dirty();
    }

    /// One turn of the dispatcher. Returns how much it did.
    fn turn(&mut self) -> usize {
        let mut did = 0;
        did += self.drain_inbound();
        did += self.take_control();
        did += self.take_commands();
        did += self.run_ready();
        let now = self.clock.now_ns();
        did += self.fire_idle_timers(now);
        let dt = now.saturating_sub(self.last_housekeeping_ns);
        if dt >= self.cfg.housekeeping.as_nanos() as u64 {
            self.last_housekeeping_ns = now;
            did += self.housekeeping(now, dt);
        }
        did += self.outbox.flush_spill();
        self.outbox.ring_dirty();
        did
    }

    async fn park(&mut self) {
        self.waiter.prepare_park();
        // Re-check everything a peer or client could have given us after our
        // last look: the doorbell protocol's half of the handshake.
        let has_work = self.inbound.iter().any(|(_, c)| !c.is_empty())
            || !self.outbox.local.is_empty()
            || !self.ready.is_empty()
            || self.outbox.spilled() > 0
            || self.pending_cmd.is_some()
            || self.pending_ctl.is_some()
            || match self.control.try_recv() {
                Ok(c) => {
                    self.pending_ctl = Some(c);
                    true
                }
                Err(TryRecvError::Empty) => false,
                Err(TryRecvError::Disconnected) => {
                    self.stopping = true;
                    true
                }
            }
            || match self.commands.try_recv() {
                Ok(c) => {
                    self.pending_cmd = Some(c);
                    true
                }
                Err(TryRecvError::Empty) => false,
                Err(TryRecvError::Disconnected) => {
                    self.stopping = true;
                    true
                }
            };
        if has_work {
            self.waiter.cancel_park();
            return;
        }
        self.stats.parks += 1;
        // An idle shard says so before it sleeps: a gauge left at the last
        // busy value would make peers' lease requests be refused until the
        // next housekeeping.
        self.gauges[self.id as usize]
            .backlog
            .store(self.backlog(), Ordering::Relaxed);
        // Wake for housekeeping (idle deactivation) even when nobody rings.
        // Wake for the next idle timer too.
        let mut nap =
            (self.cfg.housekeeping * 10).clamp(Duration::from_millis(1), Duration::from_millis(50));
        if let Some(Reverse((due, ..))) = self.idle_timers.peek() {
            let until = Duration::from_nanos(due.saturating_sub(self.clock.now_ns()));
            nap = nap.min(until.max(Duration::from_micros(50)));
        }
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

    // ------------------------------------------------------------------
    // Inbound
    // ------------------------------------------------------------------

    /// Move every packet waiting on the rings into the shard's queues. The
    /// rings are transport, not queues: the backlog must be visible to the
    /// scale rule and the run queue. Each ring gives at most what it held
    /// when we looked (its capacity), so a fast peer cannot hold us here.
    fn drain_inbound(&mut self) -> usize {
        let mut n = 0;
        for i in 0..self.inbound.len() {
            let waiting = self.inbound[i].1.len();
            for _ in 0..waiting {
                let Some(p) = self.inbound[i].1.pop() else {
                    break;
                };
                self.on_packet(p);
                n += 1;
            }
        }
        while let Some(p) = self.outbox.local.pop_front() {
            self.on_packet(p);
            n += 1;
        }
        n
    }

    fn on_packet(&mut self, p: Packet) {
        match p {
            Packet::Input(msg) => self.on_input(msg),
            Packet::ToLessor { actor, wire } => {
                let Some(plan) = self.apps.get(&actor.app).cloned() else {
                    self.stats.dropped += 1;
                    return;
                };
                let Some(slot) = self.lessors.get_mut(&actor) else {
                    debug_assert!(false, "lessor message for an inactive actor {actor}");
                    self.stats.dropped += 1;
                    return;
                };
                let stats = self
                    .app_stats
                    .get_mut(&actor.app)
                    .expect("stats exist for deployed apps");
                let mut fx = ShardFx::new(
                    (self.id, self.clock, &self.gauges),
                    actor,
                    &plan,
                    &mut self.outbox,
                    stats,
                    &mut *self.policy,
                    false,
                );
                slot.m.on_wire(wire, &mut fx);
                Self::schedule(
                    &mut self.ready,
                    &mut slot.queued,
                    slot.m.has_work(),
                    InstRef::Lessor(actor),
                    || rank_of(&mut *self.policy, &plan, slot.m.next(), self.clock.now_ns()),
                );
            }
            Packet::ToLessee { actor, wire } => self.on_lessee_wire(actor, wire),
        }
    }

    /// Queue `r` if it has work and is not queued yet, at the rank
    /// `rank()` gives (called only then).
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

    fn on_input(&mut self, msg: Message) {
        let actor = msg.header.actor;
        let Some(plan) = self.apps.get(&actor.app).cloned() else {
            self.stats.dropped += 1;
            return;
        };
        let Some(node) = plan.node(actor.op) else {
            self.stats.dropped += 1;
            return;
        };
        debug_assert_eq!(node.home, self.id, "input for {actor} at the wrong shard");
        let PlanKind::Function { f, .. } = &node.kind else {
            self.stats.dropped += 1;
            return;
        };
        let now = self.clock.now_ns();
        let slot = match self.lessors.entry(actor) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let m = self.asleep.wake(self.id, &mut self.stats, actor, node, f);
                e.insert(LessorSlot {
                    m,
                    queued: false,
                    last_active_ns: now,
                    scale_after_ns: 0,
                })
            }
        };
        slot.last_active_ns = now;
        let mut msg = msg;
        msg.header.enqueued_ns = now;
        let stats = self
            .app_stats
            .get_mut(&actor.app)
            .expect("stats exist for deployed apps");
        let mut fx = ShardFx::new(
            (self.id, self.clock, &self.gauges),
            actor,
            &plan,
            &mut self.outbox,
            stats,
            &mut *self.policy,
            false,
        );
        slot.m.on_input(msg, &mut fx);
        Self::schedule(
            &mut self.ready,
            &mut slot.queued,
            slot.m.has_work(),
            InstRef::Lessor(actor),
            || rank_of(&mut *self.policy, &plan, slot.m.next(), self.clock.now_ns()),
        );
        self.maybe_lease(actor, &plan, now);
    }

    /// Implicit scaling, on the message path: a message was just queued at
    /// `actor`'s lessor, or its lessor ran one and has more; if the actor may
    /// take another lessee now, ask the policy, and on `Lease` request one on the least loaded shard that
    /// accepts (by the relaxed backlog gauges).
    fn maybe_lease(&mut self, actor: ActorId, plan: &Plan, now: u64) {
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
        if self.policy.on_backlog(&q, &view, &self.limits, now) != Scale::Lease {
            return;
        }
        // Whatever comes of it, do not ask again for a housekeeping period.
        slot.scale_after_ns = now + self.cfg.housekeeping.as_nanos() as u64;
        let taken: Vec<ShardId> = m.lessee_shards().map(|(_, sh)| sh).collect();
        let target = (0..self.gauges.len() as ShardId)
            .filter(|s| *s != self.id && !taken.contains(s))
            .map(|s| (self.gauges[s as usize].backlog.load(Ordering::Relaxed), s))
            .filter(|(load, _)| *load < auto.accept_below)
            .min();
        if let Some((_, shard)) = target {
            self.with_lessor(actor, |m, fx| m.request_lease(shard, fx));
        }
    }

    /// `slot` (lessee `key`) just ran out of work: unless a timer is pending
    /// already, look at it again once the policy's idle time has passed.
    fn arm_idle_timer(
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
        timers.push(Reverse((now + idle.as_nanos() as u64, key.0, key.1)));
    }

    /// Idle timers that are due: a lessee idle since its timer was armed
    /// asks to go home; one that worked meanwhile is looked at again later.
    fn fire_idle_timers(&mut self, now: u64) -> usize {
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
            let idle = self
                .policy
                .release_after(&plan.op_view(actor.op), &self.limits)
                .as_nanos() as u64;
            if slot.m.has_work() || slot.release_asked {
                continue; // re-armed when it runs out of work again
            }
            if now.saturating_sub(slot.last_active_ns) < idle {
                slot.timer_armed = true;
                self.idle_timers
                    .push(Reverse((slot.last_active_ns + idle, actor, lease)));
                continue;
            }
            let Some(stats) = self.app_stats.get_mut(&actor.app) else {
                continue;
            };
            let mut fx = ShardFx::new(
                (self.id, self.clock, &self.gauges),
                actor,
                &plan,
                &mut self.outbox,
                stats,
                &mut *self.policy,
                true,
            );
            slot.m.request_release(&mut fx);
            slot.release_asked = true;
            did += 1;
        }
        did
    }

    fn on_lessee_wire(&mut self, actor: ActorId, mut wire: Wire<Message, Part>) {
        let Some(plan) = self.apps.get(&actor.app).cloned() else {
            self.stats.dropped += 1;
            return;
        };
        let now = self.clock.now_ns();
        if let Wire::Deliver { msg, .. } = &mut wire {
            msg.header.enqueued_ns = now;
        }
        let stats = self
            .app_stats
            .get_mut(&actor.app)
            .expect("stats exist for deployed apps");
        let mut fx = ShardFx::new(
            (self.id, self.clock, &self.gauges),
            actor,
            &plan,
            &mut self.outbox,
            stats,
            &mut *self.policy,
            true,
        );
        if let Wire::LeaseRequest { lease, lessor, .. } = wire {
            let node = plan.node(actor.op);
            let backlog = self.gauges[self.id as usize]
                .backlog
                .load(Ordering::Relaxed);
            match node.map(|n| &n.kind) {
                Some(PlanKind::Function { f, .. })
                    if backlog < self.cfg.autoscale.accept_below && !self.stopping =>
                {
                    let outs = node.map_or(0, |n| n.outs.len());
                    let m =
                        Lessee::accept(lease, lessor, Instance::new(f.new_state(), outs), &mut fx);
                    let mut slot = LesseeSlot {
                        m,
                        queued: false,
                        last_active_ns: now,
                        timer_armed: false,
                        release_asked: false,
                    };
                    // A lessee that never gets work goes home too.
                    Self::arm_idle_timer(
                        &mut self.idle_timers,
                        &mut *self.policy,
                        &self.cfg,
                        &plan,
                        &mut slot,
                        (actor, lease),
                        now,
                    );
                    self.lessees.insert((actor, lease), slot);
                }
                _ => Lessee::<Message, Instance>::refuse(lease, lessor, &mut fx),
            }
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
        Self::schedule(
            &mut self.ready,
            &mut slot.queued,
            slot.m.has_work(),
            InstRef::Lessee(actor, lease),
            || rank_of(&mut *self.policy, &plan, slot.m.next(), self.clock.now_ns()),
        );
    }

    // ------------------------------------------------------------------
    // Running
    // ------------------------------------------------------------------

    fn run_ready(&mut self) -> usize {
        let mut ran = 0;
        let quota = self.cfg.run_quota.as_nanos() as u64;
        let start = self.clock.now_ns();
        for _ in 0..self.cfg.step_budget {
            if ran > 0 && self.clock.now_ns().saturating_sub(start) >= quota {
                break;
            }
            let Some(r) = self.ready.pop() else {
                break;
            };
            ran += 1;
            let actor = match r {
                InstRef::Lessor(a) | InstRef::Lessee(a, _) => a,
            };
            let Some(plan) = self.apps.get(&actor.app).cloned() else {
                continue;
            };
            let stats = self
                .app_stats
                .get_mut(&actor.app)
                .expect("stats exist for deployed apps");
            let mut fx = ShardFx::new(
                (self.id, self.clock, &self.gauges),
                actor,
                &plan,
                &mut self.outbox,
                stats,
                &mut *self.policy,
                matches!(r, InstRef::Lessee(..)),
            );
            match r {
                InstRef::Lessor(a) => {
                    let Some(slot) = self.lessors.get_mut(&a) else {
                        continue;
                    };
                    slot.queued = false;
                    slot.m.step(&mut fx);
                    let now = self.clock.now_ns();
                    slot.last_active_ns = now;
                    let more = slot.m.has_work();
                    Self::schedule(&mut self.ready, &mut slot.queued, more, r, || {
                        rank_of(&mut *self.policy, &plan, slot.m.next(), now)
                    });
                    // A run changes what the policy predicts (a learned
                    // cost, a shorter queue): ask again while work is left.
                    if more {
                        self.maybe_lease(a, &plan, now);
                    }
                }
                InstRef::Lessee(a, l) => {
                    let Some(slot) = self.lessees.get_mut(&(a, l)) else {
                        continue;
                    };
                    slot.queued = false;
                    slot.m.step(&mut fx);
                    let now = self.clock.now_ns();
                    slot.last_active_ns = now;
                    if slot.m.is_finished() {
                        self.lessees.remove(&(a, l));
                    } else {
                        if !slot.m.has_work() {
                            Self::arm_idle_timer(
                                &mut self.idle_timers,
                                &mut *self.policy,
                                &self.cfg,
                                &plan,
                                slot,
                                (a, l),
                                now,
                            );
                        }
                        Self::schedule(
                            &mut self.ready,
                            &mut slot.queued,
                            slot.m.has_work(),
                            r,
                            || {
                                rank_of(
                                    &mut *self.policy,
                                    &plan,
                                    slot.m.next(),
                                    self.clock.now_ns(),
                                )
                            },
                        );
                    }
                }
            }
        }
        ran
    }

    // ------------------------------------------------------------------
    // Client commands
    // ------------------------------------------------------------------

    fn backlog(&self) -> usize {
        self.lessors.values().map(|s| s.m.backlog()).sum::<usize>()
            + self.lessees.values().map(|s| s.m.backlog()).sum::<usize>()
            + self.outbox.spilled()
    }

    /// Control commands, whatever the backlog (they add no messages).
    fn take_control(&mut self) -> usize {
        self.take_from(Inbox::Control)
    }

    /// Ingest and barriers. Backpressure: while too much is queued here,
    /// they stay in the inbox (one taken before parking excepted); when it
    /// fills, clients get `Backpressure`.
    fn take_commands(&mut self) -> usize {
        if self.backlog() >= self.cfg.max_backlog {
            return match self.pending_cmd.take() {
                Some(c) => {
                    self.on_command(c);
                    1
                }
                None => 0,
            };
        }
        self.take_from(Inbox::Data)
    }

    /// Up to 64 commands of one inbox, the one taken before parking first.
    fn take_from(&mut self, inbox: Inbox) -> usize {
        let mut n = 0;
        while n < 64 && !self.stopping {
            let (pending, rx) = match inbox {
                Inbox::Control => (&mut self.pending_ctl, &self.control),
                Inbox::Data => (&mut self.pending_cmd, &self.commands),
            };
            let cmd = match pending.take() {
                Some(c) => c,
                None => match rx.try_recv() {
                    Ok(c) => c,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.stopping = true;
                        break;
                    }
                },
            };
            self.on_command(cmd);
            n += 1;
        }
        n
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Deploy(plan, restored, reply) => {
                for (op, state) in restored {
                    debug_assert_eq!(plan.node(op).map(|n| n.home), Some(self.id));
                    self.asleep
                        .restored
                        .insert(ActorId { app: plan.id, op }, state);
                }
                for (i, node) in plan.nodes.iter().enumerate() {
                    if matches!(node.kind, PlanKind::Source) && node.home == self.id {
                        self.sources.insert(
                            (plan.id, OperatorId(i as u16)),
                            SourceState {
                                epoch: 0,
                                seq: 0,
                                tally: vec![0; node.outs.len()],
                            },
                        );
                    }
                }
                self.app_stats.insert(
                    plan.id,
                    AppStats::new(plan.id, plan.name.clone(), plan.class),
                );
                self.apps.insert(plan.id, plan);
                let _ = reply.send(());
            }
            Command::Undeploy(app, reply) => {
                self.apps.remove(&app);
                if let Some(gone) = self.app_stats.remove(&app) {
                    self.stats.runs += gone.runs;
                }
                self.lessors.retain(|a, _| a.app != app);
                self.lessees.retain(|(a, _), _| a.app != app);
                self.asleep.forget_app(app);
                self.sources.retain(|(a, _), _| *a != app);
                self.ready.retain(|r| match r {
                    InstRef::Lessor(a) | InstRef::Lessee(a, _) => a.app != app,
                });
                let _ = reply.send(());
            }
            Command::Ingest {
                app,
                source,
                at_ns,
                events,
            } => {
                self.ingest(app, source, at_ns, events);
                self.mark_taken(app);
            }
            Command::Barrier {
                app,
                source,
                barrier,
            } => {
                self.inject_barrier(app, source, barrier);
                self.mark_taken(app);
            }
            Command::Lease {
                actor,
                shard,
                reply,
            } => {
                let lease = self
                    .with_lessor(actor, |m, fx| m.request_lease(shard, fx))
                    .flatten();
                let _ = reply.send(lease);
            }
            Command::Revoke {
                actor,
                shard,
                reply,
            } => {
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
            Command::Stats(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Command::Stop => self.stopping = true,
        }
    }

    /// Count a client command as taken, after what it sent was counted.
    fn mark_taken(&self, app: AppId) {
        if let Some(plan) = self.apps.get(&app) {
            plan.counters[self.id as usize].count_taken();
        }
    }

    /// Run `f` on an active lessor with effects, then reschedule it.
    fn with_lessor<R>(
        &mut self,
        actor: ActorId,
        f: impl FnOnce(&mut Lessor<Message, Instance>, &mut ShardFx<'_>) -> R,
    ) -> Option<R> {
        let plan = self.apps.get(&actor.app).cloned()?;
        let node = plan.node(actor.op)?;
        let PlanKind::Function { f: func, .. } = &node.kind else {
            return None;
        };
        if !self.lessors.contains_key(&actor) {
            let m = self
                .asleep
                .wake(self.id, &mut self.stats, actor, node, func);
            let now = self.clock.now_ns();
            self.lessors.insert(
                actor,
                LessorSlot {
                    m,
                    queued: false,
                    last_active_ns: now,
                    scale_after_ns: 0,
                },
            );
        }
        let slot = self.lessors.get_mut(&actor)?;
        let stats = self.app_stats.get_mut(&actor.app)?;
        let mut fx = ShardFx::new(
            (self.id, self.clock, &self.gauges),
            actor,
            &plan,
            &mut self.outbox,
            stats,
            &mut *self.policy,
            false,
        );
        let r = f(&mut slot.m, &mut fx);
        Self::schedule(
            &mut self.ready,
            &mut slot.queued,
            slot.m.has_work(),
            InstRef::Lessor(actor),
            || rank_of(&mut *self.policy, &plan, slot.m.next(), self.clock.now_ns()),
        );
        Some(r)
    }

    fn ingest(&mut self, app: AppId, source: OperatorId, at_ns: u64, events: Vec<(u64, AnyBox)>) {
        let Some(plan) = self.apps.get(&app).cloned() else {
            self.stats.dropped += events.len() as u64;
            return;
        };
        let (Some(node), Some(src)) = (plan.node(source), self.sources.get_mut(&(app, source)))
        else {
            self.stats.dropped += events.len() as u64;
            return;
        };
        let cloner = node.source_clone.clone();
        let now = at_ns;
        let source_view = plan.op_view(source);
        for (key, value) in events {
            src.seq += 1;
            let mut base = Header {
                actor: ActorId { app, op: source },
                edge: 0,
                kind: Kind::User,
                critical: None,
                epoch: src.epoch,
                ingress_ns: now,
                deadline_ns: now.saturating_add(plan.slo_ns),
                priority: 0,
                seq: src.seq,
                enqueued_ns: now,
            };
            self.policy.on_ingress(&source_view, &mut base);
            let mut value = Some(value);
            for (i, &(op, edge)) in node.outs.iter().enumerate() {
                let payload = if i + 1 == node.outs.len() {
                    value.take().expect("moved once, on the last edge")
                } else {
                    let v = value.as_ref().expect("present until the last edge");
                    (cloner.as_ref().expect("sources have a cloner"))(v)
                };
                src.tally[i] += 1;
                let header = Header {
                    actor: ActorId { app, op },
                    edge,
                    ..base
                };
                send_input(
                    self.id,
                    &plan,
                    &mut self.outbox,
                    Message {
                        header,
                        key,
                        payload: Payload::Data(payload),
                    },
                );
            }
        }
    }

    fn inject_barrier(&mut self, app: AppId, source: OperatorId, barrier: Barrier) {
        let Some(plan) = self.apps.get(&app).cloned() else {
            return;
        };
        let (Some(node), Some(src)) = (plan.node(source), self.sources.get_mut(&(app, source)))
        else {
            return;
        };
        debug_assert_eq!(
            barrier.id,
            src.epoch + 1,
            "barriers reach a source in order"
        );
        let now = self.clock.now_ns();
        for (i, &(op, edge)) in node.outs.iter().enumerate() {
            let header = Header {
                actor: ActorId { app, op },
                edge,
                kind: Kind::Control,
                critical: Some(CriticalMark {
                    barrier: barrier.id,
                    sent: std::mem::take(&mut src.tally[i]),
                }),
                epoch: barrier.id - 1,
                ingress_ns: now,
                deadline_ns: now.saturating_add(plan.slo_ns),
                priority: 0,
                seq: src.seq,
                enqueued_ns: now,
            };
            send_input(
                self.id,
                &plan,
                &mut self.outbox,
                Message {
                    header,
                    key: 0,
                    payload: Payload::Barrier(barrier),
                },
            );
        }
        src.epoch = barrier.id;
    }

    // ------------------------------------------------------------------
    // Housekeeping: gauges, deactivation, lessee-time
    // ------------------------------------------------------------------

    /// Every `housekeeping` period (`dt` since the last one): publish the
    /// backlog gauge, deactivate idle actors, account lessee-time. Scaling
    /// is not here: it happens on the message path (`maybe_lease`) and on
    /// idle timers (`fire_idle_timers`).
    fn housekeeping(&mut self, now: u64, dt: u64) -> usize {
        let backlog = self.backlog();
        self.gauges[self.id as usize]
            .backlog
            .store(backlog, Ordering::Relaxed);
        self.account_lessees(dt);
        let mut did = 0;

        // Deactivate idle lessors. The scan visits every active lessor, so
        // it runs every eighth of the idle timeout, not every housekeeping:
        // an actor goes dormant at most 12.5% late, and a shard with many
        // actors does not spend its turns scanning them.
        let idle_ns = self.cfg.idle_deactivate.as_nanos() as u64;
        if now.saturating_sub(self.last_idle_scan_ns) < idle_ns / 8 {
            return 0;
        }
        self.last_idle_scan_ns = now;
        let idle: Vec<ActorId> = self
            .lessors
            .iter()
            .filter(|(_, s)| {
                !s.queued && s.m.is_idle() && now.saturating_sub(s.last_active_ns) >= idle_ns
            })
            .map(|(a, _)| *a)
            .collect();
        for a in idle {
            if let Some(slot) = self.lessors.remove(&a) {
                let LessorSlot {
                    m,
                    queued,
                    last_active_ns,
                    scale_after_ns,
                } = slot;
                match m.into_dormant() {
                    Ok(mut d) => {
                        self.spill(a, &mut d);
                        self.asleep.dormant.insert(a, d);
                        did += 1;
                    }
                    Err(m) => {
                        debug_assert!(false, "an idle lessor deactivates");
                        self.lessors.insert(
                            a,
                            LessorSlot {
                                m,
                                queued,
                                last_active_ns,
                                scale_after_ns,
                            },
                        );
                    }
                }
            }
        }

        did
    }

    /// Lessee-time, per app: what the leased cores cost.
    fn account_lessees(&mut self, dt: u64) {
        for ((actor, _), _) in self.lessees.iter() {
            if let Some(st) = self.app_stats.get_mut(&actor.app) {
                st.lessee_ns += dt;
            }
        }
    }

    /// Move a deactivated durable actor's state out of memory into a spill
    /// file. On failure the state simply stays in memory.
    fn spill(&mut self, actor: ActorId, d: &mut Dormant<Instance>) {
        let Some(plan) = self.apps.get(&actor.app) else {
            return;
        };
        let (Some(dir), Some(node)) = (&plan.dir, plan.node(actor.op)) else {
            return;
        };
        let PlanKind::Function { f, .. } = &node.kind else {
            return;
        };
        let Some(codec) = f.state_codec() else {
            return;
        };
        let archived = match (codec.spill)(&mut *d.state.user) {
            Ok(a) => a,
            Err(_) => {
                self.stats.spill_errors += 1;
                return;
            }
        };
        self.asleep.spill_seq += 1;
        let seq = self.asleep.spill_seq;
        let path = crate::spill::dir_of(dir).join(format!("s{}-{}-{seq}.seg", self.id, actor.op.0));
        match crate::spill::write(&path, seq, &archived) {
            Ok(len) => {
                d.state.user = f.new_state();
                self.asleep.spilled.insert(actor, path);
                self.stats.spills += 1;
                self.stats.spill_bytes += len;
            }
            Err(_) => {
                let _ = std::fs::remove_file(&path);
                self.stats.spill_errors += 1;
            }
        }
    }

    fn snapshot(&self) -> ShardStats {
        let mut s = self.stats.clone();
        s.lessors = self.lessors.len();
        s.lessees = self.lessees.len();
        s.dormant = self.asleep.dormant.len();
        s.spilled = self.asleep.spilled.len();
        s.apps = self
            .app_stats
            .iter()
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        // `stats.runs` holds the runs of undeployed apps; add the live ones.
        s.runs += s.apps.values().map(|a| a.runs).sum::<u64>();
        for (a, _) in self.lessees.keys() {
            if let Some(st) = s.apps.get_mut(&a.app) {
                st.lessees += 1;
            }
        }
        for (a, l) in &self.lessors {
            if let Some(st) = s.apps.get_mut(&a.app) {
                let ls = l.m.stats();
                st.leases_granted += ls.leases_granted;
                st.revokes += ls.revokes;
            }
        }
        for (a, d) in &self.asleep.dormant {
            if let Some(st) = s.apps.get_mut(&a.app) {
                let ls = d.stats();
                st.leases_granted += ls.leases_granted;
                st.revokes += ls.revokes;
            }
        }
        s
    }
}
