//! Per-shard, per-app measurements, merged across shards on request.
//!
//! Each shard owns its histograms (no sharing on the data path); a stats
//! request makes every shard send a snapshot, and the node merges them.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::durability::DurableStats;
use crate::limits::{LATENCY_MAX_NS, LATENCY_MIN_NS};
use crate::model::{AppClass, AppId};

/// Latency histograms span `LATENCY_MIN_NS .. LATENCY_MAX_NS` with 3
/// significant digits (ns).
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LATENCY_MIN_NS, LATENCY_MAX_NS, 3)
        .expect("static histogram bounds are valid")
}

/// A sample clamped into the histograms' range rather than lost.
fn clamp(ns: u64) -> u64 {
    ns.clamp(LATENCY_MIN_NS, LATENCY_MAX_NS)
}

/// One app's figures on one shard (or merged over shards).
#[derive(Clone, Debug)]
pub struct AppStats {
    /// The app's id on this node.
    pub app: AppId,
    /// The app's name, as deployed.
    pub name: String,
    /// The app's class (latency-critical or best-effort).
    pub class: AppClass,
    /// End-to-end latency (ingress to sink) of delivered outputs, ns.
    pub latency: Histogram<u64>,
    /// Queueing delay of every run: from queued on the shard that ran it to
    /// the start of the run, ns.
    pub queueing: Histogram<u64>,
    /// Outputs delivered at sinks.
    pub delivered: u64,
    /// Of those, within the app's SLO.
    pub within_slo: u64,
    /// Messages run by this app's operators (lessors and lessees).
    pub runs: u64,
    /// Of those, run by lessees (work that left the home shard).
    pub lessee_runs: u64,
    /// Lessee instances currently hosted (summed over shards: leased cores).
    pub lessees: usize,
    /// Leases granted / revoked so far by this app's lessors.
    pub leases_granted: u64,
    /// Leases ended by a revoke (their state came home).
    pub revokes: u64,
    /// Barriers completed, counted once per operator (the critical section
    /// on its home shard).
    pub barriers: u64,
    /// Messages queued or held at the app's instances (lessors and
    /// lessees), at the snapshot.
    pub queued: usize,
    /// Why the app failed, if it did (it runs nothing more; undeploy it).
    pub failed: Option<String>,
    /// Lessee-time: the integral over time of the lessees hosted, ns (over
    /// a wall-clock span, divided by it: the mean lessee count).
    pub lessee_ns: u64,
    /// A durable app's log and checkpoint figures (from its journal, in
    /// the node's merged figures only).
    pub durable: Option<DurableStats>,
    /// Event-time timers fired (on every instance).
    pub timers: u64,
    /// Events the app's functions counted late (`Context::late`; a
    /// window's events past their allowed lateness).
    pub late_events: u64,
}

impl AppStats {
    pub(crate) fn new(app: AppId, name: String, class: AppClass) -> Self {
        AppStats {
            app,
            name,
            class,
            latency: new_histogram(),
            queueing: new_histogram(),
            delivered: 0,
            within_slo: 0,
            runs: 0,
            lessee_runs: 0,
            lessees: 0,
            leases_granted: 0,
            revokes: 0,
            barriers: 0,
            queued: 0,
            failed: None,
            lessee_ns: 0,
            durable: None,
            timers: 0,
            late_events: 0,
        }
    }

    /// `n` messages (a batch) waited `delay_ns` in a queue.
    pub(crate) fn record_queueing(&mut self, delay_ns: u64, n: u64) {
        let _ = self.queueing.record_n(clamp(delay_ns), n);
    }

    /// `n` outputs (a batch) reached a sink `latency_ns` after their root
    /// messages entered the node.
    pub(crate) fn record_delivery(&mut self, latency_ns: u64, slo_ns: u64, n: u64) {
        self.delivered += n;
        if latency_ns <= slo_ns {
            self.within_slo += n;
        }
        let _ = self.latency.record_n(clamp(latency_ns), n);
    }

    /// Share of delivered outputs within the SLO (1.0 when none yet).
    pub fn satisfaction(&self) -> f64 {
        if self.delivered == 0 {
            1.0
        } else {
            self.within_slo as f64 / self.delivered as f64
        }
    }

    pub(crate) fn merge(&mut self, o: &AppStats) {
        let _ = self.latency.add(&o.latency);
        let _ = self.queueing.add(&o.queueing);
        self.lessee_ns += o.lessee_ns;
        self.delivered += o.delivered;
        self.within_slo += o.within_slo;
        self.runs += o.runs;
        self.lessee_runs += o.lessee_runs;
        self.lessees += o.lessees;
        self.leases_granted += o.leases_granted;
        self.revokes += o.revokes;
        self.barriers += o.barriers;
        self.timers += o.timers;
        self.late_events += o.late_events;
        self.queued += o.queued;
        if self.failed.is_none() {
            self.failed.clone_from(&o.failed);
        }
    }
}

/// One shard's figures.
#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    /// The shard's index.
    pub shard: usize,
    /// The shard's thread died of this panic (an engine bug); every other
    /// figure is then zero, and every app with a node homed here failed.
    pub died: Option<String>,
    /// Time spent in dispatcher turns that did work, ns.
    pub busy_ns: u64,
    /// Messages run on this shard, all apps (including undeployed ones).
    pub runs: u64,
    /// Packets addressed to an app or actor this shard does not have
    /// (undeployed while in flight).
    pub dropped: u64,
    /// Times the shard slept on its doorbell, idle.
    pub parks: u64,
    /// Tasks beside the dispatcher (`Node::spawn_on_shards`) that ended in
    /// a panic: each ended alone, the shard ran on.
    pub task_panics: u64,
    /// Ingest commands taken from the shard-local queue: sent by a task on
    /// this shard's own executor (a connection it serves).
    pub local_ingests: u64,
    /// Ingest commands taken from the cross-thread inbox (client threads,
    /// journals, connections served on other shards).
    pub inbox_ingests: u64,
    /// Messages queued here (at lessors, held behind barriers, at lessees,
    /// behind full rings), all apps, at the snapshot.
    pub backlog: usize,
    /// Active actors homed here (their lessors), at the snapshot.
    pub lessors: usize,
    /// Lessee instances hosted here for actors homed elsewhere, at the
    /// snapshot.
    pub lessees: usize,
    /// Deactivated actors homed here (in memory or spilled), at the
    /// snapshot.
    pub dormant: usize,
    /// Dormant actors whose state is in a spill file now.
    pub spilled: usize,
    /// States written to spill files, their bytes, and failed spills (the
    /// state then stays in memory).
    pub spills: u64,
    /// Bytes written to spill files.
    pub spill_bytes: u64,
    /// Spills that failed.
    pub spill_errors: u64,
    /// States read back from spill files (cold starts) and the time they
    /// took in total, ns (map, validate, deserialize).
    pub unspills: u64,
    /// Time spent reading spilled states back, ns.
    pub unspill_ns: u64,
    /// Spilled states that could not be read back (retried when the error
    /// may pass; the app failed when the state was damaged).
    pub unspill_errors: u64,
    /// The last of those errors, naming the file and the cause.
    pub last_unspill_error: Option<String>,
    /// Per app deployed, this shard's figures.
    pub apps: BTreeMap<AppId, AppStats>,
}

/// The node's figures: per shard, and per app merged over shards.
#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    /// Every shard's figures, by shard index.
    pub shards: Vec<ShardStats>,
    /// Every app's figures, merged over shards.
    pub apps: BTreeMap<AppId, AppStats>,
}

impl NodeStats {
    pub(crate) fn from_shards(shards: Vec<ShardStats>) -> Self {
        let mut apps: BTreeMap<AppId, AppStats> = BTreeMap::new();
        for s in &shards {
            for (id, a) in &s.apps {
                apps.entry(*id)
                    .or_insert_with(|| AppStats::new(*id, a.name.clone(), a.class))
                    .merge(a);
            }
        }
        NodeStats { shards, apps }
    }

    /// The merged figures of the app named `name`, if deployed.
    pub fn app(&self, name: &str) -> Option<&AppStats> {
        self.apps.values().find(|a| a.name == name)
    }

    /// Whether every shard is alive and no app failed.
    pub fn healthy(&self) -> bool {
        self.shards.iter().all(|s| s.died.is_none())
            && self.apps.values().all(|a| a.failed.is_none())
    }

    /// Total busy core-time over all shards, ns.
    pub fn busy_ns(&self) -> u64 {
        self.shards.iter().map(|s| s.busy_ns).sum()
    }
}
