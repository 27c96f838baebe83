//! The windows library end to end: tumbling, sliding and session windows
//! (with and without allowed lateness), over a source on event time with
//! out-of-order and late events, on 2 and 4 shards with the window's
//! lessees leased and revoked at random, against a sequential oracle: the
//! same results (late firings included) and exactly the late events the
//! oracle finds late, on their own stream.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use dirigo_engine::{
    key_hash, Agg, AppBuilder, EventTime, Node, NodeConfig, Placement, SinkEvent, SinkReceiver,
    Time, Window, WindowResult, Windows,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BOUND: Time = 30;

#[derive(Clone, Debug, PartialEq)]
struct Ev {
    user: u64,
    ts: Time,
    amount: u32,
}

/// (key, start, end, value, update)
type Row = (u64, Time, Time, i64, bool);

fn key(e: &Ev) -> u64 {
    key_hash(&e.user.to_le_bytes())
}

/// What a test window computes.
#[derive(Clone, Copy, Debug)]
enum Case {
    TumblingCount,
    SlidingSum,
    SessionMax,
}

impl Case {
    fn windows(self) -> Windows {
        match self {
            Case::TumblingCount => Windows::Tumbling { size: 100 },
            Case::SlidingSum => Windows::Sliding {
                size: 100,
                slide: 25,
            },
            Case::SessionMax => Windows::Session { gap: 30 },
        }
    }
    fn agg(self) -> Agg<Ev> {
        match self {
            Case::TumblingCount => Agg::count(),
            Case::SlidingSum => Agg::sum(|e: &Ev| f64::from(e.amount)),
            Case::SessionMax => Agg::max(|e: &Ev| f64::from(e.amount)),
        }
    }
}

struct Sinks {
    results: SinkReceiver<WindowResult<f64>>,
    late: SinkReceiver<Ev>,
}

fn app(name: &str, case: Case, lateness: Time) -> (dirigo_engine::App, Sinks) {
    let mut b = AppBuilder::new(name).slo(Duration::from_millis(200));
    let events = b.source::<Ev>("events");
    b.event_time(
        events,
        EventTime::new(|e: &Ev| e.ts).out_of_orderness(BOUND),
    );
    let w = Window::new(case.windows(), |e: &Ev| e.ts, case.agg()).allowed_lateness(lateness);
    let (results, late) = b.window("w", w, events);
    let results = b.sink("results", results);
    let late = b.sink("late", late);
    (b.build().expect("valid app"), Sinks { results, late })
}

fn batches(rng: &mut ChaCha8Rng, n: usize) -> Vec<Vec<Ev>> {
    let mut now: Time = 1_000;
    (0..n)
        .map(|_| {
            (0..rng.gen_range(1..20))
                .map(|_| {
                    now += rng.gen_range(0..6);
                    let back = if rng.gen_bool(0.05) {
                        rng.gen_range(40..200)
                    } else {
                        rng.gen_range(0..=BOUND)
                    };
                    Ev {
                        user: rng.gen_range(0..12),
                        ts: now.saturating_sub(back),
                        amount: rng.gen_range(1..10),
                    }
                })
                .collect()
        })
        .collect()
}

/// A key's windows in the oracle: (start, end) -> (count, sum, max, fired).
type Open = BTreeMap<(Time, Time), (u64, i64, i64, bool)>;

fn assign(case: Case, ts: Time) -> Vec<(Time, Time)> {
    match case.windows() {
        Windows::Tumbling { size } => vec![(ts / size * size, ts / size * size + size)],
        Windows::Sliding { size, slide } => (0..=ts / slide)
            .map(|k| k * slide)
            .filter(|s| s + size > ts)
            .map(|s| (s, s + size))
            .collect(),
        Windows::Session { gap } => vec![(ts, ts + gap)],
    }
}

fn value(case: Case, (n, sum, max, _): (u64, i64, i64, bool)) -> i64 {
    match case {
        Case::TumblingCount => n as i64,
        Case::SlidingSum => sum,
        Case::SessionMax => max,
    }
}

/// The sequential run, batch by batch at the watermark after the batches
/// before: results (late firings as updates) and late events.
fn oracle(case: Case, lateness: Time, input: &[Vec<Ev>]) -> (Vec<Row>, Vec<(u64, Time)>) {
    let (mut rows, mut late) = (Vec::new(), Vec::new());
    let mut open: BTreeMap<u64, Open> = BTreeMap::new();
    let (mut wm, mut latest) = (0, 0);
    for b in input {
        for e in b {
            latest = latest.max(e.ts);
            let k = key(e);
            let mut took = false;
            for mut win in assign(case, e.ts) {
                if (win.1 - 1).saturating_add(lateness) <= wm {
                    continue;
                }
                took = true;
                let w = open.entry(k).or_default();
                let mut acc = (0, 0, 0, false);
                let merged: Vec<_> = match case {
                    Case::SessionMax => w
                        .keys()
                        .copied()
                        .filter(|&(s, en)| en > win.0 && s < win.1)
                        .collect(),
                    _ => w.contains_key(&win).then_some(win).into_iter().collect(),
                };
                for m in merged {
                    let a = w.remove(&m).unwrap();
                    acc = (acc.0 + a.0, acc.1 + a.1, acc.2.max(a.2), false);
                    win = (win.0.min(m.0), win.1.max(m.1));
                }
                acc = (
                    acc.0 + 1,
                    acc.1 + i64::from(e.amount),
                    acc.2.max(i64::from(e.amount)),
                    false,
                );
                if win.1 - 1 <= wm {
                    acc.3 = true;
                    rows.push((k, win.0, win.1, value(case, acc), true));
                }
                w.insert(win, acc);
            }
            if !took {
                late.push((e.user, e.ts));
            }
        }
        wm = wm.max(latest.saturating_sub(BOUND));
        fire(case, lateness, &mut open, &mut rows, wm);
    }
    fire(case, lateness, &mut open, &mut rows, Time::MAX);
    rows.sort_unstable();
    late.sort_unstable();
    (rows, late)
}

fn fire(case: Case, lateness: Time, open: &mut BTreeMap<u64, Open>, rows: &mut Vec<Row>, wm: Time) {
    for (&k, w) in open.iter_mut() {
        w.retain(|&(s, e), acc| {
            if !acc.3 && e - 1 <= wm {
                acc.3 = true;
                rows.push((k, s, e, value(case, *acc), false));
            }
            (e - 1).saturating_add(lateness) > wm
        });
    }
}

fn run(shards: usize, seed: u64, case: Case, lateness: Time) {
    let node = common::leasing_node(shards);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (a, sinks) = app(&format!("w-{case:?}-{shards}-{seed}"), case, lateness);
    let h = node.deploy(a).expect("deploys");
    let src = h.source::<Ev>("events").expect("source");
    let input = batches(&mut rng, 250);
    let (mut leases, mut revokes) = (0, 0);
    for b in &input {
        let keyed = b.iter().map(|e| (key(e), e.clone())).collect();
        src.send_batch(keyed, Duration::from_secs(10))
            .expect("accepted");
        let (l, r) = common::churn(&h, "w", shards, &mut rng);
        leases += l;
        revokes += r;
    }
    src.watermark(Time::MAX).expect("the last watermark");
    h.quiesce(Duration::from_secs(60)).expect("quiesces");
    let data = |e| match e {
        SinkEvent::Data { value, .. } => Some(value),
        SinkEvent::Barrier(_) => None,
    };
    let mut got: Vec<Row> = sinks
        .results
        .drain()
        .into_iter()
        .filter_map(data)
        .map(|r| (r.key, r.start, r.end, r.value as i64, r.update))
        .collect();
    got.sort_unstable();
    let mut late: Vec<(u64, Time)> = sinks
        .late
        .drain()
        .into_iter()
        .filter_map(|e| match e {
            SinkEvent::Data { value, .. } => Some((value.user, value.ts)),
            SinkEvent::Barrier(_) => None,
        })
        .collect();
    late.sort_unstable();
    let (want, want_late) = oracle(case, lateness, &input);
    let ctx = format!("{case:?}, lateness {lateness}, seed {seed}, {shards} shards");
    assert!(!want_late.is_empty(), "{ctx}: the input has late events");
    let updates = want.iter().filter(|r| r.4).count();
    assert_eq!(updates > 0, lateness > 0, "{ctx}: late firings ({updates})");
    assert_eq!(got.len(), want.len(), "{ctx}: results");
    assert_eq!(got, want, "{ctx}");
    assert_eq!(late, want_late, "{ctx}: late events");
    let stats = node.stats().expect("stats");
    let s = stats.app(h.name()).expect("stats of the app");
    assert_eq!(s.late_events, want_late.len() as u64, "{ctx}: late counter");
    assert!(
        leases > 0 && revokes > 0,
        "{ctx}: leased {leases}, revoked {revokes}"
    );
    node.shutdown();
}

#[test]
fn tumbling_sliding_and_session_windows_match_the_oracle_on_2_shards() {
    for (i, case) in [Case::TumblingCount, Case::SlidingSum, Case::SessionMax]
        .into_iter()
        .enumerate()
    {
        run(2, 10 + i as u64, case, 0);
        run(2, 20 + i as u64, case, 60);
    }
}

#[test]
fn tumbling_sliding_and_session_windows_match_the_oracle_on_4_shards() {
    for (i, case) in [Case::TumblingCount, Case::SlidingSum, Case::SessionMax]
        .into_iter()
        .enumerate()
    {
        run(4, 30 + i as u64, case, 0);
        run(4, 40 + i as u64, case, 60);
    }
}

/// A session's gap exactly at a batch boundary: the event `gap` after the
/// last one starts a new session (windows touch, they do not overlap),
/// one a unit sooner extends it; the watermark between batches does not
/// change that.
#[test]
fn a_session_gap_at_a_batch_boundary_splits_and_one_less_merges() {
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        ..Default::default()
    })
    .expect("node starts");
    let mut b = AppBuilder::new("sessions").slo(Duration::from_millis(200));
    let events = b.source::<Ev>("events");
    b.event_time(events, EventTime::new(|e: &Ev| e.ts).out_of_orderness(100));
    let w = Window::new(
        Windows::Session { gap: 30 },
        |e: &Ev| e.ts,
        Agg::<Ev>::count(),
    );
    let (results, _late) = b.window("w", w, events);
    let rx = b.sink("results", results);
    let h = node.deploy(b.build().expect("valid")).expect("deploys");
    let src = h.source::<Ev>("events").expect("source");
    let send = |user: u64, ts: Time| {
        let e = Ev {
            user,
            ts,
            amount: 1,
        };
        src.send_batch(vec![(key(&e), e)], Duration::from_secs(5))
            .expect("accepted");
    };
    // User 1: 1000, then 1030 (exactly the gap) in the next batch.
    // User 2: 1000, then 1029 (one less) in the next batch.
    send(1, 1000);
    send(2, 1000);
    send(1, 1030);
    send(2, 1029);
    src.watermark(Time::MAX).expect("done");
    h.quiesce(Duration::from_secs(30)).expect("quiesces");
    let mut got: Vec<(u64, Time, Time, f64)> = rx
        .drain()
        .into_iter()
        .filter_map(|e| match e {
            SinkEvent::Data { value: r, .. } => Some((r.key, r.start, r.end, r.value)),
            SinkEvent::Barrier(_) => None,
        })
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    let k = |u: u64| key_hash(&u.to_le_bytes());
    let mut want = vec![
        (k(1), 1000, 1030, 1.0),
        (k(1), 1030, 1060, 1.0),
        (k(2), 1000, 1059, 2.0),
    ];
    want.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    assert_eq!(got, want);
    node.shutdown();
}
