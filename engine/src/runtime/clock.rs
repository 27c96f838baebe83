//! The two things shards share besides the mesh: the node clock (one
//! origin for every shard's timestamps) and each shard's published backlog
//! gauge (relaxed, advisory: no decision's correctness depends on it).

use std::time::{Duration, Instant};

use crate::sync::AtomicUsize;

/// A shard's published load, read by other shards when they pick where to
/// lease.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Gauge {
    pub backlog: AtomicUsize,
}

/// `d` in ns, saturating: a configured or policy-given duration too long
/// for the clock (`Duration::MAX` for "never") stays the longest one.
#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The node clock: ns since the node started, the same origin on every shard.
#[derive(Clone, Copy)]
pub(crate) struct Clock(pub Instant);

impl Clock {
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}
