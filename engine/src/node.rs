//! The node: starts the shards, and is the client's door to them.
//!
//! `Node` is the only type a client thread holds. It talks to shards by
//! commands on bounded inboxes (ringing the shard's doorbell after each), and
//! never touches shard state. The app registry here is control-plane state
//! behind a mutex; nothing on the message path takes it.

use std::any::TypeId;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement as GPlacement};

use crate::app::{App, Plan, PlanKind};
use crate::config::{NodeConfig, Placement};
use crate::doorbell::Doorbell;
use crate::error::{EngineError, Result};
use crate::function::AnyBox;
use crate::message::{ActorId, AppId, Barrier, BarrierKind, OperatorId};
use crate::metrics::NodeStats;
use crate::protocol::{Epoch, LeaseId, ShardId};
use crate::quiesce::{Gate, Snapshot};
use crate::ring::ring;
use crate::shard::{Clock, Command, Gauge, Shard, ShardParts};

/// How long control commands (deploy, stats, lease) wait for a full inbox
/// or a reply before giving up.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

struct ShardLink {
    tx: SyncSender<Command>,
    bell: Arc<Doorbell>,
}

struct AppEntry {
    plan: Arc<Plan>,
    /// Last barrier injected; the lock orders injections across threads.
    barrier: Mutex<Epoch>,
    /// Ingest and barrier commands accepted into shard inboxes, and whether
    /// the app still takes new ones (see `quiesce`).
    gate: Gate,
}

struct Inner {
    cfg: NodeConfig,
    clock: Clock,
    links: Vec<ShardLink>,
    apps: Mutex<HashMap<String, Arc<AppEntry>>>,
    next_app: AtomicU32,
    stopped: AtomicBool,
}

/// A running Dirigo node.
pub struct Node {
    inner: Arc<Inner>,
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
}

impl Node {
    /// Start the shards.
    pub fn start(cfg: NodeConfig) -> Result<Node> {
        cfg.validate()?;
        let n = cfg.shard_count();
        let clock = Clock(Instant::now());
        let cores: Vec<usize> = core_affinity::get_core_ids()
            .map(|ids| ids.into_iter().map(|c| c.id).collect())
            .filter(|v: &Vec<usize>| !v.is_empty())
            .unwrap_or_else(|| vec![0]);

        let mut bells = Vec::with_capacity(n);
        let mut waiters = Vec::with_capacity(n);
        for _ in 0..n {
            let (bell, waiter) = Doorbell::new()?;
            bells.push(bell);
            waiters.push(waiter);
        }
        // Full mesh: outbound[i][j] feeds inbound[j] from i.
        let mut outbound: Vec<Vec<Option<_>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut inbound: Vec<Vec<_>> = (0..n).map(|_| Vec::new()).collect();
        for (i, row) in outbound.iter_mut().enumerate() {
            for (j, link) in row.iter_mut().enumerate() {
                if i != j {
                    let (p, c) = ring(cfg.ring_capacity);
                    *link = Some(p);
                    inbound[j].push((i as ShardId, c));
                }
            }
        }
        let gauges: Arc<[Gauge]> = (0..n).map(|_| Gauge::default()).collect();
        let mut links = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (i, (waiter, (out, inb))) in waiters
            .into_iter()
            .zip(outbound.into_iter().zip(inbound))
            .enumerate()
        {
            let (tx, rx) = mpsc::sync_channel(cfg.inbox_capacity);
            links.push(ShardLink {
                tx,
                bell: bells[i].clone(),
            });
            let parts = ShardParts {
                id: i as ShardId,
                cfg: cfg.clone(),
                clock,
                inbound: inb,
                outbound: out,
                bells: bells.clone(),
                waiter,
                commands: rx,
                gauges: gauges.clone(),
            };
            let placement = match cfg.placement {
                Placement::Pinned => GPlacement::Fixed(cores[i % cores.len()]),
                Placement::Unpinned => GPlacement::Unbound,
            };
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("dirigo-shard-{i}"))
                .io_memory(1 << 20)
                .spawn(move || async move { Shard::new(parts).run().await })
                .map_err(|e| EngineError::ShardStart {
                    shard: i,
                    reason: e.to_string(),
                })?;
            threads.push(handle);
        }
        let inner = Arc::new(Inner {
            cfg,
            clock,
            links,
            apps: Mutex::new(HashMap::new()),
            next_app: AtomicU32::new(1),
            stopped: AtomicBool::new(false),
        });
        Ok(Node { inner, threads })
    }

    pub fn shards(&self) -> usize {
        self.inner.links.len()
    }

    /// The node clock: ns since the node started (the time base of headers).
    pub fn now_ns(&self) -> u64 {
        self.inner.clock.now_ns()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    /// Deploy an app on every shard; returns once every shard has it.
    pub fn deploy(&self, app: App) -> Result<AppHandle> {
        let mut apps = self.inner.apps.lock().map_err(|_| EngineError::Stopped)?;
        if apps.contains_key(app.name()) {
            return Err(EngineError::AppExists(app.name().to_owned()));
        }
        let id = AppId(self.inner.next_app.fetch_add(1, Ordering::Relaxed));
        let plan = Arc::new(Plan::compile(app, id, self.shards()));
        let mut replies = Vec::new();
        for s in 0..self.shards() {
            let (tx, rx) = mpsc::channel();
            self.inner.control(s, Command::Deploy(plan.clone(), tx))?;
            replies.push(rx);
        }
        for rx in replies {
            rx.recv_timeout(CONTROL_TIMEOUT)
                .map_err(|_| EngineError::Timeout(CONTROL_TIMEOUT))?;
        }
        let entry = Arc::new(AppEntry {
            plan,
            barrier: Mutex::new(0),
            gate: Gate::new(),
        });
        apps.insert(entry.plan.name.clone(), entry.clone());
        Ok(AppHandle {
            node: self.inner.clone(),
            entry,
        })
    }

    /// A handle on a deployed app.
    pub fn app(&self, name: &str) -> Result<AppHandle> {
        let apps = self.inner.apps.lock().map_err(|_| EngineError::Stopped)?;
        let entry = apps
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownApp(name.to_owned()))?;
        Ok(AppHandle {
            node: self.inner.clone(),
            entry,
        })
    }

    /// Stop taking events for `name`, let what was accepted finish (up to
    /// `drain`), then remove the app from every shard. Returns whether it
    /// drained; if not, what was still in flight was discarded.
    pub fn undeploy(&self, name: &str, drain: Duration) -> Result<bool> {
        let entry = {
            let apps = self.inner.apps.lock().map_err(|_| EngineError::Stopped)?;
            apps.get(name)
                .cloned()
                .ok_or_else(|| EngineError::UnknownApp(name.to_owned()))?
        };
        entry.gate.close();
        let drained = AppHandle {
            node: self.inner.clone(),
            entry: entry.clone(),
        }
        .quiesce(drain)
        .is_ok();
        let mut replies = Vec::new();
        for s in 0..self.shards() {
            let (tx, rx) = mpsc::channel();
            self.inner
                .control(s, Command::Undeploy(entry.plan.id, tx))?;
            replies.push(rx);
        }
        for rx in replies {
            rx.recv_timeout(CONTROL_TIMEOUT)
                .map_err(|_| EngineError::Timeout(CONTROL_TIMEOUT))?;
        }
        self.inner
            .apps
            .lock()
            .map_err(|_| EngineError::Stopped)?
            .remove(name);
        Ok(drained)
    }

    /// Figures from every shard, merged.
    pub fn stats(&self) -> Result<NodeStats> {
        self.inner.stats()
    }

    /// Stop every shard and wait for their threads.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        for s in 0..self.inner.links.len() {
            let _ = self.inner.control(s, Command::Stop);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

impl Inner {
    /// Send a command, ringing the shard's doorbell.
    fn try_command(
        &self,
        shard: usize,
        cmd: Command,
    ) -> std::result::Result<(), TrySendError<Command>> {
        let link = &self.links[shard];
        link.tx.try_send(cmd)?;
        link.bell.ring();
        Ok(())
    }

    /// Send a control command, waiting for room in the inbox.
    fn control(&self, shard: usize, mut cmd: Command) -> Result<()> {
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        loop {
            match self.try_command(shard, cmd) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(EngineError::Stopped),
                Err(TrySendError::Full(c)) => {
                    if Instant::now() > deadline {
                        return Err(EngineError::Timeout(CONTROL_TIMEOUT));
                    }
                    cmd = c;
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
    }

    fn stats(&self) -> Result<NodeStats> {
        let mut replies = Vec::new();
        for s in 0..self.links.len() {
            let (tx, rx) = mpsc::channel();
            self.control(s, Command::Stats(tx))?;
            replies.push(rx);
        }
        let shards = replies
            .into_iter()
            .map(|rx| {
                rx.recv_timeout(CONTROL_TIMEOUT)
                    .map_err(|_| EngineError::Timeout(CONTROL_TIMEOUT))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(NodeStats::from_shards(shards))
    }
}

/// A deployed app: ingest, barriers, explicit scaling, quiescence.
#[derive(Clone)]
pub struct AppHandle {
    node: Arc<Inner>,
    entry: Arc<AppEntry>,
}

/// Events handed back when a source could not take them.
#[derive(Debug)]
pub struct Rejected<T> {
    pub error: EngineError,
    pub events: Vec<(u64, T)>,
}

impl AppHandle {
    pub fn name(&self) -> &str {
        &self.entry.plan.name
    }

    pub fn id(&self) -> AppId {
        self.entry.plan.id
    }

    fn op(&self, name: &str) -> Result<OperatorId> {
        self.entry
            .plan
            .node_by_name(name)
            .filter(|(_, n)| !matches!(n.kind, PlanKind::Source))
            .map(|(id, _)| id)
            .ok_or_else(|| EngineError::UnknownOperator {
                app: self.name().to_owned(),
                op: name.to_owned(),
            })
    }

    /// A typed handle on source `name`; the type must be the source's.
    pub fn source<T: Send + 'static>(&self, name: &str) -> Result<SourceHandle<T>> {
        let plan = &self.entry.plan;
        let unknown = || EngineError::UnknownSource {
            app: plan.name.clone(),
            source_name: name.to_owned(),
        };
        let (op, node) = plan.node_by_name(name).ok_or_else(unknown)?;
        let (type_id, type_name) = node.source_type.ok_or_else(unknown)?;
        if type_id != TypeId::of::<T>() {
            return Err(EngineError::SourceType {
                app: plan.name.clone(),
                source_name: name.to_owned(),
                expected: type_name,
                got: std::any::type_name::<T>(),
            });
        }
        Ok(SourceHandle {
            app: self.clone(),
            op,
            shard: node.home as usize,
            _t: PhantomData,
        })
    }

    /// Inject a barrier at every source: each operator runs its critical
    /// messages on its whole, consolidated state, after every event sent
    /// before this call and before every event sent after it.
    pub fn inject_barrier(&self, kind: BarrierKind, tag: u64) -> Result<Epoch> {
        let mut last = self
            .entry
            .barrier
            .lock()
            .map_err(|_| EngineError::Stopped)?;
        let barrier = Barrier {
            id: *last + 1,
            kind,
            tag,
        };
        for (i, node) in self.entry.plan.nodes.iter().enumerate() {
            if matches!(node.kind, PlanKind::Source) {
                let cmd = Command::Barrier {
                    app: self.id(),
                    source: OperatorId(i as u16),
                    barrier,
                };
                self.begin_submit()?;
                if let Err(e) = self.node.control(node.home as usize, cmd) {
                    self.entry.gate.undo();
                    return Err(e);
                }
            }
        }
        *last = barrier.id;
        Ok(barrier.id)
    }

    /// Ask for a lessee of operator `op` on `shard` (explicit scaling).
    /// `Ok(None)` when the operator cannot lease there now.
    pub fn lease(&self, op: &str, shard: usize) -> Result<Option<LeaseId>> {
        self.ensure_open()?;
        let id = self.op(op)?;
        let node = self
            .entry
            .plan
            .node(id)
            .expect("op() returns existing operators");
        if node.strategy == crate::protocol::Strategy::Sequential {
            return Err(EngineError::NotLeasable {
                app: self.name().to_owned(),
                op: op.to_owned(),
            });
        }
        let shards = self.node.links.len();
        if shard >= shards {
            return Err(EngineError::NoSuchShard { shard, shards });
        }
        let (tx, rx) = mpsc::channel();
        let actor = ActorId {
            app: self.id(),
            op: id,
        };
        self.node.control(
            node.home as usize,
            Command::Lease {
                actor,
                shard: shard as ShardId,
                reply: tx,
            },
        )?;
        rx.recv_timeout(CONTROL_TIMEOUT)
            .map_err(|_| EngineError::Timeout(CONTROL_TIMEOUT))
    }

    /// Revoke the lessees of operator `op` (on `shard`, or all). Returns how
    /// many revokes were started.
    pub fn revoke(&self, op: &str, shard: Option<usize>) -> Result<usize> {
        self.ensure_open()?;
        let id = self.op(op)?;
        let node = self
            .entry
            .plan
            .node(id)
            .expect("op() returns existing operators");
        let (tx, rx) = mpsc::channel();
        let actor = ActorId {
            app: self.id(),
            op: id,
        };
        let shard = shard.map(|s| s as ShardId);
        self.node.control(
            node.home as usize,
            Command::Revoke {
                actor,
                shard,
                reply: tx,
            },
        )?;
        rx.recv_timeout(CONTROL_TIMEOUT)
            .map_err(|_| EngineError::Timeout(CONTROL_TIMEOUT))
    }

    /// Wait until everything accepted so far has been processed: every
    /// command taken by its shard, every message it caused processed, as
    /// two agreeing reads of the counters show (see `quiesce`).
    pub fn quiesce(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let read = || Snapshot::take(&self.entry.gate, &self.entry.plan.counters);
        loop {
            let first = read();
            if first.balanced() {
                // Give a message in flight between shards the time to show
                // up in a counter; correctness does not depend on the pause.
                std::thread::sleep(Duration::from_micros(200));
                if first.settled(&read()) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(EngineError::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn ensure_open(&self) -> Result<()> {
        if self.node.stopped.load(Ordering::SeqCst) {
            return Err(EngineError::Stopped);
        }
        if self.entry.gate.is_closed() {
            return Err(EngineError::NotDeployed(self.id()));
        }
        Ok(())
    }

    /// Count a command as submitted, unless the app is closed or the node
    /// stopped. On `Ok`, the caller must send the command or call
    /// `gate.undo()`.
    fn begin_submit(&self) -> Result<()> {
        if self.node.stopped.load(Ordering::SeqCst) {
            return Err(EngineError::Stopped);
        }
        self.entry
            .gate
            .enter()
            .map_err(|_| EngineError::NotDeployed(self.id()))
    }
}

/// A typed handle on one source of a deployed app.
pub struct SourceHandle<T> {
    app: AppHandle,
    op: OperatorId,
    shard: usize,
    _t: PhantomData<fn(T)>,
}

impl<T: Send + 'static> SourceHandle<T> {
    /// Hand a batch of `(key hash, event)` to the source's shard, or get it
    /// back: `Backpressure` when the shard's inbox is full, `NotDeployed`
    /// after undeploy, `BatchTooLarge` over the configured limit.
    pub fn try_send_batch(&self, events: Vec<(u64, T)>) -> std::result::Result<(), Rejected<T>> {
        let max = self.app.node.cfg.max_batch;
        if events.len() > max {
            return Err(Rejected {
                error: EngineError::BatchTooLarge {
                    len: events.len(),
                    max,
                },
                events,
            });
        }
        if events.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.app.begin_submit() {
            return Err(Rejected { error, events });
        }
        let erased: Vec<(u64, AnyBox)> = events
            .into_iter()
            .map(|(k, v)| (k, Box::new(v) as AnyBox))
            .collect();
        let at_ns = self.app.node.clock.now_ns();
        let cmd = Command::Ingest {
            app: self.app.id(),
            source: self.op,
            at_ns,
            events: erased,
        };
        match self.app.node.try_command(self.shard, cmd) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.app.entry.gate.undo();
                let (error, cmd) = match e {
                    TrySendError::Full(c) => (
                        EngineError::Backpressure {
                            shard: self.shard,
                            capacity: self.app.node.cfg.inbox_capacity,
                        },
                        c,
                    ),
                    TrySendError::Disconnected(c) => (EngineError::Stopped, c),
                };
                let Command::Ingest { events, .. } = cmd else {
                    unreachable!("we built an ingest command")
                };
                let events = events
                    .into_iter()
                    .map(|(k, v)| (k, *v.downcast::<T>().expect("we boxed these as T")))
                    .collect();
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
                    if matches!(r.error, EngineError::Backpressure { .. })
                        && Instant::now() < deadline =>
                {
                    events = r.events;
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(r) => return Err(r),
            }
        }
    }

    /// One event, waiting out backpressure for up to a second.
    pub fn send(&self, key: u64, value: T) -> Result<()> {
        self.send_batch(vec![(key, value)], Duration::from_secs(1))
            .map_err(|r| r.error)
    }
}
