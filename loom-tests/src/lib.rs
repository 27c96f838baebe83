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
//! The models are in `tests/`, one file per subject.

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
