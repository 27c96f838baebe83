//! A connection's state after its handshake, and how answers become
//! frames: what both the connection loop (`conn`) and its requests
//! (`requests`) use.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use glommio::channels::local_channel::LocalSender;
use glommio::sync::Semaphore;
use glommio::Task;

use super::control::Control;
use super::state::State;
use crate::limits::{MAX_FRAME_BYTES, MAX_SUBSCRIPTIONS_PER_CONNECTION};
use crate::wire::{ErrorCode, Message, Response};

/// What every connection of a server holds.
pub(crate) struct Ctx {
    pub(crate) state: Arc<State>,
    pub(crate) control: Arc<Control>,
}

/// Frames to the writer.
pub(super) type Out = Rc<LocalSender<Vec<u8>>>;

/// A shard's signal that its server is stopping: set once, by the shard's
/// accept loops when they see the server stop; its connections stop
/// reading requests, answer what they took, end their subscriptions with
/// a `ShuttingDown` notice, and close.
#[derive(Clone)]
pub(crate) struct Stop(Arc<StopInner>);

struct StopInner {
    set: AtomicBool,
    /// Dropped to set it: every receiver's wait then ends.
    tx: Mutex<Option<flume::Sender<()>>>,
    rx: flume::Receiver<()>,
}

impl Stop {
    pub(crate) fn new() -> Stop {
        let (tx, rx) = flume::bounded(1);
        Stop(Arc::new(StopInner {
            set: AtomicBool::new(false),
            tx: Mutex::new(Some(tx)),
            rx,
        }))
    }

    /// Set it, waking every waiter (idempotent).
    pub(crate) fn set(&self) {
        self.0.set.store(true, Ordering::Release);
        drop(self.0.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.set.load(Ordering::Acquire)
    }

    /// Wait until it is set (nothing is ever sent: the receive ends when
    /// the sender is dropped; a dropped wait leaves no waiter behind).
    pub(crate) async fn wait(&self) {
        let _ = self.0.rx.recv_async().await;
    }
}

/// What a request or subscription cut short by a shutdown is told.
pub(crate) const SHUTTING_DOWN: &str = "the node is shutting down";

/// A connection after its handshake.
pub(crate) struct Conn {
    pub(super) ctx: Arc<Ctx>,
    pub(super) token: String,
    pub(super) out: Out,
    pub(super) window: Rc<Semaphore>,
    /// Its shard's stop signal.
    pub(super) stop: Stop,
    /// The subscriptions' tasks (dropped: cancelled), each with its flag
    /// of having ended.
    pub(super) subs: Vec<(Rc<Cell<bool>>, Task<()>)>,
}

/// `m` as a frame for request `req`; a message too large for a frame
/// becomes an error response.
pub(super) fn frame<M: Message>(m: &M, req: u64) -> Vec<u8>
where
    M::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<M, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let mut buf = Vec::new();
    if let Err(e) = m.encode(req, MAX_FRAME_BYTES, &mut buf) {
        buf.clear();
        let r = Response::Error {
            code: ErrorCode::Limit,
            message: format!("the answer does not fit a frame: {e}"),
        };
        r.encode(req, MAX_FRAME_BYTES, &mut buf)
            .expect("a short error response fits a frame");
    }
    buf
}

/// An error response.
pub(super) fn error(req: u64, code: ErrorCode, message: impl Into<String>) -> Vec<u8> {
    let r = Response::Error {
        code,
        message: message.into(),
    };
    frame(&r, req)
}

impl Conn {
    /// Queue a frame for the writer; `Err` once the writer is gone.
    pub(super) async fn send(&self, f: Vec<u8>) -> Result<(), String> {
        self.out
            .send(f)
            .await
            .map_err(|_| "the connection's writer is gone".to_string())
    }

    /// Forget the subscriptions that ended.
    fn prune(&mut self) {
        self.subs.retain(|(ended, _)| !ended.get());
    }

    /// Whether a subscription is live (then silence is not idleness).
    pub(super) fn subscribed(&mut self) -> bool {
        self.prune();
        !self.subs.is_empty()
    }

    /// Room for one more subscription.
    pub(super) fn subscription_room(&mut self) -> bool {
        self.prune();
        self.subs.len() < MAX_SUBSCRIPTIONS_PER_CONNECTION
    }
}
