//! [`IngressLog`]: the durable, append-only log of one source's input, as a
//! sequence of segment files in one folder.
//!
//! Every record gets a sequence number: 0, 1, 2, ... over the whole life of
//! the log. It is not stored in the record: a segment file is named
//! `log-<first seq, 20 digits>.seg` (its header's segment id is the same
//! number), and its records have the seqs `first, first + 1, ...` in file
//! order. Appends are buffered; [`IngressLog::commit`] writes them and
//! fdatasyncs once for the whole batch (group commit); only then are they
//! durable, and only durable records are replayed.
//!
//! A caller's request (the engine logs one record per event of a client
//! request) is one [`IngressLog::append_all`]: a new segment is started, if
//! the current one has reached `segment_bytes`, only before the first
//! record of a call, so one call's records are always in one segment (and a
//! segment may grow past `segment_bytes` by one call's records).
//!
//! Invariants:
//! - **Contiguity.** The kept segments cover one range of seqs without a
//!   gap or an overlap: each segment starts where the one before it ends.
//!   `open` checks this on disk and refuses a log that breaks it.
//! - **Segments are never changed in place** (the crate invariant that makes
//!   mapped reads sound). After `open`, appends go to a *new* segment, even
//!   when the last one has room; a torn tail is left where it is, behind
//!   the valid prefix, and the next segment starts right after that prefix.
//! - **Torn tails only at a crash's place.** A segment's valid prefix may end
//!   early (torn write, corrupt tail) only if the next segment, if any,
//!   starts exactly at the seq where that prefix ends: then a crash cut the
//!   tail, and whatever was there was never acknowledged. Anywhere else,
//!   damage means acknowledged records are lost, and `open` fails, naming
//!   the file and the byte.
//! - **A rotation syncs first.** Segment N+1 is created only after N is
//!   fdatasynced (and its folder entry fsynced), so after a power loss
//!   "N+1 exists" implies "N is whole": `open` never finds a gap that a
//!   power loss made. `open` does the same for what it finds: it fsyncs the
//!   folder and fdatasyncs the last segment (records a killed process left
//!   in the page cache) before anything can be appended after them.
//! - **Errors poison.** Any error of `append`, `append_all` or `commit`
//!   (an I/O error, a create refused, a record refused) poisons the log:
//!   every later call is a `Poisoned` error, and what reached the file is
//!   left to the next `open` to recover.
//! - **Numbering survives compaction.** [`IngressLog::truncate_before`]
//!   deletes whole segments, oldest first, and always keeps the newest
//!   segment with durable records, so a reopened log continues its seqs.
//!
//! What it does not do: a crash-torn tail and a corrupt tail of the *last*
//! segment look alike (both are bytes that fail their checksum after the
//! valid prefix), so a bit flip in the last segment's committed records is
//! treated as a torn tail. The log does not know what the checkpoints need
//! either: the caller says what to truncate.
//!
//! One log is owned by one shard; nothing here is shared between threads.

use std::fs;
use std::path::{Path, PathBuf};

use rkyv::Archived;

use crate::disk;
use crate::error::{Result, StorageError};
use crate::format::Region;
use crate::manifest::{numbered, numbered_files, remove_if_exists, sync_dir};
use crate::{Record, Segment, SegmentWriter};

/// File name prefix of ingress log segments.
pub(crate) const PREFIX: &str = "log-";

/// One segment file of the log.
#[derive(Debug)]
struct LogSegment {
    /// Seq of its first record (from the name and the header).
    first: u64,
    /// Records appended to it, durable or not.
    appended: u64,
    /// Records of it known to be durable (`<= appended`).
    durable: u64,
    path: PathBuf,
}

/// The append-only log of records of type `R` of one source, in one folder.
pub struct IngressLog<R> {
    dir: PathBuf,
    segment_bytes: u64,
    /// Segments holding records (durable or appended), ascending, contiguous:
    /// `segments[i].first + segments[i].appended == segments[i + 1].first`.
    segments: Vec<LogSegment>,
    /// Writer of the last of `segments`, once this process appended to it.
    current: Option<SegmentWriter<R>>,
    /// A last segment found at open with no valid record. The next segment
    /// gets its name (same first seq), so it is removed just before that
    /// segment is created; until then it is what remembers the numbering.
    empty_tail: Option<PathBuf>,
    next_seq: u64,
    durable_seq: u64,
    /// Damage tolerated at open (torn tails), for the caller to log.
    torn: Vec<StorageError>,
    /// Set after an I/O error: what reached the disk is unknown.
    poisoned: Option<PathBuf>,
}

impl<R: Record> IngressLog<R> {
    /// Opens the log in `dir` (creating the folder if needed) and recovers
    /// it: every segment is read with the valid-prefix rule; a torn or
    /// corrupt tail is tolerated only where the next segment (if any) starts
    /// exactly at the seq the prefix ends at. Any other damage, or a gap
    /// between segments, is an error naming the file (and the byte). Files
    /// in `dir` that are not named like log segments are ignored.
    ///
    /// What it found is made durable before it returns: the folder is
    /// fsynced (with its parent) and the last segment holding records is
    /// fdatasynced, since a killed process may have left it in the page
    /// cache only; new segments start after it.
    ///
    /// Appends after `open` go to a new segment starting at
    /// [`next_seq`](Self::next_seq); a new segment is started, before the
    /// first record of an append call, whenever the current one has reached
    /// `segment_bytes`: a segment may grow past it by one call's records.
    pub fn open(dir: impl AsRef<Path>, segment_bytes: u64) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        disk::create_dir_all(&dir)?;
        // `list` sorts by name; 20-digit names sort by first seq.
        let files = numbered_files(&dir, PREFIX)?;
        debug_assert!(files.windows(2).all(|w| w[0].0 < w[1].0));

        let mut segments = Vec::with_capacity(files.len());
        let mut torn = Vec::new();
        let mut empty_tail = None;
        let mut next_seq = 0;
        for (i, (first, path)) in files.iter().enumerate() {
            let (first, next) = (*first, files.get(i + 1));
            let (count, damage) = recover_segment::<R>(path, first, next.is_none())?;
            let end = first
                .checked_add(count)
                .ok_or_else(|| StorageError::Invalid {
                    path: path.clone(),
                    offset: 0,
                    reason: format!("{count} records from seq {first} overflow the seq space"),
                })?;
            let damage = match next {
                Some((next_first, next_path)) => {
                    check_follows(path, end, damage, *next_first, next_path)?
                }
                None => damage,
            };
            torn.extend(damage);
            next_seq = end;
            if count == 0 {
                // Only the last segment can be empty: a middle one would
                // share its name with the next (same first seq).
                debug_assert!(next.is_none());
                empty_tail = Some(path.clone());
            } else {
                segments.push(LogSegment {
                    first,
                    appended: count,
                    durable: count,
                    path: path.clone(),
                });
            }
        }
        if let Some(last) = segments.last() {
            // Older segments were synced before the next one was created.
            disk::sync_existing(&last.path)?;
        }
        Ok(Self {
            dir,
            segment_bytes,
            segments,
            current: None,
            empty_tail,
            next_seq,
            durable_seq: next_seq,
            torn,
            poisoned: None,
        })
    }

    /// Buffers one record; returns its seq. Not durable until
    /// [`commit`](Self::commit). The one-record case of
    /// [`append_all`](Self::append_all), with its rules.
    pub fn append(&mut self, record: &R) -> Result<u64> {
        let seqs = self.append_all(std::iter::once(record))?;
        debug_assert_eq!(seqs.end, seqs.start + 1);
        Ok(seqs.start)
    }

    /// Buffers the records of one request, in order; returns their seqs.
    /// Not durable until [`commit`](Self::commit).
    ///
    /// The records go to one segment: if the current one has reached
    /// `segment_bytes`, a new one is started before the first record (the
    /// old one synced first), never between two of them, so a segment may
    /// grow past `segment_bytes` by one call's records. No records: an
    /// empty range at [`next_seq`](Self::next_seq), nothing done.
    ///
    /// An error poisons the log, and it is then unknown whether some of
    /// this call's records reached the file (a batch is written whenever it
    /// reaches [`FLUSH_AT`](crate::FLUSH_AT), also in the middle of a call)
    /// and whether earlier uncommitted ones did (a rotation syncs the old
    /// segment): a later `open` may find and replay them. The caller must
    /// treat the outcome of every request not yet committed as unknown.
    pub fn append_all<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a R>,
    ) -> Result<std::ops::Range<u64>>
    where
        R: 'a,
    {
        self.usable()?;
        let start = self.next_seq;
        let mut records = records.into_iter().peekable();
        if records.peek().is_none() {
            return Ok(start..start);
        }
        let rotate = match &self.current {
            // A segment with no record is never left behind: the next one
            // would get its name.
            Some(w) => w.len() >= self.segment_bytes && !w.is_empty(),
            None => true,
        };
        if rotate {
            self.start_segment()?;
        }
        for record in records {
            let w = self.current.as_mut().expect("start_segment set a writer");
            if let Err(e) = w.append(record) {
                let path = w.path().to_path_buf();
                return Err(self.fail(path, e));
            }
            let seg = self.segments.last_mut().expect("the writer's segment");
            seg.appended += 1;
            self.next_seq += 1;
            debug_assert_eq!(seg.first + seg.appended, self.next_seq);
        }
        Ok(start..self.next_seq)
    }

    /// Group commit: writes every record appended so far and fdatasyncs
    /// the current segment (segments rotated away were synced when the next
    /// one was started). Returns [`next_seq`](Self::next_seq): every record
    /// below it is durable. An error poisons the log; whether the records
    /// reached the disk is then unknown.
    pub fn commit(&mut self) -> Result<u64> {
        self.usable()?;
        if self.durable_seq == self.next_seq {
            return Ok(self.next_seq);
        }
        if let Some(w) = self.current.as_mut() {
            if let Err(e) = w.sync() {
                let path = w.path().to_path_buf();
                return Err(self.fail(path, e));
            }
        }
        for s in &mut self.segments {
            s.durable = s.appended;
        }
        self.durable_seq = self.next_seq;
        Ok(self.durable_seq)
    }

    /// Calls `f` for every durable record with seq >= `from`, in seq order,
    /// zero-copy: each segment is mapped and validated, then its records are
    /// handed out as `&Archived<R>` (one segment mapped at a time). Stops at
    /// the first error `f` returns. Returns how many records were replayed.
    ///
    /// `from` below [`first_seq`](Self::first_seq) (truncated away) or past
    /// [`durable_seq`](Self::durable_seq) is a `ReplayOutOfRange` error
    /// naming what the log keeps.
    pub fn replay(
        &self,
        from: u64,
        mut f: impl FnMut(u64, &Archived<R>) -> Result<()>,
    ) -> Result<u64> {
        let (first, end) = (self.first_seq(), self.durable_seq);
        if from < first || from > end {
            return Err(StorageError::ReplayOutOfRange {
                path: self.dir.clone(),
                from,
                first,
                end,
            });
        }
        let mut replayed = 0;
        for seg in &self.segments {
            if seg.durable == 0 || seg.first + seg.durable <= from {
                continue;
            }
            let rec = Segment::<R>::recover(&seg.path)?;
            if rec.segment.id() != seg.first {
                return Err(StorageError::Invalid {
                    path: seg.path.clone(),
                    offset: 0,
                    reason: format!(
                        "the header now says seq {}, it said {} at open",
                        rec.segment.id(),
                        seg.first
                    ),
                });
            }
            if (rec.segment.len() as u64) < seg.durable {
                // Damage appeared after open, inside durable records.
                return Err(rec.damage.unwrap_or_else(|| StorageError::Incomplete {
                    path: seg.path.clone(),
                    offset: rec.segment.valid_len(),
                    reason: format!(
                        "{} records left of {} durable ones",
                        rec.segment.len(),
                        seg.durable
                    ),
                }));
            }
            let skip = usize::try_from(from.saturating_sub(seg.first)).unwrap_or(usize::MAX);
            let take = usize::try_from(seg.durable).unwrap_or(usize::MAX);
            for (i, (_, record)) in rec.segment.iter().enumerate().take(take).skip(skip) {
                f(seg.first + i as u64, record)?;
                replayed += 1;
            }
        }
        debug_assert_eq!(replayed, end - from);
        Ok(replayed)
    }

    /// Compaction: deletes whole segment files, oldest first, whose records
    /// all have seq < `before` and are durable (a checkpoint no longer needs
    /// them). Returns how many files were deleted. Never deletes the segment
    /// being appended to, nor the newest segment with durable records (it is
    /// what tells a reopened log where its seqs continue).
    pub fn truncate_before(&mut self, before: u64) -> Result<usize> {
        let before = before.min(self.durable_seq);
        let keep_from = self
            .segments
            .iter()
            .rposition(|s| s.durable > 0)
            .unwrap_or(0);
        let mut deleted = 0;
        let mut result = Ok(());
        while deleted < keep_from {
            let s = &self.segments[deleted];
            if s.durable != s.appended || s.first + s.durable > before {
                break;
            }
            // One folder sync per file: a crash must not persist a later
            // unlink without an earlier one, which would leave a gap.
            result = remove_if_exists(&s.path).and_then(|()| sync_dir(&self.dir));
            if result.is_err() {
                break;
            }
            deleted += 1;
        }
        self.segments.drain(..deleted);
        result.map(|()| deleted)
    }

    /// The seq the next append gets: how many records were ever appended,
    /// including those truncated away.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Every record below this seq is durable (what the last commit returned).
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// The first seq still kept (after truncation); `next_seq` if the log
    /// keeps no record.
    pub fn first_seq(&self) -> u64 {
        self.segments.first().map_or(self.next_seq, |s| s.first)
    }

    /// The log's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Damage tolerated at open (torn tails a crash left), for the caller to
    /// log. Each names the file and the byte where its valid prefix ends.
    pub fn torn_tails(&self) -> &[StorageError] {
        &self.torn
    }

    /// Creates the segment that appends go to from now on, starting at
    /// `next_seq`. The current one (if any) is synced first, data and
    /// folder entry: "the new segment exists" must imply "the one before it
    /// is whole", or a power loss could leave a gap `open` refuses. Any
    /// error poisons the log.
    fn start_segment(&mut self) -> Result<()> {
        if let Some(old) = self.current.take() {
            let path = old.path().to_path_buf();
            if let Err(e) = old.finish() {
                return Err(self.fail(path, e));
            }
        }
        if let Some(empty) = self.empty_tail.take() {
            debug_assert!(empty.ends_with(numbered(PREFIX, self.next_seq)));
            if let Err(e) = remove_if_exists(&empty) {
                return Err(self.fail(empty, e));
            }
        }
        let path = self.dir.join(numbered(PREFIX, self.next_seq));
        let w = match SegmentWriter::create(&path, self.next_seq) {
            Ok(w) => w,
            Err(e) => return Err(self.fail(path, e)),
        };
        self.segments.push(LogSegment {
            first: self.next_seq,
            appended: 0,
            durable: 0,
            path,
        });
        self.current = Some(w);
        Ok(())
    }

    fn usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(path) => Err(StorageError::Poisoned { path: path.clone() }),
            None => Ok(()),
        }
    }

    /// Passes `e` on, poisoning the log: after a failed append, rotation
    /// or commit, what reached the file is unknown (reopen to recover).
    fn fail(&mut self, path: PathBuf, e: StorageError) -> StorageError {
        self.poisoned = Some(path);
        e
    }
}

/// Reads the log segment at `path` (named for seq `first`) with the
/// valid-prefix rule: its count of valid records and the damage after
/// them. The `last` segment may also be a torn creation (no valid header):
/// then it holds no record.
fn recover_segment<R: Record>(
    path: &Path,
    first: u64,
    last: bool,
) -> Result<(u64, Option<StorageError>)> {
    match Segment::<R>::recover(path) {
        Ok(rec) if rec.segment.id() != first => Err(StorageError::Invalid {
            path: path.to_path_buf(),
            offset: 0,
            reason: format!(
                "the header says the segment starts at seq {}, the name says {first}",
                rec.segment.id()
            ),
        }),
        Ok(rec) => Ok((rec.segment.len() as u64, rec.damage)),
        Err(e) if last && torn_creation(path, &e)? => Ok((0, Some(e))),
        Err(e) => Err(e),
    }
}

/// Checks that the segment at `next_path` starts at `end`, where the one at
/// `path` (with `damage` after its valid prefix) ends; hands `damage` back.
fn check_follows(
    path: &Path,
    end: u64,
    damage: Option<StorageError>,
    next_first: u64,
    next_path: &Path,
) -> Result<Option<StorageError>> {
    if next_first == end {
        return Ok(damage);
    }
    Err(match damage {
        Some(d) if next_first > end => StorageError::LogDamaged {
            path: path.to_path_buf(),
            offset: d.offset().unwrap_or(0),
            lost_from: end,
            next: next_path.to_path_buf(),
            next_first,
            damage: Box::new(d),
        },
        _ => StorageError::SequenceGap {
            path: next_path.to_path_buf(),
            found: next_first,
            previous: path.to_path_buf(),
            expected: end,
        },
    })
}

/// Whether `e`, the error opening the log's last segment, is what a crash
/// while creating it leaves: a header cut short, or a file of zeros (its
/// length reached the disk, its bytes did not).
fn torn_creation(path: &Path, e: &StorageError) -> Result<bool> {
    Ok(match e {
        StorageError::Truncated {
            offset: 0,
            region: Region::SegmentHeader,
            ..
        } => true,
        StorageError::BadMagic { .. } => {
            let bytes = fs::read(path).map_err(|source| StorageError::Io {
                path: path.to_path_buf(),
                op: "read",
                source,
            })?;
            bytes.iter().all(|&b| b == 0)
        }
        _ => false,
    })
}

impl<R> std::fmt::Debug for IngressLog<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressLog")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("next_seq", &self.next_seq)
            .field("durable_seq", &self.durable_seq)
            .field("torn", &self.torn.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(log: &IngressLog<u64>, from: u64) -> Vec<(u64, u64)> {
        let mut got = Vec::new();
        log.replay(from, |seq, v| {
            got.push((seq, v.to_native()));
            Ok(())
        })
        .expect("replay");
        got
    }

    #[test]
    fn appends_are_invisible_until_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = IngressLog::<u64>::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(log.append(&10).expect("append"), 0);
        assert_eq!(log.append(&11).expect("append"), 1);
        assert_eq!((log.next_seq(), log.durable_seq()), (2, 0));
        assert!(seqs(&log, 0).is_empty());
        assert_eq!(log.commit().expect("commit"), 2);
        assert_eq!(seqs(&log, 0), [(0, 10), (1, 11)]);
        assert_eq!(seqs(&log, 1), [(1, 11)]);
        assert!(seqs(&log, 2).is_empty());
    }

    #[test]
    fn a_header_only_last_segment_is_replaced_by_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut log = IngressLog::<u64>::open(dir.path(), 1 << 20).expect("open");
            log.append(&1).expect("append");
            log.commit().expect("commit");
        }
        // A segment with only its header, at the next seq.
        let empty = dir.path().join(numbered(PREFIX, 1));
        SegmentWriter::<u64>::create(&empty, 1)
            .expect("create")
            .finish()
            .expect("finish");
        let mut log = IngressLog::<u64>::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(log.next_seq(), 1);
        assert_eq!(log.append(&2).expect("append"), 1);
        log.commit().expect("commit");
        assert_eq!(seqs(&log, 0), [(0, 1), (1, 2)]);
    }

    #[test]
    fn a_zero_filled_last_segment_is_a_torn_creation() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(numbered(PREFIX, 0)), [0u8; 4096]).expect("write");
        let mut log = IngressLog::<u64>::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(log.torn_tails().len(), 1);
        assert_eq!(log.append(&7).expect("append"), 0);
        log.commit().expect("commit");
        drop(log);
        let log = IngressLog::<u64>::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(seqs(&log, 0), [(0, 7)]);
    }

    #[test]
    fn garbage_as_the_last_segment_is_not_a_torn_creation() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(numbered(PREFIX, 0)), b"not a segment").expect("write");
        assert!(matches!(
            IngressLog::<u64>::open(dir.path(), 1 << 20),
            Err(StorageError::BadMagic { .. })
        ));
    }
}
