//! The engine's error type: every failure a caller can see, saying what went
//! wrong and with what. A failure of the storage below keeps its cause
//! (`EngineError::Storage`'s source is the `StorageError`, with its file and
//! offset), so a caller can tell damage from I/O.

use super::message::AppId;

/// Every failure the engine reports to a caller.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An application was refused: at build (its graph, or what a durable
    /// app requires of its operators) or at deploy (its name as a folder).
    #[error("invalid application {app:?}: {reason}")]
    InvalidApp {
        /// The application's name.
        app: String,
        /// What is wrong (at build, every problem found, joined by `; `).
        reason: String,
    },
    /// Deploy of an application whose name is already deployed on the node.
    #[error("an application named {0:?} is already deployed")]
    AppExists(String),
    /// No application of this name is deployed on the node.
    #[error("unknown application {0:?}")]
    UnknownApp(String),
    /// A handle's application no longer takes commands: it was undeployed,
    /// or its deploy failed.
    #[error("application {0:?} is not deployed (undeployed or never deployed)")]
    NotDeployed(AppId),
    /// The application has no source of this name (or, from ingress, of
    /// this operator index, named `#index`).
    #[error("application {app:?} has no source named {source_name:?}")]
    UnknownSource {
        /// The application's name.
        app: String,
        /// The source asked for.
        source_name: String,
    },
    /// A watermark for a source that is not on event time
    /// (`AppBuilder::event_time`), or of a durable app (its watermarks
    /// come from its logged events' times; client ones are not logged).
    #[error(
        "source #{source_op} of {app:?} takes no client watermarks: not on event time, or durable"
    )]
    NotOnEventTime {
        /// The application's name.
        app: String,
        /// The source's operator index.
        source_op: u16,
    },
    /// The application has no operator (function or sink) of this name.
    #[error("application {app:?} has no operator named {op:?}")]
    UnknownOperator {
        /// The application's name.
        app: String,
        /// The operator asked for.
        op: String,
    },
    /// A source handle was asked for with an event type that is not the
    /// source's.
    #[error("source {source_name:?} of {app:?} takes {expected}, not {got}")]
    SourceType {
        /// The application's name.
        app: String,
        /// The source's name.
        source_name: String,
        /// The source's event type, as `std::any::type_name` spells it.
        expected: &'static str,
        /// The type the caller asked for.
        got: &'static str,
    },
    /// A lease was asked for an operator of `Sequential` strategy, which
    /// runs on its home shard only.
    #[error("operator {op:?} of {app:?} is sequential and cannot be leased")]
    NotLeasable {
        /// The application's name.
        app: String,
        /// The operator's name.
        op: String,
    },
    /// A shard index past the node's last shard.
    #[error("shard {shard} is out of range (node has {shards} shards)")]
    NoSuchShard {
        /// The index asked for.
        shard: usize,
        /// How many shards the node runs.
        shards: usize,
    },
    /// A shard's command inbox is full; nothing was taken, the caller may
    /// retry.
    #[error("shard {shard} inbox is full ({capacity} commands): retry later")]
    Backpressure {
        /// The shard whose inbox is full.
        shard: usize,
        /// The inbox's capacity, in commands (`NodeConfig::inbox_capacity`).
        capacity: usize,
    },
    /// The app already holds its limit of messages in memory (queued at
    /// its actors, in rings, in inboxes): nothing was taken, the caller may
    /// retry. This is how a slow operator pushes back on its clients
    /// wherever it runs (`NodeConfig::max_in_flight`).
    #[error("app {app:?} holds {in_flight} messages, its limit is {limit}: retry later")]
    AppFull {
        /// The application's name.
        app: String,
        /// Messages of the app in memory when it refused (an upper bound).
        in_flight: u64,
        /// The limit (`NodeConfig::max_in_flight`).
        limit: u64,
    },
    /// The app failed and takes no more input; undeploy it (a durable app
    /// recovers from its checkpoint and log on the next deploy).
    #[error("app {app:?} failed: {cause}")]
    AppFailed {
        /// The application's name.
        app: String,
        /// What failed it (an operator's panic, a damaged spilled state, a
        /// shard that died).
        cause: String,
    },
    /// A shard's thread died (a bug in the engine: it panicked); every app
    /// with an operator or source homed there has failed.
    #[error("shard {shard} died: {cause}")]
    ShardDied {
        /// The shard's index.
        shard: usize,
        /// Its panic's message.
        cause: String,
    },
    /// A batch of more events than one command may carry.
    #[error("batch of {len} events exceeds the limit of {max}")]
    BatchTooLarge {
        /// Events in the batch.
        len: usize,
        /// The limit, in events (`NodeConfig::max_batch`).
        max: usize,
    },
    /// The node has stopped (or is stopping): no command is taken or
    /// answered.
    #[error("the node is stopped")]
    Stopped,
    /// The node did not answer, or did not become quiescent, within this
    /// time.
    #[error("timed out after {0:?} waiting for the node")]
    Timeout(std::time::Duration),
    /// A `NodeConfig` value is out of range; the text says which, and its
    /// bounds.
    #[error("invalid node configuration: {0}")]
    Config(String),
    /// A shard's thread or executor could not be started.
    #[error("shard {shard} failed to start: {reason}")]
    ShardStart {
        /// The shard's index.
        shard: usize,
        /// The executor's error, as text.
        reason: String,
    },
    /// An event of a durable app whose archived form is too large for the
    /// ingress log.
    #[error("an event of {len} bytes (archived) exceeds the limit of {max}")]
    EventTooLarge {
        /// Size of the archived event, in bytes.
        len: usize,
        /// The limit, in bytes (`MAX_EVENT_BYTES`).
        max: usize,
    },
    /// A durable application was deployed on a node without a `data_dir`.
    #[error("application {0:?} is durable, but the node has no data_dir")]
    NoDataDir(String),
    /// A durability failure that is not the storage's: a lock held, a DAG
    /// that does not match its checkpoint, bytes that do not decode, a
    /// checkpoint timed out, or a durable-only call on an app that is not.
    #[error("durability of {app:?}: {reason}")]
    Durability {
        /// The application's name.
        app: String,
        /// What failed, as text.
        reason: String,
    },
    /// The storage of a durable app failed; its source is the
    /// `StorageError`, which says how (damage or I/O, with the file and
    /// offset). Boxed: the storage error is large and failures are rare.
    #[cfg(feature = "runtime")]
    #[error(transparent)]
    Storage(Box<StorageFailure>),
    /// A durable send whose outcome is unknown: the app's log failed while
    /// the request was being written, so some or all of it may be in the
    /// log and be applied by the next deploy. Its events are not handed
    /// back: resending them could apply them twice. The source is the
    /// storage failure.
    /// Displayed as the failure, whose `what` says the outcome is unknown;
    /// its `source()` is the `StorageError`, as for `Storage`.
    #[cfg(feature = "runtime")]
    #[error(transparent)]
    OutcomeUnknown(Box<StorageFailure>),
    /// A durable send that is in the ingress log (committed: it will be
    /// applied, now or by recovery) but was not yet handed to its shard
    /// when the send's timeout passed. Do not send it again.
    #[error("app {app:?}: the events are logged but not yet applied")]
    LoggedNotApplied {
        /// The application's name.
        app: String,
    },
    /// An I/O failure outside the storage layer (at node start: the mesh's
    /// doorbell sockets).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A storage failure of a durable app, with its cause: `source()` is the
/// `StorageError`. Shared (`Arc`): after its ingress log failed, a journal
/// refuses every later request with the same failure.
#[cfg(feature = "runtime")]
#[derive(Debug, Clone)]
pub struct StorageFailure {
    /// The application's name.
    pub app: String,
    /// What the engine was doing (opening the log, committing checkpoint 7).
    pub what: String,
    /// The storage's error, with its file and offset.
    pub source: std::sync::Arc<dirigo_storage::StorageError>,
}

#[cfg(feature = "runtime")]
impl std::fmt::Display for StorageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "durability of {:?}: {}: {}",
            self.app, self.what, self.source
        )
    }
}

/// By hand rather than derived: the source is the `StorageError` itself,
/// not the `Arc` around it, so a caller can downcast it.
#[cfg(feature = "runtime")]
impl std::error::Error for StorageFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The text of a panic's payload (`panic!` gives a `&str` or a `String`).
#[cfg(feature = "runtime")]
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
