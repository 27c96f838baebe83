//! `hop`: the cost of one cross-shard round trip (ping-pong) between two
//! glommio executors pinned to two cores, for each way Dirigo could move a
//! message between shards.
//!
//! Why: the shard mesh does not use glommio's `shared_channel`. A
//! `shared_channel` send publishes into glommio's ring and then writes the
//! receiving executor's eventfd whenever that executor has announced it is
//! about to sleep (glommio 0.9, `SleepNotifier::notify`). A default glommio
//! executor sleeps as soon as it has no runnable task, so in a
//! request/response exchange nearly every send pays an eventfd write and the
//! peer pays a full reactor sleep/wake (several `io_uring_enter`s and a
//! `membarrier`); with `spin_before_park` the peer does not sleep, but its
//! spin loop still polls its io_uring rings with syscalls. Our mesh only
//! publishes to an SPSC ring (`dirigo_engine::mesh::ring`), which a busy shard polls
//! every turn with plain loads, and rings the peer's doorbell
//! (`dirigo_engine::mesh::doorbell`, a socket write) only when the peer has parked.
//!
//! Variants, all in one run, each on the same two cores (`--cores a,b`; the
//! pinger on `a`, the responder on `b`):
//!
//! - `ring-busy`: our ring, both executors busy-polling, never parking: the
//!   hop between two busy shards (target: p50 <= 1 µs);
//! - `ring-doorbell-parked`: our ring plus doorbells, both sides parking
//!   (prepare_park, re-check the ring, then cancel or wait) whenever their
//!   ring is empty, exactly as an idle shard does, and ringing the peer's
//!   doorbell after every push: the hop between two idle shards;
//! - `ring-doorbell-resp-parked`: the same, but only the responder parks and
//!   the pinger busy-polls: one wake-up per round trip instead of two;
//! - `glommio-shared-channel-parked`: `glommio::channels::shared_channel`,
//!   default executors (which park when idle);
//! - `glommio-shared-channel-spin`: the same with
//!   `LocalExecutorBuilder::spin_before_park` on both executors, so that
//!   neither parks between round trips;
//! - `ring-busy-threads`: our ring between two plain pinned std threads, no
//!   executor at all: the cache-line floor of the machine.
//!
//! Each variant runs `--warmup` round trips, then times `--iters` (busy
//! variants) or `--parked-iters` (parking variants, ~tens of µs each) round
//! trips with `Instant` on the pinger, and reports an HDR histogram of
//! nanoseconds per round trip. On a small shared machine the tails are noise;
//! compare the medians. `--only a,b` runs a subset; `--json path` also writes
//! the table as JSON.

/// The allocator of the binaries (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use dirigo_engine::mesh::doorbell::{Doorbell, LocalWaiter};
use dirigo_engine::mesh::ring::{ring, Consumer, Producer};
use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

/// Sent by the pinger after the last round trip: the responder exits.
const STOP: u64 = u64::MAX;
/// Ring capacity; a ping-pong has at most one message in flight.
const RING_CAP: usize = 16;
/// I/O memory per executor: we do no storage I/O, and glommio registers this
/// much locked memory (`ulimit -l`) per executor. Same as the engine's shards.
const IO_MEMORY: usize = 1 << 20;
/// How often (in round trips) a busy pinger offers glommio a chance to run
/// its own housekeeping, outside the timed region.
const YIELD_EVERY: u64 = 4096;
/// Period of the watchdog timer on every executor that may park; see
/// [`spawn_watchdog`].
const WATCHDOG: Duration = Duration::from_millis(50);
/// A timed round trip at least this long counts as a stall.
const STALL_NS: u64 = 10_000_000;

/// Wake this executor every [`WATCHDOG`], whatever else it waits on.
///
/// glommio 0.9's run loop can park an executor that still has a runnable
/// task (`run_task_queues` reports "nothing ran" when it finds the preempt
/// flag already set, and the loop reads that as "idle"); if the peer is
/// parked too, nobody writes either eventfd and both sleep forever. We saw
/// this hang once in `glommio-shared-channel-spin`. A periodic timer wakes a
/// parked executor, which then runs the task it forgot, so such a lost wake-up
/// costs one round trip of up to [`WATCHDOG`] (counted as a stall) instead
/// of the whole run. The engine's shards have the same safety net: they park
/// with a timed nap. The cost here is one timer wake-up per executor per
/// period.
fn spawn_watchdog() {
    glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(WATCHDOG).await;
        }
    })
    .detach();
}

#[derive(Parser, Debug)]
#[command(about = "Cross-shard round-trip latency: our ring vs glommio shared_channel")]
struct Cli {
    /// Timed round trips for the busy-polling variants.
    #[arg(long, default_value_t = 1_000_000)]
    iters: u64,
    /// Timed round trips for the parking variants (each takes tens of µs).
    #[arg(long, default_value_t = 50_000)]
    parked_iters: u64,
    /// Untimed round trips before each variant's timed ones.
    #[arg(long, default_value_t = 10_000)]
    warmup: u64,
    /// The two cores to use: pinger, responder.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    cores: Vec<usize>,
    /// Run only these variants (comma-separated), in this order; default all.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Variant>,
    /// Also write the table as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The variants, in the order they run by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Variant {
    RingBusy,
    RingDoorbellParked,
    RingDoorbellRespParked,
    GlommioSharedChannelParked,
    GlommioSharedChannelSpin,
    RingBusyThreads,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::RingBusy => "ring-busy",
            Variant::RingDoorbellParked => "ring-doorbell-parked",
            Variant::RingDoorbellRespParked => "ring-doorbell-resp-parked",
            Variant::GlommioSharedChannelParked => "glommio-shared-channel-parked",
            Variant::GlommioSharedChannelSpin => "glommio-shared-channel-spin",
            Variant::RingBusyThreads => "ring-busy-threads",
        }
    }
}

/// How many round trips, and on which cores.
#[derive(Clone, Copy, Debug)]
struct Run {
    warmup: u64,
    iters: u64,
    pinger: usize,
    responder: usize,
}

fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant histogram bounds are valid")
}

fn executor(name: &str, core: usize, spin: Option<Duration>) -> LocalExecutorBuilder {
    let b = LocalExecutorBuilder::new(Placement::Fixed(core))
        .name(name)
        .io_memory(IO_MEMORY);
    match spin {
        Some(d) => b.spin_before_park(d),
        None => b,
    }
}

/// Push, spinning while the ring is full (it never is in a ping-pong).
#[inline]
fn push_spin(tx: &mut Producer<u64>, mut v: u64) {
    while let Err(back) = tx.push(v) {
        v = back;
        std::hint::spin_loop();
    }
}

/// Pop, spinning while the ring is empty.
#[inline]
fn pop_spin(rx: &mut Consumer<u64>) -> u64 {
    loop {
        if let Some(v) = rx.pop() {
            return v;
        }
        std::hint::spin_loop();
    }
}

/// Pop, parking the way a shard does when the ring is empty: announce the
/// park, re-check the ring, and only then sleep on the doorbell. Returns the
/// value and how many times it actually slept.
async fn pop_parking(rx: &mut Consumer<u64>, waiter: &mut LocalWaiter) -> (u64, u64) {
    let mut slept = 0;
    loop {
        if let Some(v) = rx.pop() {
            return (v, slept);
        }
        waiter.prepare_park();
        if !rx.is_empty() {
            waiter.cancel_park();
            continue;
        }
        slept += 1;
        waiter
            .wait()
            .await
            .expect("doorbell socket failed while the peer is still running");
    }
}

/// Variant `ring-busy`: both executors spin on the rings.
fn ring_busy(run: Run) -> Histogram<u64> {
    let (mut ping_tx, mut ping_rx) = ring::<u64>(RING_CAP);
    let (mut pong_tx, mut pong_rx) = ring::<u64>(RING_CAP);
    // The responder is the only task on its executor, so it never yields:
    // there is nothing else to run, and a yield would only add a blip to
    // whichever round trip it lands in.
    let responder = executor("hop-resp", run.responder, None)
        .spawn(move || async move {
            loop {
                let v = pop_spin(&mut ping_rx);
                if v == STOP {
                    break;
                }
                push_spin(&mut pong_tx, v);
            }
        })
        .expect("cannot start the responder executor (core missing? `ulimit -l` too low?)");
    let pinger = executor("hop-ping", run.pinger, None)
        .spawn(move || async move {
            let mut h = new_histogram();
            for i in 0..run.warmup + run.iters {
                if i % YIELD_EVERY == 0 {
                    glommio::yield_if_needed().await;
                }
                let t0 = Instant::now();
                push_spin(&mut ping_tx, i);
                let v = pop_spin(&mut pong_rx);
                let dt = t0.elapsed();
                debug_assert_eq!(v, i);
                if i >= run.warmup {
                    h.saturating_record(dt.as_nanos() as u64);
                }
            }
            push_spin(&mut ping_tx, STOP);
            h
        })
        .expect("cannot start the pinger executor (core missing? `ulimit -l` too low?)");
    let h = pinger.join().expect("pinger executor panicked");
    responder.join().expect("responder executor panicked");
    h
}

/// Variants `ring-doorbell-parked` (`pinger_parks`) and
/// `ring-doorbell-resp-parked`: rings plus doorbells, the responder parking
/// whenever its ring is empty. Returns the histogram and the average number
/// of times the responder and the pinger slept per timed round trip.
fn ring_doorbell(run: Run, pinger_parks: bool) -> (Histogram<u64>, f64, f64) {
    let (mut ping_tx, mut ping_rx) = ring::<u64>(RING_CAP);
    let (mut pong_tx, mut pong_rx) = ring::<u64>(RING_CAP);
    let (resp_bell, resp_waiter) = Doorbell::new().expect("cannot create the responder doorbell");
    let (ping_bell, ping_waiter) = Doorbell::new().expect("cannot create the pinger doorbell");
    let warmup = run.warmup;
    let responder = executor("hop-resp", run.responder, None)
        .spawn(move || async move {
            spawn_watchdog();
            let mut waiter = resp_waiter.into_local();
            let mut slept_timed = 0u64;
            let mut n = 0u64;
            loop {
                let (v, slept) = pop_parking(&mut ping_rx, &mut waiter).await;
                if v == STOP {
                    break;
                }
                if n >= warmup {
                    slept_timed += slept;
                }
                n += 1;
                push_spin(&mut pong_tx, v);
                ping_bell.ring();
            }
            slept_timed
        })
        .expect("cannot start the responder executor (core missing? `ulimit -l` too low?)");
    let pinger = executor("hop-ping", run.pinger, None)
        .spawn(move || async move {
            spawn_watchdog();
            let mut waiter = ping_waiter.into_local();
            let mut h = new_histogram();
            let mut slept_timed = 0u64;
            for i in 0..run.warmup + run.iters {
                if !pinger_parks && i % YIELD_EVERY == 0 {
                    glommio::yield_if_needed().await;
                }
                let t0 = Instant::now();
                push_spin(&mut ping_tx, i);
                resp_bell.ring();
                let v = if pinger_parks {
                    let (v, slept) = pop_parking(&mut pong_rx, &mut waiter).await;
                    if i >= run.warmup {
                        slept_timed += slept;
                    }
                    v
                } else {
                    pop_spin(&mut pong_rx)
                };
                let dt = t0.elapsed();
                debug_assert_eq!(v, i);
                if i >= run.warmup {
                    h.saturating_record(dt.as_nanos() as u64);
                }
            }
            push_spin(&mut ping_tx, STOP);
            resp_bell.ring();
            (h, slept_timed)
        })
        .expect("cannot start the pinger executor (core missing? `ulimit -l` too low?)");
    let (h, ping_slept) = pinger.join().expect("pinger executor panicked");
    let resp_slept = responder.join().expect("responder executor panicked");
    let per = |n: u64| n as f64 / run.iters.max(1) as f64;
    (h, per(resp_slept), per(ping_slept))
}

/// Variants `glommio-shared-channel-parked` (`spin == None`) and
/// `glommio-shared-channel-spin`.
fn glommio_channel(run: Run, spin: Option<Duration>) -> Histogram<u64> {
    let (ping_tx, ping_rx) = shared_channel::new_bounded::<u64>(RING_CAP);
    let (pong_tx, pong_rx) = shared_channel::new_bounded::<u64>(RING_CAP);
    let responder = executor("hop-resp", run.responder, spin)
        .spawn(move || async move {
            // Connect in the pinger's order (ping, then pong): each connect
            // waits for the other side's.
            spawn_watchdog();
            let rx = ping_rx.connect().await;
            let tx = pong_tx.connect().await;
            while let Some(v) = rx.recv().await {
                if v == STOP {
                    break;
                }
                tx.send(v)
                    .await
                    .expect("pinger hung up before the last pong");
            }
        })
        .expect("cannot start the responder executor (core missing? `ulimit -l` too low?)");
    let pinger = executor("hop-ping", run.pinger, spin)
        .spawn(move || async move {
            spawn_watchdog();
            let tx = ping_tx.connect().await;
            let rx = pong_rx.connect().await;
            let mut h = new_histogram();
            for i in 0..run.warmup + run.iters {
                let t0 = Instant::now();
                tx.send(i)
                    .await
                    .expect("responder hung up before the last ping");
                let v = rx
                    .recv()
                    .await
                    .expect("responder hung up before the last pong");
                let dt = t0.elapsed();
                debug_assert_eq!(v, i);
                if i >= run.warmup {
                    h.saturating_record(dt.as_nanos() as u64);
                }
            }
            tx.send(STOP)
                .await
                .expect("responder hung up before the stop message");
            h
        })
        .expect("cannot start the pinger executor (core missing? `ulimit -l` too low?)");
    let h = pinger.join().expect("pinger executor panicked");
    responder.join().expect("responder executor panicked");
    h
}

fn pin_current_thread(core: usize) {
    assert!(
        core_affinity::set_for_current(core_affinity::CoreId { id: core }),
        "cannot pin a thread to core {core}"
    );
}

/// Variant `ring-busy-threads`: no executor, two pinned threads spinning.
fn ring_busy_threads(run: Run) -> Histogram<u64> {
    let (mut ping_tx, mut ping_rx) = ring::<u64>(RING_CAP);
    let (mut pong_tx, mut pong_rx) = ring::<u64>(RING_CAP);
    let responder = std::thread::Builder::new()
        .name("hop-resp".into())
        .spawn(move || {
            pin_current_thread(run.responder);
            loop {
                let v = pop_spin(&mut ping_rx);
                if v == STOP {
                    break;
                }
                push_spin(&mut pong_tx, v);
            }
        })
        .expect("cannot spawn the responder thread");
    let pinger = std::thread::Builder::new()
        .name("hop-ping".into())
        .spawn(move || {
            pin_current_thread(run.pinger);
            let mut h = new_histogram();
            for i in 0..run.warmup + run.iters {
                let t0 = Instant::now();
                push_spin(&mut ping_tx, i);
                let v = pop_spin(&mut pong_rx);
                let dt = t0.elapsed();
                debug_assert_eq!(v, i);
                if i >= run.warmup {
                    h.saturating_record(dt.as_nanos() as u64);
                }
            }
            push_spin(&mut ping_tx, STOP);
            h
        })
        .expect("cannot spawn the pinger thread");
    let h = pinger.join().expect("pinger thread panicked");
    responder.join().expect("responder thread panicked");
    h
}

/// One row of the table.
struct Row {
    name: &'static str,
    samples: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    /// Sleeps per round trip (responder, pinger), where we can count them.
    sleeps: Option<(f64, f64)>,
    /// Timed round trips of at least [`STALL_NS`].
    stalls: u64,
}

impl Row {
    fn new(name: &'static str, h: &Histogram<u64>, sleeps: Option<(f64, f64)>) -> Row {
        Row {
            name,
            samples: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            stalls: h.count_between(STALL_NS, u64::MAX),
            sleeps,
        }
    }
}

fn us(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1000.0)
}

/// A row's p50 over ring-busy's, if ring-busy ran.
fn ratio(row: &Row, base: Option<u64>) -> Option<f64> {
    base.map(|b| row.p50 as f64 / b.max(1) as f64)
}

fn print_table(rows: &[Row], base: Option<u64>) {
    println!();
    println!(
        "{:<30} {:>9} {:>10} {:>10} {:>10} {:>10} {:>11} {:>9} {:>7} {:>13}",
        "variant (round trip, µs)",
        "samples",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "p50/busy",
        "stalls",
        "sleeps/rt r,p"
    );
    for r in rows {
        let sleeps = match r.sleeps {
            Some((resp, ping)) => format!("{resp:.2},{ping:.2}"),
            None => "-".to_string(),
        };
        println!(
            "{:<30} {:>9} {:>10} {:>10} {:>10} {:>10} {:>11} {:>9} {:>7} {:>13}",
            r.name,
            r.samples,
            us(r.p50),
            us(r.p90),
            us(r.p99),
            us(r.p999),
            us(r.max),
            ratio(r, base).map_or("-".to_string(), |x| format!("{x:.1}x")),
            r.stalls,
            sleeps
        );
    }
}

fn to_json(cli: &Cli, rows: &[Row], base: Option<u64>) -> String {
    let variants: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut v = serde_json::json!({
                "name": r.name,
                "samples": r.samples,
                "p50": r.p50,
                "p90": r.p90,
                "p99": r.p99,
                "p99_9": r.p999,
                "max": r.max,
                "stalls": r.stalls,
                "p50_over_ring_busy": ratio(r, base),
            });
            if let Some((resp, ping)) = r.sleeps {
                v["responder_sleeps_per_rt"] = resp.into();
                v["pinger_sleeps_per_rt"] = ping.into();
            }
            v
        })
        .collect();
    let doc = serde_json::json!({
        "unit": "ns",
        "stall_threshold": STALL_NS,
        "cores": cli.cores,
        "warmup": cli.warmup,
        "iters": cli.iters,
        "parked_iters": cli.parked_iters,
        "variants": variants,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| panic!("a JSON value serializes: {e}"))
}

fn main() {
    let cli = Cli::parse();
    let online = core_affinity::get_core_ids().unwrap_or_default();
    let online: Vec<usize> = online.into_iter().map(|c| c.id).collect();
    let fail = |msg: String| -> ! {
        use clap::CommandFactory;
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit()
    };
    let [pinger, responder] = cli.cores[..] else {
        fail(format!(
            "--cores takes exactly two cores (pinger,responder), got {:?}",
            cli.cores
        ));
    };
    if pinger == responder {
        fail(format!(
            "--cores needs two distinct cores: busy-polling both sides on core {pinger} \
             would measure the scheduler, not a hop"
        ));
    }
    for c in [pinger, responder] {
        if !online.is_empty() && !online.contains(&c) {
            fail(format!(
                "core {c} is not available to this process (available: {online:?})"
            ));
        }
    }
    if cli.iters == 0 || cli.parked_iters == 0 {
        fail("--iters and --parked-iters must be at least 1".to_string());
    }

    println!(
        "hop: cross-shard round trip, 2 cores used of {} available {:?}: pinger on core {}, \
         responder on core {}",
        online.len(),
        online,
        pinger,
        responder
    );
    println!(
        "warm-up {} round trips per variant; timed: {} (busy variants), {} (parking variants)",
        cli.warmup, cli.iters, cli.parked_iters
    );

    let busy = Run {
        warmup: cli.warmup,
        iters: cli.iters,
        pinger,
        responder,
    };
    let parked = Run {
        iters: cli.parked_iters,
        ..busy
    };
    let spin = Duration::from_millis(50);

    let variants = if cli.only.is_empty() {
        Variant::value_variants().to_vec()
    } else {
        cli.only.clone()
    };
    let mut rows = Vec::new();
    for v in variants {
        let name = v.name();
        eprint!("running {name} ... ");
        let t = Instant::now();
        let row = match v {
            Variant::RingBusy => Row::new(name, &ring_busy(busy), None),
            Variant::RingDoorbellParked => {
                let (h, r, p) = ring_doorbell(parked, true);
                Row::new(name, &h, Some((r, p)))
            }
            Variant::RingDoorbellRespParked => {
                let (h, r, p) = ring_doorbell(parked, false);
                Row::new(name, &h, Some((r, p)))
            }
            Variant::GlommioSharedChannelParked => {
                Row::new(name, &glommio_channel(parked, None), None)
            }
            Variant::GlommioSharedChannelSpin => {
                Row::new(name, &glommio_channel(busy, Some(spin)), None)
            }
            Variant::RingBusyThreads => Row::new(name, &ring_busy_threads(busy), None),
        };
        eprintln!("{:.1} s", t.elapsed().as_secs_f64());
        rows.push(row);
    }

    let base = rows
        .iter()
        .find(|r| r.name == Variant::RingBusy.name())
        .map(|r| r.p50);
    print_table(&rows, base);
    println!(
        "\np50/busy: each variant's median over ring-busy's; sleeps/rt r,p: times the responder \
         and the pinger actually waited on their doorbell per timed round trip."
    );
    if base.is_some_and(|b| b > 1000) {
        println!("note: ring-busy p50 is above the 1 µs target");
    }

    if let Some(path) = &cli.json {
        std::fs::write(path, to_json(&cli, &rows, base))
            .unwrap_or_else(|e| panic!("cannot write --json {}: {e}", path.display()));
        println!("wrote {}", path.display());
    }
}
