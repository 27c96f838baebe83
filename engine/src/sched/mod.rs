//! Data-plane scheduling: the [`policy`] every message's path calls (the
//! `Policy` trait and the built-in policies), and the shard's run queue that
//! orders instances by the policy's rank.
//!
//! Sans-IO: no glommio, no shard state. A policy sees only what the shard
//! hands it (`OpView`, `QueueView`, `ShardLoad`), so this layer imports only
//! the vocabulary (`model`) and the protocol's ids; the shards (`runtime`)
//! call it, never the other way round.

pub mod policy;
#[cfg(feature = "runtime")]
pub(crate) mod runq;
