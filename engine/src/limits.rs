//! Every fixed limit of the engine, in one place, with compile-time checks
//! of how they relate (TigerBeetle's "put a limit on everything").
//!
//! What a deployment tunes (ring and inbox capacities, batch sizes, the
//! backlog bound, timeouts of the scheduler) is in `NodeConfig`, validated
//! against the bounds here when a node starts. What the code relies on
//! (id widths, record sizes, the partition count) is a constant here, and
//! the asserts at the bottom fail the build if one stops fitting another.

use std::time::Duration;

use crate::model::OperatorId;
use crate::protocol::{EdgeId, ShardId, PARTITIONS};

/// Most shards a node may have.
pub const MAX_SHARDS: usize = 256;

/// Smallest and largest capacity of a shard-to-shard ring, in packets.
pub const MIN_RING_CAPACITY: usize = 2;
/// See [`MIN_RING_CAPACITY`].
pub const MAX_RING_CAPACITY: usize = 1 << 20;

/// Most nodes (sources, operators, sinks) one app may have.
pub const MAX_NODES: usize = 1024;
/// Most input edges one operator may have.
pub const MAX_INPUTS: usize = 64;

/// Most events one batch message carries: a client batch enters as
/// batches of at most this many, and a batch run's outputs leave in
/// batches of at most this many per edge. One batch runs in one step, so
/// this bounds a step (tens of µs of user code at ~100 ns an event).
pub const BATCH_EVENTS: usize = 256;

/// Most client commands a shard takes from one inbox in one turn, so that
/// the rings and the run queue are looked at between them.
pub const COMMANDS_PER_TURN: usize = 64;

/// io_uring buffer memory of each shard's executor, bytes (glommio's
/// `io_memory`; `ulimit -l` bounds what can be locked).
pub const SHARD_IO_MEMORY: usize = 1 << 20;

/// How long a busy shard's dispatcher runs before it yields its task
/// queue, so the executor polls io_uring and runs the other tasks beside it
/// (the network layer's connections); only while there are such tasks. A
/// connection on a busy shard waits about this long at most.
pub const SHARD_TASK_QUOTA: Duration = Duration::from_micros(500);

/// How long a client waits before it retries a full inbox (and how long
/// the journal waits, for logged input that must not be refused).
pub const RETRY_PAUSE: Duration = Duration::from_micros(50);

/// Quiescence: the pause between two agreeing waves of counter reads (time
/// for a message in flight between shards to show up in a counter;
/// correctness does not depend on it), and between attempts.
pub const QUIESCE_SETTLE: Duration = Duration::from_micros(200);
/// See [`QUIESCE_SETTLE`].
pub const QUIESCE_POLL: Duration = Duration::from_micros(500);

/// How long a client call waits for a shard's reply (deploy, stats, lease).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle shard may sleep without a doorbell, at least and at
/// most (it wakes for housekeeping and idle-lessee timers).
pub const PARK_NAP_MIN: Duration = Duration::from_millis(1);
/// Most steps an instance runs per pop from the run queue (a batch: one
/// rank, one schedule and one lease decision for all of them).
pub const STEP_BATCH: usize = 64;
/// A batch also ends once it ran this long, so a better-ranked instance
/// waits at most this (plus one message) behind it.
pub const STEP_SLICE: Duration = Duration::from_micros(50);
/// How long a client waits for a shard whose channels closed to record
/// why it died (it does as its unwinding ends).
pub const DEATH_RECORD_WAIT: Duration = Duration::from_secs(1);
/// A sink's queue by default (`SinkPolicy::default`), events.
pub const SINK_CAPACITY: usize = 1 << 16;
/// The largest sink queue an app may ask for, events.
pub const MAX_SINK_CAPACITY: usize = 1 << 24;
/// How often a shard looks again at a sink held back by its full queue
/// while it has nothing else to do.
pub const SINK_RETRY_NAP: Duration = Duration::from_micros(500);
/// See [`PARK_NAP_MIN`].
pub const PARK_NAP_MAX: Duration = Duration::from_millis(50);
/// The shortest nap before a due idle-lessee timer.
pub const TIMER_NAP_MIN: Duration = Duration::from_micros(50);

/// The range latency histograms record, ns (1 µs .. 100 s, 3 significant
/// digits); samples outside are clamped into it.
pub const LATENCY_MIN_NS: u64 = 1_000;
/// See [`LATENCY_MIN_NS`].
pub const LATENCY_MAX_NS: u64 = 100_000_000_000;

/// How long a checkpoint may wait for operator states before it is given
/// up (its reply gets an error; the next checkpoint starts afresh).
pub const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an idle journal (no checkpoint pending) sleeps before it looks
/// again; any request wakes it at once.
pub const JOURNAL_IDLE_WAIT: Duration = Duration::from_secs(3600);

/// How long `SourceHandle::send` waits out backpressure.
pub const SEND_WAIT: Duration = Duration::from_secs(1);

/// Most requests the journal takes into one group commit.
pub const MAX_GROUP: usize = 1024;

/// Largest deploy note a durable app's folder keeps (`App::with_deploy_note`),
/// bytes: a description, not data.
pub const MAX_DEPLOY_NOTE: usize = 64 << 10;

/// Smallest segment size of an ingress log, bytes.
pub const MIN_LOG_SEGMENT_BYTES: u64 = 4096;

/// Where an incremental checkpoint keeps an operator's changes: under the
/// operator's id with this bit set.
pub const DELTA: u16 = 0x8000;

/// Where a checkpoint keeps an operator's event clock (watermark and
/// timers, saved whole every time): under its id with this bit set.
pub const CLOCK: u16 = 0x4000;

/// Largest archived event a durable source takes: what one log record
/// holds, less room for the entry's other fields.
#[cfg(feature = "runtime")]
pub const MAX_EVENT_BYTES: usize = dirigo_storage::MAX_RECORD_LEN - 1024;

/// Largest record of a spill file, bytes.
pub const SPILL_CHUNK: usize = 8 << 20;

/// Most timers one actor instance holds on each clock, event time and
/// processing time (a key's timer at one time counts once);
/// `Context::set_timer` and `set_processing_timer` refuse more.
pub const MAX_TIMERS_PER_INSTANCE: usize = 1 << 22;

/// Stale wake-ups a shard's processing-timer heap may hold beyond two per
/// instance before it is rebuilt from the instances' armed times.
pub const WAKEUPS_SLACK: usize = 1024;

// Ids fit their types.
const _: () = assert!(MAX_SHARDS <= ShardId::MAX as usize + 1);
const _: () = assert!(MAX_NODES <= u16::MAX as usize + 1);
const _: () = assert!(std::mem::size_of::<OperatorId>() == std::mem::size_of::<u16>());
const _: () = assert!(MAX_INPUTS <= EdgeId::MAX as usize + 1);
// An operator id with the delta bit set is not another operator's id.
const _: () = assert!(MAX_NODES <= DELTA as usize);
const _: () = assert!(MAX_NODES <= CLOCK as usize && CLOCK & DELTA == 0);
// Rings are masked into a power-of-two buffer.
const _: () = assert!(MIN_RING_CAPACITY >= 2 && MAX_RING_CAPACITY.is_power_of_two());
// Keyed partitions are a 64-bit set.
const _: () = assert!(PARTITIONS == 64);
const _: () = assert!(PARK_NAP_MIN.as_nanos() <= PARK_NAP_MAX.as_nanos());
const _: () = assert!(TIMER_NAP_MIN.as_nanos() <= PARK_NAP_MIN.as_nanos());
const _: () = assert!(LATENCY_MIN_NS < LATENCY_MAX_NS);
const _: () = assert!(COMMANDS_PER_TURN > 0 && MAX_GROUP > 0);
const _: () = assert!(BATCH_EVENTS >= 2 && BATCH_EVENTS <= u32::MAX as usize);
const _: () = assert!(SINK_CAPACITY >= 1 && SINK_CAPACITY <= MAX_SINK_CAPACITY);
const _: () = assert!(SINK_RETRY_NAP.as_nanos() <= PARK_NAP_MIN.as_nanos());
// An event and a spill chunk each fit one storage record.
#[cfg(feature = "runtime")]
const _: () = assert!(MAX_EVENT_BYTES > 0 && MAX_EVENT_BYTES < dirigo_storage::MAX_RECORD_LEN);
#[cfg(feature = "runtime")]
const _: () = assert!(SPILL_CHUNK <= dirigo_storage::MAX_RECORD_LEN);
