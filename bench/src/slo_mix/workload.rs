//! What the `slo-mix` scenario runs, the same in every configuration: the
//! configurations compared ([`Config`]), the apps ([`AppSpec`]: kind, SLO,
//! arrivals, home shard, keys) and the whole [`Workload`] with its nominal
//! core demand; the placement search that picks app names so that every
//! node of an app is homed on the shard chosen for it ([`placed_name`],
//! from the engine's own formula, [`predicted_home`]); and the functions
//! the apps run (`Parse`, `Score`) with the event types they exchange.
//!
//! Nothing here starts a node but [`AppSpec::build`]'s app description and
//! the placement test, which checks the search against the engine itself.

use std::time::Duration;

use dirigo_engine::{
    App, AppBuilder, AppClass, AutoScale, Barrier, BarrierKind, Context, Dirigo, Edf, Fifo,
    Function, Keyed, Llf, Merged, NodeConfig, Placement, PolicyFactory,
};

use crate::apps::spin_work;
use crate::load::Shape;

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
    /// Every configuration, in the order they run.
    pub const ALL: [Config; 5] = [
        Config::FifoStatic,
        Config::FifoScaling,
        Config::Edf,
        Config::Llf,
        Config::Dirigo,
    ];

    /// The configuration's name in flags, tables and file names.
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
    /// Mean rate, burst factor, burst and gap lengths.
    pub shape: Shape,
    /// When the first burst starts, from the start of the load (the next
    /// ones follow every `on + off`).
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
        /// End-to-end latency objective of every output.
        slo: Duration,
        /// µs of spin work per event in `parse`.
        parse_us: u64,
        /// µs of spin work per event in `score`.
        score_us: u64,
    },
    /// `enrich`, µs of work.
    BestEffort {
        /// µs of spin work per event in `enrich`.
        work_us: u64,
    },
}

/// One app of the workload.
#[derive(Clone, Debug)]
pub struct AppSpec {
    /// Deployed name (chosen by [`Workload::place`]).
    pub name: String,
    /// What the app is, with its work per event.
    pub kind: AppKind,
    /// When its events arrive.
    pub arrivals: Arrivals,
    /// The shard every node of the app is homed on.
    pub home: usize,
    /// Distinct keys (accounts) the events are spread over.
    pub keys: u32,
}

impl AppSpec {
    /// The class the app is deployed with.
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
    /// Shards of each run's node.
    pub shards: usize,
    /// Whether the shard threads are pinned to cores.
    pub placement: Placement,
    /// How long the load lasts in each run.
    pub duration: Duration,
    /// Seed of the apps' key streams (one ChaCha8 stream per app).
    pub seed: u64,
    /// Window barriers (critical messages) every this long, if any.
    pub window: Option<Duration>,
    /// Stats are sampled this often for the timeline.
    pub sample: Duration,
    /// How long to wait for the backlog to drain after the load stops.
    pub drain: Duration,
    /// The apps, in deploy order.
    pub apps: Vec<AppSpec>,
}

/// Nominal core demand of the arrival schedule (spin work only; the
/// engine's own per-message cost is not in it), sampled every millisecond.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Demand {
    /// Mean over the load, cores.
    pub mean_cores: f64,
    /// The highest millisecond, cores.
    pub peak_cores: f64,
}

impl Workload {
    /// The arrival schedule's nominal core demand over `duration`.
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
    /// nodes are homed on its `home` shard; see `placed_name`. Returns the
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
fn predicted_home(app: &str, node: usize, shards: usize) -> usize {
    usize::from(dirigo_engine::home_shard(app, node, shards))
}

/// Most names tried by [`placed_name`].
const NAME_TRIES: usize = 1 << 20;

/// `base`, or `base-k` for the smallest `k`, such that all `nodes` nodes of
/// an app of that name are homed on `home`. `None` if no name within
/// [`NAME_TRIES`] does (many shards, many nodes).
pub(super) fn placed_name(base: &str, nodes: usize, shards: usize, home: usize) -> Option<String> {
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
    /// Number of the event in its app's stream, from 1.
    pub id: u64,
    /// The account, in `0..keys`; the event's key is its hash.
    pub account: u32,
    /// The amount, uniform in `[0, 100)`.
    pub amount: f64,
}

/// A scored event.
#[derive(Clone, Debug)]
pub struct Scored {
    /// The event's `id`.
    pub id: u64,
    /// The amount's z-score among the account's amounts of the window so
    /// far (0 while their deviation is 0).
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
}
