//! Dirigo's engine: thread-per-core shards running applications as DAGs of
//! virtual actors, with dual-mode (lessor + lessees) actors.
//!
//! The `runtime` feature (on by default) adds what needs glommio: the shards,
//! the node and its metrics. Without it the crate is the sans-IO part alone
//! (the dual-mode protocol, the mesh ring, the park handshake, the message
//! and function types), which is what `loom-tests` builds under `--cfg loom`.

#[cfg(feature = "runtime")]
pub mod app;
#[cfg(feature = "runtime")]
pub mod config;
pub mod doorbell;
pub mod error;
#[cfg(feature = "runtime")]
pub mod function;
#[cfg(feature = "runtime")]
mod instance;
pub mod message;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
mod node;
pub mod protocol;
pub mod ring;
#[cfg(feature = "runtime")]
mod shard;
pub mod sync;

#[cfg(feature = "runtime")]
pub use app::{App, AppBuilder, AppClass, SinkEvent, SinkReceiver, Stream};
#[cfg(feature = "runtime")]
pub use config::{AutoScale, NodeConfig, Placement};
pub use error::{EngineError, Result};
#[cfg(feature = "runtime")]
pub use function::{Context, Function, Keyed, Merge, Merged, OperatorState, Sequential};
pub use message::{
    key_hash, ActorId, AppId, Barrier, BarrierKind, Header, Kind, Message, OperatorId,
};
#[cfg(feature = "runtime")]
pub use metrics::{AppStats, NodeStats, ShardStats};
#[cfg(feature = "runtime")]
pub use node::{AppHandle, Node, Rejected, SourceHandle};
pub use protocol::{LeaseId, Strategy};
