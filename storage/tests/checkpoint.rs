//! Checkpoints end to end: commit and reopen (exact state bytes and source
//! resume points), fallback to the previous checkpoint when the newest is
//! damaged, a corrupt manifest, a crash between the checkpoint's segment and
//! the manifest's rename, compaction, misuse, states larger than a record,
//! and random operator -> bytes maps round-tripping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dirigo_storage::{
    Checkpoint, Checkpoints, Region, StorageError, CHECKPOINTS_KEPT, HEADER_LEN, MANIFEST,
    MANIFEST_TMP, MAX_RECORD_LEN, STATE_CHUNK_LEN,
};
use proptest::prelude::*;

type States = BTreeMap<u16, Vec<u8>>;

fn states(epoch: u64) -> States {
    (0..4u16)
        .map(|op| {
            let len = 10 + 37 * op as usize + epoch as usize;
            let bytes = (0..len)
                .map(|i| (i as u64 ^ epoch ^ ((op as u64) << 3)) as u8)
                .collect();
            (op * 3 + 1, bytes)
        })
        .collect()
}

fn sources(epoch: u64) -> Vec<(u16, u64)> {
    vec![(7, 100 * epoch), (2, 10 * epoch + 1)]
}

fn commit(cps: &mut Checkpoints, epoch: u64, states: &States, sources: &[(u16, u64)]) {
    let mut w = cps.begin(epoch).expect("begin");
    assert_eq!(w.epoch(), epoch);
    for (&op, bytes) in states {
        w.put(op, bytes).expect("put");
    }
    cps.commit(w, sources).expect("commit");
    assert_eq!(cps.newest(), Some(epoch));
}

fn assert_checkpoint(cp: &Checkpoint, epoch: u64, states: &States, sources: &[(u16, u64)]) {
    assert_eq!(cp.epoch(), epoch);
    let mut sorted = sources.to_vec();
    sorted.sort();
    assert_eq!(cp.sources(), sorted);
    assert_eq!(cp.operators(), states.keys().copied().collect::<Vec<_>>());
    for (&op, bytes) in states {
        assert_eq!(cp.state(op).as_deref(), Some(&bytes[..]), "op {op}");
        assert_eq!(cp.state_len(op), Some(bytes.len() as u64));
    }
    let missing = (0..=u16::MAX).find(|op| !states.contains_key(op));
    if let Some(op) = missing {
        assert!(cp.state(op).is_none());
    }
}

fn segment(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(format!("ckpt-{epoch:020}.seg"))
}

/// The checkpoint segments in `dir`, by epoch.
fn segment_epochs(dir: &Path) -> Vec<u64> {
    let mut epochs: Vec<u64> = std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().into_string().ok()?;
            name.strip_prefix("ckpt-")?
                .strip_suffix(".seg")?
                .parse()
                .ok()
        })
        .collect();
    epochs.sort();
    epochs
}

/// Record offsets of a segment file, walked with the documented framing
/// (length at o, next record at o + 16 + len rounded up to 16).
fn record_offsets(bytes: &[u8]) -> Vec<u64> {
    let mut offsets = Vec::new();
    let mut at = HEADER_LEN;
    while at + 16 <= bytes.len() {
        offsets.push(at as u64);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 16 + len.div_ceil(16) * 16;
    }
    offsets
}

/// A folder with checkpoints 1 and 2 committed.
fn two_epochs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cps, none) = Checkpoints::open(dir.path()).expect("open");
    assert!(none.is_none());
    commit(&mut cps, 1, &states(1), &sources(1));
    commit(&mut cps, 2, &states(2), &sources(2));
    dir
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_file() {
            std::fs::copy(&p, to.path().join(p.file_name().expect("name"))).expect("copy");
        }
    }
    to
}

// ---------------------------------------------------------------- round trips

#[test]
fn a_fresh_folder_has_no_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app");
    let (cps, cp) = Checkpoints::open(&app).expect("open");
    assert!(cp.is_none());
    assert_eq!(cps.newest(), None);
    assert!(cps.skipped().is_empty());
    assert_eq!(cps.keep_log_from(0), 0);
    assert!(app.join(MANIFEST).is_file(), "an empty manifest is written");
    let (_, cp) = Checkpoints::open(&app).expect("reopen");
    assert!(cp.is_none());
}

#[test]
fn commit_two_epochs_reopen_returns_the_newest() {
    let dir = two_epochs();
    let (cps, cp) = Checkpoints::open(dir.path()).expect("reopen");
    let cp = cp.expect("a checkpoint");
    assert_checkpoint(&cp, 2, &states(2), &sources(2));
    assert_eq!(cp.path(), segment(dir.path(), 2));
    assert!(cps.skipped().is_empty());
    assert_eq!(cps.newest(), Some(2));
    assert_eq!(cps.listed(), [2, 1]);
    assert_eq!(segment_epochs(dir.path()), [1, 2]);
    // Small states are borrowed from the map, not copied.
    assert!(matches!(cp.state(1), Some(std::borrow::Cow::Borrowed(_))));
}

#[test]
fn the_manifest_keeps_the_newest_two_and_compaction_deletes_the_rest() {
    assert_eq!(CHECKPOINTS_KEPT, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
    for epoch in [3, 5, 8, 9] {
        commit(&mut cps, epoch, &states(epoch), &sources(epoch));
    }
    assert_eq!(cps.listed(), [9, 8]);
    assert_eq!(segment_epochs(dir.path()), [8, 9]);
    drop(cps);
    let (cps, cp) = Checkpoints::open(dir.path()).expect("reopen");
    assert_checkpoint(&cp.expect("a checkpoint"), 9, &states(9), &sources(9));
    assert_eq!(cps.newest(), Some(9));
}

#[test]
fn keep_log_from_is_the_oldest_kept_resume_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
    commit(&mut cps, 1, &States::new(), &[(0, 50), (1, 70)]);
    assert_eq!((cps.keep_log_from(0), cps.keep_log_from(1)), (50, 70));
    commit(&mut cps, 2, &States::new(), &[(0, 90), (1, 60), (2, 5)]);
    assert_eq!(cps.keep_log_from(0), 50, "the fallback still needs 50..");
    assert_eq!(cps.keep_log_from(1), 60);
    assert_eq!(cps.keep_log_from(2), 0, "the fallback has no point for 2");
    commit(&mut cps, 3, &States::new(), &[(0, 95), (1, 61), (2, 6)]);
    assert_eq!(
        (
            cps.keep_log_from(0),
            cps.keep_log_from(1),
            cps.keep_log_from(2)
        ),
        (90, 60, 5)
    );
}

/// Incremental chains: `commit_keeping` keeps every checkpoint back to a
/// base, `load` reads any listed one, reopening lists them all again, and
/// the log is kept only back to the newest two (the replay candidates).
#[test]
fn commit_keeping_keeps_the_chain_back_to_its_base() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
    for epoch in 1..=5 {
        let mut w = cps.begin(epoch).expect("begin");
        for (&op, bytes) in &states(epoch) {
            w.put(op, bytes).expect("put");
        }
        cps.commit_keeping(w, &sources(epoch), 2).expect("commit");
    }
    assert_eq!(cps.listed(), vec![5, 4, 3, 2]);
    assert_eq!(segment_epochs(dir.path()), vec![2, 3, 4, 5]);
    let base = cps.load(2).expect("the base loads");
    assert_checkpoint(&base, 2, &states(2), &sources(2));
    assert!(matches!(
        cps.load(1),
        Err(StorageError::NotListed { epoch: 1, .. })
    ));
    // Only the newest and its fallback bound the log.
    assert_eq!(cps.keep_log_from(7), 400);
    drop(cps);
    let (cps, newest) = Checkpoints::open(dir.path()).expect("reopen");
    assert_eq!(newest.map(|c| c.epoch()), Some(5));
    assert_eq!(cps.listed(), vec![5, 4, 3, 2]);
    assert_checkpoint(&cps.load(3).expect("loads"), 3, &states(3), &sources(3));
    // A new base: the old chain goes.
    let mut cps = cps;
    let mut w = cps.begin(6).expect("begin");
    w.put(1, b"full").expect("put");
    cps.commit_keeping(w, &sources(6), 6).expect("commit");
    assert_eq!(cps.listed(), vec![6, 5]);
    assert_eq!(segment_epochs(dir.path()), vec![5, 6]);
}

#[test]
fn state_larger_than_a_record_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
    let big: Vec<u8> = (0..MAX_RECORD_LEN + 5)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
        .collect();
    let mut w = cps.begin(1).expect("begin");
    w.put(4, &big).expect("put");
    w.put(5, b"small").expect("put");
    cps.commit(w, &[(0, 1)]).expect("commit");
    let (_, cp) = Checkpoints::open(dir.path()).expect("reopen");
    let cp = cp.expect("a checkpoint");
    let parts: Vec<&[u8]> = cp.state_parts(4).expect("parts").collect();
    assert_eq!(parts.len(), big.len().div_ceil(STATE_CHUNK_LEN));
    assert!(parts.iter().all(|p| p.len() <= STATE_CHUNK_LEN));
    assert!(
        cp.state(4).as_deref() == Some(&big[..]),
        "joined state differs"
    );
    assert_eq!(cp.state(5).as_deref(), Some(&b"small"[..]));
}

// ---------------------------------------------------------------- damage

/// Opens `dir`, expecting a fallback from checkpoint 2 to checkpoint 1
/// because of `why`.
fn assert_falls_back(dir: &Path, why: impl Fn(&StorageError) -> bool) {
    let (cps, cp) = Checkpoints::open(dir).expect("falls back");
    assert_checkpoint(&cp.expect("checkpoint 1"), 1, &states(1), &sources(1));
    let [skipped] = cps.skipped() else {
        panic!("one skipped: {:?}", cps.skipped());
    };
    assert!(why(skipped), "{skipped}");
    assert!(
        skipped
            .to_string()
            .contains(&segment(dir, 2).display().to_string()),
        "{skipped}"
    );
    assert_eq!(cps.newest(), Some(1));
    // The damaged segment is listed, so kept until the next commit.
    assert_eq!(segment_epochs(dir), [1, 2]);
}

#[test]
fn flipped_byte_in_the_newest_falls_back_to_the_previous() {
    let pristine = two_epochs();
    let path = segment(pristine.path(), 2);
    let bytes = std::fs::read(&path).expect("read");
    let offsets = record_offsets(&bytes);
    let seal = *offsets.last().expect("records");
    // In the header, in the first record's header and payload, in the seal.
    let cases = [
        (5, 0, Region::SegmentHeader),
        (20, 0, Region::SegmentHeader),
        (offsets[0] as usize + 2, offsets[0], Region::RecordHeader),
        (offsets[0] as usize + 30, offsets[0], Region::Payload),
        (offsets[2] as usize + 17, offsets[2], Region::Payload),
        (seal as usize + 16, seal, Region::Payload),
    ];
    for (at, offset, region) in cases {
        let dir = copy_dir(pristine.path());
        let path = segment(dir.path(), 2);
        let mut bad = bytes.clone();
        bad[at] ^= 0x20;
        std::fs::write(&path, &bad).expect("write");
        assert_falls_back(dir.path(), |e| match e {
            StorageError::Checksum {
                path: p,
                offset: o,
                region: r,
            } => p == &path && (*o, *r) == (offset, region),
            // A flipped magic byte is reported as a bad magic.
            StorageError::BadMagic { path: p, .. } => p == &path && at < 8,
            _ => false,
        });
    }
}

#[test]
fn truncated_newest_falls_back_to_the_previous() {
    let pristine = two_epochs();
    let len = std::fs::metadata(segment(pristine.path(), 2))
        .expect("stat")
        .len();
    let bytes = std::fs::read(segment(pristine.path(), 2)).expect("read");
    let seal = *record_offsets(&bytes).last().expect("records");
    // At a record boundary (the seal cut off whole), inside a record, in the
    // header, and to nothing.
    for cut in [seal, seal + 5, len - 1, 40, 10, 0] {
        let dir = copy_dir(pristine.path());
        let path = segment(dir.path(), 2);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.set_len(cut).expect("truncate");
        drop(f);
        assert_falls_back(
            dir.path(),
            |e| matches!(e, StorageError::Incomplete { path: p, offset, .. } if p == &path && *offset == cut),
        );
    }
}

#[test]
fn a_missing_newest_falls_back_to_the_previous() {
    let dir = two_epochs();
    std::fs::remove_file(segment(dir.path(), 2)).expect("remove");
    let (cps, cp) = Checkpoints::open(dir.path()).expect("falls back");
    assert_eq!(cp.expect("checkpoint 1").epoch(), 1);
    assert!(matches!(
        cps.skipped(),
        [StorageError::Io { path, op: "stat", .. }] if path == &segment(dir.path(), 2)
    ));
}

#[test]
fn extra_bytes_after_the_newest_fall_back_to_the_previous() {
    let dir = two_epochs();
    let path = segment(dir.path(), 2);
    let mut bytes = std::fs::read(&path).expect("read");
    let len = bytes.len() as u64;
    bytes.extend_from_slice(&[0; 64]);
    std::fs::write(&path, &bytes).expect("write");
    assert_falls_back(
        dir.path(),
        |e| matches!(e, StorageError::Invalid { offset, .. } if *offset == len),
    );
}

#[test]
fn after_a_fallback_the_next_commit_replaces_the_damaged_one() {
    let dir = two_epochs();
    let path = segment(dir.path(), 2);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[60] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    let (mut cps, cp) = Checkpoints::open(dir.path()).expect("falls back");
    assert_eq!(cp.expect("checkpoint 1").epoch(), 1);
    // Epoch 2 is taken (by the damaged segment): not reused.
    assert!(matches!(
        cps.begin(2),
        Err(StorageError::StaleEpoch {
            epoch: 2,
            newest: 2,
            ..
        })
    ));
    commit(&mut cps, 3, &states(3), &sources(3));
    assert_eq!(cps.listed(), [3, 1], "the fallback is the valid one");
    assert_eq!(segment_epochs(dir.path()), [1, 3]);
    drop(cps);
    let (cps, cp) = Checkpoints::open(dir.path()).expect("reopen");
    assert_checkpoint(&cp.expect("checkpoint 3"), 3, &states(3), &sources(3));
    assert!(cps.skipped().is_empty());
}

#[test]
fn every_listed_checkpoint_damaged_is_an_error() {
    let dir = two_epochs();
    for epoch in [1, 2] {
        let path = segment(dir.path(), epoch);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[50] ^= 4;
        std::fs::write(&path, &bytes).expect("write");
    }
    let err = Checkpoints::open(dir.path()).expect_err("nothing valid");
    match &err {
        StorageError::NoValidCheckpoint { path, skipped } => {
            assert_eq!(path, &dir.path().join(MANIFEST));
            assert_eq!(skipped.len(), 2);
        }
        other => panic!("expected NoValidCheckpoint, got {other}"),
    }
    let msg = err.to_string();
    for epoch in [1, 2] {
        assert!(
            msg.contains(&segment(dir.path(), epoch).display().to_string()),
            "{msg}"
        );
    }
    assert_eq!(segment_epochs(dir.path()), [1, 2], "nothing deleted");
}

#[test]
fn corrupt_manifest_is_an_error_naming_it() {
    let pristine = two_epochs();
    let manifest = pristine.path().join(MANIFEST);
    let bytes = std::fs::read(&manifest).expect("read");
    let mut flipped = bytes.clone();
    flipped[HEADER_LEN + 16 + 3] ^= 0x01;
    let mut header = bytes.clone();
    header[20] ^= 0x01;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("payload byte", flipped),
        ("header byte", header),
        ("torn record", bytes[..bytes.len() - 7].to_vec()),
        ("header only", bytes[..HEADER_LEN].to_vec()),
        ("torn header", bytes[..12].to_vec()),
        ("empty", Vec::new()),
        ("not a segment", b"epoch=2\n".to_vec()),
    ];
    for (what, bad) in cases {
        let dir = copy_dir(pristine.path());
        let path = dir.path().join(MANIFEST);
        std::fs::write(&path, &bad).expect("write");
        let err = Checkpoints::open(dir.path()).expect_err(what);
        let names_it = match &err {
            StorageError::Checksum { path: p, .. }
            | StorageError::Truncated { path: p, .. }
            | StorageError::Incomplete { path: p, .. }
            | StorageError::BadMagic { path: p, .. } => p == &path,
            _ => false,
        };
        assert!(names_it, "{what}: {err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{what}: {err}"
        );
        // Nothing was changed.
        assert_eq!(std::fs::read(&path).expect("read"), bad, "{what}");
        assert_eq!(segment_epochs(dir.path()), [1, 2], "{what}");
    }
}

#[test]
fn a_missing_manifest_beside_segments_is_an_error() {
    let dir = two_epochs();
    std::fs::remove_file(dir.path().join(MANIFEST)).expect("remove");
    let err = Checkpoints::open(dir.path()).expect_err("missing");
    assert!(
        matches!(&err, StorageError::ManifestMissing { path, found }
            if path == &dir.path().join(MANIFEST) && found.len() == 2),
        "{err}"
    );
    assert_eq!(segment_epochs(dir.path()), [1, 2], "nothing deleted");
}

// ---------------------------------------------------------------- crashes

#[test]
fn crash_between_segment_and_manifest_rename_keeps_the_old_checkpoint() {
    let dir = two_epochs();
    // What a commit of epoch 3 leaves when it crashes right before the
    // rename: its synced segment and a complete MANIFEST.tmp listing it.
    let ahead = copy_dir(dir.path());
    {
        let (mut cps, _) = Checkpoints::open(ahead.path()).expect("open");
        commit(&mut cps, 3, &states(3), &sources(3));
    }
    std::fs::copy(segment(ahead.path(), 3), segment(dir.path(), 3)).expect("copy");
    std::fs::copy(ahead.path().join(MANIFEST), dir.path().join(MANIFEST_TMP)).expect("copy");
    // And an abandoned, unsealed writer of epoch 4.
    {
        let (mut cps, _) = Checkpoints::open(ahead.path()).expect("open");
        let mut w = cps.begin(4).expect("begin");
        w.put(1, b"never sealed").expect("put");
    }
    std::fs::copy(segment(ahead.path(), 4), segment(dir.path(), 4)).expect("copy");
    assert_eq!(segment_epochs(dir.path()), [1, 2, 3, 4]);

    let (cps, cp) = Checkpoints::open(dir.path()).expect("open");
    assert_checkpoint(&cp.expect("checkpoint 2"), 2, &states(2), &sources(2));
    assert!(cps.skipped().is_empty(), "leftovers are not damage");
    assert_eq!(cps.newest(), Some(2));
    assert_eq!(segment_epochs(dir.path()), [1, 2], "leftovers deleted");
    assert!(!dir.path().join(MANIFEST_TMP).exists());
}

#[test]
fn a_dropped_writer_leaves_no_checkpoint() {
    let dir = two_epochs();
    {
        let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
        let mut w = cps.begin(3).expect("begin");
        w.put(1, b"never committed").expect("put");
        drop(w);
        // Within the process, the epoch stays taken.
        assert!(matches!(cps.begin(3), Err(StorageError::StaleEpoch { .. })));
        commit(&mut cps, 4, &states(4), &sources(4));
        // Compaction deletes the abandoned older segment too.
        assert_eq!(segment_epochs(dir.path()), [2, 4]);
    }
    let (_, cp) = Checkpoints::open(dir.path()).expect("reopen");
    assert_eq!(cp.expect("checkpoint 4").epoch(), 4);
}

#[test]
fn compaction_deletes_unlisted_segments_only() {
    let dir = two_epochs();
    std::fs::write(dir.path().join("README"), b"not ours").expect("write");
    std::fs::create_dir(dir.path().join("log-0")).expect("mkdir");
    std::fs::write(
        dir.path()
            .join("log-0")
            .join("log-00000000000000000000.seg"),
        b"x",
    )
    .expect("write");
    let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
    // A writer of a newer epoch in progress while an older one commits.
    let newer = cps.begin(10).expect("begin");
    let older = cps.begin(11).expect("begin");
    let _ = newer;
    let mut w = older;
    w.put(1, b"s").expect("put");
    cps.commit(w, &[]).expect("commit");
    // 1 is no longer listed: deleted. 10 is older than 11 and unlisted: deleted.
    assert_eq!(cps.listed(), [11, 2]);
    assert_eq!(segment_epochs(dir.path()), [2, 11]);
    assert_eq!(
        std::fs::read(dir.path().join("README")).expect("read"),
        b"not ours"
    );
    assert!(dir
        .path()
        .join("log-0")
        .join("log-00000000000000000000.seg")
        .exists());
}

#[test]
fn segments_newer_than_the_commit_are_left_to_open() {
    let dir = two_epochs();
    let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
    let older = cps.begin(5).expect("begin");
    let newer = cps.begin(6).expect("begin");
    cps.commit(older, &[]).expect("commit");
    assert_eq!(
        segment_epochs(dir.path()),
        [2, 5, 6],
        "6 may be in progress"
    );
    // 6 is newer than 5: it can still be committed.
    cps.commit(newer, &[]).expect("commit");
    assert_eq!(segment_epochs(dir.path()), [5, 6]);
}

// ---------------------------------------------------------------- misuse

#[test]
fn misuse_is_refused() {
    let dir = two_epochs();
    let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
    for epoch in [0, 1, 2] {
        assert!(
            matches!(cps.begin(epoch), Err(StorageError::StaleEpoch { epoch: e, newest: 2, .. }) if e == epoch)
        );
    }
    let mut w = cps.begin(3).expect("begin");
    w.put(9, b"a").expect("put");
    let err = w.put(9, b"b").expect_err("twice");
    assert!(
        matches!(&err, StorageError::DuplicateState { op: 9, path } if path == &segment(dir.path(), 3)),
        "{err}"
    );
    assert_eq!(w.operators(), [9]);
    let err = cps.commit(w, &[(1, 5), (1, 6)]).expect_err("dup source");
    assert!(
        matches!(err, StorageError::DuplicateSource { source_id: 1, .. }),
        "{err}"
    );
    // A begun-then-committed-out-of-order writer is stale.
    let five = cps.begin(5).expect("begin");
    let six = cps.begin(6).expect("begin");
    cps.commit(six, &[]).expect("commit");
    assert!(matches!(
        cps.commit(five, &[]),
        Err(StorageError::StaleEpoch {
            epoch: 5,
            newest: 6,
            ..
        })
    ));
    let (_, cp) = Checkpoints::open(dir.path()).expect("reopen");
    assert_eq!(cp.expect("checkpoint 6").epoch(), 6);
}

// ---------------------------------------------------------------- properties

fn state_map() -> impl Strategy<Value = States> {
    prop::collection::btree_map(
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..300),
        0..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn prop_states_round_trip_through_commit_and_open(
        first in state_map(),
        second in state_map(),
        srcs in prop::collection::btree_map(any::<u16>(), any::<u64>(), 0..5),
        chunk in 1usize..80,
        epoch in 0u64..1_000_000,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
        cps.set_state_chunk_len(chunk);
        let srcs: Vec<(u16, u64)> = srcs.into_iter().collect();
        commit(&mut cps, epoch, &first, &[]);
        commit(&mut cps, epoch + 1, &second, &srcs);
        drop(cps);
        let (cps, cp) = Checkpoints::open(dir.path()).expect("reopen");
        let cp = cp.expect("a checkpoint");
        assert_checkpoint(&cp, epoch + 1, &second, &srcs);
        for (&op, bytes) in &second {
            let parts: Vec<&[u8]> = cp.state_parts(op).expect("parts").collect();
            prop_assert_eq!(parts.len(), bytes.len().div_ceil(chunk).max(1));
            prop_assert_eq!(parts.concat(), bytes.clone());
        }
        prop_assert_eq!(cps.listed(), vec![epoch + 1, epoch]);
    }
}

/// A stray segment numbered near `u64::MAX` (copied in by hand, or a bad
/// rename) is refused at open, naming the file: taken as the newest epoch
/// it would overflow the next checkpoint's number.
#[test]
fn an_epoch_near_the_end_of_u64_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut cps, _) = Checkpoints::open(dir.path()).expect("open");
        commit(&mut cps, 1, &states(1), &sources(1));
    }
    let stray = segment(dir.path(), u64::MAX);
    std::fs::copy(segment(dir.path(), 1), &stray).expect("copy");
    match Checkpoints::open(dir.path()) {
        Err(StorageError::Invalid { path, .. }) => assert_eq!(path, stray),
        Err(e) => panic!("wrong error: {e}"),
        Ok((cps, _)) => panic!("opened; the next epoch would be {}", cps.next_epoch()),
    }
}
