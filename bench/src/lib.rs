//! Dirigo's workloads and load generators, shared by the `dirigo demo` and
//! the benchmarks: built-in applications with realistic per-message work,
//! and open-loop load with on/off bursts.

pub mod apps;
pub mod load;
