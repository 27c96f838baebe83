//! Event time end to end on real shards: a source on event time (bounded
//! out-of-orderness) feeds a keyed tumbling-window count built on timers;
//! windows fire when the watermark passes their end, late events are told
//! apart, and the result equals a sequential oracle's, while the count's
//! lessees are leased and revoked at random, on 2 and 4 shards.
//!
//! What makes the oracle exact: the source sends a watermark after each
//! client batch (period 0), so the count sees batch `i`'s events at the
//! watermark of batches `..i` wherever they run (ticks travel in band),
//! and per key in send order (each window folds its events' sequence
//! numbers in run order).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use dirigo_engine::{
    key_hash, AppBuilder, AppHandle, Context, EventTime, Function, Keyed, Node, NodeConfig,
    Placement, SinkEvent, SinkReceiver, Time,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WINDOW: Time = 100;
const BOUND: Time = 40;

#[derive(Clone, Debug)]
struct Ev {
    user: u64,
    ts: Time,
}

/// A window's count (key, start, count, order fingerprint), or a late
/// event (key, its time).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Row {
    Window(u64, Time, u64, u64),
    Late(u64, Time),
}

fn fold(order: u64, seq: u64) -> u64 {
    order.wrapping_mul(1_000_003).wrapping_add(seq)
}

/// Per key: open windows by start, with (count, order).
struct Tumbling;
impl Function for Tumbling {
    type In = Ev;
    type Out = Row;
    type State = Keyed<BTreeMap<Time, (u64, u64)>>;
    fn on_message(&self, st: &mut Self::State, key: u64, e: Ev, ctx: &mut Context<'_, Row>) {
        let start = e.ts / WINDOW * WINDOW;
        let last = start + WINDOW - 1;
        if last <= ctx.watermark() {
            ctx.emit(key, Row::Late(e.user, e.ts));
            return;
        }
        let seq = ctx.header().seq;
        let w = st.entry(key).entry(start).or_default();
        w.0 += 1;
        w.1 = fold(w.1, seq);
        assert!(ctx.set_timer(last), "under the timer limit");
    }
    fn on_timer(&self, st: &mut Self::State, key: u64, at: Time, ctx: &mut Context<'_, Row>) {
        let start = at + 1 - WINDOW;
        let windows = st.entry(key);
        let (count, order) = windows.remove(&start).expect("a timer's window is open");
        if windows.is_empty() {
            st.remove(key);
        }
        ctx.emit(key, Row::Window(key, start, count, order));
    }
}

fn app(name: &str) -> (dirigo_engine::App, SinkReceiver<Row>) {
    let mut b = AppBuilder::new(name).slo(Duration::from_millis(200));
    let events = b.source::<Ev>("events");
    b.event_time(
        events,
        EventTime::new(|e: &Ev| e.ts).out_of_orderness(BOUND),
    );
    let counts = b.operator("window", Tumbling, &[events]);
    let rx = b.sink("out", counts);
    (b.build().expect("valid app"), rx)
}

/// Client batches of events: time moves on, out of order within the bound,
/// and now and then an event far behind (late).
fn batches(rng: &mut ChaCha8Rng, n: usize) -> Vec<Vec<Ev>> {
    let mut now: Time = 1_000;
    (0..n)
        .map(|_| {
            (0..rng.gen_range(1..30))
                .map(|_| {
                    now += rng.gen_range(0..4);
                    let ts = if rng.gen_bool(0.03) {
                        now.saturating_sub(rng.gen_range(100..400))
                    } else {
                        now.saturating_sub(rng.gen_range(0..=BOUND))
                    };
                    Ev {
                        user: rng.gen_range(0..25),
                        ts,
                    }
                })
                .collect()
        })
        .collect()
}

/// The sequential run: batch by batch, each event at the watermark after
/// the batches before it, windows fired after each batch, all at the end.
fn oracle(batches: &[Vec<Ev>]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut open: BTreeMap<(u64, Time), (u64, u64)> = BTreeMap::new();
    let (mut wm, mut latest, mut seq) = (0, 0, 0u64);
    let fire = |open: &mut BTreeMap<(u64, Time), (u64, u64)>, rows: &mut Vec<Row>, wm: Time| {
        open.retain(|&(key, start), &mut (c, o)| {
            let due = start + WINDOW - 1 <= wm;
            if due {
                rows.push(Row::Window(key, start, c, o));
            }
            !due
        });
    };
    for b in batches {
        for e in b {
            seq += 1;
            let key = key_hash(&e.user.to_le_bytes());
            let start = e.ts / WINDOW * WINDOW;
            latest = latest.max(e.ts);
            if start + WINDOW - 1 <= wm {
                rows.push(Row::Late(e.user, e.ts));
                continue;
            }
            let w = open.entry((key, start)).or_default();
            w.0 += 1;
            w.1 = fold(w.1, seq);
        }
        wm = wm.max(latest.saturating_sub(BOUND));
        fire(&mut open, &mut rows, wm);
    }
    fire(&mut open, &mut rows, Time::MAX);
    rows.sort();
    rows
}

fn run(shards: usize, seed: u64) {
    let node = common::leasing_node(shards);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (a, rx) = app(&format!("tumbling-{shards}-{seed}"));
    let h = node.deploy(a).expect("deploys");
    let src = h.source::<Ev>("events").expect("source");
    let input = batches(&mut rng, 300);
    let (mut leases, mut revokes) = (0, 0);
    for b in &input {
        let keyed = b
            .iter()
            .map(|e| (key_hash(&e.user.to_le_bytes()), e.clone()))
            .collect();
        src.send_batch(keyed, Duration::from_secs(10))
            .expect("accepted");
        let (l, r) = common::churn(&h, "window", shards, &mut rng);
        leases += l;
        revokes += r;
    }
    src.watermark(Time::MAX).expect("the last watermark");
    h.quiesce(Duration::from_secs(60)).expect("quiesces");
    let mut got: Vec<Row> = common::values(&rx);
    got.sort();
    let want = oracle(&input);
    assert!(
        want.iter().any(|r| matches!(r, Row::Late(..))),
        "the input has late events"
    );
    if got != want {
        let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(8).collect();
        let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(8).collect();
        eprintln!("extra {extra:?}\nmissing {missing:?}");
    }
    assert_eq!(got.len(), want.len(), "rows (seed {seed}, {shards} shards)");
    assert_eq!(got, want, "seed {seed}, {shards} shards");
    let stats = node.stats().expect("stats");
    let s = stats.app(h.name()).expect("the app's stats");
    assert!(s.timers > 0, "windows fired by timers");
    assert!(
        leases > 0 && revokes > 0,
        "the run leased ({leases}) and revoked ({revokes})"
    );
    node.shutdown();
}

#[test]
fn tumbling_windows_on_timers_match_the_oracle_across_leases_on_2_shards() {
    for seed in [1, 2, 3] {
        run(2, seed);
    }
}

#[test]
fn tumbling_windows_on_timers_match_the_oracle_across_leases_on_4_shards() {
    for seed in [4, 5] {
        run(4, seed);
    }
}

/// A watermark for a source that is not on event time is refused.
#[test]
fn a_watermark_for_a_source_not_on_event_time_is_refused() {
    let node = Node::start(NodeConfig {
        shards: 1,
        placement: Placement::Unpinned,
        ..Default::default()
    })
    .expect("node starts");
    let mut b = AppBuilder::new("untimed");
    let events = b.source::<Ev>("events");
    let counts = b.operator("window", Tumbling, &[events]);
    let _rx = b.sink("out", counts);
    let h = node.deploy(b.build().expect("valid")).expect("deploys");
    let err = h
        .source::<Ev>("events")
        .expect("source")
        .watermark(10)
        .expect_err("refused");
    assert!(
        matches!(err, dirigo_engine::EngineError::NotOnEventTime { .. }),
        "{err}"
    );
    node.shutdown();
}

/// Reports the watermark each event runs at.
struct SeeWatermark;
impl Function for SeeWatermark {
    type In = Ev;
    type Out = Time;
    type State = dirigo_engine::Sequential<()>;
    fn on_message(&self, _: &mut Self::State, key: u64, _: Ev, ctx: &mut Context<'_, Time>) {
        let wm = ctx.watermark();
        ctx.emit(key, wm);
    }
}

/// Send `batches` one-event batches of times 1000, 1010, ... to an app
/// whose source's watermark period is `period`; the watermarks the events
/// ran at, and how long the sending took.
fn watermarks_seen(
    node: &Node,
    name: &str,
    period: Duration,
    batches: u64,
) -> (Vec<Time>, Duration, AppHandle, SinkReceiver<Time>) {
    let mut b = AppBuilder::new(name);
    let events = b.source::<Ev>("events");
    b.event_time(events, EventTime::new(|e: &Ev| e.ts).period(period));
    let seen = b.operator("see", SeeWatermark, &[events]);
    let rx = b.sink("out", seen);
    let h = node.deploy(b.build().expect("valid")).expect("deploys");
    let src = h.source::<Ev>("events").expect("source");
    let started = std::time::Instant::now();
    for i in 0..batches {
        let e = Ev {
            user: 1,
            ts: 1_000 + 10 * i,
        };
        src.send_batch(vec![(1, e)], Duration::from_secs(5))
            .expect("accepted");
    }
    let took = started.elapsed();
    h.quiesce(Duration::from_secs(10)).expect("quiesces");
    (common::values(&rx), took, h, rx)
}

/// A source sends at most one watermark per period: events sent within
/// one see a few watermarks, not one per batch as with period 0; and the
/// latest watermark held back goes out once the period is over.
#[test]
fn a_sources_watermark_period_limits_its_marks_and_sends_the_last_after_it() {
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        ..Default::default()
    })
    .expect("node starts");
    let distinct = |seen: &[Time]| seen.iter().collect::<std::collections::BTreeSet<_>>().len();
    let (every, _, _, _) = watermarks_seen(&node, "period-0", Duration::ZERO, 60);
    assert!(distinct(&every) >= 50, "one per batch: {every:?}");
    let period = Duration::from_secs(1);
    let (held, took, h, rx) = watermarks_seen(&node, "period-1s", period, 60);
    // One at the first batch, one per period that ended while sending.
    let most = 2 + (took.as_secs_f64() / period.as_secs_f64()) as usize;
    assert!(
        distinct(&held) <= most,
        "{} watermarks in {took:?}: {held:?}",
        distinct(&held)
    );
    // After the period, the held-back latest (the last batch's time) is
    // out: a new event runs at it.
    std::thread::sleep(period + Duration::from_millis(300));
    let src = h.source::<Ev>("events").expect("source");
    let e = Ev { user: 1, ts: 5_000 };
    src.send_batch(vec![(1, e)], Duration::from_secs(5))
        .expect("accepted");
    h.quiesce(Duration::from_secs(10)).expect("quiesces");
    assert_eq!(common::values(&rx), vec![1_000 + 10 * 59]);
    node.shutdown();
}

/// A lone source that goes quiet for its idle time and comes back: idle,
/// it holds its watermark where it was (it is the highest of the app's
/// inputs), so the events after the quiet are on time, not late for a
/// watermark gone to the end of time.
#[test]
fn a_lone_idle_source_holds_its_watermark_and_what_follows_is_on_time() {
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        housekeeping: Duration::from_millis(2),
        ..Default::default()
    })
    .expect("node starts");
    let mut b = AppBuilder::new("lone");
    let events = b.source::<Ev>("events");
    let quiet = Duration::from_millis(30);
    b.event_time(
        events,
        EventTime::new(|e: &Ev| e.ts)
            .out_of_orderness(BOUND)
            .idle_after(quiet),
    );
    let counts = b.operator("window", Tumbling, &[events]);
    let rx = b.sink("out", counts);
    let h = node.deploy(b.build().expect("valid")).expect("deploys");
    let src = h.source::<Ev>("events").expect("source");
    let send = |from: Time, to: Time| {
        for ts in (from..to).step_by(10) {
            src.send_batch(vec![(1, Ev { user: 1, ts })], Duration::from_secs(5))
                .expect("accepted");
        }
    };
    send(1_000, 1_500);
    // Quiet: the source goes idle (housekeeping looks every 2 ms).
    std::thread::sleep(quiet * 5);
    send(1_500, 2_000);
    src.watermark(Time::MAX).expect("the end");
    h.quiesce(Duration::from_secs(10)).expect("quiesces");
    let rows = common::values(&rx);
    let late: Vec<_> = rows.iter().filter(|r| matches!(r, Row::Late(..))).collect();
    assert!(late.is_empty(), "late after the quiet: {late:?}");
    let windows = rows.iter().filter(|r| matches!(r, Row::Window(..))).count();
    assert_eq!(windows, 10, "{rows:?}");
    node.shutdown();
}

/// Two sources on event time feed one window: its watermark is the lower
/// of theirs, so windows wait for the slower one; once it is quiet for its
/// idle time, the other one alone moves the watermark, and windows fire
/// without any client watermark.
#[test]
fn an_idle_input_does_not_hold_back_the_windows_of_the_other() {
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        ..Default::default()
    })
    .expect("node starts");
    let mut b = AppBuilder::new("two-inputs").slo(Duration::from_millis(200));
    let fast = b.source::<Ev>("fast");
    let slow = b.source::<Ev>("slow");
    b.event_time(fast, EventTime::new(|e: &Ev| e.ts));
    let quiet = Duration::from_millis(50);
    b.event_time(slow, EventTime::new(|e: &Ev| e.ts).idle_after(quiet));
    let counts = b.operator("window", Tumbling, &[fast, slow]);
    let rx = b.sink("out", counts);
    let h = node.deploy(b.build().expect("valid")).expect("deploys");
    let send = |src: &str, ts: Time| {
        let e = Ev { user: 1, ts };
        let s = h.source::<Ev>(src).expect("source");
        s.send_batch(
            vec![(key_hash(&1u64.to_le_bytes()), e)],
            Duration::from_secs(5),
        )
        .expect("accepted");
    };
    send("slow", 150);
    for ts in (100..1_000).step_by(10) {
        send("fast", ts);
    }
    // Window [100, 200) has 10 fast events and the slow one; the slow
    // source's watermark (150) holds back every window after it until it
    // goes idle.
    let mut fired = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fired.len() < 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "windows fired: {fired:?}"
        );
        for e in rx.drain() {
            if let SinkEvent::Data {
                value: Row::Window(_, start, n, _),
                ..
            } = e
            {
                fired.insert(start, n);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(fired.get(&100), Some(&11));
    assert!(
        (200..900).step_by(100).all(|w| fired.get(&w) == Some(&10)),
        "{fired:?}"
    );
    node.shutdown();
}

mod durable {
    //! A durable app on event time: a checkpoint saves each window's
    //! state with its timers and watermark; a restart restores them and
    //! replays the log after, so the windows open at the checkpoint fire
    //! after the restart, and the windows fired before it plus those fired
    //! after equal the oracle's.

    use super::*;
    use dirigo_engine::rkyv;

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq)]
    #[rkyv(crate = dirigo_engine::rkyv)]
    pub struct DEv {
        pub user: u64,
        pub ts: u64,
    }

    struct Count;
    impl Function for Count {
        type In = DEv;
        type Out = (u64, Time, u64);
        type State = Keyed<BTreeMap<Time, u64>>;
        fn on_message(
            &self,
            st: &mut Self::State,
            key: u64,
            e: DEv,
            ctx: &mut Context<'_, Self::Out>,
        ) {
            let start = e.ts / WINDOW * WINDOW;
            assert!(start + WINDOW - 1 > ctx.watermark(), "nothing is late here");
            *st.entry(key).entry(start).or_default() += 1;
            assert!(ctx.set_timer(start + WINDOW - 1));
        }
        fn on_timer(
            &self,
            st: &mut Self::State,
            key: u64,
            at: Time,
            ctx: &mut Context<'_, Self::Out>,
        ) {
            let start = at + 1 - WINDOW;
            let w = st.entry(key);
            let n = w.remove(&start).expect("open");
            if w.is_empty() {
                st.remove(key);
            }
            ctx.emit(key, (key, start, n));
        }
    }

    fn app() -> (dirigo_engine::App, SinkReceiver<(u64, Time, u64)>) {
        let mut b = AppBuilder::new("durable-windows").durable();
        let events = b.durable_source::<DEv>("events");
        b.event_time(
            events,
            EventTime::new(|e: &DEv| e.ts).out_of_orderness(BOUND),
        );
        let counts = b.durable_operator("count", Count, &[events]);
        let rx = b.sink("out", counts);
        (b.build().expect("a durable app on event time"), rx)
    }

    fn node(dir: &std::path::Path) -> Node {
        Node::start(NodeConfig {
            shards: 2,
            placement: Placement::Unpinned,
            data_dir: Some(dir.to_owned()),
            ..Default::default()
        })
        .expect("node starts")
    }

    fn send(h: &AppHandle, evs: &[DEv]) {
        let src = h.source::<DEv>("events").expect("source");
        for chunk in evs.chunks(17) {
            let b = chunk
                .iter()
                .map(|e| (key_hash(&e.user.to_le_bytes()), e.clone()))
                .collect();
            src.send_batch(b, Duration::from_secs(10)).expect("logged");
        }
    }

    fn outputs(rx: &SinkReceiver<(u64, Time, u64)>) -> Vec<(u64, Time, u64)> {
        common::values(rx)
    }

    /// A durable operator spilled with windows open: its timers stay with
    /// its dormant record while its state is in a spill file, and the
    /// watermark that wakes it fires them on the state read back.
    #[test]
    fn timers_of_a_spilled_actor_fire_when_it_wakes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = Node::start(NodeConfig {
            shards: 2,
            placement: Placement::Unpinned,
            data_dir: Some(dir.path().to_owned()),
            idle_deactivate: Duration::from_millis(5),
            ..Default::default()
        })
        .expect("node starts");
        let (a, rx) = app();
        let h = node.deploy(a).expect("deploys");
        let evs: Vec<DEv> = (0..200u64)
            .map(|i| DEv {
                user: i % 5,
                ts: 1_000 + i,
            })
            .collect();
        send(&h, &evs);
        h.quiesce(Duration::from_secs(30)).expect("quiesces");
        let before = outputs(&rx);
        // The count operator goes dormant and is spilled, windows open.
        common::wait_spilled(&node, 1);
        send(
            &h,
            &[DEv {
                user: 0,
                ts: 1 << 40,
            }],
        );
        h.quiesce(Duration::from_secs(30)).expect("quiesces");
        let mut fired = before;
        fired.extend(outputs(&rx));
        fired.sort_unstable();
        let mut want: BTreeMap<(u64, Time), u64> = BTreeMap::new();
        for e in &evs {
            *want
                .entry((key_hash(&e.user.to_le_bytes()), e.ts / WINDOW * WINDOW))
                .or_default() += 1;
        }
        let want: Vec<(u64, Time, u64)> = want.into_iter().map(|((k, s), n)| (k, s, n)).collect();
        assert_eq!(fired, want);
        let stats = node.stats().expect("stats");
        assert!(
            stats.shards.iter().map(|s| s.unspills).sum::<u64>() > 0,
            "woken from a spill"
        );
        node.shutdown();
    }

    /// Client watermarks are not logged, so a durable source on event time
    /// refuses them: its watermarks come from its logged events alone,
    /// and a replay makes them again.
    #[test]
    fn a_durable_source_refuses_client_watermarks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = node(dir.path());
        let (a, _rx) = app();
        let h = node.deploy(a).expect("deploys");
        let err = h
            .source::<DEv>("events")
            .expect("source")
            .watermark(10)
            .expect_err("refused");
        assert!(
            matches!(err, dirigo_engine::EngineError::NotOnEventTime { .. }),
            "{err}"
        );
        node.shutdown();
    }

    #[test]
    fn windows_open_at_a_checkpoint_fire_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = ChaCha8Rng::seed_from_u64(77);
        let mut now = 1_000;
        let mut evs: Vec<DEv> = (0..3_000)
            .map(|_| {
                now += rng.gen_range(0..3);
                DEv {
                    user: rng.gen_range(0..10),
                    ts: now - rng.gen_range(0..BOUND),
                }
            })
            .collect();
        // A gap after the first part: the windows open at the checkpoint
        // get no event after it, so only their checkpointed timers fire
        // them.
        for e in &mut evs[1_000..] {
            e.ts += 5 * WINDOW;
        }
        // Far ahead: its watermark fires every window before it.
        evs.push(DEv {
            user: 0,
            ts: 1 << 40,
        });
        let (part1, rest) = evs.split_at(1_000);
        let (part2, part3) = rest.split_at(1_000);
        let mut fired = Vec::new();
        {
            let node = node(dir.path());
            let (a, rx) = app();
            let h = node.deploy(a).expect("deploys");
            send(&h, part1);
            h.quiesce(Duration::from_secs(30)).expect("quiesces");
            fired.extend(outputs(&rx));
            assert!(!fired.is_empty(), "windows fired before the checkpoint");
            h.checkpoint().expect("checkpoint");
            send(&h, part2);
            // What fires now fires again after the restart (the log after
            // the checkpoint replays): not counted.
            node.shutdown();
        }
        let node = node(dir.path());
        let (a, rx) = app();
        let h = node.deploy(a).expect("recovers");
        send(&h, part3);
        h.quiesce(Duration::from_secs(30)).expect("quiesces");
        fired.extend(outputs(&rx));
        fired.sort_unstable();
        let mut want: BTreeMap<(u64, Time), u64> = BTreeMap::new();
        for e in &evs[..evs.len() - 1] {
            *want
                .entry((key_hash(&e.user.to_le_bytes()), e.ts / WINDOW * WINDOW))
                .or_default() += 1;
        }
        let want: Vec<(u64, Time, u64)> = want.into_iter().map(|((k, s), n)| (k, s, n)).collect();
        assert_eq!(fired.len(), want.len(), "windows fired once each");
        assert_eq!(fired, want);
        node.shutdown();
    }
}
