//! Sinks: where an app's outputs leave the engine, through a bounded queue
//! per sink that its [`SinkReceiver`] reads.
//!
//! A sink never grows without limit. Its [`SinkPolicy`], chosen by the app,
//! says what a full queue does:
//! - [`SinkPolicy::Block`] (the default): fullness is backpressure. The
//!   shard does not run the sink while its queue is full (its messages wait
//!   in its mailbox, counted against the app's `max_in_flight`), so a reader
//!   that falls behind slows the app down to its pace, and in the end its
//!   clients get `AppFull`. Nothing is lost.
//! - [`SinkPolicy::DropOldest`]: the newest outputs are kept; each output
//!   pushed out of a full queue is counted ([`SinkReceiver::dropped`]), so a
//!   lagging reader knows how much it missed.
//!
//! The queue has one writer (the sink runs on its home shard only: it is
//! `Sequential`) and one reader. Its length is also kept in an atomic, so
//! the shard's "may the sink run?" check (`ready`) takes no lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use crate::func::{
    Context, Domain, ErasedFunction, ErasedState, Function, RunCtx, Sequential, StateCodec, Typed,
};
use crate::model::{AnyBox, Barrier, Batch};
use crate::protocol::{EdgeId, Strategy, Time};

/// What a sink does when its reader falls behind and its queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkPolicy {
    /// Hold the sink (and so, through the app's message limit, its
    /// clients) until the reader makes room. Nothing is lost.
    Block {
        /// Outputs (and barriers) the queue holds before the sink waits;
        /// the batch message that filled it is kept whole, so the queue
        /// holds at most `capacity + limits::BATCH_EVENTS - 1`.
        capacity: usize,
    },
    /// Make room by dropping the oldest output, counted as dropped.
    DropOldest {
        /// Outputs (and barriers) the queue holds.
        capacity: usize,
    },
}

impl SinkPolicy {
    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        match *self {
            SinkPolicy::Block { capacity } | SinkPolicy::DropOldest { capacity } => capacity,
        }
    }
}

impl Default for SinkPolicy {
    /// `Block` with `limits::SINK_CAPACITY` outputs.
    fn default() -> Self {
        SinkPolicy::Block {
            capacity: crate::limits::SINK_CAPACITY,
        }
    }
}

/// What a sink receives.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkEvent<T> {
    /// An output of the sink's input operator.
    Data {
        /// The output's key hash.
        key: u64,
        /// The output.
        value: T,
        /// End-to-end latency of the root message, ns.
        latency_ns: u64,
        /// When the sink took the output (ns on the node clock,
        /// `Node::now_ns`; for a batch, when its run began, a few µs at
        /// most before its last output): a reader that timestamps its own
        /// events measures to here, without its own delay in reading the
        /// queue.
        at_ns: u64,
    },
    /// Every data message before this barrier has been delivered above.
    Barrier(Barrier),
}

/// The queue between a sink and its reader.
struct SinkQueue<T> {
    q: Mutex<VecDeque<SinkEvent<T>>>,
    /// Signalled on a push while a reader waits.
    pushed: Condvar,
    /// Readers waiting on `pushed`; changed and read only under `q`'s
    /// lock, so a push never misses a waiter and never pays a wake
    /// syscall for none.
    waiting: AtomicUsize,
    /// Tasks waiting for a push (`poll_drain_into`), taken and woken by the
    /// next push; `has_wakers` says whether there are any. Both changed
    /// only under `q`'s lock (lock order: `q`, then `wakers`).
    wakers: Mutex<Vec<Waker>>,
    has_wakers: AtomicBool,
    /// `q.len()`, for the lock-free `ready` and empty checks.
    len: AtomicUsize,
    policy: SinkPolicy,
    dropped: AtomicU64,
    /// The reader is gone: outputs are discarded, by the user's choice.
    closed: AtomicBool,
}

impl<T> SinkQueue<T> {
    fn lock(&self) -> MutexGuard<'_, VecDeque<SinkEvent<T>>> {
        // A reader that panicked holding the lock left the queue intact:
        // every operation on it is a single push or pop.
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sink's write: under `Block` the shard checked `ready` first, so
    /// the queue has room for one (it is the only writer).
    fn push(&self, ev: SinkEvent<T>) {
        self.push_all(std::iter::once(ev));
    }

    /// The sink's write of a batch's outputs, under one lock. Under `Block`
    /// the shard checked `ready` (room for one) first, so the queue holds
    /// at most `capacity + BATCH_EVENTS - 1`: a batch is kept whole rather
    /// than lost.
    fn push_all(&self, evs: impl Iterator<Item = SinkEvent<T>>) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut q = self.lock();
        for ev in evs {
            if q.len() >= self.policy.capacity() {
                if let SinkPolicy::DropOldest { .. } = self.policy {
                    q.pop_front();
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            q.push_back(ev);
        }
        self.len.store(q.len(), Ordering::Release);
        let wake = self.waiting.load(Ordering::Relaxed) > 0;
        let tasks = self.take_wakers();
        drop(q);
        if wake {
            self.pushed.notify_one();
        }
        tasks.into_iter().for_each(Waker::wake);
    }

    /// The tasks waiting for a push (call under `q`'s lock).
    fn take_wakers(&self) -> Vec<Waker> {
        if !self.has_wakers.load(Ordering::Relaxed) {
            return Vec::new();
        }
        self.has_wakers.store(false, Ordering::Relaxed);
        std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn pop(&self, q: &mut VecDeque<SinkEvent<T>>) -> Option<SinkEvent<T>> {
        let ev = q.pop_front();
        self.len.store(q.len(), Ordering::Release);
        ev
    }

    /// Whether the sink may run now (room for one more, or never blocks).
    fn ready(&self) -> bool {
        match self.policy {
            SinkPolicy::Block { capacity } => {
                self.closed.load(Ordering::Relaxed) || self.len.load(Ordering::Acquire) < capacity
            }
            SinkPolicy::DropOldest { .. } => true,
        }
    }
}

/// The receiving end of a sink.
pub struct SinkReceiver<T> {
    queue: Arc<SinkQueue<T>>,
}

impl<T> SinkReceiver<T> {
    /// The next event, if one is waiting. An empty queue is seen without
    /// its lock, so a reader may poll this in a loop without slowing the
    /// shard that writes it.
    pub fn try_recv(&self) -> Option<SinkEvent<T>> {
        if self.is_empty() {
            return None;
        }
        let mut q = self.queue.lock();
        self.queue.pop(&mut q)
    }

    /// The next event, waiting up to `d` for it.
    pub fn recv_timeout(&self, d: Duration) -> Option<SinkEvent<T>> {
        let deadline = Instant::now().checked_add(d);
        let mut q = self.queue.lock();
        loop {
            if let Some(ev) = self.queue.pop(&mut q) {
                return Some(ev);
            }
            let left = match deadline {
                Some(t) => t.checked_duration_since(Instant::now())?,
                None => Duration::from_secs(3600),
            };
            self.queue.waiting.fetch_add(1, Ordering::Relaxed);
            q = match self.queue.pushed.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(e) => e.into_inner().0,
            };
            self.queue.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Move everything received so far onto the end of `out`, under one
    /// lock: a reader that reuses `out` reads without allocating.
    /// Returns how many it moved.
    pub fn drain_into(&self, out: &mut Vec<SinkEvent<T>>) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut q = self.queue.lock();
        let n = q.len();
        out.extend(q.drain(..));
        self.queue.len.store(0, Ordering::Release);
        n
    }

    /// `drain_into` for a task, at most `max` events: `Ready(n)` with
    /// `0 < n <= max` events moved onto `out`, or `Pending` with the task's
    /// waker kept for the next push.
    pub fn poll_drain_into(
        &self,
        cx: &mut TaskContext<'_>,
        out: &mut Vec<SinkEvent<T>>,
        max: usize,
    ) -> Poll<usize> {
        let mut q = self.queue.lock();
        if !q.is_empty() && max > 0 {
            let n = q.len().min(max);
            out.extend(q.drain(..n));
            self.queue.len.store(q.len(), Ordering::Release);
            return Poll::Ready(n);
        }
        let mut w = self.queue.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if !w.iter().any(|k| k.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        self.queue.has_wakers.store(true, Ordering::Relaxed);
        drop(w);
        drop(q);
        Poll::Pending
    }

    /// Everything received so far.
    pub fn drain(&self) -> Vec<SinkEvent<T>> {
        let mut q = self.queue.lock();
        let all: Vec<_> = q.drain(..).collect();
        self.queue.len.store(0, Ordering::Release);
        all
    }

    /// Events waiting to be read.
    pub fn len(&self) -> usize {
        self.queue.len.load(Ordering::Acquire)
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Outputs dropped from a full queue (`SinkPolicy::DropOldest`), so far.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// The sink's policy.
    pub fn policy(&self) -> SinkPolicy {
        self.queue.policy
    }
}

impl<T> Drop for SinkReceiver<T> {
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Relaxed);
        self.queue.lock().clear();
        self.queue.len.store(0, Ordering::Release);
    }
}

/// The user-facing half of a sink: a function that pushes what it gets.
struct SinkFn<T> {
    queue: Arc<SinkQueue<T>>,
}

impl<T: Send + 'static> Function for SinkFn<T> {
    type In = T;
    type Out = ();
    type State = Sequential<()>;
    fn on_message(&self, _: &mut Sequential<()>, key: u64, value: T, ctx: &mut Context<'_, ()>) {
        let at_ns = ctx.now_ns();
        let latency_ns = at_ns.saturating_sub(ctx.header().ingress_ns);
        self.queue.push(SinkEvent::Data {
            key,
            value,
            latency_ns,
            at_ns,
        });
    }
    fn on_critical(&self, _: &mut Sequential<()>, b: &Barrier, _: EdgeId, _: &mut Context<'_, ()>) {
        self.queue.push(SinkEvent::Barrier(*b));
    }
}

/// A sink as the shards run it: the erased `SinkFn`, plus `ready`.
pub(super) struct SinkNode<T> {
    f: Typed<SinkFn<T>>,
    queue: Arc<SinkQueue<T>>,
}

/// A sink's node and its receiver.
pub(super) fn sink<T: Send + 'static>(policy: SinkPolicy) -> (SinkNode<T>, SinkReceiver<T>) {
    let queue = Arc::new(SinkQueue {
        q: Mutex::new(VecDeque::new()),
        pushed: Condvar::new(),
        waiting: AtomicUsize::new(0),
        wakers: Mutex::new(Vec::new()),
        has_wakers: AtomicBool::new(false),
        len: AtomicUsize::new(0),
        policy,
        dropped: AtomicU64::new(0),
        closed: AtomicBool::new(false),
    });
    let f = Typed::new(SinkFn {
        queue: queue.clone(),
    });
    (
        SinkNode {
            f,
            queue: queue.clone(),
        },
        SinkReceiver { queue },
    )
}

impl<T: Send + 'static> ErasedFunction for SinkNode<T> {
    fn strategy(&self) -> Strategy {
        self.f.strategy()
    }
    fn new_state(&self) -> Box<dyn ErasedState> {
        self.f.new_state()
    }
    fn run(
        &self,
        state: &mut dyn ErasedState,
        key: u64,
        input: AnyBox,
        cx: RunCtx<'_>,
        out: &mut Vec<(u64, AnyBox)>,
    ) {
        self.f.run(state, key, input, cx, out)
    }
    fn run_batch(&self, _: &mut dyn ErasedState, input: Batch, cx: RunCtx<'_>, _: &mut Vec<Batch>) {
        let (header, now_ns) = (cx.header, cx.now_ns);
        // What `SinkFn::on_message` does for each, under one lock.
        let (values, _) = input.into_parts();
        let values = *values
            .downcast::<Vec<(u64, T)>>()
            .expect("the app builder checked this edge's type");
        let latency_ns = now_ns.saturating_sub(header.ingress_ns);
        self.queue
            .push_all(values.into_iter().map(|(key, value)| SinkEvent::Data {
                key,
                value,
                latency_ns,
                at_ns: now_ns,
            }));
    }
    fn run_critical(
        &self,
        state: &mut dyn ErasedState,
        barrier: &Barrier,
        cx: RunCtx<'_>,
        out: &mut Vec<(u64, AnyBox)>,
    ) {
        self.f.run_critical(state, barrier, cx, out)
    }
    fn run_timers(
        &self,
        state: &mut dyn ErasedState,
        timers: (&[u64], Time, Domain),
        cx: RunCtx<'_>,
        out: &mut Vec<(u64, AnyBox)>,
    ) {
        self.f.run_timers(state, timers, cx, out)
    }
    fn clone_output(&self, v: &AnyBox) -> AnyBox {
        self.f.clone_output(v)
    }
    fn state_codec(&self) -> Option<StateCodec> {
        None
    }
    fn ready(&self) -> bool {
        self.queue.ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader blocked in `recv_timeout` is woken by a push, not by its
    /// timeout: the push sees it waiting and notifies.
    #[test]
    fn a_waiting_reader_is_woken_by_the_push() {
        let (node, rx) = sink::<u64>(SinkPolicy::default());
        let queue = node.queue.clone();
        let reader = std::thread::spawn(move || {
            let t = Instant::now();
            let got = rx.recv_timeout(Duration::from_secs(30));
            (got, t.elapsed())
        });
        // Let the reader block first.
        while queue.waiting.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        queue.push(SinkEvent::Barrier(Barrier {
            id: 1,
            kind: crate::model::BarrierKind::Query,
            tag: 7,
        }));
        let (got, waited) = reader.join().expect("reader");
        assert!(matches!(got, Some(SinkEvent::Barrier(b)) if b.tag == 7));
        assert!(
            waited < Duration::from_secs(10),
            "woken by its timeout: {waited:?}"
        );
    }
}
