//! Dirigo's storage layer.
//!
//! What it provides: **segment files**, append-only files of rkyv-archived
//! records of one type, behind a versioned header, each record framed with
//! its length and CRC-32C checksums and padded so its payload is 16-aligned
//! (the layout is documented byte by byte in [`mod@format`]); and, built
//! on them, an app's **ingress logs** and **checkpoints**.
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
//! On top of segments:
//!
//! - [`inspect`]: read-only reports of segments, checkpoint folders and
//!   logs (framing and checksums, what each checkpoint lists), for tools.
//!
//! - [`IngressLog`]: the append-only log of one source, a folder of
//!   segments `log-<first seq>.seg`; records get implicit sequence numbers,
//!   appends are group-committed (one fdatasync per batch), replay hands out
//!   `&Archived<R>` zero-copy, compaction deletes whole old segments. Opening
//!   recovers: a torn tail is tolerated only where a crash can have left it,
//!   any other damage or a gap in the seqs is an error naming file and byte.
//! - [`Checkpoints`] / [`CheckpointWriter`] / [`Checkpoint`]: an app's
//!   checkpoints, one segment `ckpt-<epoch>.seg` each (operators' state
//!   bytes, split into parts if large, closed by a seal record), committed by
//!   atomically replacing the `MANIFEST` (write `MANIFEST.tmp`, fdatasync,
//!   rename, fsync the folder). Opening returns the newest complete, valid
//!   checkpoint, falling back to the previous one (and saying why) if the
//!   newest is damaged; a corrupt manifest is an error, never a guess.
//!
//! ```
//! use dirigo_storage::{Checkpoints, IngressLog};
//!
//! # let dir = tempfile::tempdir()?;
//! let app = dir.path().join("app");
//! let mut log = IngressLog::<u64>::open(app.join("log-0"), 64 << 20)?;
//! log.append(&7)?;
//! log.append(&8)?;
//! assert_eq!(log.commit()?, 2); // seqs 0 and 1 are durable
//!
//! let (mut checkpoints, newest) = Checkpoints::open(&app)?;
//! assert!(newest.is_none());
//! let mut w = checkpoints.begin(1)?;
//! w.put(0, b"operator 0's state")?;
//! checkpoints.commit(w, &[(0, 1)])?; // source 0 resumes at seq 1
//!
//! let (_, newest) = Checkpoints::open(&app)?;
//! let cp = newest.expect("committed");
//! assert_eq!(cp.state(0).as_deref(), Some(&b"operator 0's state"[..]));
//! let mut replayed = Vec::new();
//! log.replay(cp.sources()[0].1, |seq, v| Ok(replayed.push((seq, v.to_native()))))?;
//! assert_eq!(replayed, [(1, 8)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What is made durable, and when (every sync goes through one seam,
//! [`disk`], which a test can watch to build what a power loss would leave,
//! or make fail):
//!
//! - a segment's records: at [`SegmentWriter::sync`] (fdatasync; the first
//!   one also fsyncs the folder, for the file's entry); the log's group
//!   commit and a checkpoint's seal call it;
//! - a log segment before the next one is created (a rotation), and the
//!   last segment found at [`IngressLog::open`];
//! - the `MANIFEST`: written and synced as `MANIFEST.tmp`, renamed, folder
//!   fsynced; deletions (compaction, leftovers): folder fsynced after each
//!   log segment, once after a checkpoint's;
//! - a folder: at [`create_dir_all`] (the log's and the checkpoints' `open`
//!   call it), fsynced with its parent.
//!
//! Crate invariant (what makes zero-copy reads sound): **a segment file's
//! bytes are never changed in place.** The only writer is [`SegmentWriter`],
//! which creates the file and only ever writes at its end; a map of a segment
//! therefore keeps seeing the bytes it validated. Recovery never cuts a
//! damaged tail off: the log leaves it behind the valid prefix and appends
//! to a new segment. Compaction only deletes whole files, which leaves any
//! live map of them intact (the inode lives until it is unmapped). Whatever
//! would one day truncate a segment must do so only when no map of that file
//! is alive.

mod checkpoint;
pub mod disk;
mod error;
pub mod format;
pub mod inspect;
mod log;
mod manifest;
mod reader;
mod uring;
mod writer;

pub use checkpoint::{
    Checkpoint, CheckpointWriter, Checkpoints, CHECKPOINTS_KEPT, MAX_STATE_CHUNK_LEN,
    STATE_CHUNK_LEN,
};
pub use disk::create_dir_all;
pub use error::{Result, StorageError};
pub use format::{
    Region, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_RECORD_LEN, MAX_SEGMENT_NUMBER, RECORD_ALIGN,
};
pub use log::IngressLog;
pub use manifest::{MANIFEST, MANIFEST_TMP};
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
