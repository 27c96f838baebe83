//! The crate's one error type, [`StorageError`].
//!
//! Every variant names the file it is about. Variants that describe damage to
//! a segment (`Truncated`, `Checksum`, `Invalid`) also carry `offset`: the
//! byte where the damaged structure *starts* (0 for the segment header, the
//! record's offset for a record). That offset is therefore also the length of
//! the segment's valid prefix, which is what recovery keeps.

use std::io;
use std::path::PathBuf;

use crate::format::Region;

/// What went wrong in the storage layer, and in which file, at which byte.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A system call (open, mmap, an io_uring write or fdatasync) failed.
    #[error("{path}: {op} failed: {source}", path = path.display())]
    Io {
        path: PathBuf,
        /// The operation, e.g. "create", "write", "fdatasync".
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// The file ends inside the structure starting at `offset` (the segment
    /// header when `offset` is 0, else a record): a torn write.
    #[error(
        "{path}: truncated: the {region} at byte {offset} runs past the end of the file ({file_len} bytes)",
        path = path.display()
    )]
    Truncated {
        path: PathBuf,
        offset: u64,
        region: Region,
        file_len: u64,
    },

    /// A checksum does not match: the bytes of `region` (of the structure at
    /// `offset`) were corrupted or never fully written.
    #[error("{path}: checksum mismatch in the {region} at byte {offset}", path = path.display())]
    Checksum {
        path: PathBuf,
        offset: u64,
        region: Region,
    },

    /// The file does not start with the segment magic: not a segment file.
    #[error("{path}: not a segment file (magic {found:02x?})", path = path.display())]
    BadMagic { path: PathBuf, found: Vec<u8> },

    /// The segment was written in a format version this build cannot read.
    #[error(
        "{path}: unsupported segment format version {found} (this build reads version {expected})",
        path = path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u16,
        expected: u16,
    },

    /// The bytes at `offset` pass their checksum but do not form what they
    /// must: a reserved field is set, a length is over the limit, or the
    /// payload is not a valid archived value of the segment's type (bytecheck).
    #[error("{path}: invalid record at byte {offset}: {reason}", path = path.display())]
    Invalid {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// An append was refused: its payload is over [`crate::MAX_RECORD_LEN`].
    #[error("{path}: record of {len} bytes is over the limit of {max} bytes", path = path.display())]
    RecordTooLarge {
        path: PathBuf,
        len: usize,
        max: usize,
    },

    /// rkyv could not serialize the value to append.
    #[error("{path}: cannot serialize record: {reason}", path = path.display())]
    Serialize { path: PathBuf, reason: String },

    /// No validated record starts at `offset` in this segment.
    #[error("{path}: no record starts at byte {offset}", path = path.display())]
    NoRecord { path: PathBuf, offset: u64 },

    /// An earlier write or sync of this writer failed; what reached the file
    /// is unknown (after a failed fdatasync the kernel may have dropped the
    /// dirty pages), so the writer refuses further work. The segment must be
    /// recovered from its valid prefix.
    #[error("{path}: writer unusable after an earlier I/O error", path = path.display())]
    Poisoned { path: PathBuf },
}

impl StorageError {
    /// The byte offset this error is about, for damage and lookup errors.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Self::Truncated { offset, .. }
            | Self::Checksum { offset, .. }
            | Self::Invalid { offset, .. }
            | Self::NoRecord { offset, .. } => Some(*offset),
            Self::BadMagic { .. } | Self::UnsupportedVersion { .. } => Some(0),
            Self::Io { .. }
            | Self::RecordTooLarge { .. }
            | Self::Serialize { .. }
            | Self::Poisoned { .. } => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
