//! Dirigo's networking: how a node is reached from outside. None of it
//! exists yet; it is the open "node on the network" work, and until then
//! this crate is empty.
//!
//! What it will hold (DESIGN.md, "Net"):
//!
//! - **Thread-per-core serving.** Each shard's glommio executor listens on
//!   the node's port with `SO_REUSEPORT` and serves the connections it
//!   accepts; ingest enters the engine on that shard, with no hop through a
//!   client thread.
//! - **A binary protocol.** Length-prefixed frames with rkyv payloads, each
//!   validated with bytecheck on receipt: deploy and undeploy an app from a
//!   catalog of app kinds, ingest batches (acked when accepted, or when
//!   durable), subscribe to a sink's outputs, barriers, stats, checkpoint.
//! - **An HTTP/1.1 front** for the same operations, with SSE for outputs and
//!   `GET /metrics` in Prometheus text format.
//! - **Closed by default.** Binds 127.0.0.1 unless told otherwise; an admin
//!   token and per-app tokens.
