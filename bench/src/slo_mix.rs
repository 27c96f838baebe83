//! The `slo-mix` scenario: latency-critical apps with SLOs and bursty
//! arrivals sharing a node's cores with heavy best-effort apps, run under
//! several scheduling/scaling configurations with the same seeded arrivals
//! (the bench binary is `src/bin/slo_mix.rs`; this module is its library:
//! workload, placement, load generation, one run, results, output files).
//!
//! # Workload
//!
//! - Latency-critical (LC) apps: `events -> parse -> score -> out`. `parse`
//!   is stateless (`Merged` window count), `score` keeps per-account running
//!   statistics (`Keyed`, reset at each window close). Both spin for a set
//!   number of microseconds per message. Arrivals are open-loop on/off
//!   bursts ([`crate::load::Shape`]): `burst` times the mean rate during
//!   `on`, less during `off`, the mean kept; each LC app's bursts are phase
//!   shifted so that they do not all hit at once.
//! - Best-effort (BE) apps: `events -> enrich -> out`, `enrich` `Keyed`,
//!   steady open-loop arrivals, heavy enough that an LC burst plus the BE
//!   work on the same shard is more than its core can do.
//!
//! # Placement
//!
//! The engine chooses an operator's home shard by hashing (app name,
//! operator index) (`dirigo_engine::home_shard`); it has no API to pin homes.
//! We choose app names so that every node of LC app `i` is homed on shard
//! `i % shards` and every node of BE app `j` on shard `j % shards`: each LC
//! home shard also carries a BE app, so the contention is real. The search
//! uses [`predicted_home`] (the engine's own formula), and every run
//! checks it for the nodes that run (operators and sink): the lessor runs
//! (runs minus lessee runs) of each app must all be on its intended shard
//! ([`AppResult::placement_ok`]). A source's home (the shard that ingests
//! its events) does not show in the stats, so it rests on the engine's
//! formula alone.
//!
//! # Interference
//!
//! The bench shares the machine's cores with its own generator and main
//! threads and with any other process. Each run reports the generator's
//! worst lateness and the CPU time of this process and of all others
//! during the load window (from `/proc`), so a run disturbed by something
//! else on the machine shows as such.
//!
//! # Arrivals
//!
//! One generator thread (the machine has few cores) ticks every millisecond
//! and sends each app the events due at that tick, computed from the tick
//! index alone (not from the wall clock), so every configuration sees the
//! same number of events at the same offsets, with the same keys (one
//! ChaCha8 stream per app from `--seed`). Batches a source refuses
//! (backpressure) are counted as shed, never retried.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use dirigo_engine::{
    key_hash, App, AppBuilder, AppClass, AppStats, AutoScale, Barrier, BarrierKind, Context,
    Dirigo, Edf, Fifo, Function, Keyed, Llf, Merged, Node, NodeConfig, NodeStats, Placement,
    PolicyFactory, SourceHandle,
};
use hdrhistogram::serialization::{Serializer, V2Serializer};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::apps::spin_work;
use crate::load::{LoadReport, Shape};

/// Errors of a bench run (engine errors, I/O, a panicked generator).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------

/// The configurations compared, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Config {
    /// FIFO, static placement, no scaling: the paper's baseline.
    FifoStatic,
    /// FIFO with the backlog scale rule.
    FifoScaling,
    /// Earliest deadline first, backlog scale rule.
    Edf,
    /// Least laxity first, backlog scale rule.
    Llf,
    /// Dirigo's policy (laxity ranks, LC before BE, laxity-driven leases).
    Dirigo,
}

impl Config {
    pub const ALL: [Config; 5] = [
        Config::FifoStatic,
        Config::FifoScaling,
        Config::Edf,
        Config::Llf,
        Config::Dirigo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Config::FifoStatic => "fifo-static",
            Config::FifoScaling => "fifo-scaling",
            Config::Edf => "edf",
            Config::Llf => "llf",
            Config::Dirigo => "dirigo",
        }
    }

    /// The node configuration: everything at the engine's defaults but the
    /// policy and whether autoscaling is on.
    pub fn node_config(self, shards: usize, placement: Placement) -> NodeConfig {
        let base = NodeConfig {
            shards,
            placement,
            ..Default::default()
        };
        match self {
            Config::FifoStatic => NodeConfig {
                policy: PolicyFactory::per_shard(Fifo::fixed),
                autoscale: AutoScale {
                    enabled: false,
                    ..Default::default()
                },
                ..base
            },
            Config::FifoScaling => NodeConfig {
                policy: PolicyFactory::per_shard(Fifo::scaling),
                ..base
            },
            Config::Edf => NodeConfig {
                policy: PolicyFactory::per_shard(Edf::default),
                ..base
            },
            Config::Llf => NodeConfig {
                policy: PolicyFactory::per_shard(Llf::default),
                ..base
            },
            Config::Dirigo => NodeConfig {
                policy: PolicyFactory::per_shard(Dirigo::default),
                ..base
            },
        }
    }
}

// ---------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------

/// An on/off shape whose first burst starts at `first_burst` (a
/// [`Shape`]'s own bursts start at 0).
#[derive(Clone, Copy, Debug)]
pub struct Arrivals {
    pub shape: Shape,
    pub first_burst: Duration,
}

impl Arrivals {
    /// Events per second at `t` since the start.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let period = (self.shape.on + self.shape.off).as_nanos();
        if period == 0 {
            return self.shape.rate_at(t);
        }
        let shift = self.first_burst.as_nanos() % period;
        let phase = (t.as_nanos() + period - shift) % period;
        self.shape
            .rate_at(Duration::from_nanos(u64::try_from(phase).unwrap_or(0)))
    }

    /// The highest rate of the shape.
    pub fn peak(&self) -> f64 {
        let (on, off) = (
            self.rate_at(self.first_burst),
            self.rate_at(self.first_burst + self.shape.on),
        );
        on.max(off)
    }
}

/// What an app is.
#[derive(Clone, Debug)]
pub enum AppKind {
    /// `parse` then `score`, µs of work each, and the SLO.
    LatencyCritical {
        slo: Duration,
        parse_us: u64,
        score_us: u64,
    },
    /// `enrich`, µs of work.
    BestEffort { work_us: u64 },
}

/// One app of the workload.
#[derive(Clone, Debug)]
pub struct AppSpec {
    /// Deployed name (chosen by [`placed_name`]).
    pub name: String,
    pub kind: AppKind,
    pub arrivals: Arrivals,
    /// The shard every node of the app is homed on.
    pub home: usize,
    /// Distinct keys (accounts) the events are spread over.
    pub keys: u32,
}

impl AppSpec {
    pub fn class(&self) -> AppClass {
        match self.kind {
            AppKind::LatencyCritical { .. } => AppClass::LatencyCritical,
            AppKind::BestEffort { .. } => AppClass::BestEffort,
        }
    }

    /// The SLO (LC apps only).
    pub fn slo(&self) -> Option<Duration> {
        match self.kind {
            AppKind::LatencyCritical { slo, .. } => Some(slo),
            AppKind::BestEffort { .. } => None,
        }
    }

    /// Nominal work per event over the whole DAG (spin time only), µs.
    pub fn work_us(&self) -> u64 {
        match self.kind {
            AppKind::LatencyCritical {
                parse_us, score_us, ..
            } => parse_us + score_us,
            AppKind::BestEffort { work_us } => work_us,
        }
    }

    /// Nodes in the app's DAG (sources, operators, sinks).
    pub fn nodes(&self) -> usize {
        match self.kind {
            AppKind::LatencyCritical { .. } => 4,
            AppKind::BestEffort { .. } => 3,
        }
    }

    /// The app, built (its sink's receiver is dropped: the engine counts
    /// deliveries, latency and SLO satisfaction at the sink itself).
    pub fn build(&self) -> dirigo_engine::Result<App> {
        match self.kind {
            AppKind::LatencyCritical {
                slo,
                parse_us,
                score_us,
            } => {
                let mut b = AppBuilder::new(&self.name).slo(slo);
                let events = b.source::<Event>("events");
                let parsed = b.operator("parse", Parse { work_us: parse_us }, &[events]);
                let scored = b.operator("score", Score { work_us: score_us }, &[parsed]);
                let _ = b.sink("out", scored);
                b.build()
            }
            AppKind::BestEffort { work_us } => {
                let mut b = AppBuilder::new(&self.name).best_effort();
                let events = b.source::<Event>("events");
                let enriched = b.operator("enrich", Score { work_us }, &[events]);
                let _ = b.sink("out", enriched);
                b.build()
            }
        }
    }
}

/// Everything one run needs; the same for every configuration.
#[derive(Clone, Debug)]
pub struct Workload {
    pub shards: usize,
    pub placement: Placement,
    pub duration: Duration,
    pub seed: u64,
    /// Window barriers (critical messages) every this long, if any.
    pub window: Option<Duration>,
    /// Stats are sampled this often for the timeline.
    pub sample: Duration,
    /// How long to wait for the backlog to drain after the load stops.
    pub drain: Duration,
    pub apps: Vec<AppSpec>,
}

/// Nominal core demand of the arrival schedule (spin work only; the
/// engine's own per-message cost is not in it), sampled every millisecond.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Demand {
    pub mean_cores: f64,
    pub peak_cores: f64,
}

impl Workload {
    pub fn demand(&self) -> Demand {
        let ms = self.duration.as_millis().max(1) as u64;
        let (mut sum, mut peak) = (0.0f64, 0.0f64);
        for i in 0..ms {
            let t = Duration::from_millis(i);
            let cores: f64 = self
                .apps
                .iter()
                .map(|a| a.arrivals.rate_at(t) * a.work_us() as f64 * 1e-6)
                .sum();
            sum += cores;
            peak = peak.max(cores);
        }
        Demand {
            mean_cores: sum / ms as f64,
            peak_cores: peak,
        }
    }

    /// Rename every app (its current name is the base) so that all its
    /// nodes are homed on its `home` shard; see [`placed_name`]. Returns the
    /// apps no name was found for: they keep their name, the engine decides
    /// (and the runs report where their lessors ran).
    pub fn place(&mut self) -> Vec<String> {
        let mut unplaced = Vec::new();
        for a in &mut self.apps {
            match placed_name(&a.name, a.nodes(), self.shards, a.home) {
                Some(n) => a.name = n,
                None => unplaced.push(a.name.clone()),
            }
        }
        unplaced
    }

    /// Cores a static placement sized for the bursts keeps for the whole
    /// run: enough for the peak nominal demand, and at least the shards
    /// this bench runs on.
    pub fn static_cores(&self) -> usize {
        (self.demand().peak_cores.ceil() as usize).max(self.shards)
    }
}

// ---------------------------------------------------------------------
// Placement
// ---------------------------------------------------------------------

/// The home shard the engine gives node `node` of app `app` on a node of
/// `shards` shards ([`dirigo_engine::home_shard`]). Runs check it against
/// where lessors actually ran.
pub fn predicted_home(app: &str, node: usize, shards: usize) -> usize {
    usize::from(dirigo_engine::home_shard(app, node, shards))
}

/// Most names tried by [`placed_name`].
const NAME_TRIES: usize = 1 << 20;

/// `base`, or `base-k` for the smallest `k`, such that all `nodes` nodes of
/// an app of that name are homed on `home`. `None` if no name within
/// [`NAME_TRIES`] does (many shards, many nodes).
pub fn placed_name(base: &str, nodes: usize, shards: usize, home: usize) -> Option<String> {
    (0..NAME_TRIES)
        .map(|k| {
            if k == 0 {
                base.to_owned()
            } else {
                format!("{base}-{k}")
            }
        })
        .find(|name| (0..nodes).all(|i| predicted_home(name, i, shards) == home))
}

// ---------------------------------------------------------------------
// The functions
// ---------------------------------------------------------------------

/// An input event: a transaction of an account.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: u64,
    pub account: u32,
    pub amount: f64,
}

/// A scored event.
#[derive(Clone, Debug)]
pub struct Scored {
    pub id: u64,
    pub z: f64,
}

/// Stateless parsing (the window count is its only state).
struct Parse {
    work_us: u64,
}

impl Function for Parse {
    type In = Event;
    type Out = Event;
    type State = Merged<u64>;
    fn on_message(&self, st: &mut Merged<u64>, key: u64, e: Event, ctx: &mut Context<'_, Event>) {
        spin_work(self.work_us);
        st.0 += 1;
        ctx.emit(key, e);
    }
    fn on_critical(&self, st: &mut Merged<u64>, b: &Barrier, _: u16, _: &mut Context<'_, Event>) {
        if b.kind == BarrierKind::WindowClose {
            st.0 = 0;
        }
    }
}

#[derive(Default)]
struct Account {
    n: u64,
    sum: f64,
    sumsq: f64,
}

/// Per-account running statistics over the window; emits the event's
/// z-score. Used as LC `score` and BE `enrich`.
struct Score {
    work_us: u64,
}

impl Function for Score {
    type In = Event;
    type Out = Scored;
    type State = Keyed<Account>;
    fn on_message(
        &self,
        st: &mut Keyed<Account>,
        key: u64,
        e: Event,
        ctx: &mut Context<'_, Scored>,
    ) {
        spin_work(self.work_us);
        let a = st.entry(key);
        a.n += 1;
        a.sum += e.amount;
        a.sumsq += e.amount * e.amount;
        let n = a.n as f64;
        let mean = a.sum / n;
        let sd = (a.sumsq / n - mean * mean).max(0.0).sqrt();
        let z = if sd > 0.0 {
            (e.amount - mean) / sd
        } else {
            0.0
        };
        ctx.emit(key, Scored { id: e.id, z });
    }
    /// Tumbling windows: the statistics restart at each window close.
    fn on_critical(
        &self,
        st: &mut Keyed<Account>,
        b: &Barrier,
        _: u16,
        _: &mut Context<'_, Scored>,
    ) {
        if b.kind == BarrierKind::WindowClose {
            st.drain().for_each(drop);
        }
    }
}

// ---------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------

struct Feed {
    src: SourceHandle<Event>,
    arrivals: Arrivals,
    rng: ChaCha8Rng,
    keys: u32,
    due: f64,
    next_id: u64,
    report: LoadReport,
}

/// What the generator thread did.
struct GenReport {
    per_app: Vec<LoadReport>,
    /// Worst lateness of a tick (the thread did not get a core in time).
    max_lag: Duration,
}

/// Send every app its events, one batch per app per millisecond tick, the
/// count due at tick `i` a function of `i` alone.
fn generate(mut feeds: Vec<Feed>, duration: Duration, start: Instant) -> GenReport {
    let ticks = duration.as_millis() as u64;
    let mut max_lag = Duration::ZERO;
    for i in 0..ticks {
        let t = Duration::from_millis(i);
        let at = start + t;
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        } else {
            max_lag = max_lag.max(now - at);
        }
        for f in feeds.iter_mut() {
            f.due += f.arrivals.rate_at(t) * 1e-3;
            let k = f.due.floor();
            f.due -= k;
            let k = k as usize;
            if k == 0 {
                continue;
            }
            let batch: Vec<(u64, Event)> = (0..k)
                .map(|_| {
                    f.next_id += 1;
                    let account = f.rng.gen_range(0..f.keys.max(1));
                    let e = Event {
                        id: f.next_id,
                        account,
                        amount: f.rng.gen::<f64>() * 100.0,
                    };
                    (key_hash(&account.to_le_bytes()), e)
                })
                .collect();
            match f.src.try_send_batch(batch) {
                Ok(()) => f.report.sent += k as u64,
                Err(r) => f.report.shed += r.events.len() as u64,
            }
        }
    }
    GenReport {
        per_app: feeds.iter().map(|f| f.report).collect(),
        max_lag,
    }
}

/// Seed of app `i`'s key stream.
fn app_seed(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

// ---------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------

/// One app's figures in one configuration.
#[derive(Clone, Debug)]
pub struct AppResult {
    pub name: String,
    pub class: AppClass,
    pub slo_ms: Option<f64>,
    pub home: usize,
    pub sent: u64,
    pub shed: u64,
    /// Outputs delivered at the sink, after the drain (every accepted event
    /// gives one output, plus none from windows).
    pub delivered: u64,
    pub within_slo: u64,
    /// Delivered within SLO over delivered (`AppStats::satisfaction`).
    pub satisfaction: f64,
    /// Within SLO over delivered + shed: shed events count as misses.
    pub satisfaction_incl_shed: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub queue_p99_ms: f64,
    /// Outputs delivered during the load window, per second of it.
    pub throughput: f64,
    pub runs: u64,
    pub lessee_runs: u64,
    pub leases: u64,
    pub revokes: u64,
    /// Lessee-time during the load window over the window.
    pub mean_lessees: f64,
    /// Lessees still hosted after the drain and a settle pause.
    pub lessees_left: usize,
    /// Lessor runs (runs minus lessee runs) per shard.
    pub lessor_runs: Vec<u64>,
    /// Every lessor run was on `home`.
    pub placement_ok: bool,
    pub latency: Histogram<u64>,
}

/// One configuration's run.
#[derive(Clone, Debug)]
pub struct ConfigResult {
    pub config: Config,
    pub policy: String,
    pub autoscale: bool,
    /// The load window, s (start of load to the stats read after it).
    pub window_s: f64,
    /// Drain time after the window, s.
    pub drain_s: f64,
    pub drained: bool,
    /// Busy core-seconds during the load window, per shard.
    pub busy_per_shard: Vec<f64>,
    pub busy_core_s: f64,
    /// What a static placement sized for the bursts reserves over the same
    /// window: `Workload::static_cores() × window`.
    pub static_core_s: f64,
    pub shed: u64,
    pub gen_max_lag_ms: f64,
    /// CPU core-seconds of this whole process (shards, generator, main
    /// thread, spinning included) during the window, and of every other
    /// process on the machine (interference), from `/proc`.
    pub process_cpu_s: Option<f64>,
    pub other_cpu_s: Option<f64>,
    /// Window barriers injected, and why they stopped early, if they did.
    pub windows: u64,
    pub barrier_error: Option<String>,
    pub apps: Vec<AppResult>,
    pub timeline: Vec<Sample>,
}

impl ConfigResult {
    /// Latency-critical outputs within SLO over LC outputs (all LC apps).
    pub fn lc_satisfaction(&self) -> f64 {
        let (w, d) = self
            .apps
            .iter()
            .filter(|a| a.class == AppClass::LatencyCritical)
            .fold((0u64, 0u64), |(w, d), a| {
                (w + a.within_slo, d + a.delivered)
            });
        if d == 0 {
            1.0
        } else {
            w as f64 / d as f64
        }
    }

    /// The worst LC app's satisfaction.
    pub fn lc_min_satisfaction(&self) -> f64 {
        self.apps
            .iter()
            .filter(|a| a.class == AppClass::LatencyCritical)
            .map(|a| a.satisfaction)
            .fold(1.0, f64::min)
    }

    /// Best-effort outputs per second during the window (all BE apps).
    pub fn be_throughput(&self) -> f64 {
        self.apps
            .iter()
            .filter(|a| a.class == AppClass::BestEffort)
            .map(|a| a.throughput)
            .sum()
    }

    pub fn placement_ok(&self) -> bool {
        self.apps.iter().all(|a| a.placement_ok)
    }
}

/// One stats sample of the timeline (cumulative figures at `t_s`).
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub t_s: f64,
    pub busy_ns: u64,
    /// Per app, in workload order: (delivered, within SLO, lessees hosted).
    pub apps: Vec<(u64, u64, usize)>,
}

impl Sample {
    fn take(t: Duration, stats: &NodeStats, apps: &[AppSpec]) -> Sample {
        Sample {
            t_s: t.as_secs_f64(),
            busy_ns: stats.busy_ns(),
            apps: apps
                .iter()
                .map(|a| {
                    stats
                        .app(&a.name)
                        .map_or((0, 0, 0), |s| (s.delivered, s.within_slo, s.lessees))
                })
                .collect(),
        }
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn app_result(
    spec: &AppSpec,
    load: LoadReport,
    window: &NodeStats,
    fin: &NodeStats,
    window_ns: u64,
) -> AppResult {
    let empty = placeholder_stats();
    let a = fin.app(&spec.name).unwrap_or(&empty);
    let w = window.app(&spec.name).unwrap_or(&empty);
    let lessor_runs: Vec<u64> = fin
        .shards
        .iter()
        .map(|s| {
            s.apps
                .values()
                .find(|x| x.name == spec.name)
                .map_or(0, |x| x.runs - x.lessee_runs)
        })
        .collect();
    let placement_ok = lessor_runs
        .iter()
        .enumerate()
        .all(|(s, &r)| s == spec.home || r == 0);
    let q = |h: &Histogram<u64>, p: f64| {
        if h.is_empty() {
            0.0
        } else {
            ms(h.value_at_quantile(p))
        }
    };
    let misses_base = a.delivered + load.shed;
    AppResult {
        name: spec.name.clone(),
        class: spec.class(),
        slo_ms: spec.slo().map(|d| d.as_secs_f64() * 1e3),
        home: spec.home,
        sent: load.sent,
        shed: load.shed,
        delivered: a.delivered,
        within_slo: a.within_slo,
        satisfaction: a.satisfaction(),
        satisfaction_incl_shed: if misses_base == 0 {
            1.0
        } else {
            a.within_slo as f64 / misses_base as f64
        },
        p50_ms: q(&a.latency, 0.5),
        p99_ms: q(&a.latency, 0.99),
        p999_ms: q(&a.latency, 0.999),
        max_ms: if a.latency.is_empty() {
            0.0
        } else {
            ms(a.latency.max())
        },
        queue_p99_ms: q(&a.queueing, 0.99),
        throughput: w.delivered as f64 / (window_ns.max(1) as f64 / 1e9),
        runs: a.runs,
        lessee_runs: a.lessee_runs,
        leases: a.leases_granted,
        revokes: a.revokes,
        mean_lessees: w.lessee_ns as f64 / window_ns.max(1) as f64,
        lessees_left: a.lessees,
        lessor_runs,
        placement_ok,
        latency: a.latency.clone(),
    }
}

/// Stats of an app the node never reported (no shard saw it): all zero.
fn placeholder_stats() -> AppStats {
    // `AppStats::new` is crate-private; every field is public.
    AppStats {
        app: dirigo_engine::AppId(0),
        name: String::new(),
        class: AppClass::BestEffort,
        latency: Histogram::new_with_bounds(1_000, 100_000_000_000, 3)
            .expect("static histogram bounds are valid"),
        queueing: Histogram::new_with_bounds(1_000, 100_000_000_000, 3)
            .expect("static histogram bounds are valid"),
        delivered: 0,
        within_slo: 0,
        runs: 0,
        lessee_runs: 0,
        lessees: 0,
        leases_granted: 0,
        revokes: 0,
        barriers: 0,
        lessee_ns: 0,
    }
}

// ---------------------------------------------------------------------
// Machine CPU, to see interference
// ---------------------------------------------------------------------

/// CPU time counters of the machine and of this process (Linux `/proc`).
#[derive(Clone, Copy, Debug)]
struct CpuSnap {
    /// Non-idle ticks over all CPUs.
    busy: u64,
    /// All ticks over all CPUs.
    total: u64,
    cpus: usize,
    /// This process's user + system ticks.
    own: u64,
}

fn cpu_snap() -> Option<CpuSnap> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let f: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    let total = busy + at(3) + at(4);
    let cpus = lines.filter(|l| l.starts_with("cpu")).count().max(1);
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &me[me.rfind(')')? + 1..];
    let g: Vec<&str> = after.split_whitespace().collect();
    let own = g.get(11)?.parse::<u64>().ok()? + g.get(12)?.parse::<u64>().ok()?;
    Some(CpuSnap {
        busy,
        total,
        cpus,
        own,
    })
}

/// (this process, everything else) CPU core-seconds between two snapshots
/// `wall_s` apart.
fn cpu_split(a: Option<CpuSnap>, b: Option<CpuSnap>, wall_s: f64) -> Option<(f64, f64)> {
    let (a, b) = (a?, b?);
    let total = b.total.checked_sub(a.total).filter(|t| *t > 0)? as f64;
    let busy = b.busy.saturating_sub(a.busy) as f64;
    let own = (b.own.saturating_sub(a.own) as f64).min(busy);
    let scale = b.cpus as f64 * wall_s / total;
    Some((own * scale, (busy - own) * scale))
}

// ---------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------

/// Run the workload once under `config` on a fresh node.
pub fn run(config: Config, w: &Workload) -> Result<ConfigResult, Error> {
    let cfg = config.node_config(w.shards, w.placement);
    let autoscale = cfg.autoscale.enabled;
    let node = Node::start(cfg)?;
    let policy = node.config().policy.name().to_owned();
    let mut handles = Vec::with_capacity(w.apps.len());
    let mut feeds = Vec::with_capacity(w.apps.len());
    for (i, spec) in w.apps.iter().enumerate() {
        let h = node.deploy(spec.build()?)?;
        feeds.push(Feed {
            src: h.source::<Event>("events")?,
            arrivals: spec.arrivals,
            rng: ChaCha8Rng::seed_from_u64(app_seed(w.seed, i)),
            keys: spec.keys,
            due: 0.0,
            next_id: 0,
            report: LoadReport::default(),
        });
        handles.push(h);
    }

    let base = node.stats()?;
    let mut timeline = vec![Sample::take(Duration::ZERO, &base, &w.apps)];
    let cpu0 = cpu_snap();
    let start = Instant::now();
    let duration = w.duration;
    let gen = std::thread::Builder::new()
        .name("slo-mix-load".into())
        .spawn(move || generate(feeds, duration, start))?;

    let sample = w.sample.max(Duration::from_millis(10));
    let mut next_sample = sample;
    let mut next_window = w.window;
    let mut windows = 0u64;
    let mut barrier_error = None;
    loop {
        let el = start.elapsed();
        if el >= duration {
            break;
        }
        let next = [Some(next_sample), next_window, Some(duration)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(duration);
        if next > el {
            std::thread::sleep(next - el);
        }
        let el = start.elapsed();
        if let (Some(nw), Some(period)) = (next_window, w.window) {
            if el >= nw && el < duration {
                windows += 1;
                next_window = Some(nw + period.max(Duration::from_millis(1)));
                for h in &handles {
                    // A refused barrier (the shard's inbox stayed full for
                    // the engine's control timeout) ends the windows of this
                    // run: a later one would reuse its id on the sources
                    // that did take it.
                    if let Err(e) = h.inject_barrier(BarrierKind::WindowClose, windows) {
                        barrier_error = Some(format!("{}: {e}", h.name()));
                        next_window = None;
                        break;
                    }
                }
            }
        }
        if el >= next_sample && el < duration {
            // A sample the node could not answer in time is skipped.
            if let Ok(st) = node.stats() {
                timeline.push(Sample::take(el, &st, &w.apps));
            }
            next_sample += sample;
        }
    }
    let gen = gen
        .join()
        .map_err(|_| Error::from("the load generator thread panicked"))?;
    let window = node.stats()?;
    let window_ns = start.elapsed().as_nanos() as u64;
    let cpu = cpu_split(cpu0, cpu_snap(), window_ns as f64 / 1e9);
    timeline.push(Sample::take(start.elapsed(), &window, &w.apps));

    let drain_start = Instant::now();
    let deadline = drain_start + w.drain;
    let mut drained = true;
    for h in &handles {
        let left = deadline.saturating_duration_since(Instant::now());
        drained &= h.quiesce(left.max(Duration::from_millis(1))).is_ok();
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    // Let idle lessees go home (the longest default idle time is 200 ms),
    // so that `lessees_left` shows the ones that do not.
    std::thread::sleep(Duration::from_millis(400));
    let fin = node.stats()?;
    node.shutdown();

    let busy_per_shard: Vec<f64> = window
        .shards
        .iter()
        .map(|s| {
            let before = base
                .shards
                .iter()
                .find(|b| b.shard == s.shard)
                .map_or(0, |b| b.busy_ns);
            s.busy_ns.saturating_sub(before) as f64 / 1e9
        })
        .collect();
    let apps: Vec<AppResult> = w
        .apps
        .iter()
        .zip(&gen.per_app)
        .map(|(spec, load)| app_result(spec, *load, &window, &fin, window_ns))
        .collect();
    let window_s = window_ns as f64 / 1e9;
    Ok(ConfigResult {
        config,
        policy,
        autoscale,
        window_s,
        drain_s,
        drained,
        busy_core_s: busy_per_shard.iter().sum(),
        busy_per_shard,
        static_core_s: w.static_cores() as f64 * window_s,
        shed: gen.per_app.iter().map(|r| r.shed).sum(),
        gen_max_lag_ms: gen.max_lag.as_secs_f64() * 1e3,
        process_cpu_s: cpu.map(|c| c.0),
        other_cpu_s: cpu.map(|c| c.1),
        windows,
        barrier_error,
        apps,
        timeline,
    })
}

// ---------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------

fn class_name(c: AppClass) -> &'static str {
    match c {
        AppClass::LatencyCritical => "LC",
        AppClass::BestEffort => "BE",
    }
}

/// The workload, as printed before the runs.
pub fn describe(w: &Workload, cores: &[usize]) -> String {
    let mut s = String::new();
    let d = w.demand();
    let _ = writeln!(
        s,
        "slo-mix: {} shards ({}) on a machine with {} cores {:?}; {:.0} s per configuration; \
         seed {}; window barriers {}",
        w.shards,
        match w.placement {
            Placement::Pinned => "pinned",
            Placement::Unpinned => "unpinned",
        },
        cores.len(),
        cores,
        w.duration.as_secs_f64(),
        w.seed,
        w.window
            .map_or("off".to_string(), |p| format!("every {} ms", p.as_millis()))
    );
    let _ = writeln!(s, "apps (same arrivals in every configuration):");
    for a in &w.apps {
        let sh = a.arrivals.shape;
        let load = if sh.burst > 1.0 {
            format!(
                "mean {:.0} ev/s, x{} bursts ({:.0} ev/s) for {} ms every {} ms, first at {} ms",
                sh.rate,
                sh.burst,
                a.arrivals.peak(),
                sh.on.as_millis(),
                (sh.on + sh.off).as_millis(),
                a.arrivals.first_burst.as_millis()
            )
        } else {
            format!("steady {:.0} ev/s", sh.rate)
        };
        let work = match a.kind {
            AppKind::LatencyCritical {
                parse_us, score_us, ..
            } => format!("parse {parse_us} us + score {score_us} us"),
            AppKind::BestEffort { work_us } => format!("enrich {work_us} us"),
        };
        let _ = writeln!(
            s,
            "  {:<14} {} {:>9}  home shard {}  {}; {}; {} keys",
            a.name,
            class_name(a.class()),
            a.slo()
                .map_or("-".to_string(), |d| format!("SLO {}ms", d.as_millis())),
            a.home,
            load,
            work,
            a.keys
        );
    }
    let _ = writeln!(
        s,
        "nominal demand (spin work only): mean {:.2} cores, peak {:.2} cores; a static placement \
         sized for the bursts reserves max(shards, ceil(peak)) = {} cores for the whole run",
        d.mean_cores,
        d.peak_cores,
        w.static_cores()
    );
    s
}

/// The per-configuration, per-app table.
pub fn table(results: &[ConfigResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:<14} {:>2} {:>4} {:>7} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>7} {:>5}",
        "config",
        "app",
        "cl",
        "slo",
        "sent",
        "shed",
        "deliv",
        "in-SLO",
        "p50ms",
        "p99ms",
        "p99.9ms",
        "ev/s",
        "qp99ms",
        "leases",
        "lessees",
        "left"
    );
    for r in results {
        for a in &r.apps {
            let sat = match a.class {
                AppClass::LatencyCritical => format!("{:.2}%", a.satisfaction * 100.0),
                AppClass::BestEffort => "-".to_string(),
            };
            let _ = writeln!(
                s,
                "{:<12} {:<14} {:>2} {:>4} {:>7} {:>6} {:>7} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.0} {:>7.2} {:>6} {:>7.2} {:>5}",
                r.config.name(),
                a.name,
                class_name(a.class),
                a.slo_ms.map_or("-".to_string(), |v| format!("{v:.0}")),
                a.sent,
                a.shed,
                a.delivered,
                sat,
                a.p50_ms,
                a.p99_ms,
                a.p999_ms,
                a.throughput,
                a.queue_p99_ms,
                a.leases,
                a.mean_lessees,
                a.lessees_left
            );
        }
        let _ = writeln!(
            s,
            "{:<12} busy {:.2} core-s (shards {}) vs {:.2} static-reserved, over {:.2} s; \
             shed {}; drained {} in {:.2} s; {} window barriers",
            "",
            r.busy_core_s,
            r.busy_per_shard
                .iter()
                .map(|b| format!("{b:.2}"))
                .collect::<Vec<_>>()
                .join("/"),
            r.static_core_s,
            r.window_s,
            r.shed,
            r.drained,
            r.drain_s,
            r.windows,
        );
        let _ = writeln!(
            s,
            "{:<12} machine: generator max lag {:.1} ms; CPU core-s of this process {}, of \
             other processes {}",
            "",
            r.gen_max_lag_ms,
            r.process_cpu_s
                .map_or("?".to_string(), |v| format!("{v:.2}")),
            r.other_cpu_s.map_or("?".to_string(), |v| format!("{v:.2}")),
        );
        if !r.placement_ok() {
            let _ = writeln!(
                s,
                "{:<12} WARNING: lessors ran off their intended home shard (see \
                 lessor_runs_per_shard in the JSON)",
                ""
            );
        }
        if let Some(e) = &r.barrier_error {
            let _ = writeln!(s, "{:<12} WARNING: window barriers stopped: {e}", "");
        }
    }
    s
}

/// The comparison the issue asks for: LC satisfaction and core-seconds of
/// each configuration against fifo-static and against a static placement
/// sized for the bursts.
pub fn comparison(results: &[ConfigResult]) -> String {
    let mut s = String::new();
    let base = results.iter().find(|r| r.config == Config::FifoStatic);
    let _ = writeln!(
        s,
        "{:<12} {:>9} {:>9} {:>10} {:>10} {:>9} {:>10} {:>11} {:>10} {:>9}",
        "config",
        "LC-sat",
        "LC-min",
        "vs-fifo-st",
        "LC-viol/x",
        "busy-cs",
        "static-cs",
        "vs-static",
        "BE-ev/s",
        "BE-vs-fs"
    );
    for r in results {
        let sat = r.lc_satisfaction();
        let (dsat, viol, be) = match base {
            Some(b) => {
                let bv = 1.0 - b.lc_satisfaction();
                let v = 1.0 - sat;
                (
                    format!("{:+.2}pp", (sat - b.lc_satisfaction()) * 100.0),
                    if bv > 0.0 {
                        format!("{:.3}", v / bv)
                    } else {
                        "-".to_string()
                    },
                    if b.be_throughput() > 0.0 {
                        format!("{:.2}", r.be_throughput() / b.be_throughput())
                    } else {
                        "-".to_string()
                    },
                )
            }
            None => ("-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "{:<12} {:>8.2}% {:>8.2}% {:>10} {:>10} {:>9.2} {:>10.2} {:>10.1}% {:>10.0} {:>9}",
            r.config.name(),
            sat * 100.0,
            r.lc_min_satisfaction() * 100.0,
            dsat,
            viol,
            r.busy_core_s,
            r.static_core_s,
            (r.busy_core_s / r.static_core_s - 1.0) * 100.0,
            r.be_throughput(),
            be
        );
    }
    let _ = writeln!(
        s,
        "LC-sat: LC outputs within SLO over LC outputs; LC-min: worst LC app; vs-fifo-st: \
         difference with fifo-static; LC-viol/x: LC miss rate over fifo-static's; busy-cs: \
         core-seconds the shards were busy during the load window (NodeStats::busy_ns); \
         static-cs: core-seconds a static placement sized for the bursts reserves over the \
         same window (max(shards, ceil(peak nominal demand)) cores, all the time); vs-static: \
         busy-cs relative to static-cs; BE-vs-fs: BE throughput over fifo-static's."
    );
    if let (Some(b), Some(d)) = (base, results.iter().find(|r| r.config == Config::Dirigo)) {
        let fewer = 1.0 - d.busy_core_s / d.static_core_s;
        let _ = writeln!(
            s,
            "target: dirigo LC satisfaction >= 99% (every LC app): {} (min {:.2}%); \
             fifo-static below 90%: {} (LC {:.2}%, min {:.2}%); dirigo >= 30% fewer core-seconds \
             than static: {} ({:.1}% fewer)",
            yes(d.lc_min_satisfaction() >= 0.99),
            d.lc_min_satisfaction() * 100.0,
            yes(b.lc_satisfaction() < 0.90),
            b.lc_satisfaction() * 100.0,
            b.lc_min_satisfaction() * 100.0,
            yes(fewer >= 0.30),
            fewer * 100.0
        );
    }
    s
}

fn yes(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "NOT met"
    }
}

// ---------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------

/// A latency histogram (ns) as HdrHistogram's percentile distribution
/// text, values in ms.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - q))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{:>12.3} {:>14.12} {:>10} {}",
            ms(v.value_iterated_to()),
            q,
            total,
            inv
        );
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1e6,
        h.stdev() / 1e6
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        ms(h.max()),
        h.len()
    );
    s
}

fn timeline_csv(r: &ConfigResult, apps: &[AppSpec]) -> String {
    let mut s = String::from("t_s,busy_cores");
    for a in apps {
        let _ = write!(s, ",{0}_out_per_s,{0}_in_slo_pct,{0}_lessees", a.name);
    }
    s.push('\n');
    for pair in r.timeline.windows(2) {
        let (p, c) = (&pair[0], &pair[1]);
        let dt = (c.t_s - p.t_s).max(1e-9);
        let _ = write!(
            s,
            "{:.3},{:.3}",
            c.t_s,
            c.busy_ns.saturating_sub(p.busy_ns) as f64 / 1e9 / dt
        );
        for (x, y) in p.apps.iter().zip(&c.apps) {
            let d = y.0.saturating_sub(x.0);
            let within = y.1.saturating_sub(x.1);
            let pct = if d == 0 {
                100.0
            } else {
                100.0 * within as f64 / d as f64
            };
            let _ = write!(s, ",{:.0},{:.2},{}", d as f64 / dt, pct, y.2);
        }
        s.push('\n');
    }
    s
}

/// A finite float, or JSON `null` (a ratio over an empty run).
fn num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into)
}

/// The whole table as JSON.
pub fn to_json(w: &Workload, results: &[ConfigResult]) -> String {
    use serde_json::{json, Value};
    let d = w.demand();
    let apps: Vec<Value> = w
        .apps
        .iter()
        .map(|a| {
            let sh = a.arrivals.shape;
            json!({
                "name": a.name,
                "class": class_name(a.class()),
                "slo_ms": a.slo().map(|d| num(d.as_secs_f64() * 1e3)),
                "home": a.home,
                "mean_rate": num(sh.rate),
                "burst": num(sh.burst),
                "on_ms": sh.on.as_millis() as u64,
                "off_ms": sh.off.as_millis() as u64,
                "first_burst_ms": a.arrivals.first_burst.as_millis() as u64,
                "work_us": a.work_us(),
                "keys": a.keys,
            })
        })
        .collect();
    let configs: Vec<Value> = results
        .iter()
        .map(|r| {
            let apps: Vec<Value> = r
                .apps
                .iter()
                .map(|a| {
                    json!({
                        "name": a.name,
                        "class": class_name(a.class),
                        "slo_ms": a.slo_ms.map(num),
                        "home": a.home,
                        "sent": a.sent,
                        "shed": a.shed,
                        "delivered": a.delivered,
                        "within_slo": a.within_slo,
                        "satisfaction": num(a.satisfaction),
                        "satisfaction_incl_shed": num(a.satisfaction_incl_shed),
                        "p50_ms": num(a.p50_ms),
                        "p99_ms": num(a.p99_ms),
                        "p99_9_ms": num(a.p999_ms),
                        "max_ms": num(a.max_ms),
                        "queueing_p99_ms": num(a.queue_p99_ms),
                        "throughput": num(a.throughput),
                        "runs": a.runs,
                        "lessee_runs": a.lessee_runs,
                        "leases_granted": a.leases,
                        "revokes": a.revokes,
                        "mean_lessees": num(a.mean_lessees),
                        "lessees_left": a.lessees_left,
                        "lessor_runs_per_shard": a.lessor_runs,
                        "placement_ok": a.placement_ok,
                    })
                })
                .collect();
            json!({
                "config": r.config.name(),
                "policy": r.policy,
                "autoscale": r.autoscale,
                "window_s": num(r.window_s),
                "drain_s": num(r.drain_s),
                "drained": r.drained,
                "busy_core_s": num(r.busy_core_s),
                "busy_core_s_per_shard": r.busy_per_shard.iter().copied().map(num).collect::<Vec<_>>(),
                "static_core_s": num(r.static_core_s),
                "busy_vs_static": num(r.busy_core_s / r.static_core_s),
                "shed": r.shed,
                "window_barriers": r.windows,
                "barrier_error": r.barrier_error,
                "generator_max_lag_ms": num(r.gen_max_lag_ms),
                "process_cpu_core_s": r.process_cpu_s.map(num),
                "other_processes_cpu_core_s": r.other_cpu_s.map(num),
                "lc_satisfaction": num(r.lc_satisfaction()),
                "lc_min_satisfaction": num(r.lc_min_satisfaction()),
                "be_throughput": num(r.be_throughput()),
                "placement_ok": r.placement_ok(),
                "apps": apps,
            })
        })
        .collect();
    let doc = json!({
        "scenario": "slo-mix",
        "shards": w.shards,
        "duration_s": num(w.duration.as_secs_f64()),
        "seed": w.seed,
        "window_ms": w.window.map(|p| p.as_millis() as u64),
        "nominal_demand_cores": {"mean": num(d.mean_cores), "peak": num(d.peak_cores)},
        "static_cores": w.static_cores(),
        "apps": apps,
        "configs": configs,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| panic!("a JSON value serializes: {e}"))
}

/// Write, under `out`: `<config>/<app>.hdr` (V2-serialized latency
/// histogram, ns), `<config>/<app>.txt` (its percentile distribution, ms),
/// `<config>/timeline.csv`, and `slo-mix.json`. Returns the files written.
pub fn write_outputs(
    out: &Path,
    w: &Workload,
    results: &[ConfigResult],
) -> Result<Vec<std::path::PathBuf>, Error> {
    let mut written = Vec::new();
    let with_path = |p: &Path, e: std::io::Error| Error::from(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(out).map_err(|e| with_path(out, e))?;
    for r in results {
        let dir = out.join(r.config.name());
        std::fs::create_dir_all(&dir).map_err(|e| with_path(&dir, e))?;
        for a in &r.apps {
            let hdr = dir.join(format!("{}.hdr", a.name));
            let mut buf = Vec::new();
            V2Serializer::new()
                .serialize(&a.latency, &mut buf)
                .map_err(|e| Error::from(format!("{}: {e:?}", hdr.display())))?;
            std::fs::write(&hdr, buf).map_err(|e| with_path(&hdr, e))?;
            written.push(hdr);
            let txt = dir.join(format!("{}.txt", a.name));
            std::fs::write(&txt, percentile_distribution(&a.latency))
                .map_err(|e| with_path(&txt, e))?;
            written.push(txt);
        }
        let csv = dir.join("timeline.csv");
        std::fs::write(&csv, timeline_csv(r, &w.apps)).map_err(|e| with_path(&csv, e))?;
        written.push(csv);
    }
    let json = out.join("slo-mix.json");
    std::fs::write(&json, to_json(w, results)).map_err(|e| with_path(&json, e))?;
    written.push(json);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bursty(first_ms: u64) -> Arrivals {
        Arrivals {
            shape: Shape {
                rate: 1000.0,
                burst: 4.0,
                on: Duration::from_millis(200),
                off: Duration::from_millis(800),
            },
            first_burst: Duration::from_millis(first_ms),
        }
    }

    #[test]
    fn shifted_bursts_start_where_asked_and_keep_the_mean() {
        let a = bursty(300);
        assert!(a.rate_at(Duration::from_millis(100)) < 1000.0);
        assert_eq!(a.rate_at(Duration::from_millis(300)), 4000.0);
        assert_eq!(a.rate_at(Duration::from_millis(499)), 4000.0);
        assert!(a.rate_at(Duration::from_millis(500)) < 1000.0);
        assert_eq!(a.rate_at(Duration::from_millis(1300)), 4000.0);
        let mean: f64 = (0..1000)
            .map(|i| a.rate_at(Duration::from_millis(i)))
            .sum::<f64>()
            / 1000.0;
        assert!((mean - 1000.0).abs() < 1.0, "{mean}");
        assert_eq!(a.peak(), 4000.0);
    }

    #[test]
    fn demand_of_out_of_phase_bursts() {
        let app = |first, home| AppSpec {
            name: "x".into(),
            kind: AppKind::BestEffort { work_us: 100 },
            arrivals: bursty(first),
            home,
            keys: 10,
        };
        let w = Workload {
            shards: 2,
            placement: Placement::Unpinned,
            duration: Duration::from_secs(2),
            seed: 0,
            window: None,
            sample: Duration::from_millis(100),
            drain: Duration::from_secs(1),
            // 1000 ev/s x 100 us = 0.1 core each on average, 0.4 in bursts;
            // one bursts while the other is off (off rate 1000/4 x 100 us).
            apps: vec![app(0, 0), app(500, 1)],
        };
        let d = w.demand();
        assert!((d.mean_cores - 0.2).abs() < 0.01, "{d:?}");
        assert!((d.peak_cores - 0.425).abs() < 0.01, "{d:?}");
        assert_eq!(w.static_cores(), 2);
    }

    /// The placement search against the engine itself: every lessor run of
    /// each app must be on the shard its name was chosen for, so
    /// `home_shard` tells where the engine really puts an app's actors.
    #[test]
    fn placed_names_put_every_operator_on_the_wanted_shard() {
        let shards = 2;
        let apps: Vec<AppSpec> = [
            (
                "lc",
                AppKind::LatencyCritical {
                    slo: Duration::from_secs(1),
                    parse_us: 0,
                    score_us: 0,
                },
                1,
            ),
            ("be", AppKind::BestEffort { work_us: 0 }, 0),
            ("be2", AppKind::BestEffort { work_us: 0 }, 1),
        ]
        .into_iter()
        .map(|(base, kind, home)| {
            let nodes = match kind {
                AppKind::LatencyCritical { .. } => 4,
                AppKind::BestEffort { .. } => 3,
            };
            AppSpec {
                name: placed_name(base, nodes, shards, home).expect("a name within the tries"),
                kind,
                arrivals: bursty(0),
                home,
                keys: 100,
            }
        })
        .collect();
        let node = Node::start(Config::FifoStatic.node_config(shards, Placement::Unpinned))
            .expect("node starts");
        for a in &apps {
            let h = node.deploy(a.build().expect("valid app")).expect("deploys");
            let src = h.source::<Event>("events").expect("source");
            let batch: Vec<(u64, Event)> = (0..200u32)
                .map(|i| {
                    (
                        key_hash(&i.to_le_bytes()),
                        Event {
                            id: i as u64,
                            account: i,
                            amount: i as f64,
                        },
                    )
                })
                .collect();
            src.send_batch(batch, Duration::from_secs(5))
                .map_err(|r| r.error)
                .expect("accepted");
            h.quiesce(Duration::from_secs(10)).expect("drains");
        }
        let stats = node.stats().expect("stats");
        node.shutdown();
        for a in &apps {
            let r = app_result(a, LoadReport::default(), &stats, &stats, 1);
            assert_eq!(r.delivered, 200, "{}", a.name);
            assert!(
                r.placement_ok,
                "{}: lessor runs {:?}",
                a.name, r.lessor_runs
            );
            assert_eq!(r.lessor_runs[a.home], r.runs, "{}", a.name);
        }
    }

    #[test]
    fn percentile_file_ends_at_the_max_and_counts_everything() {
        let mut h = Histogram::<u64>::new_with_bounds(1_000, 100_000_000_000, 3).expect("bounds");
        for v in 1..=1000u64 {
            h.record(v * 1_000_000).expect("in range");
        }
        let txt = percentile_distribution(&h);
        let last = txt
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
            .expect("rows");
        let cols: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(cols[2], "1000", "{last}");
        assert!(
            (cols[0].parse::<f64>().expect("value") - 1000.0).abs() < 1.0,
            "{last}"
        );
    }
}
