//! The engine's error type: every failure a caller can see, saying what went
//! wrong and with what. A failure of the storage below keeps its cause
//! (`EngineError::Storage`'s source is the `StorageError`, with its file and
//! offset), so a caller can tell damage from I/O.

use super::message::AppId;

/// Every failure the engine reports to a caller.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid application {app:?}: {reason}")]
    InvalidApp { app: String, reason: String },
    #[error("an application named {0:?} is already deployed")]
    AppExists(String),
    #[error("unknown application {0:?}")]
    UnknownApp(String),
    #[error("application {0:?} is not deployed (undeployed or never deployed)")]
    NotDeployed(AppId),
    #[error("application {app:?} has no source named {source_name:?}")]
    UnknownSource { app: String, source_name: String },
    #[error("application {app:?} has no operator named {op:?}")]
    UnknownOperator { app: String, op: String },
    #[error("source {source_name:?} of {app:?} takes {expected}, not {got}")]
    SourceType {
        app: String,
        source_name: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("operator {op:?} of {app:?} is sequential and cannot be leased")]
    NotLeasable { app: String, op: String },
    #[error("shard {shard} is out of range (node has {shards} shards)")]
    NoSuchShard { shard: usize, shards: usize },
    #[error("shard {shard} inbox is full ({capacity} commands): retry later")]
    Backpressure { shard: usize, capacity: usize },
    #[error("batch of {len} events exceeds the limit of {max}")]
    BatchTooLarge { len: usize, max: usize },
    #[error("the node is stopped")]
    Stopped,
    #[error("timed out after {0:?} waiting for the node")]
    Timeout(std::time::Duration),
    #[error("invalid node configuration: {0}")]
    Config(String),
    #[error("shard {shard} failed to start: {reason}")]
    ShardStart { shard: usize, reason: String },
    #[error("an event of {len} bytes (archived) exceeds the limit of {max}")]
    EventTooLarge { len: usize, max: usize },
    #[error("application {0:?} is durable, but the node has no data_dir")]
    NoDataDir(String),
    #[error("durability of {app:?}: {reason}")]
    Durability { app: String, reason: String },
    /// The storage of a durable app failed; the source says how (damage
    /// or I/O, with the file and offset).
    #[cfg(feature = "runtime")]
    #[error("durability of {app:?}: {what}: {source}")]
    Storage {
        app: String,
        /// What the engine was doing (opening the log, writing checkpoint 7).
        what: String,
        #[source]
        source: dirigo_storage::StorageError,
    },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
