//! The errors of the wire protocol: what was wrong with a connection's
//! bytes or a frame's payload, named so that a log line or an error frame
//! says it.

use thiserror::Error;

/// Why a byte stream is not a stream of frames.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The first bytes of a frame are not `DG`: not this protocol.
    #[error("not a Dirigo frame: it starts with {found:02x?}, not \"DG\"")]
    BadMagic {
        /// The two bytes found.
        found: [u8; 2],
    },
    /// A frame kind this version does not know.
    #[error("unknown frame kind {kind}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// Flags this version does not know (none are defined).
    #[error("unknown frame flags {flags:#04x}")]
    BadFlags {
        /// The flags byte.
        flags: u8,
    },
    /// A payload over the limit.
    #[error("a frame of {len} bytes is over the limit of {max}")]
    Oversized {
        /// The length announced (or given).
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("the connection ended inside a frame ({have} bytes of it)")]
    Truncated {
        /// Bytes of the unfinished frame.
        have: usize,
    },
    /// A frame was refused earlier: the stream cannot be trusted after it.
    #[error("the stream already had a bad frame")]
    AfterError,
}

/// Why a frame's payload is not the message it should be.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The frame is of another kind than expected here.
    #[error("expected a {expected:?} frame, got {got:?}")]
    UnexpectedKind {
        /// What the protocol expects at this point.
        expected: crate::kind::Kind,
        /// What came.
        got: crate::kind::Kind,
    },
    /// The payload failed validation (bytecheck) or is not a `what`.
    #[error("invalid {what} payload: {reason}")]
    Invalid {
        /// The message type expected.
        what: &'static str,
        /// What the validator said.
        reason: String,
    },
    /// A message could not be archived.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// The message type.
        what: &'static str,
        /// What rkyv said.
        reason: String,
    },
    /// The frame layer refused it.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Why a value does not decode (or encode).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// Its binary form is not a valid archive of the type.
    #[error("not a valid binary value: {0}")]
    Binary(String),
    /// Its JSON form is not the type.
    #[error("not a valid JSON value: {0}")]
    Json(String),
}

/// Why a deploy's parameters were refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{path}: {reason}")]
pub struct ParamError {
    /// Where in the parameters (`params.field`).
    pub path: String,
    /// What is wrong there.
    pub reason: String,
}

/// Why a port refused an ingest or a subscription.
#[derive(Debug, Error)]
pub enum PortError {
    /// Event `index` of the batch does not decode; nothing was sent.
    #[error("event {index} does not decode: {error}")]
    Decode {
        /// Its index in the batch.
        index: usize,
        /// Why.
        error: CodecError,
    },
    /// The engine refused the batch; nothing of it was accepted.
    #[error(transparent)]
    Engine(#[from] dirigo_engine::EngineError),
    /// The sink has its most subscribers.
    #[error("the sink has its limit of {max} subscribers")]
    Subscribers {
        /// The limit.
        max: usize,
    },
}

/// Why the catalog did not build an app.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CatalogError {
    /// No kind of that name.
    #[error("no app kind {0:?} in the catalog")]
    UnknownKind(String),
    /// A kind of that name is registered already.
    #[error("the catalog has a kind {0:?} already")]
    Duplicate(String),
    /// A kind's schema uses what the validator does not know.
    #[error("kind {kind:?}: {reason}")]
    BadSchema {
        /// The kind.
        kind: String,
        /// What is wrong.
        reason: String,
    },
    /// The parameters do not fit the schema.
    #[error("invalid parameters: {0}")]
    Params(#[from] ParamError),
    /// The factory refused (a combination the schema cannot say, such as
    /// a durable app of a kind that cannot be durable).
    #[error("kind {kind:?}: {reason}")]
    Factory {
        /// The kind.
        kind: String,
        /// Why.
        reason: String,
    },
}

/// Why a server did not start, or stopped.
#[derive(Debug, Error)]
pub enum NetError {
    /// A limit or setting out of its bounds.
    #[error("invalid server config: {0}")]
    Config(String),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The engine refused (spawning the listeners).
    #[error(transparent)]
    Engine(#[from] dirigo_engine::EngineError),
}
