//! Latency of source -> map -> filter -> map -> sink (Dirigo only), open
//! loop: each event is due at a scheduled time and carries it; its latency
//! is the time the sink took it (`SinkEvent::at_ns`) minus that due time,
//! so a late client or a stall counts (no coordinated omission), and the
//! reader's own delay does not. One client thread sends when due and reads
//! the sink between sends, so no third thread competes for the two cores.
//! The client is not pinned: pinned to the core the shard leaves free, its
//! spinning vCPU is descheduled by the host for milliseconds at a time.

use std::time::{Duration, Instant};

use dirigo_engine::{AppBuilder, NodeConfig, SinkEvent, SinkReceiver};
use hdrhistogram::Histogram;

use crate::{Error, Step};

/// Latency percentiles of one open-loop run, µs, and the events seen.
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    /// The engine's part alone: p50 from the client's hand-off to the
    /// sink (`SinkEvent::latency_ns`), without the client's lateness.
    pub(crate) engine_p50: f64,
    pub(crate) delivered: u64,
}

/// Send `total` events in groups of `batch`, group `g` due at `start +
/// g * batch / rate`; return the percentiles of due-to-sink time.
/// The app's operators are spread over the shards, or `colocated` on one.
pub(crate) fn run(
    cfg: NodeConfig,
    colocated: bool,
    rate: u64,
    batch: u64,
    total: u64,
) -> Result<Latency, Error> {
    let node = dirigo_engine::Node::start(cfg)?;
    let mut b = AppBuilder::new("pipeline-latency");
    if colocated {
        b = b.colocated();
    }
    let src = b.source::<u64>("events");
    let a = b.operator("map1", Step(Some), &[src]);
    let f = b.operator("filter", Step(|v| (v != u64::MAX).then_some(v)), &[a]);
    let c = b.operator("map2", Step(Some), &[f]);
    let out = b.sink("out", c);
    let app = node.deploy(b.build()?)?;
    let src = app.source::<u64>("events")?;
    let new = || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("static bounds");
    let (mut h, mut engine) = (new(), new());
    let mut seen = 0;
    let start = node.now_ns() + 1_000_000;
    for g in 0..total.div_ceil(batch) {
        let due = start + g * batch * 1_000_000_000 / rate;
        loop {
            take(&out, [&mut h, &mut engine], &mut seen);
            let now = node.now_ns();
            if now >= due {
                break;
            }
            // Far ahead: sleep, so the client does not hold its core.
            if due - now > 200_000 {
                std::thread::sleep(Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
        }
        let n = batch.min(total - g * batch);
        src.send_batch(
            (0..n).map(|i| (g * batch + i, due)).collect(),
            Duration::from_secs(5),
        )
        .map_err(|r| r.error)?;
        take(&out, [&mut h, &mut engine], &mut seen);
    }
    let end = Instant::now() + Duration::from_secs(10);
    while seen < total && Instant::now() < end {
        take(&out, [&mut h, &mut engine], &mut seen);
        std::hint::spin_loop();
    }
    node.shutdown();
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
    Ok(Latency {
        p50: us(0.5),
        p99: us(0.99),
        p999: us(0.999),
        max: h.max() as f64 / 1_000.0,
        engine_p50: engine.value_at_quantile(0.5) as f64 / 1_000.0,
        delivered: seen,
    })
}

/// Record every output waiting at the sink: from its due time, and from
/// the client's hand-off (the engine's part).
fn take(out: &SinkReceiver<u64>, [h, engine]: [&mut Histogram<u64>; 2], seen: &mut u64) {
    while let Some(ev) = out.try_recv() {
        if let SinkEvent::Data {
            value: due,
            at_ns,
            latency_ns,
            ..
        } = ev
        {
            let _ = h.record(at_ns.saturating_sub(due).max(1));
            let _ = engine.record(latency_ns.max(1));
            *seen += 1;
        }
    }
}
