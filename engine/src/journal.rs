//! The journal of a durable app: the one thread that owns the app's ingress
//! log and checkpoints, and the only way input reaches a durable app's
//! sources.
//!
//! Why one thread per app: the log fixes the order in which the sources
//! take input (events and client barriers), and a checkpoint is a cut in
//! that order. With every ingest, barrier and checkpoint request passing
//! through one thread, "append to the log, then forward to the source's
//! shard" happens in one order for all of them, so the log position
//! recorded with a checkpoint is exactly the input its barrier follows.
//!
//! The loop, one batch at a time (group commit): take every request queued,
//! append their log entries, `commit` once (one fdatasync for the batch),
//! then forward each request to its shard in log order and only then
//! acknowledge it. A checkpoint request records the log position at its
//! place in the batch and injects a `Checkpoint` barrier; every durable
//! operator hands its whole, consolidated state back here from its critical
//! section (`JournalMsg::State`); when all have, the checkpoint is written
//! and committed to the manifest, and log segments before the older kept
//! checkpoint are removed.
//!
//! Recovery (`open` + `replay`, at deploy): restore each durable operator's
//! state from the newest valid checkpoint, then forward every log entry
//! after its position again before the app takes new input. So each event
//! whose send was acknowledged affects the state exactly once: it is in the
//! log (acknowledged after commit), and it is either inside the checkpoint
//! (before its position) or replayed (after), never both.
//!
//! An I/O failure of the log stops the journal taking input (fail-stop):
//! later requests get the error, nothing unlogged is ever forwarded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use dirigo_storage::{Checkpoint, CheckpointWriter, Checkpoints, IngressLog};
use rkyv::util::AlignedVec;

use crate::app::{Plan, PlanKind};
use crate::durable::{aligned_copy, kind_code, kind_of, LogEntry};
use crate::error::{EngineError, Result};
use crate::function::{AnyBox, ErasedState};
use crate::message::{BarrierKind, OperatorId};
use crate::node::AppHandle;
use crate::protocol::Epoch;

/// How long a checkpoint may wait for operator states before it is given
/// up (its reply gets an error; the next checkpoint starts afresh).
pub(crate) const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest archived event a durable source takes: what one log record
/// holds, less room for the entry's other fields.
pub const MAX_EVENT_BYTES: usize = dirigo_storage::MAX_RECORD_LEN - 1024;

/// Most requests taken into one group commit.
const MAX_GROUP: usize = 1024;

/// Events handed back with the reason they were not acknowledged.
pub(crate) type IngestReply = std::result::Result<(), (EngineError, Vec<(u64, AnyBox)>)>;

/// What the journal thread is asked.
pub(crate) enum JournalMsg {
    /// Log these events (already encoded by the client), then forward them.
    Ingest {
        source: OperatorId,
        at_ns: u64,
        events: Vec<(u64, AnyBox)>,
        encoded: Vec<AlignedVec>,
        reply: Sender<IngestReply>,
    },
    /// Log a client barrier, then inject it at every source.
    Barrier {
        kind: BarrierKind,
        tag: u64,
        reply: Sender<Result<Epoch>>,
    },
    /// Take a checkpoint: the reply carries its number once committed.
    Checkpoint {
        reply: Sender<Result<u64>>,
    },
    /// From a shard: operator `op`'s whole state for checkpoint
    /// `checkpoint`, or why it could not be archived.
    State {
        checkpoint: u64,
        op: OperatorId,
        /// Only the changes since the previous checkpoint.
        delta: bool,
        bytes: std::result::Result<AlignedVec, String>,
    },
    Stop,
}

/// What a durable app's deploy found on disk and did about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The app's data folder.
    pub dir: PathBuf,
    /// The checkpoint restored, if there was one.
    pub checkpoint: Option<u64>,
    /// Log entries replayed after it: events and client barriers.
    pub replayed_events: u64,
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
    _lock: std::fs::File,
    log: IngressLog<LogEntry>,
    ckpts: Checkpoints,
    /// Log position the restored checkpoint covers (replay starts here).
    resume_from: u64,
    /// Base of the restored checkpoint's chain (its oldest member used).
    base: Option<u64>,
    pub recovery: Recovery,
    /// Restored states of durable operators, by operator.
    pub states: Vec<(OperatorId, Box<dyn ErasedState>)>,
}

fn storage_err(app: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Durability {
        app: app.to_owned(),
        reason: e.to_string(),
    }
}

/// Take the exclusive lock of an app's folder (`LOCK`, flock): a second
/// node (or process) deploying the same app's folder would interleave two
/// logs and clean the other's files.
fn lock_folder(dir: &Path) -> std::result::Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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

/// The durable operators of a plan: those whose state checkpoints save.
fn durable_ops(plan: &Plan) -> Vec<OperatorId> {
    plan.nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| match &n.kind {
            PlanKind::Function { f, .. } => f.state_codec().is_some(),
            PlanKind::Source => false,
        })
        .map(|(i, _)| OperatorId(i as u16))
        .collect()
}

/// Open an app's folder: the newest valid checkpoint's states, decoded, and
/// the log, recovered to its last intact entry.
pub(crate) fn open(dir: &Path, plan: &Plan, log_segment_bytes: u64) -> Result<Opened> {
    let app = plan.name.as_str();
    // One node at a time: before anything in the folder is read or cleaned.
    let lock = lock_folder(dir).map_err(|e| storage_err(app, e))?;
    let (ckpts, newest) = Checkpoints::open(dir).map_err(|e| storage_err(app, e))?;
    // Dormant states spilled by an earlier run are stale: the checkpoint
    // and the log are the truth.
    let spills = crate::spill::dir_of(dir);
    if spills.exists() {
        std::fs::remove_dir_all(&spills)
            .map_err(|e| storage_err(app, format!("cannot clear {}: {e}", spills.display())))?;
    }
    std::fs::create_dir_all(&spills)
        .map_err(|e| storage_err(app, format!("cannot create {}: {e}", spills.display())))?;
    let log = IngressLog::<LogEntry>::open(dir.join("log"), log_segment_bytes)
        .map_err(|e| storage_err(app, e))?;
    let mut recovery = Recovery {
        dir: dir.to_owned(),
        skipped: ckpts.skipped().iter().map(|e| e.to_string()).collect(),
        log_next_seq: log.next_seq(),
        ..Recovery::default()
    };
    let mut states = Vec::new();
    let mut resume_from = log.first_seq();
    let mut base = None;
    if let Some(ckpt) = newest {
        let (pos, oldest) = restore(&ckpts, &ckpt, plan, &mut states)?;
        resume_from = pos;
        base = Some(oldest);
        recovery.checkpoint = Some(ckpt.epoch());
    } else if log.first_seq() > 0 {
        // Without a checkpoint the whole log must still be there.
        return Err(storage_err(
            app,
            format!(
                "no valid checkpoint, and the log starts at entry {} (earlier entries were \
                 compacted against a checkpoint that is gone)",
                log.first_seq()
            ),
        ));
    }
    Ok(Opened {
        _lock: lock,
        log,
        ckpts,
        resume_from,
        base,
        recovery,
        states,
    })
}

/// Where an incremental checkpoint keeps an operator's changes: under the
/// operator's id with this bit set (operator ids are below `MAX_NODES`).
pub(crate) const DELTA: u16 = 0x8000;

const _: () = assert!(crate::app::MAX_NODES <= DELTA as usize);

/// The tag of a checkpoint barrier: the checkpoint's number, and whether
/// every operator saves its whole state (else only its changes, where it
/// can).
pub(crate) fn checkpoint_tag(id: u64, full: bool) -> u64 {
    debug_assert!(id < 1 << 63);
    id << 1 | u64::from(full)
}

pub(crate) fn split_checkpoint_tag(tag: u64) -> (u64, bool) {
    (tag >> 1, tag & 1 == 1)
}

/// The checkpoint of `epoch`: the newest, or one loaded as a base.
fn at<'a>(newest: &'a Checkpoint, loaded: &'a [Checkpoint], epoch: u64) -> &'a Checkpoint {
    if epoch == newest.epoch() {
        newest
    } else {
        loaded
            .iter()
            .find(|c| c.epoch() == epoch)
            .expect("bases are loaded before they are looked up")
    }
}

/// Decode every durable operator's state as of `ckpt`: its whole state in
/// `ckpt`, or, for an incremental checkpoint, the whole state in the
/// newest earlier listed checkpoint that has it, with the changes of every
/// checkpoint after that one applied in order. Returns the log position to
/// replay from.
fn restore(
    ckpts: &Checkpoints,
    ckpt: &Checkpoint,
    plan: &Plan,
    states: &mut Vec<(OperatorId, Box<dyn ErasedState>)>,
) -> Result<(u64, u64)> {
    let app = plan.name.as_str();
    let mut oldest = ckpt.epoch();
    let expected: BTreeSet<u16> = durable_ops(plan).iter().map(|o| o.0).collect();
    let saved: BTreeSet<u16> = ckpt.operators().into_iter().map(|o| o & !DELTA).collect();
    if saved != expected {
        return Err(storage_err(
            app,
            format!(
                "checkpoint {} saved operators {saved:?}, the app has durable operators \
                 {expected:?} (did the app's DAG change?)",
                ckpt.epoch()
            ),
        ));
    }
    // Older checkpoints, loaded (and validated) only if a chain needs them.
    let older: Vec<u64> = ckpts
        .listed()
        .into_iter()
        .filter(|&e| e < ckpt.epoch())
        .collect();
    let mut loaded: Vec<Checkpoint> = Vec::new();
    for op in durable_ops(plan) {
        let PlanKind::Function { f, .. } = &plan.nodes[op.0 as usize].kind else {
            continue;
        };
        let codec = f
            .state_codec()
            .expect("durable_ops returns operators with a codec");
        let name = &plan.nodes[op.0 as usize].name;
        let ctx = |epoch: u64, e: &dyn std::fmt::Display| {
            storage_err(app, format!("checkpoint {epoch}, operator {name:?}: {e}"))
        };
        // Epochs, newest first: the changes down to the whole state.
        let mut chain = vec![ckpt.epoch()];
        loop {
            let cp = at(
                ckpt,
                &loaded,
                *chain.last().expect("starts with the newest"),
            );
            if cp.state(op.0).is_some() {
                break;
            }
            if cp.state(op.0 | DELTA).is_none() {
                return Err(ctx(
                    cp.epoch(),
                    &"no saved state (did the app's DAG change?)",
                ));
            }
            let Some(&epoch) = older.get(chain.len() - 1) else {
                return Err(ctx(
                    cp.epoch(),
                    &"incremental, and its base checkpoint is not listed any more",
                ));
            };
            if loaded.iter().all(|c| c.epoch() != epoch) {
                loaded.push(ckpts.load(epoch).map_err(|e| ctx(epoch, &e))?);
            }
            chain.push(epoch);
        }
        let base = at(
            ckpt,
            &loaded,
            chain.pop().expect("ends with the whole state"),
        );
        oldest = oldest.min(base.epoch());
        // Joined straight into an aligned buffer: the one copy before rkyv
        // reads the archive in place.
        let whole = |cp: &Checkpoint, key: u16| {
            let len = cp.state_len(key).unwrap_or(0) as usize;
            aligned_copy(cp.state_parts(key).into_iter().flatten(), len)
        };
        let bytes = whole(base, op.0);
        let mut state = (codec.restore)(&bytes).map_err(|e| ctx(base.epoch(), &e))?;
        drop(bytes);
        for &epoch in chain.iter().rev() {
            let cp = at(ckpt, &loaded, epoch);
            let delta = whole(cp, op.0 | DELTA);
            (codec.apply_changes)(&mut *state, &delta).map_err(|e| ctx(epoch, &e))?;
        }
        states.push((op, state));
    }
    ckpt.sources()
        .iter()
        .find(|(s, _)| *s == 0)
        .map(|&(_, pos)| (pos, oldest))
        .ok_or_else(|| {
            storage_err(
                app,
                format!("checkpoint {} records no log position", ckpt.epoch()),
            )
        })
}

/// Forward every log entry after the restored checkpoint to the deployed
/// app, in log order, before it takes new input.
pub(crate) fn replay(opened: &mut Opened, app: &AppHandle, plan: &Plan) -> Result<()> {
    let name = plan.name.as_str();
    let max_batch = app.max_batch();
    let mut batch: Option<(OperatorId, Vec<(u64, AnyBox)>)> = None;
    let mut failure: Option<EngineError> = None;
    let (mut events, mut barriers) = (0u64, 0u64);
    let flush = |batch: &mut Option<(OperatorId, Vec<(u64, AnyBox)>)>| -> Result<()> {
        if let Some((source, evs)) = batch.take() {
            app.forward_ingest(source, app.now_ns(), evs)
                .map_err(|(e, _)| e)?;
        }
        Ok(())
    };
    opened
        .log
        .replay(opened.resume_from, |seq, entry| {
            if failure.is_some() {
                return Ok(());
            }
            let step = (|| -> Result<()> {
                match entry {
                    crate::durable::ArchivedLogEntry::Event {
                        source,
                        key,
                        payload,
                    } => {
                        let source = OperatorId(source.to_native());
                        let codec =
                            plan.node(source)
                                .and_then(|n| n.event_codec)
                                .ok_or_else(|| {
                                    storage_err(
                                        name,
                                        format!(
                                            "log entry {seq} is for node {} which is not a \
                                         durable source of the app",
                                            source.0
                                        ),
                                    )
                                })?;
                        let event = (codec.decode)(payload.as_slice())
                            .map_err(|e| storage_err(name, format!("log entry {seq}: {e}")))?;
                        if batch
                            .as_ref()
                            .is_some_and(|(s, b)| *s != source || b.len() >= max_batch)
                        {
                            flush(&mut batch)?;
                        }
                        batch
                            .get_or_insert_with(|| (source, Vec::new()))
                            .1
                            .push((key.to_native(), event));
                        events += 1;
                    }
                    crate::durable::ArchivedLogEntry::Barrier { kind, tag } => {
                        let kind = kind_of(*kind).ok_or_else(|| {
                            storage_err(
                                name,
                                format!("log entry {seq}: unknown barrier kind {kind}"),
                            )
                        })?;
                        flush(&mut batch)?;
                        app.inject_now(kind, tag.to_native())?;
                        barriers += 1;
                    }
                }
                Ok(())
            })();
            if let Err(e) = step {
                failure = Some(e);
            }
            Ok(())
        })
        .map_err(|e| storage_err(name, e))?;
    if let Some(e) = failure {
        return Err(e);
    }
    flush(&mut batch)?;
    opened.recovery.replayed_events = events;
    opened.recovery.replayed_barriers = barriers;
    Ok(())
}

struct Pending {
    id: u64,
    full: bool,
    /// Log position the checkpoint's barrier follows.
    pos: u64,
    writer: CheckpointWriter,
    missing: BTreeSet<u16>,
    reply: Sender<Result<u64>>,
    deadline: Instant,
}

/// The journal thread's state.
pub(crate) struct Journal {
    /// The app folder's lock, released when the journal stops.
    _lock: std::fs::File,
    app: AppHandle,
    name: String,
    log: IngressLog<LogEntry>,
    ckpts: Checkpoints,
    durable_ops: Vec<OperatorId>,
    /// A full checkpoint at least every this many (`NodeConfig`).
    full_every: u32,
    /// Base (full checkpoint) of the newest committed checkpoint's chain:
    /// what the manifest must keep while that checkpoint is a fallback.
    newest_base: Option<u64>,
    /// The current chain of incremental checkpoints: its base (a full
    /// checkpoint) and length. `None`: the next checkpoint is full (after a
    /// deploy, or after a checkpoint was given up, since operators may have
    /// forgotten changes it never committed).
    chain: Option<(u64, u32)>,
    pending: Option<Pending>,
    /// Set after a log failure: the journal takes no more input.
    failed: Option<String>,
}

/// One request of a group commit, after its entries were appended.
enum Logged {
    Ingest {
        source: OperatorId,
        at_ns: u64,
        events: Vec<(u64, AnyBox)>,
        reply: Sender<IngestReply>,
    },
    Barrier {
        kind: BarrierKind,
        tag: u64,
        reply: Sender<Result<Epoch>>,
    },
    Checkpoint {
        pos: u64,
        reply: Sender<Result<u64>>,
    },
}

impl Journal {
    pub(crate) fn new(opened: Opened, app: AppHandle, plan: &Plan, full_every: u32) -> Journal {
        Journal {
            _lock: opened._lock,
            name: plan.name.clone(),
            durable_ops: durable_ops(plan),
            full_every: full_every.max(1),
            chain: None,
            newest_base: opened.base,
            log: opened.log,
            ckpts: opened.ckpts,
            app,
            pending: None,
            failed: None,
        }
    }

    /// Serve requests until `Stop` (or every sender is gone).
    pub(crate) fn run(mut self, rx: Receiver<JournalMsg>) {
        loop {
            let wait = match &self.pending {
                Some(p) => p.deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            let first = match rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.expire_checkpoint();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(m) => group.push(m),
                    Err(_) => break,
                }
            }
            if !self.serve(group) {
                break;
            }
            self.expire_checkpoint();
        }
        if let Some(p) = self.pending.take() {
            let _ = p.reply.send(Err(EngineError::Stopped));
        }
        // Requests that came after `Stop` are refused with their events.
        // (One sent in the instant between this drain and the receiver's
        // drop is refused without them: its client sees `Stopped`.)
        while let Ok(m) = rx.try_recv() {
            match m {
                JournalMsg::Ingest { events, reply, .. } => {
                    let _ = reply.send(Err((EngineError::Stopped, events)));
                }
                JournalMsg::Barrier { reply, .. } => {
                    let _ = reply.send(Err(EngineError::Stopped));
                }
                JournalMsg::Checkpoint { reply } => {
                    let _ = reply.send(Err(EngineError::Stopped));
                }
                JournalMsg::State { .. } | JournalMsg::Stop => {}
            }
        }
    }

    /// One group commit. Returns false on `Stop`.
    fn serve(&mut self, group: Vec<JournalMsg>) -> bool {
        let mut logged = Vec::with_capacity(group.len());
        let mut go_on = true;
        let mut appended = false;
        for msg in group {
            match msg {
                JournalMsg::State {
                    checkpoint,
                    op,
                    delta,
                    bytes,
                } => self.on_state(checkpoint, op, delta, bytes),
                JournalMsg::Stop => go_on = false,
                JournalMsg::Ingest {
                    source,
                    at_ns,
                    events,
                    encoded,
                    reply,
                } => {
                    // Refused here, nothing of it is logged: a closed app, a
                    // stopping node, a failed log, an event too large.
                    if let Err(e) = self
                        .refuse_if_failed()
                        .and_then(|()| self.app.ensure_open())
                    {
                        let _ = reply.send(Err((e, events)));
                        continue;
                    }
                    if let Some(b) = encoded.iter().find(|b| b.len() > MAX_EVENT_BYTES) {
                        let e = EngineError::EventTooLarge {
                            len: b.len(),
                            max: MAX_EVENT_BYTES,
                        };
                        let _ = reply.send(Err((e, events)));
                        continue;
                    }
                    let r = events
                        .iter()
                        .zip(&encoded)
                        .try_for_each(|((key, _), bytes)| {
                            self.log
                                .append(&LogEntry::Event {
                                    source: source.0,
                                    key: *key,
                                    payload: bytes.to_vec(),
                                })
                                .map(|_| ())
                        });
                    match r {
                        Ok(()) => {
                            appended = true;
                            logged.push(Logged::Ingest {
                                source,
                                at_ns,
                                events,
                                reply,
                            });
                        }
                        Err(e) => {
                            self.fail(&e);
                            let _ = reply.send(Err((self.failed_error(), events)));
                        }
                    }
                }
                JournalMsg::Barrier { kind, tag, reply } => {
                    if let Err(e) = self
                        .refuse_if_failed()
                        .and_then(|()| self.app.ensure_open())
                    {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                    match self.log.append(&LogEntry::Barrier {
                        kind: kind_code(kind),
                        tag,
                    }) {
                        Ok(_) => {
                            appended = true;
                            logged.push(Logged::Barrier { kind, tag, reply });
                        }
                        Err(e) => {
                            self.fail(&e);
                            let _ = reply.send(Err(self.failed_error()));
                        }
                    }
                }
                JournalMsg::Checkpoint { reply } => {
                    if let Err(e) = self
                        .refuse_if_failed()
                        .and_then(|()| self.app.ensure_open())
                    {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                    let pos = self.log.next_seq();
                    logged.push(Logged::Checkpoint { pos, reply });
                }
            }
        }
        if appended {
            if let Err(e) = self.log.commit() {
                // Nothing of this group is acknowledged or forwarded.
                self.fail(&e);
                for l in logged {
                    self.refuse(l);
                }
                return go_on;
            }
        }
        for l in logged {
            self.forward(l);
        }
        go_on
    }

    fn refuse(&self, l: Logged) {
        let e = self.failed_error();
        match l {
            Logged::Ingest { events, reply, .. } => {
                let _ = reply.send(Err((e, events)));
            }
            Logged::Barrier { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Logged::Checkpoint { reply, .. } => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Hand a logged request to the shards, then acknowledge it.
    ///
    /// Once committed, a request is accepted whatever happens next: if the
    /// node stops before the shards take it, recovery applies it from the
    /// log. Refusing it then would invite the client to send it twice.
    fn forward(&mut self, l: Logged) {
        match l {
            Logged::Ingest {
                source,
                at_ns,
                events,
                reply,
            } => {
                let _ = self.app.forward_ingest(source, at_ns, events);
                let _ = reply.send(Ok(()));
            }
            Logged::Barrier { kind, tag, reply } => {
                // A barrier's reply is its id, which only an injection
                // gives: `Stopped` here means "logged, applied at recovery".
                let _ = reply.send(self.app.inject_now(kind, tag));
            }
            Logged::Checkpoint { pos, reply } => self.start_checkpoint(pos, reply),
        }
    }

    fn start_checkpoint(&mut self, pos: u64, reply: Sender<Result<u64>>) {
        if self.pending.is_some() {
            let _ = reply.send(Err(EngineError::Durability {
                app: self.name.clone(),
                reason: "a checkpoint is already in progress".into(),
            }));
            return;
        }
        let id = self.ckpts.next_epoch();
        let writer = match self.ckpts.begin(id) {
            Ok(w) => w,
            Err(e) => {
                let _ = reply.send(Err(storage_err(&self.name, e)));
                return;
            }
        };
        let full = self.chain.is_none_or(|(_, len)| len >= self.full_every);
        if let Err(e) = self
            .app
            .inject_now(BarrierKind::Checkpoint, checkpoint_tag(id, full))
        {
            // Some operators may have run it and forgotten their changes.
            self.chain = None;
            let _ = reply.send(Err(e));
            return;
        }
        let pending = Pending {
            id,
            full,
            pos,
            writer,
            missing: self.durable_ops.iter().map(|o| o.0).collect(),
            reply,
            deadline: Instant::now() + CHECKPOINT_TIMEOUT,
        };
        self.pending = Some(pending);
        // An app without durable operators has nothing to wait for.
        self.try_finish_checkpoint();
    }

    fn on_state(
        &mut self,
        checkpoint: u64,
        op: OperatorId,
        delta: bool,
        bytes: std::result::Result<AlignedVec, String>,
    ) {
        let Some(p) = &mut self.pending else {
            return; // a checkpoint given up on: its states are moot
        };
        if p.id != checkpoint || !p.missing.remove(&op.0) {
            return;
        }
        debug_assert!(!(delta && p.full), "a full checkpoint saves whole states");
        let key = if delta { op.0 | DELTA } else { op.0 };
        let put = bytes.and_then(|b| p.writer.put(key, &b).map_err(|e| e.to_string()));
        if let Err(reason) = put {
            let p = self.pending.take().expect("checked above");
            self.chain = None;
            let _ = p.reply.send(Err(EngineError::Durability {
                app: self.name.clone(),
                reason: format!("checkpoint {}: state of operator {}: {reason}", p.id, op.0),
            }));
            return;
        }
        self.try_finish_checkpoint();
    }

    fn try_finish_checkpoint(&mut self) {
        if !self.pending.as_ref().is_some_and(|p| p.missing.is_empty()) {
            return;
        }
        let p = self.pending.take().expect("checked above");
        // Keep what recovery may need: this checkpoint's chain, and while
        // it is a new base, the previous chain too (its newest member is the
        // fallback).
        let base = match (p.full, self.chain) {
            (true, _) => p.id,
            (false, Some((base, _))) => base,
            (false, None) => unreachable!("an incremental checkpoint follows a chain"),
        };
        // Keep what recovery may need: this checkpoint's chain back to its
        // base and, while a new base is the newest, the chain of the
        // previous newest (the fallback) back to its base.
        let keep_from = if p.full {
            self.newest_base.unwrap_or(p.id)
        } else {
            base
        };
        let committed = self
            .ckpts
            .commit_keeping(p.writer, &[(0, p.pos)], keep_from);
        self.chain = match (&committed, p.full, self.chain) {
            (Err(_), ..) => None,
            (Ok(()), true, _) => Some((p.id, 1)),
            (Ok(()), false, Some((base, len))) => Some((base, len + 1)),
            (Ok(()), false, None) => None,
        };
        if committed.is_ok() {
            self.newest_base = Some(base);
        }
        let r = committed
            .map_err(|e| storage_err(&self.name, e))
            .and_then(|()| {
                // The log before the oldest kept checkpoint (the fallback if
                // the newest is found damaged) is no longer needed.
                self.log
                    .truncate_before(self.ckpts.keep_log_from(0))
                    .map_err(|e| storage_err(&self.name, e))
            })
            .map(|_| p.id);
        let _ = p.reply.send(r);
    }

    fn expire_checkpoint(&mut self) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| Instant::now() >= p.deadline)
        {
            let p = self.pending.take().expect("checked above");
            self.chain = None;
            let _ = p.reply.send(Err(EngineError::Durability {
                app: self.name.clone(),
                reason: format!(
                    "checkpoint {} timed out after {CHECKPOINT_TIMEOUT:?} waiting for the state \
                     of operators {:?}",
                    p.id, p.missing
                ),
            }));
        }
    }

    fn fail(&mut self, e: &dyn std::fmt::Display) {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
    }

    fn failed_error(&self) -> EngineError {
        EngineError::Durability {
            app: self.name.clone(),
            reason: format!(
                "the ingress log failed and takes no more input: {}",
                self.failed.as_deref().unwrap_or("unknown")
            ),
        }
    }

    fn refuse_if_failed(&self) -> Result<()> {
        match self.failed {
            Some(_) => Err(self.failed_error()),
            None => Ok(()),
        }
    }
}
