//! The effects of the dual-mode protocol on a real shard ([`ShardFx`]): run
//! a user function on an instance's state, learn its cost, record latency,
//! emit its outputs on every downstream edge (counted for barrier
//! alignment), propagate barriers, hand a checkpoint's state to the app's
//! sink, run ticks (fire the instance's due timers, then send its
//! watermark mark on every out-edge), and send protocol wires through the
//! outbox.
//!
//! Invariant: a message is counted `sent` before it is handed to the outbox
//! and `done` after its outputs were counted (`send_input`, `mark_done`),
//! which is what quiescence reads.

use std::sync::Arc;

use super::instance::{Instance, Part};
use super::packet::Packet;
use crate::durability::split_checkpoint_tag;
use crate::func::{Domain, ErasedFunction, RunCtx};
use crate::mesh::Outbox;
use crate::model::{
    panic_message, ActorId, AnyBox, Barrier, BarrierKind, Batch, Header, Kind, Message, Payload,
};
use crate::plan::{Plan, PlanKind, PlanNode, SavedState};
use crate::protocol::time::RETIRED;
use crate::protocol::Routable;
use crate::protocol::{
    CriticalMark, Effects, Epoch, Instance as From, LeaseId, ShardId, Tick, Time, WatermarkMark,
    Wire,
};
use crate::runtime::clock::{Clock, Gauge};
use crate::runtime::metrics::AppStats;
use crate::sched::policy::{OpView, Policy, ShardLoad};
use crate::sync::Ordering;

/// The effects of the protocol on a real shard: run user functions, emit
/// their outputs downstream, send protocol packets.
pub(super) struct ShardFx<'a> {
    me: ShardId,
    gauges: &'a [Gauge],
    policy: &'a mut dyn Policy,
    actor: ActorId,
    plan: &'a Plan,
    outbox: &'a mut Outbox<Packet>,
    stats: &'a mut AppStats,
    clock: Clock,
    /// Whether the instance running is a lessee (for the lessee-run tally).
    on_lessee: bool,
    /// When the last run ended (or the batch began): the next run starts
    /// then, so a batch reads the clock once per message.
    last_ns: Option<u64>,
    scratch: Vec<(u64, AnyBox)>,
    /// A batch run's outputs (reused per run).
    batches: Vec<Batch>,
    /// The downstream operators as the policy sees them (reused per run).
    views: Vec<OpView<'a>>,
    /// Costs of this batch's runs, learned once by `finish` (a shared
    /// gauge written once per batch, not per message).
    cost_sum: u64,
    cost_runs: u64,
}

impl<'a> ShardFx<'a> {
    /// Hand the operator's whole state to the app's journal for checkpoint
    /// `checkpoint` (durable operators of durable apps only).
    ///
    /// `tag` is the barrier's: the checkpoint number, and whether it is a
    /// full one (`durability::request::checkpoint_tag`). An incremental checkpoint saves
    /// what changed since the last one where the state can tell.
    fn save_checkpoint(&mut self, f: &Arc<dyn ErasedFunction>, state: &mut Instance, tag: u64) {
        let (Some(sink), Some(codec)) = (&self.plan.state_sink, f.state_codec()) else {
            return;
        };
        let (checkpoint, full) = split_checkpoint_tag(tag);
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
        // If the journal is gone the app is being torn down and the
        // checkpoint is moot (the sink drops the state).
        sink(SavedState {
            checkpoint,
            op: self.actor.op,
            delta,
            bytes: bytes.map_err(|e| e.to_string()),
            clock: (self.plan.timed || state.clock.proc.len() > 0)
                .then(|| state.clock.encode(self.clock.unix_origin_ns())),
        });
    }

    pub(super) fn new(
        here: (ShardId, Clock, &'a [Gauge]),
        actor: ActorId,
        plan: &'a Plan,
        outbox: &'a mut Outbox<Packet>,
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
            last_ns: None,
            scratch: Vec::new(),
            batches: Vec::new(),
            views: Vec::new(),
            cost_sum: 0,
            cost_runs: 0,
        }
    }

    /// The batch is over: learn its runs' mean cost (effects that ran no
    /// user function learn nothing).
    pub(super) fn finish(self) {
        if let Some(mean) = self.cost_sum.checked_div(self.cost_runs) {
            self.plan.learn_cost(self.actor.op, mean);
        }
    }

    /// A batch of steps begins at `now` (the first run starts then).
    pub(super) fn begin_at(&mut self, now: u64) {
        self.last_ns = Some(now);
    }

    /// When the last run of this batch ended (or it began), if known.
    pub(super) fn last_ns(&self) -> Option<u64> {
        self.last_ns
    }

    /// The running operator's node, borrowed from the plan (not from
    /// `self`), so the effects can go on while it is held: no clone of its
    /// edges or its function per message.
    fn node(&self) -> &'a PlanNode {
        let plan: &'a Plan = self.plan;
        plan.node(self.actor.op)
            .expect("an actor's operator exists in its plan")
    }

    /// The running operator's function (and whether it is a sink).
    fn function(&self) -> (&'a Arc<dyn ErasedFunction>, bool) {
        match &self.node().kind {
            PlanKind::Function { f, sink } => (f, *sink),
            PlanKind::Source => unreachable!("sources have no actor"),
        }
    }

    /// The operator's code panicked: its state may be half-changed, so its
    /// app fails (nothing of it runs again; the shard and its other apps go
    /// on). The message counts as done; the app's counters need not settle
    /// any more (`AppIngress::quiesce` answers `AppFailed`).
    fn user_panicked(&mut self, what: &str, why: String, msgs: u64) {
        self.fail_app(what, why);
        self.scratch.clear();
        self.batches.clear();
        self.mark_done(msgs);
    }

    /// Fail the app: the operator's code panicked `what`.
    fn fail_app(&self, what: &str, why: String) {
        let cause = format!(
            "operator {:?} panicked {what} on shard {}: {why}",
            self.node().name,
            self.me
        );
        self.plan.fail(cause);
    }

    fn mark_done(&mut self, msgs: u64) {
        self.plan.counters[self.me as usize].count_done(msgs);
    }

    /// A downstream edge's header for an output of a run of `parent`.
    fn child_header(&mut self, parent: &Header, i: usize, view: &OpView<'_>) -> Header {
        let (op, edge) = self.node().outs[i];
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
        self.policy.on_emit(parent, &mut header, view);
        header
    }

    /// Send the batches in `batches` to every downstream edge (a copy per
    /// edge but the last), tagged with the parent's epoch and timing.
    fn emit_batches(&mut self, tally: &mut [u64], parent: &Header) {
        if self.batches.is_empty() {
            return;
        }
        let plan: &'a Plan = self.plan;
        let outs = &self.node().outs;
        let mut views = std::mem::take(&mut self.views);
        views.clear();
        views.extend(outs.iter().map(|&(op, _)| plan.op_view(op)));
        let mut batches = std::mem::take(&mut self.batches);
        'batches: for batch in batches.drain(..) {
            let n = batch.len() as u64;
            let mut batch = Some(batch);
            for (i, view) in views.iter().enumerate() {
                let b = if i + 1 == views.len() {
                    batch.take().expect("moved once, on the last edge")
                } else {
                    let b = batch.as_ref().expect("present until the last edge");
                    let mut copy = None;
                    if let Err(why) = catch(|| copy = Some(b.clone_batch())) {
                        self.fail_app("cloning outputs for fan-out", why);
                        break 'batches;
                    }
                    copy.expect("set when the clone returned")
                };
                let mut header = self.child_header(parent, i, view);
                header.seq = b.first_seq();
                tally[i] += n;
                let payload = Payload::Batch(b);
                send_input(
                    self.me,
                    plan,
                    self.outbox,
                    Message {
                        header,
                        key: 0,
                        payload,
                    },
                );
            }
        }
        self.batches = batches;
        self.views = views;
    }

    /// Send the outputs in `scratch` to every downstream edge, tagged with
    /// the parent's epoch and timing.
    fn emit_scratch(&mut self, tally: &mut [u64], parent: &Header) {
        if self.scratch.is_empty() {
            return;
        }
        let outs = &self.node().outs;
        let (f, _) = self.function();
        // The outputs leave `scratch` and its buffer comes back after: no
        // allocation per run.
        let mut outputs = std::mem::take(&mut self.scratch);
        // What the policy sees of each downstream operator, once per run.
        let plan: &'a Plan = self.plan;
        let mut views = std::mem::take(&mut self.views);
        views.clear();
        views.extend(outs.iter().map(|&(op, _)| plan.op_view(op)));
        'outputs: for (key, value) in outputs.drain(..) {
            let mut value = Some(value);
            for i in 0..outs.len() {
                let payload = if i + 1 == outs.len() {
                    value.take().expect("moved once, on the last edge")
                } else {
                    let v = value.as_ref().expect("present until the last edge");
                    // The output type's `Clone` is user code too.
                    let mut copy = None;
                    if let Err(why) = catch(|| copy = Some(f.clone_output(v))) {
                        self.fail_app("cloning an output for fan-out", why);
                        break 'outputs;
                    }
                    copy.expect("set when the clone returned")
                };
                let header = self.child_header(parent, i, &views[i]);
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
        self.scratch = outputs;
        self.views = views;
    }
}

impl ShardFx<'_> {
    /// Fire the instance's timers that its watermark reached, in time
    /// order, their outputs in `epoch` (the tick's, or the lessor's when
    /// a lessee's state came home).
    fn fire_due(&mut self, state: &mut Instance, epoch: Epoch) {
        let upto = state.clock.watermark;
        self.fire(state, (Domain::Event, upto), epoch);
    }

    /// Fire the instance's processing-time timers due at `now` (the node
    /// clock), in time order, their outputs in `epoch` (the instance's
    /// now: see `Lessor::visit`).
    pub(super) fn fire_processing(&mut self, state: &mut Instance, now: u64, epoch: Epoch) {
        self.fire(state, (Domain::Processing, now), epoch);
    }

    /// Fire the timers of `domain` at or before `upto`. Every due timer
    /// runs into `scratch`, emitted once after: a window's end fires many
    /// keys at once.
    fn fire(&mut self, state: &mut Instance, (domain, upto): (Domain, Time), epoch: Epoch) {
        let (f, _) = self.function();
        let mut parent: Option<Header> = None;
        loop {
            let timers = match domain {
                Domain::Event => &mut state.clock.timers,
                Domain::Processing => &mut state.clock.proc,
            };
            let Some((at, keys)) = timers.take_due(upto) else {
                break;
            };
            let parent = *parent.get_or_insert_with(|| self.timer_header(epoch));
            let (user, scratch) = (&mut *state.user, &mut self.scratch);
            let cx = RunCtx {
                header: &parent,
                now_ns: parent.ingress_ns,
                clock: &mut state.clock,
            };
            if let Err(why) = catch(|| f.run_timers(user, (&keys, at, domain), cx, scratch)) {
                self.fail_app("on a timer", why);
                self.scratch.clear();
                return;
            }
            self.stats.timers += keys.len() as u64;
        }
        if let Some(parent) = parent {
            self.stats.late_events += std::mem::take(&mut state.clock.late);
            self.emit_scratch(&mut state.tally, &parent);
        }
    }

    /// The header a timer's outputs descend from (stamped by the policy as
    /// an ingress would be).
    fn timer_header(&mut self, epoch: Epoch) -> Header {
        let now = self.clock.now_ns();
        let mut h = Header {
            actor: self.actor,
            edge: 0,
            kind: Kind::User,
            critical: None,
            epoch,
            ingress_ns: now,
            deadline_ns: now.saturating_add(self.plan.slo_ns),
            priority: 0,
            seq: 0,
            enqueued_ns: now,
        };
        self.policy
            .on_ingress(&self.plan.op_view(self.actor.op), &mut h);
        h
    }

    /// A watermark mark on every out-edge, behind what this instance sent
    /// on it before.
    fn send_marks(&mut self, mark: &WatermarkMark) {
        send_marks(self.me, self.plan, self.outbox, self.actor.op, mark);
    }
}

/// A mark from operator (or source) `op` on each of its out-edges: an
/// input of the downstream lessor, counted like a message.
pub(super) fn send_marks(
    me: ShardId,
    plan: &Plan,
    outbox: &mut Outbox<Packet>,
    op: crate::model::OperatorId,
    mark: &WatermarkMark,
) {
    let node = plan.node(op).expect("a mark's sender is in its plan");
    for &(to, edge) in &node.outs {
        let header = Header {
            actor: ActorId {
                app: plan.id,
                op: to,
            },
            edge,
            kind: Kind::Control,
            critical: None,
            epoch: 0,
            ingress_ns: 0,
            deadline_ns: 0,
            priority: 0,
            seq: mark.seq,
            enqueued_ns: 0,
        };
        let payload = Payload::Mark(mark.clone());
        send_input(
            me,
            plan,
            outbox,
            Message {
                header,
                key: 0,
                payload,
            },
        );
    }
}

/// Count a message as sent (before anyone can see it) and route it to the
/// lessor of its actor.
pub(super) fn send_input(me: ShardId, plan: &Plan, outbox: &mut Outbox<Packet>, msg: Message) {
    plan.counters[me as usize].count_sent(msg.weight());
    let home = plan
        .node(msg.header.actor.op)
        .expect("edges point at existing operators")
        .home;
    outbox.send(home, Packet::Input(msg));
}

impl Effects<Message, Instance> for ShardFx<'_> {
    fn run(&mut self, state: &mut Instance, msg: Message) {
        let now = self.last_ns.unwrap_or_else(|| self.clock.now_ns());
        let (header, n) = (msg.header, msg.weight());
        self.stats
            .record_queueing(now.saturating_sub(header.enqueued_ns), n);
        let (f, sink) = self.function();
        let (user, scratch, batches) = (&mut *state.user, &mut self.scratch, &mut self.batches);
        let cx = RunCtx {
            header: &msg.header,
            now_ns: now,
            clock: &mut state.clock,
        };
        let ran = match msg.payload {
            Payload::Data(input) => catch(|| f.run(user, msg.key, input, cx, scratch)),
            Payload::Batch(input) => catch(|| f.run_batch(user, input, cx, batches)),
            Payload::Barrier(_) | Payload::Mark(_) => {
                unreachable!("the protocol runs data messages only with `run`")
            }
        };
        if let Err(why) = ran {
            self.user_panicked("on a message", why, n);
            return;
        }
        let done = self.clock.now_ns();
        self.last_ns = Some(done);
        let cost = done.saturating_sub(now);
        self.cost_sum = self.cost_sum.saturating_add(cost);
        self.cost_runs += n;
        self.policy
            .on_complete(&header, &self.plan.op_view(self.actor.op), cost, done);
        self.stats.runs += n;
        if self.on_lessee {
            self.stats.lessee_runs += n;
        }
        if sink {
            let latency = done.saturating_sub(header.ingress_ns);
            self.stats.record_delivery(latency, self.plan.slo_ns, n);
        }
        self.stats.late_events += std::mem::take(&mut state.clock.late);
        self.emit_scratch(&mut state.tally, &header);
        self.emit_batches(&mut state.tally, &header);
        self.mark_done(n);
    }

    fn run_critical(&mut self, state: &mut Instance, barrier: Epoch, msgs: Vec<Message>) {
        let (f, _) = self.function();
        let mut last: Option<(Header, Barrier)> = None;
        for m in msgs {
            let Payload::Barrier(b) = m.payload else {
                unreachable!("the protocol runs critical messages only with `run_critical`");
            };
            assert_eq!(b.id, barrier, "a critical section runs one barrier");
            let (user, scratch, now) = (&mut *state.user, &mut self.scratch, self.clock.now_ns());
            let cx = RunCtx {
                header: &m.header,
                now_ns: now,
                clock: &mut state.clock,
            };
            if let Err(why) = catch(|| f.run_critical(user, &b, cx, scratch)) {
                self.user_panicked("on a barrier", why, 1);
                return;
            }
            self.emit_scratch(&mut state.tally, &m.header);
            self.mark_done(1);
            last = Some((m.header, b));
        }
        self.stats.barriers += 1;
        let Some((parent, b)) = last else { return };
        if b.kind == BarrierKind::Checkpoint {
            // The state is whole and consolidated here (every lessee's part
            // came home before the critical ran): what the checkpoint saves.
            self.save_checkpoint(f, state, b.tag);
        }
        // Propagate the barrier on every output edge, announcing how many
        // data messages this operator (all instances) sent on it this epoch.
        let outs = &self.node().outs;
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

    fn tick(&mut self, state: &mut Instance, tick: Tick, from: From, roster: &[LeaseId]) {
        state.clock.watermark = state.clock.watermark.max(tick.time);
        self.fire_due(state, tick.epoch);
        let mark = WatermarkMark {
            from,
            seq: tick.seq,
            time: tick.time,
            idle: tick.idle,
            roster: roster.to_vec(),
        };
        self.send_marks(&mark);
        self.mark_done(1);
    }

    fn retired(&mut self, lease: LeaseId) {
        let mark = WatermarkMark {
            from: From::Lease(lease),
            seq: RETIRED,
            time: 0,
            idle: false,
            roster: Vec::new(),
        };
        self.send_marks(&mark);
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
        if let Wire::Tick { .. } = wire {
            // A lessee's copy of a tick is work in flight until it runs.
            self.plan.counters[self.me as usize].count_sent(1);
        }
        let actor = self.actor;
        let p = if wire.is_for_lessee() {
            Packet::ToLessee { actor, wire }
        } else {
            Packet::ToLessor { actor, wire }
        };
        self.outbox.send(to, p);
    }
}

/// Run user code; a panic comes back as its message instead of unwinding
/// through the shard.
fn catch(call: impl FnOnce()) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).map_err(|p| panic_message(&*p))
}
