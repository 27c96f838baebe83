//! One execution of a protocol model: a [`Scenario`] (strategy, shards and
//! their plans, upstream sources) run on loom threads over the [`Mesh`], then
//! drained sequentially and checked against an oracle computed from the
//! scenario alone.
//!
//! The checks are the protocol's invariants (see `dirigo_engine::protocol`):
//! 1. each critical of barrier `b` saw exactly the data of epochs `< b`, and
//!    got one critical per input edge, in edge order;
//! 2. every data message ran exactly once;
//! 3. `Keyed` (and `Sequential`): per key, messages ran in send order;
//! 4. at quiescence every barrier whose criticals arrived has completed, and
//!    after revoking every lease, no lessee is left anywhere;
//! 5. the final state equals a sequential run.
//!
//! A failed check panics with every failure and the run's trace.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use dirigo_engine::protocol::{EdgeId, Epoch, LessorMode, LessorStats, ShardId, Strategy};
use loom::sync::Arc;
use loom::thread;

use crate::fault::Fault;
use crate::mesh::{Event, Feed, Mesh, Packet};
use crate::msg::Part;
use crate::shard::{Home, Leave, Plan, Shard, HOME};

/// Loom runs at most this many threads, the model's main thread included.
const LOOM_THREADS: usize = 5;

/// What one model runs: shard `i` follows `shards[i]` (shard 0 is home),
/// and each source is an upstream thread sending its script, in order, to
/// the home shard.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// How the actor's state is split across lessor and lessees.
    pub strategy: Strategy,
    /// The actor's input edges: every barrier needs one critical per edge.
    pub inputs: u16,
    /// Per shard, its plan. Shards and sources are at most four in all
    /// (loom's five threads, less the model's own).
    pub shards: Vec<Plan>,
    /// Per source, the items it sends home, in order; none is empty.
    pub sources: Vec<Vec<Feed>>,
    /// The deliberate bug the run has, if any.
    pub fault: Fault,
}

/// What one execution did, up to quiescence (before the drain): for the
/// models' coverage facts, which show that the interleavings loom explored
/// include the races a model is about.
pub struct Outcome {
    /// The trace up to quiescence, in the global order of the mesh's lock.
    pub trace: Vec<Event>,
    /// The lessor's counters at quiescence (zero if it never activated).
    pub stats: LessorStats,
}

impl Outcome {
    /// Index of the first event matching `f`.
    pub fn first(&self, f: impl Fn(&Event) -> bool) -> Option<usize> {
        self.trace.iter().position(f)
    }

    /// Index of the last event matching `f`.
    pub fn last(&self, f: impl Fn(&Event) -> bool) -> Option<usize> {
        self.trace.iter().rposition(f)
    }

    /// Whether some event matches `f`.
    pub fn any(&self, f: impl Fn(&Event) -> bool) -> bool {
        self.trace.iter().any(f)
    }
}

/// What a correct run must produce, from the scenario alone.
struct Oracle {
    /// Data id -> epoch.
    epochs: BTreeMap<u64, Epoch>,
    /// Per key, data ids in the order their (single) producer sent them.
    per_key: Part,
    /// Number of barriers the scenario closes.
    barriers: Epoch,
}

impl Oracle {
    fn of(s: &Scenario) -> Oracle {
        let mut epochs = BTreeMap::new();
        let mut per_key = Part::new();
        let mut producer_of_key = BTreeMap::new();
        let mut criticals: BTreeMap<Epoch, BTreeSet<EdgeId>> = BTreeMap::new();
        let producers: Vec<Vec<&Feed>> = s
            .sources
            .iter()
            .map(|v| v.iter().collect())
            .chain(s.shards.iter().map(|p| p.script.iter().collect()))
            .collect();
        for (producer, script) in producers.into_iter().enumerate() {
            for m in script.into_iter().flat_map(Feed::inputs) {
                if let Some(c) = m.critical {
                    assert!(
                        criticals.entry(c.barrier).or_default().insert(m.edge),
                        "scenario: two criticals of barrier {} on edge {}",
                        c.barrier,
                        m.edge
                    );
                    continue;
                }
                assert!(
                    !epochs.contains_key(&m.id),
                    "scenario: data id {} used twice",
                    m.id
                );
                // Per-key order is the send order only if one producer
                // sends the key, in epoch order (as one upstream instance
                // does; a later epoch's message is held, so it may not
                // overtake an earlier epoch's message of its key).
                let first = *producer_of_key.entry(m.key).or_insert(producer);
                assert_eq!(first, producer, "scenario: key {} has two producers", m.key);
                let ids = per_key.entry(m.key).or_default();
                if let Some(prev) = ids.last() {
                    assert!(
                        epochs.get(prev).is_some_and(|e| *e <= m.epoch),
                        "scenario: key {} goes back in epochs",
                        m.key
                    );
                }
                ids.push(m.id);
                epochs.insert(m.id, m.epoch);
            }
        }
        let barriers = criticals.keys().copied().max().unwrap_or(0);
        for b in 1..=barriers {
            let edges = criticals.get(&b).map_or(0, BTreeSet::len);
            assert_eq!(
                edges,
                usize::from(s.inputs),
                "scenario: barrier {b} needs one critical per input edge"
            );
        }
        Oracle {
            epochs,
            per_key,
            barriers,
        }
    }

    /// The data a critical of barrier `b` must see.
    fn before(&self, b: Epoch) -> BTreeSet<u64> {
        self.epochs
            .iter()
            .filter(|(_, e)| **e < b)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Collects failed checks; panics with all of them and the trace.
struct Verdict {
    failures: Vec<String>,
}

impl Verdict {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(what());
        }
    }

    fn conclude(self, scenario: &Scenario, trace: &[Event], drained: &[Event]) {
        if self.failures.is_empty() {
            return;
        }
        let mut report = format!(
            "protocol model failed ({:?}, {} input edge(s), fault {:?}):\n",
            scenario.strategy, scenario.inputs, scenario.fault
        );
        for f in &self.failures {
            let _ = writeln!(report, "  - {f}");
        }
        report.push_str("schedule (trace of the failing interleaving):\n");
        for (i, e) in trace.iter().chain(drained).enumerate() {
            let _ = writeln!(report, "  {i:3}: {}", describe(e));
        }
        panic!("{report}");
    }
}

fn describe(e: &Event) -> String {
    match e {
        Event::Recv { at, what } => format!("shard {at} <- {what:?}"),
        Event::Source { source, what } => format!("source {source} -> {what:?}"),
        Event::Script { at, what } => format!("shard {at} takes from its script: {what:?}"),
        Event::Ran { at, id } => format!("shard {at} ran #{id}"),
        Event::Critical { barrier, seen } => {
            format!("shard 0 ran the criticals of barrier {barrier}, seeing {seen} messages")
        }
        Event::Did { at, what, lease } => format!("shard {at}: {what} (lease {lease})"),
        Event::Drain => "---- threads joined; sequential drain (revoke all) ----".into(),
    }
}

impl Scenario {
    /// An actor with `strategy` and `inputs` input edges, with no shard, no
    /// source and no fault yet.
    pub fn new(strategy: Strategy, inputs: u16) -> Scenario {
        Scenario {
            strategy,
            inputs,
            shards: Vec::new(),
            sources: Vec::new(),
            fault: Fault::None,
        }
    }

    /// Add the next shard, following `plan` (the first one is [`HOME`]).
    pub fn shard(mut self, plan: Plan) -> Scenario {
        self.shards.push(plan);
        self
    }

    /// Add an upstream source, sending `script` to the home shard in order.
    pub fn source(mut self, script: impl IntoIterator<Item = Feed>) -> Scenario {
        self.sources.push(script.into_iter().collect());
        self
    }

    /// Run with `fault` injected.
    pub fn fault(mut self, fault: Fault) -> Scenario {
        self.fault = fault;
        self
    }

    /// One execution: the body of a loom model. Panics if a check fails;
    /// else returns what happened, for the model's coverage facts.
    pub fn run(&self) -> Outcome {
        assert!(
            1 + self.shards.len() + self.sources.len() <= LOOM_THREADS,
            "loom runs at most {LOOM_THREADS} threads"
        );
        assert!(
            self.sources.iter().all(|s| !s.is_empty()),
            "a source sends something"
        );
        let oracle = Oracle::of(self);
        let mesh = Arc::new(Mesh::new(self.shards.len(), self.sources.len(), self.fault));
        let shards: Vec<_> = self
            .shards
            .iter()
            .enumerate()
            .map(|(i, plan)| {
                let shard = Shard::new(
                    i as ShardId,
                    self.strategy,
                    self.inputs,
                    plan.clone(),
                    self.fault,
                );
                let mesh = mesh.clone();
                thread::spawn(move || shard.run(&mesh))
            })
            .collect();
        let sources: Vec<_> = self
            .sources
            .iter()
            .enumerate()
            .map(|(i, script)| {
                let script = script.clone();
                let mesh = mesh.clone();
                thread::spawn(move || {
                    let n = script.len();
                    for (k, feed) in script.into_iter().enumerate() {
                        mesh.source_send(i, HOME, feed, k + 1 == n);
                    }
                })
            })
            .collect();
        // A panic in a model thread is the model's failure: pass it on.
        for s in sources {
            s.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
        let mut shards: Vec<Shard> = shards
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        let outcome = Outcome {
            trace: mesh.take_trace(),
            stats: match &shards[HOME as usize].home {
                Home::Active(l) => l.stats(),
                Home::Dormant(d) => d.stats(),
                Home::Absent => LessorStats::default(),
            },
        };
        let mut v = Verdict {
            failures: Vec::new(),
        };
        self.check_quiescent(&oracle, &shards, &mut v);
        let mut drained = vec![Event::Drain];
        drain(&mut shards, &mut drained);
        self.check_drained(&oracle, &mut shards, &mut v);
        v.conclude(self, &outcome.trace, &drained);
        outcome
    }

    /// At quiescence, before anything is revoked: barriers and criticals.
    fn check_quiescent(&self, oracle: &Oracle, shards: &[Shard], v: &mut Verdict) {
        let (epoch, mode) = match &shards[HOME as usize].home {
            Home::Active(l) => (l.epoch(), l.mode()),
            Home::Dormant(d) => (d.epoch(), LessorMode::Runnable),
            Home::Absent => (0, LessorMode::Runnable),
        };
        v.check(epoch == oracle.barriers, || {
            format!(
                "invariant 4: at quiescence the lessor is at epoch {epoch}, not {} \
                 (a barrier never completed)",
                oracle.barriers
            )
        });
        v.check(mode == LessorMode::Runnable, || {
            format!("invariant 4: at quiescence the lessor is stuck in {mode:?}")
        });
        for s in shards.iter().filter(|s| s.id != HOME) {
            v.check(s.log.criticals.is_empty(), || {
                format!("a critical ran on shard {}, not at home", s.id)
            });
        }
        let views = &shards[HOME as usize].log.criticals;
        for b in 1..=oracle.barriers {
            let of_b: Vec<_> = views.iter().filter(|c| c.barrier == b).collect();
            v.check(of_b.len() == 1, || {
                format!(
                    "invariant 1: the criticals of barrier {b} ran {} times",
                    of_b.len()
                )
            });
            let want = oracle.before(b);
            for c in of_b {
                let edges: Vec<EdgeId> = (0..self.inputs).collect();
                v.check(c.edges == edges && c.marks_match, || {
                    format!(
                        "barrier {b}: criticals passed for edges {:?}, want one per edge {edges:?}",
                        c.edges
                    )
                });
                v.check(c.seen == want, || {
                    format!(
                        "invariant 1: the critical of barrier {b} saw {:?}; missing {:?}, \
                         from a later epoch {:?}",
                        c.seen,
                        want.difference(&c.seen).collect::<Vec<_>>(),
                        c.seen.difference(&want).collect::<Vec<_>>()
                    )
                });
            }
        }
    }

    /// After the drain: exactly once, per-key order, final state, no lessee.
    fn check_drained(&self, oracle: &Oracle, shards: &mut [Shard], v: &mut Verdict) {
        let mut runs: BTreeMap<u64, u32> = BTreeMap::new();
        for s in shards.iter() {
            for (id, n) in &s.log.runs {
                *runs.entry(*id).or_default() += n;
            }
            v.check(s.lessees.is_empty(), || {
                format!(
                    "invariant 4: shard {} still hosts {} lessee(s) after every lease was revoked",
                    s.id,
                    s.lessees.len()
                )
            });
        }
        for id in oracle.epochs.keys() {
            let n = runs.get(id).copied().unwrap_or(0);
            v.check(n == 1, || {
                format!("invariant 2: message #{id} ran {n} times")
            });
        }
        for id in runs.keys().filter(|id| !oracle.epochs.contains_key(id)) {
            v.failures
                .push(format!("message #{id} ran but was never sent"));
        }
        let lessor = shards[HOME as usize].lessor_for_checks();
        v.check(
            lessor.mode() == LessorMode::Runnable && lessor.lessee_shards().count() == 0,
            || {
                format!(
                    "invariant 4: after the drain the lessor is {:?} with {} lease(s)",
                    lessor.mode(),
                    lessor.lessee_shards().count()
                )
            },
        );
        let mut got = lessor.state().keys().clone();
        got.retain(|_, ids| !ids.is_empty());
        let mut want = oracle.per_key.clone();
        let what = match self.strategy {
            Strategy::Mergeable => {
                got.values_mut().for_each(|ids| ids.sort_unstable());
                want.values_mut().for_each(|ids| ids.sort_unstable());
                "invariant 5: final state differs from a sequential run"
            }
            _ => "invariants 3/5: per-key run order differs from send order",
        };
        v.check(got == want, || {
            format!("{what}: got {got:?}, want {want:?}")
        });
    }
}

/// After the threads joined: revoke every lease and run the shards to
/// quiescence, sequentially, so that all state comes home to be checked.
fn drain(shards: &mut [Shard], trace: &mut Vec<Event>) {
    let n = shards.len();
    for s in shards.iter_mut() {
        s.plan.leave = Leave::Stay;
        s.plan.deactivate_idle = false;
    }
    shards[HOME as usize].plan.script = (1..n as ShardId).map(Feed::Revoke).collect();
    let mut inbox: Vec<VecDeque<Packet>> = (0..n).map(|_| VecDeque::new()).collect();
    for _round in 0..10_000 {
        for s in shards.iter_mut() {
            trace.append(&mut s.out.events);
            for (to, p) in s.out.packets.drain(..) {
                inbox[to as usize].push_back(p);
            }
        }
        if inbox.iter().all(VecDeque::is_empty) && !shards.iter().any(Shard::has_work) {
            return;
        }
        for (s, q) in shards.iter_mut().zip(inbox.iter_mut()) {
            if let Some(p) = q.pop_front() {
                trace.push(Event::Recv {
                    at: s.id,
                    what: p.summary(),
                });
                s.on_packet(p);
            }
            s.work();
        }
    }
    panic!("the drain made no progress in 10,000 rounds");
}
