//! The two things shards share besides the mesh: the node clock (one
//! origin for every shard's timestamps) and each shard's published backlog
//! gauge (relaxed, advisory: no decision's correctness depends on it).

use std::time::Instant;

use crate::sync::AtomicUsize;

/// A shard's published load, read by other shards when they pick where to
/// lease.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Gauge {
    pub backlog: AtomicUsize,
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
