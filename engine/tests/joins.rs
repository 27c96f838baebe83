//! Joins end to end: two sources on event time, joined per key by a
//! windowed join (tumbling and sliding), an interval join and an
//! incremental keyed join, on 2 and 4 shards with the join's lessees
//! leased and revoked at random, against a sequential oracle (every pair
//! the join's definition gives; no event is late here, so the pairs do not
//! depend on how the two sources' watermarks interleave).

mod common;

use std::time::Duration;

use dirigo_engine::{
    key_hash, AppBuilder, EventTime, Function, IntervalJoin, Joined, KeyedJoin, Side, SinkEvent,
    Time, WindowJoin, Windows,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BOUND: Time = 20;

#[derive(Clone, Debug, PartialEq)]
struct Ev {
    id: u64,
    user: u64,
    ts: Time,
}

#[derive(Clone, Copy, Debug)]
enum Case {
    Tumbling,
    Sliding,
    Interval,
    Keyed,
}

fn ts(e: &Ev) -> Time {
    e.ts
}

fn key(e: &Ev) -> u64 {
    key_hash(&e.user.to_le_bytes())
}

/// Events of both sides, in client batches: time moves on, out of order
/// within the bound (never late).
fn input(rng: &mut ChaCha8Rng) -> Vec<(bool, Vec<Ev>)> {
    let (mut now, mut id) = (1_000, 0);
    (0..200)
        .map(|_| {
            let left = rng.gen_bool(0.5);
            let b = (0..rng.gen_range(1..8))
                .map(|_| {
                    now += rng.gen_range(0..5);
                    id += 1;
                    Ev {
                        id,
                        user: rng.gen_range(0..6),
                        ts: now - rng.gen_range(0..BOUND),
                    }
                })
                .collect();
            (left, b)
        })
        .collect()
}

/// Every pair the join gives: (key, left id, right id), once per window
/// they share for a windowed join.
fn oracle(case: Case, input: &[(bool, Vec<Ev>)]) -> Vec<(u64, u64, u64)> {
    let side = |l: bool| -> Vec<&Ev> {
        input
            .iter()
            .filter(|(s, _)| *s == l)
            .flat_map(|(_, b)| b)
            .collect()
    };
    let (ls, rs) = (side(true), side(false));
    let mut out = Vec::new();
    for l in &ls {
        for r in rs.iter().filter(|r| r.user == l.user) {
            let n = match case {
                Case::Tumbling => u64::from(l.ts / 50 == r.ts / 50),
                Case::Sliding => Windows::Sliding {
                    size: 50,
                    slide: 10,
                }
                .windows_of(l.ts)
                .into_iter()
                .filter(|w| w.0 <= r.ts && r.ts < w.1)
                .count() as u64,
                Case::Interval => u64::from(l.ts <= r.ts + 15 && r.ts <= l.ts + 25),
                Case::Keyed => 1,
            };
            for _ in 0..n {
                out.push((key(l), l.id, r.id));
            }
        }
    }
    out.sort_unstable();
    out
}

/// The sliding windows an instant is in, for the oracle.
trait WindowsOf {
    fn windows_of(self, t: Time) -> Vec<(Time, Time)>;
}

impl WindowsOf for Windows {
    fn windows_of(self, t: Time) -> Vec<(Time, Time)> {
        let Windows::Sliding { size, slide } = self else {
            unreachable!("the oracle asks of sliding windows")
        };
        (0..=t / slide)
            .map(|k| k * slide)
            .filter(|s| s + size > t)
            .map(|s| (s, s + size))
            .collect()
    }
}

fn build<F>(
    name: &str,
    f: F,
) -> (
    dirigo_engine::App,
    dirigo_engine::SinkReceiver<Joined<Ev, Ev>>,
)
where
    F: Function<In = Side<Ev, Ev>, Out = Joined<Ev, Ev>>,
{
    let mut b = AppBuilder::new(name).slo(Duration::from_millis(200));
    let left = b.source::<Ev>("left");
    let right = b.source::<Ev>("right");
    b.event_time(left, EventTime::new(ts).out_of_orderness(BOUND));
    b.event_time(right, EventTime::new(ts).out_of_orderness(BOUND));
    let joined = b.join("join", f, left, right);
    let rx = b.sink("out", joined);
    (b.build().expect("valid app"), rx)
}

fn run(shards: usize, seed: u64, case: Case) {
    let node = common::leasing_node(shards);
    let name = format!("join-{case:?}-{shards}-{seed}");
    let (app, rx) = match case {
        Case::Tumbling => build(
            &name,
            WindowJoin::new(Windows::Tumbling { size: 50 }, ts, ts).expect("valid"),
        ),
        Case::Sliding => build(
            &name,
            WindowJoin::new(
                Windows::Sliding {
                    size: 50,
                    slide: 10,
                },
                ts,
                ts,
            )
            .expect("valid"),
        ),
        Case::Interval => build(&name, IntervalJoin::new(15, 25, ts, ts)),
        Case::Keyed => build(&name, KeyedJoin::default()),
    };
    let h = node.deploy(app).expect("deploys");
    let (l, r) = (
        h.source::<Ev>("left").expect("left"),
        h.source::<Ev>("right").expect("right"),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let input = input(&mut rng);
    let (mut leases, mut revokes) = (0, 0);
    for (left, b) in &input {
        let src = if *left { &l } else { &r };
        let keyed = b.iter().map(|e| (key(e), e.clone())).collect();
        src.send_batch(keyed, Duration::from_secs(10))
            .expect("accepted");
        let (l, r) = common::churn(&h, "join", shards, &mut rng);
        leases += l;
        revokes += r;
    }
    l.watermark(Time::MAX).expect("left done");
    r.watermark(Time::MAX).expect("right done");
    h.quiesce(Duration::from_secs(60)).expect("quiesces");
    let mut got: Vec<(u64, u64, u64)> = rx
        .drain()
        .into_iter()
        .filter_map(|e| match e {
            SinkEvent::Data { value, .. } => Some((value.key, value.left.id, value.right.id)),
            SinkEvent::Barrier(_) => None,
        })
        .collect();
    got.sort_unstable();
    let want = oracle(case, &input);
    let ctx = format!("{case:?}, seed {seed}, {shards} shards");
    assert!(!want.is_empty(), "{ctx}: the input joins");
    assert_eq!(got.len(), want.len(), "{ctx}: pairs");
    assert_eq!(got, want, "{ctx}");
    let stats = node.stats().expect("stats");
    assert_eq!(
        stats.app(h.name()).expect("stats").late_events,
        0,
        "{ctx}: nothing late"
    );
    assert!(
        leases > 0 && revokes > 0,
        "{ctx}: leased {leases}, revoked {revokes}"
    );
    node.shutdown();
}

#[test]
fn joins_match_the_oracle_on_2_shards() {
    for (i, case) in [Case::Tumbling, Case::Sliding, Case::Interval, Case::Keyed]
        .into_iter()
        .enumerate()
    {
        run(2, 50 + i as u64, case);
    }
}

#[test]
fn joins_match_the_oracle_on_4_shards() {
    for (i, case) in [Case::Tumbling, Case::Sliding, Case::Interval, Case::Keyed]
        .into_iter()
        .enumerate()
    {
        run(4, 60 + i as u64, case);
    }
}

#[test]
fn a_windowed_join_over_sessions_is_refused() {
    let err = WindowJoin::<Ev, Ev>::new(Windows::Session { gap: 5 }, ts, ts)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("sessions"), "{err}");
    assert!(WindowJoin::<Ev, Ev>::new(Windows::Sliding { size: 5, slide: 10 }, ts, ts).is_err());
}
