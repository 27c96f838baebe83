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

/// The node clock: ns since the node started, the same origin on every
/// shard; and where that origin is on the wall clock (for what must
/// outlive the node: a checkpoint's processing-time timers).
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
    unix_origin_ns: u64,
}

impl Clock {
    /// A clock starting now.
    pub(crate) fn start() -> Clock {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, nanos);
        Clock {
            origin: Instant::now(),
            unix_origin_ns: unix,
        }
    }

    /// The wall-clock time of the origin, ns since the unix epoch.
    pub(crate) fn unix_origin_ns(&self) -> u64 {
        self.unix_origin_ns
    }

    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}
