//! Dirigo's networking: how a node is reached from outside.
//!
//! Built so far: the binary protocol's wire layer, sans-IO, so the server,
//! the client and the tests drive the same code:
//! - `frame`: length-prefixed frames (16-byte header: magic `DG`, kind,
//!   flags, length, request id) and an incremental decoder that bounds what
//!   it buffers and turns bad bytes into errors, never panics;
//! - `wire`: the messages (handshake, requests, responses, subscription
//!   outputs) as rkyv archives, validated with bytecheck before use;
//! - `limits`: the protocol's fixed limits.
//!
//! To come (DESIGN.md, "Net"; the node issue): per-shard listeners on
//! glommio's io_uring TCP (`SO_REUSEPORT`), ingest entering the engine on
//! the shard that read it, the Rust client, the HTTP/1.1 front with SSE and
//! `GET /metrics`, tokens, and backpressure that reaches the socket.

pub mod error;
pub mod frame;
mod kind;
pub mod limits;
pub mod wire;

pub use error::{FrameError, WireError};
pub use frame::{Decoder, Frame, Kind};
pub use wire::{ErrorCode, Event, Hello, Lag, Message, Output, Request, Response, Welcome};
