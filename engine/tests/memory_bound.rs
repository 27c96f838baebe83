//! An app's memory is bounded wherever its operators run (issue 11 item 1).
//!
//! The trigger: a client that never slows by itself (it retries a refused
//! batch at once) in front of a slow operator. Before the app-wide limit, a
//! shard stopped taking client commands only when *its own* backlog was
//! full, so with the source homed on one shard and the slow operator on
//! another, the source's shard never pushed back and the operator's shard
//! queued everything (over a million messages in 3 s). Now every message
//! is reserved against `NodeConfig::max_in_flight` before a client may send
//! it, so what is queued over all shards stays under the limit plus one
//! batch, for every placement, with lessees and with fan-out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dirigo_engine::{
    home_shard, AppBuilder, AutoScale, Context, EngineError, Fifo, Function, Keyed, Node,
    NodeConfig, Placement, PolicyFactory, SinkReceiver,
};

const LIMIT: usize = 1024;
const BATCH: usize = 64;

/// 20 µs of work per event, then the event goes on.
struct Slow;
impl Function for Slow {
    type In = u64;
    type Out = u64;
    type State = Keyed<u64>;
    fn on_message(&self, st: &mut Keyed<u64>, key: u64, v: u64, ctx: &mut Context<'_, u64>) {
        let until = Instant::now() + Duration::from_micros(20);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        *st.entry(key) += 1;
        ctx.emit(key, v);
    }
}

/// A name whose source (node 0) and first operator (node 1) are homed on
/// different shards (`cross`) or the same one.
fn app_name(cross: bool) -> String {
    (0..)
        .map(|i| format!("bounded-{i}"))
        .find(|n| (home_shard(n, 0, 2) != home_shard(n, 1, 2)) == cross)
        .expect("some name has each layout")
}

/// source -> `fanout` slow operators -> a sink each.
fn app(name: &str, fanout: usize) -> (dirigo_engine::App, Vec<SinkReceiver<u64>>) {
    let mut b = AppBuilder::new(name).slo(Duration::from_millis(100));
    let src = b.source::<u64>("numbers");
    let slow: Vec<_> = (0..fanout)
        .map(|i| b.operator(&format!("slow{i}"), Slow, &[src]))
        .collect();
    let rxs = slow
        .into_iter()
        .enumerate()
        .map(|(i, s)| b.sink(&format!("out{i}"), s))
        .collect();
    (b.build().expect("a valid app"), rxs)
}

fn node(autoscale: bool) -> Node {
    Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        max_in_flight: LIMIT,
        max_batch: BATCH,
        policy: PolicyFactory::per_shard(Fifo::scaling),
        autoscale: AutoScale {
            enabled: autoscale,
            up_backlog: 64,
            ..AutoScale::default()
        },
        ..Default::default()
    })
    .expect("node starts")
}

/// What the run saw: the most messages queued over all shards in a stats
/// snapshot, the most the app's bound read, refusals, lessee runs.
#[derive(Debug, Default)]
struct Seen {
    queued: usize,
    in_flight: u64,
    refused: u64,
    sent: u64,
    lessee_runs: u64,
}

/// Drive the trigger for `run`, sampling the node's queues meanwhile.
fn drive(cross: bool, fanout: usize, autoscale: bool, run: Duration) -> Seen {
    let node = node(autoscale);
    let name = app_name(cross);
    let (a, rxs) = app(&name, fanout);
    let h = node.deploy(a).expect("deploys");
    let src = h.source::<u64>("numbers").expect("source");
    let stop = Arc::new(AtomicBool::new(false));
    // Sinks are read as fast as they fill: only the operators are slow.
    let readers: Vec<_> = rxs
        .into_iter()
        .map(|rx| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = rx.recv_timeout(Duration::from_millis(5));
                    let _ = rx.drain();
                }
            })
        })
        .collect();
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut sent, mut refused, mut next) = (0u64, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<(u64, u64)> = (next..next + BATCH as u64).map(|i| (i, i)).collect();
                match src.try_send_batch(batch) {
                    Ok(()) => {
                        sent += BATCH as u64;
                        next += BATCH as u64;
                    }
                    Err(r) => {
                        assert!(
                            matches!(
                                r.error,
                                EngineError::AppFull { .. } | EngineError::Backpressure { .. }
                            ),
                            "{}",
                            r.error
                        );
                        assert_eq!(r.events.len(), BATCH, "a refused batch comes back whole");
                        refused += 1;
                        std::thread::yield_now();
                    }
                }
            }
            (sent, refused)
        })
    };
    let mut seen = Seen::default();
    let end = Instant::now() + run;
    while Instant::now() < end {
        let s = node.stats().expect("stats");
        let queued: usize = s.shards.iter().map(|s| s.backlog).sum();
        seen.queued = seen.queued.max(queued);
        seen.in_flight = seen.in_flight.max(h.in_flight());
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, refused) = client.join().expect("client");
    readers.into_iter().for_each(|r| r.join().expect("reader"));
    (seen.sent, seen.refused) = (sent, refused);
    h.quiesce(Duration::from_secs(60)).expect("drains");
    assert_eq!(h.in_flight(), 0, "every reservation was taken and done");
    let stats = node.stats().expect("stats");
    let app = stats.app(&name).expect("the app's stats");
    // Each event runs once at each slow operator and once at its sink.
    assert_eq!(
        app.runs,
        sent * 2 * fanout as u64,
        "every accepted event ran once per operator"
    );
    seen.lessee_runs = app.lessee_runs;
    node.shutdown();
    eprintln!("cross {cross} fanout {fanout} autoscale {autoscale}: {seen:?}");
    seen
}

/// The bound: the limit plus one batch (one event is `fanout` messages).
fn check(seen: &Seen, fanout: usize) {
    let bound = LIMIT + BATCH * fanout;
    assert!(seen.refused > 0, "the client was pushed back: {seen:?}");
    // A snapshot reads each shard at its own moment, so a message moving
    // between two shards (a delivery to a lessee) can be counted by both:
    // at most twice. `in_flight` is exact about the bound.
    assert!(
        seen.queued <= 2 * bound,
        "{} messages queued over the shards, bound {bound} (each counted at most twice)",
        seen.queued
    );
    assert!(
        seen.in_flight <= bound as u64,
        "in_flight read {}, bound {bound}",
        seen.in_flight
    );
}

#[test]
fn source_and_slow_operator_on_different_shards() {
    let seen = drive(true, 1, false, Duration::from_millis(1500));
    check(&seen, 1);
}

#[test]
fn source_and_slow_operator_on_one_shard() {
    let seen = drive(false, 1, false, Duration::from_millis(1500));
    check(&seen, 1);
}

#[test]
fn fan_out_with_lessees() {
    let seen = drive(true, 2, true, Duration::from_millis(1500));
    check(&seen, 2);
    assert!(seen.lessee_runs > 0, "a lessee took part: {seen:?}");
}
