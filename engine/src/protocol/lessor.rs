//! The lessor side of the protocol: the home instance of an actor, and its
//! sequencer.
//!
//! Every message for the actor enters at the lessor, which either runs it
//! (local mailbox) or forwards it to a lessee. That makes the lessor's arrival
//! order *the* order of the actor, and makes the only cross-shard ordering
//! fact the protocol needs the FIFO order of one channel.
//!
//! # Barriers and epochs
//! Barriers are numbered per application: barrier `b` closes epoch `b - 1`.
//! Every data message carries the epoch its sender was in, and the critical
//! message of barrier `b` on an edge carries how many data messages its sender
//! emitted on that edge during epoch `b - 1`. Upstream operators may run on
//! several shards at once, so a critical may overtake data sent before it on
//! another channel; the counts tell the lessor when the cut is complete:
//! barrier `b` is *aligned* when every input edge has delivered its critical
//! and as many epoch-`b - 1` messages as that critical announced. Messages of
//! later epochs are held until the barrier is done.
//!
//! # Modes
//! - Runnable: route each message to the lessor's mailbox or a lessee.
//! - Blocked (barrier aligned): send `Block` to every active lessee, wait until
//!   all answered (`Consolidate`, or `Released` for a revoke in flight), the
//!   local mailbox drained and no pre-barrier message is held.
//! - Critical: run the barrier's critical messages alone on the consolidated
//!   state (synchronously, inside the call that completed the wait), then
//!   hand partitions back (`Keyed`) and resume: Runnable.
//!
//! # Watermarks
//! Marks from upstream instances feed the actor's [`InputClock`]; each
//! advance of its input watermark is a [`Tick`] placed where its last mark
//! arrived: into the mailbox, and to every active lessee on the link of
//! their deliveries (a lease granted later gets the ticks still queued
//! with the messages it takes). Behind held messages it is held too, and
//! it fences them: a later message of its epoch or after stays behind it
//! (an earlier epoch's straggler may pass: it belongs before the barrier
//! the held tick follows). It is held, too, while a lessee's state is on
//! its way home (a revoke, or a consolidation awaited): that state's
//! timers must fire at the tick, here once it is home, before this
//! lessor's mark goes on. So each instance runs a tick after exactly the
//! messages routed to it before the tick, and the roster of a tick (the
//! leases that got it) goes with the lessor's run of it, for the marks
//! the instances send downstream.
//!
//! # Keyed partitions
//! Each of the 64 partitions is owned by the lessor (`own`) or by exactly one
//! lessee (`slot.parts`). A partition whose state is not where its next
//! message would run is in `transit` (revoke in flight, or consolidating);
//! messages for it are held, and so is every later message of the same
//! partition (per-key FIFO). A grant moves partitions at once: their state,
//! then their queued messages, on the same FIFO link.

use std::collections::{BTreeMap, VecDeque};

use super::time::{InputClock, Instance, Tick, WatermarkMark};
use super::{
    EdgeId, Effects, Epoch, LeaseId, PartialState, PartitionSet, Routable, ShardId, Strategy, Wire,
    PARTITIONS,
};

/// A mailbox or held entry: a message, or a tick of the input watermark
/// with the latest epoch of what it follows.
enum Entry<M> {
    Msg(M),
    Tick(Tick, Epoch),
}

impl<M: Routable> Entry<M> {
    /// Data messages it stands for (a tick: none).
    fn weight(&self) -> u64 {
        match self {
            Entry::Msg(m) => m.weight(),
            Entry::Tick(..) => 0,
        }
    }

    fn epoch(&self) -> Epoch {
        match self {
            Entry::Msg(m) => m.epoch(),
            Entry::Tick(_, e) => *e,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Lease requested, not yet granted.
    Pending,
    Active,
    /// `Revoke` sent, `Released` not yet received.
    Revoking,
}

#[derive(Debug)]
struct Slot {
    lease: LeaseId,
    shard: ShardId,
    phase: Phase,
    /// Partitions this lessee owns (`Keyed`).
    parts: PartitionSet,
    /// Revoke as soon as the protocol allows (API, or the lessee asked).
    release_wanted: bool,
}

struct Blocked {
    barrier: Epoch,
    awaiting: Vec<LeaseId>,
}

/// What the lessor is doing, for stats and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LessorMode {
    /// No barrier in progress: messages are routed as they arrive.
    Runnable,
    /// Some criticals of the next barrier arrived; not all, or not all the
    /// data before them.
    Aligning,
    /// The next barrier aligned: waiting for every lessee's state and the
    /// local mailbox to drain before its criticals run.
    Blocked,
}

/// Counters of protocol activity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LessorStats {
    /// `Granted` answers received.
    pub leases_granted: u64,
    /// `Refused` answers received.
    pub leases_refused: u64,
    /// Leases ended: `Released` answers received.
    pub revokes: u64,
    /// Barriers completed (their criticals run).
    pub barriers: u64,
    /// Data messages queued to run at the lessor, less those handed to a
    /// lessee at grant.
    pub run_local: u64,
    /// Data messages delivered to lessees (at grant included).
    pub forwarded: u64,
    /// Advances of the input watermark (ticks made).
    pub ticks: u64,
}

/// The part of a lessor that outlives deactivation.
pub struct Dormant<S> {
    /// The actor's whole state, consolidated (no lessee holds any part).
    pub state: S,
    epoch: Epoch,
    arrived: BTreeMap<(Epoch, EdgeId), u64>,
    clock: InputClock,
    timed: bool,
    departed: Vec<LeaseId>,
    next_lease: u32,
    stats: LessorStats,
}

impl<S> Dormant<S> {
    /// The actor's epoch: barriers completed.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    /// The protocol counters, kept across deactivation.
    pub fn stats(&self) -> LessorStats {
        self.stats
    }
}

/// The home instance of one actor.
pub struct Lessor<M, S: PartialState> {
    home: ShardId,
    strategy: Strategy,
    inputs: u16,
    state: S,
    epoch: Epoch,
    blocked: Option<Blocked>,
    mailbox: VecDeque<Entry<M>>,
    /// Data messages in `mailbox`, batches counted by their weight.
    mailbox_weight: usize,
    held: VecDeque<Entry<M>>,
    /// Data messages in `held`, by weight.
    held_weight: usize,
    /// Partitions of held messages of the current epoch (`Keyed`).
    held_parts: PartitionSet,
    /// The lowest epoch of a held tick: messages of it or later are held
    /// behind the tick.
    held_fence: Option<Epoch>,
    /// The input watermark over the edges.
    clock: InputClock,
    /// Per tick in the mailbox, in order: the leases that got it.
    rosters: VecDeque<(u64, Vec<LeaseId>)>,
    /// The actor is on event time: it keeps `departed`.
    timed: bool,
    /// Leases gone since the last tick was broadcast: its roster names
    /// them once more.
    departed: Vec<LeaseId>,
    /// Data messages received per (epoch, edge), for barrier alignment.
    arrived: BTreeMap<(Epoch, EdgeId), u64>,
    /// Critical messages received per barrier, indexed by edge.
    criticals: BTreeMap<Epoch, Vec<Option<M>>>,
    slots: Vec<Slot>,
    own: PartitionSet,
    transit: PartitionSet,
    next_lease: u32,
    rr: usize,
    stats: LessorStats,
}

impl<M: Routable, S: PartialState> Lessor<M, S> {
    /// A fresh actor homed on `home`, with `inputs` input edges (at least
    /// one), at epoch 0 on `state`, owning every partition.
    pub fn new(home: ShardId, strategy: Strategy, inputs: u16, state: S) -> Self {
        Self::from_dormant(
            home,
            strategy,
            inputs,
            Dormant {
                state,
                epoch: 0,
                arrived: BTreeMap::new(),
                clock: InputClock::new(inputs),
                timed: false,
                departed: Vec::new(),
                next_lease: 0,
                stats: LessorStats::default(),
            },
        )
    }

    /// Reactivate an actor from what deactivation kept.
    pub fn from_dormant(home: ShardId, strategy: Strategy, inputs: u16, d: Dormant<S>) -> Self {
        assert!(inputs > 0, "an actor has at least one input edge");
        Lessor {
            home,
            strategy,
            inputs,
            state: d.state,
            epoch: d.epoch,
            blocked: None,
            mailbox: VecDeque::new(),
            mailbox_weight: 0,
            held: VecDeque::new(),
            held_weight: 0,
            held_parts: PartitionSet::EMPTY,
            held_fence: None,
            clock: d.clock,
            rosters: VecDeque::new(),
            timed: d.timed,
            departed: d.departed,
            arrived: d.arrived,
            criticals: BTreeMap::new(),
            slots: Vec::new(),
            own: PartitionSet::ALL,
            transit: PartitionSet::EMPTY,
            next_lease: d.next_lease,
            rr: 0,
            stats: d.stats,
        }
    }

    /// Deactivate. Only an idle lessor may (see [`Lessor::is_idle`]): no
    /// lessee, no lease in flight, nothing queued, held, or half-aligned.
    /// A busy lessor is handed back unchanged (moved, not boxed: this runs on
    /// every idle sweep).
    #[allow(clippy::result_large_err)]
    pub fn into_dormant(self) -> Result<Dormant<S>, Self> {
        if !self.is_idle() {
            return Err(self);
        }
        Ok(Dormant {
            state: self.state,
            epoch: self.epoch,
            arrived: self.arrived,
            clock: self.clock,
            timed: self.timed,
            departed: self.departed,
            next_lease: self.next_lease,
            stats: self.stats,
        })
    }

    /// The actor is on event time (its app's sources make watermarks):
    /// it keeps the leases gone since its last tick, for that tick's
    /// roster. (Untimed, it never ticks and keeps nothing.)
    pub fn timed(mut self) -> Self {
        self.timed = true;
        self
    }

    /// The actor's home shard, where this lessor lives.
    pub fn home(&self) -> ShardId {
        self.home
    }
    /// How the actor's state is split across lessor and lessees.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }
    /// Barriers completed; data messages of this epoch run now, later ones
    /// are held.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    /// The state held here (all of it only when no lessee holds a part).
    pub fn state(&self) -> &S {
        &self.state
    }
    /// Run `f` on the state held here with the epoch of its outputs now,
    /// between protocol calls and outside the message order: for work
    /// that is no message (processing-time timers). It sees only what is
    /// here (a part in transit is not), and outputs in `epoch` are right
    /// at any such moment: the barrier after it has not run its critical
    /// (that happens inside a call, and moves the epoch in the same call),
    /// so they count in its cut.
    pub fn visit<R>(&mut self, f: impl FnOnce(&mut S, Epoch) -> R) -> R {
        f(&mut self.state, self.epoch)
    }

    /// The protocol counters since the actor was created.
    pub fn stats(&self) -> LessorStats {
        self.stats
    }

    /// What the lessor is doing: routing, aligning a barrier, or blocked.
    pub fn mode(&self) -> LessorMode {
        if self.blocked.is_some() {
            LessorMode::Blocked
        } else if !self.criticals.is_empty() {
            LessorMode::Aligning
        } else {
            LessorMode::Runnable
        }
    }

    /// Lessees granted and not yet released (pending ones excluded).
    pub fn lessee_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.phase != Phase::Pending)
            .count()
    }

    /// Shards that hold or were asked for a lessee of this actor.
    pub fn lessee_shards(&self) -> impl Iterator<Item = (LeaseId, ShardId)> + '_ {
        self.slots.iter().map(|s| (s.lease, s.shard))
    }

    /// Whether a `step` would do anything.
    pub fn has_work(&self) -> bool {
        !self.mailbox.is_empty()
    }

    /// Data messages queued to run here plus those held (a batch counts
    /// as its weight).
    pub fn backlog(&self) -> usize {
        self.mailbox_weight + self.held_weight
    }

    /// Data messages queued to run here (not those held behind a barrier),
    /// a batch counted as its weight.
    pub fn queued(&self) -> usize {
        self.mailbox_weight
    }

    /// Whether the lessor may deactivate: no lessee and no lease in flight,
    /// nothing queued or held, no barrier aligning or blocked, no mark
    /// waiting for an upstream lessee's.
    pub fn is_idle(&self) -> bool {
        self.blocked.is_none()
            && self.mailbox.is_empty()
            && self.held.is_empty()
            && self.slots.is_empty()
            && self.criticals.is_empty()
            && self.clock.is_settled()
    }

    /// The input watermark: every edge's upstream marks combined.
    pub fn watermark(&self) -> super::time::Time {
        self.clock.time()
    }

    // ------------------------------------------------------------------
    // Inputs
    // ------------------------------------------------------------------

    /// A message for the actor arrived from upstream (or from ingress).
    pub fn on_input(&mut self, msg: M, fx: &mut impl Effects<M, S>) {
        let edge = msg.edge();
        assert!(edge < self.inputs, "edge {edge} of {} inputs", self.inputs);
        if let Some(mark) = msg.critical() {
            assert_eq!(
                mark.barrier,
                msg.epoch() + 1,
                "a critical closes its own epoch"
            );
            assert!(
                mark.barrier > self.epoch,
                "barrier {} already done",
                mark.barrier
            );
            let inputs = self.inputs as usize;
            let per_edge = self
                .criticals
                .entry(mark.barrier)
                .or_insert_with(|| (0..inputs).map(|_| None).collect());
            assert!(
                per_edge[edge as usize].is_none(),
                "two criticals of one barrier on edge {edge}"
            );
            per_edge[edge as usize] = Some(msg);
            self.try_block(fx);
            return;
        }
        let epoch = msg.epoch();
        assert!(
            epoch >= self.epoch,
            "message of epoch {epoch} after barrier {}",
            self.epoch
        );
        *self.arrived.entry((epoch, edge)).or_default() += msg.weight();
        if self.must_hold(&msg) {
            if epoch <= self.epoch {
                self.held_parts = self.held_parts.union(self.part_of(&msg));
            }
            self.held_weight += msg.weight() as usize;
            self.held.push_back(Entry::Msg(msg));
        } else {
            self.route(msg, fx);
        }
        if epoch == self.epoch && !self.criticals.is_empty() {
            self.try_block(fx);
        }
    }

    /// A watermark mark arrived on `edge` (in its link's order among the
    /// data). When the input watermark advances, its tick goes in order
    /// to every instance: now, or behind the messages held before it.
    pub fn on_watermark(&mut self, edge: EdgeId, mark: WatermarkMark, fx: &mut impl Effects<M, S>) {
        assert!(edge < self.inputs, "edge {edge} of {} inputs", self.inputs);
        let Some(tick) = self.clock.on_mark(edge, mark) else {
            return;
        };
        self.stats.ticks += 1;
        if self.held.is_empty() && !self.state_coming_home() {
            self.broadcast(tick, fx);
            return;
        }
        let epoch = self
            .held
            .iter()
            .map(Entry::epoch)
            .fold(self.epoch, Epoch::max);
        self.held_fence = Some(self.held_fence.map_or(epoch, |f| f.min(epoch)));
        self.held.push_back(Entry::Tick(tick, epoch));
    }

    /// A tick into the mailbox and to every active lessee. Its roster
    /// names those, the leases being revoked (they may still send what
    /// they ran before the revoke) and those gone since the last tick
    /// (their last outputs may still be on their way); both kinds retire.
    fn broadcast(&mut self, tick: Tick, fx: &mut impl Effects<M, S>) {
        assert!(
            !self.state_coming_home(),
            "a tick goes out with the state home or at active lessees"
        );
        let tick = Tick {
            epoch: self.epoch,
            ..tick
        };
        let mut roster = std::mem::take(&mut self.departed);
        for s in &self.slots {
            match s.phase {
                Phase::Pending => continue,
                Phase::Revoking => {}
                Phase::Active => fx.send(
                    s.shard,
                    Wire::Tick {
                        lease: s.lease,
                        tick,
                    },
                ),
            }
            roster.push(s.lease);
        }
        self.rosters.push_back((tick.seq, roster));
        self.mailbox.push_back(Entry::Tick(tick, self.epoch));
    }

    /// Whether a lessee's state is on its way home (a revoke, or a
    /// consolidation awaited), so that a tick must wait for it.
    fn state_coming_home(&self) -> bool {
        self.slots.iter().any(|s| s.phase == Phase::Revoking)
            || self
                .blocked
                .as_ref()
                .is_some_and(|b| !b.awaiting.is_empty())
    }

    /// A queued tick to a lease granted after it was made (its roster
    /// then names the lease).
    fn copy_tick(
        &mut self,
        tick: Tick,
        lease: LeaseId,
        shard: ShardId,
        fx: &mut impl Effects<M, S>,
    ) {
        let r = self
            .rosters
            .iter_mut()
            .find(|(seq, _)| *seq == tick.seq)
            .expect("a queued tick has its roster");
        r.1.push(lease);
        fx.send(shard, Wire::Tick { lease, tick });
    }

    /// A protocol message from a lessee's shard arrived.
    pub fn on_wire(&mut self, wire: Wire<M, S::Part>, fx: &mut impl Effects<M, S>) {
        match wire {
            Wire::Granted { lease } => self.on_granted(lease, fx),
            Wire::Refused { lease } => {
                if let Some(i) = self.slot_index(lease) {
                    assert_eq!(self.slots[i].phase, Phase::Pending);
                    self.slots.remove(i);
                    self.stats.leases_refused += 1;
                }
            }
            Wire::Consolidate {
                lease,
                barrier,
                state,
            } => {
                let Some(i) = self.slot_index(lease) else {
                    unreachable!("consolidate from unknown lease {lease:?}")
                };
                assert_eq!(self.blocked.as_ref().map(|b| b.barrier), Some(barrier));
                self.state.absorb(state);
                let parts = std::mem::take(&mut self.slots[i].parts);
                self.come_home(parts);
                self.stop_awaiting(lease);
                self.rescan_held(fx);
                self.try_critical(fx);
            }
            Wire::Released { lease, state } => {
                let Some(i) = self.slot_index(lease) else {
                    unreachable!("released from unknown lease {lease:?}")
                };
                assert_eq!(self.slots[i].phase, Phase::Revoking);
                self.state.absorb(state);
                let slot = self.slots.remove(i);
                self.come_home(slot.parts);
                if self.timed {
                    self.departed.push(lease);
                }
                self.stats.revokes += 1;
                self.stop_awaiting(lease);
                self.rescan_held(fx);
                self.try_critical(fx);
            }
            Wire::ReleaseRequest { lease } => {
                if let Some(i) = self.slot_index(lease) {
                    self.slots[i].release_wanted = true;
                    self.revoke_if_possible(i, fx);
                }
            }
            other => unreachable!("lessee-bound message at a lessor: {:?}", other.lease()),
        }
    }

    /// Ask `shard` to host a lessee. Returns the lease, or `None` when the
    /// actor cannot lease there now (sequential, blocked, home shard, or a
    /// lessee already there).
    pub fn request_lease(
        &mut self,
        shard: ShardId,
        fx: &mut impl Effects<M, S>,
    ) -> Option<LeaseId> {
        if self.strategy == Strategy::Sequential
            || self.blocked.is_some()
            || shard == self.home
            || self.slots.iter().any(|s| s.shard == shard)
        {
            return None;
        }
        let lease = LeaseId(self.next_lease);
        self.next_lease += 1;
        self.slots.push(Slot {
            lease,
            shard,
            phase: Phase::Pending,
            parts: PartitionSet::EMPTY,
            release_wanted: false,
        });
        fx.send(
            shard,
            Wire::LeaseRequest {
                lease,
                lessor: self.home,
                strategy: self.strategy,
            },
        );
        Some(lease)
    }

    /// Revoke a lease: at once when the protocol allows, else as soon as it
    /// does (pending grant, or after the barrier in progress). Returns false
    /// for an unknown lease.
    pub fn revoke(&mut self, lease: LeaseId, fx: &mut impl Effects<M, S>) -> bool {
        let Some(i) = self.slot_index(lease) else {
            return false;
        };
        self.slots[i].release_wanted = true;
        self.revoke_if_possible(i, fx);
        true
    }

    /// The message the next [`Lessor::step`] runs, if it runs one (not
    /// a tick).
    pub fn next(&self) -> Option<&M> {
        match self.mailbox.front() {
            Some(Entry::Msg(m)) => Some(m),
            _ => None,
        }
    }

    /// Run at most one local message or tick. Returns true if one ran.
    /// Critical messages run inside this call when the local mailbox
    /// drains during a barrier.
    pub fn step(&mut self, fx: &mut impl Effects<M, S>) -> bool {
        let ran = match self.mailbox.pop_front() {
            Some(Entry::Msg(msg)) => {
                self.mailbox_weight -= msg.weight() as usize;
                fx.run(&mut self.state, msg);
                true
            }
            Some(Entry::Tick(tick, _)) => {
                let (seq, roster) = self.rosters.pop_front().expect("a tick has its roster");
                assert_eq!(seq, tick.seq, "ticks run in the order they were made");
                fx.tick(&mut self.state, tick, Instance::Home, &roster);
                true
            }
            None => false,
        };
        if self.blocked.is_some() {
            self.try_critical(fx);
        }
        ran
    }

    // ------------------------------------------------------------------
    // Routing
    // ------------------------------------------------------------------

    fn part_of(&self, msg: &M) -> PartitionSet {
        match self.strategy {
            Strategy::Keyed => msg.partitions(),
            _ => PartitionSet::EMPTY,
        }
    }

    /// Queue `msg` to run here.
    fn run_here(&mut self, msg: M) {
        let w = msg.weight();
        self.stats.run_local += w;
        self.mailbox_weight += w as usize;
        self.mailbox.push_back(Entry::Msg(msg));
    }

    /// Take the whole mailbox (its weight goes with it).
    fn take_mailbox(&mut self) -> VecDeque<Entry<M>> {
        self.mailbox_weight = 0;
        std::mem::take(&mut self.mailbox)
    }

    /// Messages leave the lessor's queue for a lessee's.
    fn forward_queued(
        &mut self,
        shard: ShardId,
        lease: LeaseId,
        msg: M,
        fx: &mut impl Effects<M, S>,
    ) {
        let w = msg.weight();
        self.stats.run_local = self.stats.run_local.saturating_sub(w);
        self.stats.forwarded += w;
        fx.send(shard, Wire::Deliver { lease, msg });
    }

    fn must_hold(&self, msg: &M) -> bool {
        if msg.epoch() > self.epoch {
            return true;
        }
        assert!(
            self.blocked.is_none(),
            "pre-barrier message after the barrier aligned"
        );
        let p = self.part_of(msg);
        p.intersects(self.transit)
            || p.intersects(self.held_parts)
            || self.held_fence.is_some_and(|f| f <= msg.epoch())
    }

    fn route(&mut self, msg: M, fx: &mut impl Effects<M, S>) {
        assert!(msg.epoch() == self.epoch);
        let target = match self.strategy {
            // While blocked only pre-barrier stragglers route, and every
            // lessee is consolidating: they run here.
            _ if self.blocked.is_some() => {
                assert!(self.part_of(&msg).minus(self.own).is_empty());
                None
            }
            Strategy::Sequential => None,
            Strategy::Keyed => match self.keyed_owner(&msg) {
                Some(target) => target,
                None => return self.route_pieces(msg, fx),
            },
            Strategy::Mergeable => {
                let active: usize = self.slots.iter().filter(|s| Self::takes_work(s)).count();
                let chosen = if active == 0 {
                    None
                } else {
                    let mut shards = Vec::with_capacity(active + 1);
                    shards.push(self.home);
                    shards.extend(
                        self.slots
                            .iter()
                            .filter(|s| Self::takes_work(s))
                            .map(|s| s.shard),
                    );
                    fx.choose(&msg, &shards).filter(|k| *k <= active)
                };
                let k = chosen.unwrap_or_else(|| {
                    self.rr = self.rr.wrapping_add(1);
                    self.rr % (active + 1)
                });
                match k {
                    0 => None,
                    k => self
                        .slots
                        .iter()
                        .filter(|s| Self::takes_work(s))
                        .nth(k - 1)
                        .map(|s| (s.lease, s.shard)),
                }
            }
        };
        match target {
            None => self.run_here(msg),
            Some((lease, shard)) => {
                self.stats.forwarded += msg.weight();
                fx.send(shard, Wire::Deliver { lease, msg });
            }
        }
    }

    /// Where a `Keyed` message runs: here (`Some(None)`), at one lessee,
    /// or (`None`) a batch whose keys run on several instances.
    fn keyed_owner(&self, msg: &M) -> Option<Option<(LeaseId, ShardId)>> {
        let parts = msg.partitions();
        if parts.minus(self.own).is_empty() {
            return Some(None);
        }
        let slot = self
            .slots
            .iter()
            .find(|s| parts.minus(s.parts).is_empty())?;
        assert!(
            slot.phase == Phase::Active,
            "partitions {parts:?} routed while not owned by an active lessee"
        );
        Some(Some((slot.lease, slot.shard)))
    }

    /// `Keyed`: a batch over partitions of several instances, cut into one
    /// piece per instance (each in the batch's order), each sent where its
    /// keys run. Per-key order is the batch's: a key is in one piece.
    fn route_pieces(&mut self, msg: M, fx: &mut impl Effects<M, S>) {
        let parts = msg.partitions();
        let mut owners = Vec::with_capacity(self.slots.len() + 1);
        owners.push(self.own);
        owners.extend(self.slots.iter().map(|s| s.parts));
        let covered = owners.iter().fold(PartitionSet::EMPTY, |u, o| u.union(*o));
        assert!(
            parts.minus(covered).is_empty(),
            "partitions {parts:?} have no owner"
        );
        for (i, piece) in msg.split_by(&owners) {
            match i {
                0 => self.run_here(piece),
                i => {
                    let slot = &self.slots[i - 1];
                    assert_eq!(slot.phase, Phase::Active, "a piece for an active lessee");
                    let (lease, shard) = (slot.lease, slot.shard);
                    self.stats.forwarded += piece.weight();
                    fx.send(shard, Wire::Deliver { lease, msg: piece });
                }
            }
        }
    }

    fn takes_work(s: &Slot) -> bool {
        s.phase == Phase::Active && !s.release_wanted
    }

    /// Route held messages that may run now, in arrival order; a message stays
    /// held if its epoch is later, its partition is in transit, an earlier
    /// held message of the current epoch has its partition, or an earlier
    /// held tick fences its epoch. A tick stays held behind anything held.
    fn rescan_held(&mut self, fx: &mut impl Effects<M, S>) {
        if self.held.is_empty() {
            return;
        }
        let mut keep = VecDeque::with_capacity(self.held.len());
        let mut still = PartitionSet::EMPTY;
        let held = std::mem::take(&mut self.held);
        self.held_weight = 0;
        self.held_fence = None;
        for entry in held {
            let stays = match &entry {
                Entry::Tick(..) => !keep.is_empty() || self.state_coming_home(),
                Entry::Msg(msg) => {
                    let p = self.part_of(msg);
                    msg.epoch() > self.epoch
                        || self.held_fence.is_some_and(|f| f <= msg.epoch())
                        || p.intersects(self.transit)
                        || p.intersects(still)
                }
            };
            if !stays {
                match entry {
                    Entry::Msg(msg) => self.route(msg, fx),
                    Entry::Tick(tick, _) => self.broadcast(tick, fx),
                }
                continue;
            }
            match &entry {
                Entry::Msg(msg) if msg.epoch() <= self.epoch => {
                    still = still.union(self.part_of(msg));
                }
                Entry::Tick(_, e) => {
                    self.held_fence = Some(self.held_fence.map_or(*e, |f| f.min(*e)));
                }
                Entry::Msg(_) => {}
            }
            self.held_weight += entry.weight() as usize;
            keep.push_back(entry);
        }
        self.held = keep;
        self.held_parts = still;
    }

    // ------------------------------------------------------------------
    // Leases
    // ------------------------------------------------------------------

    fn slot_index(&self, lease: LeaseId) -> Option<usize> {
        self.slots.iter().position(|s| s.lease == lease)
    }

    fn on_granted(&mut self, lease: LeaseId, fx: &mut impl Effects<M, S>) {
        let Some(i) = self.slot_index(lease) else {
            unreachable!("grant for unknown lease {lease:?}")
        };
        assert_eq!(self.slots[i].phase, Phase::Pending);
        self.slots[i].phase = Phase::Active;
        self.stats.leases_granted += 1;
        if self.slots[i].release_wanted {
            self.revoke_if_possible(i, fx);
            return;
        }
        if self.blocked.is_some() {
            // Keyed: partitions go out at resume; Mergeable: work from the
            // next routed message on.
            return;
        }
        match self.strategy {
            Strategy::Keyed => self.hand_off_partitions(i, fx),
            Strategy::Mergeable => self.share_queue(i, fx),
            Strategy::Sequential => unreachable!("a sequential actor was leased"),
        }
    }

    /// `Keyed`, at grant: give the new lessee about half of the lessor's
    /// partitions, chosen to split the queued messages evenly, together with
    /// their state and, behind it on the same FIFO link, their queued
    /// messages in mailbox order. Held messages of those partitions arrived
    /// after every queued one (a partition with held messages queues nothing
    /// new), and rescans route them to the lessee later, so per-key order
    /// holds. The backlog leaves with the partitions: a lessee relieves the
    /// lessor at once, not after the lessor worked through its queue.
    fn hand_off_partitions(&mut self, i: usize, fx: &mut impl Effects<M, S>) {
        if self.own.len() < 2 {
            return;
        }
        self.split_queued_batches();
        let mut queued = [0u32; PARTITIONS as usize];
        // Each queued message is of one partition now (a batch of several
        // keys of it counts as its weight).
        for e in &self.mailbox {
            if let Entry::Msg(m) = e {
                for p in m.partitions().iter() {
                    queued[p as usize] += m.weight() as u32;
                }
            }
        }
        let mut owned: Vec<u32> = self.own.iter().collect();
        owned.sort_by_key(|&p| std::cmp::Reverse(queued[p as usize]));
        // Greedy split by (queued messages, partitions): heaviest first, each
        // to the lighter side.
        let (mut give, mut to_give, mut to_keep) =
            (PartitionSet::EMPTY, (0u32, 0u32), (0u32, 0u32));
        for p in owned {
            let w = queued[p as usize];
            if to_give <= to_keep {
                give = give.union(PartitionSet::single(p));
                to_give = (to_give.0 + w, to_give.1 + 1);
            } else {
                to_keep = (to_keep.0 + w, to_keep.1 + 1);
            }
        }
        assert!(!give.is_empty() && give.len() < self.own.len());
        self.own = self.own.minus(give);
        let state = self.state.take_partitions(give);
        let slot = &mut self.slots[i];
        slot.parts = give;
        let (lease, shard) = (slot.lease, slot.shard);
        fx.send(
            shard,
            Wire::Assign {
                lease,
                parts: give,
                state: Some(state),
                epoch: self.epoch,
            },
        );
        for entry in self.take_mailbox() {
            match entry {
                Entry::Msg(msg) if msg.partitions().intersects(give) => {
                    self.forward_queued(shard, lease, msg, fx);
                }
                Entry::Tick(tick, e) => {
                    self.copy_tick(tick, lease, shard, fx);
                    self.mailbox.push_back(Entry::Tick(tick, e));
                }
                Entry::Msg(msg) => {
                    self.mailbox_weight += msg.weight() as usize;
                    self.mailbox.push_back(Entry::Msg(msg));
                }
            }
        }
    }

    /// `Keyed`, before partitions leave: queued batches of several
    /// partitions become messages of one key each, in place, so each can
    /// follow its partition.
    fn split_queued_batches(&mut self) {
        let single = |e: &Entry<M>| match e {
            Entry::Msg(m) => m.partitions().len() <= 1,
            Entry::Tick(..) => true,
        };
        if self.mailbox.iter().all(single) {
            return;
        }
        let mut one_by_one = VecDeque::with_capacity(self.mailbox.len());
        for entry in self.take_mailbox() {
            match entry {
                Entry::Msg(msg) => one_by_one.extend(msg.split().into_iter().map(Entry::Msg)),
                tick => one_by_one.push_back(tick),
            }
        }
        assert!(one_by_one
            .iter()
            .all(|e| matches!(e, Entry::Tick(..)) || e.weight() == 1));
        self.mailbox_weight = one_by_one.iter().map(|e| e.weight() as usize).sum();
        self.mailbox = one_by_one;
    }

    /// `Mergeable`, at grant: the new lessee takes the newer half of the
    /// lessor's queue (any message may run anywhere; the barrier protocol
    /// already waits for lessees to drain before a critical).
    /// Ticks in that half go to the lessee and stay here too.
    fn share_queue(&mut self, i: usize, fx: &mut impl Effects<M, S>) {
        let (lease, shard) = (self.slots[i].lease, self.slots[i].shard);
        let keep = self.mailbox.len().div_ceil(2);
        for entry in self.mailbox.split_off(keep) {
            match entry {
                Entry::Msg(msg) => {
                    self.mailbox_weight -= msg.weight() as usize;
                    self.forward_queued(shard, lease, msg, fx);
                }
                Entry::Tick(tick, e) => {
                    self.copy_tick(tick, lease, shard, fx);
                    self.mailbox.push_back(Entry::Tick(tick, e));
                }
            }
        }
    }

    fn revoke_if_possible(&mut self, i: usize, fx: &mut impl Effects<M, S>) {
        if self.blocked.is_some() || self.slots[i].phase != Phase::Active {
            return; // pending: at grant; blocked: at resume; revoking: already
        }
        let slot = &mut self.slots[i];
        slot.phase = Phase::Revoking;
        let (lease, shard, parts) = (slot.lease, slot.shard, slot.parts);
        self.transit = self.transit.union(parts);
        fx.send(shard, Wire::Revoke { lease });
        // Messages now held for `parts` may already be queued behind
        // nothing: nothing to rescan until the state comes home.
    }

    fn come_home(&mut self, parts: PartitionSet) {
        assert!(!parts.intersects(self.own));
        self.own = self.own.union(parts);
        self.transit = self.transit.minus(parts);
    }

    fn stop_awaiting(&mut self, lease: LeaseId) {
        if let Some(b) = self.blocked.as_mut() {
            b.awaiting.retain(|l| *l != lease);
        }
    }

    // ------------------------------------------------------------------
    // Barriers
    // ------------------------------------------------------------------

    fn try_block(&mut self, fx: &mut impl Effects<M, S>) {
        if self.blocked.is_some() {
            return;
        }
        let barrier = self.epoch + 1;
        let Some(per_edge) = self.criticals.get(&barrier) else {
            return;
        };
        for (edge, c) in per_edge.iter().enumerate() {
            let Some(c) = c else { return };
            let sent = c.critical().map_or(0, |m| m.sent);
            let got = self
                .arrived
                .get(&(self.epoch, edge as EdgeId))
                .copied()
                .unwrap_or(0);
            assert!(
                got <= sent,
                "edge {edge}: {got} messages arrived, {sent} announced"
            );
            if got < sent {
                return;
            }
        }
        // Aligned: block every lessee.
        let mut awaiting = Vec::with_capacity(self.slots.len());
        for i in 0..self.slots.len() {
            match self.slots[i].phase {
                Phase::Pending => {}
                Phase::Revoking => awaiting.push(self.slots[i].lease),
                Phase::Active => {
                    let slot = &self.slots[i];
                    self.transit = self.transit.union(slot.parts);
                    awaiting.push(slot.lease);
                    fx.send(
                        slot.shard,
                        Wire::Block {
                            lease: slot.lease,
                            barrier,
                        },
                    );
                }
            }
        }
        self.blocked = Some(Blocked { barrier, awaiting });
        self.try_critical(fx);
    }

    fn try_critical(&mut self, fx: &mut impl Effects<M, S>) {
        let Some(b) = self.blocked.as_ref() else {
            return;
        };
        if !b.awaiting.is_empty() || !self.mailbox.is_empty() {
            return;
        }
        if self.held.iter().any(|e| e.epoch() <= self.epoch) {
            return;
        }
        let barrier = b.barrier;
        if self.strategy == Strategy::Keyed {
            assert_eq!(
                self.own,
                PartitionSet::ALL,
                "critical before every partition came home"
            );
            assert!(self.transit.is_empty());
        }
        let msgs: Vec<M> = self
            .criticals
            .remove(&barrier)
            .expect("a blocked lessor has its barrier's criticals")
            .into_iter()
            .map(|c| c.expect("an aligned barrier has a critical on every edge"))
            .collect();
        fx.run_critical(&mut self.state, barrier, msgs);
        self.epoch = barrier;
        self.arrived.retain(|(e, _), _| *e >= barrier);
        self.blocked = None;
        self.stats.barriers += 1;
        self.resume(fx);
        self.rescan_held(fx);
        self.try_block(fx);
    }

    /// After a critical: hand partitions back out (`Keyed`) and carry out the
    /// revokes that waited for the barrier.
    fn resume(&mut self, fx: &mut impl Effects<M, S>) {
        for i in 0..self.slots.len() {
            if self.slots[i].phase == Phase::Active && self.slots[i].release_wanted {
                self.revoke_if_possible(i, fx);
            }
        }
        if self.strategy != Strategy::Keyed {
            return;
        }
        let takers: Vec<usize> = (0..self.slots.len())
            .filter(|&i| Self::takes_work(&self.slots[i]))
            .collect();
        let share = PARTITIONS / (takers.len() as u32 + 1);
        for i in takers {
            // Take from the top so the lessor keeps the low partitions.
            let avail = self.own;
            let give = PartitionSet(avail.0 & !avail.take_lowest(avail.len() - share).0);
            if give.is_empty() {
                continue;
            }
            self.own = self.own.minus(give);
            let state = self.state.take_partitions(give);
            let slot = &mut self.slots[i];
            slot.parts = give;
            fx.send(
                slot.shard,
                Wire::Assign {
                    lease: slot.lease,
                    parts: give,
                    state: Some(state),
                    epoch: self.epoch,
                },
            );
        }
    }
}
