//! NEXMark's queries on Dirigo against sequential oracles: the same
//! generated input (out of order within the source's bound, so nothing is
//! late), on 2 and 4 shards, with the queries' operators leased and
//! revoked at random while events flow; every query's output equals the
//! oracle's. And Q7 on input out of order past the bound: its late side
//! output holds exactly the bids the oracle finds late.

use std::collections::BTreeMap;
use std::time::Duration;

use dirigo_bench::nexmark::queries::{
    self, Winner, Q2_SKIP, Q4_SIZE, Q5_SIZE, Q5_SLIDE, Q7_SIZE, Q8_SIZE,
};
use dirigo_bench::nexmark::{Event, Generator, GeneratorConfig};
use dirigo_engine::{App, Node, NodeConfig, Placement, SinkEvent, SinkReceiver, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BOUND: Time = 2_000;
const EVENTS: usize = 40_000;

fn input(seed: u64) -> Vec<Event> {
    Generator::new(GeneratorConfig {
        seed,
        out_of_order: BOUND,
        ..Default::default()
    })
    .take(EVENTS)
}

fn node(shards: usize) -> Node {
    Node::start(NodeConfig {
        shards,
        placement: Placement::Unpinned,
        idle_deactivate: Duration::from_millis(20),
        spin_before_park: Duration::from_micros(20),
        autoscale: dirigo_engine::AutoScale {
            enabled: false,
            accept_below: usize::MAX,
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("node starts")
}

/// Feed `events` to `h` in client batches of random sizes, leasing and
/// revoking `ops` at random between them, then the last watermark; the
/// batches' sizes.
fn feed(
    h: &dirigo_engine::AppHandle,
    shards: usize,
    seed: u64,
    events: &[Event],
    ops: &[&str],
) -> Vec<usize> {
    let src = h.source::<Event>("events").expect("source");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut leases, mut revokes) = (0, 0);
    let mut sizes = Vec::new();
    let mut at = 0;
    while at < events.len() {
        let n = rng.gen_range(50..400).min(events.len() - at);
        let batch = events[at..at + n].iter().map(|e| (0, e.clone())).collect();
        src.send_batch(batch, Duration::from_secs(30))
            .expect("accepted");
        sizes.push(n);
        at += n;
        let op = ops[rng.gen_range(0..ops.len())];
        match rng.gen_range(0..100) {
            0..=19 => {
                leases += h
                    .lease(op, rng.gen_range(0..shards))
                    .expect("lease")
                    .is_some() as u32
            }
            20..=29 => revokes += h.revoke(op, None).unwrap_or(0),
            _ => {}
        }
    }
    src.watermark(Time::MAX).expect("the end");
    h.quiesce(Duration::from_secs(120)).expect("quiesces");
    assert!(
        leases > 0 && revokes > 0,
        "leased {leases}, revoked {revokes}"
    );
    sizes
}

/// Run `app` on `shards` shards, feeding `events` in client batches and
/// leasing and revoking `ops` at random; its outputs, sorted.
fn run<T: Send + Ord + 'static>(
    (app, rx): (App, SinkReceiver<T>),
    shards: usize,
    seed: u64,
    events: &[Event],
    ops: &[&str],
) -> Vec<T> {
    let node = node(shards);
    let h = node.deploy(app).expect("deploys");
    feed(&h, shards, seed, events, ops);
    let mut got: Vec<T> = values(&rx);
    got.sort();
    let stats = node.stats().expect("stats");
    let s = stats.app(h.name()).expect("app stats");
    assert_eq!(s.late_events, 0, "nothing is late");
    node.shutdown();
    got
}

/// The data a sink received so far.
fn values<T>(rx: &SinkReceiver<T>) -> Vec<T> {
    rx.drain()
        .into_iter()
        .filter_map(|e| match e {
            SinkEvent::Data { value, .. } => Some(value),
            SinkEvent::Barrier(_) => None,
        })
        .collect()
}

fn bids(events: &[Event]) -> impl Iterator<Item = &dirigo_bench::nexmark::Bid> {
    events.iter().filter_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

fn people(events: &[Event]) -> impl Iterator<Item = &dirigo_bench::nexmark::Person> {
    events.iter().filter_map(|e| match e {
        Event::Person(p) => Some(p),
        _ => None,
    })
}

fn auctions(events: &[Event]) -> impl Iterator<Item = &dirigo_bench::nexmark::Auction> {
    events.iter().filter_map(|e| match e {
        Event::Auction(a) => Some(a),
        _ => None,
    })
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn q0_to_q2(shards: usize, seed: u64) {
    let ev = input(seed);
    let got = run(queries::q0("q0", BOUND), shards, seed, &ev, &["pass"]);
    let key = |e: &Event| format!("{:020} {e:?}", e.time());
    let got: Vec<String> = sorted(got.iter().map(key).collect());
    assert_eq!(got, sorted(ev.iter().map(key).collect()), "Q0");
    let got = run(
        queries::q1("q1", BOUND),
        shards,
        seed,
        &ev,
        &["bids", "euro"],
    );
    let want = bids(&ev).map(|b| (b.auction, b.bidder, b.price * 908 / 1000, b.date_time));
    assert_eq!(got, sorted(want.collect()), "Q1");
    let got = run(queries::q2("q2", BOUND), shards, seed, &ev, &["select"]);
    let want: Vec<_> = bids(&ev)
        .filter(|b| b.auction % Q2_SKIP == 0)
        .map(|b| (b.auction, b.price))
        .collect();
    assert!(!want.is_empty(), "Q2 selects something");
    assert_eq!(got, sorted(want), "Q2");
}

fn q3(shards: usize, seed: u64) {
    let ev = input(seed);
    let got = run(
        queries::q3("q3", BOUND),
        shards,
        seed,
        &ev,
        &["by-seller", "people"],
    );
    let mut want = Vec::new();
    for p in people(&ev).filter(|p| ["OR", "ID", "CA"].contains(&p.state.as_str())) {
        for a in auctions(&ev).filter(|a| a.category == 10 && a.seller == p.id) {
            want.push((p.name.clone(), p.city.clone(), p.state.clone(), a.id));
        }
    }
    assert!(want.len() > 10, "Q3 joins ({})", want.len());
    assert_eq!(got, sorted(want), "Q3");
}

fn q5(shards: usize, seed: u64) {
    let ev = input(seed);
    let got = run(
        queries::q5("q5", BOUND),
        shards,
        seed,
        &ev,
        &["counts", "top", "by-auction"],
    );
    let mut per: BTreeMap<Time, BTreeMap<u64, u64>> = BTreeMap::new();
    for b in bids(&ev) {
        let last = b.date_time / Q5_SLIDE * Q5_SLIDE;
        let mut s = last as i64;
        while s >= 0 && s as Time + Q5_SIZE > b.date_time {
            *per.entry(s as Time)
                .or_default()
                .entry(b.auction)
                .or_default() += 1;
            s -= Q5_SLIDE as i64;
        }
    }
    let want: Vec<(Time, u64, u64)> = per
        .into_iter()
        .map(|(s, counts)| {
            let (a, n) = counts
                .into_iter()
                .min_by_key(|(a, n)| (std::cmp::Reverse(*n), *a))
                .expect("bids");
            (s, a, n)
        })
        .collect();
    assert!(want.len() > 4, "Q5 windows");
    assert_eq!(got, want, "Q5");
}

/// Q7's oracle: per tumbling window, the highest bid (the lowest auction,
/// then bidder, among ties).
fn q7_oracle(ev: &[Event]) -> Vec<(Time, u64, u64, u64)> {
    q7_of(bids(ev))
}

fn q7_of<'a>(
    bids: impl Iterator<Item = &'a dirigo_bench::nexmark::Bid>,
) -> Vec<(Time, u64, u64, u64)> {
    let mut per: BTreeMap<Time, (u64, u64, u64)> = BTreeMap::new();
    for b in bids {
        let s = b.date_time / Q7_SIZE * Q7_SIZE;
        let cand = (b.auction, b.price, b.bidder);
        let e = per.entry(s).or_insert(cand);
        if (std::cmp::Reverse(cand.1), cand.0, cand.2) < (std::cmp::Reverse(e.1), e.0, e.2) {
            *e = cand;
        }
    }
    per.into_iter().map(|(s, (a, p, b))| (s, a, p, b)).collect()
}

fn q7_q8(shards: usize, seed: u64) {
    let ev = input(seed);
    let got = run(
        queries::q7("q7", BOUND),
        shards,
        seed,
        &ev,
        &["highest", "by-window"],
    );
    let want = q7_oracle(&ev);
    assert!(want.len() > 2, "Q7 windows");
    assert_eq!(got, want, "Q7");
    let got = run(
        queries::q8("q8", BOUND),
        shards,
        seed,
        &ev,
        &["new-users", "people"],
    );
    let mut want = Vec::new();
    for p in people(&ev) {
        for a in auctions(&ev)
            .filter(|a| a.seller == p.id && a.date_time / Q8_SIZE == p.date_time / Q8_SIZE)
        {
            want.push((p.id, p.name.clone(), a.id, p.date_time / Q8_SIZE * Q8_SIZE));
        }
    }
    assert!(want.len() > 10, "Q8 joins ({})", want.len());
    assert_eq!(got, sorted(want), "Q8");
}

/// Q7 on input out of order by up to 100 times the source's bound: the
/// oracle runs the batches in order, each at the watermark the batches
/// before it made (the latest event time less the bound), and finds late
/// the bids whose window's last instant that watermark reached. The late
/// sink holds exactly those, the late counter counts them, and the
/// results are the other bids' highest per window. (Only the window is
/// leased: upstream of it one instance per operator keeps the source's
/// interleaving of data and marks, so lateness is the oracle's.)
fn q7_late(shards: usize, seed: u64) {
    let ev = Generator::new(GeneratorConfig {
        seed,
        out_of_order: 100 * BOUND,
        ..Default::default()
    })
    .take(EVENTS);
    let node = node(shards);
    let (app, rx, late_rx) = queries::q7_with_late(&format!("q7-late-{shards}"), BOUND);
    let h = node.deploy(app).expect("deploys");
    let sizes = feed(&h, shards, seed, &ev, &["highest"]);
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    let (mut at, mut latest, mut wm) = (0, 0, 0);
    for n in sizes {
        for e in &ev[at..at + n] {
            if let Event::Bid(b) = e {
                let last = b.date_time / Q7_SIZE * Q7_SIZE + Q7_SIZE - 1;
                if last <= wm {
                    late.push(b.clone());
                } else {
                    on_time.push(b);
                }
            }
            latest = latest.max(e.time());
        }
        wm = wm.max(latest.saturating_sub(BOUND));
        at += n;
    }
    assert!(late.len() > 10, "the input has late bids ({})", late.len());
    assert_eq!(sorted(values(&late_rx)), sorted(late.clone()), "late bids");
    assert_eq!(sorted(values(&rx)), q7_of(on_time.into_iter()), "Q7");
    let stats = node.stats().expect("stats");
    let s = stats.app(h.name()).expect("app stats");
    assert_eq!(s.late_events, late.len() as u64, "the late counter");
    node.shutdown();
}

/// Every auction's winning bid, as the oracle sees it.
fn winners(ev: &[Event]) -> Vec<Winner> {
    let mut by_auction: BTreeMap<u64, Vec<&dirigo_bench::nexmark::Bid>> = BTreeMap::new();
    for b in bids(ev) {
        by_auction.entry(b.auction).or_default().push(b);
    }
    auctions(ev)
        .filter_map(|a| {
            let bs = by_auction.get(&a.id)?;
            let best = bs
                .iter()
                .filter(|b| {
                    a.date_time <= b.date_time && b.date_time <= a.expires && b.price >= a.reserve
                })
                .min_by_key(|b| (std::cmp::Reverse(b.price), b.date_time, b.bidder))?;
            Some((a.id, a.category, a.seller, best.price, a.expires))
        })
        .collect()
}

fn q4_q6(shards: usize, seed: u64) {
    let ev = input(seed);
    let won = winners(&ev);
    assert!(won.len() > 20, "auctions are won ({})", won.len());
    let got = run(
        queries::q4("q4", BOUND),
        shards,
        seed,
        &ev,
        &["winning", "mean", "bids"],
    );
    let mut per: BTreeMap<(u64, Time), Vec<u64>> = BTreeMap::new();
    for w in &won {
        per.entry((w.1, w.4 / Q4_SIZE * Q4_SIZE))
            .or_default()
            .push(w.3);
    }
    let want: Vec<_> = per
        .into_iter()
        .map(|((c, s), ps)| (c, s, ps.iter().sum::<u64>() / ps.len() as u64))
        .collect();
    assert_eq!(got, want, "Q4");
    let got = run(
        queries::q6("q6", BOUND),
        shards,
        seed,
        &ev,
        &["winning", "last-ten"],
    );
    let mut by_seller: BTreeMap<u64, Vec<Winner>> = BTreeMap::new();
    for w in &won {
        by_seller.entry(w.2).or_default().push(*w);
    }
    let mut want = Vec::new();
    for (seller, mut ws) in by_seller {
        ws.sort_by_key(|w| (w.4, w.0));
        let mut last = std::collections::VecDeque::new();
        for w in ws {
            last.push_back(w.3);
            if last.len() > 10 {
                last.pop_front();
            }
            want.push((seller, w.0, last.iter().sum::<u64>() / last.len() as u64));
        }
    }
    assert_eq!(got, sorted(want), "Q6");
}

#[test]
fn nexmark_q4_and_q6_winning_bids_match_the_oracle_on_2_and_4_shards() {
    q4_q6(2, 9);
    q4_q6(4, 10);
}

#[test]
fn nexmark_q0_to_q2_match_the_oracle_on_2_and_4_shards() {
    q0_to_q2(2, 1);
    q0_to_q2(4, 2);
}

#[test]
fn nexmark_q3_incremental_join_matches_the_oracle_on_2_and_4_shards() {
    q3(2, 3);
    q3(4, 4);
}

#[test]
fn nexmark_q5_hot_items_matches_the_oracle_on_2_and_4_shards() {
    q5(2, 5);
    q5(4, 6);
}

#[test]
fn nexmark_q7_and_q8_match_the_oracle_on_2_and_4_shards() {
    q7_q8(2, 7);
    q7_q8(4, 8);
}

/// The generator as a source on the shards: a task on the source's shard
/// generates the events and hands them over on the shard-local path; Q7's
/// output equals the oracle's over the same events generated here.
#[test]
fn nexmark_q7_late_bids_are_exactly_the_oracles_on_2_and_4_shards() {
    q7_late(2, 61);
    q7_late(4, 62);
}

#[test]
fn nexmark_q7_with_the_generator_on_the_shards_matches_the_oracle() {
    let cfg = GeneratorConfig {
        seed: 11,
        out_of_order: BOUND,
        ..Default::default()
    };
    let ev = Generator::new(cfg).take(EVENTS);
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        ..Default::default()
    })
    .expect("node starts");
    let (app, rx) = queries::q7("q7-on-shards", BOUND);
    let h = node.deploy(app).expect("deploys");
    let done =
        dirigo_bench::nexmark::feed::on_shards(&node, &h, cfg, EVENTS, 500).expect("spawned");
    done.recv_timeout(Duration::from_secs(120))
        .expect("the generator finishes")
        .expect("every batch taken");
    h.source::<Event>("events")
        .expect("source")
        .watermark(Time::MAX)
        .expect("the end");
    h.quiesce(Duration::from_secs(120)).expect("quiesces");
    let mut got: Vec<_> = values(&rx);
    got.sort();
    assert_eq!(got, q7_oracle(&ev));
    let stats = node.stats().expect("stats");
    let local: u64 = stats.shards.iter().map(|s| s.local_ingests).sum();
    assert!(local > 0, "the batches took the shard-local path");
    node.shutdown();
}
