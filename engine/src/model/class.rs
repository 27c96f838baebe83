//! The class of an application: what its latency target means to the
//! scheduler. Here, at the bottom, because the app builder sets it, the
//! policies rank by it and the metrics report it.

/// Whether an app's latency target is a promise or a wish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppClass {
    /// The SLO is a promise: scheduled by deadline, scaled to keep it.
    LatencyCritical,
    /// The SLO is a wish: runs on what latency-critical apps leave.
    BestEffort,
}
