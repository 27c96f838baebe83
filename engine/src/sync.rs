//! The engine's concurrency primitives, behind one seam.
//!
//! Everything shared between shards (the mesh rings, the doorbell park flag,
//! the load gauges) takes its atomics and cells from here, so that building
//! with `--cfg loom` swaps in loom's checked versions and `loom-tests` can
//! explore the very code the engine runs, as tokio and crossbeam do.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::Arc;

#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub use std::sync::Arc;

/// An `UnsafeCell` with loom's closure API, so callers are written once.
#[cfg(loom)]
pub use loom::cell::UnsafeCell;

/// An `UnsafeCell` with loom's closure API, so callers are written once.
#[cfg(not(loom))]
#[derive(Debug)]
pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// A cell holding `v`.
    pub const fn new(v: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(v))
    }

    /// Shared access through a raw pointer; the caller upholds aliasing.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Exclusive access through a raw pointer; the caller upholds aliasing.
    #[inline(always)]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Pads and aligns a value to its own pair of cache lines, so that the
/// producer's and the consumer's hot indices never share a line (adjacent-line
/// prefetch makes 128 the safe figure on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CachePadded<T>(pub T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
