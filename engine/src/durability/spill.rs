//! Dormant state in segment files: what lets a shard host many more virtual
//! actors than fit in memory.
//!
//! When a durable operator's actor is deactivated (idle for
//! `idle_deactivate`), its shard archives the state and writes it to a
//! segment file of its own, `<app dir>/dormant/s<shard>-<op>-<n>.seg`, and
//! drops the state from memory; the protocol's `Dormant` record (epoch,
//! counts) stays. The next message maps the file, which is validated
//! (framing, checksums, bytecheck) before any byte is used, deserializes the
//! state from the map and deletes the file: the actor's cold start.
//!
//! A spill file is not a durability point: it is written to the page cache
//! (no fdatasync) and only ever read back by the shard that wrote it, in the
//! same run. Checkpoints and the ingress log are what recovery uses; a new
//! deploy clears the folder (`recovery::open`).
//!
//! Large states are split into records of at most `limits::SPILL_CHUNK`
//! bytes (a segment record holds at most `MAX_RECORD_LEN`).

use std::path::{Path, PathBuf};

use dirigo_storage::{Segment, SegmentWriter, StorageError};

use crate::func::{aligned_copy, ErasedState, PersistError, Restore};
use crate::limits::SPILL_CHUNK;

/// The folder of an app's spill files.
pub(crate) fn dir_of(app_dir: &Path) -> PathBuf {
    app_dir.join("dormant")
}

/// Why a spilled state could not be brought back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpillError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Persist(#[from] PersistError),
}

/// Write an archived state to a new spill file `path` (segment id `id`).
/// Returns the file's length.
pub(crate) fn write(path: &Path, id: u64, archived: &[u8]) -> Result<u64, StorageError> {
    let mut w = SegmentWriter::<Vec<u8>>::create(path, id)?;
    for chunk in archived.chunks(SPILL_CHUNK) {
        w.append(&chunk.to_vec())?;
    }
    // Into the page cache, not to the disk: see the module comment.
    w.flush()?;
    Ok(w.len())
}

/// Map, validate and restore the state in spill file `path`, then delete
/// the file.
pub(crate) fn read(path: &Path, restore: Restore) -> Result<Box<dyn ErasedState>, SpillError> {
    let seg = Segment::<Vec<u8>>::open(path)?;
    // One copy into an aligned buffer, which rkyv then reads in place.
    let len = seg.iter().map(|(_, p)| p.len()).sum();
    let joined = aligned_copy(seg.iter().map(|(_, p)| p.as_slice()), len);
    let state = restore(&joined)?;
    drop(joined);
    drop(seg);
    let _ = std::fs::remove_file(path);
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::func::{DurableState, Keyed, StateCodec};

    fn round_trip(entries: u64, value_len: usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut k: Keyed<Vec<u8>> = Keyed::fresh();
        for i in 0..entries {
            k.insert(i, vec![i as u8; value_len]);
        }
        let bytes = k.spill().expect("archives");
        let path = dir.path().join("s0-1-1.seg");
        write(&path, 1, &bytes).expect("writes");
        let codec = StateCodec::of::<Keyed<Vec<u8>>>();
        let back = read(&path, codec.unspill).expect("reads back");
        let back = back
            .into_any()
            .downcast::<Keyed<Vec<u8>>>()
            .expect("the state type");
        assert_eq!(back.len(), entries as usize);
        // Changes not yet checkpointed survive the spill.
        assert_eq!(back.changed().map(|c| c.len()), Some(entries as usize));
        for i in 0..entries {
            assert_eq!(back.get(i).map(Vec::len), Some(value_len));
            assert_eq!(back.get(i).and_then(|v| v.first()).copied(), Some(i as u8));
        }
        assert!(!path.exists(), "the file is deleted once read");
    }

    #[test]
    fn small_state_round_trips() {
        round_trip(100, 10);
    }

    #[test]
    fn state_larger_than_a_chunk_round_trips() {
        round_trip(3, SPILL_CHUNK / 2 + 7);
    }

    #[test]
    fn a_damaged_spill_is_an_error_not_a_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s0-1-2.seg");
        let mut k: Keyed<u64> = Keyed::fresh();
        write(&path, 2, &k.spill().expect("archives")).expect("writes");
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        let codec = StateCodec::of::<Keyed<u64>>();
        assert!(matches!(
            read(&path, codec.unspill),
            Err(SpillError::Storage(_))
        ));
    }
}
