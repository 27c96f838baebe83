//! An app's doors on the wire: a source port decodes events from their
//! binary or JSON form into the source's type and sends them; a sink hub
//! fans a sink's outputs out to its subscribers, each with a bounded buffer
//! and its own lag policy.
//!
//! Both are typed inside and erased outside ([`IngestPort`],
//! [`SubscribePort`]), so the server holds one table of ports per app
//! whatever the types of its events. They are made by the catalog's
//! factories (`catalog::Ports`) and bound to a deployed app by the server.
//!
//! A hub's pump is a task (on the shard of the subscription that started
//! it, while the sink has subscribers) that drains the sink into every
//! subscriber's buffer as outputs come (`SinkReceiver::poll_drain_into`),
//! whatever each subscriber's pace: a subscriber that falls `capacity`
//! outputs behind is cut off (`Lag::Disconnect`) or loses its oldest
//! outputs, counted and reported (`Lag::DropOldest`); neither the app nor
//! the other subscribers wait for it. With no subscriber, the sink's own
//! policy holds (the built-in apps' `Block`: outputs wait, bounded, and
//! then the app pushes back).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use dirigo_engine::{
    Ack, AppHandle, BarrierKind, EngineError, SinkEvent, SinkReceiver, SourceHandle,
};

use crate::codec::WireValue;
use crate::error::{CodecError, PortError};
use crate::wire::{ErrorCode, Lag};

/// A future a port returns, run on the connection's shard.
pub(crate) type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The events of one ingest, in either form.
pub(crate) enum Batch<'a> {
    /// Binary values (the binary protocol).
    Binary(Vec<&'a [u8]>),
    /// JSON values (HTTP).
    Json(Vec<serde_json::Value>),
}

impl Batch<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Batch::Binary(v) => v.len(),
            Batch::Json(v) => v.len(),
        }
    }
}

/// Whether an ingest is accepted: now, or when a durable app's ingress
/// log has it (the future says).
pub(crate) enum Acked {
    Now(Result<usize, PortError>),
    Later(LocalFuture<'static, Result<usize, PortError>>),
}

/// A source of a deployed app, erased.
pub(crate) trait IngestPort: Send + Sync {
    /// Decode every event (all or none: a bad one refuses the batch with
    /// its index), then hand them over in call order, waiting out
    /// backpressure for up to `timeout` (by yielding: this runs on a
    /// shard). `n` events accepted, or why none was.
    fn submit<'a>(&'a self, batch: Batch<'_>, timeout: Duration) -> LocalFuture<'a, Acked>;
}

/// An event from its JSON form (a kind's own reading of JSON events).
pub(crate) type FromJson<T> = Arc<dyn Fn(serde_json::Value) -> Result<T, CodecError> + Send + Sync>;

/// How a catalog factory describes one source: its type, its key, and
/// its reading of JSON events (`T::from_json` unless the kind gives one).
pub(crate) struct SourceSpec<T> {
    pub(crate) name: String,
    pub(crate) key_of: Arc<dyn Fn(&T) -> u64 + Send + Sync>,
    pub(crate) from_json: FromJson<T>,
}

/// A typed source port bound to a deployed app.
struct SourcePort<T> {
    handle: SourceHandle<T>,
    key_of: Arc<dyn Fn(&T) -> u64 + Send + Sync>,
    from_json: FromJson<T>,
}

/// Binds a source spec to a deployed app (erases `T`).
pub(crate) trait BindSource: Send + Sync {
    fn name(&self) -> &str;
    fn bind(&self, app: &AppHandle) -> Result<Arc<dyn IngestPort>, EngineError>;
}

impl<T: WireValue> BindSource for SourceSpec<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn bind(&self, app: &AppHandle) -> Result<Arc<dyn IngestPort>, EngineError> {
        Ok(Arc::new(SourcePort {
            handle: app.source::<T>(&self.name)?,
            key_of: self.key_of.clone(),
            from_json: self.from_json.clone(),
        }))
    }
}

impl<T: WireValue> SourcePort<T> {
    fn decode(&self, batch: Batch<'_>) -> Result<Vec<(u64, T)>, PortError> {
        let bad = |index: usize| move |error: CodecError| PortError::Decode { index, error };
        let values: Vec<T> = match batch {
            Batch::Binary(v) => v
                .into_iter()
                .enumerate()
                .map(|(i, b)| T::from_binary(b).map_err(bad(i)))
                .collect::<Result<_, _>>()?,
            Batch::Json(v) => v
                .into_iter()
                .enumerate()
                .map(|(i, j)| (self.from_json)(j).map_err(bad(i)))
                .collect::<Result<_, _>>()?,
        };
        Ok(values.into_iter().map(|v| ((self.key_of)(&v), v)).collect())
    }
}

impl<T: WireValue> IngestPort for SourcePort<T> {
    fn submit<'a>(&'a self, batch: Batch<'_>, timeout: Duration) -> LocalFuture<'a, Acked> {
        let events = self.decode(batch);
        Box::pin(async move {
            let events = match events {
                Ok(e) => e,
                Err(e) => return Acked::Now(Err(e)),
            };
            let n = events.len();
            let done = move |r: Result<(), dirigo_engine::Rejected<T>>| {
                r.map(|()| n).map_err(|r| PortError::Engine(r.error))
            };
            match self.handle.submit_async(events, timeout).await {
                Ack::Done(r) => Acked::Now(done(r)),
                ack => Acked::Later(Box::pin(async move { done(ack.wait().await) })),
            }
        })
    }
}

/// How a subscriber wants outputs encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Binary,
    /// JSON text, for HTTP's Server-Sent Events.
    Json,
}

/// One item of a subscription, encoded for its subscriber.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Delivery {
    /// An output: key hash, value (binary, or JSON text) and the
    /// engine's latency of its root message, ns.
    Data {
        key: u64,
        value: Vec<u8>,
        latency_ns: u64,
        ingress_ns: u64,
    },
    /// A window-close barrier passed the sink.
    Barrier { window: u64 },
    /// This many outputs were dropped before the next one.
    Lagged { dropped: u64 },
    /// The subscription ended (fell behind under `Lag::Disconnect`: a
    /// `Limit`; the app was undeployed: `NotFound`; an output that does
    /// not encode: `Failed`); nothing follows.
    Closed { code: ErrorCode, reason: String },
}

/// A subscriber's bounded buffer.
struct SubState {
    items: VecDeque<Delivery>,
    /// Dropped since the last `Lagged` delivered.
    dropped: u64,
    /// Why the subscription ends, once it does.
    closed: Option<(ErrorCode, String)>,
    /// `Closed` was delivered: nothing more comes.
    done: bool,
    waker: Option<Waker>,
}

struct Subscriber {
    state: Mutex<SubState>,
    capacity: usize,
    lag: Lag,
    format: Format,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few pushes or pops: a panic cannot
    // leave the data half-changed.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Subscriber {
    /// Add `d` under the lag policy; whether the subscriber must be woken.
    fn offer(&self, st: &mut SubState, d: Delivery) {
        if st.closed.is_some() {
            return;
        }
        if st.items.len() >= self.capacity {
            match self.lag {
                Lag::DropOldest => {
                    st.items.pop_front();
                    st.dropped += 1;
                }
                Lag::Disconnect => {
                    st.items.clear();
                    let why = format!(
                        "the subscriber fell {} outputs behind its sink",
                        self.capacity
                    );
                    st.closed = Some((ErrorCode::Limit, why));
                    return;
                }
            }
        }
        st.items.push_back(d);
    }

    fn next(&self, st: &mut SubState) -> Option<Delivery> {
        if st.dropped > 0 {
            let dropped = std::mem::take(&mut st.dropped);
            return Some(Delivery::Lagged { dropped });
        }
        if let Some(d) = st.items.pop_front() {
            return Some(d);
        }
        let (code, reason) = st.closed.take()?;
        st.done = true;
        Some(Delivery::Closed { code, reason })
    }
}

/// A sink of a deployed app, erased: subscribe to it.
pub(crate) trait SubscribePort: Send + Sync {
    /// A new subscription, or `Limit` at `max` subscribers. With it, the
    /// hub's pump when none runs: the caller spawns it on its shard.
    fn subscribe(
        &self,
        lag: Lag,
        capacity: usize,
        format: Format,
        max: usize,
    ) -> Result<(Subscription, Option<LocalFuture<'static, ()>>), PortError>;
    /// End every subscription (the app is going away: `NotFound`).
    fn close(&self, reason: &str);
}

/// A subscription's reading end; dropping it unsubscribes.
pub(crate) struct Subscription {
    hub: Arc<dyn Leave>,
    me: Arc<Subscriber>,
}

/// Unsubscribing, erased.
trait Leave: Send + Sync {
    fn leave(&self, me: &Arc<Subscriber>);
}

impl Subscription {
    /// The next delivery: `None` once `Closed` was delivered.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let mut st = lock(&self.me.state);
        if st.done {
            return Poll::Ready(None);
        }
        if let Some(d) = self.me.next(&mut st) {
            return Poll::Ready(Some(d));
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The next delivery, awaited.
    pub(crate) async fn next(&self) -> Option<Delivery> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.leave(&self.me);
    }
}

/// A typed sink's hub: its subscribers, and whether its pump runs.
pub(crate) struct Hub<T> {
    rx: Mutex<SinkReceiver<T>>,
    subs: Mutex<Subs>,
}

struct Subs {
    list: Vec<Arc<Subscriber>>,
    /// A pump task runs (changed under this lock only).
    pumping: bool,
    /// The pump, waiting for the sink: woken when the last subscriber
    /// leaves, so it ends.
    pump_waker: Option<Waker>,
}

impl<T: WireValue> Hub<T> {
    pub(crate) fn new(rx: SinkReceiver<T>) -> Arc<Hub<T>> {
        Arc::new(Hub {
            rx: Mutex::new(rx),
            subs: Mutex::new(Subs {
                list: Vec::new(),
                pumping: false,
                pump_waker: None,
            }),
        })
    }

    fn encode(ev: &SinkEvent<T>, format: Format) -> Option<Delivery> {
        match ev {
            SinkEvent::Data {
                key,
                value,
                latency_ns,
                at_ns,
            } => {
                let value = match format {
                    Format::Binary => value.to_binary(),
                    Format::Json => value.to_json().map(|j| j.to_string().into_bytes()),
                };
                Some(match value {
                    Ok(value) => Delivery::Data {
                        key: *key,
                        value,
                        latency_ns: *latency_ns,
                        ingress_ns: at_ns.saturating_sub(*latency_ns),
                    },
                    Err(e) => Delivery::Closed {
                        code: ErrorCode::Failed,
                        reason: format!("an output does not encode: {e}"),
                    },
                })
            }
            SinkEvent::Barrier(b) if b.kind == BarrierKind::WindowClose => {
                Some(Delivery::Barrier { window: b.tag })
            }
            SinkEvent::Barrier(_) => None,
        }
    }

    /// The pump: move the sink's outputs into every subscriber's buffer
    /// as they come, whatever each subscriber's pace, until none is left.
    async fn pump(self: Arc<Self>) {
        let mut buf = Vec::new();
        loop {
            let got = std::future::poll_fn(|cx| {
                let rx = lock(&self.rx);
                // At most the smallest buffer's worth at a time.
                let chunk = {
                    let s = lock(&self.subs);
                    if s.list.is_empty() {
                        return Poll::Ready(false);
                    }
                    s.list.iter().map(|x| x.capacity).min().unwrap_or(1)
                };
                if rx.poll_drain_into(cx, &mut buf, chunk).is_ready() {
                    return Poll::Ready(true);
                }
                lock(&self.subs).pump_waker = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            // The subscribers as of now: one that joined while the pump
            // waited gets what came after it joined.
            let subs = {
                let mut s = lock(&self.subs);
                if !got && s.list.is_empty() {
                    s.pumping = false;
                    return;
                }
                s.list.clone()
            };
            self.distribute(&subs, &mut buf);
            // Let the subscribers (and the shard) run between chunks.
            futures_lite::future::yield_now().await;
        }
    }

    fn distribute(&self, subs: &[Arc<Subscriber>], buf: &mut Vec<SinkEvent<T>>) {
        let mut wake = Vec::with_capacity(subs.len());
        for s in subs {
            let mut st = lock(&s.state);
            for ev in buf.iter() {
                if let Some(d) = Self::encode(ev, s.format) {
                    s.offer(&mut st, d);
                }
            }
            wake.extend(st.waker.take());
        }
        buf.clear();
        wake.into_iter().for_each(Waker::wake);
    }
}

impl<T: WireValue> Leave for Hub<T> {
    fn leave(&self, me: &Arc<Subscriber>) {
        let mut s = lock(&self.subs);
        s.list.retain(|x| !Arc::ptr_eq(x, me));
        if s.list.is_empty() {
            if let Some(w) = s.pump_waker.take() {
                w.wake();
            }
        }
    }
}

/// A hub and its type, for the erased port.
pub(crate) struct SinkPort<T>(pub(crate) Arc<Hub<T>>);

impl<T: WireValue> SubscribePort for SinkPort<T> {
    fn subscribe(
        &self,
        lag: Lag,
        capacity: usize,
        format: Format,
        max: usize,
    ) -> Result<(Subscription, Option<LocalFuture<'static, ()>>), PortError> {
        let mut subs = lock(&self.0.subs);
        if subs.list.len() >= max {
            return Err(PortError::Subscribers { max });
        }
        let me = Arc::new(Subscriber {
            state: Mutex::new(SubState {
                items: VecDeque::new(),
                dropped: 0,
                closed: None,
                done: false,
                waker: None,
            }),
            capacity: capacity.max(1),
            lag,
            format,
        });
        subs.list.push(me.clone());
        let pump = (!subs.pumping).then(|| {
            subs.pumping = true;
            Box::pin(self.0.clone().pump()) as LocalFuture<'static, ()>
        });
        let sub = Subscription {
            hub: self.0.clone(),
            me,
        };
        Ok((sub, pump))
    }

    fn close(&self, reason: &str) {
        let (subs, pump) = {
            let mut s = lock(&self.0.subs);
            (std::mem::take(&mut s.list), s.pump_waker.take())
        };
        if let Some(w) = pump {
            w.wake();
        }
        for s in subs {
            let mut st = lock(&s.state);
            st.closed
                .get_or_insert_with(|| (ErrorCode::NotFound, reason.to_owned()));
            if let Some(w) = st.waker.take() {
                w.wake();
            }
        }
    }
}
