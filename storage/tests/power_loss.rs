//! Power loss, at the storage level: a log with rotations and checkpoints
//! is written under a [`Watch`], and at many points a power-loss image of
//! the folder is built from the seam's records (every file cut back to the
//! length it had when last made durable; every entry never made durable in
//! its folder dropped, or kept with only the data it synced, so empty
//! unless fdatasynced). Each image must open (no `SequenceGap`, no damage)
//! and, restored from its newest checkpoint and replayed after it, apply
//! every committed record exactly once, in order.
//!
//! A SIGKILL keeps the page cache, so the crash tests cannot see a missing
//! fsync; these can: with the syncs made no-ops, nothing is recorded as
//! durable and the images lose committed records.

use std::path::Path;

use dirigo_storage::disk::{Loss, Watch};
use dirigo_storage::rkyv::{self, rancor};
use dirigo_storage::{Checkpoints, IngressLog};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct Rec {
    seq: u64,
    pad: String,
}

fn rec(seq: u64) -> Rec {
    Rec {
        seq,
        pad: "p".repeat((seq % 37) as usize),
    }
}

/// Small segments, so requests rotate them often.
const SEGMENT_BYTES: u64 = 512;

/// A checkpoint's state of source 0: the count of records it covers and
/// the sum of their seqs (what applying them built).
fn state_of(n: u64) -> Vec<u8> {
    let sum: u64 = (0..n).sum();
    [n.to_le_bytes(), sum.to_le_bytes()].concat()
}

/// Recovers the app folder `app` (an image): restores the newest
/// checkpoint, replays the log after its position, and returns the seqs
/// applied, in order (the checkpoint's own as `0..n`).
fn recover(app: &Path) -> Vec<u64> {
    let (_, newest) = Checkpoints::open(app).expect("the image's checkpoints open");
    let log =
        IngressLog::<Rec>::open(app.join("log"), SEGMENT_BYTES).expect("the image's log opens");
    let mut applied = Vec::new();
    let from = match newest {
        Some(cp) => {
            let bytes = cp.state(0).expect("state of source 0");
            let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            assert_eq!(&bytes[..], &state_of(n)[..], "the checkpoint's state");
            assert_eq!(cp.sources(), [(0, n)], "its position is what it covers");
            applied.extend(0..n);
            n
        }
        None => log.first_seq(),
    };
    log.replay(from, |seq, a| {
        let r = rkyv::deserialize::<Rec, rancor::Error>(a).expect("deserialize");
        assert_eq!(r, rec(seq), "record {seq}");
        applied.push(seq);
        Ok(())
    })
    .expect("replay");
    applied
}

/// Builds both images of the watched folder now, recovers each, and checks
/// that every record below `committed` is applied exactly once (and nothing
/// but a prefix of what was appended, `appended`). Returns the bytes and
/// entries the images lost.
fn check_images(watch: &Watch, committed: u64, appended: u64, at: &str) -> u64 {
    let mut lost = 0;
    for loss in [Loss::Dropped, Loss::Kept] {
        let out = tempfile::tempdir().expect("tempdir");
        let image = watch.image(out.path(), loss).expect("image");
        lost += image.cut_bytes + (image.dropped + image.kept) as u64;
        let applied = recover(&out.path().join("app"));
        let m = applied.len() as u64;
        assert!(
            applied.iter().copied().eq(0..m),
            "{at}, {loss:?}: applied out of order or twice: {applied:?}"
        );
        assert!(
            (committed..=appended).contains(&m),
            "{at}, {loss:?}: {m} records applied, {committed} were committed, {appended} appended"
        );
    }
    lost
}

/// Requests of 1..12 records, a commit after most, a checkpoint (and log
/// compaction) every few, and a power-loss image of both kinds after every
/// step, uncommitted appends and rotations included.
#[test]
fn every_power_loss_image_opens_and_keeps_every_committed_record_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let watch = Watch::new(root.path());
    let app = root.path().join("app");
    let (mut ckpts, none) = Checkpoints::open(&app).expect("checkpoints");
    assert!(none.is_none());
    let mut log = IngressLog::<Rec>::open(app.join("log"), SEGMENT_BYTES).expect("log");
    let (mut committed, mut lost, mut checkpoints) = (0, 0, 0);
    for round in 0u64..40 {
        let n = 1 + round * 7 % 12;
        let records: Vec<Rec> = (log.next_seq()..log.next_seq() + n).map(rec).collect();
        log.append_all(&records).expect("append_all");
        if round % 4 != 3 {
            committed = log.commit().expect("commit");
        }
        if round % 7 == 6 {
            // What the state covers: the committed records, all applied.
            let mut w = ckpts.begin(ckpts.next_epoch()).expect("begin");
            w.put(0, &state_of(committed)).expect("put");
            ckpts.commit(w, &[(0, committed)]).expect("checkpoint");
            log.truncate_before(ckpts.keep_log_from(0))
                .expect("compaction");
            checkpoints += 1;
        }
        lost += check_images(&watch, committed, log.next_seq(), &format!("round {round}"));
    }
    // More requests, never committed: rotations with nothing synced after.
    for _ in 0..6 {
        let records: Vec<Rec> = (log.next_seq()..log.next_seq() + 9).map(rec).collect();
        log.append_all(&records).expect("append_all");
        lost += check_images(&watch, committed, log.next_seq(), "uncommitted tail");
    }
    assert!(
        checkpoints >= 5 && log.first_seq() > 0,
        "checkpoints compacted the log"
    );
    assert!(lost > 0, "the images lost what was never synced");
}

/// Records a killed process flushed but never committed are in the page
/// cache, and `open` reads them; the next segment starts after them. So
/// `open` must make them durable first, or a power loss leaves the new
/// segment after a hole.
#[test]
fn a_log_reopened_after_a_kill_syncs_what_it_found_before_it_grows() {
    let root = tempfile::tempdir().expect("tempdir");
    let watch = Watch::new(root.path());
    let dir = root.path().join("app").join("log");
    let mut log = IngressLog::<Rec>::open(&dir, 1 << 20).expect("open");
    let big: Vec<Rec> = (0..600)
        .map(|seq| Rec {
            seq,
            pad: "k".repeat(1000),
        })
        .collect();
    log.append_all(&big).expect("append_all"); // over FLUSH_AT: written, not synced
    drop(log); // killed: no commit
    let mut log = IngressLog::<Rec>::open(&dir, 1 << 20).expect("reopen");
    let found = log.next_seq();
    assert!(found > 0, "the flushed records are read back");
    log.append(&rec(found)).expect("append");
    assert_eq!(log.commit().expect("commit"), found + 1);
    for loss in [Loss::Dropped, Loss::Kept] {
        let out = tempfile::tempdir().expect("tempdir");
        watch.image(out.path(), loss).expect("image");
        let log = IngressLog::<Rec>::open(out.path().join("app").join("log"), 1 << 20)
            .unwrap_or_else(|e| panic!("{loss:?}: the image does not open: {e}"));
        assert_eq!(log.next_seq(), found + 1, "{loss:?}");
    }
}

/// A rotation syncs the old segment before it creates the new one: once
/// the new one exists, the old one's every byte is durable.
#[test]
fn a_rotation_makes_the_old_segment_durable_before_the_new_one_exists() {
    let root = tempfile::tempdir().expect("tempdir");
    let watch = Watch::new(root.path());
    let mut log = IngressLog::<Rec>::open(root.path(), SEGMENT_BYTES).expect("open");
    let mut seen = 0;
    for seq in 0..200 {
        log.append(&rec(seq)).expect("append");
        let mut files: Vec<_> = std::fs::read_dir(root.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        // Every segment but the newest is whole on disk, entry included.
        for old in files.iter().take(files.len().saturating_sub(1)) {
            let len = std::fs::metadata(old).expect("stat").len();
            assert_eq!(watch.durable_len(old), Some(len), "{}", old.display());
            let name = old.file_name().expect("name").to_owned();
            assert!(watch
                .durable_entries(root.path())
                .is_some_and(|e| e.contains(&name)));
        }
        seen = seen.max(files.len());
    }
    assert!(
        seen > 5,
        "the log rotated without a commit: {seen} segments"
    );
}
