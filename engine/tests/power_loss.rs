//! Power loss, end to end: a durable app runs under load with small log
//! segments (so the log rotates inside requests) and checkpoints, while
//! the storage's durability seam (`dirigo_storage::disk::Watch`) records
//! every sync under the node's `data_dir`. Power-loss images of the folder
//! are taken while it runs and after the node stops: every file cut back
//! to the length it had when last made durable, every entry never made
//! durable in its folder dropped (or kept, with only the data it synced).
//! The app is redeployed on each image and must hold every event
//! acknowledged before the image exactly once.
//!
//! A SIGKILL keeps the page cache, so `crash.rs` cannot see a missing
//! fsync; this test can: with the syncs made no-ops, the images lose
//! acknowledged events.
//!
//! One sender sends events `0, 1, 2, ...` in order, so any log is a prefix
//! of that sequence, and the state recovered from an image must equal the
//! sequential oracle over `0..k` for some `k` between the events
//! acknowledged before the image was taken and those sent by its end.

#[path = "common/counter.rs"]
mod counter;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use counter::{oracle, query, Step};
use dirigo_engine::{Node, NodeConfig, Placement};
use dirigo_storage::disk::{Loss, Watch};

const APP: &str = "power";
/// Moments the folder is imaged at while the node runs (two images each).
const IMAGES_WHILE_RUNNING: usize = 40;

fn node(data_dir: &Path) -> Node {
    Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        data_dir: Some(data_dir.to_owned()),
        // Small segments: a request of a few hundred events rotates one.
        log_segment_bytes: 16 << 10,
        ..NodeConfig::default()
    })
    .expect("node starts")
}

/// One power-loss image and what it must hold: every event below `acked`
/// (acknowledged before it was taken), nothing at or above `sent` (not yet
/// sent when it was done).
struct Taken {
    dir: PathBuf,
    loss: Loss,
    acked: u64,
    sent: u64,
}

/// Takes both kinds of image of the watched folder into `out/<n>-<kind>`.
fn take(watch: &Watch, out: &Path, n: usize, acked: &AtomicU64, sent: &AtomicU64) -> Vec<Taken> {
    [Loss::Dropped, Loss::Kept]
        .into_iter()
        .map(|loss| {
            let dir = out.join(format!("{n}-{loss:?}"));
            let before = acked.load(Ordering::SeqCst);
            watch.image(&dir, loss).expect("power-loss image");
            Taken {
                dir,
                loss,
                acked: before,
                sent: sent.load(Ordering::SeqCst),
            }
        })
        .collect()
}

/// Sends events `0..total` in batches of 1..300, one batch at a time,
/// with a checkpoint every 7 batches; `sent` counts events handed to a
/// send, `acked` those whose send returned `Ok`.
fn load(node: &Node, total: u64, sent: &AtomicU64, acked: &AtomicU64) -> u64 {
    let (app, _rx) = counter::app(APP);
    let h = node.deploy(app).expect("deploys");
    let src = h.source::<counter::Ev>("events").expect("source");
    let (mut next, mut batches, mut checkpoints) = (0u64, 0u64, 0u64);
    while next < total {
        let n = (1 + next.wrapping_mul(0x9E37_79B9) % 300).min(total - next);
        sent.store(next + n, Ordering::SeqCst);
        src.send_batch(
            (next..next + n).map(counter::event).collect(),
            Duration::from_secs(30),
        )
        .map_err(|r| r.error)
        .expect("durable send acknowledged");
        next += n;
        acked.store(next, Ordering::SeqCst);
        batches += 1;
        if batches % 7 == 0 {
            h.checkpoint().expect("checkpoint commits");
            checkpoints += 1;
        }
    }
    checkpoints
}

/// Redeploys the app on the image and checks its state: the oracle over
/// `0..k`, every acknowledged event once, nothing unsent.
fn check(t: &Taken) {
    let what = format!("{} ({:?})", t.dir.display(), t.loss);
    let node = node(&t.dir);
    let (app, rx) = counter::app(APP);
    let h = node
        .deploy(app)
        .unwrap_or_else(|e| panic!("{what}: the image does not recover: {e}"));
    let rec = h.recovery().expect("durable").clone();
    let st = query(&h, &rx);
    let k = st.total_n;
    assert!(
        (t.acked..=t.sent).contains(&k),
        "{what}: {k} events recovered, {} were acknowledged before the image, {} sent by its \
         end ({rec:?})",
        t.acked,
        t.sent
    );
    assert_eq!(
        st,
        oracle(&[Step::Events(0, k)]),
        "{what}: the state is not events 0..{k}, each once ({rec:?})"
    );
    node.shutdown();
}

#[test]
fn a_power_loss_keeps_every_acknowledged_event_exactly_once() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let watch = Watch::new(data.path());
    let (sent, acked, done) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    let node = node(data.path());
    let mut taken = Vec::new();
    let checkpoints = std::thread::scope(|s| {
        let imager = s.spawn(|| {
            // Images while the node runs: at any moment, mid-request and
            // mid-checkpoint included (the seam holds every sync meanwhile).
            let mut taken = Vec::new();
            for n in 0..IMAGES_WHILE_RUNNING {
                std::thread::sleep(Duration::from_millis(2));
                if done.load(Ordering::SeqCst) {
                    break;
                }
                taken.extend(take(&watch, out.path(), n, &acked, &sent));
            }
            taken
        });
        let checkpoints = load(&node, 40_000, &sent, &acked);
        done.store(true, Ordering::SeqCst);
        taken.extend(imager.join().expect("imager"));
        checkpoints
    });
    node.shutdown();
    taken.extend(take(&watch, out.path(), 99, &acked, &sent));
    let syncs = watch.syncs();
    assert!(checkpoints >= 2, "checkpoints were taken: {checkpoints}");
    let running = taken.len() - 2;
    let in_flight = taken.iter().filter(|t| t.acked < t.sent).count();
    for t in &taken {
        check(t);
    }
    assert!(
        syncs.files > 0 && syncs.dirs > 0,
        "the seam saw the syncs: {syncs:?}"
    );
    eprintln!(
        "power_loss: {} images ({running} while running, {in_flight} with a send in flight) \
         recovered every acknowledged event once; {checkpoints} checkpoints, {syncs:?}",
        taken.len()
    );
}
