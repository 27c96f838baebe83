//! A durable app's folder as the engine reads it, for `dirigo inspect`:
//! its checkpoints with what the engine's keys mean (an operator's whole
//! state, its changes since the last checkpoint, its event clock), each
//! checkpoint's kind (full or incremental) and the chain of older ones an
//! incremental one is applied to; its ingress log's segments and their
//! sequence numbers; its spill files. And one operator's state as the
//! newest valid checkpoint has it, restored through its chain exactly as
//! recovery restores it, for a tool that knows the state's type to show.
//! Read-only (the storage layer's `inspect`, `Checkpoints::open_read_only`):
//! it can run beside the node that owns the folder.
//!
//! Kept here because the key bits (`limits::DELTA`, `limits::CLOCK`) and
//! the folder's layout (`log/`, `dormant/`) are this layer's format.

use std::any::Any;
use std::path::{Path, PathBuf};

use dirigo_storage::inspect::{self as disk, LogSegment, SegmentReport};
use dirigo_storage::{Checkpoints, Result, StorageError};

use super::recovery::{durability_err, restore, storage_err};
use super::spill;
use crate::limits::{CLOCK, DELTA};
use crate::model::{AppId, EngineError};
use crate::plan::{App, Plan};

/// Whole states, or changes over an older checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointKind {
    /// Every operator's whole state.
    Full,
    /// Some operators' changes since the checkpoint before.
    Incremental,
}

/// One operator's part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorPart {
    /// The operator's index in its app.
    pub op: u16,
    /// Bytes of its state (whole, or its changes).
    pub bytes: u64,
    /// Its changes since the checkpoint before, not its whole state.
    pub delta: bool,
    /// Bytes of its event clock (watermark, timers); 0 without one.
    pub clock_bytes: u64,
}

/// One listed checkpoint.
#[derive(Debug)]
pub struct CheckpointInfo {
    /// Its epoch.
    pub epoch: u64,
    /// Its segment.
    pub path: PathBuf,
    /// Its size, bytes.
    pub bytes: u64,
    /// Full or incremental (`None` when damaged: unknown).
    pub kind: Option<CheckpointKind>,
    /// For an incremental one, the older checkpoints recovery applies its
    /// changes to, newest first, down to the full one (see `base_missing`).
    pub chain: Vec<u64>,
    /// Its chain reaches no full checkpoint among those listed.
    pub base_missing: bool,
    /// The log position it covers (replay resumes here).
    pub log_position: Option<u64>,
    /// What it holds, per operator.
    pub operators: Vec<OperatorPart>,
    /// Why it cannot be loaded, if it cannot.
    pub damage: Option<StorageError>,
}

/// A durable app's folder.
#[derive(Debug)]
pub struct AppFolder {
    /// The folder.
    pub dir: PathBuf,
    /// The manifest's generation; `None` without one.
    pub generation: Option<u64>,
    /// Listed checkpoints, newest first.
    pub checkpoints: Vec<CheckpointInfo>,
    /// Checkpoint segments not listed (an interrupted commit's).
    pub unlisted: Vec<SegmentReport>,
    /// A `MANIFEST.tmp` is there.
    pub manifest_tmp: bool,
    /// The manifest is damaged.
    pub manifest_damage: Option<StorageError>,
    /// The ingress log's segments, in seq order.
    pub log: Vec<LogSegment>,
    /// Spill files of dormant actors.
    pub spills: Vec<SegmentReport>,
    /// The note its last deploy wrote (`App::with_deploy_note`), if any.
    pub deploy_note: Option<String>,
}

impl AppFolder {
    /// Every damage found that recovery would not get past, each naming its
    /// file and offset: not a log's torn tail (`LogSegment::torn_tail`),
    /// nor an unlisted checkpoint segment (a commit in progress, or one an
    /// interrupted commit left: never used).
    pub fn damage(&self) -> Vec<&StorageError> {
        let ckpts = self.checkpoints.iter().filter_map(|c| c.damage.as_ref());
        let log = self.log.iter().filter(|l| !l.torn_tail).map(|l| &l.report);
        let segs = log.chain(&self.spills).filter_map(|s| s.damage.as_ref());
        self.manifest_damage
            .iter()
            .chain(ckpts)
            .chain(segs)
            .collect()
    }
}

/// Whether `dir` looks like a durable app's folder.
pub fn is_app_folder(dir: &Path) -> bool {
    disk::has_manifest(dir) || dir.join("log").is_dir()
}

/// Read the app folder `dir`. `Err` only when something cannot be read
/// at all (a folder's listing, a file's bytes).
pub fn app_folder(dir: &Path) -> Result<AppFolder> {
    let f = disk::checkpoints(dir)?;
    let log_dir = dir.join("log");
    let log = if log_dir.is_dir() {
        disk::log(&log_dir)?
    } else {
        Vec::new()
    };
    let mut checkpoints: Vec<CheckpointInfo> = f.listed.into_iter().map(info).collect();
    chain_up(&mut checkpoints);
    Ok(AppFolder {
        dir: dir.to_path_buf(),
        generation: f.generation,
        checkpoints,
        unlisted: f.unlisted,
        manifest_tmp: f.manifest_tmp,
        manifest_damage: f.manifest_damage,
        log,
        spills: spills(dir)?,
        deploy_note: deploy_note(dir)?,
    })
}

/// The deploy note in `dir`, if there is one.
fn deploy_note(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(super::recovery::NOTE);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StorageError::Io {
            path,
            op: "read",
            source,
        }),
    }
}

/// A listed checkpoint's keys read as operators.
fn info(l: disk::ListedCheckpoint) -> CheckpointInfo {
    let mut operators: Vec<OperatorPart> = Vec::new();
    for &(key, bytes) in &l.states {
        let op = key & !(DELTA | CLOCK);
        let i = match operators.iter().position(|o| o.op == op) {
            Some(i) => i,
            None => {
                operators.push(OperatorPart {
                    op,
                    bytes: 0,
                    delta: false,
                    clock_bytes: 0,
                });
                operators.len() - 1
            }
        };
        let o = &mut operators[i];
        if key & CLOCK != 0 {
            o.clock_bytes = bytes;
        } else {
            o.bytes = bytes;
            o.delta = key & DELTA != 0;
        }
    }
    operators.sort_by_key(|o| o.op);
    let kind = l.damage.is_none().then(|| {
        if operators.iter().any(|o| o.delta) {
            CheckpointKind::Incremental
        } else {
            CheckpointKind::Full
        }
    });
    CheckpointInfo {
        epoch: l.epoch,
        bytes: l.len,
        path: l.path,
        kind,
        chain: Vec::new(),
        base_missing: false,
        log_position: l.sources.iter().find(|s| s.0 == 0).map(|s| s.1),
        operators,
        damage: l.damage,
    }
}

/// Each incremental checkpoint's chain, as recovery walks it per operator
/// (`recovery::Chain::of`): for every operator saved as changes, the
/// listed checkpoints after it (older), down to the first that holds that
/// operator's whole state; the chain is the longest of those. Its base is
/// missing when some operator's walk meets a damaged checkpoint or runs
/// out of listed ones.
fn chain_up(cs: &mut [CheckpointInfo]) {
    for i in 0..cs.len() {
        if cs[i].kind != Some(CheckpointKind::Incremental) {
            continue;
        }
        let (mut depth, mut missing) = (0, false);
        for o in cs[i].operators.iter().filter(|o| o.delta) {
            match walk(&cs[i + 1..], o.op) {
                Some(d) => depth = depth.max(d),
                None => missing = true,
            }
        }
        if missing {
            // Show as far as the listed ones go.
            depth = cs.len() - i - 1;
        }
        cs[i].chain = cs[i + 1..i + 1 + depth].iter().map(|c| c.epoch).collect();
        cs[i].base_missing = missing;
    }
}

/// How many of `older` (newest first) operator `op`'s changes need, down
/// to the one with its whole state; `None` if none has it before a
/// damaged one or the end.
fn walk(older: &[CheckpointInfo], op: u16) -> Option<usize> {
    for (n, c) in older.iter().enumerate() {
        c.kind?;
        if c.operators.iter().any(|o| o.op == op && !o.delta) {
            return Some(n + 1);
        }
    }
    None
}

/// The spill files, each checked.
fn spills(dir: &Path) -> Result<Vec<SegmentReport>> {
    let d = spill::dir_of(dir);
    if !d.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(&d).map_err(|source| StorageError::Io {
        path: d.clone(),
        op: "read directory",
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    paths.sort();
    paths.iter().map(|p| disk::segment(p)).collect()
}

/// One operator's state as a checkpoint has it.
pub struct SavedState {
    /// The checkpoint it is from (the newest valid one).
    pub epoch: u64,
    /// The operator's state, of its function's `State` type: the caller
    /// downcasts it.
    pub state: Box<dyn Any>,
}

impl std::fmt::Debug for SavedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedState")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// The state of `app`'s operator `operator` in the newest valid checkpoint
/// of the app folder `dir`, with an incremental checkpoint's changes
/// applied to its base as recovery applies them. `app` must be the app the
/// folder was written by (the same DAG): a different one is an error, as
/// at a deploy. Reads only.
pub fn saved_state(
    dir: &Path,
    app: App,
    operator: &str,
) -> std::result::Result<SavedState, EngineError> {
    let plan = Plan::compile(app, AppId(0), 1, None);
    let name = plan.name.clone();
    let (ckpts, newest) = Checkpoints::open_read_only(dir)
        .map_err(|e| storage_err(&name, "reading its checkpoints", e))?;
    let ckpt = newest.ok_or_else(|| durability_err(&name, "the folder holds no checkpoint"))?;
    let op = plan
        .nodes
        .iter()
        .position(|n| n.name == operator)
        .ok_or_else(|| durability_err(&name, format!("the app has no operator {operator:?}")))?;
    let mut states = Vec::new();
    restore(&ckpts, &ckpt, &plan, &mut states)?;
    let (_, restored) = states
        .into_iter()
        .find(|(o, _)| o.0 as usize == op)
        .ok_or_else(|| {
            durability_err(
                &name,
                format!("operator {operator:?} is not durable: it saves no state"),
            )
        })?;
    Ok(SavedState {
        epoch: ckpt.epoch(),
        state: restored.user.into_any(),
    })
}
