//! Processing time end to end: windows on the shard clock (tumbling and
//! session) and a user function's processing-time timers, on apps with no
//! event time, on 2 and 4 shards with the operator's lessees leased and
//! revoked at random while timers are pending. Every event is counted in
//! exactly one window of its key (a sequential count is the oracle), each
//! window fires once and not before the clock reaches its end, and an
//! actor with a pending timer is woken by it even though it went quiet
//! (the test node deactivates quiet actors after 5 ms).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dirigo_engine::{
    key_hash, Agg, AppBuilder, Context, Function, Keyed, Merged, SinkEvent, SinkReceiver, Window,
    WindowResult, Windows,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MS: u64 = 1_000_000;

fn key(user: u64) -> u64 {
    key_hash(&user.to_le_bytes())
}

/// Stamps each value with the node clock when it reaches this operator.
struct Stamp;
impl Function for Stamp {
    type In = WindowResult<f64>;
    type Out = (WindowResult<f64>, u64);
    type State = Merged<()>;
    fn on_message(
        &self,
        _: &mut Merged<()>,
        key: u64,
        r: Self::In,
        ctx: &mut Context<'_, Self::Out>,
    ) {
        let now = ctx.now_ns();
        ctx.emit(key, (r, now));
    }
}

/// Drain `rx` until the counts of its results sum to `total` (at most
/// 30 s); the results with their stamps.
fn collect(
    rx: &SinkReceiver<(WindowResult<f64>, u64)>,
    total: u64,
) -> Vec<(WindowResult<f64>, u64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    loop {
        got.extend(rx.drain().into_iter().filter_map(|e| match e {
            SinkEvent::Data { value, .. } => Some(value),
            SinkEvent::Barrier(_) => None,
        }));
        let sum: f64 = got.iter().map(|(r, _)| r.value).sum();
        if sum as u64 >= total {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {sum} of {total} events in {} windows",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Send `n` events of 8 users in small batches over about `span`, with
/// the window's leases churned between batches; the events per key.
fn feed(
    h: &dirigo_engine::AppHandle,
    shards: usize,
    rng: &mut ChaCha8Rng,
    n: usize,
    span: Duration,
) -> BTreeMap<u64, u64> {
    let src = h.source::<u64>("events").expect("source");
    let mut per_key = BTreeMap::new();
    let (mut sent, mut leases, mut revokes) = (0, 0, 0);
    let pause = span / (n as u32 / 5).max(1);
    while sent < n {
        let batch: Vec<(u64, u64)> = (0..rng.gen_range(1..10).min(n - sent))
            .map(|_| {
                let user = rng.gen_range(0..8);
                *per_key.entry(key(user)).or_insert(0) += 1;
                (key(user), user)
            })
            .collect();
        sent += batch.len();
        src.send_batch(batch, Duration::from_secs(10))
            .expect("accepted");
        let (l, r) = common::churn(h, "w", shards, rng);
        leases += l;
        revokes += r;
        std::thread::sleep(pause);
    }
    assert!(
        leases > 0 && revokes > 0,
        "leased {leases}, revoked {revokes}"
    );
    per_key
}

fn windowed(
    name: &str,
    windows: Windows,
) -> (dirigo_engine::App, SinkReceiver<(WindowResult<f64>, u64)>) {
    let mut b = AppBuilder::new(name).slo(Duration::from_millis(200));
    let events = b.source::<u64>("events");
    let w = Window::processing_time(windows, Agg::<u64>::count());
    let (results, _late) = b.window("w", w, events);
    let stamped = b.operator("stamp", Stamp, &[results]);
    let rx = b.sink("results", stamped);
    (b.build().expect("valid app"), rx)
}

fn tumbling(shards: usize, seed: u64) {
    let size = 20 * MS;
    let node = common::leasing_node(shards);
    let (app, rx) = windowed(&format!("pt-tumbling-{shards}"), Windows::Tumbling { size });
    let h = node.deploy(app).expect("deploys");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let per_key = feed(&h, shards, &mut rng, 600, Duration::from_millis(300));
    let total = per_key.values().sum();
    let got = collect(&rx, total);
    let mut counted: BTreeMap<u64, u64> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for (r, at) in &got {
        assert_eq!((r.start % size, r.end - r.start), (0, size), "{r:?}");
        assert!(*at >= r.end, "{r:?} fired at {at}, before its end");
        assert!(!r.update, "nothing is late on processing time: {r:?}");
        assert!(seen.insert((r.key, r.start)), "fired twice: {r:?}");
        *counted.entry(r.key).or_default() += r.value as u64;
    }
    assert_eq!(counted, per_key, "seed {seed}, {shards} shards");
    assert!(got.len() > per_key.len(), "the run spans several windows");
    // Nothing more fires: every window fired once.
    std::thread::sleep(Duration::from_millis(3 * size / MS));
    assert!(common::values(&rx).is_empty());
    let stats = node.stats().expect("stats");
    assert!(stats.app(h.name()).expect("app").timers >= got.len() as u64);
    node.shutdown();
}

#[test]
fn processing_time_tumbling_windows_count_each_event_once_on_2_shards() {
    tumbling(2, 1);
}

#[test]
fn processing_time_tumbling_windows_count_each_event_once_on_4_shards() {
    tumbling(4, 2);
}

/// Sessions on the shard clock: each user's events come in bursts apart
/// by more than the gap, so each burst is a session that fires once the
/// clock is a gap past its last event, with the burst's count.
#[test]
fn processing_time_sessions_close_a_gap_after_their_last_event() {
    let gap = 60 * MS;
    let node = common::leasing_node(2);
    let (app, rx) = windowed("pt-sessions", Windows::Session { gap });
    let h = node.deploy(app).expect("deploys");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut per_key = BTreeMap::new();
    for _burst in 0..2 {
        let burst = feed(&h, 2, &mut rng, 150, Duration::from_millis(20));
        for (k, n) in burst {
            *per_key.entry(k).or_insert(0) += n;
        }
        // Quiet for three gaps: the bursts' sessions close.
        std::thread::sleep(Duration::from_millis(3 * gap / MS));
    }
    let total = per_key.values().sum();
    let got = collect(&rx, total);
    let mut counted: BTreeMap<u64, u64> = BTreeMap::new();
    for (r, at) in &got {
        assert!(r.end - r.start >= gap, "{r:?}");
        assert!(*at >= r.end, "{r:?} fired at {at}, before its end");
        *counted.entry(r.key).or_default() += r.value as u64;
    }
    assert_eq!(counted, per_key);
    let sessions: BTreeMap<u64, usize> = got.iter().fold(BTreeMap::new(), |mut m, (r, _)| {
        *m.entry(r.key).or_default() += 1;
        m
    });
    assert!(
        sessions.values().all(|&n| n >= 2),
        "two bursts make two sessions per user at least: {sessions:?}"
    );
    node.shutdown();
}

/// A user function on processing-time timers: each key's values are held
/// and released together 30 ms after the key's first held value; a value
/// of 0 cancels the key's pending release (deleting the timer).
struct Delay;
impl Function for Delay {
    type In = u64;
    type Out = (Vec<u64>, u64, u64);
    type State = Keyed<(Vec<u64>, u64)>;
    fn on_message(&self, st: &mut Self::State, key: u64, v: u64, ctx: &mut Context<'_, Self::Out>) {
        let held = st.entry(key);
        if v == 0 {
            ctx.delete_processing_timer(held.1);
            st.remove(key);
            return;
        }
        if held.0.is_empty() {
            held.1 = ctx.now_ns() + 30 * MS;
            assert!(ctx.set_processing_timer(held.1));
        }
        held.0.push(v);
    }
    fn on_processing_timer(
        &self,
        st: &mut Self::State,
        key: u64,
        at: u64,
        ctx: &mut Context<'_, Self::Out>,
    ) {
        if let Some((values, due)) = st.remove(key) {
            assert_eq!(due, at, "the timer the key set");
            let now = ctx.now_ns();
            ctx.emit(key, (values, at, now));
        }
    }
}

#[test]
fn a_functions_processing_timers_fire_once_on_time_and_a_deleted_one_never() {
    let node = common::leasing_node(2);
    let mut b = AppBuilder::new("delay");
    let events = b.source::<u64>("events");
    let out = b.operator("w", Delay, &[events]);
    let rx = b.sink("out", out);
    let h = node.deploy(b.build().expect("valid")).expect("deploys");
    let src = h.source::<u64>("events").expect("source");
    let sent = |user: u64, v: u64| {
        src.send_batch(vec![(key(user), v)], Duration::from_secs(5))
            .expect("accepted");
    };
    h.lease("w", 1).expect("lease call");
    for v in 1..=3 {
        sent(1, v);
        sent(2, v);
    }
    sent(2, 0); // user 2's release is called off
    h.revoke("w", None).expect("revoke call");
    std::thread::sleep(Duration::from_millis(150));
    let got = common::values(&rx);
    assert_eq!(got.len(), 1, "{got:?}");
    let (values, at, now) = &got[0];
    assert_eq!(values, &vec![1, 2, 3]);
    assert!(now >= at, "fired at {now}, due at {at}");
    node.shutdown();
}

mod durable {
    //! A durable operator's processing-time timers are in its checkpoint,
    //! at wall-clock time: a node stopped with timers pending hands them
    //! to the next one, where they fire when the wall clock says (not
    //! sooner, and not never: the new node's clock starts at 0).

    use super::*;
    use dirigo_engine::{Node, NodeConfig, Placement};
    use std::time::SystemTime;

    const DELAY: u64 = 1_500 * MS;

    /// Counts each key's events and reports the count `DELAY` after the
    /// key's first one, with the node clock's time it was due at.
    struct Hold;
    impl Function for Hold {
        type In = u64;
        type Out = (u64, u64);
        type State = Keyed<u64>;
        fn on_message(
            &self,
            st: &mut Keyed<u64>,
            key: u64,
            _: u64,
            ctx: &mut Context<'_, (u64, u64)>,
        ) {
            let n = st.entry(key);
            if *n == 0 {
                assert!(ctx.set_processing_timer(ctx.now_ns() + DELAY));
            }
            *n += 1;
        }
        fn on_processing_timer(
            &self,
            st: &mut Keyed<u64>,
            key: u64,
            _: u64,
            ctx: &mut Context<'_, (u64, u64)>,
        ) {
            let n = st.remove(key).expect("a held key");
            ctx.emit(key, (key, n));
        }
    }

    fn app() -> (dirigo_engine::App, SinkReceiver<(u64, u64)>) {
        let mut b = AppBuilder::new("held").durable();
        let events = b.durable_source::<u64>("events");
        let held = b.durable_operator("hold", Hold, &[events]);
        let rx = b.sink("out", held);
        (b.build().expect("a durable app"), rx)
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

    #[test]
    fn processing_timers_pending_at_a_checkpoint_fire_on_the_next_node_on_the_wall_clock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut want = BTreeMap::new();
        let sent_at = SystemTime::now();
        {
            let node = node(dir.path());
            let (a, rx) = app();
            let h = node.deploy(a).expect("deploys");
            let src = h.source::<u64>("events").expect("source");
            for user in 0..5u64 {
                let batch: Vec<(u64, u64)> = (0..=user).map(|_| (key(user), user)).collect();
                want.insert(key(user), user + 1);
                src.send_batch(batch, Duration::from_secs(5))
                    .expect("logged");
            }
            assert_eq!(h.checkpoint().expect("checkpoint commits"), 1);
            assert!(
                common::values(&rx).is_empty(),
                "nothing fired before the stop"
            );
            node.shutdown();
        }
        let node = node(dir.path());
        let (a, rx) = app();
        let h = node.deploy(a).expect("recovers");
        assert_eq!(h.recovery().expect("durable").checkpoint, Some(1));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = BTreeMap::new();
        while got.len() < want.len() {
            for (k, n) in common::values(&rx) {
                assert!(got.insert(k, n).is_none(), "key {k} fired twice");
            }
            assert!(Instant::now() < deadline, "timed out: {got:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        let waited = sent_at.elapsed().expect("the wall clock moves on");
        assert!(
            waited >= Duration::from_nanos(DELAY),
            "fired {waited:?} after the events, before their {DELAY} ns"
        );
        assert_eq!(got, want);
        node.shutdown();
    }
}
