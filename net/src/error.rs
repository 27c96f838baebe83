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
