//! Seeded simulation of the dual-mode protocol alone (no engine, no
//! executor): one actor's lessor on shard 0, lessees on shards 1..=3,
//! upstream senders on their own FIFO channels. Each schedule picks at random
//! the strategy, the DAG fan-in, the workload, the order in which channels
//! deliver and instances run, and when leases are requested, revoked and
//! released (including in the middle of a consolidation). It then checks the
//! five properties of `protocol`:
//!
//! 1. each critical observes exactly the data messages of earlier epochs;
//! 2. every data message runs exactly once;
//! 3. `Keyed`: per key, messages run in send order;
//! 4. every barrier completes and every lessee goes away when revoked;
//! 5. the final state equals a sequential run of the same input.
//!
//! Most schedules are on event time too: each edge's senders are the
//! instances of an upstream actor (its home, and leases that come and go
//! with their rosters and retire), sending watermark marks among their
//! data, and the simulation checks the watermark properties:
//!
//! 6. no overtaking: an instance runs a data message only while its
//!    watermark is below the next mark its sender sent after it;
//! 7. none lost: the lessor runs every tick, in order, and ends at the
//!    minimum over the edges of their last marks; every instance runs its
//!    ticks in order;
//! 8. rosters cover: a message a lessee ran before a tick was made, that
//!    lessee is in the tick's roster and marks it (or retires) after the
//!    message, so downstream never passes the message's outputs;
//! 9. timers fire in band: the lessor runs a tick only when no lessee's
//!    state is on its way home without having run it.
//!
//! `DIRIGO_SIM_SCHEDULES=N` runs N schedules (default 10,000);
//! `DIRIGO_SIM_SEED=S` runs the one schedule of seed S (printed on failure).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use dirigo_engine::protocol::time::RETIRED;
use dirigo_engine::protocol::{
    CriticalMark, EdgeId, Effects, Epoch, Instance, LeaseId, Lessee, Lessor, LessorMode,
    PartialState, PartitionSet, Routable, ShardId, Strategy, Tick, Time, WatermarkMark, Wire,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A data message (`id`, `key`), a critical, or a batch: `batch` holds
/// the (id, key) of each message it stands for, and `id`/`key` are unused.
#[derive(Clone, Debug)]
struct Msg {
    id: u64,
    key: u64,
    edge: EdgeId,
    epoch: Epoch,
    critical: Option<CriticalMark>,
    batch: Vec<(u64, u64)>,
}

impl Msg {
    /// The (id, key) of every data message this one stands for.
    fn items(&self) -> Vec<(u64, u64)> {
        if self.batch.is_empty() {
            vec![(self.id, self.key)]
        } else {
            self.batch.clone()
        }
    }
}

impl Routable for Msg {
    fn key_hash(&self) -> u64 {
        self.key
    }
    fn weight(&self) -> u64 {
        self.batch.len().max(1) as u64
    }
    fn partitions(&self) -> PartitionSet {
        self.items().iter().fold(PartitionSet::EMPTY, |s, &(_, k)| {
            s.union(PartitionSet::single(PartitionSet::partition_of(k)))
        })
    }
    fn split_by(self, groups: &[PartitionSet]) -> Vec<(usize, Msg)> {
        let mut pieces: Vec<Vec<(u64, u64)>> = vec![Vec::new(); groups.len()];
        for (id, key) in self.items() {
            let g = groups.iter().position(|g| g.contains_key(key));
            pieces[g.expect("groups cover the keys")].push((id, key));
        }
        let pieces = pieces
            .into_iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty());
        pieces
            .map(|(g, batch)| {
                (
                    g,
                    Msg {
                        batch,
                        ..self.clone()
                    },
                )
            })
            .collect()
    }
    fn split(self) -> Vec<Msg> {
        self.items()
            .into_iter()
            .map(|(id, key)| Msg {
                id,
                key,
                batch: Vec::new(),
                ..self.clone()
            })
            .collect()
    }
    fn edge(&self) -> EdgeId {
        self.edge
    }
    fn epoch(&self) -> Epoch {
        self.epoch
    }
    fn critical(&self) -> Option<CriticalMark> {
        self.critical
    }
}

type Part = BTreeMap<u64, Vec<u64>>;

/// Per key, the ids of the messages that ran on this instance, in run order.
struct SimState {
    keyed: bool,
    keys: Part,
}

impl PartialState for SimState {
    type Part = Part;
    fn take_partitions(&mut self, parts: PartitionSet) -> Part {
        let moving: Vec<u64> = self
            .keys
            .keys()
            .copied()
            .filter(|k| parts.contains_key(*k))
            .collect();
        moving
            .into_iter()
            .map(|k| (k, self.keys.remove(&k).unwrap()))
            .collect()
    }
    fn take_all(&mut self) -> Part {
        std::mem::take(&mut self.keys)
    }
    fn absorb(&mut self, part: Part) {
        for (k, mut ids) in part {
            let mine = self.keys.entry(k).or_default();
            // Keyed: a key lives on one instance at a time, so the incoming
            // part can never meet a key we hold.
            assert!(
                !self.keyed || mine.is_empty(),
                "key {k} on two instances at once"
            );
            mine.append(&mut ids);
        }
    }
}

const UPSTREAM: ShardId = 100;

enum Packet {
    Input(Msg),
    Mark(EdgeId, WatermarkMark),
    Wire(Wire<Msg, Part>),
}

/// What one lessee did, in order (for property 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Run(u64),
    Tick(u64),
    Retire,
}

/// What a schedule observed.
#[derive(Default)]
struct Log {
    runs: HashMap<u64, u32>,
    /// barrier -> ids the critical observed
    criticals: BTreeMap<Epoch, BTreeSet<u64>>,
    /// Per data id, the time of the next mark its sender sent after it.
    bounds: HashMap<u64, Time>,
    /// The watermark of the instance on each shard (a new lessee: 0).
    wm: HashMap<ShardId, Time>,
    /// The lessee on each shard.
    lease_on: HashMap<ShardId, LeaseId>,
    /// The last tick each instance ran.
    last_tick: HashMap<Instance, u64>,
    /// What each lessee did.
    lease_log: HashMap<LeaseId, Vec<Ev>>,
    /// The roster of each tick the lessor ran.
    rosters: BTreeMap<u64, Vec<LeaseId>>,
    /// A clock of deliveries: when each data id reached the lessor, when
    /// each tick was made (index: seq - 1).
    now: u64,
    arrived_at: HashMap<u64, u64>,
    tick_made_at: Vec<u64>,
}

struct Fx<'a> {
    from: ShardId,
    net: &'a mut BTreeMap<(ShardId, ShardId), VecDeque<Packet>>,
    log: &'a mut Log,
}

impl Effects<Msg, SimState> for Fx<'_> {
    fn run(&mut self, state: &mut SimState, msg: Msg) {
        assert!(msg.critical.is_none());
        let wm = self.log.wm.get(&self.from).copied().unwrap_or(0);
        let lease = self.log.lease_on.get(&self.from).copied();
        for (id, key) in msg.items() {
            *self.log.runs.entry(id).or_default() += 1;
            state.keys.entry(key).or_default().push(id);
            let bound = self.log.bounds.get(&id).copied().unwrap_or(Time::MAX);
            assert!(
                bound == Time::MAX || wm < bound,
                "6: message {id} ran at watermark {wm}, its sender's next mark is {bound}"
            );
            if let (Some(l), true) = (lease, self.from != 0) {
                self.log.lease_log.entry(l).or_default().push(Ev::Run(id));
            }
        }
    }
    fn tick(&mut self, _: &mut SimState, tick: Tick, from: Instance, roster: &[LeaseId]) {
        let last = self.log.last_tick.entry(from).or_default();
        assert!(
            tick.seq > *last,
            "7: {from:?} ran tick {} after {last}",
            tick.seq
        );
        *last = tick.seq;
        let wm = self.log.wm.entry(self.from).or_default();
        *wm = (*wm).max(tick.time);
        match from {
            Instance::Home => {
                self.log.rosters.insert(tick.seq, roster.to_vec());
                self.no_state_home_bound_without(tick.seq);
            }
            Instance::Lease(l) => {
                assert!(roster.is_empty());
                self.log
                    .lease_log
                    .entry(l)
                    .or_default()
                    .push(Ev::Tick(tick.seq));
            }
        }
    }
    fn retired(&mut self, lease: LeaseId) {
        self.log
            .lease_log
            .entry(lease)
            .or_default()
            .push(Ev::Retire);
    }
    fn run_critical(&mut self, state: &mut SimState, barrier: Epoch, msgs: Vec<Msg>) {
        assert!(msgs
            .iter()
            .all(|m| m.critical.map(|c| c.barrier) == Some(barrier)));
        let seen: BTreeSet<u64> = state.keys.values().flatten().copied().collect();
        assert!(
            self.log.criticals.insert(barrier, seen).is_none(),
            "barrier {barrier} ran twice"
        );
    }
    fn send(&mut self, to: ShardId, wire: Wire<Msg, Part>) {
        self.net
            .entry((self.from, to))
            .or_default()
            .push_back(Packet::Wire(wire));
    }
}

impl Fx<'_> {
    /// Property 9: when the lessor runs tick `seq`, no lessee's state
    /// holding messages from before the tick is on its way home (a
    /// `Consolidate` or `Released` in flight) unless that lessee ran this
    /// tick or a later one first: their timers must fire at the tick on
    /// one instance or the other, before the lessor's mark goes
    /// downstream.
    fn no_state_home_bound_without(&self, seq: u64) {
        for ((_, to), q) in self.net.iter() {
            if *to != 0 {
                continue;
            }
            for p in q {
                let (lease, state) = match p {
                    Packet::Wire(Wire::Consolidate { lease, state, .. })
                    | Packet::Wire(Wire::Released { lease, state }) => (lease, state),
                    _ => continue,
                };
                let evs = self.log.lease_log.get(lease).map_or(&[][..], Vec::as_slice);
                let ran = evs.iter().any(|e| matches!(e, Ev::Tick(j) if *j >= seq));
                // Did it run a message that came before the tick was made?
                let made = self
                    .log
                    .tick_made_at
                    .get(seq as usize - 1)
                    .copied()
                    .unwrap_or(0);
                let before = evs.iter().any(|e| {
                    matches!(e, Ev::Run(id) if self.log.arrived_at.get(id).is_some_and(|&a| a < made))
                });
                assert!(
                    state.is_empty() || ran || !before,
                    "9: the lessor runs tick {seq} while {lease:?}'s state comes home without \
                     it: {evs:?}"
                );
            }
        }
    }
}

/// What an upstream sender sends, in order.
enum Item {
    Msg(Msg),
    Mark(WatermarkMark),
}

/// One upstream sender: a FIFO channel into the lessor.
struct Sender {
    edge: EdgeId,
    script: VecDeque<Item>,
}

struct Schedule {
    strategy: Strategy,
    inputs: u16,
    senders: Vec<Sender>,
    /// On event time: the senders send marks.
    timed: bool,
    /// Per data id, the time of its sender's next mark after it.
    bounds: HashMap<u64, Time>,
    /// The minimum over the edges of their last marks.
    final_wm: Time,
    /// Every data message: (id, key, epoch, sender)
    data: Vec<(u64, u64, Epoch, usize)>,
    barriers: Epoch,
}

fn make_schedule(seed: u64) -> Schedule {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let strategy = match rng.gen_range(0..5) {
        0 | 1 => Strategy::Keyed,
        2 | 3 => Strategy::Mergeable,
        _ => Strategy::Sequential,
    };
    let inputs: u16 = rng.gen_range(1..=2);
    let per_edge: usize = rng.gen_range(1..=2);
    let barriers: Epoch = rng.gen_range(0..=4);
    let n_msgs: usize = rng.gen_range(5..=80);
    let keys_per_sender: u64 = rng.gen_range(1..=5);
    let n_senders = inputs as usize * per_edge;
    let mut scripts: Vec<VecDeque<Msg>> = (0..n_senders).map(|_| VecDeque::new()).collect();
    let mut data = Vec::new();
    let mut id = 0u64;
    // Spread messages over epochs; in each epoch each sender sends some.
    for epoch in 0..=barriers {
        let mut sent_on_edge = vec![0u64; inputs as usize];
        let in_epoch = n_msgs / (barriers as usize + 1) + rng.gen_range(0..3);
        for _ in 0..in_epoch {
            let s = rng.gen_range(0..n_senders);
            let edge = (s / per_edge) as EdgeId;
            // Keys belong to one sender, so per-key send order is defined.
            let key = s as u64 * 1000 + rng.gen_range(0..keys_per_sender);
            scripts[s].push_back(Msg {
                id,
                key,
                edge,
                epoch,
                critical: None,
                batch: Vec::new(),
            });
            data.push((id, key, epoch, s));
            sent_on_edge[edge as usize] += 1;
            id += 1;
        }
        if epoch < barriers {
            // Barrier epoch+1: one critical per edge, on a random sender of
            // that edge, announcing the edge's total for the epoch.
            for edge in 0..inputs {
                let s = edge as usize * per_edge + rng.gen_range(0..per_edge);
                let critical = Some(CriticalMark {
                    barrier: epoch + 1,
                    sent: sent_on_edge[edge as usize],
                });
                scripts[s].push_back(Msg {
                    id: u64::MAX,
                    key: 0,
                    edge,
                    epoch,
                    critical,
                    batch: Vec::new(),
                });
                // Every other sender of the edge moves to the next epoch too:
                // nothing to send for that, its later messages carry it.
            }
        }
    }
    // Some schedules send runs of a sender's data messages as batches.
    if rng.gen_bool(0.5) {
        for script in &mut scripts {
            *script = batched(std::mem::take(script), &mut rng);
        }
    }
    let timed = rng.gen_bool(0.7);
    let mut bounds = HashMap::new();
    let mut final_wm = 0;
    let senders = if timed {
        final_wm = Time::MAX;
        let mut senders = Vec::new();
        for (edge, chunk) in chunks(scripts, per_edge).into_iter().enumerate() {
            let (ss, last) = with_marks(edge as EdgeId, chunk, &mut bounds, &mut rng);
            senders.extend(ss);
            final_wm = final_wm.min(last);
        }
        senders
    } else {
        scripts
            .into_iter()
            .enumerate()
            .map(|(s, script)| Sender {
                edge: (s / per_edge) as EdgeId,
                script: script.into_iter().map(Item::Msg).collect(),
            })
            .collect()
    };
    Schedule {
        strategy,
        inputs,
        senders,
        timed,
        bounds,
        final_wm,
        data,
        barriers,
    }
}

fn chunks<T>(v: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    for (i, x) in v.into_iter().enumerate() {
        if i % n == 0 {
            out.push(Vec::new());
        }
        out.last_mut().expect("pushed").push(x);
    }
    out
}

/// One edge's senders as the instances of an upstream actor: the first
/// its home, the others leases, each named by the rosters of a run of its
/// ticks, marking the ticks it got and retiring if named past them; the
/// marks go among each sender's data at random. Fills each data id's
/// bound (the time of the next mark after it); returns the senders and
/// the edge's last mark.
fn with_marks(
    edge: EdgeId,
    scripts: Vec<VecDeque<Msg>>,
    bounds: &mut HashMap<u64, Time>,
    rng: &mut ChaCha8Rng,
) -> (Vec<Sender>, Time) {
    let n: u64 = rng.gen_range(1..=5);
    let mut t = 0;
    let mut times: Vec<Time> = (0..n)
        .map(|_| {
            t += rng.gen_range(1..=10);
            t
        })
        .collect();
    if rng.gen_bool(0.2) {
        times[n as usize - 1] = Time::MAX; // the upstream goes idle
    }
    let time = |k: u64| times[k as usize - 1];
    // Lease j (1..): named by ticks a..=c, got ticks a..=b.
    let runs: Vec<(u64, u64, u64)> = (1..scripts.len())
        .map(|_| {
            let a = rng.gen_range(1..=n);
            let b = rng.gen_range(a - 1..=n);
            (a, b, if b == n { n } else { b + 1 })
        })
        .collect();
    let roster = |k: u64| -> Vec<LeaseId> {
        (0..runs.len())
            .filter(|&j| runs[j].0 <= k && k <= runs[j].2)
            .map(|j| LeaseId(j as u32 + 1))
            .collect()
    };
    let mut senders = Vec::new();
    for (j, data) in scripts.into_iter().enumerate() {
        let (from, seqs, retire) = match j {
            0 => (Instance::Home, 1..=n, None),
            j => {
                let (a, b, c) = runs[j - 1];
                let retire = (c > b).then_some(c);
                (Instance::Lease(LeaseId(j as u32)), a..=b, retire)
            }
        };
        let marks: VecDeque<WatermarkMark> = seqs
            .map(|k| WatermarkMark {
                from,
                seq: k,
                time: time(k),
                idle: false,
                roster: if j == 0 { roster(k) } else { Vec::new() },
            })
            .collect();
        let mut script = interleave(data, marks, rng);
        if retire.is_some() {
            script.push_back(Item::Mark(WatermarkMark {
                from,
                seq: RETIRED,
                time: 0,
                idle: false,
                roster: Vec::new(),
            }));
        }
        let mut next = Time::MAX;
        for item in script.iter().rev() {
            match item {
                Item::Mark(m) if m.seq == RETIRED => next = time(retire.expect("retires")),
                Item::Mark(m) => next = m.time,
                Item::Msg(m) if m.critical.is_none() => {
                    bounds.extend(m.items().into_iter().map(|(id, _)| (id, next)));
                }
                Item::Msg(_) => {}
            }
        }
        senders.push(Sender { edge, script });
    }
    (senders, time(n))
}

/// `a` and `b` merged at random, each in its order.
fn interleave(
    mut a: VecDeque<Msg>,
    mut b: VecDeque<WatermarkMark>,
    rng: &mut ChaCha8Rng,
) -> VecDeque<Item> {
    let mut out = VecDeque::with_capacity(a.len() + b.len());
    while !a.is_empty() || !b.is_empty() {
        let take_a =
            b.is_empty() || (!a.is_empty() && rng.gen_range(0..a.len() + b.len()) < a.len());
        match take_a {
            true => out.push_back(Item::Msg(a.pop_front().expect("non-empty"))),
            false => out.push_back(Item::Mark(b.pop_front().expect("non-empty"))),
        }
    }
    out
}

/// `script` with runs of consecutive data messages (one sender: one edge,
/// and the same epoch until its next critical) merged into batches of 1
/// to 6, in order.
fn batched(script: VecDeque<Msg>, rng: &mut ChaCha8Rng) -> VecDeque<Msg> {
    let mut out = VecDeque::new();
    let mut run: Vec<Msg> = Vec::new();
    let flush = |run: &mut Vec<Msg>, out: &mut VecDeque<Msg>| match run.len() {
        0 => {}
        1 => out.push_back(run.pop().expect("one")),
        _ => {
            let first = run[0].clone();
            let batch = run.drain(..).map(|m| (m.id, m.key)).collect();
            out.push_back(Msg { batch, ..first });
        }
    };
    let mut size = rng.gen_range(1..=6);
    for m in script {
        let joins = m.critical.is_none() && run.first().is_none_or(|f| f.epoch == m.epoch);
        if !joins || run.len() == size {
            flush(&mut run, &mut out);
            size = rng.gen_range(1..=6);
        }
        if m.critical.is_some() {
            out.push_back(m);
        } else {
            run.push(m);
        }
    }
    flush(&mut run, &mut out);
    out
}

struct World {
    net: BTreeMap<(ShardId, ShardId), VecDeque<Packet>>,
    log: Log,
    lessor: Lessor<Msg, SimState>,
    lessees: BTreeMap<ShardId, BTreeMap<LeaseId, Lessee<Msg, SimState>>>,
}

impl World {
    fn fx(&mut self, from: ShardId) -> (Fx<'_>, &mut Lessor<Msg, SimState>) {
        (
            Fx {
                from,
                net: &mut self.net,
                log: &mut self.log,
            },
            &mut self.lessor,
        )
    }

    /// Deliver the head packet of channel (from, to).
    fn deliver(&mut self, from: ShardId, to: ShardId, accept_lease: bool, keyed: bool) {
        let pkt = self
            .net
            .get_mut(&(from, to))
            .and_then(|q| q.pop_front())
            .expect("non-empty");
        match pkt {
            Packet::Input(m) => {
                self.log.now += 1;
                if m.critical.is_none() {
                    let now = self.log.now;
                    self.log
                        .arrived_at
                        .extend(m.items().into_iter().map(|(id, _)| (id, now)));
                }
                let (mut fx, lessor) = self.fx(0);
                lessor.on_input(m, &mut fx);
            }
            Packet::Mark(edge, mark) => {
                self.log.now += 1;
                let (mut fx, lessor) = self.fx(0);
                let before = lessor.stats().ticks;
                lessor.on_watermark(edge, mark, &mut fx);
                let made = lessor.stats().ticks - before;
                let now = self.log.now;
                self.log.tick_made_at.extend((0..made).map(|_| now));
            }
            Packet::Wire(w) if to == 0 => {
                let (mut fx, lessor) = self.fx(0);
                lessor.on_wire(w, &mut fx);
            }
            Packet::Wire(Wire::LeaseRequest { lease, lessor, .. }) => {
                let mut fx = Fx {
                    from: to,
                    net: &mut self.net,
                    log: &mut self.log,
                };
                if accept_lease {
                    fx.log.wm.insert(to, 0);
                    fx.log.lease_on.insert(to, lease);
                    let l = Lessee::accept(
                        lease,
                        lessor,
                        SimState {
                            keyed,
                            keys: Part::new(),
                        },
                        &mut fx,
                    );
                    self.lessees.entry(to).or_default().insert(lease, l);
                } else {
                    Lessee::<Msg, SimState>::refuse(lease, lessor, &mut fx);
                }
            }
            Packet::Wire(w) => {
                let lease = w.lease();
                let l = self
                    .lessees
                    .get_mut(&to)
                    .and_then(|m| m.get_mut(&lease))
                    .unwrap_or_else(|| {
                        panic!("message for missing lessee {lease:?} on shard {to}")
                    });
                l.on_wire(w);
            }
        }
    }
}

fn run_schedule(seed: u64) -> dirigo_engine::protocol::LessorStats {
    let mut sched = make_schedule(seed);
    let keyed = sched.strategy == Strategy::Keyed;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut world = World {
        net: BTreeMap::new(),
        log: Log::default(),
        lessor: {
            let state = SimState {
                keyed,
                keys: Part::new(),
            };
            let l = Lessor::new(0, sched.strategy, sched.inputs, state);
            if sched.timed {
                l.timed()
            } else {
                l
            }
        },
        lessees: BTreeMap::new(),
    };
    world.log.bounds = std::mem::take(&mut sched.bounds);
    let mut senders = std::mem::take(&mut sched.senders);
    let churn: f64 = rng.gen_range(0.0..1.0);
    let mut draining = false;
    let mut steps = 0u64;
    // Half the schedules start with lessees asked for on some shards.
    if rng.gen_bool(0.5) {
        let (mut fx, lessor) = world.fx(0);
        for shard in 1..=rng.gen_range(1..=3) {
            lessor.request_lease(shard, &mut fx);
        }
    }
    loop {
        steps += 1;
        assert!(steps < 1_000_000, "seed {seed}: no progress");
        // Enabled actions.
        let sending: Vec<usize> = (0..senders.len())
            .filter(|&s| !senders[s].script.is_empty())
            .collect();
        let chans: Vec<(ShardId, ShardId)> = world
            .net
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        let lessor_work = world.lessor.has_work();
        let lessee_work: Vec<(ShardId, LeaseId)> = world
            .lessees
            .iter()
            .flat_map(|(s, m)| {
                m.iter()
                    .filter(|(_, l)| l.has_work())
                    .map(move |(id, _)| (*s, *id))
            })
            .collect();
        if sending.is_empty() && chans.is_empty() && !lessor_work && lessee_work.is_empty() {
            if draining
                || world.lessor.lessee_count() == 0 && world.lessees.values().all(|m| m.is_empty())
            {
                break;
            }
            // Final: revoke every lessee so all state comes home.
            draining = true;
            let leases: Vec<LeaseId> = world.lessor.lessee_shards().map(|(l, _)| l).collect();
            let (mut fx, lessor) = world.fx(0);
            for l in leases {
                lessor.revoke(l, &mut fx);
            }
            continue;
        }
        let pick = rng.gen_range(0..100);
        if pick < 15 && !draining && rng.gen_bool(churn) {
            // Churn: lease, revoke, or a lessee asks to leave.
            let (mut fx, lessor) = world.fx(0);
            match rng.gen_range(0..4) {
                0 | 3 => {
                    lessor.request_lease(rng.gen_range(1..=3), &mut fx);
                }
                1 => {
                    let leases: Vec<LeaseId> = lessor.lessee_shards().map(|(l, _)| l).collect();
                    if !leases.is_empty() {
                        lessor.revoke(leases[rng.gen_range(0..leases.len())], &mut fx);
                    }
                }
                _ => {
                    let all: Vec<(ShardId, LeaseId)> = world
                        .lessees
                        .iter()
                        .flat_map(|(s, m)| m.keys().map(move |l| (*s, *l)))
                        .collect();
                    if !all.is_empty() {
                        let (s, l) = all[rng.gen_range(0..all.len())];
                        let mut fx = Fx {
                            from: s,
                            net: &mut world.net,
                            log: &mut world.log,
                        };
                        world
                            .lessees
                            .get_mut(&s)
                            .unwrap()
                            .get_mut(&l)
                            .unwrap()
                            .request_release(&mut fx);
                    }
                }
            }
            continue;
        }
        let total = sending.len() + chans.len() + lessor_work as usize + lessee_work.len();
        if total == 0 {
            continue;
        }
        let mut k = rng.gen_range(0..total);
        if k < sending.len() {
            let s = sending[k];
            let pkt = match senders[s].script.pop_front().unwrap() {
                Item::Msg(m) => Packet::Input(m),
                Item::Mark(m) => Packet::Mark(senders[s].edge, m),
            };
            world
                .net
                .entry((UPSTREAM + s as ShardId, 0))
                .or_default()
                .push_back(pkt);
            continue;
        }
        k -= sending.len();
        if k < chans.len() {
            let (from, to) = chans[k];
            let accept = rng.gen_bool(0.8);
            world.deliver(from, to, accept, keyed);
            continue;
        }
        k -= chans.len();
        if lessor_work && k == 0 {
            let (mut fx, lessor) = world.fx(0);
            lessor.step(&mut fx);
            continue;
        }
        k -= lessor_work as usize;
        let (s, l) = lessee_work[k];
        let mut fx = Fx {
            from: s,
            net: &mut world.net,
            log: &mut world.log,
        };
        let lessee = world.lessees.get_mut(&s).unwrap().get_mut(&l).unwrap();
        lessee.step(&mut fx);
        if lessee.is_finished() {
            world.lessees.get_mut(&s).unwrap().remove(&l);
        }
    }

    // ---- Checks ----
    let ctx = format!(
        "seed {seed} ({:?}, {} inputs)",
        sched.strategy, sched.inputs
    );
    // 4. every barrier completed, every lessee gone, lessor runnable.
    assert_eq!(
        world.lessor.mode(),
        LessorMode::Runnable,
        "{ctx}: lessor stuck"
    );
    assert_eq!(
        world.lessor.epoch(),
        sched.barriers,
        "{ctx}: barriers completed"
    );
    assert_eq!(
        world.lessor.lessee_count(),
        0,
        "{ctx}: lessees left at the lessor"
    );
    assert!(
        world.lessees.values().all(|m| m.is_empty()),
        "{ctx}: lessee instances left"
    );
    // 2. exactly once.
    for (id, ..) in &sched.data {
        assert_eq!(
            world.log.runs.get(id).copied().unwrap_or(0),
            1,
            "{ctx}: message {id} ran wrong count"
        );
    }
    assert_eq!(
        world.log.runs.len(),
        sched.data.len(),
        "{ctx}: unknown messages ran"
    );
    // 1. each critical saw exactly the earlier epochs.
    for b in 1..=sched.barriers {
        let want: BTreeSet<u64> = sched.data.iter().filter(|d| d.2 < b).map(|d| d.0).collect();
        let got = world
            .log
            .criticals
            .get(&b)
            .unwrap_or_else(|| panic!("{ctx}: barrier {b} never ran"));
        assert_eq!(got, &want, "{ctx}: critical {b} saw the wrong cut");
    }
    // 3 + 5. final state equals a sequential run: per key, send order
    // (Keyed, Sequential) or the same multiset (Mergeable).
    let mut oracle: Part = BTreeMap::new();
    for (id, key, ..) in &sched.data {
        oracle.entry(*key).or_default().push(*id);
    }
    let mut got = world.lessor.state().keys.clone();
    if sched.strategy == Strategy::Mergeable {
        got.values_mut().for_each(|v| v.sort_unstable());
    }
    assert_eq!(
        got, oracle,
        "{ctx}: final state differs from the sequential run"
    );
    if sched.timed {
        check_watermarks(&world, &sched, &ctx);
    }
    world.lessor.stats()
}

/// Properties 7 and 8 (6 is checked at each run).
fn check_watermarks(world: &World, sched: &Schedule, ctx: &str) {
    let log = &world.log;
    let ticks = world.lessor.stats().ticks;
    assert_eq!(
        world.lessor.watermark(),
        sched.final_wm,
        "{ctx}: 7: the watermark ends at the edges' minimum"
    );
    assert_eq!(
        log.last_tick.get(&Instance::Home).copied().unwrap_or(0),
        ticks,
        "{ctx}: 7: the lessor ran every tick"
    );
    assert_eq!(
        log.rosters.len() as u64,
        ticks,
        "{ctx}: 7: one run per tick"
    );
    for (lease, evs) in &log.lease_log {
        for (p, ev) in evs.iter().enumerate() {
            let Ev::Run(id) = ev else { continue };
            // The first tick made after the message reached the lessor:
            // downstream must not complete it without the message's
            // outputs. It completes ticks in order, each once every
            // lease of its roster marked it (or later) or retired.
            let arrived = log.arrived_at[id];
            let Some(k0) = (1..=ticks).find(|k| log.tick_made_at[*k as usize - 1] > arrived) else {
                continue;
            };
            let before = evs[..p]
                .iter()
                .filter_map(|e| match e {
                    Ev::Tick(j) => Some(*j),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            let after = evs[p..].iter().find_map(|e| match e {
                Ev::Tick(j) => Some(*j),
                Ev::Retire => Some(u64::MAX),
                Ev::Run(_) => None,
            });
            let after = after.unwrap_or_else(|| {
                panic!("{ctx}: 8: {lease:?} ran {id}, then neither marked a tick nor retired")
            });
            let held_back = (before + 1..=k0.min(after)).any(|k| log.rosters[&k].contains(lease));
            assert!(
                held_back,
                "{ctx}: 8: {lease:?} ran {id} (first tick made after it: {k0}; its marks around \
                 it: {before} and {after}); no roster between names it: {:?}",
                log.rosters
            );
        }
    }
}

fn schedules() -> u64 {
    std::env::var("DIRIGO_SIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn protocol_simulation_holds_the_nine_properties() {
    if let Some(seed) = std::env::var("DIRIGO_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        run_schedule(seed);
        return;
    }
    let n = schedules();
    let mut total = dirigo_engine::protocol::LessorStats::default();
    for seed in 0..n {
        match std::panic::catch_unwind(|| run_schedule(seed)) {
            Ok(s) => {
                total.leases_granted += s.leases_granted;
                total.leases_refused += s.leases_refused;
                total.revokes += s.revokes;
                total.barriers += s.barriers;
                total.forwarded += s.forwarded;
                total.run_local += s.run_local;
                total.ticks += s.ticks;
            }
            Err(_) => panic!("schedule failed: rerun with DIRIGO_SIM_SEED={seed}"),
        }
    }
    println!("protocol simulation: {n} schedules passed; {total:?}");
    // The schedules must actually exercise the protocol.
    assert!(total.leases_granted > n && total.revokes > n / 2 && total.forwarded > n * 3);
    assert!(total.barriers > n);
    assert!(total.ticks > n, "the schedules make ticks");
}
