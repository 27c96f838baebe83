//! `inspect::app_folder` on a live durable app's folder: checkpoints with
//! their kind and chain (a full one, then incremental ones applied to it),
//! the log's segments and their seqs, every operator's part, nothing on
//! disk changed by looking; an operator's state restored through the
//! chain, equal to the oracle's; and a damaged byte reported with its file and
//! offset, the checkpoints that need it marked as missing their base.

#[path = "common/counter.rs"]
mod counter;

use std::path::Path;
use std::time::Duration;

use std::collections::BTreeMap;

use dirigo_engine::inspect::{app_folder, is_app_folder, saved_state, CheckpointKind};
use dirigo_engine::{Keyed, Node, NodeConfig, Placement};

fn send(src: &dirigo_engine::SourceHandle<counter::Ev>, lo: u64, hi: u64) {
    let batch = (lo..hi).map(counter::event).collect();
    src.send_batch(batch, Duration::from_secs(10))
        .map_err(|r| r.error)
        .expect("acknowledged");
}

/// Every file under `dir` with its length.
fn listing(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let len = std::fs::metadata(&p).unwrap().len();
                out.push((p, len));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_live_apps_folder_reads_as_its_checkpoints_chains_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        data_dir: Some(dir.path().to_owned()),
        full_checkpoint_every: 3,
        ..NodeConfig::default()
    })
    .unwrap();
    let (app, _rx) = counter::app("insp");
    let h = node.deploy(app).unwrap();
    let src = h.source::<counter::Ev>("events").unwrap();
    send(&src, 0, 2000);
    assert_eq!(h.checkpoint().unwrap(), 1);
    send(&src, 2000, 2010);
    assert_eq!(h.checkpoint().unwrap(), 2);
    send(&src, 2010, 2015);
    assert_eq!(h.checkpoint().unwrap(), 3);

    let app_dir = dir.path().join("insp");
    assert!(is_app_folder(&app_dir) && !is_app_folder(dir.path()));
    let before = listing(&app_dir);
    let f = app_folder(&app_dir).unwrap();
    assert_eq!(listing(&app_dir), before, "looking changes nothing");
    assert!(f.damage().is_empty(), "{:?}", f.damage());
    let summary: Vec<_> = f
        .checkpoints
        .iter()
        .map(|c| (c.epoch, c.kind, c.chain.clone(), c.log_position))
        .collect();
    use CheckpointKind::{Full, Incremental};
    assert_eq!(
        summary,
        [
            (3, Some(Incremental), vec![2, 1], Some(2015)),
            (2, Some(Incremental), vec![1], Some(2010)),
            (1, Some(Full), vec![], Some(2000)),
        ]
    );
    let full = &f.checkpoints[2];
    assert!(full.operators.iter().any(|o| !o.delta && o.bytes > 0));
    assert!(f.checkpoints[0].operators.iter().any(|o| o.delta));
    let logged: u64 = f.log.iter().map(|s| s.report.records).sum();
    assert_eq!((f.log[0].first_seq, logged), (0, 2015));

    // The counts as checkpoint 3 has them (its changes applied to 2's
    // and 1's): the oracle's.
    let saved = saved_state(&app_dir, counter::app("insp").0, "counts").unwrap();
    assert_eq!(saved.epoch, 3);
    let tallies = saved
        .state
        .downcast::<Keyed<counter::Tally>>()
        .expect("the counts' state");
    let words: BTreeMap<u32, (u64, u64)> = tallies
        .iter()
        .map(|(_, t)| (t.word, (t.n, t.id_sum)))
        .collect();
    assert_eq!(
        words,
        counter::oracle(&[counter::Step::Events(0, 2015)]).words
    );
    let e = saved_state(&app_dir, counter::app("insp").0, "nope").unwrap_err();
    assert!(e.to_string().contains("no operator \"nope\""), "{e}");
    assert_eq!(listing(&app_dir), before, "reading a state changes nothing");

    // One flipped byte in checkpoint 2: named with its file and offset;
    // checkpoint 3's chain now misses its base.
    let p = &f.checkpoints[1].path;
    let mut bytes = std::fs::read(p).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(p, &bytes).unwrap();
    let f = app_folder(&app_dir).unwrap();
    let d = f.damage();
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].to_string().contains("ckpt-"), "{}", d[0]);
    assert!(d[0].offset().is_some_and(|o| o <= at as u64), "{}", d[0]);
    assert_eq!(f.checkpoints[1].kind, None);
    assert!(f.checkpoints[0].base_missing);
    node.shutdown();
}

#[test]
fn the_deploy_note_is_the_last_successful_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        data_dir: Some(dir.path().to_owned()),
        ..NodeConfig::default()
    };
    let app_dir = dir.path().join("noted");
    let note = || app_folder(&app_dir).unwrap().deploy_note;
    let deploy = |node: &Node, n: Option<&str>| {
        let (app, _rx) = counter::app("noted");
        let app = match n {
            Some(n) => app.with_deploy_note(n),
            None => app,
        };
        node.deploy(app)
    };
    let node = Node::start(cfg()).unwrap();
    let h = deploy(&node, Some("one")).unwrap();
    send(&h.source::<counter::Ev>("events").unwrap(), 0, 100);
    assert_eq!(h.checkpoint().unwrap(), 1);
    node.shutdown();
    assert_eq!(note().as_deref(), Some("one"));
    // A deploy that fails (its only checkpoint damaged) leaves the note.
    let ckpt = app_folder(&app_dir).unwrap().checkpoints[0].path.clone();
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&ckpt, &bytes).unwrap();
    let node = Node::start(cfg()).unwrap();
    assert!(deploy(&node, Some("two")).is_err());
    node.shutdown();
    assert_eq!(note().as_deref(), Some("one"));
    bytes[at] ^= 1;
    std::fs::write(&ckpt, &bytes).unwrap();
    let node = Node::start(cfg()).unwrap();
    deploy(&node, Some("two")).unwrap();
    node.shutdown();
    assert_eq!(note().as_deref(), Some("two"));
    // A deploy without one removes the old one: it would describe another.
    let node = Node::start(cfg()).unwrap();
    deploy(&node, None).unwrap();
    node.shutdown();
    assert_eq!(note(), None);
}
