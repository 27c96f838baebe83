//! `dirigo demo`: a node with three built-in apps under bursty open-loop
//! load. Two are latency-critical (wordcount, sensors), one best-effort
//! (clicks). They are on event time (`apps::timed`): each event carries
//! the time the load made it, and windows (1 s tumbling ones, clicks'
//! sessions) close when the watermark passes them, on the instance that
//! owns their key; no client barrier, no consolidation.
//!
//! Unless `--volatile`, wordcount is a durable app (data in `--data-dir`,
//! by default a fresh temporary folder removed at the end): its lines are in
//! its ingress log before they are acknowledged, a checkpoint (its open
//! windows with their timers) is taken every second, and at the end the
//! node is stopped and a new one recovers the app from the folder (restore
//! + replay), which the demo reports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dirigo_bench::apps::timed::{self, Line, TimedClick, TimedReading};
use dirigo_bench::apps::{Click, Reading};
use dirigo_bench::load::{self, LoadReport, Shape};
use dirigo_engine::{
    AppHandle, AppStats, EngineError, Node, NodeConfig, NodeStats, Placement, PolicyFactory,
    Result, Time,
};
use rand::Rng;

#[derive(Parser, Debug, Clone)]
pub(crate) struct Args {
    /// How long to run, seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Shards (0 = one per core).
    #[arg(long, default_value_t = 0)]
    shards: usize,
    /// Let the OS place shard threads instead of pinning them.
    #[arg(long)]
    unpinned: bool,
    /// Mean events per second per app.
    #[arg(long, default_value_t = 4000.0)]
    rate: f64,
    /// Burst factor of the on/off load (1 = steady).
    #[arg(long, default_value_t = 4.0)]
    burst: f64,
    /// Microseconds of work per message in the first operator of each app.
    #[arg(long, default_value_t = 20)]
    work_us: u64,
    /// Seed of the load generators.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Scheduling policy of every shard: fifo (static placement), fifo-scaling,
    /// priority, edf, llf, dirigo.
    #[arg(long, default_value = "dirigo")]
    policy: String,
    /// Data folder of the durable wordcount (default: a temporary folder,
    /// removed at the end).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Run wordcount without durability (no log, no checkpoints).
    #[arg(long)]
    volatile: bool,
}

struct Running {
    app: AppHandle,
    drain: Box<dyn Fn() -> usize + Send>,
    outputs: usize,
}

fn pct(a: &AppStats, q: f64) -> f64 {
    a.latency.value_at_quantile(q) as f64 / 1e6
}

pub(crate) fn run(args: Args) -> Result<()> {
    let policy = PolicyFactory::builtin(&args.policy).ok_or_else(|| {
        EngineError::Config(format!(
            "unknown policy {:?} (one of {})",
            args.policy,
            PolicyFactory::BUILTIN.join(", ")
        ))
    })?;
    let temp_dir = (!args.volatile && args.data_dir.is_none())
        .then(|| std::env::temp_dir().join(format!("dirigo-demo-{}", std::process::id())));
    let data_dir = args.data_dir.clone().or_else(|| temp_dir.clone());
    let cfg = NodeConfig {
        policy,
        shards: args.shards,
        placement: if args.unpinned {
            Placement::Unpinned
        } else {
            Placement::Pinned
        },
        data_dir: data_dir.clone(),
        ..Default::default()
    };
    let node = Node::start(cfg.clone())?;
    println!(
        "dirigo demo: {} shards ({}), policy {}, {} s, {:.0} ev/s mean per app, bursts x{}, \
         {} us work",
        node.shards(),
        if args.unpinned { "unpinned" } else { "pinned" },
        args.policy,
        args.duration,
        args.rate,
        args.burst,
        args.work_us
    );

    let wc_slo = Duration::from_millis(20);
    let (wc, wc_rx) = timed::wordcount("wordcount", wc_slo, args.work_us, !args.volatile);
    if let Some(dir) = &data_dir {
        if !args.volatile {
            println!("wordcount is durable, data in {}", dir.display());
        }
    }
    let (se, se_rx, se_alerts) = timed::sensors("sensors", Duration::from_millis(50), args.work_us);
    let (cl, cl_rx) = timed::clicks("clicks", args.work_us * 2);
    let mut running = vec![
        Running {
            app: node.deploy(wc)?,
            drain: Box::new(move || wc_rx.drain().len()),
            outputs: 0,
        },
        Running {
            app: node.deploy(se)?,
            drain: Box::new(move || se_rx.drain().len() + se_alerts.drain().len()),
            outputs: 0,
        },
        Running {
            app: node.deploy(cl)?,
            drain: Box::new(move || cl_rx.drain().len()),
            outputs: 0,
        },
    ];

    let duration = Duration::from_secs(args.duration);
    let stop = Arc::new(AtomicBool::new(false));
    let shape = Shape {
        rate: args.rate,
        burst: args.burst,
        on: Duration::from_millis(500),
        off: Duration::from_millis(1500),
    };
    let mut gens = Vec::new();
    // Event time: ms since the load began, as each event is made, up to
    // the sources' bound out of order.
    let epoch = Instant::now();
    let event_time = move |rng: &mut rand_chacha::ChaCha8Rng| -> Time {
        let now = epoch.elapsed().as_millis() as Time + timed::BOUND_MS;
        now - rng.gen_range(0..timed::BOUND_MS)
    };
    {
        let src = running[0].app.source::<Line>("lines")?;
        let stop = stop.clone();
        let seed = args.seed;
        gens.push(std::thread::spawn(move || {
            load::run(src, shape, duration, seed, stop, |rng, _| {
                let words = rng.gen_range(3..12);
                let line: Vec<String> = (0..words)
                    .map(|_| format!("w{}", (rng.gen::<f64>().powi(3) * 5000.0) as u32))
                    .collect();
                let ts = event_time(rng);
                let text = line.join(" ");
                (0, Line { ts, text })
            })
        }));
    }
    {
        let src = running[1].app.source::<TimedReading>("readings")?;
        let stop = stop.clone();
        let seed = args.seed + 1;
        gens.push(std::thread::spawn(move || {
            load::run(src, shape, duration, seed, stop, |rng, _| {
                let sensor = rng.gen_range(0..500u32);
                let reading = Reading {
                    sensor,
                    value: rng.gen(),
                };
                let ts = event_time(rng);
                (sensor as u64, TimedReading { ts, reading })
            })
        }));
    }
    {
        let src = running[2].app.source::<TimedClick>("clicks")?;
        let stop = stop.clone();
        let seed = args.seed + 2;
        // Best effort: steady, heavier.
        let steady = Shape::steady(args.rate / 2.0);
        gens.push(std::thread::spawn(move || {
            load::run(src, steady, duration, seed, stop, |rng, _| {
                let user = rng.gen_range(0..20_000u64);
                let click = Click {
                    user,
                    page: rng.gen_range(0..100),
                };
                let ts = event_time(rng);
                let key = dirigo_engine::key_hash(&user.to_le_bytes());
                (key, TimedClick { ts, click })
            })
        }));
    }

    println!(
        "{:>6} {:<10} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7} {:>6} {:>8}",
        "t(s)", "app", "runs/s", "out/s", "p50ms", "p99ms", "p999ms", "lessees", "leases", "in-SLO"
    );
    let start = Instant::now();
    let mut checkpoints: Vec<Duration> = Vec::new();
    let mut last = start;
    let mut prev_runs: Vec<u64> = vec![0; running.len()];
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(1000).saturating_sub(last.elapsed()));
        let dt = last.elapsed().as_secs_f64();
        last = Instant::now();
        if !args.volatile {
            let t = Instant::now();
            running[0].app.checkpoint()?;
            checkpoints.push(t.elapsed());
        }
        let stats = node.stats()?;
        for (i, r) in running.iter_mut().enumerate() {
            let out = (r.drain)();
            r.outputs += out;
            if let Some(a) = stats.app(r.app.name()) {
                let runs = a.runs - prev_runs[i];
                prev_runs[i] = a.runs;
                println!(
                    "{:>6.1} {:<10} {:>9.0} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>6} {:>7.1}%",
                    start.elapsed().as_secs_f64(),
                    r.app.name(),
                    runs as f64 / dt,
                    out as f64 / dt,
                    pct(a, 0.5),
                    pct(a, 0.99),
                    pct(a, 0.999),
                    a.lessees,
                    a.leases_granted,
                    a.satisfaction() * 100.0
                );
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reports: Vec<LoadReport> = gens
        .into_iter()
        .map(|g| g.join().unwrap_or_default())
        .collect();
    flush_windows(&running, args.volatile)?;
    let drained = running
        .iter()
        .all(|r| r.app.quiesce(Duration::from_secs(30)).is_ok());
    for r in running.iter_mut() {
        r.outputs += (r.drain)();
    }
    let stats = node.stats()?;
    summary(&stats, &running, &reports, start.elapsed(), drained);
    node.shutdown();
    if !args.volatile {
        durability(&cfg, &args, &mut checkpoints)?;
    }
    if let Some(dir) = temp_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// Close every window still open: the watermark of each source to the
/// end of time (a durable source refuses a client's: it takes the line at
/// the end of time instead).
fn flush_windows(running: &[Running], volatile: bool) -> Result<()> {
    running[1]
        .app
        .source::<TimedReading>("readings")?
        .watermark(Time::MAX)?;
    running[2]
        .app
        .source::<TimedClick>("clicks")?
        .watermark(Time::MAX)?;
    let lines = running[0].app.source::<Line>("lines")?;
    if volatile {
        lines.watermark(Time::MAX)?;
    } else {
        let end = vec![(0, timed::end_of_lines())];
        lines
            .send_batch(end, Duration::from_secs(10))
            .map_err(|r| r.error)?;
    }
    Ok(())
}

/// The durable wordcount's checkpoints, then a restart: a new node on the
/// same folder recovers the app (newest checkpoint + the log after it).
fn durability(cfg: &NodeConfig, args: &Args, checkpoints: &mut [Duration]) -> Result<()> {
    checkpoints.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if let (Some(lo), Some(hi)) = (checkpoints.first(), checkpoints.last()) {
        println!(
            "
durable wordcount: {} checkpoints (one a second), p50 {:.2} ms (min {:.2}, \
             max {:.2})",
            checkpoints.len(),
            ms(checkpoints[checkpoints.len() / 2]),
            ms(*lo),
            ms(*hi)
        );
    }
    let node = Node::start(cfg.clone())?;
    let (wc, rx) = timed::wordcount("wordcount", Duration::from_millis(20), args.work_us, true);
    let t = Instant::now();
    let app = node.deploy(wc)?;
    let deploy = t.elapsed();
    let rec = app.recovery().cloned().unwrap_or_default();
    app.quiesce(Duration::from_secs(30))?;
    // Outputs of the replay: the windows the restored timers and the
    // replayed lines' watermarks close.
    let rows = rx.drain().len();
    println!(
        "restart: a new node recovered wordcount from checkpoint {} and replayed {} log \
         entries ({} events, {} barriers) in {:.1} ms; {} damaged checkpoints skipped; \
         the replay emitted {rows} output row(s)",
        rec.checkpoint.map_or("none".to_string(), |c| c.to_string()),
        rec.replayed_events + rec.replayed_barriers,
        rec.replayed_events,
        rec.replayed_barriers,
        ms(deploy),
        rec.skipped.len()
    );
    node.shutdown();
    Ok(())
}

fn summary(
    stats: &NodeStats,
    running: &[Running],
    reports: &[LoadReport],
    wall: Duration,
    drained: bool,
) {
    println!(
        "\nsummary ({:.1} s wall, {} shards, drained: {drained})",
        wall.as_secs_f64(),
        stats.shards.len()
    );
    println!(
        "{:<10} {:>9} {:>7} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8}",
        "app",
        "events",
        "shed",
        "late",
        "runs",
        "outputs",
        "p50ms",
        "p99ms",
        "p999ms",
        "in-SLO",
        "q-p99ms",
        "leases",
        "revokes",
        "lessees~"
    );
    for (r, rep) in running.iter().zip(reports) {
        let Some(a) = stats.app(r.app.name()) else {
            continue;
        };
        println!(
            "{:<10} {:>9} {:>7} {:>6} {:>9} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>7.2}% {:>8.2} {:>7} {:>7} {:>8.2}",
            r.app.name(),
            rep.sent,
            rep.shed,
            a.late_events,
            a.runs,
            r.outputs,
            pct(a, 0.5),
            pct(a, 0.99),
            pct(a, 0.999),
            a.satisfaction() * 100.0,
            a.queueing.value_at_quantile(0.99) as f64 / 1e6,
            a.leases_granted,
            a.revokes,
            a.lessee_ns as f64 / wall.as_nanos() as f64
        );
    }
    let busy = stats.busy_ns() as f64 / 1e9;
    println!(
        "core-seconds busy: {busy:.2} of {:.2} available ({:.0}%); per shard: {}\n\
         (late: events behind their window's watermark, dropped; q-p99ms: p99 of the \
         queueing delay of every run; lessees~: mean lessees hosted)",
        wall.as_secs_f64() * stats.shards.len() as f64,
        100.0 * busy / (wall.as_secs_f64() * stats.shards.len() as f64),
        stats
            .shards
            .iter()
            .map(|s| format!("{:.2}", s.busy_ns as f64 / 1e9))
            .collect::<Vec<_>>()
            .join(" ")
    );
}
