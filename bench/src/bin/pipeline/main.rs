//! `pipeline`: Dirigo's message path against timely dataflow's, on the same
//! cores and the same generated input, in one run (issue 12).
//!
//! Throughput workloads, each on both engines with the same input (a client
//! feeds `--events` events over `--keys` keys in batches of `--batch`), each
//! checked against a sequential oracle, first on a small run and then on
//! every timed run:
//! - `keyed-count`: one operator counts per key (`Keyed<u64>` on Dirigo, a
//!   `HashMap` in a timely `unary` after an `exchange` by key);
//! - `chain`: map, filter, map (`chain.rs`);
//! - `rekey`: two keyed counts with a re-key between them (`rekey.rs`).
//!
//! Dirigo: a node of `n` pinned shards fed from one client thread, timed to
//! the window-close barrier at the sink (or the last output). Timely: `n`
//! workers in one process, worker 0 feeding the input in rounds of one
//! batch (`worker.step()` per round), timed until the probe passes the last
//! round.
//!
//! Latency (Dirigo only, `latency.rs`): the 3-operator chain, open loop, one
//! event per send at each of `--rates`, and batches of 64 at half the
//! 1-shard capacity of the chain measured at batch 64 in the same run; HDR
//! percentiles over `--latency-secs` per rate. Memory: bytes per queued
//! message (`queued.rs`).
//!
//! Rerun: `cargo run --release -p dirigo-bench --bin pipeline` (defaults:
//! 4 M events, 100 k keys, batches 4096 and 64, 1 and 2 shards/workers, 3
//! runs each, medians). Say how many cores: this prints it.

mod chain;
mod latency;
mod queued;
mod rekey;

/// The allocator of the binaries (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use clap::Parser;
use dirigo_engine::{
    AppBuilder, BarrierKind, Context, Function, Keyed, Node, NodeConfig, Placement, SinkEvent,
    SinkReceiver,
};

#[derive(Parser, Debug)]
#[command(about = "Dirigo against timely dataflow on the same input and cores")]
struct Cli {
    #[arg(long, default_value_t = 4_000_000)]
    events: u64,
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    #[arg(long, value_delimiter = ',', default_value = "4096,64")]
    batch: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    shards: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Throughput workloads to run (keyed-count, chain, rekey).
    #[arg(long, value_delimiter = ',', default_value = "keyed-count,chain,rekey")]
    workloads: Vec<String>,
    /// Open-loop rates for the latency workload, events/s.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    rates: Vec<u64>,
    /// Seconds per latency rate.
    #[arg(long, default_value_t = 2)]
    latency_secs: u64,
    /// Internal: measure bytes per queued event for client batches of this
    /// size in this (fresh) process, print it, and exit.
    #[arg(long, hide = true)]
    queued_only: Option<u64>,
}

type Error = Box<dyn std::error::Error>;

/// Keys seen and events counted: what both engines must end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Totals {
    keys: u64,
    events: u64,
}

/// The input: event `i` has key `mix(i) % keys`.
fn key_of(i: u64, keys: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) % keys
}

fn oracle(events: u64, keys: u64) -> Totals {
    let mut seen = std::collections::HashSet::new();
    (0..events).for_each(|i| {
        seen.insert(key_of(i, keys));
    });
    Totals {
        keys: seen.len() as u64,
        events,
    }
}

/// Counts per key; at a window close, emits its totals.
struct Count;
impl Function for Count {
    type In = u64;
    type Out = (u64, u64);
    type State = Keyed<u64>;
    fn on_message(&self, st: &mut Keyed<u64>, key: u64, _: u64, _: &mut Context<'_, (u64, u64)>) {
        *st.entry(key) += 1;
    }
    fn on_critical(
        &self,
        st: &mut Keyed<u64>,
        _: &dirigo_engine::Barrier,
        _: u16,
        ctx: &mut Context<'_, (u64, u64)>,
    ) {
        let keys = st.len() as u64;
        let events = st.iter().map(|(_, n)| *n).sum();
        ctx.emit(0, (keys, events));
    }
}

/// A node of `shards` pinned shards taking client batches of `batch`.
fn start_node(shards: usize, batch: usize) -> Result<Node, Error> {
    Ok(Node::start(NodeConfig {
        shards,
        placement: Placement::Pinned,
        max_batch: batch.max(1),
        ..Default::default()
    })?)
}

/// The input, cut into client batches: event `i` is `(key_of(i), i)`.
fn batches(events: u64, keys: u64, batch: usize) -> Vec<Vec<(u64, u64)>> {
    (0..events)
        .step_by(batch)
        .map(|lo| {
            (lo..(lo + batch as u64).min(events))
                .map(|i| (key_of(i, keys), i))
                .collect()
        })
        .collect()
}

/// Feed the same input to a timely input, one round per batch.
fn feed_timely<A: timely::communication::Allocate>(
    worker: &mut timely::worker::Worker<A>,
    input: &mut timely::dataflow::InputHandle<u64, (u64, u64)>,
    events: u64,
    keys: u64,
    batch: usize,
) {
    let (mut round, mut lo) = (0u64, 0u64);
    while lo < events {
        let hi = (lo + batch as u64).min(events);
        for i in lo..hi {
            input.send((key_of(i, keys), i));
        }
        lo = hi;
        round += 1;
        input.advance_to(round);
        worker.step();
    }
}

fn dirigo(shards: usize, events: u64, keys: u64, batch: usize) -> Result<(f64, Totals), Error> {
    let mut b = AppBuilder::new("pipeline-count");
    let src = b.source::<u64>("events");
    let counted = b.operator("count", Count, &[src]);
    let out = b.sink("out", counted);
    count_to_barrier(
        start_node(shards, batch)?,
        b.build()?,
        out,
        events,
        keys,
        batch,
    )
}

/// Deploy `app` (source `events`) on `node`, feed it the input, close the
/// window, and add up the `(keys, events)` its sink `out` gets before the
/// barrier; the rate is events over the time from the first send to it.
fn count_to_barrier(
    node: Node,
    app: dirigo_engine::App,
    out: SinkReceiver<(u64, u64)>,
    events: u64,
    keys: u64,
    batch: usize,
) -> Result<(f64, Totals), Error> {
    let app = node.deploy(app)?;
    let src = app.source::<u64>("events")?;
    let input = batches(events, keys, batch);
    let start = Instant::now();
    for b in input {
        src.send_batch(b, Duration::from_secs(30))
            .map_err(|r| r.error)?;
    }
    app.inject_barrier(BarrierKind::WindowClose, 1)?;
    let mut got = Totals::default();
    loop {
        match out.recv_timeout(Duration::from_secs(60)) {
            Some(SinkEvent::Data { value: (k, n), .. }) => {
                got.keys += k;
                got.events += n;
            }
            Some(SinkEvent::Barrier(_)) => break,
            None => return Err("no barrier at the sink in 60 s".into()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    node.shutdown();
    Ok((events as f64 / secs, got))
}

/// Timely's keyed count: `(key, value)` pairs exchanged by key and counted
/// per key in a `HashMap`; `out` holds this worker's keys and events.
fn timely_count<G: timely::dataflow::Scope<Timestamp = u64>>(
    events: &timely::dataflow::Stream<G, (u64, u64)>,
    name: &str,
    out: std::rc::Rc<std::cell::RefCell<Totals>>,
) -> timely::dataflow::Stream<G, u64> {
    use timely::dataflow::channels::pact::Exchange;
    use timely::dataflow::operators::Operator;
    events.unary(Exchange::new(|x: &(u64, u64)| x.0), name, move |_, _| {
        let mut counts: HashMap<u64, u64> = HashMap::new();
        let mut buf = Vec::new();
        move |input, output| {
            input.for_each(|cap, data| {
                data.swap(&mut buf);
                for (k, _) in buf.drain(..) {
                    *counts.entry(k).or_insert(0) += 1;
                }
                let _ = output.session(&cap);
            });
            let mut t = out.borrow_mut();
            t.keys = counts.len() as u64;
            t.events = counts.values().sum();
        }
    })
}

/// Timely's workers' (seconds, result) as the rate over the slowest worker
/// and the results added up.
fn timely_total<T: Default>(
    joined: Vec<Result<(f64, T), String>>,
    events: u64,
    add: impl Fn(&mut T, T),
) -> Result<(f64, T), Error> {
    let (mut secs, mut total) = (0.0f64, T::default());
    for r in joined {
        let (s, t) = r.map_err(|e| format!("timely worker: {e}"))?;
        secs = secs.max(s);
        add(&mut total, t);
    }
    Ok((events as f64 / secs, total))
}

/// A stateless step: `f` of its input, or nothing.
struct Step(fn(u64) -> Option<u64>);
impl Function for Step {
    type In = u64;
    type Out = u64;
    type State = dirigo_engine::Merged<()>;
    fn on_message(
        &self,
        _: &mut dirigo_engine::Merged<()>,
        key: u64,
        v: u64,
        ctx: &mut Context<'_, u64>,
    ) {
        if let Some(out) = (self.0)(v) {
            ctx.emit(key, out);
        }
    }
}

fn timely(workers: usize, events: u64, keys: u64, batch: usize) -> Result<(f64, Totals), Error> {
    use timely::dataflow::operators::{Input, Probe};
    use timely::dataflow::{InputHandle, ProbeHandle};
    let results = timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let mut input = InputHandle::<u64, (u64, u64)>::new();
        let mut probe = ProbeHandle::new();
        let totals = std::rc::Rc::new(std::cell::RefCell::new(Totals::default()));
        let out = totals.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let events = scope.input_from(&mut input);
            timely_count(&events, "count", out).probe_with(&mut probe);
        });
        let start = Instant::now();
        if index == 0 {
            feed_timely(worker, &mut input, events, keys, batch);
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
        let secs = start.elapsed().as_secs_f64();
        let t = *totals.borrow();
        (secs, t)
    })
    .map_err(|e| format!("timely: {e}"))?;
    timely_total(results.join(), events, |t, w: Totals| {
        t.keys += w.keys;
        t.events += w.events;
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One engine's run of a workload: events/s and what it ended with.
type Run<T> = fn(usize, u64, u64, usize) -> Result<(f64, T), Error>;

/// A workload on both engines, with its oracle.
struct Workload<T> {
    name: &'static str,
    oracle: fn(u64, u64) -> T,
    dirigo: Run<T>,
    timely: Run<T>,
}

impl<T: PartialEq + Debug> Workload<T> {
    /// Both engines' outputs of a small run equal the oracle's.
    fn check(&self, shards: &[usize]) -> Result<(), Error> {
        let want = (self.oracle)(20_000, 1_000);
        for &n in shards {
            let (_, d) = (self.dirigo)(n, 20_000, 1_000, 256)?;
            let (_, t) = (self.timely)(n, 20_000, 1_000, 256)?;
            if d != want || t != want {
                let name = self.name;
                return Err(
                    format!("{name}: oracle {want:?}, dirigo {d:?}, timely {t:?} ({n})").into(),
                );
            }
        }
        Ok(())
    }

    /// Median events/s of `runs` alternating runs on each engine, each
    /// checked against the oracle.
    fn measure(&self, cli: &Cli, n: usize, batch: usize) -> Result<(f64, f64), Error> {
        let want = (self.oracle)(cli.events, cli.keys);
        let (mut d, mut t) = (Vec::new(), Vec::new());
        for _ in 0..cli.runs {
            for (run, rates) in [(self.dirigo, &mut d), (self.timely, &mut t)] {
                let (rate, got) = run(n, cli.events, cli.keys, batch)?;
                if got != want {
                    return Err(format!("{}: {got:?}, oracle {want:?}", self.name).into());
                }
                rates.push(rate);
            }
        }
        Ok((median(d), median(t)))
    }

    fn table(&self, cli: &Cli) -> Result<(), Error> {
        for &batch in &cli.batch {
            for &n in &cli.shards {
                let (d, t) = self.measure(cli, n, batch)?;
                let name = self.name;
                println!(
                    "{name:<12} {batch:>6} {n:>6} {d:>14.0} {t:>14.0} {:>8.3}",
                    d / t
                );
            }
        }
        Ok(())
    }
}

fn keyed_count() -> Workload<Totals> {
    Workload {
        name: "keyed-count",
        oracle,
        dirigo,
        timely,
    }
}

fn chain_workload() -> Workload<chain::Outputs> {
    Workload {
        name: "chain",
        oracle: |events, _| chain::oracle(events),
        dirigo: chain::dirigo,
        timely: chain::timely,
    }
}

fn rekey_workload() -> Workload<Totals> {
    Workload {
        name: "rekey",
        oracle: rekey::oracle,
        dirigo: rekey::dirigo,
        timely: rekey::timely,
    }
}

fn throughput(cli: &Cli) -> Result<(), Error> {
    let run = |name: &str| cli.workloads.iter().any(|w| w == name);
    let (count, chain, rekey) = (keyed_count(), chain_workload(), rekey_workload());
    if run("keyed-count") {
        count.check(&cli.shards)?;
    }
    if run("chain") {
        chain.check(&cli.shards)?;
    }
    if run("rekey") {
        rekey.check(&cli.shards)?;
    }
    println!("outputs of a small run match the oracle on both engines");
    println!(
        "{:<12} {:>6} {:>6} {:>14} {:>14} {:>8}",
        "workload", "batch", "cores", "dirigo ev/s", "timely ev/s", "ratio"
    );
    if run("keyed-count") {
        count.table(cli)?;
    }
    if run("chain") {
        chain.table(cli)?;
    }
    if run("rekey") {
        rekey.table(cli)?;
    }
    Ok(())
}

fn latency_table(cli: &Cli) -> Result<(), Error> {
    println!(
        "{:<16} {:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "latency",
        "ev/s",
        "cores",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "engine p50",
        "delivered"
    );
    let cfg = |shards| NodeConfig {
        shards,
        placement: Placement::Pinned,
        ..Default::default()
    };
    let row = |what: &str, rate: u64, n: usize, l: latency::Latency| {
        println!(
            "{what:<16} {rate:>8} {n:>6} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10}",
            l.p50, l.p99, l.p999, l.max, l.engine_p50, l.delivered
        );
    };
    for &rate in &cli.rates {
        for &n in &cli.shards {
            let l = latency::run(cfg(n), false, rate, 1, rate * cli.latency_secs)?;
            row("chain, 1/send", rate, n, l);
        }
        // Spread over 2 shards, the chain crosses shards at every hop;
        // colocated, it crosses none.
        for &n in cli.shards.iter().filter(|&&n| n > 1) {
            let l = latency::run(cfg(n), true, rate, 1, rate * cli.latency_secs)?;
            row("  colocated", rate, n, l);
        }
        // The same with shards that poll for 2 ms before they park: at low
        // rates a parked shard's wake is most of the latency.
        for &n in &cli.shards {
            let polling = NodeConfig {
                spin_before_park: Duration::from_millis(2),
                ..cfg(n)
            };
            let l = latency::run(polling, false, rate, 1, rate * cli.latency_secs)?;
            row("  polling 2 ms", rate, n, l);
        }
    }
    // Batches of 64 at half the 1-shard capacity at batch 64.
    let (capacity, _) = chain::dirigo(1, cli.events.min(1_000_000), cli.keys, 64)?;
    let rate = (capacity / 2.0) as u64;
    for &n in &cli.shards {
        let l = latency::run(cfg(n), false, rate, 64, rate * cli.latency_secs)?;
        row("chain, 64/send", rate, n, l);
    }
    println!("(1-shard capacity of the chain at batch 64: {capacity:.0} ev/s)");
    Ok(())
}

/// Events queued by the memory measurement.
const QUEUED: u64 = 1_000_000;

/// Bytes per queued event, measured in a fresh child process (this
/// binary), so memory freed by earlier workloads cannot hide the growth.
fn queued_in_child(batch: u64) -> Result<String, Error> {
    let me = std::env::current_exe()?;
    let out = std::process::Command::new(me)
        .arg("--queued-only")
        .arg(batch.to_string())
        .output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("queued measurement failed: {err}").into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    if let Some(batch) = cli.queued_only {
        println!("{:.1}", queued::bytes_per_event(QUEUED, batch)?);
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("pipeline: {cores} cores");
    throughput(&cli)?;
    latency_table(&cli)?;
    for batch in [1, 4096] {
        let b = queued_in_child(batch)?;
        println!("bytes per queued event ({QUEUED} queued), client batches of {batch}: {b}");
    }
    println!(
        "rerun: cargo run --release -p dirigo-bench --bin pipeline -- --events {} --keys {} --runs {}",
        cli.events, cli.keys, cli.runs
    );
    Ok(())
}
