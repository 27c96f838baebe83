//! The `slo-mix` scenario: latency-critical apps with SLOs and bursty
//! arrivals sharing a node's cores with heavy best-effort apps, run under
//! several scheduling/scaling configurations with the same seeded arrivals
//! (the bench binary is `src/bin/slo_mix.rs`; this module is its library:
//! workload, placement, load generation, one run, results, output files).
//!
//! # Workload
//!
//! - Latency-critical (LC) apps: `events -> parse -> score -> out`. `parse`
//!   is stateless (`Merged` window count), `score` keeps per-account running
//!   statistics (`Keyed`, reset at each window close). Both spin for a set
//!   number of microseconds per message. Arrivals are open-loop on/off
//!   bursts ([`crate::load::Shape`]): `burst` times the mean rate during
//!   `on`, less during `off`, the mean kept; each LC app's bursts are phase
//!   shifted so that they do not all hit at once.
//! - Best-effort (BE) apps: `events -> enrich -> out`, `enrich` `Keyed`,
//!   steady open-loop arrivals, heavy enough that an LC burst plus the BE
//!   work on the same shard is more than its core can do.
//!
//! # Placement
//!
//! The engine chooses an operator's home shard by hashing (app name,
//! operator index) (`dirigo_engine::home_shard`); it has no API to pin homes.
//! We choose app names so that every node of LC app `i` is homed on shard
//! `i % shards` and every node of BE app `j` on shard `j % shards`: each LC
//! home shard also carries a BE app, so the contention is real. The search
//! uses `predicted_home` (the engine's own formula), and every run
//! checks it for the nodes that run (operators and sink): the lessor runs
//! (runs minus lessee runs) of each app must all be on its intended shard
//! ([`AppResult::placement_ok`]). A source's home (the shard that ingests
//! its events) does not show in the stats, so it rests on the engine's
//! formula alone.
//!
//! # Interference
//!
//! The bench shares the machine's cores with its own generator and main
//! threads and with any other process. Each run reports the generator's
//! worst lateness and the CPU time of this process and of all others
//! during the load window (from `/proc`), so a run disturbed by something
//! else on the machine shows as such.
//!
//! # Arrivals
//!
//! One generator thread (the machine has few cores) ticks every millisecond
//! and sends each app the events due at that tick, computed from the tick
//! index alone (not from the wall clock), so every configuration sees the
//! same number of events at the same offsets, with the same keys (one
//! ChaCha8 stream per app from `--seed`). Batches a source refuses
//! (backpressure) are counted as shed, never retried.
//!
//! # Layout
//!
//! - `workload.rs`: the configurations ([`Config`]), the apps and their
//!   arrivals ([`AppSpec`], [`Arrivals`], [`Workload`]), the placement
//!   search (`predicted_home`, `placed_name`) and the functions the
//!   apps run (`Parse`, `Score`, over [`Event`]s).
//! - `run.rs`: the load generator, one run of one configuration
//!   ([`run`](fn@run)), its results ([`ConfigResult`], [`AppResult`],
//!   [`Sample`]) and the machine CPU snapshots.
//! - `report.rs`: what is printed ([`describe`], [`table`], [`comparison`])
//!   and written ([`write_outputs`]: histograms, percentile distributions,
//!   timelines, JSON).
//!
//! This file holds what they share: the error type and the re-exports, so
//! that every public item is reached as `dirigo_bench::slo_mix::X`.

mod report;
mod run;
mod workload;

pub use report::{comparison, describe, table, write_outputs};
pub use run::{run, AppResult, ConfigResult, Sample};
pub use workload::{AppKind, AppSpec, Arrivals, Config, Demand, Event, Scored, Workload};

/// Errors of a bench run (engine errors, I/O, a panicked generator).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Nanoseconds as milliseconds.
fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}
