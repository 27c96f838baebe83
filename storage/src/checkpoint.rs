//! Checkpoints of one app: operators' saved state plus where each source's
//! ingress log resumes, written as one segment per checkpoint and committed
//! through the [`manifest`](crate::manifest).
//!
//! - [`Checkpoints`] owns the app's checkpoint folder: the `MANIFEST` and
//!   the `ckpt-<epoch, 20 digits>.seg` files. Every other file in the folder
//!   (the sources' log folders, anything else) is left alone.
//! - [`CheckpointWriter`] writes one checkpoint's segment: each operator's
//!   state bytes (opaque here), split into records of at most
//!   [`STATE_CHUNK_LEN`] bytes because a segment record is limited to
//!   [`MAX_RECORD_LEN`](crate::MAX_RECORD_LEN) and state may be far larger.
//! - [`Checkpoint`] is a committed checkpoint, mapped and validated once,
//!   its state bytes borrowed from the map.
//!
//! A checkpoint segment's records, in order: the parts of each operator's
//! state (parts `0, 1, ...` of one operator back to back, the last one
//! flagged; each operator once), then one **seal** record naming the epoch,
//! the counts of operators, parts and bytes, and the sources' resume points.
//! The seal is what says the segment is whole: a file cut at a record
//! boundary passes every checksum, but has no seal.
//!
//! Commit protocol ([`Checkpoints::commit`]): append the seal and fdatasync
//! the segment; then replace the manifest atomically so it lists the new
//! checkpoint first; then delete segments the manifest no longer lists. A
//! crash before the manifest's rename leaves the old manifest, which does
//! not list the new segment; [`Checkpoints::open`] deletes such leftovers.
//!
//! Invariants:
//! - The manifest lists the newest checkpoint, [`CHECKPOINTS_KEPT`]` - 1`
//!   fallbacks, and whatever older ones a commit asked to keep (bases of
//!   incremental state, [`Checkpoints::commit_keeping`]), newest first, each
//!   one that was valid when it was listed.
//! - Epochs only grow: `begin` and `commit` refuse an epoch not newer than
//!   every epoch listed or begun, so a segment name is never reused.
//! - `open` returns only a checkpoint whose every byte passed its checks
//!   and whose structure matches its seal and its manifest entry; no
//!   unvalidated byte is handed out. It changes nothing on disk when it
//!   fails.
//!
//! Not here: deciding when to checkpoint, what state means (the engine's
//! rkyv archives are opaque bytes here), or truncating the logs (the
//! engine calls [`IngressLog::truncate_before`](crate::IngressLog::truncate_before)
//! with [`Checkpoints::keep_log_from`]).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::disk::create_dir_all;
use crate::error::{Result, StorageError};
use crate::format::MAX_RECORD_LEN;
use crate::manifest::{
    self, numbered, numbered_files, remove_if_exists, sync_dir, Listed, Manifest, SourcePoint,
    MANIFEST, MANIFEST_TMP,
};
use crate::{Segment, SegmentWriter};

/// How many checkpoints the manifest lists: the newest and one fallback.
pub const CHECKPOINTS_KEPT: usize = 2;

/// Default size of one part of an operator's state: a state larger than
/// this is written as several records. Small enough that serializing one
/// part costs little memory, large enough that a 1 GB state is ~128 records.
pub const STATE_CHUNK_LEN: usize = 8 << 20;

/// Largest state part a record can hold: [`MAX_RECORD_LEN`] less room for
/// the record's other fields.
pub const MAX_STATE_CHUNK_LEN: usize = MAX_RECORD_LEN - 1024;

/// File name prefix of checkpoint segments.
pub(crate) const PREFIX: &str = "ckpt-";

/// A record of a checkpoint segment.
#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
enum Entry {
    /// Part `part` of operator `op`'s state bytes; `last` on its final part.
    State {
        op: u16,
        part: u32,
        last: bool,
        bytes: Vec<u8>,
    },
    /// The checkpoint's last record: what it holds, for the reader to check.
    Seal {
        epoch: u64,
        /// Operators with state.
        operators: u32,
        /// `State` records.
        parts: u64,
        /// Sum of the state bytes.
        bytes: u64,
        sources: Vec<SourcePoint>,
    },
}

/// One operator's state in a mapped checkpoint: where its parts are.
#[derive(Debug)]
struct StateIndex {
    op: u16,
    /// Offsets of its `State` records, in part order.
    parts: Vec<u64>,
    len: u64,
}

/// A complete, valid checkpoint, mapped read-only.
pub struct Checkpoint {
    epoch: u64,
    sources: Vec<(u16, u64)>,
    segment: Segment<Entry>,
    /// Ascending by operator.
    states: Vec<StateIndex>,
}

impl Checkpoint {
    /// The checkpoint's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Per-source resume points recorded with the checkpoint: (source id,
    /// next seq of that source's log to replay from), ascending by source.
    pub fn sources(&self) -> &[(u16, u64)] {
        &self.sources
    }

    /// The saved state bytes of operator `op`, `None` if the checkpoint has
    /// none for it. Borrowed from the mapped, validated segment when the
    /// state is one record (at most the writer's chunk length,
    /// [`STATE_CHUNK_LEN`] by default); larger states are stored in parts
    /// and joined into an owned buffer here. [`state_parts`](Self::state_parts)
    /// reads them without copying.
    pub fn state(&self, op: u16) -> Option<Cow<'_, [u8]>> {
        let index = self.index(op)?;
        if let [only] = index.parts[..] {
            return Some(Cow::Borrowed(self.part(only)));
        }
        let mut joined = Vec::with_capacity(usize::try_from(index.len).unwrap_or(0));
        for &offset in &index.parts {
            joined.extend_from_slice(self.part(offset));
        }
        Some(Cow::Owned(joined))
    }

    /// Operator `op`'s state as the parts it was stored in, in order,
    /// borrowed from the map (zero-copy); `None` if it has no state.
    pub fn state_parts(&self, op: u16) -> Option<impl ExactSizeIterator<Item = &[u8]> + '_> {
        let index = self.index(op)?;
        Some(index.parts.iter().map(|&offset| self.part(offset)))
    }

    /// Length in bytes of operator `op`'s state.
    pub fn state_len(&self, op: u16) -> Option<u64> {
        self.index(op).map(|i| i.len)
    }

    /// The operators with saved state, ascending.
    pub fn operators(&self) -> Vec<u16> {
        self.states.iter().map(|s| s.op).collect()
    }

    /// The checkpoint segment's path.
    pub fn path(&self) -> &Path {
        self.segment.path()
    }

    fn index(&self, op: u16) -> Option<&StateIndex> {
        self.states
            .binary_search_by_key(&op, |s| s.op)
            .ok()
            .map(|i| &self.states[i])
    }

    fn part(&self, offset: u64) -> &[u8] {
        match self.segment.get(offset) {
            Ok(ArchivedEntry::State { bytes, .. }) => bytes.as_slice(),
            _ => unreachable!("offset {offset} was indexed at load as a State record"),
        }
    }

    /// Maps and validates the segment of the checkpoint `listed` in `dir`.
    pub(crate) fn load(dir: &Path, listed: &Listed) -> Result<Self> {
        let path = dir.join(numbered(PREFIX, listed.epoch));
        let file_len = fs::metadata(&path)
            .map_err(|source| StorageError::Io {
                path: path.clone(),
                op: "stat",
                source,
            })?
            .len();
        // Checked before mapping: no need to validate a file of the wrong size.
        if file_len < listed.len {
            return Err(StorageError::Incomplete {
                path,
                offset: file_len,
                reason: format!(
                    "the file is {file_len} bytes, the manifest recorded {}",
                    listed.len
                ),
            });
        }
        if file_len > listed.len {
            return Err(StorageError::Invalid {
                path,
                offset: listed.len,
                reason: format!(
                    "{} bytes follow the checkpoint's recorded end",
                    file_len - listed.len
                ),
            });
        }
        let segment = Segment::<Entry>::open(&path)?;
        let invalid = |offset: u64, reason: String| StorageError::Invalid {
            path: path.clone(),
            offset,
            reason,
        };
        if segment.id() != listed.epoch {
            return Err(invalid(
                0,
                format!(
                    "the header says epoch {}, the name says {}",
                    segment.id(),
                    listed.epoch
                ),
            ));
        }

        let mut states: Vec<StateIndex> = Vec::new();
        let mut seen = BTreeSet::new();
        // Index into `states` of an operator whose last part is still to come.
        let mut open: Option<usize> = None;
        let (mut parts, mut bytes) = (0u64, 0u64);
        let mut sealed = false;
        for (offset, entry) in segment.iter() {
            if sealed {
                return Err(invalid(offset, "a record follows the seal".into()));
            }
            match entry {
                ArchivedEntry::State {
                    op,
                    part,
                    last,
                    bytes: chunk,
                } => {
                    let (op, part) = (op.to_native(), part.to_native());
                    let i = match open {
                        Some(i) => {
                            let expected = (states[i].op, states[i].parts.len());
                            if (op, part as usize) != expected {
                                return Err(invalid(
                                    offset,
                                    format!(
                                        "part {part} of operator {op} where part {} of operator {} belongs",
                                        expected.1, expected.0
                                    ),
                                ));
                            }
                            i
                        }
                        None => {
                            if part != 0 {
                                return Err(invalid(
                                    offset,
                                    format!("operator {op}'s state starts at part {part}, not 0"),
                                ));
                            }
                            if !seen.insert(op) {
                                return Err(invalid(
                                    offset,
                                    format!("operator {op} has state twice"),
                                ));
                            }
                            states.push(StateIndex {
                                op,
                                parts: Vec::new(),
                                len: 0,
                            });
                            states.len() - 1
                        }
                    };
                    states[i].parts.push(offset);
                    states[i].len += chunk.len() as u64;
                    parts += 1;
                    bytes += chunk.len() as u64;
                    open = if *last { None } else { Some(i) };
                }
                ArchivedEntry::Seal {
                    epoch,
                    operators,
                    parts: sealed_parts,
                    bytes: sealed_bytes,
                    sources,
                } => {
                    if let Some(i) = open {
                        return Err(invalid(
                            offset,
                            format!(
                                "the seal comes before the last part of operator {}",
                                states[i].op
                            ),
                        ));
                    }
                    let found = (
                        epoch.to_native(),
                        operators.to_native() as usize,
                        sealed_parts.to_native(),
                        sealed_bytes.to_native(),
                    );
                    let expected = (listed.epoch, states.len(), parts, bytes);
                    if found != expected {
                        return Err(invalid(
                            offset,
                            format!(
                                "the seal says (epoch, operators, parts, bytes) = {found:?}, \
                                 the checkpoint holds {expected:?}"
                            ),
                        ));
                    }
                    let same_sources = sources.len() == listed.sources.len()
                        && sources.iter().zip(&listed.sources).all(|(a, b)| {
                            a.source.to_native() == b.source && a.next_seq.to_native() == b.next_seq
                        });
                    if !same_sources {
                        return Err(invalid(
                            offset,
                            "the seal's source resume points differ from the manifest's".into(),
                        ));
                    }
                    sealed = true;
                }
            }
        }
        if !sealed {
            return Err(StorageError::Incomplete {
                path,
                offset: segment.valid_len(),
                reason: "no seal record: the checkpoint was not finished".into(),
            });
        }
        states.sort_unstable_by_key(|s| s.op);
        Ok(Checkpoint {
            epoch: listed.epoch,
            sources: listed.source_pairs(),
            segment,
            states,
        })
    }
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("epoch", &self.epoch)
            .field("path", &self.segment.path())
            .field("sources", &self.sources)
            .field("operators", &self.operators())
            .finish()
    }
}

/// The checkpoint folder of one app: its manifest and checkpoint segments.
#[derive(Debug)]
pub struct Checkpoints {
    dir: PathBuf,
    /// The manifest's generation on disk.
    generation: u64,
    /// Usable checkpoints, newest first: the newest committed (or loaded at
    /// open) and its fallbacks. The next manifest lists the new one and the
    /// first `CHECKPOINTS_KEPT - 1` of these.
    kept: Vec<Listed>,
    /// Every new epoch must be greater than this: the highest epoch listed
    /// (even if damaged), found on disk at open, or begun.
    floor: Option<u64>,
    skipped: Vec<StorageError>,
    chunk_len: usize,
    /// Opened with `open_read_only`: nothing may be written.
    read_only: bool,
}

impl Checkpoints {
    /// Opens (creating if needed) an app's checkpoint folder and returns the
    /// newest checkpoint that is complete and valid. The folder is made
    /// durable first: fsynced, and its parent too
    /// ([`create_dir_all`](crate::create_dir_all)).
    ///
    /// The manifest is the truth: a corrupt `MANIFEST` is an error naming
    /// it; a missing one is created (empty) if no checkpoint segment exists,
    /// and an error otherwise. Listed checkpoints are tried newest first; a
    /// damaged one is skipped (see [`skipped`](Self::skipped)) in favour of
    /// the next; if every listed one is damaged, that is a
    /// `NoValidCheckpoint` error. Leftovers of an interrupted commit (a
    /// `MANIFEST.tmp`, checkpoint segments the manifest does not list) are
    /// deleted, but only once everything else checked out.
    pub fn open(dir: impl AsRef<Path>) -> Result<(Checkpoints, Option<Checkpoint>)> {
        let dir = dir.as_ref().to_path_buf();
        create_dir_all(&dir)?;
        let files = segment_files(&dir)?;
        let manifest = match manifest::read(&dir)? {
            Some(m) => m,
            None if files.is_empty() => {
                let empty = Manifest {
                    generation: 0,
                    checkpoints: Vec::new(),
                };
                manifest::replace(&dir, &empty)?;
                empty
            }
            None => {
                return Err(StorageError::ManifestMissing {
                    path: dir.join(MANIFEST),
                    found: files.into_iter().map(|(_, p)| p).collect(),
                })
            }
        };
        let (checkpoints, newest) = Self::from_manifest(dir, &manifest, &files)?;
        checkpoints.clean_up(&manifest, &files)?;
        Ok((checkpoints, newest))
    }

    /// Like [`open`](Self::open), for reading only: nothing is created,
    /// cleaned up or changed, so it can run beside the node that owns the
    /// folder (a tool's view of the newest checkpoint). The same checks
    /// and the same errors, but an empty folder (or none) has no
    /// checkpoint rather than a new manifest. The `Checkpoints` returned must not
    /// be written through: `begin` refuses.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<(Checkpoints, Option<Checkpoint>)> {
        let dir = dir.as_ref().to_path_buf();
        let files = segment_files(&dir)?;
        let manifest = match manifest::read(&dir)? {
            Some(m) => m,
            None if files.is_empty() => Manifest {
                generation: 0,
                checkpoints: Vec::new(),
            },
            // What `open` refuses, this refuses too.
            None => {
                return Err(StorageError::ManifestMissing {
                    path: dir.join(MANIFEST),
                    found: files.into_iter().map(|(_, p)| p).collect(),
                })
            }
        };
        let (mut checkpoints, newest) = Self::from_manifest(dir, &manifest, &files)?;
        checkpoints.read_only = true;
        Ok((checkpoints, newest))
    }

    /// The newest valid listed checkpoint, and the folder's state.
    fn from_manifest(
        dir: PathBuf,
        manifest: &Manifest,
        files: &[(u64, PathBuf)],
    ) -> Result<(Checkpoints, Option<Checkpoint>)> {
        let mut skipped = Vec::new();
        let mut loaded = None;
        for (i, listed) in manifest.checkpoints.iter().enumerate() {
            match Checkpoint::load(&dir, listed) {
                Ok(c) => {
                    loaded = Some((i, c));
                    break;
                }
                Err(e) => skipped.push(e),
            }
        }
        // The loaded checkpoint and the older ones still listed (valid when
        // they were committed; not read again here) stay; damaged newer
        // ones drop out of the next manifest.
        let (kept, checkpoint) = match loaded {
            Some((i, c)) => (manifest.checkpoints[i..].to_vec(), Some(c)),
            None if skipped.is_empty() => (Vec::new(), None),
            None => {
                return Err(StorageError::NoValidCheckpoint {
                    path: dir.join(MANIFEST),
                    skipped,
                })
            }
        };

        let listed: BTreeSet<u64> = manifest.checkpoints.iter().map(|c| c.epoch).collect();
        let floor = listed
            .iter()
            .chain(files.iter().map(|(e, _)| e))
            .copied()
            .max();
        let checkpoints = Checkpoints {
            dir,
            generation: manifest.generation,
            kept,
            floor,
            skipped,
            chunk_len: STATE_CHUNK_LEN,
            read_only: false,
        };
        Ok((checkpoints, checkpoint))
    }

    /// Everything checked out: delete what an interrupted commit left (a
    /// `MANIFEST.tmp`, segments the manifest does not list).
    fn clean_up(&self, manifest: &Manifest, files: &[(u64, PathBuf)]) -> Result<()> {
        let listed: BTreeSet<u64> = manifest.checkpoints.iter().map(|c| c.epoch).collect();
        let mut removed = false;
        for (epoch, path) in files {
            if !listed.contains(epoch) {
                remove_if_exists(path)?;
                removed = true;
            }
        }
        let tmp = self.dir.join(MANIFEST_TMP);
        if tmp.exists() {
            remove_if_exists(&tmp)?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Damage found at open: the checkpoints skipped, newest first, each
    /// error naming the file and the byte. For the caller to log.
    pub fn skipped(&self) -> &[StorageError] {
        &self.skipped
    }

    /// Starts writing checkpoint `epoch`, which must be greater than every
    /// epoch in the manifest and every epoch begun before.
    pub fn begin(&mut self, epoch: u64) -> Result<CheckpointWriter> {
        if self.read_only {
            return Err(StorageError::Invalid {
                path: self.dir.clone(),
                offset: 0,
                reason: "the checkpoints were opened read-only".into(),
            });
        }
        self.check_newer(epoch)?;
        let path = self.dir.join(numbered(PREFIX, epoch));
        let writer = SegmentWriter::create(&path, epoch)?;
        self.floor = Some(epoch);
        Ok(CheckpointWriter {
            dir: self.dir.clone(),
            epoch,
            writer,
            ops: BTreeSet::new(),
            parts: 0,
            bytes: 0,
            chunk_len: self.chunk_len,
            buf: Vec::new(),
        })
    }

    /// Records a finished writer: appends its seal and syncs its segment,
    /// then atomically replaces the manifest to list it as newest (with
    /// `sources`, the sources' resume points) followed by the newest
    /// [`CHECKPOINTS_KEPT`]` - 1` earlier valid ones, then deletes the
    /// checkpoint segments older than it that the manifest no longer lists.
    /// Only once this returns `Ok` is it the checkpoint `open` returns. (An
    /// error from that last deletion comes after the commit took effect:
    /// [`newest`](Self::newest) tells.)
    pub fn commit(&mut self, w: CheckpointWriter, sources: &[(u16, u64)]) -> Result<()> {
        self.commit_keeping(w, sources, u64::MAX)
    }

    /// [`commit`](Self::commit), keeping listed, besides the newest and its
    /// fallback, every earlier checkpoint of epoch `keep_from` or newer:
    /// the bases an incremental checkpoint's state builds on.
    pub fn commit_keeping(
        &mut self,
        w: CheckpointWriter,
        sources: &[(u16, u64)],
        keep_from: u64,
    ) -> Result<()> {
        assert_eq!(
            w.dir, self.dir,
            "a checkpoint writer is committed to the folder it was begun in"
        );
        let path = w.writer.path().to_path_buf();
        if let Some(newest) = self.newest() {
            if w.epoch <= newest {
                return Err(StorageError::StaleEpoch {
                    path,
                    epoch: w.epoch,
                    newest,
                });
            }
        }
        let mut sources: Vec<SourcePoint> = sources
            .iter()
            .map(|&(source, next_seq)| SourcePoint { source, next_seq })
            .collect();
        sources.sort_unstable_by_key(|s| s.source);
        if let Some(w) = sources.windows(2).find(|w| w[0].source == w[1].source) {
            return Err(StorageError::DuplicateSource {
                path,
                source_id: w[0].source,
            });
        }
        let epoch = w.epoch;
        let len = w.seal(&sources)?;

        let mut kept = Vec::with_capacity(CHECKPOINTS_KEPT);
        kept.push(Listed {
            epoch,
            len,
            sources,
        });
        kept.extend(
            self.kept
                .iter()
                .enumerate()
                .take_while(|(i, c)| *i < CHECKPOINTS_KEPT - 1 || c.epoch >= keep_from)
                .map(|(_, c)| c.clone()),
        );
        let manifest = Manifest {
            generation: self.generation + 1,
            checkpoints: kept,
        };
        manifest::replace(&self.dir, &manifest)?;
        self.generation = manifest.generation;
        self.kept = manifest.checkpoints;
        self.compact(epoch)
    }

    /// The smallest epoch [`begin`](Self::begin) accepts now: above every
    /// epoch listed, found on disk at open (a checkpoint interrupted by a
    /// crash), or begun.
    pub fn next_epoch(&self) -> u64 {
        self.floor.map_or(1, |f| f + 1)
    }

    /// Epoch of the newest committed checkpoint (the one `open` returned,
    /// or the last one committed since), if any.
    pub fn newest(&self) -> Option<u64> {
        self.kept.first().map(|c| c.epoch)
    }

    /// The lowest seq of `source`'s log that a kept checkpoint (the newest
    /// or a fallback) may replay from: the log may be truncated before it
    /// (`IngressLog::truncate_before`), not further. 0 if no checkpoint is
    /// kept, or if a kept checkpoint has no resume point for `source`.
    pub fn keep_log_from(&self, source: u16) -> u64 {
        // Older listed checkpoints are bases of incremental ones, never a
        // point recovery replays from.
        self.kept
            .iter()
            .take(CHECKPOINTS_KEPT)
            .map(|c| {
                c.sources
                    .iter()
                    .find(|p| p.source == source)
                    .map_or(0, |p| p.next_seq)
            })
            .min()
            .unwrap_or(0)
    }

    /// The epochs of the checkpoints kept, newest first: the newest usable
    /// one and its fallbacks, as the manifest lists them (less any newer
    /// ones `open` skipped as damaged; the next commit drops those).
    pub fn listed(&self) -> Vec<u64> {
        self.kept.iter().map(|c| c.epoch).collect()
    }

    /// Maps and validates listed checkpoint `epoch` (an older one, e.g. the
    /// base of an incremental checkpoint), with the same checks as `open`.
    pub fn load(&self, epoch: u64) -> Result<Checkpoint> {
        let listed =
            self.kept
                .iter()
                .find(|c| c.epoch == epoch)
                .ok_or_else(|| StorageError::NotListed {
                    path: self.dir.join(MANIFEST),
                    epoch,
                })?;
        Checkpoint::load(&self.dir, listed)
    }

    /// The checkpoint folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets the size of the parts state is split into, for writers begun
    /// from now on (default [`STATE_CHUNK_LEN`]).
    ///
    /// # Panics
    /// If `len` is 0 or over [`MAX_STATE_CHUNK_LEN`].
    pub fn set_state_chunk_len(&mut self, len: usize) {
        assert!(
            (1..=MAX_STATE_CHUNK_LEN).contains(&len),
            "state chunk length {len} is not in 1..={MAX_STATE_CHUNK_LEN}"
        );
        self.chunk_len = len;
    }

    fn check_newer(&self, epoch: u64) -> Result<()> {
        match self.floor {
            Some(newest) if epoch <= newest => Err(StorageError::StaleEpoch {
                path: self.dir.clone(),
                epoch,
                newest,
            }),
            _ => Ok(()),
        }
    }

    /// Deletes the checkpoint segments older than `newest` that the
    /// manifest does not list. Newer ones may be in progress: left alone
    /// (and deleted at the next open if never committed).
    fn compact(&self, newest: u64) -> Result<()> {
        let mut removed = false;
        for (epoch, path) in segment_files(&self.dir)? {
            if epoch < newest && !self.kept.iter().any(|c| c.epoch == epoch) {
                remove_if_exists(&path)?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// The checkpoint segments in `dir`: (epoch, path), ascending.
fn segment_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    numbered_files(dir, PREFIX)
}

/// Writes one checkpoint's segment; committed by [`Checkpoints::commit`].
/// Dropping it abandons the checkpoint (its file is deleted at the next
/// open).
pub struct CheckpointWriter {
    dir: PathBuf,
    epoch: u64,
    writer: SegmentWriter<Entry>,
    ops: BTreeSet<u16>,
    parts: u64,
    bytes: u64,
    chunk_len: usize,
    /// Reused buffer for one part's bytes.
    buf: Vec<u8>,
}

impl CheckpointWriter {
    /// The epoch being written.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Saves operator `op`'s state bytes (opaque here), in parts of at most
    /// the chunk length. One call per operator per checkpoint; a second call
    /// for the same operator is a `DuplicateState` error.
    pub fn put(&mut self, op: u16, bytes: &[u8]) -> Result<()> {
        if self.ops.contains(&op) {
            return Err(StorageError::DuplicateState {
                path: self.writer.path().to_path_buf(),
                op,
            });
        }
        let n = bytes.len().div_ceil(self.chunk_len).max(1);
        if u32::try_from(n).is_err() {
            return Err(StorageError::RecordTooLarge {
                path: self.writer.path().to_path_buf(),
                len: bytes.len(),
                max: self.chunk_len.saturating_mul(u32::MAX as usize),
            });
        }
        self.ops.insert(op);
        let mut chunks = bytes.chunks(self.chunk_len);
        for part in 0..n {
            let chunk = chunks.next().unwrap_or_default();
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            buf.extend_from_slice(chunk);
            let entry = Entry::State {
                op,
                part: u32::try_from(part).expect("checked above: n fits in u32"),
                last: part + 1 == n,
                bytes: buf,
            };
            let appended = self.writer.append(&entry);
            if let Entry::State { bytes, .. } = entry {
                if bytes.capacity() <= self.chunk_len {
                    self.buf = bytes;
                }
            }
            appended?;
            self.parts += 1;
            self.bytes += chunk.len() as u64;
        }
        debug_assert!(chunks.next().is_none());
        Ok(())
    }

    /// The operators given state so far, ascending.
    pub fn operators(&self) -> Vec<u16> {
        self.ops.iter().copied().collect()
    }

    /// Appends the seal and syncs the segment; returns its length.
    fn seal(mut self, sources: &[SourcePoint]) -> Result<u64> {
        let operators = u32::try_from(self.ops.len()).expect("at most 2^16 operators");
        self.writer.append(&Entry::Seal {
            epoch: self.epoch,
            operators,
            parts: self.parts,
            bytes: self.bytes,
            sources: sources.to_vec(),
        })?;
        self.writer.finish()
    }
}

impl std::fmt::Debug for CheckpointWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointWriter")
            .field("epoch", &self.epoch)
            .field("writer", &self.writer)
            .field("operators", &self.ops)
            .field("parts", &self.parts)
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_open_reads_the_newest_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (none, newest) = Checkpoints::open_read_only(dir.path()).expect("empty");
        assert!(newest.is_none() && none.listed().is_empty());
        assert!(!dir.path().join(MANIFEST).exists(), "nothing created");
        let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
        let mut w = cps.begin(1).expect("begin");
        w.put(0, b"state").expect("put");
        cps.commit(w, &[(0, 9)]).expect("commit");
        // A commit in progress (as a live node has): left alone.
        let pending = cps.begin(2).expect("begin");
        let (mut ro, newest) = Checkpoints::open_read_only(dir.path()).expect("read-only");
        let newest = newest.expect("checkpoint 1");
        assert_eq!((newest.epoch(), newest.sources()), (1, &[(0, 9)][..]));
        assert!(
            dir.path().join(numbered(PREFIX, 2)).exists(),
            "not cleaned up"
        );
        let Err(e) = ro.begin(3) else {
            panic!("a read-only begin is refused")
        };
        assert!(e.to_string().contains("read-only"), "{e}");
        drop(pending);
        // Segments without a manifest: refused as `open` refuses them.
        fs::remove_file(dir.path().join(MANIFEST)).expect("remove");
        let Err(e) = Checkpoints::open_read_only(dir.path()) else {
            panic!("refused")
        };
        assert!(matches!(e, StorageError::ManifestMissing { .. }), "{e}");
    }

    #[test]
    fn large_state_is_split_and_joined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut cps, none) = Checkpoints::open(dir.path()).expect("open");
        assert!(none.is_none());
        cps.set_state_chunk_len(7);
        let mut w = cps.begin(1).expect("begin");
        let big: Vec<u8> = (0..100u8).collect();
        w.put(3, &big).expect("put");
        w.put(4, &big[..7]).expect("put");
        w.put(5, &[]).expect("put");
        cps.commit(w, &[]).expect("commit");
        let (_, cp) = Checkpoints::open(dir.path()).expect("reopen");
        let cp = cp.expect("a checkpoint");
        assert_eq!(cp.state_parts(3).expect("parts").len(), 15);
        assert!(matches!(cp.state(3), Some(Cow::Owned(ref b)) if b == &big));
        assert!(matches!(cp.state(4), Some(Cow::Borrowed(b)) if b == &big[..7]));
        assert!(matches!(cp.state(5), Some(Cow::Borrowed(b)) if b.is_empty()));
        assert_eq!(cp.state_len(3), Some(100));
        assert_eq!(cp.operators(), [3, 4, 5]);
        assert!(cp.state(6).is_none());
    }

    #[test]
    fn a_listed_segment_without_its_seal_is_incomplete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
        let mut w = cps.begin(7).expect("begin");
        w.put(1, b"state").expect("put");
        // Synced and listed, but never sealed: a segment cut at a record
        // boundary looks like this, and passes every checksum.
        let len = w.writer.finish().expect("finish");
        let listed = Listed {
            epoch: 7,
            len,
            sources: Vec::new(),
        };
        manifest::replace(
            dir.path(),
            &Manifest {
                generation: 1,
                checkpoints: vec![listed],
            },
        )
        .expect("manifest");
        let err = Checkpoints::open(dir.path()).expect_err("no seal");
        let StorageError::NoValidCheckpoint { skipped, .. } = &err else {
            panic!("{err}");
        };
        assert!(
            matches!(&skipped[..], [StorageError::Incomplete { offset, .. }] if *offset == len),
            "{err}"
        );
    }

    #[test]
    fn a_seal_that_disagrees_is_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
        let mut w = cps.begin(3).expect("begin");
        w.put(1, b"state").expect("put");
        w.bytes += 1; // the seal will claim one byte more than was written
        cps.commit(w, &[(0, 4)])
            .expect("commit writes what it is given");
        let err = Checkpoints::open(dir.path()).expect_err("bad seal");
        assert!(
            matches!(&err, StorageError::NoValidCheckpoint { skipped, .. }
                if matches!(&skipped[..], [StorageError::Invalid { reason, .. }] if reason.contains("seal says"))),
            "{err}"
        );
    }

    #[test]
    fn parts_out_of_order_are_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
        let mut w = cps.begin(1).expect("begin");
        // Part 1 of operator 2 without part 0, written by hand.
        w.writer
            .append(&Entry::State {
                op: 2,
                part: 1,
                last: true,
                bytes: vec![1],
            })
            .expect("append");
        w.parts = 1;
        w.bytes = 1;
        w.ops.insert(2);
        cps.commit(w, &[]).expect("commit writes what it is given");
        let err = Checkpoints::open(dir.path()).expect_err("invalid");
        let StorageError::NoValidCheckpoint { skipped, .. } = &err else {
            panic!("{err}");
        };
        assert!(
            matches!(&skipped[..], [StorageError::Invalid { offset: 32, .. }]),
            "{err}"
        );
    }
}
