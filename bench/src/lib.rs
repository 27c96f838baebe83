//! Dirigo's workloads and load generators, shared by the `dirigo demo` and
//! the benchmarks: the built-in applications (`dirigo_net::apps`, re-exported),
//! open-loop load with on/off bursts, and the `slo_mix` scenario (the
//! library of the `slo_mix` benchmark binary), and the storage benchmark's
//! measurements (`storage_bench`, the library of the `storage` binary), and
//! NEXMark's generator and queries (`nexmark`).

/// The built-in applications, which live with the node's catalog.
pub use dirigo_net::apps;
pub mod cpu;
pub mod hgrm;
pub mod load;
pub mod nexmark;
pub mod slo_mix;
pub mod storage_bench;
