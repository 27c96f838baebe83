//! Data-plane scheduling, end to end on real shards:
//! - the run queue orders instances of different apps by the policy's rank:
//!   with `Fifo` a latency-critical message waits behind best-effort work
//!   queued before it; with `Priority`, `Edf`, `Llf` and `Dirigo` it does not;
//! - a burst makes `Dirigo` lease a lessee, which is released after the
//!   burst; `Fifo::fixed` (the static baseline) never leases;
//! - a policy written outside the crate plugs in, and every hook is called
//!   on the message path (ingress stamps, emit propagates, route places).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{values, wait_for};
use dirigo_engine::limits::BATCH_EVENTS;
use dirigo_engine::policy::{OpView, Policy, QueueView, Rank, Scale, ScaleLimits, ShardLoad};
use dirigo_engine::{
    AppBuilder, AutoScale, Context, Dirigo, Edf, Fifo, Function, Header, Llf, Merged, Node,
    NodeConfig, Placement, PolicyFactory, Priority,
};

/// Run order across apps, as the functions saw it.
type Log = Arc<Mutex<Vec<(&'static str, u64)>>>;

/// Value that makes `Logged` wait for the gate before it returns.
const BLOCK: u64 = u64::MAX;

/// Logs each message it runs; on `BLOCK`, holds the shard until `gate`.
struct Logged {
    tag: &'static str,
    log: Log,
    gate: Arc<AtomicBool>,
}

impl Function for Logged {
    type In = u64;
    type Out = u64;
    type State = Merged<u64>;
    fn on_message(&self, st: &mut Merged<u64>, key: u64, v: u64, ctx: &mut Context<'_, u64>) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.tag, v));
        if v == BLOCK {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !self.gate.load(Ordering::Acquire) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        st.0 += 1;
        ctx.emit(key, v);
    }
}

fn one_shard(policy: PolicyFactory) -> Node {
    Node::start(NodeConfig {
        shards: 1,
        placement: Placement::Unpinned,
        policy,
        ..Default::default()
    })
    .expect("node starts")
}

/// On one shard: a best-effort message holds the shard while 50 more
/// best-effort messages and then 5 latency-critical ones are queued; returns
/// the run order after the blocker.
fn run_order(policy: PolicyFactory) -> Vec<&'static str> {
    let node = one_shard(policy);
    let log: Log = Arc::default();
    let gate = Arc::new(AtomicBool::new(false));
    let deploy = |name: &str, lc: bool, tag: &'static str| {
        let mut b = AppBuilder::new(name);
        b = if lc {
            b.slo(Duration::from_millis(50))
        } else {
            b.best_effort()
        };
        let src = b.source::<u64>("in");
        let op = b.operator(
            "op",
            Logged {
                tag,
                log: log.clone(),
                gate: gate.clone(),
            },
            &[src],
        );
        let _rx = b.sink("out", op);
        node.deploy(b.build().expect("valid")).expect("deploys")
    };
    let bulk = deploy("bulk", false, "be");
    let urgent = deploy("urgent", true, "lc");
    let (bulk_in, urgent_in) = (
        bulk.source::<u64>("in").expect("source"),
        urgent.source::<u64>("in").expect("source"),
    );
    bulk_in.send(0, BLOCK).expect("accepted");
    // (Not through `node.stats()`: the shard answers nothing while blocked.)
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&("be", BLOCK))
    {
        assert!(Instant::now() < deadline, "the blocker never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    bulk_in
        .send_batch((0..50).map(|i| (i, i)).collect(), Duration::from_secs(5))
        .expect("accepted");
    urgent_in
        .send_batch(
            (0..5).map(|i| (i, 1000 + i)).collect(),
            Duration::from_secs(5),
        )
        .expect("accepted");
    gate.store(true, Ordering::Release);
    bulk.quiesce(Duration::from_secs(20)).expect("quiesces");
    urgent.quiesce(Duration::from_secs(20)).expect("quiesces");
    node.shutdown();
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    let order: Vec<&'static str> = log.iter().skip(1).map(|(t, _)| *t).collect();
    assert_eq!(order.len(), 55, "every message ran once: {log:?}");
    order
}

fn lc_first(order: &[&str]) -> bool {
    order.iter().take(5).all(|t| *t == "lc")
}

#[test]
fn fifo_runs_in_arrival_order_across_apps() {
    let order = run_order(PolicyFactory::per_shard(Fifo::fixed));
    assert!(
        order.iter().take(50).all(|t| *t == "be"),
        "fifo: the latency-critical messages came last: {order:?}"
    );
}

#[test]
fn slo_aware_policies_run_latency_critical_work_first() {
    for policy in [
        PolicyFactory::per_shard(|| Priority),
        PolicyFactory::per_shard(|| Edf),
        PolicyFactory::per_shard(|| Llf),
        PolicyFactory::per_shard(Dirigo::default),
    ] {
        let name = policy.name().to_owned();
        let order = run_order(policy);
        assert!(lc_first(&order), "{name}: {order:?}");
    }
}

/// Parallel and slow enough that a burst backs up: 200 µs a message.
struct Slow;
impl Function for Slow {
    type In = u64;
    type Out = u64;
    type State = Merged<u64>;
    fn on_message(&self, st: &mut Merged<u64>, key: u64, v: u64, ctx: &mut Context<'_, u64>) {
        let until = Instant::now() + Duration::from_micros(200);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        st.0 += 1;
        ctx.emit(key, v);
    }
}

/// Two shards, a latency-critical app (20 ms SLO) with a slow operator,
/// and a burst of 3,000 events (0.6 s of work for one core). Returns the
/// app's stats once everything ran and every lessee went home.
fn burst(policy: PolicyFactory, autoscale: bool) -> dirigo_engine::AppStats {
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        policy,
        autoscale: AutoScale {
            enabled: autoscale,
            accept_below: 1 << 20,
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("node starts");
    let mut b = AppBuilder::new("burst").slo(Duration::from_millis(20));
    let src = b.source::<u64>("in");
    let slow = b.operator("slow", Slow, &[src]);
    let rx = b.sink("out", slow);
    let app = node.deploy(b.build().expect("valid")).expect("deploys");
    let src = app.source::<u64>("in").expect("source");
    const N: u64 = 3000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        src.send_batch(
            chunk.iter().map(|&i| (i, i)).collect(),
            Duration::from_secs(10),
        )
        .expect("accepted");
    }
    app.quiesce(Duration::from_secs(60)).expect("quiesces");
    let after = wait_for(&node, "every lessee home", |s| {
        s.app("burst")
            .is_some_and(|a| a.lessees == 0 && a.revokes == a.leases_granted)
    });
    let mut got = values(&rx);
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "every event exactly once");
    node.shutdown();
    after.app("burst").expect("app stats").clone()
}

#[test]
fn a_burst_makes_dirigo_lease_and_the_lessee_goes_home_after() {
    let a = burst(PolicyFactory::per_shard(Dirigo::default), true);
    assert!(a.leases_granted > 0, "dirigo leased during the burst");
    assert!(a.lessee_runs > 0, "the lessee ran part of the burst");
    assert_eq!(a.revokes, a.leases_granted, "every lessee was released");
}

/// Autoscaling on in both runs, so it is the policy that decides: the same
/// burst makes scaling FIFO lease, and static FIFO never.
#[test]
fn static_fifo_never_leases() {
    let scaling = burst(PolicyFactory::per_shard(Fifo::scaling), true);
    assert!(scaling.leases_granted > 0, "the burst is one that leases");
    let a = burst(PolicyFactory::per_shard(Fifo::fixed), true);
    assert_eq!((a.leases_granted, a.lessee_runs), (0, 0));
}

/// What the user policy saw.
#[derive(Default)]
struct Calls {
    ingress: AtomicU64,
    route: AtomicU64,
    rank: AtomicU64,
    emit: AtomicU64,
    complete: AtomicU64,
    backlog: AtomicU64,
}

/// A policy as a user writes it in their own crate: stamps priority 7 at
/// ingress and adds 1 per hop, sends every message of a leased operator to
/// its last candidate (the newest lessee), ranks by priority, never scales.
struct Hops(Arc<Calls>);

impl Policy for Hops {
    fn name(&self) -> &str {
        "hops"
    }
    fn on_ingress(&mut self, op: &OpView<'_>, h: &mut Header) {
        self.0.ingress.fetch_add(1, Ordering::Relaxed);
        h.deadline_ns = h.ingress_ns + op.slo_ns;
        h.priority = 7;
    }
    fn route(&mut self, _h: &Header, _op: &OpView<'_>, c: &[ShardLoad]) -> Option<usize> {
        self.0.route.fetch_add(1, Ordering::Relaxed);
        Some(c.len() - 1)
    }
    fn rank(&mut self, h: &Header, _op: &OpView<'_>, _now: u64) -> Rank {
        self.0.rank.fetch_add(1, Ordering::Relaxed);
        Rank(u64::from(u8::MAX - h.priority), h.enqueued_ns)
    }
    fn on_emit(&mut self, parent: &Header, child: &mut Header, _op: &OpView<'_>) {
        self.0.emit.fetch_add(1, Ordering::Relaxed);
        child.priority = parent.priority + 1;
    }
    fn on_complete(&mut self, _h: &Header, _op: &OpView<'_>, _cost: u64, _now: u64) {
        self.0.complete.fetch_add(1, Ordering::Relaxed);
    }
    fn on_backlog(
        &mut self,
        _q: &QueueView<'_>,
        _o: &OpView<'_>,
        _l: &ScaleLimits,
        _n: u64,
    ) -> Scale {
        self.0.backlog.fetch_add(1, Ordering::Relaxed);
        Scale::Hold
    }
}

/// Records the priority each message carried.
struct Priorities(Arc<Mutex<Vec<u8>>>);
impl Function for Priorities {
    type In = u64;
    type Out = u64;
    type State = Merged<u64>;
    fn on_message(&self, st: &mut Merged<u64>, key: u64, v: u64, ctx: &mut Context<'_, u64>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ctx.header().priority);
        st.0 += 1;
        ctx.emit(key, v);
    }
}

#[test]
fn a_user_policy_plugs_in_and_every_hook_is_called() {
    let calls = Arc::new(Calls::default());
    let c = calls.clone();
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        policy: PolicyFactory::new("hops", move |_| {
            Box::new(Hops(c.clone())) as Box<dyn Policy>
        }),
        ..Default::default()
    })
    .expect("node starts");
    let (first, second) = (
        Arc::<Mutex<Vec<u8>>>::default(),
        Arc::<Mutex<Vec<u8>>>::default(),
    );
    let mut b = AppBuilder::new("hops").slo(Duration::from_millis(100));
    let src = b.source::<u64>("in");
    let a = b.operator("a", Priorities(first.clone()), &[src]);
    let z = b.operator("z", Priorities(second.clone()), &[a]);
    let rx = b.sink("out", z);
    let app = node.deploy(b.build().expect("valid")).expect("deploys");
    // A lessee for `z` on whichever shard is not its home.
    let lease = (0..2).find_map(|s| app.lease("z", s).expect("lease call"));
    assert!(lease.is_some(), "z can lease on the other shard");
    wait_for(&node, "the grant", |s| {
        s.app("hops").is_some_and(|a| a.lessees == 1)
    });

    // One event per send: every hook once per event.
    const N: u64 = 200;
    let src = app.source::<u64>("in").expect("source");
    for i in 0..N {
        src.send(i, i).expect("accepted");
    }
    app.quiesce(Duration::from_secs(20)).expect("quiesces");
    let stats = node.stats().expect("stats");
    let st = stats.app("hops").expect("app stats");
    assert_eq!(values(&rx).len(), N as usize);

    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    assert_eq!(n(&calls.ingress), N, "on_ingress once per client event");
    assert_eq!(n(&calls.complete), st.runs, "on_complete once per run");
    // a -> z, z -> sink: two emits per event.
    assert_eq!(n(&calls.emit), 2 * N, "on_emit once per output");
    assert_eq!(n(&calls.route), N, "route once per message of the leased z");
    // Ranked each time an instance is queued: after each batch of up to 64
    // runs (`limits::STEP_BATCH`), and on arrivals to an idle instance.
    assert!(n(&calls.rank) >= N / 64, "rank for every instance queued");
    assert!(n(&calls.backlog) > 0, "on_backlog on the message path");
    // Stamped at ingress, incremented on each emit.
    let seen = |v: &Arc<Mutex<Vec<u8>>>| v.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        seen(&first).iter().all(|p| *p == 7),
        "ingress stamp reached a"
    );
    assert!(
        seen(&second).iter().all(|p| *p == 8),
        "emit propagated to z"
    );
    // Route said: the lessee.
    assert_eq!(st.lessee_runs, N, "every z message ran on the lessee");

    // A client batch travels as batch messages: each hook once per batch
    // message (of up to `BATCH_EVENTS` events), every event run once.
    const M: u64 = 3 * BATCH_EVENTS as u64 + 1;
    let before = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (ingress, emit, route, complete) = (
        before(&calls.ingress),
        before(&calls.emit),
        before(&calls.route),
        before(&calls.complete),
    );
    src.send_batch((0..M).map(|i| (i, i)).collect(), Duration::from_secs(5))
        .expect("accepted");
    app.quiesce(Duration::from_secs(20)).expect("quiesces");
    let batches = M.div_ceil(BATCH_EVENTS as u64);
    assert_eq!(
        n(&calls.ingress) - ingress,
        batches,
        "on_ingress once per batch"
    );
    assert_eq!(
        n(&calls.emit) - emit,
        2 * batches,
        "on_emit once per output batch"
    );
    assert_eq!(
        n(&calls.route) - route,
        batches,
        "route once per batch of z"
    );
    assert_eq!(
        values(&rx).len(),
        M as usize,
        "every event of the batch came out"
    );
    let st = node.stats().expect("stats");
    let st = st.app("hops").expect("app stats");
    assert_eq!(st.lessee_runs, N + M, "every z event ran on the lessee");
    // a, z and the sink each run every batch message once.
    assert_eq!(
        n(&calls.complete) - complete,
        3 * batches,
        "on_complete once per batch run"
    );
    node.shutdown();
}
