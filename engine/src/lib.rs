//! Dirigo's engine: thread-per-core shards running applications as DAGs of
//! virtual actors, with dual-mode (lessor + lessees) actors.
//!
//! The `runtime` feature (on by default) adds what needs glommio: the shards,
//! the node and its metrics. Without it the crate is the sans-IO part alone
//! (the dual-mode protocol, the mesh ring, the park handshake, the message
//! and function types), which is what `loom-tests` builds under `--cfg loom`.
//!
//! Writing and running an app (the README's example, compiled here):
//!
//! ```no_run
//! # #[cfg(feature = "runtime")]
//! # fn main() -> dirigo_engine::Result<()> {
//! use dirigo_engine::*;
//!
//! struct Count;
//! impl Function for Count {
//!     type In = String;
//!     type Out = (String, u64);
//!     type State = Keyed<u64>;
//!     fn on_message(&self, st: &mut Keyed<u64>, key: u64, word: String, ctx: &mut Context<'_, (String, u64)>) {
//!         let n = st.entry(key);
//!         *n += 1;
//!         ctx.emit(key, (word, *n));
//!     }
//! }
//!
//! let node = Node::start(NodeConfig::default())?;
//! let mut b = AppBuilder::new("counts").slo(std::time::Duration::from_millis(20));
//! let words = b.source::<String>("words");
//! let counts = b.operator("count", Count, &[words]);
//! let out = b.sink("out", counts);
//! let app = node.deploy(b.build()?)?;
//! app.source::<String>("words")?.send(key_hash(b"hello"), "hello".into())?;
//! if let Some(SinkEvent::Data { value, .. }) = out.recv_timeout(std::time::Duration::from_secs(1)) {
//!     assert_eq!(value, ("hello".to_string(), 1));
//! }
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "runtime"))]
//! # fn main() {}
//! ```

#[cfg(feature = "runtime")]
pub mod app;
#[cfg(feature = "runtime")]
pub mod config;
pub mod doorbell;
#[cfg(feature = "runtime")]
pub mod durable;
pub mod error;
#[cfg(feature = "runtime")]
pub mod function;
#[cfg(feature = "runtime")]
mod instance;
#[cfg(feature = "runtime")]
mod journal;
pub mod message;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
mod node;
#[cfg(feature = "runtime")]
pub mod policy;
pub mod protocol;
pub mod quiesce;
pub mod ring;
#[cfg(feature = "runtime")]
mod runq;
#[cfg(feature = "runtime")]
mod shard;
#[cfg(feature = "runtime")]
mod spill;
pub mod sync;

#[cfg(feature = "runtime")]
pub use app::{home_shard, App, AppBuilder, AppClass, SinkEvent, SinkReceiver, Stream};
#[cfg(feature = "runtime")]
pub use config::{AutoScale, NodeConfig, Placement};
#[cfg(feature = "runtime")]
pub use durable::{DurableState, Persist, PersistError};
pub use error::{EngineError, Result};
#[cfg(feature = "runtime")]
pub use function::{Context, Function, Keyed, Merge, Merged, OperatorState, Sequential};
#[cfg(feature = "runtime")]
pub use journal::{Recovery, MAX_EVENT_BYTES};
pub use message::{
    key_hash, ActorId, AppId, Barrier, BarrierKind, Header, Kind, Message, OperatorId,
};
#[cfg(feature = "runtime")]
pub use metrics::{AppStats, NodeStats, ShardStats};
#[cfg(feature = "runtime")]
pub use node::{AppHandle, Node, Rejected, SourceHandle};
#[cfg(feature = "runtime")]
pub use policy::{Dirigo, Edf, Fifo, Llf, Policy, PolicyFactory, Priority, Rank};
pub use protocol::{LeaseId, Strategy};
/// The rkyv the engine archives with; derive `Archive`, `Serialize` and
/// `Deserialize` from it for durable sources' events and operator state.
#[cfg(feature = "runtime")]
pub use rkyv;
