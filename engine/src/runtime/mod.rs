//! The runtime: shards on glommio executors, and what clients use to reach
//! them.
//!
//! - `shard/`: one shard's state machine and dispatcher loop;
//! - `shards`: starting a node's shards on the mesh, and the client's links
//!   to them (commands, replies, stop);
//! - `ingress`: the low-level door into one app (counted sends, barriers,
//!   quiescence), shared by the client API and the durable journal;
//! - `command`: what a client asks of a shard;
//! - `local`: the shard-local door for tasks on a shard's own executor;
//! - `clock`: the node clock and the load gauges;
//! - `config`: the node's knobs (here rather than in `api` because the
//!   shards read them; `api` re-exports them);
//! - `metrics`: per-shard, per-app figures, merged on request.
//!
//! Above `sched`, `plan`, `durability` and `mesh`; below only `api`. Nothing
//! here imports the client API.

pub(crate) mod clock;
pub(crate) mod command;
pub(crate) mod config;
pub(crate) mod ingress;
pub(crate) mod local;
pub(crate) mod metrics;
mod shard;
pub(crate) mod shards;

pub(crate) use ingress::Credit;
