//! The crate's one error type, [`StorageError`].
//!
//! Every variant names the file it is about. Variants that describe damage to
//! a segment (`Truncated`, `Checksum`, `Invalid`) also carry `offset`: the
//! byte where the damaged structure *starts* (0 for the segment header, the
//! record's offset for a record). That offset is therefore also the length of
//! the segment's valid prefix, which is what recovery keeps. `Incomplete` and
//! `LogDamaged` carry an offset too; errors about a whole folder (an ingress
//! log's, a checkpoint folder's) name the folder.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What went wrong in the storage layer, and in which file, at which byte.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A checkpoint asked for by epoch is not in the manifest.
    #[error("{path}: checkpoint {epoch} is not listed", path = path.display())]
    NotListed {
        /// The checkpoint folder's `MANIFEST`.
        path: PathBuf,
        /// The epoch asked for.
        epoch: u64,
    },

    /// A system call (open, mmap, an io_uring write or fdatasync) failed.
    #[error("{path}: {op} failed: {source}", path = path.display())]
    Io {
        /// The file or folder the call was on.
        path: PathBuf,
        /// The operation, e.g. "create", "write", "fdatasync".
        op: &'static str,
        /// The error the call returned.
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
        /// The segment file.
        path: PathBuf,
        /// Byte where the cut structure starts: the length of the valid prefix.
        offset: u64,
        /// The part that runs past the end: the segment header, or the
        /// record's header or payload.
        region: Region,
        /// Length of the file, in bytes.
        file_len: u64,
    },

    /// A checksum does not match: the bytes of `region` (of the structure at
    /// `offset`) were corrupted or never fully written.
    #[error("{path}: checksum mismatch in the {region} at byte {offset}", path = path.display())]
    Checksum {
        /// The segment file.
        path: PathBuf,
        /// Byte where the damaged structure starts: the length of the valid
        /// prefix.
        offset: u64,
        /// The part whose checksum failed: the segment header, or the
        /// record's header or payload (with its padding).
        region: Region,
    },

    /// The file does not start with the segment magic: not a segment file.
    #[error("{path}: not a segment file (magic {found:02x?})", path = path.display())]
    BadMagic {
        /// The file opened as a segment.
        path: PathBuf,
        /// The file's first 8 bytes (all of it, if shorter).
        found: Vec<u8>,
    },

    /// The segment was written in a format version this build cannot read.
    #[error(
        "{path}: unsupported segment format version {found} (this build reads version {expected})",
        path = path.display()
    )]
    UnsupportedVersion {
        /// The segment file.
        path: PathBuf,
        /// The version in the file's header.
        found: u16,
        /// The version this build reads, [`crate::FORMAT_VERSION`].
        expected: u16,
    },

    /// The bytes at `offset` pass their checksum but do not form what they
    /// must: a reserved field is set, a length is over the limit, or the
    /// payload is not a valid archived value of the segment's type (bytecheck).
    #[error("{path}: invalid record at byte {offset}: {reason}", path = path.display())]
    Invalid {
        /// The segment file.
        path: PathBuf,
        /// Byte where the invalid structure starts: 0 for the segment header,
        /// else the record's offset (for a checkpoint longer than the manifest
        /// recorded, the recorded end).
        offset: u64,
        /// What is wrong, for a person: the field, what it holds, what was
        /// expected.
        reason: String,
    },

    /// An append was refused: its payload is over [`crate::MAX_RECORD_LEN`],
    /// or an operator's checkpoint state would take more than `u32::MAX`
    /// parts.
    #[error("{path}: record of {len} bytes is over the limit of {max} bytes", path = path.display())]
    RecordTooLarge {
        /// The segment appended to.
        path: PathBuf,
        /// Length of the refused payload (or state), in bytes.
        len: usize,
        /// The limit, in bytes: [`crate::MAX_RECORD_LEN`], or for state the
        /// part length times `u32::MAX`.
        max: usize,
    },

    /// rkyv could not serialize the value to append.
    #[error("{path}: cannot serialize record: {reason}", path = path.display())]
    Serialize {
        /// The segment appended to.
        path: PathBuf,
        /// rkyv's error message.
        reason: String,
    },

    /// No validated record starts at `offset` in this segment.
    #[error("{path}: no record starts at byte {offset}", path = path.display())]
    NoRecord {
        /// The segment file.
        path: PathBuf,
        /// The byte offset asked for.
        offset: u64,
    },

    /// An earlier write or sync of this writer failed; what reached the file
    /// is unknown (after a failed fdatasync the kernel may have dropped the
    /// dirty pages), so the writer refuses further work. The segment must be
    /// recovered from its valid prefix.
    #[error("{path}: writer unusable after an earlier I/O error", path = path.display())]
    Poisoned {
        /// The segment whose write or sync failed.
        path: PathBuf,
    },

    /// Every record of the file passes its checks, but the file ends before
    /// what was committed to it is complete: the structure expected at
    /// `offset` is missing (a checkpoint without its seal record, a manifest
    /// without its record, a file shorter than the manifest recorded).
    #[error("{path}: incomplete at byte {offset}: {reason}", path = path.display())]
    Incomplete {
        /// The file (a checkpoint, the manifest, a log segment).
        path: PathBuf,
        /// Byte where the missing structure should start: the end of the
        /// valid records, or of a file shorter than recorded.
        offset: u64,
        /// What is missing, for a person.
        reason: String,
    },

    /// The ingress log's segments do not follow each other: the segment at
    /// `path` starts at seq `found`, but the one before it, `previous`, ends
    /// at seq `expected`. Acknowledged records are missing (a gap, e.g. a
    /// deleted segment) or a segment is duplicated (an overlap).
    #[error(
        "{path}: log sequence break: this segment starts at seq {found}, but {previous} ends at seq {expected}",
        path = path.display(),
        previous = previous.display()
    )]
    SequenceGap {
        /// The later segment.
        path: PathBuf,
        /// The first seq of `path`, from its name.
        found: u64,
        /// The segment before `path`.
        previous: PathBuf,
        /// The seq `previous` ends at: its first seq plus its valid records.
        expected: u64,
    },

    /// Damage inside the ingress log where it cannot be a crash's torn
    /// tail: the segment at `path` is damaged at byte `offset`, so its
    /// records from seq `lost_from` on are unreadable, but the next segment,
    /// `next`, starts at seq `next_first` (> `lost_from`): acknowledged
    /// records were there. `damage` is what the segment scan found.
    #[error(
        "{path}: log damaged at byte {offset}: records from seq {lost_from} on are unreadable, \
         but the next segment {next} starts at seq {next_first}: {damage}",
        path = path.display(),
        next = next.display()
    )]
    LogDamaged {
        /// The damaged segment.
        path: PathBuf,
        /// Byte where the damage starts: the length of `path`'s valid prefix.
        offset: u64,
        /// The first unreadable seq: the end of `path`'s valid records.
        lost_from: u64,
        /// The segment after `path`.
        next: PathBuf,
        /// The first seq of `next`, from its name.
        next_first: u64,
        /// The damage, as the scan of `path` reported it.
        #[source]
        damage: Box<StorageError>,
    },

    /// A replay asked for records the log (in folder `path`) does not
    /// hold: `from` is below `first`, the first seq still kept (truncated
    /// away by compaction), or past `end`, the end of the durable records.
    #[error(
        "{path}: cannot replay from seq {from}: the log keeps durable records {first}..{end}",
        path = path.display()
    )]
    ReplayOutOfRange {
        /// The log's folder.
        path: PathBuf,
        /// The seq the replay was to start at.
        from: u64,
        /// The first seq the log keeps.
        first: u64,
        /// One past the last durable seq, [`crate::IngressLog::durable_seq`].
        end: u64,
    },

    /// A checkpoint was begun or committed with an epoch that is not newer
    /// than `newest`, an epoch already listed in (or begun for) its
    /// checkpoint folder.
    #[error(
        "{path}: checkpoint epoch {epoch} is not newer than epoch {newest}",
        path = path.display()
    )]
    StaleEpoch {
        /// The checkpoint folder (from `begin`), or the checkpoint's segment
        /// (from `commit`).
        path: PathBuf,
        /// The epoch refused.
        epoch: u64,
        /// For `begin`, the newest epoch listed, found on disk at open, or
        /// begun; for `commit`, the newest committed.
        newest: u64,
    },

    /// Operator `op` was given state twice for the checkpoint at `path`.
    #[error("{path}: operator {op} already has state in this checkpoint", path = path.display())]
    DuplicateState {
        /// The checkpoint's segment.
        path: PathBuf,
        /// The operator's id.
        op: u16,
    },

    /// Source `source_id` was given two resume points for the checkpoint at `path`.
    #[error("{path}: source {source_id} has more than one resume point", path = path.display())]
    DuplicateSource {
        /// The checkpoint's segment.
        path: PathBuf,
        /// The source's id.
        source_id: u16,
    },

    /// The checkpoint folder's `MANIFEST` (at `path`) is missing, but
    /// checkpoint segments lie beside it. A folder gets its (empty) manifest
    /// before its first checkpoint segment is written, so this is not a
    /// crash's leftover; which segment is valid is not guessed.
    #[error(
        "{path}: missing, but {n} checkpoint segment(s) exist beside it ({found:?}); refusing to guess which is valid",
        path = path.display(),
        n = found.len()
    )]
    ManifestMissing {
        /// Where the manifest should be: the folder's `MANIFEST`.
        path: PathBuf,
        /// The checkpoint segments in the folder, ascending by epoch.
        found: Vec<PathBuf>,
    },

    /// The manifest at `path` lists checkpoints, but none of them is
    /// complete and valid; `skipped` says why, newest first.
    #[error(
        "{path}: none of the {n} listed checkpoints is valid: {why}",
        path = path.display(),
        n = skipped.len(),
        why = skipped.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    NoValidCheckpoint {
        /// The checkpoint folder's `MANIFEST`.
        path: PathBuf,
        /// Why each listed checkpoint was rejected, one error each, newest
        /// first.
        skipped: Vec<StorageError>,
    },
}

impl StorageError {
    /// The byte offset this error is about, for damage and lookup errors.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Self::Truncated { offset, .. }
            | Self::Checksum { offset, .. }
            | Self::Invalid { offset, .. }
            | Self::NoRecord { offset, .. }
            | Self::Incomplete { offset, .. }
            | Self::LogDamaged { offset, .. } => Some(*offset),
            Self::BadMagic { .. } | Self::UnsupportedVersion { .. } => Some(0),
            Self::Io { .. }
            | Self::RecordTooLarge { .. }
            | Self::Serialize { .. }
            | Self::Poisoned { .. }
            | Self::SequenceGap { .. }
            | Self::ReplayOutOfRange { .. }
            | Self::StaleEpoch { .. }
            | Self::DuplicateState { .. }
            | Self::DuplicateSource { .. }
            | Self::ManifestMissing { .. }
            | Self::NoValidCheckpoint { .. }
            | Self::NotListed { .. } => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Which structure of a segment an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The 32-byte segment header.
    SegmentHeader,
    /// A record's 16-byte header (length, checksums).
    RecordHeader,
    /// A record's payload and its padding.
    Payload,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Region::SegmentHeader => "segment header",
            Region::RecordHeader => "record header",
            Region::Payload => "record payload",
        })
    }
}
