//! Dirigo's engine: thread-per-core shards running applications as DAGs of
//! virtual actors, with dual-mode (lessor + lessees) actors.

pub mod protocol;
