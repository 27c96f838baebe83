//! Dirigo's engine: thread-per-core shards running applications as DAGs of
//! virtual actors, with dual-mode (lessor + lessees) actors.
//!
//! # Layers
//!
//! Folders by layer; every import points down (checked by
//! `tools/check-layout.py` in CI). From the bottom:
//!
//! | module | owns |
//! |---|---|
//! | [`sync`] | the loom seam: atomics and cells, std or loom |
//! | [`protocol`] | the dual-mode protocol, sans-IO |
//! | [`model`] | the vocabulary: ids, messages, barriers, `AppClass`, errors |
//! | [`limits`] | every fixed limit, with compile-time checks |
//! | [`mesh`] | the SPSC ring, doorbells, the outbox, the full mesh |
//! | [`quiesce`] | lock-free app quiescence counters |
//! | [`sched`] | the `Policy` hooks, built-in policies, the run queue |
//! | `func` | user functions and state, their byte forms, the erased layer |
//! | `plan` | a built app and its compiled, deployed form |
//! | `durability` | journal, checkpoints, recovery, spill files |
//! | `runtime` | shards, their start and links, app ingress, config, metrics |
//! | `api` | `Node`, `AppHandle`, `SourceHandle`, `AppBuilder` |
//!
//! The `runtime` feature (on by default) adds the layers from `func` up,
//! which need glommio, rkyv and the storage crate. Without it the crate is
//! the sans-IO part alone (protocol, model, limits, mesh ring and park
//! handshake, quiescence, scheduling), which is what `loom-tests` builds
//! under `--cfg loom`.
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

pub mod limits;
pub mod mesh;
pub mod model;
pub mod protocol;
pub mod quiesce;
pub mod sched;
pub mod sync;

#[cfg(feature = "runtime")]
mod api;
#[cfg(feature = "runtime")]
mod durability;
#[cfg(feature = "runtime")]
mod func;
#[cfg(feature = "runtime")]
mod plan;
#[cfg(feature = "runtime")]
mod runtime;

/// The policy API (`Policy` and what its hooks see), for users who write
/// their own; the same module as `sched::policy`.
pub use sched::policy;

pub use model::{
    key_hash, ActorId, AppClass, AppId, Barrier, BarrierKind, EngineError, Header, Kind, Message,
    OperatorId, Result,
};
pub use policy::{Dirigo, Edf, Fifo, Llf, Policy, PolicyFactory, Priority, Rank};
pub use protocol::{LeaseId, Strategy, Time};

#[cfg(feature = "runtime")]
pub use exports::*;

/// The public types of the runtime layers, re-exported at the root.
#[cfg(feature = "runtime")]
mod exports {
    pub use crate::api::{
        Ack, AppBuilder, AppHandle, EventTime, JournalAck, Node, Rejected, SinkEvent, SinkPolicy,
        SinkReceiver, SourceHandle, Stream,
    };
    pub use crate::durability::{inspect, DurableStats, Recovery};
    pub use crate::func::{
        Agg, AggAcc, Aggregate, Buffered, Context, DurableState, FullWindow, Function,
        IntervalJoin, InvalidWindows, JoinWindows, Joined, KeyWindows, Keyed, KeyedJoin, Merge,
        Merged, OperatorState, Persist, PersistError, Sequential, Side, Sides, Window, WindowJoin,
        WindowOut, WindowResult, Windows,
    };
    pub use crate::limits::MAX_EVENT_BYTES;
    pub use crate::model::StorageFailure;
    pub use crate::plan::{home_shard, App};
    pub use crate::runtime::config::{AutoScale, NodeConfig, Placement};
    pub use crate::runtime::metrics::{AppStats, NodeStats, ShardStats};
    /// The storage layer's error, the source of `EngineError::Storage`:
    /// which file, which byte, damage or I/O.
    pub use dirigo_storage::StorageError;
    /// The rkyv the engine archives with; derive `Archive`, `Serialize` and
    /// `Deserialize` from it for durable sources' events and operator state.
    pub use rkyv;
}
