//! Loom models of Dirigo's engine: the dual-mode protocol, the mesh ring and
//! the park handshake, each explored exhaustively (up to a stated preemption
//! bound) against the engine's real code.
//!
//! Everything here is built only with `--cfg loom` (`.cargo/config.toml` in
//! this directory sets it, with a target directory of its own): without it
//! the crate and its tests compile to nothing, so the plain workspace build
//! and test run are unaffected. Run the suite from this directory:
//!
//! ```text
//! cd loom-tests && cargo test --release -- --nocapture
//! ```
//!
//! Layout: the harness is in this library (`msg`: the message and state
//! types; `mesh`: loom channels between shards; `shard`: the protocol
//! instances of one shard and the `Effects` they act through; `world`: one
//! execution of a scenario and its checks; `fault`: deliberate bugs for the
//! should-panic tests; `explore`: the loom runner that measures each model).
//! The models are in `tests/`, one file per subject: `critical` (model 1),
//! `consolidate` (2), `barrier` (3), `keyed_fifo` (4), `dormant` (5), plus
//! `quiesce` (the lock-free counters undeploy waits on), `ring` (the mesh's
//! SPSC ring) and `park` (the doorbell's park handshake). Each file states its
//! preemption bound; `-- --nocapture` prints the interleavings explored and
//! the time per model.
//!
//! Evidence that the assertions bite, two ways:
//! - each model has a `#[should_panic]` twin (`caught_*`) that runs it with a
//!   deliberate bug in the harness ([`fault::Fault`]: a transport that
//!   reorders, duplicates or lets control overtake data, a lossy merge, a
//!   driver that forgets dormant state; or a broken park flag / counter use);
//! - `tools/loom-mutants.sh` breaks the engine's own code, one mutant at a
//!   time, in a scratch copy (a barrier that does not wait for a revoked
//!   lessee, a critical that skips the local queue, a barrier that aligns
//!   without counting, a grant that keeps the handed-off partitions' queued
//!   messages, deactivation with lessees, a gate that ignores `closed`, a
//!   ring store without `Release`, a park flag without its fence) and checks
//!   that the model of that code fails.

#[cfg(loom)]
pub mod explore;
#[cfg(loom)]
pub mod fault;
#[cfg(loom)]
pub mod mesh;
#[cfg(loom)]
pub mod msg;
#[cfg(loom)]
pub mod shard;
#[cfg(loom)]
pub mod world;
