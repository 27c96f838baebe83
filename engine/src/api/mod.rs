//! The client API: what a user's program holds.
//!
//! - `app`: [`AppBuilder`] (a typed DAG of sources, operators and sinks),
//!   [`Stream`], and the sink's [`SinkReceiver`];
//! - `node`: [`Node`] (start shards, deploy, undeploy, stats) and
//!   [`AppHandle`] (barriers, checkpoints, explicit scaling, quiescence);
//! - `sink`: bounded sink queues, [`SinkReceiver`] and [`SinkPolicy`];
//! - `source`: [`SourceHandle`], sending events, and [`Rejected`];
//! - `time`: [`EventTime`], a source's event time and watermarks.
//!
//! The top of the engine: it imports every layer below and none imports
//! it. The node's configuration and metrics types live with the runtime
//! (the shards read them) and are re-exported at the crate root.

mod app;
mod entry;
mod node;
mod sink;
mod source;
mod time;

pub use app::{AppBuilder, Stream};
pub use node::{AppHandle, Node};
pub use sink::{SinkEvent, SinkPolicy, SinkReceiver};
pub use source::{Ack, JournalAck, Rejected, SourceHandle};
pub use time::EventTime;
