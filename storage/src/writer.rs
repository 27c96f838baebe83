//! [`SegmentWriter`]: creates a segment file and appends records to it
//! through io_uring.
//!
//! Appends are framed (see `format`) into an in-memory batch; a batch is
//! handed to the kernel in one io_uring write when it reaches
//! [`FLUSH_AT`] bytes, on [`SegmentWriter::flush`], or on
//! [`SegmentWriter::sync`]. Writes are *buffered* (no O_DIRECT): segments are
//! read back through mmap, which reads the page cache that O_DIRECT would
//! bypass. Durability is `sync()`: fdatasync through io_uring, plus, the first
//! time, an fsync of the parent directory so the new file's entry survives a
//! crash too; both go through the [`disk`](crate::disk) seam, as does the
//! file's creation. A record is durable once a `sync()` that started after
//! its `append` returned `Ok`; nothing earlier may be acknowledged.
//!
//! Invariants: `written` (bytes the kernel accepted) and `written +
//! pending.len()` (the segment's length) are multiples of `RECORD_ALIGN`;
//! `synced <= written`; the file holds exactly the bytes of `pending`'s
//! predecessors, at their offsets. After any I/O error the writer is
//! poisoned: what reached the file (or the disk, after a failed fdatasync) is
//! unknown, so it refuses further work and the segment is left to recovery.
//!
//! One writer owns one file; it is not shared between threads. Dropping a
//! writer discards records not yet flushed; call `sync` (or `finish`) first.

use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rkyv::util::AlignedVec;

use crate::disk;
use crate::error::{Result, StorageError};
use crate::format::{self, SegmentHeader, HEADER_LEN, MAX_RECORD_LEN, RECORD_ALIGN};
use crate::uring::Uring;
use crate::Record;

/// A batch is written once it holds this many bytes.
pub const FLUSH_AT: usize = 256 << 10;

/// Appends records of type `T` to a new segment file.
pub struct SegmentWriter<T> {
    path: PathBuf,
    file: File,
    /// The directory holding the file, fsynced once to make its entry durable.
    dir: File,
    dir_path: PathBuf,
    dir_synced: bool,
    ring: Uring,
    id: u64,
    /// Framed records not yet handed to the kernel; they go at file offset `written`.
    pending: Vec<u8>,
    /// Bytes of the file the kernel has accepted (page cache).
    written: u64,
    /// Bytes of the file made durable by the last fdatasync.
    synced: u64,
    /// Reused serialization buffer (16-aligned, as rkyv expects).
    scratch: AlignedVec,
    poisoned: bool,
    _record: PhantomData<fn(&T)>,
}

impl<T> SegmentWriter<T> {
    /// Creates the segment file at `path` (which must not exist) for segment
    /// `id`. Nothing is written until the first flush.
    pub fn create(path: impl AsRef<Path>, id: u64) -> Result<Self> {
        let path = path.as_ref();
        let io = |op| {
            move |source| StorageError::Io {
                path: path.to_path_buf(),
                op,
                source,
            }
        };
        let file = disk::create_new(path).map_err(io("create"))?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = File::open(parent).map_err(io("open parent directory"))?;
        Self::with_file(path, file, (dir, parent), id)
    }

    /// A writer on an already open, empty `file` in the open folder `dir`
    /// (tests use /dev/full).
    fn with_file(path: &Path, file: File, dir: (File, &Path), id: u64) -> Result<Self> {
        let ring = Uring::new().map_err(|source| StorageError::Io {
            path: path.to_path_buf(),
            op: "io_uring setup",
            source,
        })?;
        let mut pending = Vec::with_capacity(FLUSH_AT);
        pending.extend_from_slice(&SegmentHeader { id }.encode());
        Ok(Self {
            path: path.to_path_buf(),
            file,
            dir: dir.0,
            dir_path: dir.1.to_path_buf(),
            dir_synced: false,
            ring,
            id,
            pending,
            written: 0,
            synced: 0,
            scratch: AlignedVec::new(),
            poisoned: false,
            _record: PhantomData,
        })
    }

    /// The segment's id, as written in its header.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The segment file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the segment with every appended record: the offset the next
    /// record will get.
    pub fn len(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// Whether no record was appended yet.
    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN as u64
    }

    /// Bytes of the segment known to be durable (the last `sync`).
    pub fn durable_len(&self) -> u64 {
        self.synced
    }

    /// Appends raw archived bytes: one rkyv-archived `T`, root at the end,
    /// as `rkyv::to_bytes` makes them (e.g. a record copied from another
    /// segment). They are not validated here; a reader validates every record
    /// when it opens the segment. Returns the record's offset.
    pub fn append_archived(&mut self, bytes: &[u8]) -> Result<u64> {
        self.usable()?;
        if bytes.len() > MAX_RECORD_LEN {
            return Err(StorageError::RecordTooLarge {
                path: self.path.clone(),
                len: bytes.len(),
                max: MAX_RECORD_LEN,
            });
        }
        let offset = self.len();
        debug_assert_eq!(offset % RECORD_ALIGN as u64, 0);
        format::encode_record(&mut self.pending, self.id, offset, bytes);
        debug_assert_eq!(self.len(), offset + format::record_span(bytes.len()) as u64);
        if self.pending.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(offset)
    }

    /// Hands every appended record to the kernel (one io_uring write). They
    /// are in the page cache, visible to readers, but not yet durable.
    pub fn flush(&mut self) -> Result<()> {
        self.usable()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let fd = self.file.as_raw_fd();
        if let Err(source) = self.ring.write_all_at(fd, &self.pending, self.written) {
            return Err(self.poison("write", source));
        }
        self.written += self.pending.len() as u64;
        debug_assert_eq!(self.written % RECORD_ALIGN as u64, 0);
        self.pending.clear();
        if self.pending.capacity() > 4 * FLUSH_AT {
            // A huge record grew the batch; do not keep that memory.
            self.pending.shrink_to(FLUSH_AT);
        }
        Ok(())
    }

    /// Makes every appended record durable: flush, then fdatasync through
    /// io_uring (and, the first time, fsync of the parent directory). Returns
    /// the durable length.
    pub fn sync(&mut self) -> Result<u64> {
        self.flush()?;
        let synced = disk::sync_file(&mut self.ring, &self.file, &self.path, self.written);
        if let Err(source) = synced {
            return Err(self.poison("fdatasync", source));
        }
        if !self.dir_synced {
            let synced = disk::sync_dir(&mut self.ring, &self.dir, &self.dir_path);
            if let Err(source) = synced {
                return Err(self.poison("fsync of parent directory", source));
            }
            self.dir_synced = true;
        }
        debug_assert!(self.synced <= self.written);
        self.synced = self.written;
        Ok(self.synced)
    }

    /// Syncs and closes the segment; returns its length.
    pub fn finish(mut self) -> Result<u64> {
        self.sync()
    }

    fn usable(&self) -> Result<()> {
        if self.poisoned {
            return Err(StorageError::Poisoned {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    fn poison(&mut self, op: &'static str, source: std::io::Error) -> StorageError {
        self.poisoned = true;
        StorageError::Io {
            path: self.path.clone(),
            op,
            source,
        }
    }
}

impl<T: Record> SegmentWriter<T> {
    /// Archives `value` with rkyv and appends it. Returns the record's offset
    /// (what `Segment::get` takes).
    pub fn append(&mut self, value: &T) -> Result<u64> {
        self.usable()?;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let scratch = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(value, scratch)
            .map_err(|e| StorageError::Serialize {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        let appended = self.append_archived(&scratch);
        self.scratch = scratch;
        if self.scratch.capacity() > FLUSH_AT {
            self.scratch = AlignedVec::new();
        }
        appended
    }
}

impl<T> std::fmt::Debug for SegmentWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("path", &self.path)
            .field("id", &self.id)
            .field("len", &self.len())
            .field("durable_len", &self.synced)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_the_framing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SegmentWriter::<u64>::create(dir.path().join("s"), 9).expect("create");
        assert!(w.is_empty());
        let a = w.append(&1).expect("append");
        let b = w.append(&2).expect("append");
        assert_eq!(a, HEADER_LEN as u64);
        assert_eq!(b, a + format::record_span(8) as u64);
        assert_eq!(w.durable_len(), 0);
        let len = w.sync().expect("sync");
        assert_eq!(len, w.len());
        assert_eq!(std::fs::metadata(w.path()).expect("stat").len(), len);
    }

    #[test]
    fn batches_are_flushed_when_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let mut w = SegmentWriter::<Vec<u8>>::create(&path, 1).expect("create");
        let big = vec![7u8; FLUSH_AT / 4];
        for _ in 0..5 {
            w.append(&big).expect("append");
        }
        let on_disk = std::fs::metadata(&path).expect("stat").len();
        assert!(
            on_disk > 0 && on_disk < w.len(),
            "one batch written, one pending"
        );
    }

    #[test]
    fn create_refuses_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        std::fs::write(&path, b"keep me").expect("write");
        let err = SegmentWriter::<u64>::create(&path, 1).expect_err("exists");
        assert!(
            matches!(err, StorageError::Io { op: "create", .. }),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"keep me");
    }

    #[test]
    fn oversized_record_is_refused_without_harm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SegmentWriter::<u8>::create(dir.path().join("s"), 1).expect("create");
        let too_big = vec![0u8; MAX_RECORD_LEN + 1];
        assert!(matches!(
            w.append_archived(&too_big),
            Err(StorageError::RecordTooLarge { len, .. }) if len == MAX_RECORD_LEN + 1
        ));
        assert!(w.is_empty());
        w.append(&3).expect("still usable");
    }

    #[test]
    fn an_io_error_poisons_the_writer() {
        // A machine without /dev/full fails here, visibly, rather than
        // passing without testing anything.
        let full = File::options()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full (Linux has it; this test needs it)");
        let dev = File::open("/dev").expect("/dev");
        let mut w = SegmentWriter::<u64>::with_file(
            Path::new("/dev/full"),
            full,
            (dev, Path::new("/dev")),
            1,
        )
        .expect("writer");
        w.append(&5).expect("buffered");
        let err = w.sync().expect_err("/dev/full is full");
        assert!(
            matches!(&err, StorageError::Io { op: "write", source, .. } if source.raw_os_error() == Some(28)),
            "{err}"
        );
        assert!(matches!(w.append(&6), Err(StorageError::Poisoned { .. })));
        assert!(matches!(w.sync(), Err(StorageError::Poisoned { .. })));
    }
}
