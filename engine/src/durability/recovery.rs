//! Recovery of a durable app at deploy: open its folder (exclusively),
//! restore each durable operator's state from the newest valid checkpoint
//! (applying an incremental checkpoint's chain of changes to its base), and
//! replay every log entry after the checkpoint's position before the app
//! takes new input.
//!
//! So each event whose send was acknowledged affects the state exactly
//! once: it is in the log (acknowledged after commit), and it is either
//! inside the checkpoint (before its position) or replayed (after), never
//! both.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dirigo_storage::{Checkpoint, Checkpoints, IngressLog, StorageError};

use super::codec::{kind_of, ArchivedLogEntry, LogEntry};
use super::request::Forward;
use super::spill;
use crate::func::{aligned_copy, EventClock, Restored, StateCodec};
use crate::limits::{CLOCK, DELTA, MAX_DEPLOY_NOTE};
use crate::model::{AnyBox, EngineError, OperatorId, Result, StorageFailure};
use crate::plan::{Plan, PlanKind};

/// What a durable app's deploy found on disk and did about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The app's data folder.
    pub dir: PathBuf,
    /// The checkpoint restored, if there was one.
    pub checkpoint: Option<u64>,
    /// Log entries replayed after it: events.
    pub replayed_events: u64,
    /// Log entries replayed after it: client barriers.
    pub replayed_barriers: u64,
    /// The log's next sequence number (entries ever logged, events and
    /// barriers).
    pub log_next_seq: u64,
    /// Damaged checkpoints passed over (file, offset, why).
    pub skipped: Vec<String>,
}

/// The storage of a durable app, opened and read, before deploy.
pub(crate) struct Opened {
    /// The folder's lock, held for as long as the app is deployed.
    pub(super) lock: std::fs::File,
    pub(super) log: IngressLog<LogEntry>,
    pub(super) ckpts: Checkpoints,
    /// Log position the restored checkpoint covers (replay starts here).
    resume_from: u64,
    /// Base of the restored checkpoint's chain (its oldest member used).
    pub(super) base: Option<u64>,
    pub recovery: Recovery,
    /// Restored states of durable operators, by operator.
    pub states: Vec<(OperatorId, Restored)>,
}

/// A failure of the storage below, its cause kept (file, offset, kind).
pub(super) fn storage_err(app: &str, what: impl Into<String>, source: StorageError) -> EngineError {
    EngineError::Storage(Box::new(StorageFailure {
        app: app.to_owned(),
        what: what.into(),
        source: std::sync::Arc::new(source),
    }))
}

/// A durability failure that is not the storage's (a lock held, a DAG that
/// does not match its checkpoint, bytes that do not decode).
pub(super) fn durability_err(app: &str, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Durability {
        app: app.to_owned(),
        reason: reason.to_string(),
    }
}

/// Take the exclusive lock of an app's folder (`LOCK`, flock), which must
/// exist: a second node (or process) deploying the same app's folder would
/// interleave two logs and clean the other's files.
fn lock_folder(dir: &Path) -> std::result::Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock only takes a descriptor, which `file` owns and keeps
    // open across the call; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
            format!(
                "{} is locked: the app's folder is in use by another node",
                path.display()
            )
        } else {
            format!("cannot lock {}: {e}", path.display())
        });
    }
    Ok(file)
}

/// The durable operators of a plan: those whose state checkpoints save,
/// with their codecs.
pub(super) fn durable_ops(plan: &Plan) -> Vec<(OperatorId, StateCodec)> {
    plan.nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match &n.kind {
            PlanKind::Function { f, .. } => f.state_codec().map(|c| (OperatorId(i as u16), c)),
            PlanKind::Source => None,
        })
        .collect()
}

/// Open an app's folder: the newest valid checkpoint's states, decoded, and
/// the log, recovered to its last intact entry.
pub(crate) fn open(dir: &Path, plan: &Plan, log_segment_bytes: u64) -> Result<Opened> {
    let app = plan.name.as_str();
    // Created durably (the folder and its parent fsynced, and each folder
    // created on the way): a power loss must not take the folder, and the
    // acknowledged log in it, away with an unsynced entry.
    dirigo_storage::create_dir_all(dir)
        .map_err(|e| storage_err(app, "creating its data folder", e))?;
    // One node at a time: before anything in the folder is read or cleaned.
    let lock = lock_folder(dir).map_err(|e| durability_err(app, e))?;
    let (ckpts, newest) =
        Checkpoints::open(dir).map_err(|e| storage_err(app, "opening its checkpoints", e))?;
    clear_spills(app, dir)?;
    let log = IngressLog::<LogEntry>::open(dir.join("log"), log_segment_bytes)
        .map_err(|e| storage_err(app, "opening its ingress log", e))?;
    let mut opened = Opened {
        lock,
        recovery: Recovery {
            dir: dir.to_owned(),
            skipped: ckpts.skipped().iter().map(|e| e.to_string()).collect(),
            log_next_seq: log.next_seq(),
            ..Recovery::default()
        },
        resume_from: log.first_seq(),
        base: None,
        states: Vec::new(),
        log,
        ckpts,
    };
    match newest {
        Some(ckpt) => {
            let (pos, oldest) = restore(&opened.ckpts, &ckpt, plan, &mut opened.states)?;
            opened.resume_from = pos;
            opened.base = Some(oldest);
            opened.recovery.checkpoint = Some(ckpt.epoch());
        }
        // Without a checkpoint the whole log must still be there.
        None if opened.log.first_seq() > 0 => {
            return Err(durability_err(
                app,
                format!(
                    "no valid checkpoint, and the log starts at entry {} (earlier entries were \
                     compacted against a checkpoint that is gone)",
                    opened.log.first_seq()
                ),
            ))
        }
        None => {}
    }
    // Only once the folder restored: a deploy that fails (another DAG, a
    // damaged folder) leaves the note of the deploy that wrote the folder.
    write_note(dir, plan.note.as_deref()).map_err(|e| durability_err(app, e))?;
    Ok(opened)
}

/// The deploy note's file in an app's folder.
pub(super) const NOTE: &str = "DEPLOY";

/// Write the deploy note whole or not at all: a temporary file, synced,
/// renamed over the old one, the folder synced. Without a note, an old one
/// is removed (it would describe another deploy).
fn write_note(dir: &Path, note: Option<&str>) -> std::result::Result<(), String> {
    let Some(note) = note else {
        return match std::fs::remove_file(dir.join(NOTE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("cannot remove {}: {e}", dir.join(NOTE).display()))
            }
            _ => Ok(()),
        };
    };
    if note.len() > MAX_DEPLOY_NOTE {
        return Err(format!(
            "its deploy note is {} bytes, over {MAX_DEPLOY_NOTE}",
            note.len()
        ));
    }
    let tmp = dir.join("DEPLOY.tmp");
    let io = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", tmp.display());
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
    std::io::Write::write_all(&mut f, note.as_bytes()).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&tmp, dir.join(NOTE)).map_err(|e| io("rename", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

/// Dormant states spilled by an earlier run are stale: the checkpoint and
/// the log are the truth.
fn clear_spills(app: &str, dir: &Path) -> Result<()> {
    let spills = spill::dir_of(dir);
    if spills.exists() {
        std::fs::remove_dir_all(&spills)
            .map_err(|e| durability_err(app, format!("cannot clear {}: {e}", spills.display())))?;
    }
    std::fs::create_dir_all(&spills)
        .map_err(|e| durability_err(app, format!("cannot create {}: {e}", spills.display())))
}

/// The checkpoints a restore reads: the newest, and older ones loaded (and
/// validated) only when an incremental chain needs them.
struct Chain<'a> {
    ckpts: &'a Checkpoints,
    newest: &'a Checkpoint,
    /// Listed epochs older than the newest, newest first (the order of
    /// `Checkpoints::listed`): `older[i]` is the base of a chain `i + 2`
    /// checkpoints long.
    older: Vec<u64>,
    loaded: Vec<Checkpoint>,
}

impl<'a> Chain<'a> {
    fn new(ckpts: &'a Checkpoints, newest: &'a Checkpoint) -> Self {
        let older = ckpts
            .listed()
            .into_iter()
            .filter(|&e| e < newest.epoch())
            .collect();
        Chain {
            ckpts,
            newest,
            older,
            loaded: Vec::new(),
        }
    }

    /// The checkpoint of `epoch`: the newest, or one loaded as a base.
    fn at(&self, epoch: u64) -> &Checkpoint {
        if epoch == self.newest.epoch() {
            self.newest
        } else {
            self.loaded
                .iter()
                .find(|c| c.epoch() == epoch)
                .expect("bases are loaded before they are looked up")
        }
    }

    /// Epochs of `op`'s chain, newest first, down to the one that holds its
    /// whole state (last), loading the older ones it needs.
    fn of(&mut self, app: &str, op: OperatorId, name: &str) -> Result<Vec<u64>> {
        let mut chain = vec![self.newest.epoch()];
        loop {
            let cp = self.at(*chain.last().expect("starts with the newest"));
            if cp.state(op.0).is_some() {
                return Ok(chain);
            }
            let epoch = cp.epoch();
            let ctx = |e: &str| {
                durability_err(app, format!("checkpoint {epoch}, operator {name:?}: {e}"))
            };
            if cp.state(op.0 | DELTA).is_none() {
                return Err(ctx("no saved state (did the app's DAG change?)"));
            }
            let Some(&older) = self.older.get(chain.len() - 1) else {
                return Err(ctx(
                    "incremental, and its base checkpoint is not listed any more",
                ));
            };
            if self.loaded.iter().all(|c| c.epoch() != older) {
                let what = format!("loading checkpoint {older} for operator {name:?}");
                let cp = self
                    .ckpts
                    .load(older)
                    .map_err(|e| storage_err(app, what, e))?;
                self.loaded.push(cp);
            }
            chain.push(older);
        }
    }

    /// The bytes of `key`'s state in checkpoint `epoch`, joined straight
    /// into an aligned buffer: the one copy before rkyv reads it in place.
    fn bytes(&self, epoch: u64, key: u16) -> rkyv::util::AlignedVec {
        let cp = self.at(epoch);
        let len = cp.state_len(key).unwrap_or(0) as usize;
        aligned_copy(cp.state_parts(key).into_iter().flatten(), len)
    }
}

/// Decode every durable operator's state as of `ckpt`: its whole state in
/// `ckpt`, or, for an incremental checkpoint, the whole state in the
/// newest earlier listed checkpoint that has it, with the changes of every
/// checkpoint after that one applied in order. Returns the log position to
/// replay from and the oldest checkpoint used.
pub(super) fn restore(
    ckpts: &Checkpoints,
    ckpt: &Checkpoint,
    plan: &Plan,
    states: &mut Vec<(OperatorId, Restored)>,
) -> Result<(u64, u64)> {
    let app = plan.name.as_str();
    check_operators(plan, ckpt)?;
    let mut chains = Chain::new(ckpts, ckpt);
    let mut oldest = ckpt.epoch();
    for (op, codec) in durable_ops(plan) {
        let name = &plan.nodes[op.0 as usize].name;
        let ctx = |epoch: u64, e: &dyn std::fmt::Display| {
            durability_err(app, format!("checkpoint {epoch}, operator {name:?}: {e}"))
        };
        let mut chain = chains.of(app, op, name)?;
        let base = chain.pop().expect("ends with the whole state");
        oldest = oldest.min(base);
        let bytes = chains.bytes(base, op.0);
        let mut state = (codec.restore)(&bytes).map_err(|e| ctx(base, &e))?;
        drop(bytes);
        for &epoch in chain.iter().rev() {
            let delta = chains.bytes(epoch, op.0 | DELTA);
            (codec.apply_changes)(&mut *state, &delta).map_err(|e| ctx(epoch, &e))?;
        }
        // The event clock is saved whole in every checkpoint (if on event
        // time).
        let clock = match ckpt.state(op.0 | CLOCK) {
            None => EventClock::default(),
            Some(b) => EventClock::decode(&b).map_err(|e| ctx(ckpt.epoch(), &e))?,
        };
        states.push((op, Restored { user: state, clock }));
    }
    ckpt.sources()
        .iter()
        .find(|(s, _)| *s == 0)
        .map(|&(_, pos)| (pos, oldest))
        .ok_or_else(|| {
            durability_err(
                app,
                format!("checkpoint {} records no log position", ckpt.epoch()),
            )
        })
}

/// The checkpoint saved exactly the app's durable operators.
fn check_operators(plan: &Plan, ckpt: &Checkpoint) -> Result<()> {
    let expected: BTreeSet<u16> = durable_ops(plan).iter().map(|(o, _)| o.0).collect();
    let saved: BTreeSet<u16> = ckpt
        .operators()
        .into_iter()
        .map(|o| o & !DELTA & !CLOCK)
        .collect();
    if saved != expected {
        return Err(durability_err(
            &plan.name,
            format!(
                "checkpoint {} saved operators {saved:?}, the app has durable operators \
                 {expected:?} (did the app's DAG change?)",
                ckpt.epoch()
            ),
        ));
    }
    Ok(())
}

/// Replays log entries into the deployed app: events batched per source
/// (up to `max_batch`), barriers injected in their place.
struct Replayer<'a> {
    app: &'a dyn Forward,
    plan: &'a Plan,
    max_batch: usize,
    batch: Option<(OperatorId, Vec<(u64, AnyBox)>)>,
    events: u64,
    barriers: u64,
}

impl Replayer<'_> {
    /// Hand the batch gathered so far to its source.
    fn flush(&mut self) -> Result<()> {
        if let Some((source, evs)) = self.batch.take() {
            self.app
                .forward_ingest(source, self.app.now_ns(), evs)
                .map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    /// Log entry `seq`.
    fn entry(&mut self, seq: u64, entry: &ArchivedLogEntry) -> Result<()> {
        let name = self.plan.name.as_str();
        match entry {
            ArchivedLogEntry::Event {
                source,
                key,
                payload,
            } => {
                let source = OperatorId(source.to_native());
                let codec = self
                    .plan
                    .node(source)
                    .and_then(|n| n.event_codec)
                    .ok_or_else(|| {
                        durability_err(
                            name,
                            format!(
                                "log entry {seq} is for node {} which is not a durable source \
                                 of the app",
                                source.0
                            ),
                        )
                    })?;
                let event = (codec.decode)(payload.as_slice())
                    .map_err(|e| durability_err(name, format!("log entry {seq}: {e}")))?;
                let full =
                    |(s, b): &(OperatorId, Vec<_>)| *s != source || b.len() >= self.max_batch;
                if self.batch.as_ref().is_some_and(full) {
                    self.flush()?;
                }
                self.batch
                    .get_or_insert_with(|| (source, Vec::new()))
                    .1
                    .push((key.to_native(), event));
                self.events += 1;
            }
            ArchivedLogEntry::Barrier { kind, tag } => {
                let kind = kind_of(*kind).ok_or_else(|| {
                    durability_err(
                        name,
                        format!("log entry {seq}: unknown barrier kind {kind}"),
                    )
                })?;
                self.flush()?;
                self.app.inject_now(kind, tag.to_native())?;
                self.barriers += 1;
            }
        }
        Ok(())
    }
}

/// Forward every log entry after the restored checkpoint to the deployed
/// app, in log order, before it takes new input.
pub(crate) fn replay(opened: &mut Opened, app: &dyn Forward, plan: &Plan) -> Result<()> {
    let mut r = Replayer {
        app,
        plan,
        max_batch: app.max_batch(),
        batch: None,
        events: 0,
        barriers: 0,
    };
    let mut failure: Option<EngineError> = None;
    opened
        .log
        .replay(opened.resume_from, |seq, entry| {
            if failure.is_none() {
                failure = r.entry(seq, entry).err();
            }
            Ok(())
        })
        .map_err(|e| storage_err(&plan.name, "replaying its ingress log", e))?;
    if let Some(e) = failure {
        return Err(e);
    }
    r.flush()?;
    opened.recovery.replayed_events = r.events;
    opened.recovery.replayed_barriers = r.barriers;
    Ok(())
}
