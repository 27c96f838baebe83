//! Dirigo's networking: how a node is reached from outside.
//!
//! # Layers
//!
//! From the bottom (every import points down, checked by
//! `tools/check-layout.py`):
//!
//! | module | owns |
//! |---|---|
//! | `limits` | the protocol's fixed limits |
//! | `kind`, `error`, `frame` | frames: a 16-byte header (magic `DG`, kind, flags, length, request id) and a bounded incremental decoder |
//! | `wire` | the messages (handshake, requests, responses, outputs) as rkyv archives, validated before use |
//! | `codec` | an event's or output's binary and JSON forms |
//! | `apps` | the built-in applications |
//! | `ports` | an app's sources and sinks on the wire: decode and send, fan out to subscribers |
//! | `catalog` | app kinds: parameter schemas and factories |
//! | `server` | per-shard listeners, connections, requests, the control thread |
//! | `client` | the Rust client: a sans-IO session, a blocking client and one for glommio |

pub mod apps;
pub mod catalog;
pub mod client;
pub mod codec;
pub mod error;
pub mod frame;
mod kind;
pub mod limits;
mod ports;
pub mod server;
pub mod wire;

pub use catalog::{AppKind, Built, Catalog, DeploySpec, Ports};
pub use client::{Client, ClientError, DeployOptions, LocalClient, Session};
pub use codec::WireValue;
pub use error::{CatalogError, CodecError, FrameError, NetError, ParamError, PortError, WireError};
pub use frame::{Decoder, Frame, Kind};
pub use server::{Server, ServerBuilder, ServerConfig, Shutdown};
pub use wire::{ErrorCode, Event, Hello, Lag, Message, Output, Request, Response, Welcome};
