//! Stats as JSON: a node's (per shard, per app, with the node clock at the
//! snapshot, so a reader can turn two snapshots into rates) and one app's,
//! the same figures the Prometheus endpoint exports, plus each app's SLO.

use std::collections::HashMap;
use std::time::Duration;

use dirigo_engine::{AppClass, AppStats, DurableStats, NodeStats, ShardStats};
use serde_json::{json, Value};

/// One app's figures; `slo` is the SLO it was deployed with (`None`: best
/// effort, or an app not deployed through the server).
pub(crate) fn app_json(a: &AppStats, slo: Option<Duration>) -> Value {
    let q = |h: &dirigo_engine::AppStats, p: f64| h.latency.value_at_quantile(p) as f64 / 1e3;
    json!({
        "name": a.name,
        "class": match a.class { AppClass::LatencyCritical => "latency-critical", AppClass::BestEffort => "best-effort" },
        "delivered": a.delivered,
        "slo_us": slo.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        "within_slo": a.within_slo,
        "satisfaction": if a.delivered == 0 { 1.0 } else { a.within_slo as f64 / a.delivered as f64 },
        "latency_us": {"p50": q(a, 0.5), "p99": q(a, 0.99), "p999": q(a, 0.999), "max": a.latency.max() as f64 / 1e3},
        "queueing_us": {"p50": a.queueing.value_at_quantile(0.5) as f64 / 1e3, "p99": a.queueing.value_at_quantile(0.99) as f64 / 1e3},
        "runs": a.runs,
        "lessee_runs": a.lessee_runs,
        "lessees": a.lessees,
        "leases_granted": a.leases_granted,
        "revokes": a.revokes,
        "barriers": a.barriers,
        "queued": a.queued,
        "failed": a.failed,
        "timers": a.timers,
        "late_events": a.late_events,
        "durable": a.durable.as_ref().map(durable_json),
    })
}

/// A durable app's log and checkpoint figures.
fn durable_json(d: &DurableStats) -> Value {
    json!({
        "log_position": d.log_position,
        "log_entries": d.log_entries,
        "log_bytes": d.log_bytes,
        "log_commits": d.log_commits,
        "log_commit_ns": d.log_commit_ns,
        "log_failed": d.log_failed,
        "checkpoints": d.checkpoints,
        "full_checkpoints": d.full_checkpoints,
        "checkpoint_failures": d.checkpoint_failures,
        "last_checkpoint": d.last_checkpoint,
        "last_checkpoint_bytes": d.last_checkpoint_bytes,
        "last_checkpoint_ns": d.last_checkpoint_ns,
    })
}

fn shard_json(s: &ShardStats) -> Value {
    json!({
        "shard": s.shard,
        "died": s.died,
        "busy_ns": s.busy_ns,
        "runs": s.runs,
        "backlog": s.backlog,
        "lessors": s.lessors,
        "lessees": s.lessees,
        "parks": s.parks,
        "task_panics": s.task_panics,
        "local_ingests": s.local_ingests,
        "inbox_ingests": s.inbox_ingests,
    })
}

/// The node's figures at `now_ns` (the node clock, ns since it started),
/// with the apps' SLOs by name.
pub(crate) fn node_json(
    n: &NodeStats,
    now_ns: u64,
    slos: &HashMap<String, Option<Duration>>,
) -> Value {
    let app = |a: &AppStats| app_json(a, slos.get(&a.name).copied().flatten());
    json!({
        "now_ns": now_ns,
        "shards": n.shards.iter().map(shard_json).collect::<Vec<_>>(),
        "apps": n.apps.values().map(app).collect::<Vec<_>>(),
    })
}
