//! `pipeline`: Dirigo's message path against timely dataflow's, on the same
//! cores and the same generated input, in one run (issue 12).
//!
//! Workloads so far: the keyed count, and the latency of a chain of three
//! stateless operators (below).
//!
//! The keyed count. A client feeds `--events` events over
//! `--keys` keys in batches of `--batch`; one operator counts per key
//! (`Keyed<u64>` on Dirigo, a `HashMap` in a timely `unary` after an
//! `exchange` by key); at the end the counts are checked against a
//! sequential oracle (the number of keys seen and the total). Dirigo: a
//! node of `n` pinned shards fed from one client thread, the window closed
//! by a barrier whose arrival at the sink ends the timing. Timely: `n`
//! workers in one process, worker 0 feeding the input in rounds of one
//! batch, the timing ended when the probe passes the last round.
//!
//! Latency (Dirigo only): source -> map -> filter -> map -> sink, one event
//! per `send`, open loop: event `i` is due at `start + i / rate`, carries
//! its due time, and its latency is the time the sink took it minus that
//! due time, so a late client or a stall counts (no coordinated omission).
//! The one client thread sends and reads the sink (`try_recv`) between
//! sends.
//! HDR percentiles over `--latency-secs` per rate.
//!
//! Rerun: `cargo run --release -p dirigo-bench --bin pipeline` (defaults:
//! 4 M events, 100 k keys, batches 4096 and 64, 1 and 2 shards/workers, 3
//! runs each, medians). Say how many cores: this prints it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use dirigo_engine::{
    AppBuilder, BarrierKind, Context, Function, Keyed, Node, NodeConfig, Placement, SinkEvent,
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
    /// Open-loop rates for the latency workload, events/s.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    rates: Vec<u64>,
    /// Seconds per latency rate.
    #[arg(long, default_value_t = 2)]
    latency_secs: u64,
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

fn dirigo(shards: usize, events: u64, keys: u64, batch: usize) -> Result<(f64, Totals), Error> {
    let node = Node::start(NodeConfig {
        shards,
        placement: Placement::Pinned,
        max_batch: batch.max(1),
        ..Default::default()
    })?;
    let mut b = AppBuilder::new("pipeline-count");
    let src = b.source::<u64>("events");
    let counted = b.operator("count", Count, &[src]);
    let out = b.sink("out", counted);
    let app = node.deploy(b.build()?)?;
    let src = app.source::<u64>("events")?;
    let batches: Vec<Vec<(u64, u64)>> = (0..events)
        .step_by(batch)
        .map(|lo| {
            (lo..(lo + batch as u64).min(events))
                .map(|i| (key_of(i, keys), i))
                .collect()
        })
        .collect();
    let start = Instant::now();
    for b in batches {
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

fn timely(workers: usize, events: u64, keys: u64, batch: usize) -> Result<(f64, Totals), Error> {
    use timely::dataflow::channels::pact::Exchange;
    use timely::dataflow::operators::{Input, Operator, Probe};
    use timely::dataflow::{InputHandle, ProbeHandle};
    let results = timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let mut input = InputHandle::<u64, (u64, u64)>::new();
        let mut probe = ProbeHandle::new();
        let totals = std::rc::Rc::new(std::cell::RefCell::new(Totals::default()));
        let out = totals.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .unary::<u64, _, _, _>(Exchange::new(|x: &(u64, u64)| x.0), "count", move |_, _| {
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
                .probe_with(&mut probe);
        });
        let start = Instant::now();
        if index == 0 {
            let mut round = 0u64;
            let mut lo = 0;
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
        input.close();
        while !probe.done() {
            worker.step();
        }
        let secs = start.elapsed().as_secs_f64();
        let t = *totals.borrow();
        (secs, t)
    })
    .map_err(|e| format!("timely: {e}"))?;
    let mut secs: f64 = 0.0;
    let mut total = Totals::default();
    for r in results.join() {
        let (s, t) = r.map_err(|e| format!("timely worker: {e}"))?;
        secs = secs.max(s);
        total.keys += t.keys;
        total.events += t.events;
    }
    Ok((events as f64 / secs, total))
}

/// A stateless step of the latency chain: `f` of its input.
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

/// Latency percentiles of one open-loop run, µs, and the events seen.
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    delivered: u64,
}

fn latency(shards: usize, rate: u64, secs: u64) -> Result<Latency, Error> {
    let node = Node::start(NodeConfig {
        shards,
        placement: Placement::Pinned,
        ..Default::default()
    })?;
    let mut b = AppBuilder::new("pipeline-latency");
    let src = b.source::<u64>("events");
    let a = b.operator("map1", Step(Some), &[src]);
    let f = b.operator("filter", Step(|v| (v != u64::MAX).then_some(v)), &[a]);
    let c = b.operator("map2", Step(Some), &[f]);
    let out = b.sink("out", c);
    let app = node.deploy(b.build()?)?;
    let src = app.source::<u64>("events")?;
    let total = rate * secs;
    // One thread sends each event when it is due and, between sends, reads
    // the sink: no third thread competes for the two cores. A sample ends
    // when the sink took the output (`at_ns`), so the reader's own delay
    // does not count. The client is not pinned: pinned to the core the
    // shard leaves free, its spinning vCPU is descheduled by the host for
    // milliseconds at a time.
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .expect("static bounds");
    let mut seen = 0;
    let take = |h: &mut hdrhistogram::Histogram<u64>, seen: &mut u64| {
        while let Some(ev) = out.try_recv() {
            if let SinkEvent::Data {
                value: due, at_ns, ..
            } = ev
            {
                let _ = h.record(at_ns.saturating_sub(due).max(1));
                *seen += 1;
            }
        }
    };
    let start = node.now_ns() + 1_000_000;
    for i in 0..total {
        let due = start + i * 1_000_000_000 / rate;
        loop {
            take(&mut h, &mut seen);
            let now = node.now_ns();
            if now >= due {
                break;
            }
            // Far ahead: sleep, so the client does not hold its core.
            if due - now > 200_000 {
                std::thread::sleep(Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
        }
        src.send(i, due)?;
        take(&mut h, &mut seen);
    }
    let end = Instant::now() + Duration::from_secs(10);
    while seen < total && Instant::now() < end {
        take(&mut h, &mut seen);
        std::hint::spin_loop();
    }
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
    Ok(Latency {
        p50: us(0.5),
        p99: us(0.99),
        p999: us(0.999),
        max: h.max() as f64 / 1_000.0,
        delivered: seen,
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

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A small run first, checked against the oracle on both engines.
    let small = oracle(20_000, 1_000);
    for &n in &cli.shards {
        let (_, d) = dirigo(n, 20_000, 1_000, 256)?;
        let (_, t) = timely(n, 20_000, 1_000, 256)?;
        if d != small || t != small {
            return Err(
                format!("oracle {small:?}, dirigo {d:?}, timely {t:?} ({n} shards)").into(),
            );
        }
    }
    println!("pipeline: {cores} cores; outputs of a small run match the oracle on both engines");
    println!(
        "{:<12} {:>6} {:>6} {:>14} {:>14} {:>8}",
        "workload", "batch", "cores", "dirigo ev/s", "timely ev/s", "ratio"
    );
    let want = oracle(cli.events, cli.keys);
    for &batch in &cli.batch {
        for &n in &cli.shards {
            let (mut d, mut t) = (Vec::new(), Vec::new());
            for _ in 0..cli.runs {
                let (rate, got) = dirigo(n, cli.events, cli.keys, batch)?;
                if got != want {
                    return Err(format!("dirigo {got:?}, oracle {want:?}").into());
                }
                d.push(rate);
                let (rate, got) = timely(n, cli.events, cli.keys, batch)?;
                if got != want {
                    return Err(format!("timely {got:?}, oracle {want:?}").into());
                }
                t.push(rate);
            }
            let (d, t) = (median(d), median(t));
            println!(
                "{:<12} {:>6} {:>6} {:>14.0} {:>14.0} {:>8.3}",
                "keyed-count",
                batch,
                n,
                d,
                t,
                d / t
            );
        }
    }
    println!(
        "{:<12} {:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "latency", "ev/s", "cores", "p50 us", "p99 us", "p99.9 us", "max us", "delivered"
    );
    for &rate in &cli.rates {
        for &n in &cli.shards {
            let l = latency(n, rate, cli.latency_secs)?;
            println!(
                "{:<12} {:>8} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10}",
                "3-op chain", rate, n, l.p50, l.p99, l.p999, l.max, l.delivered
            );
        }
    }
    println!(
        "rerun: cargo run --release -p dirigo-bench --bin pipeline -- --events {} --keys {} --runs {}",
        cli.events, cli.keys, cli.runs
    );
    Ok(())
}
