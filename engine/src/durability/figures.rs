//! A durable app's journal figures: its ingress log (position, group
//! commits and their fdatasync time, bytes logged) and its checkpoints
//! (taken, full, given up, the newest's epoch, size and duration).
//!
//! The journal thread is the only writer; stats and metrics read a
//! snapshot from any thread. Each figure is its own relaxed atomic: a
//! snapshot may mix figures of two adjacent group commits, never a torn
//! value, which is what a scrape needs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A durable app's log and checkpoint figures, at a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableStats {
    /// The log position after the newest entry appended.
    pub log_position: u64,
    /// Entries appended (events and client barriers) since deploy.
    pub log_entries: u64,
    /// Event payload bytes appended since deploy.
    pub log_bytes: u64,
    /// Group commits (one fdatasync each) since deploy.
    pub log_commits: u64,
    /// Time spent in those commits, ns.
    pub log_commit_ns: u64,
    /// Whether the log failed (the app takes no more input).
    pub log_failed: bool,
    /// Checkpoints committed since deploy.
    pub checkpoints: u64,
    /// Of those, full (the others are incremental).
    pub full_checkpoints: u64,
    /// Checkpoints given up (an I/O error, a state that could not be
    /// saved, a timeout).
    pub checkpoint_failures: u64,
    /// The newest committed checkpoint's epoch (0: none since deploy).
    pub last_checkpoint: u64,
    /// Its state bytes.
    pub last_checkpoint_bytes: u64,
    /// From its barrier's injection to its commit, ns.
    pub last_checkpoint_ns: u64,
}

/// The journal's live figures.
#[derive(Debug, Default)]
pub(crate) struct JournalFigures {
    log_position: AtomicU64,
    log_entries: AtomicU64,
    log_bytes: AtomicU64,
    log_commits: AtomicU64,
    log_commit_ns: AtomicU64,
    log_failed: AtomicBool,
    checkpoints: AtomicU64,
    full_checkpoints: AtomicU64,
    checkpoint_failures: AtomicU64,
    last_checkpoint: AtomicU64,
    last_checkpoint_bytes: AtomicU64,
    last_checkpoint_ns: AtomicU64,
}

impl JournalFigures {
    pub(crate) fn new(log_position: u64) -> Self {
        let f = JournalFigures::default();
        f.log_position.store(log_position, Relaxed);
        f
    }

    /// `entries` entries of `bytes` payload appended, up to `position`.
    pub(crate) fn appended(&self, position: u64, entries: u64, bytes: u64) {
        self.log_position.store(position, Relaxed);
        self.log_entries.fetch_add(entries, Relaxed);
        self.log_bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn committed(&self, took: Duration) {
        self.log_commits.fetch_add(1, Relaxed);
        self.log_commit_ns.fetch_add(nanos(took), Relaxed);
    }

    pub(crate) fn log_failed(&self) {
        self.log_failed.store(true, Relaxed);
    }

    pub(crate) fn checkpointed(&self, epoch: u64, full: bool, bytes: u64, took: Duration) {
        self.checkpoints.fetch_add(1, Relaxed);
        if full {
            self.full_checkpoints.fetch_add(1, Relaxed);
        }
        self.last_checkpoint.store(epoch, Relaxed);
        self.last_checkpoint_bytes.store(bytes, Relaxed);
        self.last_checkpoint_ns.store(nanos(took), Relaxed);
    }

    pub(crate) fn checkpoint_failed(&self) {
        self.checkpoint_failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DurableStats {
        DurableStats {
            log_position: self.log_position.load(Relaxed),
            log_entries: self.log_entries.load(Relaxed),
            log_bytes: self.log_bytes.load(Relaxed),
            log_commits: self.log_commits.load(Relaxed),
            log_commit_ns: self.log_commit_ns.load(Relaxed),
            log_failed: self.log_failed.load(Relaxed),
            checkpoints: self.checkpoints.load(Relaxed),
            full_checkpoints: self.full_checkpoints.load(Relaxed),
            checkpoint_failures: self.checkpoint_failures.load(Relaxed),
            last_checkpoint: self.last_checkpoint.load(Relaxed),
            last_checkpoint_bytes: self.last_checkpoint_bytes.load(Relaxed),
            last_checkpoint_ns: self.last_checkpoint_ns.load(Relaxed),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
