//! Dirigo's workloads and load generators, shared by the `dirigo demo` and
//! the benchmarks: built-in applications with realistic per-message work,
//! open-loop load with on/off bursts, and the `slo_mix` scenario (the
//! library of the `slo_mix` benchmark binary), and the storage benchmark's
//! measurements (`storage_bench`, the library of the `storage` binary).

pub mod apps;
pub mod cpu;
pub mod load;
pub mod slo_mix;
pub mod storage_bench;
