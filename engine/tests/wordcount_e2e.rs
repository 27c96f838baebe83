//! End to end on real shards: windowed word counts whose window close is a
//! critical message, with lessees leased and revoked at random (seeded)
//! points while events flow, several apps at once, checked against a
//! sequential oracle run of the same input.
//!
//! - `keyed`: split (sequential) -> count (`Keyed`) -> sink. Each word's
//!   state folds the sequence numbers of its events in arrival order, so a
//!   broken per-key FIFO changes the output.
//! - `merged`: split (stateless, parallel) -> count (`Merged` map) -> sink.
//!
//! `DIRIGO_E2E_SEED=S` picks the seed (default: a few fixed ones).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use dirigo_engine::{
    key_hash, AppBuilder, AppHandle, Barrier, BarrierKind, Context, Function, Keyed, Merged, Node,
    NodeConfig, Placement, SinkEvent, SinkReceiver,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// (window, word, count, order fingerprint)
type Row = (u64, String, u64, u64);

struct Split;
impl Function for Split {
    type In = String;
    type Out = String;
    type State = Merged<()>;
    fn on_message(
        &self,
        _: &mut Merged<()>,
        _key: u64,
        line: String,
        ctx: &mut Context<'_, String>,
    ) {
        for w in line.split_whitespace() {
            ctx.emit(key_hash(w.as_bytes()), w.to_owned());
        }
    }
}

/// Split that must keep event order (so the keyed count downstream sees each
/// word in event order).
struct SplitInOrder;
impl Function for SplitInOrder {
    type In = String;
    type Out = String;
    type State = dirigo_engine::Sequential<()>;
    fn on_message(
        &self,
        _: &mut dirigo_engine::Sequential<()>,
        _: u64,
        line: String,
        ctx: &mut Context<'_, String>,
    ) {
        for w in line.split_whitespace() {
            ctx.emit(key_hash(w.as_bytes()), w.to_owned());
        }
    }
}

#[derive(Default)]
struct WordState {
    word: String,
    count: u64,
    order: u64,
}

fn fold_order(order: u64, seq: u64) -> u64 {
    order.wrapping_mul(1_000_003).wrapping_add(seq)
}

struct KeyedCount;
impl Function for KeyedCount {
    type In = String;
    type Out = Row;
    type State = Keyed<WordState>;
    fn on_message(
        &self,
        st: &mut Keyed<WordState>,
        key: u64,
        word: String,
        ctx: &mut Context<'_, Row>,
    ) {
        let seq = ctx.header().seq;
        let e = st.entry(key);
        if e.word.is_empty() {
            e.word = word;
        }
        e.count += 1;
        e.order = fold_order(e.order, seq);
    }
    fn on_critical(
        &self,
        st: &mut Keyed<WordState>,
        b: &Barrier,
        _: u16,
        ctx: &mut Context<'_, Row>,
    ) {
        if b.kind == BarrierKind::WindowClose {
            for (k, v) in st.drain() {
                ctx.emit(k, (b.tag, v.word, v.count, v.order));
            }
        }
    }
}

struct MergedCount;
impl Function for MergedCount {
    type In = String;
    type Out = Row;
    type State = Merged<HashMap<String, u64>>;
    fn on_message(
        &self,
        st: &mut Merged<HashMap<String, u64>>,
        _: u64,
        word: String,
        _: &mut Context<'_, Row>,
    ) {
        *st.0.entry(word).or_default() += 1;
    }
    fn on_critical(
        &self,
        st: &mut Merged<HashMap<String, u64>>,
        b: &Barrier,
        _: u16,
        ctx: &mut Context<'_, Row>,
    ) {
        if b.kind == BarrierKind::WindowClose {
            for (w, c) in st.0.drain() {
                ctx.emit(key_hash(w.as_bytes()), (b.tag, w, c, 0));
            }
        }
    }
}

fn keyed_app(name: &str) -> (dirigo_engine::App, SinkReceiver<Row>) {
    let mut b = AppBuilder::new(name).slo(Duration::from_millis(200));
    let lines = b.source::<String>("lines");
    let words = b.operator("split", SplitInOrder, &[lines]);
    let counts = b.operator("count", KeyedCount, &[words]);
    let rx = b.sink("out", counts);
    (b.build().expect("valid app"), rx)
}

fn merged_app(name: &str) -> (dirigo_engine::App, SinkReceiver<Row>) {
    let mut b = AppBuilder::new(name).slo(Duration::from_millis(200));
    let lines = b.source::<String>("lines");
    let words = b.operator("split", Split, &[lines]);
    let counts = b.operator("count", MergedCount, &[words]);
    let rx = b.sink("out", counts);
    (b.build().expect("valid app"), rx)
}

/// Random lines over a skewed vocabulary.
fn make_lines(rng: &mut ChaCha8Rng, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let words = rng.gen_range(1..10);
            (0..words)
                .map(|_| {
                    let r: f64 = rng.gen();
                    format!("w{}", (r * r * r * 300.0) as u32)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The sequential oracle: one pass, same windows, same sequence numbers
/// (the source numbers events 1, 2, ... in send order).
fn oracle(lines: &[String], window_ends: &[usize], keyed: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut state: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut w = 0;
    for (i, line) in lines.iter().enumerate() {
        let seq = i as u64 + 1;
        for word in line.split_whitespace() {
            let e = state.entry(word.to_owned()).or_default();
            e.0 += 1;
            e.1 = fold_order(e.1, seq);
        }
        if window_ends.get(w) == Some(&(i + 1)) {
            w += 1;
            for (word, (c, o)) in std::mem::take(&mut state) {
                rows.push((w as u64, word, c, if keyed { o } else { 0 }));
            }
        }
    }
    rows.sort();
    rows
}

struct Feed {
    app: AppHandle,
    rx: SinkReceiver<Row>,
    keyed: bool,
    lines: Vec<String>,
    window_ends: Vec<usize>,
}

fn run(shards: usize, seed: u64, ring_capacity: usize) {
    let cfg = NodeConfig {
        shards,
        placement: Placement::Unpinned,
        ring_capacity,
        idle_deactivate: Duration::from_millis(5),
        spin_before_park: Duration::from_micros(20),
        // Leases come from the test (seeded), and lessee shards take every
        // one, however loaded.
        autoscale: dirigo_engine::AutoScale {
            enabled: false,
            accept_below: usize::MAX,
            ..Default::default()
        },
        ..Default::default()
    };
    let node = Node::start(cfg).expect("node starts");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut feeds = Vec::new();
    for (i, keyed) in [true, false, true, false].into_iter().enumerate() {
        let name = format!("wc{i}-{}", if keyed { "keyed" } else { "merged" });
        let (app, rx) = if keyed {
            keyed_app(&name)
        } else {
            merged_app(&name)
        };
        let app = node.deploy(app).expect("deploys");
        let lines = make_lines(&mut rng, 1500);
        let mut window_ends: Vec<usize> = (0..6).map(|_| rng.gen_range(1..lines.len())).collect();
        window_ends.push(lines.len());
        window_ends.sort();
        window_ends.dedup();
        feeds.push(Feed {
            app,
            rx,
            keyed,
            lines,
            window_ends,
        });
    }
    // Interleave the apps' events in small batches; between batches, lease
    // and revoke at random.
    let mut pos = vec![0usize; feeds.len()];
    let mut windows = vec![0usize; feeds.len()];
    let (mut leases, mut revokes) = (0, 0);
    loop {
        let live: Vec<usize> = (0..feeds.len())
            .filter(|&i| pos[i] < feeds[i].lines.len())
            .collect();
        if live.is_empty() {
            break;
        }
        let i = live[rng.gen_range(0..live.len())];
        let f = &feeds[i];
        let next_end = f.window_ends[windows[i]];
        let take = rng.gen_range(1..40).min(next_end - pos[i]);
        let batch: Vec<(u64, String)> = f.lines[pos[i]..pos[i] + take]
            .iter()
            .map(|l| (0, l.clone()))
            .collect();
        let src = f.app.source::<String>("lines").expect("source exists");
        src.send_batch(batch, Duration::from_secs(10))
            .expect("accepted");
        pos[i] += take;
        if pos[i] == next_end {
            windows[i] += 1;
            f.app
                .inject_barrier(BarrierKind::WindowClose, windows[i] as u64)
                .expect("barrier");
        }
        match rng.gen_range(0..100) {
            0..=7 => {
                let op = if f.keyed || rng.gen_bool(0.5) {
                    "count"
                } else {
                    "split"
                };
                if f.app
                    .lease(op, rng.gen_range(0..shards))
                    .expect("lease call")
                    .is_some()
                {
                    leases += 1;
                }
            }
            8..=11 => {
                let op = if rng.gen_bool(0.5) { "count" } else { "split" };
                let shard = if rng.gen_bool(0.5) {
                    Some(rng.gen_range(0..shards))
                } else {
                    None
                };
                revokes += f.app.revoke(op, shard).unwrap_or(0);
            }
            _ => {}
        }
    }
    for f in &feeds {
        f.app.quiesce(Duration::from_secs(60)).expect("quiesces");
        let events = f.rx.drain();
        // Barrier order at the sink: window w's rows before barrier w.
        let mut barriers_seen = 0u64;
        let mut got: Vec<Row> = Vec::new();
        for e in events {
            match e {
                SinkEvent::Data { value, .. } => {
                    assert!(
                        value.0 > barriers_seen,
                        "{}: row of window {} after its barrier",
                        f.app.name(),
                        value.0
                    );
                    got.push(value);
                }
                SinkEvent::Barrier(b) => {
                    assert_eq!(b.id, barriers_seen + 1, "barriers reach the sink in order");
                    barriers_seen = b.id;
                }
            }
        }
        assert_eq!(
            barriers_seen as usize,
            f.window_ends.len(),
            "{}: every window closed",
            f.app.name()
        );
        got.sort();
        let want = oracle(&f.lines, &f.window_ends, f.keyed);
        assert_eq!(
            got.len(),
            want.len(),
            "{}: row count (seed {seed}, {shards} shards)",
            f.app.name()
        );
        assert_eq!(
            got,
            want,
            "{}: output differs from the sequential oracle (seed {seed})",
            f.app.name()
        );
    }
    let stats = node.stats().expect("stats");
    let granted: u64 = stats.apps.values().map(|a| a.leases_granted).sum();
    let lessee_runs: u64 = stats.apps.values().map(|a| a.lessee_runs).sum();
    let runs: u64 = stats.apps.values().map(|a| a.runs).sum();
    eprintln!(
        "{shards} shards, seed {seed}: {leases} leases asked, {granted} granted, {revokes} revokes, \
         {lessee_runs}/{runs} runs on lessees"
    );
    assert!(granted > 0, "the run leased something");
    assert!(lessee_runs > 0, "lessees ran some of the work");
    node.shutdown();
}

fn seeds() -> Vec<u64> {
    match std::env::var("DIRIGO_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(s) => vec![s],
        None => vec![1, 2, 3],
    }
}

#[test]
fn windowed_wordcount_two_shards_matches_oracle() {
    for seed in seeds() {
        run(2, seed, 4096);
    }
}

#[test]
fn windowed_wordcount_four_shards_tiny_rings_matches_oracle() {
    // Rings of 4 packets: most sends spill and drain later, in order.
    for seed in seeds() {
        run(4, seed, 4);
    }
}
