//! `throughput`: events per second through the engine's message path.
//!
//! What it measures: how fast a node takes `--events` keyed events from a
//! client, runs them through a stateful operator and closes the window:
//! the time from the first `SourceHandle::send_batch` to the window-close
//! barrier arriving at the sink, for each shard count of `--shards`, as the
//! median, min and max events/s of `--runs` runs (a fresh node each).
//!
//! How: one app, `events -> count -> out`. `count` keeps a `Keyed<u64>`
//! count per key and emits nothing per message; on the window-close
//! critical message (`Function::on_critical`, on the whole, consolidated
//! state) it emits one output, the sum of all counts and the number of
//! keys, and clears its state. The client (this process's main thread)
//! sends the events, key `i % --keys` for event `i` (the key hash is
//! `key_hash` of the key index as little-endian u64), in batches of 4096
//! built before the clock starts, then injects
//! `BarrierKind::WindowClose` with tag 1 and waits at the sink for the
//! output and the barrier. The output is checked against a sequential
//! oracle over the same events (the sum must be `--events` and the key
//! count the number of distinct key hashes); a mismatch or an engine error
//! exits non-zero. Nodes are `NodeConfig { shards, placement, ..Default }`
//! (pinned unless `--unpinned`), so the engine's default policy and
//! autoscaling (leases) are on. Each run's line says when the client was
//! done: a shard's inbox can hold many batches, so the client may finish
//! long before the engine does, and the figure is then the engine's rate.
//!
//! The app's name is fixed, so its operators' homes (`home_shard`) are the
//! same in every run; they are printed. On 2 shards (by the engine's
//! current formula) the source is on shard 0 and `count` and the sink on
//! shard 1, so the 2-shard figure includes a cross-shard hop. Also
//! printed: the machine's cores, and the CPU time this process and all
//! other processes used during the timed windows (`bench/src/cpu.rs`), so
//! a run disturbed by something else on the machine shows as such.
//!
//! The file uses only the engine's crate-root API (`dirigo_engine::{..}`),
//! so it builds against an older engine of that API: check that engine out
//! beside this bench crate and run the same command there to compare the
//! two engines.
//!
//! Rerun: `cargo run --release -p dirigo-bench --bin throughput` (defaults:
//! `--shards 1,2 --runs 5 --events 4000000 --keys 100000`, pinned; about
//! 25 s on a 2-core machine); the exact command is printed at the end.

/// The allocator of the binaries (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use dirigo_engine::{
    home_shard, key_hash, AppBuilder, Barrier, BarrierKind, Context, Function, Keyed, Node,
    NodeConfig, Placement, SinkEvent, SinkReceiver,
};

// The bench library's CPU accounting, compiled into this binary rather than
// linked with the rest of the library: the instrument stays small (linking
// the whole library measured 2-3% slower on the 1-shard row, by code
// layout alone).
#[path = "../cpu.rs"]
#[allow(unreachable_pub)] // public in the library, where it is reachable
mod cpu;
use cpu::CpuUse;

/// The app's name (it fixes the operators' home shards).
const APP: &str = "throughput-3";
/// Events per `send_batch` (the engine's default `max_batch`).
const BATCH: usize = 4096;
/// Longest wait for one batch to be taken (backpressure).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the output and the barrier at the sink.
const SINK_TIMEOUT: Duration = Duration::from_secs(120);

type Error = Box<dyn std::error::Error>;

#[derive(Parser, Debug)]
#[command(about = "Events/s through source -> keyed count -> sink, to a window-close barrier")]
struct Cli {
    /// Shard counts to run (comma-separated), each a fresh node per run.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    shards: Vec<usize>,
    /// Runs per shard count.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Events per run.
    #[arg(long, default_value_t = 4_000_000)]
    events: u64,
    /// Distinct keys the events go round-robin over.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Let the OS place shard threads instead of pinning them.
    #[arg(long)]
    unpinned: bool,
}

impl Cli {
    fn placement(&self) -> Placement {
        if self.unpinned {
            Placement::Unpinned
        } else {
            Placement::Pinned
        }
    }

    /// The exact command that reruns this configuration.
    fn rerun(&self) -> String {
        let shards: Vec<String> = self.shards.iter().map(|s| s.to_string()).collect();
        format!(
            "cargo run --release -p dirigo-bench --bin throughput -- --shards {} --runs {} \
             --events {} --keys {}{}",
            shards.join(","),
            self.runs,
            self.events,
            self.keys,
            if self.unpinned { " --unpinned" } else { "" }
        )
    }

    fn validate(&self) -> Result<(), String> {
        if self.shards.is_empty() || self.shards.iter().any(|&s| s == 0 || s > 256) {
            return Err(format!("--shards: each in 1..=256, got {:?}", self.shards));
        }
        if self.runs == 0 || self.runs > 1000 {
            return Err(format!("--runs must be in 1..=1000, got {}", self.runs));
        }
        if self.events == 0 || self.keys == 0 {
            return Err("--events and --keys must be at least 1".into());
        }
        Ok(())
    }
}

/// The window's output: the sum of all counts and the number of keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Totals {
    sum: u64,
    keys: u64,
}

/// Counts events per key; one [`Totals`] per window close.
struct Count;

impl Function for Count {
    type In = u64;
    type Out = Totals;
    type State = Keyed<u64>;
    fn on_message(&self, st: &mut Keyed<u64>, key: u64, _: u64, _: &mut Context<'_, Totals>) {
        *st.entry(key) += 1;
    }
    fn on_critical(&self, st: &mut Keyed<u64>, b: &Barrier, _: u16, ctx: &mut Context<'_, Totals>) {
        if b.kind != BarrierKind::WindowClose {
            return;
        }
        let mut t = Totals { sum: 0, keys: 0 };
        for (_, n) in st.drain() {
            t.sum += n;
            t.keys += 1;
        }
        ctx.emit(0, t);
    }
}

/// The events, in send order: event `i` is key index `i % keys`, keyed by
/// the hash of its little-endian bytes; cut into batches of [`BATCH`].
fn make_batches(events: u64, keys: u64) -> Vec<Vec<(u64, u64)>> {
    let mut batches = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..events {
        let k = i % keys;
        batch.push((key_hash(&k.to_le_bytes()), k));
        if batch.len() == BATCH {
            batches.push(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// What `count` must emit for these events, computed sequentially.
fn oracle(batches: &[Vec<(u64, u64)>]) -> Totals {
    let mut seen = HashSet::new();
    let mut sum = 0u64;
    for (key, _) in batches.iter().flatten() {
        seen.insert(*key);
        sum += 1;
    }
    Totals {
        sum,
        keys: seen.len() as u64,
    }
}

// ---------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------

/// One run's figures.
struct RunResult {
    events_per_s: f64,
    /// From the first send to the barrier injected (the client's part).
    send_s: f64,
    /// From the first send to the barrier at the sink.
    total_s: f64,
    cpu: Option<CpuUse>,
}

/// Send `batches` through a fresh node of `shards` shards, close the
/// window, and check the output against `expected`.
fn one_run(
    shards: usize,
    placement: Placement,
    template: &[Vec<(u64, u64)>],
    expected: Totals,
) -> Result<RunResult, Error> {
    let node = Node::start(NodeConfig {
        shards,
        placement,
        ..Default::default()
    })?;
    let mut b = AppBuilder::new(APP);
    let events = b.source::<u64>("events");
    let counted = b.operator("count", Count, &[events]);
    let out = b.sink("out", counted);
    let app = node.deploy(b.build()?)?;
    let src = app.source::<u64>("events")?;
    let batches = template.to_vec();
    let n: usize = batches.iter().map(Vec::len).sum();

    let cpu0 = cpu::snap();
    let start = Instant::now();
    for batch in batches {
        src.send_batch(batch, SEND_TIMEOUT).map_err(|r| r.error)?;
    }
    app.inject_barrier(BarrierKind::WindowClose, 1)?;
    let send_s = start.elapsed().as_secs_f64();
    let outputs = wait_for_barrier(&out)?;
    let total_s = start.elapsed().as_secs_f64();
    let cpu = CpuUse::between(cpu0, cpu::snap(), total_s);
    node.shutdown();

    if outputs != [expected] {
        return Err(format!(
            "wrong output: the sink got {outputs:?} before the barrier, the sequential oracle \
             says [{expected:?}]"
        )
        .into());
    }
    Ok(RunResult {
        events_per_s: n as f64 / total_s,
        send_s,
        total_s,
        cpu,
    })
}

/// Every output the sink delivers before the window-close barrier of tag 1.
fn wait_for_barrier(out: &SinkReceiver<Totals>) -> Result<Vec<Totals>, Error> {
    let deadline = Instant::now() + SINK_TIMEOUT;
    let mut outputs = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match out.recv_timeout(left) {
            Some(SinkEvent::Data { value, .. }) => outputs.push(value),
            Some(SinkEvent::Barrier(b)) if b.kind == BarrierKind::WindowClose && b.tag == 1 => {
                return Ok(outputs)
            }
            Some(SinkEvent::Barrier(_)) => {}
            None => {
                return Err(format!(
                    "no window-close barrier at the sink within {} s (outputs so far: \
                     {outputs:?})",
                    SINK_TIMEOUT.as_secs()
                )
                .into())
            }
        }
    }
}

// ---------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------

/// Median and range of a few repetitions (an even count's median is the
/// mean of the middle two).
#[derive(Clone, Copy, Debug)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    /// `None` for no samples.
    fn of(xs: &[f64]) -> Option<Spread> {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// One shard count's runs.
struct ConfigRuns {
    shards: usize,
    rates: Vec<f64>,
    cpu: Option<CpuUse>,
}

/// Run every shard count `cli.runs` times; stops at the first failure.
fn run_all(
    cli: &Cli,
    batches: &[Vec<(u64, u64)>],
    expected: Totals,
) -> Result<Vec<ConfigRuns>, Error> {
    let mut all = Vec::new();
    for &shards in &cli.shards {
        let mut c = ConfigRuns {
            shards,
            rates: Vec::new(),
            cpu: Some(CpuUse::default()),
        };
        for i in 0..cli.runs {
            let r = one_run(shards, cli.placement(), batches, expected)
                .map_err(|e| format!("shards {shards}, run {}: {e}", i + 1))?;
            println!(
                "  shards {shards} run {}/{}: {:>6.3} M events/s (client done in {:.3} s, \
                 barrier at the sink after {:.3} s)",
                i + 1,
                cli.runs,
                r.events_per_s / 1e6,
                r.send_s,
                r.total_s
            );
            c.rates.push(r.events_per_s);
            c.cpu = c.cpu.zip(r.cpu).map(|(a, b)| a + b);
        }
        all.push(c);
    }
    Ok(all)
}

/// The machine, the workload and the app's home shards.
fn describe(cli: &Cli, expected: Totals) -> String {
    let listed = cpu::snap().map_or("?".to_string(), |c| c.cpus.to_string());
    let usable = std::thread::available_parallelism().map_or("?".to_string(), |n| n.to_string());
    let homes: Vec<String> = cli
        .shards
        .iter()
        .map(|&s| {
            let h: Vec<String> = (0..3).map(|i| home_shard(APP, i, s).to_string()).collect();
            format!("{s} shards: {}", h.join("/"))
        })
        .collect();
    format!(
        "throughput: events -> count (Keyed<u64>, one output per window close) -> out; {} events \
         round-robin over {} keys ({} distinct key hashes), batches of {BATCH}; {} runs per \
         shard count, a fresh node each, {}\n\
         machine: {listed} cores (/proc/stat), {usable} available to this process\n\
         home shards of source/count/sink of app {APP}: {}\n",
        cli.events,
        cli.keys,
        expected.keys,
        cli.runs,
        if cli.unpinned { "unpinned" } else { "pinned" },
        homes.join("; ")
    )
}

/// The per-configuration figures, the CPU used and the rerun command.
fn summary(cli: &Cli, all: &[ConfigRuns]) -> String {
    let mut s = format!(
        "{:>6} {:>14} {:>14} {:>14} {:>9} {:>9} {:>9} {:>9}\n",
        "shards",
        "median ev/s",
        "min ev/s",
        "max ev/s",
        "vs first",
        "own-cs",
        "others-cs",
        "cap-cs"
    );
    let first = all.first().and_then(|c| Spread::of(&c.rates));
    let mut cpu = Some(CpuUse::default());
    for c in all {
        let Some(sp) = Spread::of(&c.rates) else {
            continue;
        };
        let vs = first.map_or(1.0, |f| sp.median / f.median);
        let (own, others, cap) = c.cpu.map_or(("?".into(), "?".into(), "?".into()), |u| {
            (
                format!("{:.2}", u.own_s),
                format!("{:.2}", u.others_s),
                format!("{:.2}", u.capacity_s),
            )
        });
        s += &format!(
            "{:>6} {:>14.0} {:>14.0} {:>14.0} {:>9.3} {:>9} {:>9} {:>9}\n",
            c.shards, sp.median, sp.min, sp.max, vs, own, others, cap
        );
        cpu = cpu.zip(c.cpu).map(|(a, b)| a + b);
    }
    s += "ev/s: events from the first send to the window-close barrier at the sink; vs first: \
          median over the first row's; own-cs / others-cs: CPU core-seconds of this process / \
          of every other process during the timed windows of that row's runs; cap-cs: \
          cores x wall time of those windows\n";
    if let Some(u) = cpu {
        s += &format!(
            "other processes used {:.2} core-s of the {:.2} the machine had during the timed \
             windows ({:.1}%)\n",
            u.others_s,
            u.capacity_s,
            100.0 * u.others_s / u.capacity_s.max(1e-9)
        );
    }
    s += &format!("rerun: {}\n", cli.rerun());
    s
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli.validate() {
        eprintln!("throughput: {e}");
        return ExitCode::from(2);
    }
    let batches = make_batches(cli.events, cli.keys);
    let expected = oracle(&batches);
    print!("{}", describe(&cli, expected));
    match run_all(&cli, &batches, expected) {
        Ok(all) => {
            println!();
            print!("{}", summary(&cli, &all));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("throughput: {e}");
            println!("rerun: {}", cli.rerun());
            ExitCode::FAILURE
        }
    }
}
