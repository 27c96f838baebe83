//! `slo_mix`: the paper's satisfaction-rate experiment.
//!
//! What it measures: how well each scheduling/scaling configuration keeps
//! latency-critical (LC) apps within their SLOs while best-effort (BE) apps
//! keep the cores busy, and how many core-seconds it uses for that. The
//! scenario (`dirigo_bench::slo_mix` has the details):
//!
//! - two LC apps (`events -> parse -> score -> out`, tens of µs of work per
//!   message per operator) with SLOs, fed open-loop on/off bursts of
//!   `--burst` times their mean rate, out of phase with each other;
//! - two BE apps (`events -> enrich -> out`) fed a steady open-loop rate;
//! - app names are chosen so that LC app `i` is homed on shard `i % shards`
//!   and BE app `j` on shard `j % shards` (every node of the app): each LC
//!   home shard also carries BE work. Every run checks the placement.
//!
//! The same seeded arrival schedule runs once under each configuration,
//! one after the other, each on a fresh node with engine defaults but for
//! the policy and autoscaling: `fifo-static` (FIFO, static placement, no
//! scaling: the baseline), `fifo-scaling`, `edf`, `llf`, `dirigo`.
//!
//! Printed: per configuration and app, sent/shed/delivered events, SLO
//! satisfaction, end-to-end latency p50/p99/p99.9, throughput, queueing p99,
//! leases granted, mean lessee count (lessee-time over the load window) and
//! lessees left after the drain; per configuration the busy core-seconds
//! (`NodeStats::busy_ns` summed over shards) and shed events; then the
//! comparison: LC satisfaction against `fifo-static`, and busy core-seconds
//! against a static placement sized for the bursts, defined as
//! `max(shards, ceil(peak nominal demand))` cores reserved for the whole load
//! window (a static placement keeps every core the peak needs all the time;
//! the nominal demand counts the spin work of each event at the scheduled
//! rates, not the engine's own cost, so it understates what static needs).
//!
//! Written under `--out` (default `target/slo-mix/`): for each config and app
//! the latency histogram (`<config>/<app>.hdr`, HdrHistogram V2 format, ns;
//! `<config>/<app>.txt`, its percentile distribution in ms), a per-config
//! `timeline.csv` (busy cores, outputs/s, in-SLO share and lessees per
//! sample), and `slo-mix.json` with the whole table.
//!
//! Rerun: `cargo run --release -p dirigo-bench --bin slo_mix` (defaults:
//! 10 s per configuration, 2 shards, seed 7); `--only fifo-static,dirigo`
//! for a subset; `--help` for the workload knobs.

/// The allocator of the binaries (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use dirigo_bench::load::Shape;
use dirigo_bench::slo_mix::{self, AppKind, AppSpec, Arrivals, Config, Workload};
use dirigo_engine::Placement;

#[derive(Parser, Debug)]
#[command(about = "LC SLO satisfaction and core-seconds under each scheduling configuration")]
struct Cli {
    /// Seconds of load per configuration.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seed of the arrivals' keys (the schedule itself is fixed by the flags).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Shards (cores) of each node.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Run only these configurations (comma-separated), in this order.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Config>,
    /// Output folder.
    #[arg(long, default_value = "target/slo-mix")]
    out: PathBuf,
    /// Let the OS place shard threads instead of pinning them.
    #[arg(long)]
    unpinned: bool,
    /// SLOs of the LC apps, ms, one per LC app (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "20,50")]
    lc_slo_ms: Vec<u64>,
    /// Mean events/s of each LC app.
    #[arg(long, default_value_t = 2000.0)]
    lc_rate: f64,
    /// LC burst factor: rate during a burst over the mean.
    #[arg(long, default_value_t = 5.0)]
    burst: f64,
    /// LC burst length, ms.
    #[arg(long, default_value_t = 300)]
    on_ms: u64,
    /// Time between LC bursts, ms.
    #[arg(long, default_value_t = 1700)]
    off_ms: u64,
    /// µs of work per event in LC `parse`.
    #[arg(long, default_value_t = 30)]
    parse_us: u64,
    /// µs of work per event in LC `score`.
    #[arg(long, default_value_t = 40)]
    score_us: u64,
    /// BE apps.
    #[arg(long, default_value_t = 2)]
    be_apps: usize,
    /// Steady events/s of each BE app.
    #[arg(long, default_value_t = 16000.0)]
    be_rate: f64,
    /// µs of work per event in BE `enrich`.
    #[arg(long, default_value_t = 25)]
    be_us: u64,
    /// Distinct keys per app.
    #[arg(long, default_value_t = 10_000)]
    keys: u32,
    /// Window barriers (critical messages: consolidate lessees) every this
    /// many ms; 0 = none.
    #[arg(long, default_value_t = 1000)]
    window_ms: u64,
    /// Timeline sample period, ms.
    #[arg(long, default_value_t = 250)]
    sample_ms: u64,
    /// Most seconds to wait for the backlog to drain after the load.
    #[arg(long, default_value_t = 60)]
    drain_s: u64,
}

fn fail(msg: String) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ValueValidation, msg)
        .exit()
}

/// The workload the flags describe, with placed app names.
fn workload(cli: &Cli) -> Workload {
    let shards = cli.shards;
    let period = Duration::from_millis(cli.on_ms + cli.off_ms);
    let n_lc = cli.lc_slo_ms.len();
    let lc_bases = ["fraud", "alerts", "pricing", "routing"];
    let be_bases = ["etl", "reindex", "archive", "rollup"];
    // Base names; `Workload::place` extends them to fix the homes.
    let base = |bases: [&str; 4], i: usize| {
        if i < bases.len() {
            bases[i].to_owned()
        } else {
            format!("{}{i}", bases[i % bases.len()])
        }
    };
    let mut apps = Vec::new();
    for (i, &slo) in cli.lc_slo_ms.iter().enumerate() {
        let home = i % shards;
        // Bursts spread evenly over the period, the first half a slot in.
        let first = period.mul_f64((i as f64 + 0.5) / n_lc as f64);
        apps.push(AppSpec {
            name: base(lc_bases, i),
            kind: AppKind::LatencyCritical {
                slo: Duration::from_millis(slo),
                parse_us: cli.parse_us,
                score_us: cli.score_us,
            },
            arrivals: Arrivals {
                shape: Shape {
                    rate: cli.lc_rate,
                    burst: cli.burst,
                    on: Duration::from_millis(cli.on_ms),
                    off: Duration::from_millis(cli.off_ms),
                },
                first_burst: first,
            },
            home,
            keys: cli.keys,
        });
    }
    for j in 0..cli.be_apps {
        let home = j % shards;
        apps.push(AppSpec {
            name: base(be_bases, j),
            kind: AppKind::BestEffort { work_us: cli.be_us },
            arrivals: Arrivals {
                shape: Shape::steady(cli.be_rate),
                first_burst: Duration::ZERO,
            },
            home,
            keys: cli.keys,
        });
    }
    let mut w = Workload {
        shards,
        placement: if cli.unpinned {
            Placement::Unpinned
        } else {
            Placement::Pinned
        },
        duration: Duration::from_secs(cli.duration),
        seed: cli.seed,
        window: (cli.window_ms > 0).then(|| Duration::from_millis(cli.window_ms)),
        sample: Duration::from_millis(cli.sample_ms),
        drain: Duration::from_secs(cli.drain_s),
        apps,
    };
    for app in w.place() {
        eprintln!(
            "warning: no name puts every node of {app} on its intended shard; the engine \
             decides (each run reports where lessors ran)"
        );
    }
    w
}

fn validate(cli: &Cli) {
    if cli.duration == 0 {
        fail("--duration must be at least 1 second".into());
    }
    if cli.shards == 0 || cli.shards > 256 {
        fail(format!("--shards must be in 1..=256, got {}", cli.shards));
    }
    if cli.lc_slo_ms.is_empty() || cli.lc_slo_ms.contains(&0) {
        fail("--lc-slo-ms needs at least one SLO, each at least 1 ms".into());
    }
    for (flag, v) in [("--lc-rate", cli.lc_rate), ("--be-rate", cli.be_rate)] {
        if !v.is_finite() || v < 0.0 {
            fail(format!("{flag} must be a finite rate >= 0, got {v}"));
        }
    }
    if !cli.burst.is_finite() || cli.burst < 1.0 {
        fail(format!("--burst must be >= 1, got {}", cli.burst));
    }
    if cli.on_ms + cli.off_ms == 0 {
        fail("--on-ms + --off-ms must be positive".into());
    }
    if cli.burst * cli.on_ms as f64 > (cli.on_ms + cli.off_ms) as f64 {
        fail(format!(
            "--burst {} over --on-ms {} exceeds the mean over the period ({} ms): \
             the off rate would have to be negative",
            cli.burst,
            cli.on_ms,
            cli.on_ms + cli.off_ms
        ));
    }
    if cli.keys == 0 {
        fail("--keys must be at least 1".into());
    }
    if cli.sample_ms == 0 {
        fail("--sample-ms must be at least 1".into());
    }
}

fn main() {
    let cli = Cli::parse();
    validate(&cli);
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let w = workload(&cli);
    print!("{}", slo_mix::describe(&w, &cores));
    let configs = if cli.only.is_empty() {
        Config::ALL.to_vec()
    } else {
        cli.only.clone()
    };

    let mut results = Vec::new();
    for c in configs {
        eprint!("running {} ... ", c.name());
        match slo_mix::run(c, &w) {
            Ok(r) => {
                eprintln!(
                    "LC in-SLO {:.2}%, busy {:.2} core-s, drained in {:.1} s",
                    r.lc_satisfaction() * 100.0,
                    r.busy_core_s,
                    r.drain_s
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("failed: {e}");
                std::process::exit(1);
            }
        }
    }

    println!();
    print!("{}", slo_mix::table(&results));
    println!(
        "\nin-SLO: outputs within SLO over outputs delivered (AppStats::satisfaction; shed events \
         are not in it, see shed); latencies end to end (client hand-off to sink), ms; ev/s: \
         outputs per second of the load window; qp99ms: p99 queueing delay of a run; lessees: \
         lessee-time over the load window (mean lessee count); left: lessees still hosted \
         after the drain."
    );
    println!();
    print!("{}", slo_mix::comparison(&results));
    match slo_mix::write_outputs(&cli.out, &w, &results) {
        Ok(files) => println!(
            "\nwrote {} files under {} (slo-mix.json, <config>/<app>.hdr|.txt, \
             <config>/timeline.csv)",
            files.len(),
            cli.out.display()
        ),
        Err(e) => {
            eprintln!("slo_mix: cannot write results: {e}");
            std::process::exit(1);
        }
    }
}
