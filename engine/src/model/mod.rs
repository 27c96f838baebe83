//! The engine's shared vocabulary: ids, messages and their headers, barrier
//! kinds, the application class and the engine's error type.
//!
//! This is the bottom of the engine (above only the sans-IO `protocol` and
//! the `sync` shim): every other layer imports it, and it imports nothing of
//! theirs. A type belongs here when two layers that must not know each other
//! both name it (a scheduling policy and the metrics both say `AppClass`; the
//! shards, the journal and the client API all say `Message`, `Barrier` and
//! `EngineError`).

mod class;
mod error;
pub mod hash;
mod message;

pub use class::AppClass;
#[cfg(feature = "runtime")]
pub(crate) use error::panic_message;
#[cfg(feature = "runtime")]
pub use error::StorageFailure;
pub use error::{EngineError, Result};
pub use message::{
    key_hash, ActorId, AnyBox, AppId, Barrier, BarrierKind, Batch, BatchValue, Header, Kind,
    Message, OperatorId, Payload, Seqs, SeqsBuilder,
};
