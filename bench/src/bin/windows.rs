//! `windows`: a keyed windowed count on 2 shards with a lessee, its
//! windows fired by the watermark (each instance fires the windows of the
//! keys it owns: no consolidation) against the same count closed by client
//! barriers (each barrier blocks the lessee, brings its state home and
//! runs the critical section on the lessor).
//!
//! How: `--events` events, event `i` of key `i % --keys` at event time
//! `i`, in `--windows` tumbling windows of equal size. Mode `timers`: the
//! source is on event time (no out-of-orderness, a watermark after every
//! batch), the count a `Window` of `Agg::count`. Mode `barriers`: a
//! `Keyed` count that emits every key's count and clears at each
//! `WindowClose` critical, injected by the client after each window's
//! events. In both, before the events flow, the count's lessee is leased
//! on the shard that is not its home (autoscaling off, so the lease stays).
//! Measured: events/s from the first send to the last window's last row at
//! the sink; per window, the close time from the client's last send of the
//! window to that window's last row at the sink (median and max); the
//! lessee's share of the runs; barriers and revokes (consolidations).
//! Every window's rows are checked against a sequential oracle (each key's
//! count); a mismatch exits non-zero.
//!
//! Rerun: `cargo run --release -p dirigo-bench --bin windows` (defaults:
//! `--events 2000000 --keys 10000 --windows 20 --runs 3`, pinned shards;
//! the modes alternate run by run).

/// The allocator of the binaries (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use dirigo_engine::{
    home_shard, key_hash, Agg, AppBuilder, AppHandle, Barrier, BarrierKind, Context, EventTime,
    Function, Keyed, Node, NodeConfig, Placement, SinkEvent, SinkReceiver, Time, Window, WindowOut,
    Windows,
};

#[path = "../cpu.rs"]
#[allow(unreachable_pub)]
mod cpu;

const BATCH: usize = 4096;
const WAIT: Duration = Duration::from_secs(120);

type Error = Box<dyn std::error::Error>;

#[derive(Parser, Debug)]
#[command(about = "A keyed windowed count with a lessee: windows by timers vs by barriers")]
struct Cli {
    /// Events per run.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Windows per run.
    #[arg(long, default_value_t = 20)]
    windows: u64,
    /// Runs per mode.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run only this mode (`timers` or `barriers`; both by default).
    #[arg(long)]
    only: Option<String>,
}

/// A row at the sink: (window, key, count).
type Row = (u64, u64, u64);

/// The barrier mode's count: per key, emitted and cleared at each close.
struct BarrierCount;

impl Function for BarrierCount {
    type In = Time;
    type Out = Row;
    type State = Keyed<u64>;
    fn on_message(&self, st: &mut Keyed<u64>, key: u64, _: Time, _: &mut Context<'_, Row>) {
        *st.entry(key) += 1;
    }
    fn on_critical(&self, st: &mut Keyed<u64>, b: &Barrier, _: u16, ctx: &mut Context<'_, Row>) {
        if b.kind == BarrierKind::WindowClose {
            for (k, n) in st.drain() {
                ctx.emit(k, (b.tag - 1, k, n));
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Timers,
    Barriers,
}

struct Run {
    events_per_s: f64,
    close_p50_ms: f64,
    close_max_ms: f64,
    lessee_share: f64,
    barriers: u64,
    revokes: u64,
}

/// A sink event's value, if it is data.
fn data<T>(e: SinkEvent<T>) -> Option<T> {
    match e {
        SinkEvent::Data { value, .. } => Some(value),
        SinkEvent::Barrier(_) => None,
    }
}

/// What the sink takes: the window's output (timers) or rows (barriers).
enum Rx {
    Timers(SinkReceiver<WindowOut<Time, f64>>),
    Barriers(SinkReceiver<Row>),
}

impl Rx {
    /// The rows read so far.
    fn rows(&self, size: Time) -> Vec<Row> {
        match self {
            Rx::Barriers(rx) => rx.drain().into_iter().filter_map(data).collect(),
            Rx::Timers(rx) => rx
                .drain()
                .into_iter()
                .filter_map(data)
                .filter_map(|o| match o {
                    WindowOut::Result(r) => Some((r.start / size, r.key, r.value as u64)),
                    WindowOut::Late(_) => None,
                })
                .collect(),
        }
    }
}

/// The same app shape in both modes: source, count (the operator leased),
/// sink.
fn app(mode: Mode, size: Time) -> (dirigo_engine::App, Rx) {
    let mut b = AppBuilder::new("windows-bench");
    let events = b.source::<Time>("events");
    let rx = match mode {
        Mode::Timers => {
            b.event_time(events, EventTime::new(|t: &Time| *t));
            let w = Window::new(
                Windows::Tumbling { size },
                |t: &Time| *t,
                Agg::<Time>::count(),
            );
            let out = b.operator("count", w, &[events]);
            Rx::Timers(b.sink("out", out))
        }
        Mode::Barriers => {
            let counts = b.operator("count", BarrierCount, &[events]);
            Rx::Barriers(b.sink("out", counts))
        }
    };
    (b.build().expect("valid"), rx)
}

/// Lease `op` on the shard that is not its home, until granted.
fn lease_away(h: &AppHandle, op: &str, node: usize) -> Result<(), Error> {
    let other = 1 - home_shard("windows-bench", node, 2) as usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.lease(op, other)?.is_none() {
        if Instant::now() > deadline {
            return Err("the count's lease was never granted".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn run(cli: &Cli, mode: Mode) -> Result<Run, Error> {
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Pinned,
        autoscale: dirigo_engine::AutoScale {
            enabled: false,
            accept_below: usize::MAX,
            ..Default::default()
        },
        ..Default::default()
    })?;
    let size = cli.events / cli.windows;
    let (a, rx) = app(mode, size);
    let h = node.deploy(a)?;
    lease_away(&h, "count", 1)?;
    let src = h.source::<Time>("events")?;
    let per_window = size.min(cli.keys) as usize;
    let windows = cli.windows;
    let reader = std::thread::spawn(move || read(rx, size, windows, per_window));
    let start = Instant::now();
    let mut sent_at = Vec::new();
    for w in 0..cli.windows {
        let mut i = w * size;
        while i < (w + 1) * size {
            let n = (BATCH as u64).min((w + 1) * size - i);
            let batch = (i..i + n)
                .map(|e| (key_hash(&(e % cli.keys).to_le_bytes()), e))
                .collect();
            src.send_batch(batch, WAIT).map_err(|r| r.error)?;
            i += n;
        }
        sent_at.push(Instant::now());
        if mode == Mode::Barriers {
            h.inject_barrier(BarrierKind::WindowClose, w + 1)?;
        }
    }
    if mode == Mode::Timers {
        src.watermark(Time::MAX)?;
    }
    let (closed, rows) = reader.join().map_err(|_| "the reader panicked")??;
    let wall = closed.iter().max().copied().unwrap_or(start) - start;
    check(&rows, cli, size)?;
    let mut close: Vec<f64> = closed
        .iter()
        .zip(&sent_at)
        .map(|(c, s)| c.saturating_duration_since(*s).as_secs_f64() * 1e3)
        .collect();
    close.sort_by(f64::total_cmp);
    let stats = node.stats()?;
    let s = stats.app("windows-bench").ok_or("no stats")?;
    node.shutdown();
    Ok(Run {
        events_per_s: cli.events as f64 / wall.as_secs_f64(),
        close_p50_ms: close[close.len() / 2],
        close_max_ms: *close.last().unwrap_or(&0.0),
        lessee_share: s.lessee_runs as f64 / s.runs.max(1) as f64,
        barriers: s.barriers,
        revokes: s.revokes,
    })
}

/// When each window got its last row, and every row.
type Closed = (Vec<Instant>, Vec<Row>);

/// Read rows until every window has `per_window` of them.
fn read(rx: Rx, size: Time, windows: u64, per_window: usize) -> Result<Closed, String> {
    let mut got = vec![0usize; windows as usize];
    let mut closed = vec![None; windows as usize];
    let mut rows = Vec::new();
    let deadline = Instant::now() + WAIT;
    while closed.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            return Err(format!("windows still open: rows {got:?}"));
        }
        for value in rx.rows(size) {
            let w = value.0 as usize;
            if w >= got.len() {
                return Err(format!("a row of window {w}"));
            }
            got[w] += 1;
            if got[w] == per_window {
                closed[w] = Some(Instant::now());
            }
            rows.push(value);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok((
        closed.into_iter().map(|c| c.expect("all closed")).collect(),
        rows,
    ))
}

/// Every window's counts equal a sequential count of its events.
fn check(rows: &[Row], cli: &Cli, size: u64) -> Result<(), Error> {
    let mut want: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for e in 0..cli.events {
        *want
            .entry((e / size, key_hash(&(e % cli.keys).to_le_bytes())))
            .or_default() += 1;
    }
    let got: BTreeMap<(u64, u64), u64> = rows.iter().map(|&(w, k, n)| ((w, k), n)).collect();
    if got != want || got.len() != rows.len() {
        return Err("window counts differ from the oracle".into());
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.events == 0
        || cli.keys == 0
        || cli.windows == 0
        || cli.runs == 0
        || cli.events < cli.windows
    {
        eprintln!("windows: --events >= --windows >= 1, --keys and --runs >= 1");
        return ExitCode::from(2);
    }
    let before = cpu::snap();
    let t0 = Instant::now();
    let mut results: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for _ in 0..cli.runs {
        for (name, mode) in [("timers", Mode::Timers), ("barriers", Mode::Barriers)] {
            if cli.only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            match run(&cli, mode) {
                Ok(r) => results.entry(name).or_default().push(r),
                Err(e) => {
                    eprintln!("windows: {name}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let used = cpu::CpuUse::between(before, cpu::snap(), t0.elapsed().as_secs_f64());
    println!(
        "windows bench: 2 pinned shards, the count leased to the other one; {} events, {} keys, {} windows (median of {} runs)",
        cli.events, cli.keys, cli.windows, cli.runs
    );
    println!(
        "{:>9} {:>12} {:>14} {:>14} {:>13} {:>9} {:>8}",
        "mode", "events/s", "close p50 ms", "close max ms", "lessee runs", "barriers", "revokes"
    );
    for (name, rs) in &results {
        println!(
            "{:>9} {:>12.0} {:>14.2} {:>14.2} {:>12.0}% {:>9} {:>8}",
            name,
            median(rs.iter().map(|r| r.events_per_s).collect()),
            median(rs.iter().map(|r| r.close_p50_ms).collect()),
            median(rs.iter().map(|r| r.close_max_ms).collect()),
            100.0 * median(rs.iter().map(|r| r.lessee_share).collect()),
            rs[0].barriers,
            rs[0].revokes,
        );
    }
    if let Some(u) = used {
        println!(
            "cpu over the run: this process {:.1} core-s, others {:.1} core-s, of {:.1}",
            u.own_s, u.others_s, u.capacity_s
        );
    }
    println!(
        "rerun: cargo run --release -p dirigo-bench --bin windows -- --events {} --keys {} --windows {} --runs {}",
        cli.events, cli.keys, cli.windows, cli.runs
    );
    ExitCode::SUCCESS
}
