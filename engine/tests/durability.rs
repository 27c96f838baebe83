//! Durable apps end to end, in process: the ingress log, checkpoints at
//! barriers, restart from the same data folder (restore + replay), the
//! fallback to an older checkpoint when the newest is damaged, and the
//! errors of misuse. The crash test (`crash.rs`) does the same with SIGKILL.

mod common;
#[path = "common/counter.rs"]
mod counter;

use std::path::Path;
use std::time::Duration;

use common::{values, wait_spilled};
use counter::{oracle, query, Step};
use dirigo_engine::{
    AppBuilder, AutoScale, BarrierKind, EngineError, Keyed, Node, NodeConfig, Placement,
    SourceHandle, StorageError,
};

fn node(dir: &Path, shards: usize) -> Node {
    Node::start(NodeConfig {
        shards,
        placement: Placement::Unpinned,
        data_dir: Some(dir.to_owned()),
        // Small segments, so logs roll and compaction has files to remove.
        log_segment_bytes: 64 << 10,
        ..NodeConfig::default()
    })
    .expect("node starts")
}

fn send(src: &SourceHandle<counter::Ev>, lo: u64, hi: u64) {
    let mut id = lo;
    while id < hi {
        let end = (id + 500).min(hi);
        src.send_batch(
            (id..end).map(counter::event).collect(),
            Duration::from_secs(10),
        )
        .map_err(|r| r.error)
        .expect("durable send acknowledged");
        id = end;
    }
}

/// Lease `op` a lessee on the one of the two shards that is not its home
/// (a lessor does not lease its own shard): one of the two asks must go out.
fn lease_off_home(h: &dirigo_engine::AppHandle, op: &str) {
    let asked = (0..2)
        .filter(|&shard| h.lease(op, shard).expect("a lease request").is_some())
        .count();
    assert_eq!(asked, 1, "{op} asked for a lessee off its home shard");
}

fn files(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = walk(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readable dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Events, window closes and a checkpoint, then a clean restart: the new
/// node restores the checkpoint, replays the events and the window close
/// logged after it, and ends in the sequential oracle's state.
#[test]
fn restart_restores_the_checkpoint_and_replays_the_log_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = [
        Step::Events(0, 3_000),
        Step::WindowClose,
        Step::Events(3_000, 6_000),
        // checkpoint here
        Step::Events(6_000, 8_000),
        Step::WindowClose,
        Step::Events(8_000, 9_500),
    ];
    {
        // Leases here are the test's own: no autoscaling to take the slot
        // first, and no shard refuses one for its backlog.
        let node = Node::start(NodeConfig {
            shards: 2,
            placement: Placement::Unpinned,
            data_dir: Some(dir.path().to_owned()),
            log_segment_bytes: 64 << 10,
            autoscale: AutoScale {
                enabled: false,
                accept_below: usize::MAX,
                ..AutoScale::default()
            },
            ..NodeConfig::default()
        })
        .expect("node starts");
        let (app, rx) = counter::app("counter");
        let h = node.deploy(app).expect("deploys");
        let rec = h.recovery().expect("a durable app reports its recovery");
        assert_eq!(rec.checkpoint, None);
        assert_eq!(rec.log_next_seq, 0);
        let src = h.source::<counter::Ev>("events").expect("source");
        send(&src, 0, 3_000);
        h.inject_barrier(BarrierKind::WindowClose, 1)
            .expect("window");
        send(&src, 3_000, 6_000);
        // Scale out under the checkpoint: lessees must hand their parts in.
        lease_off_home(&h, "counts");
        lease_off_home(&h, "total");
        assert_eq!(h.checkpoint().expect("checkpoint commits"), 1);
        send(&src, 6_000, 8_000);
        h.inject_barrier(BarrierKind::WindowClose, 2)
            .expect("window");
        send(&src, 8_000, 9_500);
        h.quiesce(Duration::from_secs(20)).expect("drains");
        assert_eq!(query(&h, &rx), oracle(&steps), "before the restart");
        node.shutdown();
    }
    let node = node(dir.path(), 2);
    let (app, rx) = counter::app("counter");
    let h = node.deploy(app).expect("redeploys");
    let rec = h.recovery().expect("recovery").clone();
    assert_eq!(rec.checkpoint, Some(1), "{rec:?}");
    assert_eq!(rec.replayed_events, 3_500, "{rec:?}");
    // The window close after the checkpoint and the query before the stop.
    assert_eq!(rec.replayed_barriers, 2, "{rec:?}");
    assert!(rec.skipped.is_empty(), "{rec:?}");
    h.quiesce(Duration::from_secs(20)).expect("drains");
    assert_eq!(query(&h, &rx), oracle(&steps), "after the restart");
    node.shutdown();
}

/// With no checkpoint, recovery replays the whole log; several checkpoints
/// compact the log; a restart after the last checkpoint replays nothing.
#[test]
fn log_replay_without_checkpoint_and_compaction_after_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let node = node(dir.path(), 2);
        let (app, _rx) = counter::app("replay");
        let h = node.deploy(app).expect("deploys");
        let src = h.source::<counter::Ev>("events").expect("source");
        send(&src, 0, 4_000);
        node.shutdown();
    }
    let log_files_before;
    {
        let node = node(dir.path(), 2);
        let (app, rx) = counter::app("replay");
        let h = node.deploy(app).expect("redeploys");
        let rec = h.recovery().expect("recovery").clone();
        assert_eq!(
            (rec.checkpoint, rec.replayed_events),
            (None, 4_000),
            "{rec:?}"
        );
        h.quiesce(Duration::from_secs(20)).expect("drains");
        assert_eq!(query(&h, &rx), oracle(&[Step::Events(0, 4_000)]));
        let src = h.source::<counter::Ev>("events").expect("source");
        send(&src, 4_000, 20_000);
        log_files_before = files(dir.path(), "log-").len();
        for want in 1..=3 {
            assert_eq!(h.checkpoint().expect("checkpoint"), want);
            send(&src, 20_000 + want * 100, 20_000 + want * 100 + 100);
        }
        assert!(h.checkpoint().expect("checkpoint") == 4);
        node.shutdown();
    }
    let log_files_after = files(dir.path(), "log-").len();
    assert!(
        log_files_after < log_files_before,
        "compaction removed log segments: {log_files_before} -> {log_files_after}"
    );
    // Checkpoint 1 is full, 2..=4 incremental on it: the chain remains.
    assert_eq!(
        files(dir.path(), "ckpt-").len(),
        4,
        "only the current chain remains: {:?}",
        files(dir.path(), "ckpt-")
    );
    let node = node(dir.path(), 2);
    let (app, rx) = counter::app("replay");
    let h = node.deploy(app).expect("redeploys");
    let rec = h.recovery().expect("recovery").clone();
    assert_eq!(rec.checkpoint, Some(4), "{rec:?}");
    // Nothing was logged after checkpoint 4.
    assert_eq!(
        (rec.replayed_events, rec.replayed_barriers),
        (0, 0),
        "{rec:?}"
    );
    let mut steps = vec![Step::Events(0, 20_000)];
    steps.extend((1..=3).map(|w| Step::Events(20_000 + w * 100, 20_100 + w * 100)));
    assert_eq!(query(&h, &rx), oracle(&steps));
    node.shutdown();
}

/// A damaged newest checkpoint: recovery falls back to the previous one
/// (the log is kept back to it), reports the damage, and still ends in the
/// oracle's state.
#[test]
fn damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let node = node(dir.path(), 2);
        let (app, _rx) = counter::app("fallback");
        let h = node.deploy(app).expect("deploys");
        let src = h.source::<counter::Ev>("events").expect("source");
        send(&src, 0, 2_000);
        assert_eq!(h.checkpoint().expect("checkpoint"), 1);
        send(&src, 2_000, 5_000);
        assert_eq!(h.checkpoint().expect("checkpoint"), 2);
        send(&src, 5_000, 6_000);
        node.shutdown();
    }
    let ckpts = files(dir.path(), "ckpt-");
    let newest = ckpts.last().expect("checkpoint segments exist");
    let mut bytes = std::fs::read(newest).expect("read");
    let at = bytes.len() - 3;
    bytes[at] ^= 0x5a;
    std::fs::write(newest, bytes).expect("write");

    let node = node(dir.path(), 2);
    let (app, rx) = counter::app("fallback");
    let h = node
        .deploy(app)
        .expect("redeploys from the older checkpoint");
    let rec = h.recovery().expect("recovery").clone();
    assert_eq!(rec.checkpoint, Some(1), "{rec:?}");
    assert_eq!(rec.replayed_events, 4_000, "{rec:?}");
    assert!(
        rec.skipped
            .iter()
            .any(|s| s.contains(&newest.file_name().unwrap().to_string_lossy().to_string())),
        "the damage names the file: {rec:?}"
    );
    h.quiesce(Duration::from_secs(20)).expect("drains");
    assert_eq!(query(&h, &rx), oracle(&[Step::Events(0, 6_000)]));
    node.shutdown();
}

/// A torn log tail (a crash in the middle of a write): the intact prefix is
/// recovered and the app continues from it.
#[test]
fn torn_log_tail_recovers_the_intact_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let node = node(dir.path(), 1);
        let (app, _rx) = counter::app("torn");
        let h = node.deploy(app).expect("deploys");
        let src = h.source::<counter::Ev>("events").expect("source");
        send(&src, 0, 1_000);
        node.shutdown();
    }
    let logs = files(dir.path(), "log-");
    let last = logs.last().expect("log segments exist");
    let len = std::fs::metadata(last).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .expect("open");
    f.set_len(len - 7).expect("truncate");
    drop(f);

    let node = node(dir.path(), 1);
    let (app, rx) = counter::app("torn");
    let h = node.deploy(app).expect("redeploys");
    let rec = h.recovery().expect("recovery").clone();
    assert_eq!(
        rec.log_next_seq, 999,
        "exactly the torn record is gone: {rec:?}"
    );
    assert_eq!(rec.replayed_events, 999);
    let src = h.source::<counter::Ev>("events").expect("source");
    send(&src, 999, 1_500);
    h.quiesce(Duration::from_secs(20)).expect("drains");
    assert_eq!(query(&h, &rx), oracle(&[Step::Events(0, 1_500)]));
    node.shutdown();
}

/// Damage inside the log (not a torn tail: a later segment proves records
/// were lost) refuses the deploy with the storage error as its source, so a
/// caller can tell damage from I/O and read the file and offset.
#[test]
fn damage_inside_the_log_keeps_the_storage_error_as_its_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let node = node(dir.path(), 1);
        let (app, _rx) = counter::app("damaged");
        let h = node.deploy(app).expect("deploys");
        let src = h.source::<counter::Ev>("events").expect("source");
        send(&src, 0, 6_000);
        node.shutdown();
    }
    let logs = files(dir.path(), "log-");
    assert!(logs.len() >= 2, "the log rolled: {logs:?}");
    let first = &logs[0];
    let mut bytes = std::fs::read(first).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(first, bytes).expect("write");

    let node = node(dir.path(), 1);
    let (app, _rx) = counter::app("damaged");
    let err = node
        .deploy(app)
        .err()
        .expect("a damaged log refuses the deploy");
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<StorageError>());
    match source {
        Some(StorageError::LogDamaged { path, offset, .. }) => {
            assert_eq!(path, first, "{err}");
            assert!(*offset <= at as u64, "{err}");
        }
        _ => panic!("not a storage error with its cause: {err:?}"),
    }
    assert!(matches!(err, EngineError::Storage(_)), "{err:?}");
    node.shutdown();
}

/// A log that fails while the app runs (here: the next segment's file
/// cannot be created) answers the send that hit it with "outcome unknown"
/// and nothing handed back, refuses every later one with the storage error
/// as the cause (file and operation included) and its events back, and a
/// redeploy applies exactly what was acknowledged, plus perhaps what had
/// an unknown outcome, and never what was handed back (issue 11 item 4:
/// a segment rotated in the middle of a request, which was refused whole
/// although part of it was in the log).
#[test]
fn a_failed_rotation_never_hands_back_what_the_log_may_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("failing").join("log");
    let (mut acked, mut unknown, mut returned) = (Vec::new(), Vec::new(), Vec::new());
    let (blocked, first, later) = {
        let node = Node::start(NodeConfig {
            shards: 1,
            placement: Placement::Unpinned,
            data_dir: Some(dir.path().to_owned()),
            log_segment_bytes: 4096,
            ..NodeConfig::default()
        })
        .expect("node starts");
        let (app, _rx) = counter::app("failing");
        let h = node.deploy(app).expect("deploys");
        let src = h.source::<counter::Ev>("events").expect("source");
        let mut id = 0;
        let mut batch = |n: u64| {
            let evs: Vec<_> = (id..id + n).map(counter::event).collect();
            let ids: Vec<u64> = (id..id + n).collect();
            id += n;
            (src.send_batch(evs, Duration::from_secs(10)), ids)
        };
        // Once the second segment shows, block every name the next ones
        // can take with a folder.
        while files(&log, "log-").len() < 2 {
            let (r, ids) = batch(7);
            r.map_err(|r| r.error).expect("logged");
            acked.extend(ids);
        }
        let segs: Vec<u64> = files(&log, "log-")
            .iter()
            .map(|p| {
                p.file_name().and_then(|n| n.to_str()).expect("name")[4..24]
                    .parse()
                    .expect("seq")
            })
            .collect();
        let per = segs[1] - segs[0];
        let blocked: Vec<_> = (segs[1] + 1..=segs[1] + 3 * per)
            .map(|s| log.join(format!("log-{s:020}.seg")))
            .collect();
        blocked
            .iter()
            .for_each(|b| std::fs::create_dir(b).expect("block"));
        let first = loop {
            let (r, ids) = batch(7);
            match r {
                Ok(()) => acked.extend(ids),
                Err(r) => {
                    assert!(r.events.is_empty(), "nothing that may be logged comes back");
                    unknown.extend(ids);
                    break r.error;
                }
            }
            assert!(acked.len() < 10_000, "the blocked segment is reached");
        };
        let (later, ids) = batch(7);
        let later = later.expect_err("refused");
        assert_eq!(later.events.len(), 7, "refused before logging: handed back");
        returned.extend(ids);
        let stats = node.stats().expect("stats");
        let d = stats.app("failing").and_then(|a| a.durable.clone());
        let d = d.expect("a durable app's figures");
        assert!(d.log_failed, "the stats say the log failed: {d:?}");
        assert!(d.log_entries >= acked.len() as u64, "{d:?}");
        node.shutdown();
        (blocked, first, later.error)
    };
    let is_create_of_blocked = |e: &EngineError| {
        let source = std::error::Error::source(e).and_then(|s| s.downcast_ref::<StorageError>());
        matches!(source, Some(StorageError::Io { path, op: "create", .. }) if blocked.contains(path))
    };
    assert!(matches!(first, EngineError::OutcomeUnknown(_)), "{first}");
    assert!(is_create_of_blocked(&first), "{first:?}");
    assert!(matches!(later, EngineError::Storage(_)), "{later}");
    assert!(
        is_create_of_blocked(&later),
        "fail-stop, same cause: {later:?}"
    );
    // A redeploy on the same folder, the folders that blocked removed.
    blocked
        .iter()
        .for_each(|b| std::fs::remove_dir(b).expect("unblock"));
    let node = node(dir.path(), 1);
    let (app, rx) = counter::app("failing");
    let h = node.deploy(app).expect("redeploys");
    let got = query(&h, &rx);
    let sum = |ids: &[u64]| ids.iter().fold(0u64, |a, &i| a.wrapping_add(i));
    let with_unknown = (acked.len() + unknown.len()) as u64;
    assert!(
        (got.total_n, got.total_id_sum) == (acked.len() as u64, sum(&acked))
            || (got.total_n, got.total_id_sum)
                == (with_unknown, sum(&acked).wrapping_add(sum(&unknown))),
        "recovered {} events (id sum {}): acknowledged {}, unknown {}, handed back {}",
        got.total_n,
        got.total_id_sum,
        acked.len(),
        unknown.len(),
        returned.len()
    );
    node.shutdown();
}

#[test]
fn misuse_is_a_clear_error() {
    // A durable app on a node without a data folder.
    let plain = Node::start(NodeConfig {
        shards: 1,
        placement: Placement::Unpinned,
        ..NodeConfig::default()
    })
    .expect("node");
    let (app, _rx) = counter::app("nodir");
    assert!(matches!(plain.deploy(app), Err(EngineError::NoDataDir(n)) if n == "nodir"));

    // A durable app with a part that cannot be saved.
    struct Volatile;
    impl dirigo_engine::Function for Volatile {
        type In = counter::Ev;
        type Out = u64;
        type State = Keyed<u64>;
        fn on_message(
            &self,
            _: &mut Keyed<u64>,
            _: u64,
            e: counter::Ev,
            ctx: &mut dirigo_engine::Context<'_, u64>,
        ) {
            ctx.emit(0, e.id);
        }
    }
    let mut b = AppBuilder::new("half").durable();
    let plain_src = b.source::<counter::Ev>("raw");
    let v = b.operator("volatile", Volatile, &[plain_src]);
    let _rx = b.sink("out", v);
    let err = b.build().err().expect("refused").to_string();
    assert!(err.contains("\"raw\" is not a durable_source"), "{err}");
    assert!(
        err.contains("\"volatile\" is not a durable_operator"),
        "{err}"
    );

    // Checkpoints of an app that is not durable.
    let mut b = AppBuilder::new("ephemeral");
    let s = b.source::<counter::Ev>("raw");
    let v = b.operator("volatile", Volatile, &[s]);
    let _rx = b.sink("out", v);
    let h = plain.deploy(b.build().expect("valid")).expect("deploys");
    assert!(matches!(
        h.checkpoint(),
        Err(EngineError::Durability { .. })
    ));
    plain.shutdown();

    // A durable app's name is a folder name.
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node(dir.path(), 1);
    let (app, _rx) = counter::app("../escape");
    assert!(matches!(
        node.deploy(app),
        Err(EngineError::InvalidApp { .. })
    ));
    // A checkpoint barrier does not go around the journal.
    let (app, _rx) = counter::app("direct");
    let h = node.deploy(app).expect("deploys");
    assert!(matches!(
        h.inject_barrier(BarrierKind::Checkpoint, 9),
        Err(EngineError::Durability { .. })
    ));
    node.shutdown();
}

/// Idle durable actors are deactivated to spill files (their state out of
/// memory) and come back from them on the next message, state intact.
#[test]
fn idle_durable_actors_spill_to_segments_and_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        data_dir: Some(dir.path().to_owned()),
        idle_deactivate: Duration::from_millis(30),
        ..NodeConfig::default()
    })
    .expect("node starts");
    let (app, rx) = counter::app("sleepy");
    let h = node.deploy(app).expect("deploys");
    let src = h.source::<counter::Ev>("events").expect("source");
    send(&src, 0, 2_000);
    // counts and total (merge and the sink only run at queries).
    let s = wait_spilled(&node, 2);
    assert!(s.shards.iter().map(|s| s.spill_bytes).sum::<u64>() > 2_000);
    assert!(
        !files(&dir.path().join("sleepy"), "s").is_empty(),
        "spill files exist"
    );
    // The next events wake them from their files.
    send(&src, 2_000, 3_000);
    assert_eq!(query(&h, &rx), oracle(&[Step::Events(0, 3_000)]));
    let s = node.stats().expect("stats");
    let unspills: u64 = s.shards.iter().map(|s| s.unspills).sum();
    assert!(unspills >= 2, "{unspills} cold starts");
    assert_eq!(s.shards.iter().map(|s| s.spill_errors).sum::<u64>(), 0);
    // Asleep again (merge now too), then a checkpoint wakes every actor to
    // save it.
    wait_spilled(&node, 3);
    assert!(h.checkpoint().is_ok());
    node.shutdown();
}

/// Incremental checkpoints: between full ones, a checkpoint saves only the
/// keys written since the previous one (much smaller here), chains survive
/// leases, window closes (every key rewritten) and restarts, recovery
/// applies the chain in order, and a new full checkpoint drops the old chain.
#[test]
fn incremental_checkpoints_save_changes_and_recover_through_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = |dir: &Path| NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        data_dir: Some(dir.to_owned()),
        full_checkpoint_every: 4,
        ..NodeConfig::default()
    };
    let size = |dir: &Path, epoch: u64| {
        let f = files(dir, "ckpt-")
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with(&format!("{epoch:020}.seg")))
            .expect("the checkpoint's file");
        std::fs::metadata(f).expect("stat").len()
    };
    let mut steps = Vec::new();
    let small;
    {
        let node = Node::start(cfg(dir.path())).expect("node");
        let (app, _rx) = counter::app("incr");
        let h = node.deploy(app).expect("deploys");
        let src = h.source::<counter::Ev>("events").expect("source");
        // Every word (97 keys) written, then a full checkpoint.
        send(&src, 0, 5_000);
        steps.push(Step::Events(0, 5_000));
        assert_eq!(h.checkpoint().expect("full"), 1);
        // Three events: three keys change; the checkpoint saves those.
        send(&src, 5_000, 5_003);
        steps.push(Step::Events(5_000, 5_003));
        // A lessee takes partitions, with their pending changes. (A shard
        // still busy refuses a lease: ask until one is granted.)
        let other = 1 - dirigo_engine::home_shard("incr", 1, 2) as usize;
        let granted = || {
            let s = node.stats().expect("stats");
            s.apps.values().map(|a| a.leases_granted).sum::<u64>()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while granted() == 0 {
            assert!(std::time::Instant::now() < deadline, "a lease is granted");
            let _ = h.lease("counts", other).expect("lease");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(h.checkpoint().expect("incremental"), 2);
        small = size(dir.path(), 2);
        let stats = node.stats().expect("stats");
        let d = stats
            .app("incr")
            .and_then(|a| a.durable.clone())
            .expect("figures");
        assert_eq!(
            (d.checkpoints, d.full_checkpoints, d.last_checkpoint),
            (2, 1, 2),
            "{d:?}"
        );
        assert!(
            d.last_checkpoint_bytes > 0 && d.last_checkpoint_bytes < small,
            "{d:?}"
        );
        assert_eq!((d.log_entries, d.log_position), (5_003, 5_003), "{d:?}");
        assert!(d.log_commits >= 1 && !d.log_failed, "{d:?}");
        assert!(
            small * 3 < size(dir.path(), 1),
            "incremental {small} vs full {}",
            size(dir.path(), 1)
        );
        node.shutdown();
    }
    {
        // Recovery from full 1 + changes 2 (some made on the lessee).
        let node = Node::start(cfg(dir.path())).expect("node");
        let (app, rx) = counter::app("incr");
        let h = node.deploy(app).expect("redeploys");
        assert_eq!(h.recovery().and_then(|r| r.checkpoint), Some(2));
        assert_eq!(query(&h, &rx), oracle(&steps));
        node.shutdown();
    }
    {
        let node = Node::start(cfg(dir.path())).expect("node");
        let (app, _rx) = counter::app("incr");
        let h = node.deploy(app).expect("redeploys");
        let src = h.source::<counter::Ev>("events").expect("source");
        // After a restart the chain goes on from a full checkpoint.
        assert_eq!(h.checkpoint().expect("full"), 3);
        let _ = h.lease(
            "counts",
            1 - dirigo_engine::home_shard("incr", 1, 2) as usize,
        );
        // A window close rewrites every key: the next one saves them all.
        h.inject_barrier(BarrierKind::WindowClose, 1)
            .expect("window");
        steps.push(Step::WindowClose);
        send(&src, 5_003, 5_500);
        steps.push(Step::Events(5_003, 5_500));
        assert_eq!(h.checkpoint().expect("incremental"), 4);
        let _ = h.revoke("counts", None);
        send(&src, 5_500, 5_510);
        steps.push(Step::Events(5_500, 5_510));
        assert_eq!(h.checkpoint().expect("incremental"), 5);
        send(&src, 5_510, 5_600);
        steps.push(Step::Events(5_510, 5_600));
        node.shutdown();
    }
    {
        // Recovery: full 3 + changes 4, 5 + the log after 5.
        let node = Node::start(cfg(dir.path())).expect("node");
        let (app, rx) = counter::app("incr");
        let h = node.deploy(app).expect("redeploys");
        let rec = h.recovery().expect("recovery").clone();
        assert_eq!(
            (rec.checkpoint, rec.replayed_events),
            (Some(5), 90),
            "{rec:?}"
        );
        assert_eq!(query(&h, &rx), oracle(&steps));
        // Full again (6); the next is incremental (7), and the old chain is
        // gone but for 5, the fallback of 6.
        assert_eq!(h.checkpoint().expect("full"), 6);
        assert!(size(dir.path(), 6) > small * 3);
        send(&h.source("events").expect("source"), 5_600, 5_601);
        steps.push(Step::Events(5_600, 5_601));
        assert_eq!(h.checkpoint().expect("incremental"), 7);
        let left: Vec<_> = files(dir.path(), "ckpt-");
        assert_eq!(left.len(), 2, "{left:?}");
        node.shutdown();
    }
    let node = Node::start(cfg(dir.path())).expect("node");
    let (app, rx) = counter::app("incr");
    let h = node.deploy(app).expect("redeploys");
    assert_eq!(h.recovery().and_then(|r| r.checkpoint), Some(7));
    assert_eq!(query(&h, &rx), oracle(&steps));
    node.shutdown();
}

/// After a restart, the first checkpoint is a new base; the manifest still
/// keeps the previous newest checkpoint's whole chain, so if the new one is
/// found damaged, recovery falls back to an incremental checkpoint whose
/// base is still there.
#[test]
fn the_fallback_of_a_new_base_keeps_its_own_base() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let node = node(dir.path(), 2);
        let (app, _rx) = counter::app("base");
        let h = node.deploy(app).expect("deploys");
        let src = h.source::<counter::Ev>("events").expect("source");
        send(&src, 0, 2_000);
        assert_eq!(h.checkpoint().expect("full"), 1);
        send(&src, 2_000, 2_100);
        assert_eq!(h.checkpoint().expect("incremental"), 2);
        node.shutdown();
    }
    {
        let node = node(dir.path(), 2);
        let (app, _rx) = counter::app("base");
        let h = node.deploy(app).expect("redeploys");
        let src = h.source::<counter::Ev>("events").expect("source");
        send(&src, 2_100, 2_500);
        assert_eq!(h.checkpoint().expect("full after a restart"), 3);
        send(&src, 2_500, 2_600);
        node.shutdown();
    }
    let newest = files(dir.path(), "ckpt-")
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(&format!("{:020}.seg", 3)))
        .expect("checkpoint 3");
    let mut bytes = std::fs::read(&newest).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&newest, bytes).expect("write");
    let node = node(dir.path(), 2);
    let (app, rx) = counter::app("base");
    let h = node.deploy(app).expect("recovers from the fallback");
    let rec = h.recovery().expect("recovery").clone();
    assert_eq!(rec.checkpoint, Some(2), "{rec:?}");
    assert_eq!(rec.replayed_events, 500, "{rec:?}");
    assert_eq!(query(&h, &rx), oracle(&[Step::Events(0, 2_600)]));
    node.shutdown();
}

/// A deployed durable app's folder is locked: a second node cannot deploy
/// the same app on it until the first lets go.
#[test]
fn a_second_node_cannot_take_a_deployed_apps_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = node(dir.path(), 1);
    let (app, _rx) = counter::app("shared");
    let h = first.deploy(app).expect("deploys");
    send(&h.source("events").expect("source"), 0, 10);
    let second = node(dir.path(), 1);
    let (app, _rx) = counter::app("shared");
    match second.deploy(app) {
        Err(EngineError::Durability { reason, .. }) => {
            assert!(reason.contains("in use by another node"), "{reason}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("two nodes deployed one folder"),
    }
    first.shutdown();
    let (app, rx) = counter::app("shared");
    let h = second.deploy(app).expect("the folder is free again");
    assert_eq!(query(&h, &rx), oracle(&[Step::Events(0, 10)]));
    second.shutdown();
}

/// An event too large for a log record is refused with the batch handed
/// back; nothing of the batch is logged, and the app goes on.
#[test]
fn an_oversized_event_is_refused_without_harm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node(dir.path(), 1);
    let (app, rx) = counter::app("big");
    let h = node.deploy(app).expect("deploys");
    let src = h.source::<counter::Ev>("events").expect("source");
    send(&src, 0, 5);
    // Build the other app: its source takes raw bytes.
    struct Len;
    impl dirigo_engine::Function for Len {
        type In = Vec<u8>;
        type Out = u64;
        type State = Keyed<u64>;
        fn on_message(
            &self,
            s: &mut Keyed<u64>,
            k: u64,
            v: Vec<u8>,
            ctx: &mut dirigo_engine::Context<'_, u64>,
        ) {
            *s.entry(k) += v.len() as u64;
            ctx.emit(k, v.len() as u64);
        }
    }
    let mut b = AppBuilder::new("blobs").durable();
    let raw = b.durable_source::<Vec<u8>>("raw");
    let lens = b.durable_operator("len", Len, &[raw]);
    let out = b.sink("out", lens);
    let blobs = node.deploy(b.build().expect("valid")).expect("deploys");
    let bsrc = blobs.source::<Vec<u8>>("raw").expect("source");
    let huge = vec![7u8; dirigo_engine::MAX_EVENT_BYTES + 1];
    let r = bsrc
        .try_send_batch(vec![(1, vec![1u8; 100]), (2, huge)])
        .expect_err("refused");
    assert!(
        matches!(r.error, EngineError::EventTooLarge { .. }),
        "{}",
        r.error
    );
    assert_eq!(r.events.len(), 2, "the whole batch comes back");
    bsrc.try_send_batch(vec![(3, vec![0u8; 10])])
        .map_err(|r| r.error)
        .expect("the app goes on");
    blobs.quiesce(Duration::from_secs(10)).expect("drains");
    let got: Vec<u64> = values(&out);
    assert_eq!(got, vec![10], "only the accepted event ran");
    assert_eq!(query(&h, &rx), oracle(&[Step::Events(0, 5)]));
    node.shutdown();
}

/// A spilled state deleted under the running node fails its app, not its
/// shard: the shard and its other apps go on, the app's stats and every
/// later call name the cause, what the journal committed before is
/// accepted, and the next deploy applies every acknowledged event.
#[test]
fn a_lost_spill_fails_its_app_and_the_next_deploy_recovers_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acked;
    {
        let node = Node::start(NodeConfig {
            shards: 1,
            placement: Placement::Unpinned,
            data_dir: Some(dir.path().to_owned()),
            idle_deactivate: Duration::from_millis(20),
            ..NodeConfig::default()
        })
        .expect("node starts");
        let (app, _rx) = counter::app("gone");
        let h = node.deploy(app).expect("deploys");
        let (other, other_rx) = counter::app("bystander");
        let o = node.deploy(other).expect("deploys");
        let src = h.source::<counter::Ev>("events").expect("source");
        send(&src, 0, 100);
        wait_spilled(&node, 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for f in files(&dir.path().join("gone").join("dormant"), "s") {
            std::fs::remove_file(f).expect("remove spill file");
        }
        // One event at a time: the first wakes an actor whose file is gone
        // and fails the app; sends acknowledged until then are in the log.
        let mut next = 100;
        let error = loop {
            match src.send_batch(vec![counter::event(next)], Duration::from_secs(10)) {
                Ok(()) => next += 1,
                // Logged, then not applied: the app failed meanwhile.
                Err(r) if matches!(r.error, EngineError::LoggedNotApplied { .. }) => next += 1,
                Err(r) => break r.error,
            }
            assert!(std::time::Instant::now() < deadline, "the app fails");
        };
        acked = next;
        assert!(
            matches!(&error, EngineError::AppFailed { cause, .. } if cause.contains("cannot be read back")),
            "{error}"
        );
        let stats = node.stats().expect("the shard still answers");
        let failed = stats.app("gone").and_then(|a| a.failed.clone());
        assert!(
            failed.is_some_and(|c| c.contains("dormant")),
            "the stats name the cause"
        );
        assert!(!stats.healthy());
        // The other app on the same shard goes on.
        let osrc = o.source::<counter::Ev>("events").expect("source");
        send(&osrc, 0, 50);
        assert_eq!(query(&o, &other_rx), oracle(&[Step::Events(0, 50)]));
        assert!(node.undeploy("gone", Duration::from_millis(100)).is_ok());
        node.shutdown();
    }
    let node = node(dir.path(), 1);
    let (app, rx) = counter::app("gone");
    let h = node.deploy(app).expect("redeploys");
    assert_eq!(h.recovery().map(|r| r.replayed_events), Some(acked));
    assert_eq!(query(&h, &rx), oracle(&[Step::Events(0, acked)]));
    node.shutdown();
}

/// A durable pass-through whose sink holds 10 outputs and blocks when full.
fn echo_app() -> (dirigo_engine::App, dirigo_engine::SinkReceiver<u64>) {
    let mut b = AppBuilder::new("echo").durable();
    let src = b.durable_source::<u64>("in");
    let work = Duration::ZERO;
    let echo = b.durable_operator("echo", SlowPass { work }, &[src]);
    let rx = b.sink_with(
        "out",
        echo,
        dirigo_engine::SinkPolicy::Block { capacity: 10 },
    );
    (b.build().expect("valid"), rx)
}

/// A deploy does not hold the node's registry while it replays (issue 11
/// item 10): here the replay waits on a sink nobody reads yet, and
/// meanwhile the node still answers `app`, deploys another app, and keeps
/// the replaying app's name taken.
#[test]
fn a_replaying_deploy_does_not_lock_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let node = node(dir.path(), 2);
        let (app, rx) = echo_app();
        let h = node.deploy(app).expect("deploys");
        let src = h.source::<u64>("in").expect("source");
        for i in 0..500 {
            src.send(i % 7, 1).expect("acknowledged");
            let _ = rx.drain();
        }
        node.shutdown();
    }
    let node = std::sync::Arc::new(
        Node::start(NodeConfig {
            shards: 2,
            placement: Placement::Unpinned,
            data_dir: Some(dir.path().to_owned()),
            max_in_flight: 64,
            // Replayed in batches of 8: the replay waits for room.
            max_batch: 8,
            ..NodeConfig::default()
        })
        .expect("node starts"),
    );
    let (app, rx) = echo_app();
    let deploying = {
        let node = node.clone();
        std::thread::spawn(move || node.deploy(app).map(|h| h.recovery().cloned()))
    };
    // The replay fills the sink, then the app's message limit, and waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rx.len() < 10 {
        assert!(std::time::Instant::now() < deadline, "the replay started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (tx, answers) = std::sync::mpsc::channel();
    {
        let node = node.clone();
        std::thread::spawn(move || {
            let unknown = matches!(node.app("nope"), Err(EngineError::UnknownApp(_)));
            let taken = matches!(node.deploy(echo_app().0), Err(EngineError::AppExists(_)));
            let (other, _rx) = counter::app("other");
            let other = node.deploy(other).is_ok();
            let _ = tx.send((unknown, taken, other));
        });
    }
    let got = answers.recv_timeout(Duration::from_secs(5));
    // Let the replay finish whatever the answer.
    let mut outputs = 0;
    while outputs < 500 {
        assert!(
            std::time::Instant::now() < deadline,
            "{outputs} of 500 replayed"
        );
        if rx.recv_timeout(Duration::from_millis(50)).is_some() {
            outputs += 1;
        }
    }
    let recovery = deploying.join().expect("no panic").expect("deploys");
    assert_eq!(recovery.map(|r| r.replayed_events), Some(500));
    assert_eq!(
        got.expect("the node answered while the deploy replayed"),
        (true, true, true)
    );
}

/// Passes each event's id on, after `work` of spinning.
struct SlowPass {
    work: Duration,
}
impl dirigo_engine::Function for SlowPass {
    type In = u64;
    type Out = u64;
    type State = Keyed<u64>;
    fn on_message(
        &self,
        st: &mut Keyed<u64>,
        key: u64,
        id: u64,
        ctx: &mut dirigo_engine::Context<'_, u64>,
    ) {
        let until = std::time::Instant::now() + self.work;
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        *st.entry(key) += 1;
        ctx.emit(key, id);
    }
}

/// A durable send honours its timeout even when the shard it goes to is
/// slow to take what the journal logged (issue 11 item 9): it returns the
/// events (`Timeout`, never logged), or says they are logged but not yet
/// applied, in about the time asked, not after the shard drained. Every
/// event acknowledged or logged is applied once, none handed back is.
#[test]
fn a_durable_send_returns_within_its_timeout_behind_a_slow_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = std::sync::Arc::new(
        Node::start(NodeConfig {
            shards: 1,
            placement: Placement::Unpinned,
            data_dir: Some(dir.path().to_owned()),
            inbox_capacity: 2,
            max_backlog: 16,
            max_batch: 20,
            ..NodeConfig::default()
        })
        .expect("node starts"),
    );
    let mut b = AppBuilder::new("slow").durable();
    let src = b.durable_source::<u64>("in");
    let work = Duration::from_millis(50);
    let pass = b.durable_operator("pass", SlowPass { work }, &[src]);
    let rx = b.sink("out", pass);
    let h = node.deploy(b.build().expect("valid")).expect("deploys");
    // A floods: 4 batches of 20 events, 4 s of work behind an inbox of 2.
    let flood = {
        let src = h.source::<u64>("in").expect("source");
        std::thread::spawn(move || {
            let mut applied = Vec::new();
            for b in 0..4u64 {
                let evs: Vec<(u64, u64)> = (b * 20..b * 20 + 20).map(|i| (i % 5, i)).collect();
                match src.send_batch(evs, Duration::from_secs(30)) {
                    Ok(()) => applied.extend(b * 20..b * 20 + 20),
                    Err(r) => panic!("the flood's send failed: {}", r.error),
                }
            }
            applied
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    // B sends one event at a time with a 1 ms timeout.
    let src = h.source::<u64>("in").expect("source");
    let (mut applied, mut handed_back, mut slowest) = (Vec::new(), 0, Duration::ZERO);
    for id in 1000..1020u64 {
        let t = std::time::Instant::now();
        let r = src.send_batch(vec![(id % 5, id)], Duration::from_millis(1));
        slowest = slowest.max(t.elapsed());
        match r {
            Ok(()) => applied.push(id),
            Err(r) => match r.error {
                EngineError::LoggedNotApplied { .. } => applied.push(id),
                EngineError::Timeout(_) => {
                    assert_eq!(r.events, vec![(id % 5, id)], "handed back whole");
                    handed_back += 1;
                }
                e => panic!("unexpected: {e}"),
            },
        }
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a 1 ms send took {slowest:?} (the shard takes 1 s per batch)"
    );
    applied.extend(flood.join().expect("flood"));
    h.quiesce(Duration::from_secs(30)).expect("drains");
    let mut got: Vec<u64> = values(&rx);
    got.sort_unstable();
    applied.sort_unstable();
    assert_eq!(got, applied, "{handed_back} handed back");
}
