//! A small blocking io_uring driver: positional write-all and fdatasync/fsync,
//! one operation in flight at a time.
//!
//! It exists so that segment writes go through io_uring (as the shards' own
//! I/O does) without pulling an executor into the storage crate. Each call
//! submits one SQE and waits for its CQE before returning, which is what
//! makes lending the kernel a borrowed buffer sound: the buffer outlives the
//! operation. Short writes are continued from where they stopped; a CQE with
//! a negative result is that errno as an `io::Error`.
//!
//! Its fdatasync and fsync are called only by the [`disk`](crate::disk)
//! seam, so that every sync of the crate can be watched there.
//!
//! Not done here (yet): batching several SQEs, registered buffers/files, or
//! driving the ring from a shard's reactor instead of blocking the thread.

use std::io;
use std::os::fd::RawFd;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// Entries of the ring. One operation is in flight at a time; a few spare.
const RING_ENTRIES: u32 = 4;
/// Largest single write submitted (Linux caps one write at 2 GiB - 4 KiB).
const MAX_WRITE: usize = 1 << 30;
/// Tag of the one operation in flight, checked on completion.
const OP_TAG: u64 = 0xd1_5e6;

pub(crate) struct Uring {
    ring: IoUring,
}

impl Uring {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            ring: IoUring::new(RING_ENTRIES)?,
        })
    }

    /// Writes all of `buf` to `fd` at file offset `offset`, continuing after
    /// short writes. A write that makes no progress is `WriteZero`.
    pub(crate) fn write_all_at(&mut self, fd: RawFd, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let rest = &buf[done..];
            let len = rest.len().min(MAX_WRITE);
            let len = u32::try_from(len).expect("MAX_WRITE fits in u32");
            let sqe = opcode::Write::new(types::Fd(fd), rest.as_ptr(), len)
                .offset(offset + done as u64)
                .build();
            // SAFETY: the SQE points at `rest` (`len` bytes, in bounds), which
            // is borrowed for this whole call; `complete` does not return
            // while the operation is still in flight, so the kernel never
            // reads the buffer after the borrow ends.
            let written = unsafe { self.complete(sqe) }?;
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "io_uring write made no progress",
                ));
            }
            debug_assert!(written as usize <= rest.len());
            done += written as usize;
        }
        Ok(())
    }

    /// fdatasync(2) through io_uring: the data written so far (and the
    /// metadata needed to read it back, such as the file size) is durable.
    pub(crate) fn fdatasync(&mut self, fd: RawFd) -> io::Result<()> {
        let sqe = opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        // SAFETY: an fsync SQE refers to no memory of ours.
        unsafe { self.complete(sqe) }.map(drop)
    }

    /// fsync(2) through io_uring; used on directories, to make a new entry durable.
    pub(crate) fn fsync(&mut self, fd: RawFd) -> io::Result<()> {
        let sqe = opcode::Fsync::new(types::Fd(fd)).build();
        // SAFETY: an fsync SQE refers to no memory of ours.
        unsafe { self.complete(sqe) }.map(drop)
    }

    /// Submits `sqe`, waits for its completion and returns its non-negative
    /// result, or the errno it carries.
    ///
    /// # Safety
    /// Every buffer `sqe` points at must stay valid until this returns, and
    /// the operation must only *read* our memory (a write, an fsync).
    ///
    /// This returns once the CQE has been reaped, with one exception: when
    /// `io_uring_enter` itself fails with an error that is not a retry hint.
    /// If the kernel had not taken the SQE yet, nothing is in flight. If it
    /// had (the wait failed for good after an earlier submit, not seen in
    /// practice), the operation may outlive the borrow; since it only reads
    /// our memory, the harm is confined to the file's contents, and the
    /// writer that called us poisons itself on any error.
    unsafe fn complete(&mut self, sqe: squeue::Entry) -> io::Result<u32> {
        debug_assert!(self.ring.completion().is_empty(), "one operation at a time");
        let sqe = sqe.user_data(OP_TAG);
        // SAFETY: the caller keeps the SQE's buffers valid until we return
        // (see above); the queue is empty, since the previous call reaped its
        // completion before returning.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if retry(&e) => continue,
                Err(e) => return Err(e),
            }
            if let Some(cqe) = self.ring.completion().next() {
                return result(&cqe);
            }
        }
    }
}

/// io_uring_enter errors that mean "try again": interrupted by a signal, or
/// the completion queue is momentarily full.
fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::ResourceBusy
    )
}

fn result(cqe: &cqueue::Entry) -> io::Result<u32> {
    debug_assert_eq!(cqe.user_data(), OP_TAG);
    let res = cqe.result();
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsRawFd;

    #[test]
    fn writes_at_offsets_and_syncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = File::create(&path).expect("create");
        let mut ring = Uring::new().expect("io_uring");
        ring.write_all_at(file.as_raw_fd(), b"world", 6)
            .expect("write");
        ring.write_all_at(file.as_raw_fd(), b"hello ", 0)
            .expect("write");
        ring.fdatasync(file.as_raw_fd()).expect("fdatasync");
        let dir_fd = File::open(dir.path()).expect("open dir");
        ring.fsync(dir_fd.as_raw_fd()).expect("fsync dir");
        assert_eq!(std::fs::read(&path).expect("read"), b"hello world");
    }

    #[test]
    fn negative_result_is_the_errno() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ro");
        std::fs::write(&path, b"x").expect("write");
        let read_only = File::open(&path).expect("open");
        let mut ring = Uring::new().expect("io_uring");
        let err = ring
            .write_all_at(read_only.as_raw_fd(), b"nope", 0)
            .expect_err("fd is read-only");
        assert_eq!(err.raw_os_error(), Some(9), "EBADF");
    }

    #[test]
    fn enospc_is_reported() {
        // A machine without /dev/full fails here, visibly, rather than
        // passing without testing anything.
        let full = File::options()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full (Linux has it; this test needs it)");
        let mut ring = Uring::new().expect("io_uring");
        let err = ring
            .write_all_at(full.as_raw_fd(), b"data", 0)
            .expect_err("/dev/full is full");
        assert_eq!(err.raw_os_error(), Some(28), "ENOSPC");
    }
}
