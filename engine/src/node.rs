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
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement as GPlacement};

use crate::app::{App, Plan, PlanKind};
use crate::config::{NodeConfig, Placement};
use crate::doorbell::Doorbell;
use crate::error::{EngineError, Result};
use crate::function::{AnyBox, ErasedState};
use crate::journal::{self, IngestReply, Journal, JournalMsg, Recovery};
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
    /// Ingest and barriers: bounded (backpressure), in order.
    tx: SyncSender<Command>,
    /// Everything else (deploy, stats, lease, stop): taken every turn, even
    /// while the shard holds back ingest, so a loaded shard still answers.
    ctl: mpsc::Sender<Command>,
    bell: Arc<Doorbell>,
}

struct AppEntry {
    plan: Arc<Plan>,
    /// Last barrier injected; the lock orders injections across threads.
    barrier: Mutex<Epoch>,
    /// Ingest and barrier commands accepted into shard inboxes, and whether
    /// the app still takes new ones (see `quiesce`).
    gate: Gate,
    /// Durable apps: the journal thread every input goes through.
    journal: Option<JournalLink>,
    /// Durable apps: what deploy restored and replayed.
    recovery: OnceLock<Recovery>,
}

struct JournalLink {
    tx: mpsc::Sender<JournalMsg>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AppEntry {
    /// Stop the journal thread (after what it took is served) and wait.
    fn stop_journal(&self) {
        if let Some(j) = &self.journal {
            let _ = j.tx.send(JournalMsg::Stop);
            let handle = j.thread.lock().ok().and_then(|mut t| t.take());
            if let Some(h) = handle {
                let _ = h.join();
            }
        }
    }
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
            let (ctl, ctl_rx) = mpsc::channel();
            links.push(ShardLink {
                tx,
                ctl,
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
                control: ctl_rx,
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
    ///
    /// A durable app (see `AppBuilder::durable`) needs a node with a
    /// `data_dir`; its folder there is `<data_dir>/<app name>`. If that
    /// folder holds a checkpoint, each operator starts from its saved state,
    /// and the ingress log after the checkpoint is replayed before this
    /// returns ([`AppHandle::recovery`] says what was found).
    pub fn deploy(&self, app: App) -> Result<AppHandle> {
        let mut apps = self.inner.apps.lock().map_err(|_| EngineError::Stopped)?;
        if apps.contains_key(app.name()) {
            return Err(EngineError::AppExists(app.name().to_owned()));
        }
        let dir = if app.is_durable() {
            Some(self.app_dir(app.name())?)
        } else {
            None
        };
        let id = AppId(self.inner.next_app.fetch_add(1, Ordering::Relaxed));
        let (jtx, jrx) = mpsc::channel();
        let durable = dir.clone().map(|d| (jtx.clone(), d));
        let plan = Arc::new(Plan::compile(app, id, self.shards(), durable));
        let mut opened = match &dir {
            Some(dir) => Some(journal::open(dir, &plan, self.inner.cfg.log_segment_bytes)?),
            None => None,
        };
        // Each shard gets the restored states of the operators homed on it.
        let mut restored: Vec<Vec<(OperatorId, Box<dyn ErasedState>)>> =
            (0..self.shards()).map(|_| Vec::new()).collect();
        if let Some(o) = &mut opened {
            for (op, state) in o.states.drain(..) {
                let home = plan.nodes[op.0 as usize].home as usize;
                restored[home].push((op, state));
            }
        }
        let mut replies = Vec::new();
        for (s, states) in restored.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            self.inner
                .control(s, Command::Deploy(plan.clone(), states, tx))?;
            replies.push(rx);
        }
        for rx in replies {
            rx.recv_timeout(CONTROL_TIMEOUT)
                .map_err(|_| EngineError::Timeout(CONTROL_TIMEOUT))?;
        }
        let entry = match opened {
            None => Arc::new(AppEntry {
                plan,
                barrier: Mutex::new(0),
                gate: Gate::new(),
                journal: None,
                recovery: OnceLock::new(),
            }),
            Some(mut opened) => {
                let entry = Arc::new(AppEntry {
                    plan: plan.clone(),
                    barrier: Mutex::new(0),
                    gate: Gate::new(),
                    journal: Some(JournalLink {
                        tx: jtx,
                        thread: Mutex::new(None),
                    }),
                    recovery: OnceLock::new(),
                });
                let handle = AppHandle {
                    node: self.inner.clone(),
                    entry,
                };
                // Replay goes straight to the shards (the journal does not
                // run yet, so nothing new can overtake it).
                if let Err(e) = journal::replay(&mut opened, &handle, &plan) {
                    handle.entry.gate.close();
                    self.remove_from_shards(plan.id)?;
                    return Err(e);
                }
                let _ = handle.entry.recovery.set(opened.recovery.clone());
                let entry = handle.entry;
                let journal = Journal::new(
                    opened,
                    AppHandle {
                        node: self.inner.clone(),
                        entry: entry.clone(),
                    },
                    &plan,
                    self.inner.cfg.full_checkpoint_every,
                );
                let thread = std::thread::Builder::new()
                    .name(format!("dirigo-journal-{}", plan.name))
                    .spawn(move || journal.run(jrx))?;
                if let Some(j) = &entry.journal {
                    if let Ok(mut t) = j.thread.lock() {
                        *t = Some(thread);
                    }
                }
                entry
            }
        };
        apps.insert(entry.plan.name.clone(), entry.clone());
        Ok(AppHandle {
            node: self.inner.clone(),
            entry,
        })
    }

    /// `<data_dir>/<name>`, if the node has a data folder and `name` is one
    /// plain path component.
    fn app_dir(&self, name: &str) -> Result<std::path::PathBuf> {
        let Some(root) = &self.inner.cfg.data_dir else {
            return Err(EngineError::NoDataDir(name.to_owned()));
        };
        let plain =
            !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
        if !plain {
            return Err(EngineError::InvalidApp {
                app: name.to_owned(),
                reason: "a durable app's name is its folder's name: it must be one plain path \
                         component (no '/', not '.' or '..')"
                    .into(),
            });
        }
        Ok(root.join(name))
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
        entry.stop_journal();
        entry.gate.close();
        let drained = AppHandle {
            node: self.inner.clone(),
            entry: entry.clone(),
        }
        .quiesce(drain)
        .is_ok();
        self.remove_from_shards(entry.plan.id)?;
        self.inner
            .apps
            .lock()
            .map_err(|_| EngineError::Stopped)?
            .remove(name);
        Ok(drained)
    }

    fn remove_from_shards(&self, app: AppId) -> Result<()> {
        let mut replies = Vec::new();
        for s in 0..self.shards() {
            let (tx, rx) = mpsc::channel();
            self.inner.control(s, Command::Undeploy(app, tx))?;
            replies.push(rx);
        }
        for rx in replies {
            rx.recv_timeout(CONTROL_TIMEOUT)
                .map_err(|_| EngineError::Timeout(CONTROL_TIMEOUT))?;
        }
        Ok(())
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
        if self.inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        // Journals first, while the shards still take what they forward:
        // what a journal committed reaches the shards, or recovery.
        let entries: Vec<Arc<AppEntry>> = self
            .inner
            .apps
            .lock()
            .map(|apps| apps.values().cloned().collect())
            .unwrap_or_default();
        for e in entries {
            e.stop_journal();
        }
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

    /// Send a control command on the shard's control channel (never full:
    /// control commands come from client calls that wait for their reply).
    fn control(&self, shard: usize, cmd: Command) -> Result<()> {
        let link = &self.links[shard];
        link.ctl.send(cmd).map_err(|_| EngineError::Stopped)?;
        link.bell.ring();
        Ok(())
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
    ///
    /// On a durable app the barrier goes into the ingress log first (unless
    /// it is a checkpoint: use [`Self::checkpoint`]).
    pub fn inject_barrier(&self, kind: BarrierKind, tag: u64) -> Result<Epoch> {
        let Some(j) = &self.entry.journal else {
            return self.inject_now(kind, tag);
        };
        if kind == BarrierKind::Checkpoint {
            return Err(EngineError::Durability {
                app: self.name().to_owned(),
                reason: "checkpoint barriers of a durable app are taken with AppHandle::checkpoint"
                    .into(),
            });
        }
        self.ensure_open()?;
        let (tx, rx) = mpsc::channel();
        j.tx.send(JournalMsg::Barrier {
            kind,
            tag,
            reply: tx,
        })
        .map_err(|_| EngineError::Stopped)?;
        rx.recv().map_err(|_| EngineError::Stopped)?
    }

    /// Take a checkpoint of a durable app: every operator's whole state as
    /// of a cut in the ingress log, written and committed to the manifest
    /// before this returns its number. Log segments no kept checkpoint needs
    /// are removed.
    pub fn checkpoint(&self) -> Result<u64> {
        let Some(j) = &self.entry.journal else {
            return Err(EngineError::Durability {
                app: self.name().to_owned(),
                reason: "the app is not durable (AppBuilder::durable on a node with a data_dir)"
                    .into(),
            });
        };
        self.ensure_open()?;
        let (tx, rx) = mpsc::channel();
        j.tx.send(JournalMsg::Checkpoint { reply: tx })
            .map_err(|_| EngineError::Stopped)?;
        rx.recv_timeout(journal::CHECKPOINT_TIMEOUT + CONTROL_TIMEOUT)
            .map_err(|_| EngineError::Timeout(journal::CHECKPOINT_TIMEOUT))?
    }

    /// Durable apps: what deploy found on disk, restored and replayed.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.entry.recovery.get()
    }

    pub(crate) fn max_batch(&self) -> usize {
        self.node.cfg.max_batch
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.node.clock.now_ns()
    }

    /// Hand events to their source's shard, waiting out a full inbox for as
    /// long as the node runs (they are in the log already: giving up would
    /// let the state miss them). The events come back if the app is closed
    /// or the node stopped.
    pub(crate) fn forward_ingest(
        &self,
        source: OperatorId,
        at_ns: u64,
        events: Vec<(u64, AnyBox)>,
    ) -> IngestReply {
        let shard = match self.entry.plan.node(source) {
            Some(n) => n.home as usize,
            None => {
                return Err((
                    EngineError::UnknownSource {
                        app: self.name().to_owned(),
                        source_name: format!("#{}", source.0),
                    },
                    events,
                ))
            }
        };
        if let Err(e) = self.begin_submit() {
            return Err((e, events));
        }
        let mut cmd = Command::Ingest {
            app: self.id(),
            source,
            at_ns,
            events,
        };
        loop {
            match self.node.try_command(shard, cmd) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(c)) if !self.node.stopped.load(Ordering::SeqCst) => {
                    cmd = c;
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(TrySendError::Full(c)) | Err(TrySendError::Disconnected(c)) => {
                    self.entry.gate.undo();
                    let Command::Ingest { events, .. } = c else {
                        unreachable!("we built an ingest command")
                    };
                    return Err((EngineError::Stopped, events));
                }
            }
        }
    }

    /// Inject a barrier at every source now (the journal's path, and every
    /// barrier of an app that is not durable).
    pub(crate) fn inject_now(&self, kind: BarrierKind, tag: u64) -> Result<Epoch> {
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
        // All or nothing: a barrier that some sources took and others not
        // would break barrier order. Every source's command is counted
        // first; then each is sent, waiting out a full inbox for as long as
        // the node runs.
        let sources: Vec<(OperatorId, usize)> = self
            .entry
            .plan
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.kind, PlanKind::Source))
            .map(|(i, n)| (OperatorId(i as u16), n.home as usize))
            .collect();
        for entered in 0..sources.len() {
            if let Err(e) = self.begin_submit() {
                for _ in 0..entered {
                    self.entry.gate.undo();
                }
                return Err(e);
            }
        }
        for (sent, &(source, home)) in sources.iter().enumerate() {
            let mut cmd = Command::Barrier {
                app: self.id(),
                source,
                barrier,
            };
            loop {
                match self.node.try_command(home, cmd) {
                    Ok(()) => break,
                    Err(TrySendError::Full(c)) if !self.node.stopped.load(Ordering::SeqCst) => {
                        cmd = c;
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    Err(_) => {
                        for _ in sent..sources.len() {
                            self.entry.gate.undo();
                        }
                        if sent > 0 {
                            // Some sources have it: its id is used.
                            *last = barrier.id;
                        }
                        return Err(EngineError::Stopped);
                    }
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

    pub(crate) fn ensure_open(&self) -> Result<()> {
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
    ///
    /// On a durable app, `Ok` means the batch is in the ingress log (this
    /// call waits for the journal's group commit, and the journal waits out
    /// a full inbox rather than refuse what it logged); `EventTooLarge` over
    /// `MAX_EVENT_BYTES` archived.
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
        if let Some(j) = &self.app.entry.journal {
            return self.send_durable(&j.tx, events);
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

    /// A durable app's ingest: encode here (off the journal thread), log
    /// with the journal's next group commit, forward, then return.
    fn send_durable(
        &self,
        journal: &mpsc::Sender<JournalMsg>,
        events: Vec<(u64, T)>,
    ) -> std::result::Result<(), Rejected<T>> {
        let back = |evs: Vec<(u64, AnyBox)>| -> Vec<(u64, T)> {
            evs.into_iter()
                .map(|(k, v)| (k, *v.downcast::<T>().expect("we boxed these as T")))
                .collect()
        };
        if let Err(error) = self.app.ensure_open() {
            return Err(Rejected { error, events });
        }
        let Some(codec) = self
            .app
            .entry
            .plan
            .node(self.op)
            .and_then(|n| n.event_codec)
        else {
            unreachable!("AppBuilder::build checks that a durable app's sources are durable")
        };
        let erased: Vec<(u64, AnyBox)> = events
            .into_iter()
            .map(|(k, v)| (k, Box::new(v) as AnyBox))
            .collect();
        let encoded: std::result::Result<Vec<_>, _> =
            erased.iter().map(|(_, v)| (codec.encode)(v)).collect();
        let encoded = match encoded {
            Ok(e) => e,
            Err(e) => {
                return Err(Rejected {
                    error: EngineError::Durability {
                        app: self.app.name().to_owned(),
                        reason: e.to_string(),
                    },
                    events: back(erased),
                })
            }
        };
        if let Some(big) = encoded.iter().find(|b| b.len() > journal::MAX_EVENT_BYTES) {
            return Err(Rejected {
                error: EngineError::EventTooLarge {
                    len: big.len(),
                    max: journal::MAX_EVENT_BYTES,
                },
                events: back(erased),
            });
        }
        let (tx, rx) = mpsc::channel();
        let msg = JournalMsg::Ingest {
            source: self.op,
            at_ns: self.app.node.clock.now_ns(),
            events: erased,
            encoded,
            reply: tx,
        };
        if let Err(mpsc::SendError(msg)) = journal.send(msg) {
            let JournalMsg::Ingest { events, .. } = msg else {
                unreachable!("we built an ingest message")
            };
            return Err(Rejected {
                error: EngineError::Stopped,
                events: back(events),
            });
        }
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err((error, events))) => Err(Rejected {
                error,
                events: back(events),
            }),
            // The journal stopped with the request unserved: not logged.
            Err(_) => Err(Rejected {
                error: EngineError::Stopped,
                events: Vec::new(),
            }),
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
