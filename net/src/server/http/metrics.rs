//! `GET /metrics`: a node's figures in the Prometheus text format, encoded
//! by `prometheus-client` from one stats snapshot per scrape (a collector
//! over `NodeStats`, so nothing is counted twice and no figure is kept
//! here): per app throughput, latency histogram and quantiles, SLO
//! satisfaction, queueing delay, lessees, leases and revokes, refused
//! events; durable apps' ingress log (position, entries, bytes, group
//! commits and their time, failure) and checkpoints (taken, full, given
//! up, the newest's epoch, size and duration); per shard busy time,
//! backlog, runs, parks; the server's connections.

use std::collections::HashMap;
use std::fmt::Error;

use dirigo_engine::{AppStats, DurableStats, NodeStats};
use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: &[f64] = &[
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
    1.0, 2.5, 5.0, 10.0,
];

/// What one scrape exports.
#[derive(Debug)]
struct Snapshot {
    stats: NodeStats,
    /// Events refused per app (backpressure, limits, bad input).
    refused: HashMap<String, u64>,
    connections: usize,
}

/// The scrape's text.
pub(crate) fn render(
    stats: NodeStats,
    refused: HashMap<String, u64>,
    connections: usize,
) -> Result<String, Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        stats,
        refused,
        connections,
    }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// A histogram of ns values as (sum s, count, per-bucket counts).
fn buckets(h: &Histogram<u64>) -> (f64, u64, Vec<(f64, u64)>) {
    let mut out = Vec::with_capacity(BUCKETS.len() + 1);
    let mut below = 0u64;
    for &b in BUCKETS {
        let upto = h.count_between(0, (b * 1e9) as u64);
        out.push((b, upto.saturating_sub(below)));
        below = upto.max(below);
    }
    out.push((f64::MAX, h.len().saturating_sub(below)));
    (h.mean() * h.len() as f64 / 1e9, h.len(), out)
}

/// One metric family over the apps.
fn per_app(
    enc: &mut DescriptorEncoder,
    apps: &[&AppStats],
    name: &str,
    help: &str,
    kind: MetricType,
    value: impl Fn(&AppStats) -> f64,
) -> Result<(), Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for a in apps {
        let labels = [("app", a.name.as_str())];
        let mut fam = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => {
                fam.encode_counter::<NoLabelSet, u64, u64>(&(value(a) as u64), None)?
            }
            _ => fam.encode_gauge(&value(a))?,
        }
    }
    Ok(())
}

fn app_histograms(enc: &mut DescriptorEncoder, apps: &[&AppStats]) -> Result<(), Error> {
    type Ex = HashMap<usize, Exemplar<NoLabelSet, f64>>;
    for (name, help, pick) in [
        (
            "dirigo_app_latency",
            "End-to-end latency of delivered outputs",
            (|a: &AppStats| &a.latency) as fn(&AppStats) -> &Histogram<u64>,
        ),
        (
            "dirigo_app_queueing",
            "Queueing delay of every run",
            |a: &AppStats| &a.queueing,
        ),
    ] {
        let mut m =
            enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
        for a in apps {
            let (sum, count, b) = buckets(pick(a));
            let labels = [("app", a.name.as_str())];
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                sum,
                count,
                &b,
                None::<&Ex>,
            )?;
        }
    }
    let mut m = enc.encode_descriptor(
        "dirigo_app_latency_quantile",
        "End-to-end latency quantiles of delivered outputs",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for a in apps {
        for q in [0.5, 0.9, 0.99, 0.999] {
            let qs = q.to_string();
            let labels = [("app", a.name.as_str()), ("quantile", qs.as_str())];
            m.encode_family(&labels)?
                .encode_gauge(&(a.latency.value_at_quantile(q) as f64 / 1e9))?;
        }
    }
    Ok(())
}

fn apps(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    let apps: Vec<&AppStats> = s.stats.apps.values().collect();
    use MetricType::{Counter, Gauge};
    let satisfaction = |a: &AppStats| {
        if a.delivered == 0 {
            1.0
        } else {
            a.within_slo as f64 / a.delivered as f64
        }
    };
    per_app(
        enc,
        &apps,
        "dirigo_app_delivered",
        "Outputs delivered at sinks",
        Counter,
        |a| a.delivered as f64,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_within_slo",
        "Outputs delivered within the SLO",
        Counter,
        |a| a.within_slo as f64,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_slo_satisfaction",
        "Share of outputs within the SLO",
        Gauge,
        satisfaction,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_runs",
        "Messages run by the app's operators",
        Counter,
        |a| a.runs as f64,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_lessee_runs",
        "Messages run by lessees",
        Counter,
        |a| a.lessee_runs as f64,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_lessees",
        "Lessee instances hosted now",
        Gauge,
        |a| a.lessees as f64,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_leases",
        "Leases granted",
        Counter,
        |a| a.leases_granted as f64,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_revokes",
        "Leases revoked",
        Counter,
        |a| a.revokes as f64,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_barriers",
        "Barriers completed, per operator",
        Counter,
        |a| a.barriers as f64,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_queued",
        "Messages queued at the app's instances now",
        Gauge,
        |a| a.queued as f64,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_timers",
        "Event-time timers fired",
        Counter,
        |a| a.timers as f64,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_late_events",
        "Events its functions found late (past a window's allowed lateness)",
        Counter,
        |a| a.late_events as f64,
    )?;
    per_app(
        enc,
        &apps,
        "dirigo_app_failed",
        "1 if the app failed",
        Gauge,
        |a| f64::from(u8::from(a.failed.is_some())),
    )?;
    app_histograms(enc, &apps)?;
    let mut m = enc.encode_descriptor(
        "dirigo_app_refused_events",
        "Events refused at ingest (backpressure, limits, bad input)",
        None,
        Counter,
    )?;
    let mut refused: Vec<_> = s.refused.iter().collect();
    refused.sort();
    for (app, n) in refused {
        let labels = [("app", app.as_str())];
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, u64, u64>(n, None)?;
    }
    Ok(())
}

/// A shard metric: name, help, type, and how to read it.
type ShardFigure = (
    &'static str,
    &'static str,
    MetricType,
    fn(&dirigo_engine::ShardStats) -> f64,
);

fn shards(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    use MetricType::{Counter, Gauge};
    let figures: [ShardFigure; 7] = [
        (
            "dirigo_shard_busy_seconds",
            "Time in dispatcher turns that did work",
            Counter,
            |x| x.busy_ns as f64 / 1e9,
        ),
        (
            "dirigo_shard_runs",
            "Messages run on the shard",
            Counter,
            |x| x.runs as f64,
        ),
        (
            "dirigo_shard_backlog",
            "Messages queued on the shard now",
            Gauge,
            |x| x.backlog as f64,
        ),
        (
            "dirigo_shard_lessors",
            "Active actors homed on the shard",
            Gauge,
            |x| x.lessors as f64,
        ),
        (
            "dirigo_shard_lessees",
            "Lessees hosted on the shard",
            Gauge,
            |x| x.lessees as f64,
        ),
        (
            "dirigo_shard_parks",
            "Times the shard slept, idle",
            Counter,
            |x| x.parks as f64,
        ),
        (
            "dirigo_shard_up",
            "1 while the shard's thread runs",
            Gauge,
            |x| f64::from(u8::from(x.died.is_none())),
        ),
    ];
    for (name, help, kind, value) in figures {
        let name = name.strip_suffix("_seconds").unwrap_or(name);
        let unit =
            (matches!(kind, Counter) && name == "dirigo_shard_busy").then_some(Unit::Seconds);
        let mut m = enc.encode_descriptor(name, help, unit.as_ref(), kind)?;
        for x in &s.stats.shards {
            let id = x.shard.to_string();
            let labels = [("shard", id.as_str())];
            let mut fam = m.encode_family(&labels)?;
            match kind {
                Counter => fam.encode_counter::<NoLabelSet, f64, f64>(&value(x), None)?,
                _ => fam.encode_gauge(&value(x))?,
            }
        }
    }
    let mut m = enc.encode_descriptor("dirigo_net_connections", "Open connections", None, Gauge)?;
    m.encode_gauge(&(s.connections as i64))?;
    Ok(())
}

/// A durable app's metric: name, help, type, unit, and how to read it.
type DurableFigure = (
    &'static str,
    &'static str,
    MetricType,
    Option<Unit>,
    fn(&DurableStats) -> f64,
);

const DURABLE: [DurableFigure; 12] = {
    use MetricType::{Counter, Gauge};
    [
        (
            "dirigo_durable_log_position",
            "Ingress log position after the newest entry",
            Gauge,
            None,
            |d| d.log_position as f64,
        ),
        (
            "dirigo_durable_log_entries",
            "Ingress log entries appended since deploy",
            Counter,
            None,
            |d| d.log_entries as f64,
        ),
        (
            "dirigo_durable_log",
            "Event payload bytes logged since deploy",
            Counter,
            Some(Unit::Bytes),
            |d| d.log_bytes as f64,
        ),
        (
            "dirigo_durable_log_commits",
            "Group commits of the ingress log (one fdatasync each)",
            Counter,
            None,
            |d| d.log_commits as f64,
        ),
        (
            "dirigo_durable_log_commit",
            "Time in ingress log commits",
            Counter,
            Some(Unit::Seconds),
            |d| d.log_commit_ns as f64 / 1e9,
        ),
        (
            "dirigo_durable_log_failed",
            "1 if the ingress log failed (the app takes no input)",
            Gauge,
            None,
            |d| f64::from(u8::from(d.log_failed)),
        ),
        (
            "dirigo_durable_checkpoints",
            "Checkpoints committed since deploy",
            Counter,
            None,
            |d| d.checkpoints as f64,
        ),
        (
            "dirigo_durable_full_checkpoints",
            "Full checkpoints committed since deploy",
            Counter,
            None,
            |d| d.full_checkpoints as f64,
        ),
        (
            "dirigo_durable_checkpoint_failures",
            "Checkpoints given up",
            Counter,
            None,
            |d| d.checkpoint_failures as f64,
        ),
        (
            "dirigo_durable_last_checkpoint_epoch",
            "Epoch of the newest committed checkpoint",
            Gauge,
            None,
            |d| d.last_checkpoint as f64,
        ),
        (
            "dirigo_durable_last_checkpoint",
            "State size of the newest committed checkpoint",
            Gauge,
            Some(Unit::Bytes),
            |d| d.last_checkpoint_bytes as f64,
        ),
        (
            "dirigo_durable_last_checkpoint_duration",
            "Barrier-to-commit time of the newest checkpoint",
            Gauge,
            Some(Unit::Seconds),
            |d| d.last_checkpoint_ns as f64 / 1e9,
        ),
    ]
};

fn durable(enc: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    let apps: Vec<(&str, &DurableStats)> = s
        .stats
        .apps
        .values()
        .filter_map(|a| a.durable.as_ref().map(|d| (a.name.as_str(), d)))
        .collect();
    if apps.is_empty() {
        return Ok(());
    }
    for (name, help, kind, unit, value) in DURABLE {
        let mut m = enc.encode_descriptor(name, help, unit.as_ref(), kind)?;
        for (app, d) in &apps {
            let labels = [("app", *app)];
            let mut fam = m.encode_family(&labels)?;
            match kind {
                MetricType::Counter => {
                    fam.encode_counter::<NoLabelSet, f64, f64>(&value(d), None)?
                }
                _ => fam.encode_gauge(&value(d))?,
            }
        }
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        apps(&mut enc, self)?;
        durable(&mut enc, self)?;
        shards(&mut enc, self)
    }
}
