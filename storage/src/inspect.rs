//! Read-only reports on what is on disk, for a person or a tool looking at
//! a data folder: a segment's framing and checksums without knowing its
//! record type, a checkpoint folder's manifest and each listed
//! checkpoint's contents, an ingress log's segments and their ranges of
//! sequence numbers.
//!
//! Nothing here writes, deletes or locks: unlike [`Checkpoints::open`]
//! (which cleans up an interrupted commit) these can run beside a live
//! node. Damage is reported, not returned as an error: every report says
//! where its file's first damaged structure is (file and byte offset, as
//! [`StorageError`] names them), and what came before it still counts.
//!
//! [`Checkpoints::open`]: crate::Checkpoints::open

use std::fs;
use std::path::{Path, PathBuf};

use crate::checkpoint::{self, Checkpoint};
use crate::error::{Result, StorageError};
use crate::format::{self, SegmentHeader, HEADER_LEN};
use crate::manifest::{self, numbered_files, MANIFEST, MANIFEST_TMP};

/// A segment file's framing, checked record by record.
#[derive(Debug)]
pub struct SegmentReport {
    /// The file.
    pub path: PathBuf,
    /// Its length, bytes.
    pub file_len: u64,
    /// The id its header names; `None` when the header is damaged.
    pub id: Option<u64>,
    /// Whole records before the first damage (or the end).
    pub records: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// The first damage: file, byte offset, what.
    pub damage: Option<StorageError>,
    /// The damage runs to the end of the file: a record cut short, or
    /// nothing but zeros from it on (a write not yet whole on disk). What a
    /// crash or a write in progress leaves; a flipped byte with records
    /// after it is not this.
    pub ends_torn: bool,
}

/// Check a segment's header and every record's framing and checksums (not
/// what the payloads hold: that needs their type), through a read-only
/// map (a checkpoint segment may be gigabytes). `Err` only when the file
/// cannot be read.
pub fn segment(path: &Path) -> Result<SegmentReport> {
    let io = |op| {
        move |source| StorageError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    let file = fs::File::open(path).map_err(io("open"))?;
    // An empty file cannot be mapped; it has no header either.
    let map = if file.metadata().map_err(io("stat"))?.len() == 0 {
        None
    } else {
        // SAFETY: memmap2 requires that the mapped bytes are not changed
        // while the map lives. Segment files are never changed in place,
        // only appended to past their end (the crate's invariant), which
        // does not touch the bytes mapped here; a file truncated by another
        // process would fault (SIGBUS), not hand out changed bytes. The
        // map is read once, below, and dropped.
        Some(unsafe { memmap2::Mmap::map(&file) }.map_err(io("mmap"))?)
    };
    let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
    let file_len = bytes.len() as u64;
    let mut r = SegmentReport {
        path: path.to_path_buf(),
        file_len,
        id: None,
        records: 0,
        payload_bytes: 0,
        damage: None,
        ends_torn: false,
    };
    let header = match SegmentHeader::decode(bytes) {
        Ok(h) => h,
        Err(f) => {
            r.damage = Some(f.at(path, file_len));
            return Ok(r);
        }
    };
    r.id = Some(header.id);
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        match format::check_record(bytes, at, header.id) {
            Ok(frame) => {
                r.records += 1;
                r.payload_bytes += frame.payload.len() as u64;
                at = frame.end;
            }
            Err(f) => {
                let e = f.at(path, file_len);
                r.ends_torn = matches!(e, StorageError::Truncated { .. })
                    || bytes[at..].iter().all(|&b| b == 0);
                r.damage = Some(e);
                break;
            }
        }
    }
    Ok(r)
}

/// One checkpoint the manifest lists.
#[derive(Debug)]
pub struct ListedCheckpoint {
    /// Its epoch.
    pub epoch: u64,
    /// Its segment.
    pub path: PathBuf,
    /// Its length as the manifest recorded it.
    pub len: u64,
    /// Where each source's log resumes after it: `(source, next seq)`.
    pub sources: Vec<(u16, u64)>,
    /// Each state it holds: `(key, bytes)`, as written
    /// ([`CheckpointWriter::put`](crate::CheckpointWriter::put)); empty
    /// when damaged.
    pub states: Vec<(u16, u64)>,
    /// Why it cannot be loaded, if it cannot (every check `open` makes).
    pub damage: Option<StorageError>,
}

/// A checkpoint folder as it is.
#[derive(Debug, Default)]
pub struct CheckpointFolder {
    /// The manifest's generation; `None` without a manifest.
    pub generation: Option<u64>,
    /// The checkpoints it lists, newest first.
    pub listed: Vec<ListedCheckpoint>,
    /// Checkpoint segments it does not list (an interrupted commit's, or
    /// older ones not yet deleted), with their framing.
    pub unlisted: Vec<SegmentReport>,
    /// A `MANIFEST.tmp` is there (a commit stopped before its rename).
    pub manifest_tmp: bool,
    /// The manifest itself is damaged (nothing is listed then).
    pub manifest_damage: Option<StorageError>,
}

/// Report on the checkpoint folder `dir` (an app's folder).
pub fn checkpoints(dir: &Path) -> Result<CheckpointFolder> {
    let mut f = CheckpointFolder {
        manifest_tmp: dir.join(MANIFEST_TMP).exists(),
        ..CheckpointFolder::default()
    };
    let files = numbered_files(dir, checkpoint::PREFIX)?;
    let listed = match manifest::read(dir) {
        Ok(Some(m)) => {
            f.generation = Some(m.generation);
            m.checkpoints
        }
        Ok(None) => Vec::new(),
        Err(e) => {
            f.manifest_damage = Some(e);
            Vec::new()
        }
    };
    for l in &listed {
        let loaded = Checkpoint::load(dir, l);
        f.listed.push(ListedCheckpoint {
            epoch: l.epoch,
            path: dir.join(manifest::numbered(checkpoint::PREFIX, l.epoch)),
            len: l.len,
            sources: l.sources.iter().map(|s| (s.source, s.next_seq)).collect(),
            states: loaded.as_ref().map_or_else(|_| Vec::new(), states_of),
            damage: loaded.err(),
        });
    }
    for (epoch, path) in files {
        if !listed.iter().any(|l| l.epoch == epoch) {
            f.unlisted.push(segment(&path)?);
        }
    }
    Ok(f)
}

fn states_of(c: &Checkpoint) -> Vec<(u16, u64)> {
    c.operators()
        .into_iter()
        .map(|k| (k, c.state_len(k).unwrap_or(0)))
        .collect()
}

/// One segment of an ingress log.
#[derive(Debug)]
pub struct LogSegment {
    /// The seq of its first record (its name says).
    pub first_seq: u64,
    /// Its framing: `records` whole records hold seqs
    /// `first_seq .. first_seq + records`.
    pub report: SegmentReport,
    /// Its damage is a torn tail: it runs to the end of the file
    /// (`SegmentReport::ends_torn`: a crash's cut, or the record being
    /// written beside a live node), in the last segment or where the next
    /// segment starts exactly at the seq the valid prefix ends. What follows it was never
    /// acknowledged; recovery keeps the records before it.
    ///
    /// [`IngressLog::open`]: crate::IngressLog::open
    pub torn_tail: bool,
}

/// Report on the ingress log folder `dir`, its segments in seq order.
pub fn log(dir: &Path) -> Result<Vec<LogSegment>> {
    let files = numbered_files(dir, crate::log::PREFIX)?;
    let mut out = Vec::with_capacity(files.len());
    for (i, (first_seq, path)) in files.iter().enumerate() {
        let report = segment(path)?;
        let end = first_seq.saturating_add(report.records);
        let next = files.get(i + 1).map(|f| f.0);
        let torn_tail = report.ends_torn && next.is_none_or(|n| n == end);
        out.push(LogSegment {
            first_seq: *first_seq,
            report,
            torn_tail,
        });
    }
    Ok(out)
}

/// Whether `dir` holds a checkpoint manifest.
pub fn has_manifest(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Checkpoints, IngressLog, SegmentWriter};

    #[test]
    fn a_segment_is_checked_to_its_first_damaged_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.seg");
        let mut w = SegmentWriter::<Vec<u8>>::create(&p, 7).unwrap();
        let second = {
            w.append(&vec![1u8; 40]).unwrap();
            let at = w.append(&vec![2u8; 40]).unwrap();
            w.append(&vec![3u8; 40]).unwrap();
            w.sync().unwrap();
            at
        };
        let r = segment(&p).unwrap();
        assert_eq!((r.id, r.records, r.damage.is_none()), (Some(7), 3, true));
        let mut bytes = fs::read(&p).unwrap();
        bytes[second as usize + 20] ^= 0xff; // in the second payload
        fs::write(&p, &bytes).unwrap();
        let r = segment(&p).unwrap();
        assert_eq!(r.records, 1);
        let d = r.damage.unwrap();
        assert_eq!(d.offset(), Some(second), "{d}");
        assert!(d.to_string().contains("x.seg"), "{d}");
    }

    #[test]
    fn a_folder_lists_its_checkpoints_and_logs_without_changing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path();
        let mut log = IngressLog::<u64>::open(app.join("log"), 1 << 20).unwrap();
        for i in 0..5 {
            log.append(&i).unwrap();
        }
        log.commit().unwrap();
        let (mut c, _) = Checkpoints::open(app).unwrap();
        let mut w = c.begin(1).unwrap();
        w.put(0, b"zero").unwrap();
        w.put(3, &[9; 100]).unwrap();
        c.commit(w, &[(0, 5)]).unwrap();
        // An interrupted commit's leftover stays where it is.
        let w = c.begin(2).unwrap();
        drop(w);
        let before: Vec<_> = fs::read_dir(app)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let f = checkpoints(app).unwrap();
        assert_eq!(f.listed.len(), 1);
        let l = &f.listed[0];
        assert_eq!((l.epoch, l.sources.clone()), (1, vec![(0, 5)]));
        assert_eq!(l.states, [(0, 4), (3, 100)]);
        assert!(l.damage.is_none());
        assert_eq!(f.unlisted.len(), 1);
        let logs = log_report(app);
        assert_eq!((logs[0].first_seq, logs[0].report.records), (0, 5));
        let after: Vec<_> = fs::read_dir(app)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(before, after);
        // A damaged checkpoint says where.
        let mut bytes = fs::read(&l.path).unwrap();
        let end = bytes.len();
        bytes[end - 8] ^= 1;
        fs::write(&l.path, &bytes).unwrap();
        let f = checkpoints(app).unwrap();
        let d = f.listed[0].damage.as_ref().expect("damaged");
        assert!(d.offset().is_some(), "{d}");
    }

    #[test]
    fn a_cut_or_zeroed_tail_is_torn_and_a_flip_before_records_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = IngressLog::<u64>::open(dir.path().join("log"), 1 << 20).unwrap();
        for i in 0..8 {
            log.append(&i).unwrap();
        }
        log.commit().unwrap();
        drop(log);
        let seg = log_report(dir.path())[0].report.path.clone();
        let whole = fs::read(&seg).unwrap();
        let check = |bytes: &[u8]| {
            fs::write(&seg, bytes).unwrap();
            let l = log_report(dir.path());
            (
                l[0].report.records,
                l[0].torn_tail,
                l[0].report.damage.is_some(),
            )
        };
        // Cut inside the last record: torn, seven records before it.
        assert_eq!(check(&whole[..whole.len() - 5]), (7, true, true));
        // Zeros where the last record should be: torn.
        let mut zeroed = whole.clone();
        let n = zeroed.len();
        zeroed[n - 32..].fill(0);
        assert_eq!(check(&zeroed), (7, true, true));
        // A flipped byte with records after it: damage, not a tail.
        let mut flipped = whole.clone();
        flipped[HEADER_LEN + 4] ^= 1;
        assert_eq!(check(&flipped), (0, false, true));
        assert_eq!(check(&whole), (8, false, false));
    }

    fn log_report(app: &Path) -> Vec<LogSegment> {
        log(&app.join("log")).unwrap()
    }
}
