//! The `MANIFEST` of an app's checkpoint folder: which checkpoints exist,
//! newest first, and where each one lets the sources' logs resume.
//!
//! The manifest is the single source of truth for what is committed: a
//! checkpoint segment the manifest does not list does not exist, whatever
//! lies in the folder. That is what makes a checkpoint commit atomic: its
//! segment is written and synced first, then the manifest is *replaced*
//! ([`replace`]): written whole to `MANIFEST.tmp`, fdatasynced, renamed over
//! `MANIFEST`, and the folder fsynced so the rename itself survives a crash.
//! A crash leaves either the old manifest or the new one, never a mix.
//!
//! On disk the manifest is a segment file (see `format`) holding exactly one
//! record, a [`ManifestRecord`]; the segment id is the manifest's
//! generation, one more at every replacement. So it gets the segment
//! format's checksums and bytecheck validation for free, and a torn or
//! corrupt manifest is an error naming `MANIFEST` and the byte, never a
//! guess. [`read`] also checks what the checksums cannot: exactly one record,
//! epochs strictly descending, source ids unique.
//!
//! Not here: choosing which checkpoints to list, validating the checkpoint
//! segments, or deleting them (`checkpoint` does all three).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::disk;
use crate::error::{Result, StorageError};
use crate::format::{HEADER_LEN, MAX_SEGMENT_NUMBER};
use crate::uring::Uring;
use crate::{Segment, SegmentWriter};

/// File name of the manifest, in the app's checkpoint folder.
pub const MANIFEST: &str = "MANIFEST";
/// File name the next manifest is written under before it is renamed.
pub const MANIFEST_TMP: &str = "MANIFEST.tmp";

/// The one record of a manifest segment.
#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
pub(crate) struct ManifestRecord {
    /// The listed checkpoints, newest (highest epoch) first.
    pub checkpoints: Vec<Listed>,
}

/// One checkpoint as the manifest lists it.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub epoch: u64,
    /// Length of the checkpoint's segment file when it was committed.
    pub len: u64,
    /// Resume points of the sources' logs, ascending by source id.
    pub sources: Vec<SourcePoint>,
}

/// Where one source's log resumes after a checkpoint.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourcePoint {
    pub source: u16,
    pub next_seq: u64,
}

/// A manifest as read from or written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// The segment id of the manifest file; one more at every replacement.
    pub generation: u64,
    /// Newest first.
    pub checkpoints: Vec<Listed>,
}

impl Listed {
    /// The resume points as the public API hands them out.
    pub(crate) fn source_pairs(&self) -> Vec<(u16, u64)> {
        self.sources
            .iter()
            .map(|p| (p.source, p.next_seq))
            .collect()
    }
}

/// Reads and validates `dir/MANIFEST`; `None` if there is no such file.
pub(crate) fn read(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    match fs::symlink_metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StorageError::Io {
                path,
                op: "stat",
                source,
            })
        }
    }
    let segment = Segment::<ManifestRecord>::open(&path)?;
    let mut records = segment.iter();
    let Some((offset, record)) = records.next() else {
        return Err(StorageError::Incomplete {
            path,
            offset: segment.valid_len(),
            reason: "the manifest holds no record".into(),
        });
    };
    debug_assert_eq!(offset, HEADER_LEN as u64);
    if let Some((extra, _)) = records.next() {
        return Err(StorageError::Invalid {
            path,
            offset: extra,
            reason: "a manifest holds exactly one record; this is a second one".into(),
        });
    }
    let invalid = |reason: String| StorageError::Invalid {
        path: path.clone(),
        offset,
        reason,
    };
    let mut checkpoints: Vec<Listed> = Vec::with_capacity(record.checkpoints.len());
    for c in record.checkpoints.iter() {
        let listed = Listed {
            epoch: c.epoch.to_native(),
            len: c.len.to_native(),
            sources: c
                .sources
                .iter()
                .map(|s| SourcePoint {
                    source: s.source.to_native(),
                    next_seq: s.next_seq.to_native(),
                })
                .collect(),
        };
        if let Some(newer) = checkpoints.last() {
            if listed.epoch >= newer.epoch {
                return Err(invalid(format!(
                    "epochs are not strictly descending: {} follows {}",
                    listed.epoch, newer.epoch
                )));
            }
        }
        if let Some(w) = listed
            .sources
            .windows(2)
            .find(|w| w[0].source >= w[1].source)
        {
            return Err(invalid(format!(
                "checkpoint {}: source ids are not strictly ascending: {} then {}",
                listed.epoch, w[0].source, w[1].source
            )));
        }
        if listed.len < HEADER_LEN as u64 {
            return Err(invalid(format!(
                "checkpoint {}: recorded length {} is shorter than a segment header",
                listed.epoch, listed.len
            )));
        }
        checkpoints.push(listed);
    }
    Ok(Some(Manifest {
        generation: segment.id(),
        checkpoints,
    }))
}

/// Atomically replaces `dir/MANIFEST` with `manifest`: write `MANIFEST.tmp`
/// (through `SegmentWriter`, so with io_uring and fdatasync), rename it over
/// `MANIFEST`, fsync the folder. When this returns `Ok`, the new manifest is
/// durable; after a crash before that, the folder holds either manifest.
pub(crate) fn replace(dir: &Path, manifest: &Manifest) -> Result<()> {
    debug_assert!(manifest
        .checkpoints
        .windows(2)
        .all(|w| w[0].epoch > w[1].epoch));
    let tmp = dir.join(MANIFEST_TMP);
    remove_if_exists(&tmp)?;
    let mut w = SegmentWriter::<ManifestRecord>::create(&tmp, manifest.generation)?;
    w.append(&ManifestRecord {
        checkpoints: manifest.checkpoints.clone(),
    })?;
    w.finish()?;
    let path = dir.join(MANIFEST);
    disk::rename(&tmp, &path).map_err(|source| StorageError::Io {
        path: path.clone(),
        op: "rename MANIFEST.tmp over",
        source,
    })?;
    sync_dir(dir)
}

/// Removes `path`; a file that is already gone is fine.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match disk::remove(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StorageError::Io {
            path: path.to_path_buf(),
            op: "remove",
            source,
        }),
    }
}

/// fsync of a folder through io_uring (and the [`disk`] seam): makes its
/// entries (new files, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let mut ring = Uring::new().map_err(|source| StorageError::Io {
        path: dir.to_path_buf(),
        op: "io_uring setup",
        source,
    })?;
    disk::sync_dir_at(dir, &mut ring)
}

/// The names in `dir` (not recursive); entries whose names are not UTF-8
/// are skipped, since no file this crate owns has such a name.
pub(crate) fn list(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let io = |source| StorageError::Io {
        path: dir.to_path_buf(),
        op: "read directory",
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push((name, entry.path()));
        }
    }
    names.sort();
    Ok(names)
}

/// Parses `<prefix><20 decimal digits>.seg`, the name of a numbered segment.
pub(crate) fn parse_numbered(name: &str, prefix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The numbered segment files (`<prefix><n>.seg`) in `dir`, ascending by
/// number; other names are not the caller's. A number above
/// `MAX_SEGMENT_NUMBER` is refused, naming the file: counting on from it
/// would overflow.
pub(crate) fn numbered_files(dir: &Path, prefix: &str) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for (name, path) in list(dir)? {
        let Some(n) = parse_numbered(&name, prefix) else {
            continue;
        };
        if !path.is_file() {
            continue;
        }
        if n > MAX_SEGMENT_NUMBER {
            return Err(StorageError::Invalid {
                path,
                offset: 0,
                reason: format!(
                    "its name numbers it {n}, above the largest segment number \
                     {MAX_SEGMENT_NUMBER}"
                ),
            });
        }
        out.push((n, path));
    }
    Ok(out)
}

/// `<prefix><n as 20 digits>.seg`: names sort in numeric order.
pub(crate) fn numbered(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:020}.seg")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(epoch: u64, sources: &[(u16, u64)]) -> Listed {
        Listed {
            epoch,
            len: 100,
            sources: sources
                .iter()
                .map(|&(source, next_seq)| SourcePoint { source, next_seq })
                .collect(),
        }
    }

    #[test]
    fn replace_then_read_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()).expect("read"), None);
        let m = Manifest {
            generation: 3,
            checkpoints: vec![listed(9, &[(0, 10), (4, 7)]), listed(2, &[])],
        };
        replace(dir.path(), &m).expect("replace");
        assert_eq!(read(dir.path()).expect("read"), Some(m.clone()));
        assert!(!dir.path().join(MANIFEST_TMP).exists());
        let next = Manifest {
            generation: 4,
            checkpoints: vec![listed(10, &[(1, 1)])],
        };
        replace(dir.path(), &next).expect("replace");
        assert_eq!(read(dir.path()).expect("read"), Some(next));
    }

    #[test]
    fn unordered_epochs_are_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(MANIFEST);
        let mut w = SegmentWriter::<ManifestRecord>::create(&path, 1).expect("create");
        w.append(&ManifestRecord {
            checkpoints: vec![listed(1, &[]), listed(2, &[])],
        })
        .expect("append");
        w.finish().expect("finish");
        let err = read(dir.path()).expect_err("unordered");
        assert!(
            matches!(&err, StorageError::Invalid { path: p, offset: 32, .. } if p == &path),
            "{err}"
        );
    }

    #[test]
    fn duplicate_sources_are_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(MANIFEST);
        let mut w = SegmentWriter::<ManifestRecord>::create(&path, 1).expect("create");
        w.append(&ManifestRecord {
            checkpoints: vec![listed(1, &[(3, 1), (3, 2)])],
        })
        .expect("append");
        w.finish().expect("finish");
        assert!(matches!(
            read(dir.path()),
            Err(StorageError::Invalid { .. })
        ));
    }

    #[test]
    fn names_parse_strictly() {
        assert_eq!(parse_numbered(&numbered("ckpt-", 42), "ckpt-"), Some(42));
        assert_eq!(
            parse_numbered(&numbered("log-", u64::MAX), "log-"),
            Some(u64::MAX)
        );
        for bad in [
            "ckpt-42.seg",
            "ckpt-0000000000000000004x.seg",
            "ckpt-00000000000000000042.seg.tmp",
            "log-00000000000000000042.seg",
            "ckpt-99999999999999999999.seg", // over u64::MAX
        ] {
            assert_eq!(parse_numbered(bad, "ckpt-"), None, "{bad}");
        }
    }
}
