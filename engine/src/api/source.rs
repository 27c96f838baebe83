//! Sending events into an app: a typed [`SourceHandle`] per source, and the
//! events it hands back when they could not be taken ([`Rejected`]).
//!
//! An app that is not durable sends straight to the source's shard (a full
//! inbox is `Backpressure`, the events handed back). A durable app's events
//! are encoded here, on the client's thread, and go through the app's
//! journal, which acknowledges them once they are in the ingress log.

use std::marker::PhantomData;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;

use super::entry::AppEntry;
use crate::durability::JournalMsg;
use crate::func::EventCodec;
use crate::limits::{MAX_EVENT_BYTES, RETRY_PAUSE, SEND_WAIT};
use crate::model::{AnyBox, EngineError, OperatorId, Result};
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

impl<T: Send + 'static> SourceHandle<T> {
    /// Hand a batch of `(key hash, event)` to the source's shard, or get it
    /// back: `AppFull` when the app holds `NodeConfig::max_in_flight`
    /// messages, `Backpressure` when the shard's inbox is full, `NotDeployed`
    /// after undeploy, `BatchTooLarge` over the configured limit.
    ///
    /// On a durable app, `Ok` means the batch is in the ingress log (this
    /// call waits for the journal's group commit, and the journal waits out
    /// a full inbox rather than refuse what it logged); `EventTooLarge` over
    /// `MAX_EVENT_BYTES` archived.
    pub fn try_send_batch(&self, events: Vec<(u64, T)>) -> std::result::Result<(), Rejected<T>> {
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
            return self.send_durable(&j.tx, events);
        }
        ingress
            .ingest(self.op, None, erase(events), Credit::Client)
            .map_err(|(error, events)| Rejected {
                error,
                events: unerase(events),
            })
    }

    /// A durable app's ingest: encode here (off the journal thread), log
    /// with the journal's next group commit, forward, then return.
    fn send_durable(
        &self,
        journal: &Sender<JournalMsg>,
        events: Vec<(u64, T)>,
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
        let (tx, rx) = mpsc::channel();
        let msg = JournalMsg::Ingest {
            source: self.op,
            at_ns: ingress.shards().now_ns(),
            events: erased,
            encoded,
            reply: tx,
        };
        if let Err(mpsc::SendError(msg)) = journal.send(msg) {
            ingress.release(msgs);
            let JournalMsg::Ingest { events, .. } = msg else {
                unreachable!("we built an ingest message")
            };
            let events = unerase(events);
            let error = EngineError::Stopped;
            return Err(Rejected { error, events });
        }
        match rx.recv() {
            // Forwarded: the shard that takes them counts the room taken.
            Ok(Ok(())) => Ok(()),
            Ok(Err((error, events))) => {
                ingress.release(msgs);
                let events = unerase(events);
                Err(Rejected { error, events })
            }
            // The journal stopped with the request unserved: not logged.
            Err(_) => {
                ingress.release(msgs);
                let (error, events) = (EngineError::Stopped, Vec::new());
                Err(Rejected { error, events })
            }
        }
    }

    /// Like `try_send_batch`, but waits out backpressure for up to `timeout`.
    pub fn send_batch(
        &self,
        mut events: Vec<(u64, T)>,
        timeout: Duration,
    ) -> std::result::Result<(), Rejected<T>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_send_batch(events) {
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
