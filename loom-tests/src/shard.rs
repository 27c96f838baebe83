//! A shard of the models: the protocol instances living on one loom thread,
//! and the [`Effects`] through which the engine's state machines act.
//!
//! Shard 0 is the actor's home: it holds the [`Lessor`] (active, dormant or
//! not yet created, as the engine's shard does) and takes the upstream's
//! inputs and the client's commands. Other shards host [`Lessee`]s. Each turn
//! a shard handles at most one packet from the mesh and does one unit of each
//! kind of local work (a scripted command, a lessor step, one step per
//! lessee, a release request), like the engine's run loop in miniature. The
//! same code runs on the loom threads and, after they join, in the
//! sequential drain (`world`), which only swaps the transport.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use dirigo_engine::protocol::{
    Dormant, EdgeId, Effects, Epoch, LeaseId, Lessee, Lessor, ShardId, Strategy, Wire,
};

use crate::fault::Fault;
use crate::mesh::{Event, Feed, Mesh, Outbox, Packet, Turn};
use crate::msg::{Msg, Part, State};

/// The actor's home shard.
pub const HOME: ShardId = 0;

/// How a shard behaves, besides following the protocol.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Commands and inputs this shard gives its own lessor, one per turn, in
    /// order (the client's commands arriving on the home shard's queue).
    pub script: VecDeque<Feed>,
    /// Accept lease requests (else refuse them).
    pub accept_leases: bool,
    /// When a lessee here asks to go home (`Lessee::request_release`: the
    /// engine's idle lessee, or a shard that wants its core back).
    pub leave: Leave,
    /// Deactivate the actor whenever its lessor is idle (the engine's idle
    /// sweep, with a zero idle timeout).
    pub deactivate_idle: bool,
}

/// When a lessee asks to leave on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Leave {
    /// Only when revoked.
    #[default]
    Stay,
    /// In the turn it was granted.
    AfterGrant,
    /// In the turn it ran its `n`-th data message.
    AfterRuns(u32),
}

impl Plan {
    /// A shard that hosts lessees when asked.
    pub fn host() -> Plan {
        Plan {
            accept_leases: true,
            ..Plan::default()
        }
    }

    /// A host whose lessees ask to leave at `leave`.
    pub fn leaving_host(leave: Leave) -> Plan {
        Plan {
            accept_leases: true,
            leave,
            ..Plan::default()
        }
    }

    /// The home shard, running `script`.
    pub fn home(script: impl IntoIterator<Item = Feed>) -> Plan {
        Plan {
            script: script.into_iter().collect(),
            ..Plan::default()
        }
    }
}

/// What a critical observed when it ran.
#[derive(Clone, Debug)]
pub struct CriticalView {
    /// The barrier the critical closes.
    pub barrier: Epoch,
    /// The edges of the critical messages, in the order they were passed.
    pub edges: Vec<EdgeId>,
    /// Barrier marks of the messages all equal `barrier`.
    pub marks_match: bool,
    /// Ids of the data messages folded into the state the critical ran on.
    pub seen: BTreeSet<u64>,
}

/// What ran on a shard.
#[derive(Debug, Default)]
pub struct Log {
    /// Data message id -> times it ran here.
    pub runs: BTreeMap<u64, u32>,
    /// The criticals that ran here, in run order (only home runs any).
    pub criticals: Vec<CriticalView>,
}

/// The lessor's slot on the home shard.
pub enum Home {
    /// Never activated (or not the home shard).
    Absent,
    /// The actor is active: its lessor.
    Active(Box<Lessor<Msg, State>>),
    /// The actor was deactivated: what its lessor kept (state, epoch, lease
    /// counter), to reactivate from.
    Dormant(Dormant<State>),
}

/// The driver's side of the protocol's effects: record runs, queue sends.
struct Fx<'a> {
    at: ShardId,
    out: &'a mut Outbox,
    log: &'a mut Log,
}

impl Effects<Msg, State> for Fx<'_> {
    fn run(&mut self, state: &mut State, msg: Msg) {
        assert!(msg.is_data(), "a critical ran as data: {msg:?}");
        state.apply(&msg);
        *self.log.runs.entry(msg.id).or_default() += 1;
        self.out.events.push(Event::Ran {
            at: self.at,
            id: msg.id,
        });
    }

    fn run_critical(&mut self, state: &mut State, barrier: Epoch, msgs: Vec<Msg>) {
        let seen = state.ids();
        self.out.events.push(Event::Critical {
            barrier,
            seen: seen.len(),
        });
        self.log.criticals.push(CriticalView {
            barrier,
            edges: msgs.iter().map(|m| m.edge).collect(),
            marks_match: msgs
                .iter()
                .all(|m| m.critical.map(|c| c.barrier) == Some(barrier)),
            seen,
        });
    }

    fn send(&mut self, to: ShardId, wire: Wire<Msg, Part>) {
        self.out.packets.push((to, Packet::Wire(wire)));
    }
}

/// One shard of a model: the lessor's slot, the lessees it hosts, its plan,
/// and what ran on it. Its loom thread owns it while the mesh runs and hands
/// it back for the checks and the drain.
pub struct Shard {
    /// This shard's index in the scenario; [`HOME`] is the actor's home.
    pub id: ShardId,
    strategy: Strategy,
    inputs: u16,
    fault: Fault,
    /// The actor's lessor: [`Home::Absent`] on every shard but [`HOME`].
    pub home: Home,
    /// The lessees hosted here, by lease, until they answer a `Revoke`.
    pub lessees: BTreeMap<LeaseId, Lessee<Msg, State>>,
    /// Every lease this shard was ever asked to host: a lease id names one
    /// lessee for the actor's whole life, so none may come twice.
    leases_seen: BTreeSet<LeaseId>,
    /// Per lessee here: data messages it ran, and whether it asked to leave.
    lessee_runs: BTreeMap<LeaseId, (u32, bool)>,
    /// How this shard behaves; the drain rewrites it (stay, no idle
    /// deactivation, revoke every lease).
    pub plan: Plan,
    /// What ran here, for the checks.
    pub log: Log,
    /// Sends and trace events not yet flushed to the mesh (or the drain).
    pub out: Outbox,
}

impl Shard {
    /// Shard `id` of an actor with `strategy` and `inputs` input edges,
    /// following `plan`; `fault` breaks its test state or its driver, if it
    /// is one of theirs.
    pub fn new(id: ShardId, strategy: Strategy, inputs: u16, plan: Plan, fault: Fault) -> Shard {
        Shard {
            id,
            strategy,
            inputs,
            fault,
            home: Home::Absent,
            lessees: BTreeMap::new(),
            leases_seen: BTreeSet::new(),
            lessee_runs: BTreeMap::new(),
            plan,
            log: Log::default(),
            out: Outbox::default(),
        }
    }

    /// The shard's thread: turns until the mesh is quiescent. Hands the shard
    /// back for the checks.
    pub fn run(mut self, mesh: &Mesh) -> Shard {
        loop {
            let has_work = self.has_work();
            match mesh.exchange(self.id, &mut self.out, has_work) {
                Turn::Packet(p) => self.on_packet(p),
                Turn::Work => {}
                Turn::Stop => return self,
            }
            self.work();
        }
    }

    /// Whether a turn would do something without a packet.
    pub fn has_work(&self) -> bool {
        !self.plan.script.is_empty()
            || matches!(&self.home, Home::Active(l) if l.has_work())
            || self.lessees.values().any(Lessee::has_work)
    }

    fn keyed(&self) -> bool {
        self.strategy == Strategy::Keyed
    }

    fn note(&mut self, what: &'static str, lease: LeaseId) {
        self.out.events.push(Event::Did {
            at: self.id,
            what,
            lease: lease.0,
        });
    }

    /// The active lessor, activating the actor first if needed (from what
    /// deactivation kept, as the engine's shard does).
    fn lessor(&mut self) -> &mut Lessor<Msg, State> {
        assert_eq!(self.id, HOME, "the lessor lives on the home shard");
        if !matches!(self.home, Home::Active(_)) {
            let fresh = State::new(self.keyed(), self.fault);
            let lessor = match std::mem::replace(&mut self.home, Home::Absent) {
                Home::Dormant(d) if self.fault != Fault::ForgetDormant => {
                    Lessor::from_dormant(self.id, self.strategy, self.inputs, d)
                }
                _ => Lessor::new(self.id, self.strategy, self.inputs, fresh),
            };
            self.home = Home::Active(Box::new(lessor));
            self.note("activated", LeaseId(0));
        }
        match &mut self.home {
            Home::Active(l) => l,
            _ => unreachable!("activated just above"),
        }
    }

    /// Split borrows: the lessor (activated) and an `Fx` over the outbox/log.
    fn with_lessor<R>(&mut self, f: impl FnOnce(&mut Lessor<Msg, State>, &mut Fx<'_>) -> R) -> R {
        self.lessor();
        let Home::Active(lessor) = &mut self.home else {
            unreachable!("activated just above")
        };
        let mut fx = Fx {
            at: self.id,
            out: &mut self.out,
            log: &mut self.log,
        };
        f(lessor, &mut fx)
    }

    /// Handle one packet: a feed goes to the lessor (activating the actor), a
    /// lease request is accepted or refused as the plan says, any other
    /// protocol message goes to its lessee or to the lessor. Panics on a
    /// lease id requested twice, or a message with no instance to take it.
    pub fn on_packet(&mut self, p: Packet) {
        match p {
            Packet::Feed(feed) => self.on_feed(feed),
            Packet::Wire(Wire::LeaseRequest { lease, lessor, .. }) => {
                assert!(
                    self.leases_seen.insert(lease),
                    "shard {}: lease {lease:?} requested twice (lease ids reused)",
                    self.id
                );
                let keyed = self.keyed();
                let mut fx = Fx {
                    at: self.id,
                    out: &mut self.out,
                    log: &mut self.log,
                };
                if self.plan.accept_leases {
                    let l = Lessee::accept(lease, lessor, State::new(keyed, self.fault), &mut fx);
                    self.lessees.insert(lease, l);
                    self.lessee_runs.insert(lease, (0, false));
                } else {
                    Lessee::<Msg, State>::refuse(lease, lessor, &mut fx);
                }
            }
            Packet::Wire(w) if w.is_for_lessee() => {
                let lease = w.lease();
                let Some(l) = self.lessees.get_mut(&lease) else {
                    panic!("shard {}: message for a missing lessee {lease:?}", self.id);
                };
                l.on_wire(w);
            }
            Packet::Wire(w) => {
                // The engine drops (and debug-asserts on) a lessor message for
                // an inactive actor: the protocol promises none arrives.
                let Home::Active(lessor) = &mut self.home else {
                    panic!(
                        "shard {}: lessor message {:?} for an inactive actor",
                        self.id,
                        Packet::Wire(w).summary()
                    );
                };
                let mut fx = Fx {
                    at: self.id,
                    out: &mut self.out,
                    log: &mut self.log,
                };
                lessor.on_wire(w, &mut fx);
            }
        }
    }

    fn on_feed(&mut self, feed: Feed) {
        match feed {
            Feed::Input(m) => self.with_lessor(|l, fx| l.on_input(m, fx)),
            Feed::Batch(ms) => self.with_lessor(|l, fx| {
                for m in ms {
                    l.on_input(m, fx);
                }
            }),
            Feed::Lease(shard) => {
                if let Some(lease) = self.with_lessor(|l, fx| l.request_lease(shard, fx)) {
                    self.note("asked for lease", lease);
                }
            }
            Feed::Revoke(shard) => {
                let Home::Active(l) = &self.home else {
                    return; // a dormant actor has no lessee
                };
                let lease = l.lessee_shards().find(|(_, s)| *s == shard).map(|(l, _)| l);
                if let Some(lease) = lease {
                    self.with_lessor(|l, fx| l.revoke(lease, fx));
                    self.note("revoked", lease);
                }
            }
        }
    }

    /// One unit of each kind of local work; then the idle sweep.
    pub fn work(&mut self) {
        if let Some(feed) = self.plan.script.pop_front() {
            let what = feed.summary();
            self.out.events.push(Event::Script { at: self.id, what });
            self.on_feed(feed);
        }
        if matches!(&self.home, Home::Active(l) if l.has_work()) {
            self.with_lessor(|l, fx| l.step(fx));
        }
        let mut finished = Vec::new();
        for (lease, l) in self.lessees.iter_mut() {
            let mut fx = Fx {
                at: self.id,
                out: &mut self.out,
                log: &mut self.log,
            };
            let (runs, asked) = self.lessee_runs.entry(*lease).or_default();
            if l.has_work() && l.step(&mut fx) {
                *runs += 1;
            }
            let leave = match self.plan.leave {
                Leave::Stay => false,
                Leave::AfterGrant => true,
                Leave::AfterRuns(n) => *runs >= n,
            };
            if leave && !*asked && !l.is_finished() {
                *asked = true;
                l.request_release(&mut fx);
                fx.out.events.push(Event::Did {
                    at: self.id,
                    what: "lessee asked to leave",
                    lease: lease.0,
                });
            }
            if l.is_finished() {
                finished.push(*lease);
            }
        }
        for lease in finished {
            self.lessees.remove(&lease);
            self.note("lessee gone", lease);
        }
        if self.plan.deactivate_idle {
            self.deactivate_if_idle();
        }
    }

    fn deactivate_if_idle(&mut self) {
        let Home::Active(l) = &self.home else {
            return;
        };
        if !l.is_idle() {
            return;
        }
        if let Home::Active(l) = std::mem::replace(&mut self.home, Home::Absent) {
            match l.into_dormant() {
                Ok(d) => {
                    self.home = Home::Dormant(d);
                    self.note("deactivated", LeaseId(0));
                }
                Err(l) => panic!("an idle lessor refused to deactivate (mode {:?})", l.mode()),
            }
        }
    }

    /// The lessor, for the checks: activated if dormant.
    pub fn lessor_for_checks(&mut self) -> &Lessor<Msg, State> {
        self.lessor()
    }
}
