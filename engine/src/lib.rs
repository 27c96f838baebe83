//! Dirigo's engine: thread-per-core shards running applications as DAGs of
//! virtual actors, with dual-mode (lessor + lessees) actors.

pub mod app;
pub mod config;
pub mod doorbell;
pub mod error;
pub mod function;
mod instance;
pub mod message;
pub mod metrics;
mod node;
pub mod protocol;
pub mod ring;
mod shard;
pub mod sync;

pub use app::{App, AppBuilder, AppClass, SinkEvent, SinkReceiver, Stream};
pub use config::{AutoScale, NodeConfig, Placement};
pub use error::{EngineError, Result};
pub use function::{Context, Function, Keyed, Merge, Merged, OperatorState, Sequential};
pub use message::{
    key_hash, ActorId, AppId, Barrier, BarrierKind, Header, Kind, Message, OperatorId,
};
pub use metrics::{AppStats, NodeStats, ShardStats};
pub use node::{AppHandle, Node, Rejected, SourceHandle};
pub use protocol::{LeaseId, Strategy};
