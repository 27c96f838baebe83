//! Dirigo's storage layer.
//!
//! What it provides so far: **segment files**, append-only files of
//! rkyv-archived records of one type, behind a versioned header, each record
//! framed with its length and CRC-32C checksums and padded so its payload is
//! 16-aligned (the layout is documented byte by byte in [`format`]).
//!
//! - [`SegmentWriter`] creates a segment and appends records (values of a
//!   [`Record`] type, or raw archived bytes), batching them and writing each
//!   batch with one io_uring write; [`SegmentWriter::sync`] makes them durable
//!   with fdatasync through io_uring. Writes are buffered, not O_DIRECT,
//!   because segments are read through mmap, i.e. through the page cache.
//! - [`Segment`] maps a segment with memmap2, validates it once at open (the
//!   header, every record's checksums, and every payload with bytecheck as an
//!   archived `T`), then hands out `&Archived<T>` zero-copy, by offset or in
//!   file order. [`Segment::recover`] keeps the valid prefix of a segment with
//!   a torn or corrupt tail and reports where and why it stops: what crash
//!   recovery will use.
//! - [`StorageError`]: every failure names the file, and damage names the
//!   byte offset of the damaged structure.
//!
//! ```
//! use dirigo_storage::{rkyv, Segment, SegmentWriter};
//!
//! #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
//! struct Count {
//!     word: String,
//!     n: u64,
//! }
//!
//! # let dir = tempfile::tempdir()?;
//! let path = dir.path().join("counts-000001.seg");
//! let mut w = SegmentWriter::<Count>::create(&path, 1)?;
//! let at = w.append(&Count { word: "hello".into(), n: 2 })?;
//! w.sync()?; // durable from here on
//!
//! let seg = Segment::<Count>::open(&path)?; // mapped and validated once
//! let count = seg.get(at)?; // &ArchivedCount, zero-copy
//! assert_eq!((count.word.as_str(), count.n.to_native()), ("hello", 2));
//!
//! // After a crash: the records before the first damaged byte.
//! let recovered = Segment::<Count>::recover(&path)?;
//! assert!(recovered.damage.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Still to come (not here yet): checkpoints, the manifest, the ingress log,
//! recovery on top of them, and compaction.
//!
//! Crate invariant (what makes zero-copy reads sound): **a segment file's
//! bytes are never changed in place.** The only writer is [`SegmentWriter`],
//! which creates the file and only ever writes at its end; a map of a segment
//! therefore keeps seeing the bytes it validated. Whatever later cuts a
//! damaged tail off (recovery) must do so only when no map of that file is
//! alive.

mod error;
pub mod format;
mod reader;
mod uring;
mod writer;

pub use error::{Result, StorageError};
pub use format::{Region, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_RECORD_LEN, RECORD_ALIGN};
pub use reader::{Records, Recovered, Segment};
pub use writer::{SegmentWriter, FLUSH_AT};

/// The rkyv this crate archives with; use it to derive record types, so
/// that versions match.
pub use rkyv;

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

/// A type that can be stored in segments: rkyv can archive it, and
/// bytecheck can validate its archived form. Implemented for every such type;
/// derive `rkyv::Archive` and `rkyv::Serialize` to get it.
pub trait Record:
    rkyv::Archive<Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>>
    + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
}

impl<T> Record for T where
    T: rkyv::Archive<Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>>
        + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
}
