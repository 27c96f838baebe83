//! Sending events into an app: a typed [`SourceHandle`] per source, and the
//! events it hands back when they could not be taken ([`Rejected`]).
//!
//! An app that is not durable sends straight to the source's shard (a full
//! inbox is `Backpressure`, the events handed back). A durable app's events
//! are encoded here, on the client's thread, and go through the app's
//! journal, which acknowledges them once they are in the ingress log.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;

use super::entry::AppEntry;
use crate::durability::{EventSlot, IngestOutcome, JournalMsg};
use crate::func::EventCodec;
use crate::limits::{MAX_EVENT_BYTES, RETRY_PAUSE, SEND_WAIT};
use crate::model::{AnyBox, EngineError, OperatorId, Result};
use crate::runtime::command::Events;
use crate::runtime::Credit;

/// A typed handle on one source of a deployed app.
pub struct SourceHandle<T> {
    pub(crate) entry: Arc<AppEntry>,
    pub(crate) op: OperatorId,
    pub(crate) _t: PhantomData<fn(T)>,
}

/// Events handed back when a source could not take them.
#[derive(Debug)]
pub struct Rejected<T> {
    /// Why they were not taken.
    pub error: EngineError,
    /// The events, as they were handed over.
    pub events: Vec<(u64, T)>,
}

/// Box each event for the engine.
fn erase<T: Send + 'static>(events: Vec<(u64, T)>) -> Vec<(u64, AnyBox)> {
    events
        .into_iter()
        .map(|(k, v)| (k, Box::new(v) as AnyBox))
        .collect()
}

/// Take back events this handle boxed.
fn unerase<T: 'static>(events: Vec<(u64, AnyBox)>) -> Vec<(u64, T)> {
    events
        .into_iter()
        .map(|(k, v)| (k, *v.downcast::<T>().expect("we boxed these as T")))
        .collect()
}

/// Every event's log encoding, or why one has none (cannot be archived,
/// larger than `MAX_EVENT_BYTES`).
fn encode(app: &str, codec: EventCodec, events: &[(u64, AnyBox)]) -> Result<Vec<AlignedVec>> {
    let encoded = events
        .iter()
        .map(|(_, v)| (codec.encode)(v))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| EngineError::Durability {
            app: app.to_owned(),
            reason: e.to_string(),
        })?;
    if let Some(big) = encoded.iter().find(|b| b.len() > MAX_EVENT_BYTES) {
        return Err(EngineError::EventTooLarge {
            len: big.len(),
            max: MAX_EVENT_BYTES,
        });
    }
    Ok(encoded)
}

impl<T: Clone + Send + 'static> SourceHandle<T> {
    /// Hand a batch of `(key hash, event)` to the source's shard, or get it
    /// back: `AppFull` when the app holds `NodeConfig::max_in_flight`
    /// messages, `Backpressure` when the shard's inbox is full, `NotDeployed`
    /// after undeploy, `BatchTooLarge` over the configured limit.
    ///
    /// On a durable app, `Ok` means the batch is in the ingress log and was
    /// handed to its shard; this call waits for the journal's group commit,
    /// for up to `limits::SEND_WAIT` (see [`Self::send_batch`] for what a
    /// timeout gives); `EventTooLarge` over `MAX_EVENT_BYTES` archived.
    pub fn try_send_batch(&self, events: Vec<(u64, T)>) -> std::result::Result<(), Rejected<T>> {
        self.send_once(events, Instant::now() + SEND_WAIT)
    }

    /// A watermark: every event this source takes from now on has an
    /// event time after `time` (later ones are late). It follows the
    /// events this thread sent before it, and counts beside the source's
    /// own watermarks (the higher holds). The source must be on event
    /// time; a durable app's sources take none (`NotOnEventTime`).
    pub fn watermark(&self, time: crate::protocol::Time) -> Result<()> {
        if self.entry.journal.is_some() {
            return Err(EngineError::NotOnEventTime {
                app: self.entry.ingress.plan().name.clone(),
                source_op: self.op.0,
            });
        }
        self.entry.ingress.watermark(self.op, time)
    }

    /// One attempt, waiting for a durable app's journal up to `deadline`.
    fn send_once(
        &self,
        events: Vec<(u64, T)>,
        deadline: Instant,
    ) -> std::result::Result<(), Rejected<T>> {
        let events = match self.check(events)? {
            Some(events) => events,
            None => return Ok(()),
        };
        if self.entry.journal.is_none() {
            return self.send_volatile(events);
        }
        let (pending, rx) = self.begin_durable(events)?;
        let mut wait = JournalWait::new(deadline);
        let outcome = loop {
            let got = match wait.deadline {
                Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| flume::RecvTimeoutError::Disconnected),
            };
            if let Some(done) = wait.on(got, &pending.slot, &self.entry) {
                break done;
            }
        };
        end_durable(&self.entry, pending, outcome)
    }

    /// The same attempt for a task on a shard's executor, cut in two: the
    /// hand-over (now, in call order) and the acknowledgment (a durable
    /// app's journal answer, which may be awaited later).
    fn submit_once(&self, events: Vec<(u64, T)>, deadline: Instant) -> Ack<T> {
        let events = match self.check(events) {
            Ok(Some(events)) => events,
            Ok(None) => return Ack::Done(Ok(())),
            Err(r) => return Ack::Done(Err(r)),
        };
        if self.entry.journal.is_none() {
            return Ack::Done(self.send_volatile(events));
        }
        match self.begin_durable(events) {
            Ok((pending, rx)) => Ack::Journal(JournalAck {
                entry: self.entry.clone(),
                pending,
                rx,
                wait: JournalWait::new(deadline),
                _t: PhantomData,
            }),
            Err(r) => Ack::Done(Err(r)),
        }
    }

    /// The batch limit; `None` for an empty batch (nothing to send).
    fn check(
        &self,
        events: Vec<(u64, T)>,
    ) -> std::result::Result<Option<Vec<(u64, T)>>, Rejected<T>> {
        let max = self.entry.ingress.shards().cfg().max_batch;
        if events.len() > max {
            let error = EngineError::BatchTooLarge {
                len: events.len(),
                max,
            };
            return Err(Rejected { error, events });
        }
        Ok((!events.is_empty()).then_some(events))
    }

    /// An app that is not durable: straight to the source's shard (its
    /// local queue when the caller runs on it).
    fn send_volatile(&self, events: Vec<(u64, T)>) -> std::result::Result<(), Rejected<T>> {
        self.entry
            .ingress
            .ingest(self.op, None, Events::typed(events), Credit::Client)
            .map_err(|(error, events)| Rejected {
                error,
                events: events.into_typed(),
            })
    }

    /// A durable app's ingest, up to the wait: encode here (off the
    /// journal thread), reserve room, then hand the events to the journal,
    /// which logs them with its next group commit and forwards them.
    fn begin_durable(
        &self,
        events: Vec<(u64, T)>,
    ) -> std::result::Result<(PendingDurable, flume::Receiver<IngestOutcome>), Rejected<T>> {
        let ingress = &self.entry.ingress;
        let Some(journal) = &self.entry.journal else {
            unreachable!("called for durable apps only")
        };
        if let Err(error) = ingress.ensure_open() {
            return Err(Rejected { error, events });
        }
        let Some(codec) = ingress.plan().node(self.op).and_then(|n| n.event_codec) else {
            unreachable!("AppBuilder::build checks that a durable app's sources are durable")
        };
        let erased = erase(events);
        let encoded = match encode(&ingress.plan().name, codec, &erased) {
            Ok(e) => e,
            Err(error) => {
                let events = unerase(erased);
                return Err(Rejected { error, events });
            }
        };
        // Room is reserved before the events are logged: once logged they
        // are never refused, so this is where a durable app pushes back.
        let msgs = ingress.cost(self.op, erased.len());
        if let Err(error) = ingress.reserve(msgs) {
            let events = unerase(erased);
            return Err(Rejected { error, events });
        }
        let slot: EventSlot = Arc::new(Mutex::new(Some(erased)));
        let (tx, rx) = flume::unbounded();
        let msg = JournalMsg::Ingest {
            source: self.op,
            at_ns: ingress.shards().now_ns(),
            events: slot.clone(),
            encoded,
            reply: tx,
        };
        if journal.tx.send(msg).is_err() {
            ingress.release(msgs);
            let events = take_back(&slot).map(unerase).unwrap_or_default();
            let error = EngineError::Stopped;
            return Err(Rejected { error, events });
        }
        Ok((PendingDurable { slot, msgs }, rx))
    }

    /// Like `try_send_batch`, but waits out backpressure for up to
    /// `timeout`. On a durable app the timeout also bounds the wait for the
    /// journal: if it passes before the journal took the events, they come
    /// back with `Timeout` (never logged); if they are logged but not yet
    /// handed to their shard, `LoggedNotApplied` (committed: do not resend);
    /// once the journal is writing them, the call waits for the disk.
    pub fn send_batch(
        &self,
        mut events: Vec<(u64, T)>,
        timeout: Duration,
    ) -> std::result::Result<(), Rejected<T>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.send_once(events, deadline) {
                Ok(()) => return Ok(()),
                Err(r) if retryable(&r.error) && Instant::now() < deadline => {
                    events = r.events;
                    std::thread::sleep(RETRY_PAUSE);
                }
                Err(r) => return Err(r),
            }
        }
    }

    /// `send_batch` for a task on a shard's executor (`Node::spawn_on_shards`):
    /// it waits out backpressure and a durable app's journal by yielding
    /// to the executor, never blocking the shard's thread. Sent from a
    /// shard to a source homed on it, the batch takes the shard-local
    /// queue. Must run on a glommio executor.
    pub async fn send_async(
        &self,
        events: Vec<(u64, T)>,
        timeout: Duration,
    ) -> std::result::Result<(), Rejected<T>> {
        self.submit_async(events, timeout).await.wait().await
    }

    /// Hand a batch over from a task on a shard's executor, in call order,
    /// waiting out backpressure for up to `timeout` by yielding; the
    /// [`Ack`] says when it is accepted. A task that submits batch after
    /// batch, awaiting each `submit_async` but not each `Ack`, keeps them
    /// in order and lets a durable app's journal commit them together.
    pub async fn submit_async(&self, mut events: Vec<(u64, T)>, timeout: Duration) -> Ack<T> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.submit_once(events, deadline) {
                Ack::Done(Err(r)) if retryable(&r.error) && Instant::now() < deadline => {
                    events = r.events;
                    glommio::timer::sleep(RETRY_PAUSE).await;
                }
                ack => return ack,
            }
        }
    }

    /// One event, waiting out backpressure for up to `limits::SEND_WAIT`
    /// (a second).
    pub fn send(&self, key: u64, value: T) -> Result<()> {
        self.send_batch(vec![(key, value)], SEND_WAIT)
            .map_err(|r| r.error)
    }
}

/// A durable send's end: its room given back unless it was forwarded.
fn end_durable<T: 'static>(
    entry: &AppEntry,
    pending: PendingDurable,
    outcome: Outcome,
) -> std::result::Result<(), Rejected<T>> {
    if !matches!(
        outcome,
        Ok(()) | Err((EngineError::LoggedNotApplied { .. }, _))
    ) {
        // Not forwarded: no shard will count this room as taken.
        entry.ingress.release(pending.msgs);
    }
    outcome.map_err(|(error, events)| Rejected {
        error,
        events: unerase(events),
    })
}

/// What became of a batch handed over by [`SourceHandle::submit_async`].
pub enum Ack<T> {
    /// Known at once: an app that is not durable took it (or refused it).
    Done(std::result::Result<(), Rejected<T>>),
    /// A durable app's journal has it: its answer comes when the ingress
    /// log committed the batch.
    Journal(JournalAck<T>),
}

/// A durable app's acknowledgment to come (see [`Ack`]).
pub struct JournalAck<T> {
    entry: Arc<AppEntry>,
    pending: PendingDurable,
    rx: flume::Receiver<IngestOutcome>,
    wait: JournalWait,
    _t: PhantomData<fn(T)>,
}

impl<T: 'static> Ack<T> {
    /// The outcome: `Ok` once the batch is accepted (a durable app's: in
    /// the log and handed to its shard), as `SourceHandle::send_batch`
    /// says. Waits by yielding; must run on a glommio executor.
    pub async fn wait(self) -> std::result::Result<(), Rejected<T>> {
        let mut j = match self {
            Ack::Done(r) => return r,
            Ack::Journal(j) => j,
        };
        let outcome = loop {
            let got = match j.wait.deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    futures_lite::future::or(
                        async {
                            j.rx.recv_async()
                                .await
                                .map_err(|_| flume::RecvTimeoutError::Disconnected)
                        },
                        async {
                            glommio::timer::sleep(left).await;
                            Err(flume::RecvTimeoutError::Timeout)
                        },
                    )
                    .await
                }
                None => {
                    j.rx.recv_async()
                        .await
                        .map_err(|_| flume::RecvTimeoutError::Disconnected)
                }
            };
            if let Some(done) = j.wait.on(got, &j.pending.slot, &j.entry) {
                break done;
            }
        };
        end_durable(&j.entry, j.pending, outcome)
    }
}

/// Whether a refusal passes with time: the shard or the app is full.
fn retryable(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Backpressure { .. } | EngineError::AppFull { .. }
    )
}

/// A durable send handed to the journal: its events until the journal
/// takes them, and the room it reserved.
struct PendingDurable {
    slot: EventSlot,
    msgs: u64,
}

/// Waiting for the journal's answer to a durable send, until `deadline`:
/// the decisions, shared by the blocking and the async wait. A timeout
/// before the journal took the events takes them back (`Timeout`, never
/// logged). Once taken, the wait goes on for the log's outcome, which only
/// the disk delays; logged but not yet applied at the deadline is
/// `LoggedNotApplied`.
struct JournalWait {
    start: Instant,
    logged: bool,
    /// `None`: past it, and the journal has the events: wait for the disk.
    deadline: Option<Instant>,
}

type Outcome = std::result::Result<(), (EngineError, Vec<(u64, AnyBox)>)>;

impl JournalWait {
    fn new(deadline: Instant) -> JournalWait {
        JournalWait {
            start: Instant::now(),
            logged: false,
            deadline: Some(deadline),
        }
    }

    /// What one wait gave; `None`: wait again (with `self.deadline`).
    fn on(
        &mut self,
        got: std::result::Result<IngestOutcome, flume::RecvTimeoutError>,
        slot: &EventSlot,
        entry: &AppEntry,
    ) -> Option<Outcome> {
        use flume::RecvTimeoutError::{Disconnected, Timeout};
        let not_applied = || {
            let app = entry.ingress.plan().name.clone();
            Some(Err((EngineError::LoggedNotApplied { app }, Vec::new())))
        };
        match got {
            Ok(IngestOutcome::Applied) => Some(Ok(())),
            Ok(IngestOutcome::Logged) if self.deadline.is_none() => not_applied(),
            Ok(IngestOutcome::Logged) => {
                self.logged = true;
                None
            }
            Ok(IngestOutcome::Refused(e, events)) => Some(Err((e, events))),
            Ok(IngestOutcome::Unknown(e)) => Some(Err((e, Vec::new()))),
            Err(Timeout) if self.logged => not_applied(),
            Err(Timeout) => match take_back(slot) {
                // Taken back before the journal took them: never logged.
                Some(events) => Some(Err((EngineError::Timeout(self.start.elapsed()), events))),
                None => {
                    self.deadline = None; // being logged: wait for the disk
                    None
                }
            },
            // Logged, then the journal stopped before the shard took them:
            // recovery applies them.
            Err(Disconnected) if self.logged => not_applied(),
            Err(Disconnected) => {
                let events = take_back(slot).unwrap_or_default();
                Some(Err((EngineError::Stopped, events)))
            }
        }
    }
}

/// Take a durable send's events back from its slot, if the journal has
/// not taken them.
fn take_back(slot: &EventSlot) -> Option<Vec<(u64, AnyBox)>> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}
