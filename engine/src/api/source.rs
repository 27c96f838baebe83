//! Sending events into an app: a typed [`SourceHandle`] per source, and the
//! events it hands back when they could not be taken ([`Rejected`]).
//!
//! An app that is not durable sends straight to the source's shard (a full
//! inbox is `Backpressure`, the events handed back). A durable app's events
//! are encoded here, on the client's thread, and go through the app's
//! journal, which acknowledges them once they are in the ingress log.

use std::marker::PhantomData;
use std::sync::mpsc::{self, Sender};
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

    /// One attempt, waiting for a durable app's journal up to `deadline`.
    fn send_once(
        &self,
        events: Vec<(u64, T)>,
        deadline: Instant,
    ) -> std::result::Result<(), Rejected<T>> {
        let ingress = &self.entry.ingress;
        let max = ingress.shards().cfg().max_batch;
        if events.len() > max {
            let error = EngineError::BatchTooLarge {
                len: events.len(),
                max,
            };
            return Err(Rejected { error, events });
        }
        if events.is_empty() {
            return Ok(());
        }
        if let Some(j) = &self.entry.journal {
            return self.send_durable(&j.tx, events, deadline);
        }
        ingress
            .ingest(self.op, None, Events::typed(events), Credit::Client)
            .map_err(|(error, events)| Rejected {
                error,
                events: events.into_typed(),
            })
    }

    /// A durable app's ingest: encode here (off the journal thread), reserve
    /// room, then hand the events to the journal, which logs them with its
    /// next group commit and forwards them.
    fn send_durable(
        &self,
        journal: &Sender<JournalMsg>,
        events: Vec<(u64, T)>,
        deadline: Instant,
    ) -> std::result::Result<(), Rejected<T>> {
        let ingress = &self.entry.ingress;
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
        let (tx, rx) = mpsc::channel();
        let msg = JournalMsg::Ingest {
            source: self.op,
            at_ns: ingress.shards().now_ns(),
            events: slot.clone(),
            encoded,
            reply: tx,
        };
        if journal.send(msg).is_err() {
            ingress.release(msgs);
            let events = take_back(&slot).map(unerase).unwrap_or_default();
            let error = EngineError::Stopped;
            return Err(Rejected { error, events });
        }
        let outcome = self.await_journal(&rx, &slot, deadline);
        if !matches!(
            outcome,
            Ok(()) | Err((EngineError::LoggedNotApplied { .. }, _))
        ) {
            // Not forwarded: no shard will count this room as taken.
            ingress.release(msgs);
        }
        outcome.map_err(|(error, events)| Rejected {
            error,
            events: unerase(events),
        })
    }

    /// Wait for the journal's answer to a durable send until `deadline`.
    /// `Ok`: applied. A timeout before the journal took the events takes
    /// them back (`Timeout`, never logged; the caller hands them back).
    /// Once taken, the wait goes on for the log's outcome, which only the
    /// disk delays; logged but not yet applied at the deadline is
    /// `LoggedNotApplied`.
    fn await_journal(
        &self,
        rx: &mpsc::Receiver<IngestOutcome>,
        slot: &EventSlot,
        deadline: Instant,
    ) -> std::result::Result<(), (EngineError, Vec<(u64, AnyBox)>)> {
        let start = Instant::now();
        let not_applied = || {
            let app = self.entry.ingress.plan().name.clone();
            Err((EngineError::LoggedNotApplied { app }, Vec::new()))
        };
        let (mut logged, mut deadline) = (false, Some(deadline));
        loop {
            let got = match deadline {
                Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(IngestOutcome::Applied) => return Ok(()),
                Ok(IngestOutcome::Logged) if deadline.is_none() => return not_applied(),
                Ok(IngestOutcome::Logged) => logged = true,
                Ok(IngestOutcome::Refused(e, events)) => return Err((e, events)),
                Ok(IngestOutcome::Unknown(e)) => return Err((e, Vec::new())),
                Err(mpsc::RecvTimeoutError::Timeout) if logged => return not_applied(),
                Err(mpsc::RecvTimeoutError::Timeout) => match take_back(slot) {
                    // Taken back before the journal took them: never logged.
                    Some(events) => return Err((EngineError::Timeout(start.elapsed()), events)),
                    None => deadline = None, // being logged: wait for the disk
                },
                // Logged, then the journal stopped before the shard took
                // them: recovery applies them.
                Err(mpsc::RecvTimeoutError::Disconnected) if logged => return not_applied(),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let events = take_back(slot).unwrap_or_default();
                    return Err((EngineError::Stopped, events));
                }
            }
        }
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
                Err(r)
                    if matches!(
                        r.error,
                        EngineError::Backpressure { .. } | EngineError::AppFull { .. }
                    ) && Instant::now() < deadline =>
                {
                    events = r.events;
                    std::thread::sleep(RETRY_PAUSE);
                }
                Err(r) => return Err(r),
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

/// Take a durable send's events back from its slot, if the journal has
/// not taken them.
fn take_back(slot: &EventSlot) -> Option<Vec<(u64, AnyBox)>> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}
