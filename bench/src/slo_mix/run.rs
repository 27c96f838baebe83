//! One run of the `slo-mix` workload under one configuration: the load
//! generator thread (one tick a millisecond, every app's due events in one
//! batch each, refusals counted as shed), the main thread's part of the
//! load window (window barriers, timeline samples), the drain, and the
//! figures the run yields ([`ConfigResult`], one [`AppResult`] per app, the
//! timeline's [`Sample`]s), with this process's and the rest of the
//! machine's CPU time from `/proc` to show interference.
//!
//! Every run starts a fresh node and shuts it down; nothing outlives it but
//! the figures.

use std::time::{Duration, Instant};

use dirigo_engine::{
    key_hash, AppClass, AppHandle, AppStats, BarrierKind, Node, NodeStats, SourceHandle,
};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::workload::{AppSpec, Arrivals, Config, Event, Workload};
use super::{ms, Error};
use crate::cpu::{self, CpuUse};
use crate::load::LoadReport;

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
    /// The app's deployed name.
    pub name: String,
    /// Latency-critical or best-effort.
    pub class: AppClass,
    /// The SLO, ms (LC apps only).
    pub slo_ms: Option<f64>,
    /// The shard every node of the app was meant to be homed on.
    pub home: usize,
    /// Events of the generator's batches the source accepted.
    pub sent: u64,
    /// Events the source refused (backpressure), never retried.
    pub shed: u64,
    /// Outputs delivered at the sink, after the drain (every accepted event
    /// gives one output, plus none from windows).
    pub delivered: u64,
    /// Of those, delivered within the SLO.
    pub within_slo: u64,
    /// Delivered within SLO over delivered (`AppStats::satisfaction`).
    pub satisfaction: f64,
    /// Within SLO over delivered + shed: shed events count as misses.
    pub satisfaction_incl_shed: f64,
    /// Median end-to-end latency (client hand-off to the sink) of the
    /// delivered outputs, ms; 0 with none.
    pub p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub p99_ms: f64,
    /// 99.9th percentile of the same, ms.
    pub p999_ms: f64,
    /// Greatest of the same, ms.
    pub max_ms: f64,
    /// 99th percentile of the queueing delay of the app's runs
    /// (`AppStats::queueing`), ms.
    pub queue_p99_ms: f64,
    /// Outputs delivered during the load window, per second of it.
    pub throughput: f64,
    /// Messages run by the app's actors, lessors and lessees
    /// (`AppStats::runs`), after the drain.
    pub runs: u64,
    /// Of those, run by lessees (work that left the home shard).
    pub lessee_runs: u64,
    /// Leases the app's lessors granted.
    pub leases: u64,
    /// Leases the app's lessors revoked.
    pub revokes: u64,
    /// Lessee-time during the load window over the window.
    pub mean_lessees: f64,
    /// Lessees still hosted after the drain and a settle pause.
    pub lessees_left: usize,
    /// Lessor runs (runs minus lessee runs) per shard.
    pub lessor_runs: Vec<u64>,
    /// Every lessor run was on `home`.
    pub placement_ok: bool,
    /// End-to-end latency of the delivered outputs, ns (written to
    /// `<config>/<app>.hdr`).
    pub latency: Histogram<u64>,
}

/// One configuration's run.
#[derive(Clone, Debug)]
pub struct ConfigResult {
    /// The configuration run.
    pub config: Config,
    /// The node's policy, by its name.
    pub policy: String,
    /// Whether autoscaling (leasing) was on.
    pub autoscale: bool,
    /// The load window, s (start of load to the stats read after it).
    pub window_s: f64,
    /// Drain time after the window, s.
    pub drain_s: f64,
    /// Whether every app's backlog drained within `Workload::drain`.
    pub drained: bool,
    /// Busy core-seconds during the load window, per shard.
    pub busy_per_shard: Vec<f64>,
    /// Their sum: busy core-seconds of all shards during the load window.
    pub busy_core_s: f64,
    /// What a static placement sized for the bursts reserves over the same
    /// window: `Workload::static_cores() × window`.
    pub static_core_s: f64,
    /// Events shed, all apps.
    pub shed: u64,
    /// The generator's worst lateness of a tick, ms (the thread did not get
    /// a core in time).
    pub gen_max_lag_ms: f64,
    /// CPU core-seconds of this whole process (shards, generator, main
    /// thread, spinning included) during the window, from `/proc`.
    pub process_cpu_s: Option<f64>,
    /// CPU core-seconds of every other process on the machine during the
    /// window (interference), from `/proc`.
    pub other_cpu_s: Option<f64>,
    /// Window barriers injected.
    pub windows: u64,
    /// Why they stopped early, if they did (the app and the engine's error).
    pub barrier_error: Option<String>,
    /// Per app, in workload order.
    pub apps: Vec<AppResult>,
    /// Stats samples from the start of the load to the end of its window.
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

    /// Every app's lessors ran on its home shard alone
    /// ([`AppResult::placement_ok`]).
    pub fn placement_ok(&self) -> bool {
        self.apps.iter().all(|a| a.placement_ok)
    }
}

/// One stats sample of the timeline (cumulative figures at `t_s`).
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Time since the load started, s.
    pub t_s: f64,
    /// Busy ns of all shards so far (`NodeStats::busy_ns`).
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

pub(super) fn app_result(
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
        queued: 0,
        failed: None,
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
        durable: None,
        timers: 0,
        late_events: 0,
    }
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
    let (handles, feeds) = deploy(&node, w)?;

    let base = node.stats()?;
    let mut timeline = vec![Sample::take(Duration::ZERO, &base, &w.apps)];
    let cpu0 = cpu::snap();
    let start = Instant::now();
    let duration = w.duration;
    let gen = std::thread::Builder::new()
        .name("slo-mix-load".into())
        .spawn(move || generate(feeds, duration, start))?;
    let marks = drive(&node, &handles, w, start, &mut timeline);
    let gen = gen
        .join()
        .map_err(|_| Error::from("the load generator thread panicked"))?;
    let window = node.stats()?;
    let window_ns = start.elapsed().as_nanos() as u64;
    let cpu =
        CpuUse::between(cpu0, cpu::snap(), window_ns as f64 / 1e9).map(|c| (c.own_s, c.others_s));
    timeline.push(Sample::take(start.elapsed(), &window, &w.apps));

    let (drained, drain_s) = drain(&handles, w.drain);
    // Let idle lessees go home (the longest default idle time is 200 ms),
    // so that `lessees_left` shows the ones that do not.
    std::thread::sleep(Duration::from_millis(400));
    let fin = node.stats()?;
    node.shutdown();

    let seen = Observed {
        gen,
        base,
        window,
        fin,
        window_ns,
        cpu,
        drained,
        drain_s,
        marks,
        timeline,
    };
    Ok(config_result(config, policy, autoscale, w, seen))
}

/// Deploy every app of `w` on `node`: the apps' handles, and one feed per
/// app (its source, arrivals and key stream) for the generator.
fn deploy(node: &Node, w: &Workload) -> Result<(Vec<AppHandle>, Vec<Feed>), Error> {
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
    Ok((handles, feeds))
}

/// The window barriers the main thread injected during the load window.
struct Marks {
    windows: u64,
    /// Why they stopped early, if they did.
    barrier_error: Option<String>,
}

/// The main thread's part of the load window: inject the window barriers
/// and take the timeline samples, each when due, until `w.duration` has
/// passed since `start`.
fn drive(
    node: &Node,
    handles: &[AppHandle],
    w: &Workload,
    start: Instant,
    timeline: &mut Vec<Sample>,
) -> Marks {
    let duration = w.duration;
    let sample = w.sample.max(Duration::from_millis(10));
    let mut next_sample = sample;
    let mut next_window = w.window;
    let mut marks = Marks {
        windows: 0,
        barrier_error: None,
    };
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
                marks.windows += 1;
                next_window = Some(nw + period.max(Duration::from_millis(1)));
                if let Err(e) = close_window(handles, marks.windows) {
                    marks.barrier_error = Some(e);
                    next_window = None;
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
    marks
}

/// Inject window barrier `tag` into every app, in order; the first refusal
/// (app and error) stops it.
fn close_window(handles: &[AppHandle], tag: u64) -> Result<(), String> {
    for h in handles {
        // A refused barrier (the shard's inbox stayed full for the
        // engine's control timeout) ends the windows of this run: a later
        // one would reuse its id on the sources that did take it.
        h.inject_barrier(BarrierKind::WindowClose, tag)
            .map_err(|e| format!("{}: {e}", h.name()))?;
    }
    Ok(())
}

/// Wait for every app's backlog to drain, `drain` at most in all: whether
/// all did, and the seconds it took.
fn drain(handles: &[AppHandle], drain: Duration) -> (bool, f64) {
    let drain_start = Instant::now();
    let deadline = drain_start + drain;
    let mut drained = true;
    for h in handles {
        let left = deadline.saturating_duration_since(Instant::now());
        drained &= h.quiesce(left.max(Duration::from_millis(1))).is_ok();
    }
    (drained, drain_start.elapsed().as_secs_f64())
}

/// What one run saw, before it is turned into figures.
struct Observed {
    gen: GenReport,
    /// Stats before the load, at the end of the load window, after the
    /// drain.
    base: NodeStats,
    window: NodeStats,
    fin: NodeStats,
    window_ns: u64,
    /// (this process, every other) CPU core-seconds of the load window.
    cpu: Option<(f64, f64)>,
    drained: bool,
    drain_s: f64,
    marks: Marks,
    timeline: Vec<Sample>,
}

/// The figures of one run.
fn config_result(
    config: Config,
    policy: String,
    autoscale: bool,
    w: &Workload,
    seen: Observed,
) -> ConfigResult {
    let busy_per_shard = busy_per_shard(&seen.base, &seen.window);
    let apps: Vec<AppResult> = w
        .apps
        .iter()
        .zip(&seen.gen.per_app)
        .map(|(spec, load)| app_result(spec, *load, &seen.window, &seen.fin, seen.window_ns))
        .collect();
    let window_s = seen.window_ns as f64 / 1e9;
    ConfigResult {
        config,
        policy,
        autoscale,
        window_s,
        drain_s: seen.drain_s,
        drained: seen.drained,
        busy_core_s: busy_per_shard.iter().sum(),
        busy_per_shard,
        static_core_s: w.static_cores() as f64 * window_s,
        shed: seen.gen.per_app.iter().map(|r| r.shed).sum(),
        gen_max_lag_ms: seen.gen.max_lag.as_secs_f64() * 1e3,
        process_cpu_s: seen.cpu.map(|c| c.0),
        other_cpu_s: seen.cpu.map(|c| c.1),
        windows: seen.marks.windows,
        barrier_error: seen.marks.barrier_error,
        apps,
        timeline: seen.timeline,
    }
}

/// Busy core-seconds of each shard between two stats reads.
fn busy_per_shard(base: &NodeStats, window: &NodeStats) -> Vec<f64> {
    window
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
        .collect()
}

#[cfg(test)]
mod tests {
    use dirigo_engine::{key_hash, Node, Placement};

    use super::*;
    use crate::load::Shape;
    use crate::slo_mix::workload::{placed_name, AppKind};

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
                arrivals: Arrivals {
                    shape: Shape {
                        rate: 1000.0,
                        burst: 4.0,
                        on: Duration::from_millis(200),
                        off: Duration::from_millis(800),
                    },
                    first_burst: Duration::ZERO,
                },
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
}
