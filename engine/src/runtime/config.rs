//! Node configuration: what a deployment tunes (shard count and placement,
//! queue and batch sizes, the backlog bound, scheduler timeouts, scaling,
//! the policy, durability), checked against `limits` when a node starts.

use std::path::PathBuf;
use std::time::Duration;

use crate::limits::{MAX_RING_CAPACITY, MAX_SHARDS, MIN_LOG_SEGMENT_BYTES, MIN_RING_CAPACITY};
use crate::model::{EngineError, Result};
use crate::sched::policy::{Dirigo, PolicyFactory, ScaleLimits};

/// Where shard threads run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Shard `i` pinned to the `i`-th available core (wrapping around when
    /// there are more shards than cores).
    Pinned,
    /// Let the OS place shard threads (tests with more shards than cores).
    Unpinned,
}

/// Limits on implicit scaling. The policy decides when to lease and how
/// long an idle lessee stays (`Policy::on_backlog`, `Policy::release_after`);
/// these bound it. `enabled: false` is static placement: no lease is ever
/// asked for on the engine's initiative (explicit `AppHandle::lease` still
/// works).
#[derive(Clone, Debug)]
pub struct AutoScale {
    /// Whether the engine leases on its own (false: static placement).
    pub enabled: bool,
    /// A lessor with more messages than this queued is long (the policies'
    /// backlog rule).
    pub up_backlog: usize,
    /// Most lessees one actor may have.
    pub max_lessees: usize,
    /// A shard accepts a lease only while its own backlog is below this.
    pub accept_below: usize,
    /// A lessee idle this long asks to be released.
    pub lessee_idle: Duration,
}

impl AutoScale {
    /// What a policy is told of these limits.
    pub fn limits(&self) -> ScaleLimits {
        ScaleLimits {
            up_backlog: self.up_backlog,
            max_lessees: self.max_lessees,
            lessee_idle: self.lessee_idle,
        }
    }
}

impl Default for AutoScale {
    fn default() -> Self {
        AutoScale {
            enabled: true,
            up_backlog: 256,
            max_lessees: 3,
            accept_below: 64,
            lessee_idle: Duration::from_millis(200),
        }
    }
}

#[derive(Clone, Debug)]
/// How a node runs: its shards, queues, scheduling, scaling and
/// durability. `Default` is one pinned shard per core, the `Dirigo`
/// policy, no data folder.
pub struct NodeConfig {
    /// Number of shards; 0 = one per available core.
    pub shards: usize,
    /// Pinned to cores, or placed by the OS.
    pub placement: Placement,
    /// Capacity of each shard-to-shard ring (packets).
    pub ring_capacity: usize,
    /// Capacity of each shard's command inbox from client threads.
    pub inbox_capacity: usize,
    /// Most events in one ingest batch.
    pub max_batch: usize,
    /// A shard stops taking client commands while this many messages are
    /// queued on it (backpressure reaches the client as a full inbox).
    pub max_backlog: usize,
    /// Most messages one app may hold in memory, wherever they are queued
    /// (mailboxes, rings, spills, inboxes, lessees): a client send that
    /// would pass it is refused with `AppFull` (see `quiesce::in_flight`).
    pub max_in_flight: usize,
    /// Instance steps per dispatcher turn before the rings are polled again.
    pub step_budget: usize,
    /// A turn stops running instance steps once this much time has passed,
    /// so new arrivals (and their ranks) are seen at least this often
    /// however long the steps are (Seastar's task quota).
    pub run_quota: Duration,
    /// How long an idle shard polls before it parks.
    pub spin_before_park: Duration,
    /// An idle actor is deactivated after this long.
    pub idle_deactivate: Duration,
    /// How often a busy shard runs housekeeping (deactivation, scaling).
    pub housekeeping: Duration,
    /// Limits on implicit scaling.
    pub autoscale: AutoScale,
    /// The scheduling policy of every shard (default: `Dirigo`).
    pub policy: PolicyFactory,
    /// Where durable apps keep their ingress logs and checkpoints (one
    /// folder per app); `None`: durable apps cannot be deployed.
    pub data_dir: Option<PathBuf>,
    /// An ingress log starts a new segment file past this size.
    pub log_segment_bytes: u64,
    /// Durable apps: every this many checkpoints, one saves every state
    /// whole; the ones between save only what changed where the state can
    /// tell (`Keyed`). 1: every checkpoint is full.
    pub full_checkpoint_every: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            shards: 0,
            placement: Placement::Pinned,
            ring_capacity: 4096,
            inbox_capacity: 1024,
            max_batch: 4096,
            max_backlog: 1 << 16,
            max_in_flight: 1 << 16,
            step_budget: 256,
            run_quota: Duration::from_micros(200),
            spin_before_park: Duration::from_micros(50),
            idle_deactivate: Duration::from_secs(1),
            housekeeping: Duration::from_millis(1),
            autoscale: AutoScale::default(),
            policy: PolicyFactory::per_shard(Dirigo::default),
            data_dir: None,
            log_segment_bytes: 64 << 20,
            full_checkpoint_every: 8,
        }
    }
}

impl NodeConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(EngineError::Config(s));
        if self.shards > MAX_SHARDS {
            return bad(format!("more than {MAX_SHARDS} shards"));
        }
        if !(MIN_RING_CAPACITY..=MAX_RING_CAPACITY).contains(&self.ring_capacity) {
            return bad(format!(
                "ring_capacity must be in {MIN_RING_CAPACITY}..={MAX_RING_CAPACITY}"
            ));
        }
        if self.inbox_capacity == 0
            || self.max_batch == 0
            || self.step_budget == 0
            || self.max_in_flight == 0
        {
            return bad(
                "inbox_capacity, max_batch, max_in_flight and step_budget must be positive".into(),
            );
        }
        if self.full_checkpoint_every == 0 {
            return bad("full_checkpoint_every must be at least 1".into());
        }
        if self.log_segment_bytes < MIN_LOG_SEGMENT_BYTES {
            return bad(format!(
                "log_segment_bytes must be at least {MIN_LOG_SEGMENT_BYTES}"
            ));
        }
        Ok(())
    }

    /// The shard count this config asks for on this machine (one per
    /// available core, at most `MAX_SHARDS`, when `shards` is 0).
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(MAX_SHARDS)
        }
    }
}
