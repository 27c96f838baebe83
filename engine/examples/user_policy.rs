//! A scheduling policy written the way a user writes one, in their own
//! crate, against `dirigo_engine::policy`: shortest job first.
//!
//! `Sjf` ranks an instance by the learned cost of the path ahead of its next
//! message, so cheap pipelines slip through between expensive ones, with a
//! guard: a message within `guard` of its deadline jumps the queue. It keeps
//! the default stamping and propagation, and leases by the default backlog
//! rule.
//!
//! Run it: `cargo run --release -p dirigo-engine --example user_policy`.
//! It runs a cheap and an expensive app on two shards for two seconds under
//! `Sjf` and under `Fifo::scaling()`, and prints each app's latency.

use std::time::{Duration, Instant};

use dirigo_engine::policy::{OpView, Policy, PolicyFactory, Rank};
use dirigo_engine::{
    AppBuilder, Context, Fifo, Function, Header, Merged, Node, NodeConfig, Placement, Result,
};

/// Shortest (remaining) job first, with a deadline guard.
struct Sjf {
    guard_ns: u64,
}

impl Policy for Sjf {
    fn name(&self) -> &str {
        "sjf"
    }

    fn rank(&mut self, h: &Header, op: &OpView<'_>, now_ns: u64) -> Rank {
        if op.latest_start(h.deadline_ns) <= now_ns + self.guard_ns {
            // About to miss: ahead of everything, earliest deadline first.
            Rank(0, h.deadline_ns)
        } else {
            Rank(1 + op.path_cost_ns, h.enqueued_ns)
        }
    }
}

/// Spins for `us` microseconds per message.
struct Work {
    us: u64,
}

impl Function for Work {
    type In = u64;
    type Out = u64;
    type State = Merged<u64>;
    fn on_message(&self, st: &mut Merged<u64>, key: u64, v: u64, ctx: &mut Context<'_, u64>) {
        let until = Instant::now() + Duration::from_micros(self.us);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        st.0 += 1;
        ctx.emit(key, v);
    }
}

fn run(policy: PolicyFactory) -> Result<()> {
    let name = policy.name().to_owned();
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        policy,
        ..Default::default()
    })?;
    let mut apps = Vec::new();
    for (app, us, rate) in [("cheap", 20, 2_000u64), ("expensive", 400, 2_000)] {
        let mut b = AppBuilder::new(app).slo(Duration::from_millis(50));
        let src = b.source::<u64>("in");
        let op = b.operator("work", Work { us }, &[src]);
        let _out = b.sink("out", op);
        let handle = node.deploy(b.build()?)?;
        apps.push((handle, rate));
    }
    // 2 s of load, one batch per app every 10 ms.
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for (app, rate) in &apps {
            let n = rate / 100;
            let batch = (0..n).map(|k| (i + k, i + k)).collect();
            app.source::<u64>("in")?
                .send_batch(batch, Duration::from_secs(1))
                .map_err(|r| r.error)?;
        }
        i += 1_000;
        std::thread::sleep(Duration::from_millis(10));
    }
    for (app, _) in &apps {
        app.quiesce(Duration::from_secs(30))?;
    }
    let stats = node.stats()?;
    for (app, _) in &apps {
        if let Some(a) = stats.app(app.name()) {
            println!(
                "{name:>13} {:>10}: p50 {:>7.2} ms  p99 {:>7.2} ms  in SLO {:>6.2}%",
                a.name,
                a.latency.value_at_quantile(0.5) as f64 / 1e6,
                a.latency.value_at_quantile(0.99) as f64 / 1e6,
                a.satisfaction() * 100.0
            );
        }
    }
    node.shutdown();
    Ok(())
}

fn main() -> Result<()> {
    run(PolicyFactory::per_shard(|| Sjf {
        guard_ns: 5_000_000,
    }))?;
    run(PolicyFactory::per_shard(Fifo::scaling))?;
    Ok(())
}
