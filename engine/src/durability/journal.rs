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
//! An I/O failure of the log stops the journal taking input (fail-stop):
//! later requests get the error, nothing unlogged is ever forwarded.
//!
//! Invariants, asserted: log positions only grow, and requests are
//! forwarded in the order they were logged; a checkpoint is sealed only
//! once every durable operator's state is in.

use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Instant;

use dirigo_storage::{CheckpointWriter, Checkpoints, IngressLog, StorageError};

use super::codec::{kind_code, LogEntry};
use super::figures::JournalFigures;
use super::recovery::{durability_err, durable_ops, storage_err, Opened};
use super::request::{checkpoint_tag, EventSlot, Forward, IngestOutcome, JournalMsg};
use crate::limits::{
    CHECKPOINT_TIMEOUT, CLOCK, DELTA, JOURNAL_IDLE_WAIT, MAX_EVENT_BYTES, MAX_GROUP,
};
use crate::model::{AnyBox, BarrierKind, EngineError, OperatorId, Result, StorageFailure};
use crate::plan::{Plan, SavedState};
use crate::protocol::Epoch;

/// A checkpoint whose barrier was injected, waiting for operator states.
struct Pending {
    id: u64,
    full: bool,
    /// Log position the checkpoint's barrier follows.
    pos: u64,
    writer: CheckpointWriter,
    /// Durable operators whose state has not come in yet.
    missing: BTreeSet<u16>,
    /// Operators whose state the writer holds (the seal checks these, not
    /// `missing`, against the app's durable operators).
    saved: BTreeSet<u16>,
    reply: Sender<Result<u64>>,
    /// When its barrier was injected.
    started: Instant,
    deadline: Instant,
    /// State bytes put so far.
    bytes: u64,
}

/// The journal thread's state.
pub(crate) struct Journal {
    /// The app folder's lock, released when the journal stops.
    _lock: std::fs::File,
    app: Arc<dyn Forward>,
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
    failed: Option<Arc<StorageError>>,
    /// The log position of the last request forwarded (forward order is
    /// log order).
    forwarded: u64,
    figures: Arc<JournalFigures>,
}

/// One request of a group commit, after its entries were appended: `pos`
/// is the log position after them.
enum Logged {
    Ingest {
        pos: u64,
        source: OperatorId,
        at_ns: u64,
        events: Vec<(u64, AnyBox)>,
        reply: flume::Sender<IngestOutcome>,
    },
    Barrier {
        pos: u64,
        kind: BarrierKind,
        tag: u64,
        reply: flume::Sender<Result<Epoch>>,
    },
    Checkpoint {
        pos: u64,
        reply: Sender<Result<u64>>,
    },
}

impl Logged {
    fn pos(&self) -> u64 {
        match self {
            Logged::Ingest { pos, .. }
            | Logged::Barrier { pos, .. }
            | Logged::Checkpoint { pos, .. } => *pos,
        }
    }
}

impl Journal {
    pub(crate) fn new(
        opened: Opened,
        app: Arc<dyn Forward>,
        plan: &Plan,
        full_every: u32,
    ) -> Journal {
        Journal {
            _lock: opened.lock,
            name: plan.name.clone(),
            durable_ops: durable_ops(plan).into_iter().map(|(op, _)| op).collect(),
            full_every: full_every.max(1),
            chain: None,
            newest_base: opened.base,
            forwarded: opened.log.next_seq(),
            figures: Arc::new(JournalFigures::new(opened.log.next_seq())),
            log: opened.log,
            ckpts: opened.ckpts,
            app,
            pending: None,
            failed: None,
        }
    }

    /// The figures this journal keeps, for stats.
    pub(crate) fn figures(&self) -> Arc<JournalFigures> {
        self.figures.clone()
    }

    /// Serve requests until `Stop` (or every sender is gone).
    pub(crate) fn run(mut self, rx: Receiver<JournalMsg>) {
        loop {
            let wait = match &self.pending {
                Some(p) => p.deadline.saturating_duration_since(Instant::now()),
                None => JOURNAL_IDLE_WAIT,
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
        self.refuse_the_rest(rx);
    }

    /// After `Stop`: the pending checkpoint, and requests that came after,
    /// are refused with their events. (One sent in the instant between this
    /// drain and the receiver's drop is refused without them: its client
    /// sees `Stopped`.)
    fn refuse_the_rest(&mut self, rx: Receiver<JournalMsg>) {
        if let Some(p) = self.pending.take() {
            let _ = p.reply.send(Err(EngineError::Stopped));
        }
        while let Ok(m) = rx.try_recv() {
            match m {
                JournalMsg::Ingest { events, reply, .. } => {
                    if let Some(events) = take(&events) {
                        let _ = reply.send(IngestOutcome::Refused(EngineError::Stopped, events));
                    }
                }
                JournalMsg::Barrier { reply, .. } => {
                    let _ = reply.send(Err(EngineError::Stopped));
                }
                JournalMsg::Checkpoint { reply } => {
                    let _ = reply.send(Err(EngineError::Stopped));
                }
                JournalMsg::State(_) | JournalMsg::Stop => {}
            }
        }
    }

    /// One group commit: append every request's entries, commit once, then
    /// forward in log order. Returns false on `Stop`.
    fn serve(&mut self, group: Vec<JournalMsg>) -> bool {
        let mut logged = Vec::with_capacity(group.len());
        let mut go_on = true;
        let failed_before = self.failed.is_some();
        for msg in group {
            let l = match msg {
                JournalMsg::State(s) => {
                    self.on_state(s);
                    None
                }
                JournalMsg::Stop => {
                    go_on = false;
                    None
                }
                JournalMsg::Ingest {
                    source,
                    at_ns,
                    events,
                    encoded,
                    reply,
                } => self.log_ingest(source, at_ns, events, encoded, reply),
                JournalMsg::Barrier { kind, tag, reply } => self.log_barrier(kind, tag, reply),
                JournalMsg::Checkpoint { reply } => self.log_checkpoint(reply),
            };
            logged.extend(l);
        }
        if self.failed.is_some() && !failed_before {
            // An append failed: what the group wrote before it may be in
            // the log. Nothing of it is acknowledged or forwarded.
            logged.into_iter().for_each(|l| self.unknown(l));
            return go_on;
        }
        // Commit when a request was appended (a checkpoint appends nothing).
        let appended = logged
            .iter()
            .any(|l| !matches!(l, Logged::Checkpoint { .. }));
        if appended {
            let t = Instant::now();
            let commit = self.log.commit();
            self.figures.committed(t.elapsed());
            if let Err(e) = commit {
                // Some of the group may have reached the disk.
                self.fail(e);
                logged.into_iter().for_each(|l| self.unknown(l));
                return go_on;
            }
        }
        // Every ingest of the group hears `Logged` before any forward, so
        // none waits on a forward ahead of it (a full inbox) to learn it.
        for l in &logged {
            if let Logged::Ingest { reply, .. } = l {
                let _ = reply.send(IngestOutcome::Logged);
            }
        }
        for l in logged {
            self.forward(l);
        }
        go_on
    }

    /// Refused here, nothing of it is logged: a closed app, a stopping
    /// node, a failed log.
    fn admit(&self) -> Result<()> {
        self.refuse_if_failed()
            .and_then(|()| self.app.ensure_open())
    }

    /// Append an ingest request's events, all in one segment (an event too
    /// large is refused whole, before anything of it is logged). A request
    /// whose client took its events back (its timeout passed) is skipped.
    fn log_ingest(
        &mut self,
        source: OperatorId,
        at_ns: u64,
        slot: EventSlot,
        encoded: Vec<rkyv::util::AlignedVec>,
        reply: flume::Sender<IngestOutcome>,
    ) -> Option<Logged> {
        let events = take(&slot)?;
        if let Err(e) = self.admit() {
            let _ = reply.send(IngestOutcome::Refused(e, events));
            return None;
        }
        if let Some(b) = encoded.iter().find(|b| b.len() > MAX_EVENT_BYTES) {
            let e = EngineError::EventTooLarge {
                len: b.len(),
                max: MAX_EVENT_BYTES,
            };
            let _ = reply.send(IngestOutcome::Refused(e, events));
            return None;
        }
        assert_eq!(events.len(), encoded.len(), "one encoding per event");
        let entries: Vec<LogEntry> = events
            .iter()
            .zip(&encoded)
            .map(|((key, _), bytes)| LogEntry::Event {
                source: source.0,
                key: *key,
                payload: bytes.to_vec(),
            })
            .collect();
        let pos = self.append(&entries);
        let l = Logged::Ingest {
            pos: self.log.next_seq(),
            source,
            at_ns,
            events,
            reply,
        };
        match pos {
            Ok(()) => Some(l),
            Err(e) => {
                self.fail(e);
                self.unknown(l);
                None
            }
        }
    }

    /// Append a client barrier.
    fn log_barrier(
        &mut self,
        kind: BarrierKind,
        tag: u64,
        reply: flume::Sender<Result<Epoch>>,
    ) -> Option<Logged> {
        if let Err(e) = self.admit() {
            let _ = reply.send(Err(e));
            return None;
        }
        let entry = LogEntry::Barrier {
            kind: kind_code(kind),
            tag,
        };
        let appended = self.append(std::slice::from_ref(&entry));
        let l = Logged::Barrier {
            pos: self.log.next_seq(),
            kind,
            tag,
            reply,
        };
        match appended {
            Ok(()) => Some(l),
            Err(e) => {
                self.fail(e);
                self.unknown(l);
                None
            }
        }
    }

    /// A checkpoint is a cut in the log: it records the position here.
    fn log_checkpoint(&mut self, reply: Sender<Result<u64>>) -> Option<Logged> {
        if let Err(e) = self.admit() {
            let _ = reply.send(Err(e));
            return None;
        }
        Some(Logged::Checkpoint {
            pos: self.log.next_seq(),
            reply,
        })
    }

    /// Append one request's entries (into one segment); the log's position
    /// grows by exactly their number.
    fn append(&mut self, entries: &[LogEntry]) -> std::result::Result<(), StorageError> {
        let before = self.log.next_seq();
        let seqs = self.log.append_all(entries)?;
        let n = entries.len() as u64;
        assert!(
            seqs.start == before && seqs.end == before + n && self.log.next_seq() == before + n,
            "log positions grow one entry at a time"
        );
        let bytes = entries
            .iter()
            .map(|e| match e {
                LogEntry::Event { payload, .. } => payload.len() as u64,
                LogEntry::Barrier { .. } => 0,
            })
            .sum();
        self.figures.appended(seqs.end, n, bytes);
        Ok(())
    }

    /// A request of a group whose writing failed: it may be in the log.
    fn unknown(&self, l: Logged) {
        let e = self.outcome_unknown();
        match l {
            Logged::Ingest { reply, .. } => {
                let _ = reply.send(IngestOutcome::Unknown(e));
            }
            Logged::Barrier { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            // A checkpoint wrote nothing to the log: refused.
            Logged::Checkpoint { reply, .. } => {
                let _ = reply.send(Err(self.failed_error()));
            }
        }
    }

    /// Hand a logged request to the shards, then acknowledge it.
    ///
    /// Once committed, a request is accepted whatever happens next: if the
    /// node stops before the shards take it, recovery applies it from the
    /// log. Refusing it then would invite the client to send it twice.
    fn forward(&mut self, l: Logged) {
        assert!(
            l.pos() >= self.forwarded,
            "requests are forwarded in log order"
        );
        self.forwarded = l.pos();
        match l {
            Logged::Ingest {
                source,
                at_ns,
                events,
                reply,
                ..
            } => {
                if self.app.forward_reserved(source, at_ns, events).is_ok() {
                    let _ = reply.send(IngestOutcome::Applied);
                }
            }
            Logged::Barrier {
                kind, tag, reply, ..
            } => {
                // A barrier's reply is its id, which only an injection
                // gives: `Stopped` here means "logged, applied at recovery".
                let _ = reply.send(self.app.inject_now(kind, tag));
            }
            Logged::Checkpoint { pos, reply } => self.start_checkpoint(pos, reply),
        }
    }

    fn start_checkpoint(&mut self, pos: u64, reply: Sender<Result<u64>>) {
        if self.pending.is_some() {
            let e = durability_err(&self.name, "a checkpoint is already in progress");
            let _ = reply.send(Err(e));
            return;
        }
        let id = self.ckpts.next_epoch();
        let writer = match self.ckpts.begin(id) {
            Ok(w) => w,
            Err(e) => {
                let what = format!("beginning checkpoint {id}");
                self.figures.checkpoint_failed();
                let _ = reply.send(Err(storage_err(&self.name, what, e)));
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
            self.figures.checkpoint_failed();
            let _ = reply.send(Err(e));
            return;
        }
        self.pending = Some(Pending {
            id,
            full,
            pos,
            writer,
            missing: self.durable_ops.iter().map(|o| o.0).collect(),
            saved: BTreeSet::new(),
            reply,
            started: Instant::now(),
            deadline: Instant::now() + CHECKPOINT_TIMEOUT,
            bytes: 0,
        });
        // An app without durable operators has nothing to wait for.
        self.try_finish_checkpoint();
    }

    /// An operator's state for the pending checkpoint.
    fn on_state(&mut self, s: SavedState) {
        let Some(p) = &mut self.pending else {
            return; // a checkpoint given up on: its states are moot
        };
        if p.id != s.checkpoint || !p.missing.remove(&s.op.0) {
            return;
        }
        assert!(!(s.delta && p.full), "a full checkpoint saves whole states");
        let key = if s.delta { s.op.0 | DELTA } else { s.op.0 };
        let what = || format!("checkpoint {}: state of operator {}", p.id, s.op.0);
        let put = match s.bytes {
            Err(reason) => Err(durability_err(&self.name, format!("{}: {reason}", what()))),
            Ok(b) => {
                p.bytes += b.len() as u64;
                let clock = s.clock.as_deref().map_or(Ok(()), |c| {
                    p.bytes += c.len() as u64;
                    p.writer.put(s.op.0 | CLOCK, c)
                });
                clock
                    .and_then(|()| p.writer.put(key, &b))
                    .map_err(|e| storage_err(&self.name, what(), e))
            }
        };
        if let Err(e) = put {
            let p = self.pending.take().expect("checked above");
            self.chain = None;
            self.figures.checkpoint_failed();
            let _ = p.reply.send(Err(e));
            return;
        }
        assert!(
            p.saved.insert(s.op.0),
            "one state per operator per checkpoint"
        );
        self.try_finish_checkpoint();
    }

    /// Seal and commit the pending checkpoint once every state is in.
    fn try_finish_checkpoint(&mut self) {
        if !self.pending.as_ref().is_some_and(|p| p.missing.is_empty()) {
            return;
        }
        let p = self.pending.take().expect("checked above");
        assert!(
            p.saved
                .iter()
                .copied()
                .eq(self.durable_ops.iter().map(|o| o.0)),
            "checkpoint {}: every durable state is in before the seal",
            p.id
        );
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
            let took = p.started.elapsed();
            self.figures.checkpointed(p.id, p.full, p.bytes, took);
        } else {
            self.figures.checkpoint_failed();
        }
        let r = committed
            .map_err(|e| storage_err(&self.name, format!("committing checkpoint {}", p.id), e))
            .and_then(|()| {
                // The log before the oldest kept checkpoint (the fallback if
                // the newest is found damaged) is no longer needed.
                self.log
                    .truncate_before(self.ckpts.keep_log_from(0))
                    .map_err(|e| storage_err(&self.name, "compacting its ingress log", e))
            })
            .map(|_| p.id);
        let _ = p.reply.send(r);
    }

    /// Give up the pending checkpoint past its deadline.
    fn expire_checkpoint(&mut self) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| Instant::now() >= p.deadline)
        {
            let p = self.pending.take().expect("checked above");
            self.chain = None;
            self.figures.checkpoint_failed();
            let reason = format!(
                "checkpoint {} timed out after {CHECKPOINT_TIMEOUT:?} waiting for the state of \
                 operators {:?}",
                p.id, p.missing
            );
            let _ = p.reply.send(Err(durability_err(&self.name, reason)));
        }
    }

    /// The log failed: from now on every request is refused with this
    /// (the first) failure as its cause.
    fn fail(&mut self, e: StorageError) {
        if self.failed.is_none() {
            self.failed = Some(Arc::new(e));
            self.figures.log_failed();
        }
    }

    fn failed_error(&self) -> EngineError {
        let source = self
            .failed
            .clone()
            .expect("called only after the log failed");
        EngineError::Storage(Box::new(StorageFailure {
            app: self.name.clone(),
            what: "the ingress log failed and takes no more input".into(),
            source,
        }))
    }

    fn outcome_unknown(&self) -> EngineError {
        let source = self
            .failed
            .clone()
            .expect("called only after the log failed");
        EngineError::OutcomeUnknown(Box::new(StorageFailure {
            app: self.name.clone(),
            what: "the outcome of the send is unknown: the ingress log failed while it was \
                   written, so it may be in the log (it is not handed back)"
                .into(),
            source,
        }))
    }

    fn refuse_if_failed(&self) -> Result<()> {
        match self.failed {
            Some(_) => Err(self.failed_error()),
            None => Ok(()),
        }
    }
}

/// Take a request's events from its slot; `None`: its client took them back.
fn take(slot: &EventSlot) -> Option<Vec<(u64, AnyBox)>> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}
