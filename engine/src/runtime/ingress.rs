//! The low-level door into one deployed app: hand ingest batches and
//! barriers to its sources' shards, count them for quiescence, and wait for
//! the app to settle.
//!
//! Both the client API (`api`, for an app that is not durable) and the
//! journal of a durable app (through `durability::Forward`) send through
//! it, so "count as submitted, then send, or undo the count" is written
//! once. It owns the app's [`Gate`] and barrier counter; nothing on the
//! message path touches either.

use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::command::{Command, Events};
use super::shards::Shards;
use crate::durability::{Forward, IngestReply};
use crate::limits::{QUIESCE_POLL, QUIESCE_SETTLE, RETRY_PAUSE};
use crate::model::{AnyBox, AppId, Barrier, BarrierKind, EngineError, OperatorId, Result};
use crate::plan::{Plan, PlanKind};
use crate::protocol::Epoch;
use crate::quiesce::{in_flight, Gate, Snapshot};

/// How an ingest pays for the messages it will become (see
/// `quiesce::in_flight`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Credit {
    /// A client's send: reserve, or be refused with `AppFull` when the app
    /// is at its limit; a full inbox is `Backpressure`.
    Client,
    /// Reserved already (a durable send, by its client before the journal
    /// logged it): never refused; a full inbox is waited out.
    Reserved,
    /// A replay from the log: wait for room under the limit, then for the
    /// inbox, for as long as the node runs.
    Replay,
}

/// One deployed app's ingress, shared by its handles and its journal.
pub(crate) struct AppIngress {
    shards: Arc<Shards>,
    plan: Arc<Plan>,
    /// Last barrier injected; the lock orders injections across threads.
    barrier: Mutex<Epoch>,
    /// Ingest and barrier commands accepted into shard inboxes, and whether
    /// the app still takes new ones (see `quiesce`).
    gate: Gate,
}

impl AppIngress {
    pub(crate) fn new(shards: Arc<Shards>, plan: Arc<Plan>) -> AppIngress {
        AppIngress {
            shards,
            plan,
            barrier: Mutex::new(0),
            gate: Gate::new(),
        }
    }

    pub(crate) fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    pub(crate) fn shards(&self) -> &Arc<Shards> {
        &self.shards
    }

    fn id(&self) -> AppId {
        self.plan.id
    }

    /// Refuse every later command (undeploy, or a failed deploy).
    pub(crate) fn close(&self) {
        self.gate.close();
    }

    /// `Ok` while the app takes input and the node runs.
    pub(crate) fn ensure_open(&self) -> Result<()> {
        if self.shards.is_stopped() {
            return Err(EngineError::Stopped);
        }
        if self.gate.is_closed() {
            return Err(EngineError::NotDeployed(self.id()));
        }
        self.ensure_healthy()
    }

    /// `Ok` unless the app failed, or a shard died: the app's actors homed
    /// there are gone, and so may be its lessees there (any app may have
    /// leased on any shard), so a barrier could never complete.
    pub(crate) fn ensure_healthy(&self) -> Result<()> {
        let failed = |cause: String| {
            Err(EngineError::AppFailed {
                app: self.plan.name.clone(),
                cause,
            })
        };
        if let Some(cause) = self.plan.failure() {
            return failed(cause.to_owned());
        }
        if let Some((shard, cause)) = self.shards.any_death() {
            return failed(format!("shard {shard} died: {cause}"));
        }
        Ok(())
    }

    /// Count a command as submitted, unless the app is closed or failed or
    /// the node stopped. On `Ok`, the caller must send the command or
    /// `gate.undo()`.
    fn begin_submit(&self) -> Result<()> {
        if self.shards.is_stopped() {
            return Err(EngineError::Stopped);
        }
        self.ensure_healthy()?;
        self.gate
            .enter()
            .map_err(|_| EngineError::NotDeployed(self.id()))
    }

    /// Send a data command to `shard`: once (`wait` false: a full inbox is
    /// `Backpressure`), or waiting out a full inbox for as long as the node
    /// runs. On failure the command comes back; the caller undoes its count.
    // The error hands the command back by value, as `TrySendError` does:
    // boxing it would allocate on every refused send.
    #[allow(clippy::result_large_err)]
    fn submit(
        &self,
        shard: usize,
        mut cmd: Command,
        wait: bool,
    ) -> std::result::Result<(), (EngineError, Command)> {
        loop {
            match self.shards.try_command(shard, cmd) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(c)) if !wait => {
                    let capacity = self.shards.cfg().inbox_capacity;
                    return Err((EngineError::Backpressure { shard, capacity }, c));
                }
                Err(TrySendError::Full(c)) if !self.shards.is_stopped() => {
                    cmd = c;
                    std::thread::sleep(RETRY_PAUSE);
                }
                Err(TrySendError::Full(c)) | Err(TrySendError::Disconnected(c)) => {
                    return Err((self.shards.gone(shard), c))
                }
            }
        }
    }

    /// Hand events to `source`'s shard, paid for as `credit` says. `at_ns`
    /// is when the client handed them over; `None`: now, read once the
    /// command is counted. Refused events come back with the reason, and
    /// their reservation is given back.
    pub(crate) fn ingest(
        &self,
        source: OperatorId,
        at_ns: Option<u64>,
        events: Events,
        credit: Credit,
    ) -> std::result::Result<(), (EngineError, Events)> {
        let Some(node) = self.plan.node(source) else {
            let e = EngineError::UnknownSource {
                app: self.plan.name.clone(),
                source_name: format!("#{}", source.0),
            };
            return Err((e, events));
        };
        let msgs = self.cost(source, events.len());
        let paid = match credit {
            Credit::Client => self.reserve(msgs),
            Credit::Reserved => Ok(()),
            Credit::Replay => self.reserve_waiting(msgs),
        };
        if let Err(e) = paid {
            return Err((e, events));
        }
        if let Err(e) = self.begin_submit() {
            self.gate.release(msgs);
            return Err((e, events));
        }
        let cmd = Command::Ingest {
            app: self.id(),
            source,
            at_ns: at_ns.unwrap_or_else(|| self.shards.now_ns()),
            events,
        };
        self.submit(node.home as usize, cmd, credit != Credit::Client)
            .map_err(|(e, c)| {
                self.gate.undo();
                self.gate.release(msgs);
                let Command::Ingest { events, .. } = c else {
                    unreachable!("we built an ingest command")
                };
                (e, events)
            })
    }

    /// A client's watermark for `source` (on event time), on the path of
    /// that client's ingests, so it follows the events sent before it.
    pub(crate) fn watermark(&self, source: OperatorId, time: crate::protocol::Time) -> Result<()> {
        let node = self.plan.node(source).filter(|n| n.source_time.is_some());
        let Some(node) = node else {
            return Err(EngineError::NotOnEventTime {
                app: self.plan.name.clone(),
                source_op: source.0,
            });
        };
        self.begin_submit()?;
        let cmd = Command::Watermark {
            app: self.id(),
            source,
            time,
        };
        self.submit(node.home as usize, cmd, true)
            .map_err(|(e, _)| {
                self.gate.undo();
                e
            })
    }

    /// An upper bound on the app's messages in memory now.
    pub(crate) fn in_flight(&self) -> u64 {
        in_flight(&self.gate, &self.plan.counters)
    }

    /// The messages `events` events at `source` become: one per out-edge.
    pub(crate) fn cost(&self, source: OperatorId, events: usize) -> u64 {
        let outs = self.plan.node(source).map_or(0, |n| n.outs.len());
        (events as u64).saturating_mul(outs as u64)
    }

    /// Reserve `msgs` messages of the app's limit, or refuse with
    /// `AppFull`. A reservation is granted whatever its size when nothing
    /// else of the app is in memory, so a batch larger than the limit
    /// still goes in, alone.
    pub(crate) fn reserve(&self, msgs: u64) -> Result<()> {
        self.gate.reserve(msgs);
        let load = in_flight(&self.gate, &self.plan.counters);
        let limit = self.shards.cfg().max_in_flight as u64;
        let others = load.saturating_sub(msgs);
        if load > limit && others > 0 {
            self.gate.release(msgs);
            return Err(EngineError::AppFull {
                app: self.plan.name.clone(),
                in_flight: others,
                limit,
            });
        }
        Ok(())
    }

    /// Give back a reservation whose events were not sent.
    pub(crate) fn release(&self, msgs: u64) {
        self.gate.release(msgs);
    }

    /// Reserve, waiting out `AppFull` for as long as the node runs and the
    /// app is open.
    fn reserve_waiting(&self, msgs: u64) -> Result<()> {
        loop {
            match self.reserve(msgs) {
                Err(EngineError::AppFull { .. }) => {
                    self.ensure_open()?;
                    std::thread::sleep(RETRY_PAUSE);
                }
                r => return r,
            }
        }
    }

    /// Wait, up to `timeout`, until the app is under its limit (a client
    /// barrier: it adds a message per out-edge of every source, which it
    /// reserves unchecked), then `AppFull`.
    pub(crate) fn wait_for_room(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.has_room(deadline)? {
            std::thread::sleep(RETRY_PAUSE);
        }
        Ok(())
    }

    /// `wait_for_room` for a task on a shard: it waits by yielding.
    pub(crate) async fn wait_for_room_async(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.has_room(deadline)? {
            glommio::timer::sleep(RETRY_PAUSE).await;
        }
        Ok(())
    }

    /// Whether the app is under its limit now; `AppFull` past `deadline`.
    fn has_room(&self, deadline: Instant) -> Result<bool> {
        let limit = self.shards.cfg().max_in_flight as u64;
        let load = in_flight(&self.gate, &self.plan.counters);
        if load <= limit {
            return Ok(true);
        }
        self.ensure_open()?;
        if Instant::now() >= deadline {
            let app = self.plan.name.clone();
            return Err(EngineError::AppFull {
                app,
                in_flight: load,
                limit,
            });
        }
        Ok(false)
    }

    /// Inject a barrier at every source now (the journal's path, and every
    /// barrier of an app that is not durable), waiting out full inboxes by
    /// sleeping.
    pub(crate) fn inject_now(&self, kind: BarrierKind, tag: u64) -> Result<Epoch> {
        let last = self.barrier.lock().map_err(|_| EngineError::Stopped)?;
        let mut inj = Injection::begin(self, last, kind, tag)?;
        loop {
            match inj.send_next() {
                Some(r) => return r,
                None => std::thread::sleep(RETRY_PAUSE),
            }
        }
    }

    /// `inject_now` for a task on a shard: the barrier counter's lock is
    /// tried, never waited for, and a full inbox is waited out by
    /// yielding, so the shard's thread never blocks.
    pub(crate) async fn inject_now_async(&self, kind: BarrierKind, tag: u64) -> Result<Epoch> {
        let last = loop {
            match self.barrier.try_lock() {
                Ok(g) => break g,
                Err(std::sync::TryLockError::WouldBlock) => {
                    glommio::timer::sleep(RETRY_PAUSE).await
                }
                Err(std::sync::TryLockError::Poisoned(_)) => return Err(EngineError::Stopped),
            }
        };
        let mut inj = Injection::begin(self, last, kind, tag)?;
        loop {
            match inj.send_next() {
                Some(r) => return r,
                None => glommio::timer::sleep(RETRY_PAUSE).await,
            }
        }
    }

    /// Every source of the app, with its home shard.
    fn source_homes(&self) -> Vec<(OperatorId, usize)> {
        self.plan
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.kind, PlanKind::Source))
            .map(|(i, n)| (OperatorId(i as u16), n.home as usize))
            .collect()
    }

    /// Wait until everything accepted so far has been processed: every
    /// command taken by its shard, every message it caused processed, as
    /// two agreeing reads of the counters show (see `quiesce`).
    pub(crate) fn quiesce(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let read = || Snapshot::take(&self.gate, &self.plan.counters);
        loop {
            // A failed app does not settle (its messages are dropped or
            // left), and what it settled to would be lost state anyway.
            self.ensure_healthy()?;
            let first = read();
            if first.balanced() {
                // Give a message in flight between shards the time to show
                // up in a counter; correctness does not depend on the pause.
                std::thread::sleep(QUIESCE_SETTLE);
                if first.settled(&read()) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(EngineError::Timeout(timeout));
            }
            std::thread::sleep(QUIESCE_POLL);
        }
    }
}

/// A barrier being injected, all or nothing: a barrier that some sources
/// took and others not would break barrier order, so every source's command
/// is counted first, then each is sent, a full inbox waited out by the
/// driver (`inject_now` sleeps, `inject_now_async` yields), for as long as
/// the node runs. Holds the app's barrier counter meanwhile, so injections
/// are ordered.
struct Injection<'a> {
    ingress: &'a AppIngress,
    last: std::sync::MutexGuard<'a, Epoch>,
    barrier: Barrier,
    sources: Vec<(OperatorId, usize)>,
    sent: usize,
}

impl<'a> Injection<'a> {
    fn begin(
        ingress: &'a AppIngress,
        last: std::sync::MutexGuard<'a, Epoch>,
        kind: BarrierKind,
        tag: u64,
    ) -> Result<Injection<'a>> {
        let barrier = Barrier {
            id: *last + 1,
            kind,
            tag,
        };
        let sources = ingress.source_homes();
        for entered in 0..sources.len() {
            if let Err(e) = ingress.begin_submit() {
                (0..entered).for_each(|_| ingress.gate.undo());
                return Err(e);
            }
        }
        // Each source's barrier becomes a message per out-edge: reserved
        // unchecked (a barrier is never refused for room).
        for &(s, _) in &sources {
            ingress.gate.reserve(ingress.cost(s, 1));
        }
        Ok(Injection {
            ingress,
            last,
            barrier,
            sources,
            sent: 0,
        })
    }

    /// Send to the sources not yet sent to: `Some` when done (or failed),
    /// `None` when an inbox is full (try again).
    fn send_next(&mut self) -> Option<Result<Epoch>> {
        let ing = self.ingress;
        while let Some(&(source, home)) = self.sources.get(self.sent) {
            let cmd = Command::Barrier {
                app: ing.id(),
                source,
                barrier: self.barrier,
            };
            match ing.shards.try_command(home, cmd) {
                Ok(()) => self.sent += 1,
                Err(TrySendError::Full(_)) if !ing.shards.is_stopped() => return None,
                Err(_) => {
                    for &(s, _) in &self.sources[self.sent..] {
                        ing.gate.undo();
                        ing.gate.release(ing.cost(s, 1));
                    }
                    if self.sent > 0 {
                        // Some sources have it: its id is used.
                        *self.last = self.barrier.id;
                    }
                    return Some(Err(ing.shards.gone(home)));
                }
            }
        }
        *self.last = self.barrier.id;
        Some(Ok(self.barrier.id))
    }
}

impl Forward for AppIngress {
    fn forward_ingest(
        &self,
        source: OperatorId,
        at_ns: u64,
        events: Vec<(u64, AnyBox)>,
    ) -> IngestReply {
        // Replayed events are never refused: giving up would let the state
        // miss them. They wait for room, so a replay is paced by the app.
        self.ingest(source, Some(at_ns), Events::Boxed(events), Credit::Replay)
            .map_err(|(e, events)| (e, events.into_boxed()))
    }

    fn forward_reserved(
        &self,
        source: OperatorId,
        at_ns: u64,
        events: Vec<(u64, AnyBox)>,
    ) -> IngestReply {
        // Logged events were paid for by their client before they were
        // logged: never refused for room or for a full inbox.
        self.ingest(source, Some(at_ns), Events::Boxed(events), Credit::Reserved)
            .map_err(|(e, events)| (e, events.into_boxed()))
    }

    fn inject_now(&self, kind: BarrierKind, tag: u64) -> Result<Epoch> {
        AppIngress::inject_now(self, kind, tag)
    }

    fn ensure_open(&self) -> Result<()> {
        AppIngress::ensure_open(self)
    }

    fn max_batch(&self) -> usize {
        self.shards.cfg().max_batch
    }

    fn now_ns(&self) -> u64 {
        self.shards.now_ns()
    }
}
