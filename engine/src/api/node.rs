//! The node and its apps, as a client holds them: [`Node`] starts the
//! shards and deploys apps; an [`AppHandle`] injects barriers, takes
//! checkpoints, scales and waits for quiescence.
//!
//! `Node` is the only type a client thread needs. It talks to shards by
//! commands (`runtime::shards`) and never touches shard state. The app
//! registry here is control-plane state behind a mutex; nothing on the
//! message path takes it. A durable app's input goes through its journal
//! thread (`durability`), which this module starts at deploy and stops at
//! undeploy.

use std::any::TypeId;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::entry::{AppEntry, JournalLink};
use super::source::SourceHandle;
use crate::durability::{self, Journal, JournalMsg, Recovery};
use crate::func::Restored;
use crate::limits::{CHECKPOINT_TIMEOUT, CONTROL_TIMEOUT, SEND_WAIT};
use crate::model::{ActorId, AppId, BarrierKind, EngineError, OperatorId, Result};
use crate::plan::{App, Plan, PlanKind, SavedState, StateSink};
use crate::protocol::{Epoch, LeaseId, ShardId, Strategy};
use crate::runtime::command::Command;
use crate::runtime::config::NodeConfig;
use crate::runtime::ingress::AppIngress;
use crate::runtime::metrics::NodeStats;
use crate::runtime::shards::{ShardThreads, Shards};

/// A running Dirigo node.
pub struct Node {
    shards: Arc<Shards>,
    /// Deployed apps by name; `None` while one is being deployed (its name
    /// is taken, the lock is not held meanwhile).
    apps: Mutex<HashMap<String, Option<Arc<AppEntry>>>>,
    next_app: AtomicU32,
    /// Joined by the first `stop` (or `shutdown`, or drop).
    threads: Mutex<ShardThreads>,
}

impl Node {
    /// Start the shards.
    pub fn start(cfg: NodeConfig) -> Result<Node> {
        let (shards, threads) = Shards::start(cfg)?;
        Ok(Node {
            shards,
            apps: Mutex::new(HashMap::new()),
            next_app: AtomicU32::new(1),
            threads: Mutex::new(threads),
        })
    }

    /// How many shards the node runs.
    pub fn shards(&self) -> usize {
        self.shards.count()
    }

    /// The node clock: ns since the node started (the time base of headers).
    pub fn now_ns(&self) -> u64 {
        self.shards.now_ns()
    }

    /// Run a task on every shard's executor, beside its dispatcher: `make`
    /// is called on each shard's thread with the shard's number, and its
    /// future (which need not be `Send`) runs as a cooperative task there,
    /// until it ends or the node stops. This is how the network layer
    /// serves connections on the shards that own them.
    ///
    /// Such a task must not block its thread (it would stall the shard):
    /// it sends with [`SourceHandle::send_async`] and injects barriers with
    /// [`AppHandle::inject_barrier_async`], and leaves blocking calls
    /// (deploy, stats, checkpoint) to another thread. Data commands it
    /// sends to its own shard take the shard-local queue, not the inbox. A
    /// panic ends the task alone (`ShardStats::task_panics`).
    pub fn spawn_on_shards<F>(&self, make: F) -> Result<()>
    where
        F: Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
            + Send
            + Sync
            + 'static,
    {
        self.shards.spawn_on_all(Arc::new(make))
    }

    /// The shard whose executor the caller runs on, if it is one of this
    /// node's.
    pub fn current_shard(&self) -> Option<usize> {
        self.shards.current_shard()
    }

    /// The configuration the node started with.
    pub fn config(&self) -> &NodeConfig {
        self.shards.cfg()
    }

    /// Deploy an app on every shard; returns once every shard has it.
    ///
    /// A durable app (see `AppBuilder::durable`) needs a node with a
    /// `data_dir`; its folder there is `<data_dir>/<app name>`. If that
    /// folder holds a checkpoint, each operator starts from its saved state,
    /// and the ingress log after the checkpoint is replayed before this
    /// returns ([`AppHandle::recovery`] says what was found).
    ///
    /// A replay is paced by the app's message limit: one whose outputs go
    /// to a blocking sink (`SinkPolicy::Block`) waits, inside `deploy`,
    /// for the sink's reader once the sink and the limit are full. Read
    /// such a sink from another thread while deploying, or give it room.
    ///
    /// The app is compiled, installed and (durable) replayed without the
    /// node's registry locked: other deploys, `app`, `undeploy` and stats
    /// go on meanwhile; the name is taken from the start. If a shard
    /// refuses or does not answer, the app is removed from every shard
    /// again, so no shard keeps a plan the node does not know.
    pub fn deploy(&self, app: App) -> Result<AppHandle> {
        let name = app.name().to_owned();
        let mut taken = NameTaken::take(&self.apps, &name)?;
        let entry = if app.is_durable() {
            self.deploy_durable(app)?
        } else {
            self.deploy_volatile(app)?
        };
        taken.fill(entry.clone())?;
        Ok(AppHandle { entry })
    }

    fn next_id(&self) -> AppId {
        AppId(self.next_app.fetch_add(1, Ordering::Relaxed))
    }

    fn deploy_volatile(&self, app: App) -> Result<Arc<AppEntry>> {
        let plan = Arc::new(Plan::compile(app, self.next_id(), self.shards(), None));
        self.install(&plan, Vec::new())?;
        Ok(Arc::new(AppEntry {
            ingress: Arc::new(AppIngress::new(self.shards.clone(), plan)),
            journal: None,
            recovery: None,
        }))
    }

    /// A durable app: open its folder (restoring the newest checkpoint),
    /// install it, replay the log after the checkpoint, then start the
    /// journal that takes its input from now on.
    fn deploy_durable(&self, app: App) -> Result<Arc<AppEntry>> {
        let dir = self.app_dir(app.name())?;
        let (jtx, jrx) = mpsc::channel();
        let durable = Some((state_sink(jtx.clone()), dir.clone()));
        let plan = Arc::new(Plan::compile(app, self.next_id(), self.shards(), durable));
        let cfg = self.shards.cfg();
        let mut opened = durability::open(&dir, &plan, cfg.log_segment_bytes)?;
        self.install(&plan, std::mem::take(&mut opened.states))?;
        let ingress = Arc::new(AppIngress::new(self.shards.clone(), plan.clone()));
        // Replay goes straight to the shards (the journal does not run yet,
        // so nothing new can overtake it).
        if let Err(e) = durability::replay(&mut opened, &*ingress, &plan) {
            ingress.close();
            self.remove_from_shards(plan.id)?;
            return Err(e);
        }
        let recovery = Some(opened.recovery.clone());
        let journal = Journal::new(opened, ingress.clone(), &plan, cfg.full_checkpoint_every);
        let figures = journal.figures();
        let thread = std::thread::Builder::new()
            .name(format!("dirigo-journal-{}", plan.name))
            .spawn(move || journal.run(jrx))?;
        Ok(Arc::new(AppEntry {
            ingress,
            journal: Some(JournalLink {
                tx: jtx,
                thread: Mutex::new(Some(thread)),
                figures,
            }),
            recovery,
        }))
    }

    /// Deploy `plan` on every shard, each with the restored states of the
    /// operators homed on it.
    fn install(&self, plan: &Arc<Plan>, restored: Vec<(OperatorId, Restored)>) -> Result<()> {
        let mut per_shard: Vec<Vec<(OperatorId, Restored)>> =
            (0..self.shards()).map(|_| Vec::new()).collect();
        for (op, state) in restored {
            per_shard[plan.nodes[op.0 as usize].home as usize].push((op, state));
        }
        let mut per_shard = per_shard.into_iter();
        let installed = self.shards.ask_all(|_, reply| {
            let states = per_shard.next().expect("one list per shard");
            Command::Deploy(plan.clone(), states, reply)
        });
        if let Err(e) = installed {
            // Some shards may have it (or take it later: the undeploy
            // follows the deploy on each control channel). Best effort: a
            // shard that cannot be reached has nothing to keep.
            let _ = self.remove_from_shards(plan.id);
            return Err(e);
        }
        Ok(())
    }

    /// `<data_dir>/<name>`, if the node has a data folder and `name` is one
    /// plain path component.
    fn app_dir(&self, name: &str) -> Result<std::path::PathBuf> {
        let Some(root) = &self.shards.cfg().data_dir else {
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
        let apps = self.apps.lock().map_err(|_| EngineError::Stopped)?;
        let entry = apps
            .get(name)
            .cloned()
            .flatten()
            .ok_or_else(|| EngineError::UnknownApp(name.to_owned()))?;
        Ok(AppHandle { entry })
    }

    /// Stop taking events for `name`, let what was accepted finish (up to
    /// `drain`), then remove the app from every shard. Returns whether it
    /// drained; if not, what was still in flight was discarded.
    pub fn undeploy(&self, name: &str, drain: Duration) -> Result<bool> {
        let entry = self.app(name)?.entry;
        entry.stop_journal();
        entry.ingress.close();
        let drained = entry.ingress.quiesce(drain).is_ok();
        let removed = self.remove_from_shards(entry.ingress.plan().id);
        // The name is free again even if a shard did not answer: the app
        // is closed, and an undeploy follows on that shard's channel.
        self.apps
            .lock()
            .map_err(|_| EngineError::Stopped)?
            .remove(name);
        removed.map(|()| drained)
    }

    /// Remove the app from every live shard (a dead one holds nothing).
    fn remove_from_shards(&self, app: AppId) -> Result<()> {
        for shard in 0..self.shards() {
            match self
                .shards
                .ask(shard, |reply| Command::Undeploy(app, reply))
            {
                Ok(()) | Err(EngineError::ShardDied { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Kill shard `shard`'s thread with a panic, as an engine bug would
    /// (`fault-injection` builds only: the tests of what a dead shard
    /// looks like to clients).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_shard_panic(&self, shard: usize) -> Result<()> {
        let shards = self.shards.count();
        if shard >= shards {
            return Err(EngineError::NoSuchShard { shard, shards });
        }
        self.shards.send_control(shard, Command::Panic)
    }

    /// Figures from every shard, merged. A shard that died is in it with
    /// its cause (`ShardStats::died`), a failed app with its own
    /// (`AppStats::failed`): `NodeStats::healthy` says whether either is.
    pub fn stats(&self) -> Result<NodeStats> {
        let mut stats = self.shards.stats()?;
        let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        for entry in apps.values().flatten() {
            let (Some(j), Some(a)) = (&entry.journal, stats.apps.get_mut(&entry.ingress.plan().id))
            else {
                continue;
            };
            a.durable = Some(j.figures.snapshot());
        }
        Ok(stats)
    }

    /// Stop every shard and wait for their threads.
    pub fn shutdown(self) {
        self.stop();
    }

    /// `shutdown` through a shared handle (a server holds the node in an
    /// `Arc`): the journals stop, then the shards, and their threads are
    /// joined; every later call fails with `Stopped`. Called from a task on
    /// one of the node's shards it only tells the shards to stop (a shard
    /// cannot join itself).
    pub fn stop(&self) {
        if self.shards.is_stopped() {
            return;
        }
        // Journals first, while the shards still take what they forward:
        // what a journal committed reaches the shards, or recovery.
        let entries: Vec<Arc<AppEntry>> = self
            .apps
            .lock()
            .map(|apps| apps.values().flatten().cloned().collect())
            .unwrap_or_default();
        for e in entries {
            e.stop_journal();
        }
        if !self.shards.stop() || self.shards.current_shard().is_some() {
            return;
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a durable app's checkpoint barriers hand operator states: its
/// journal's channel. A journal that is gone means the app is being torn
/// down, and the state is moot.
/// A name taken in the registry for a deploy in progress: filled with the
/// app once deployed, given back if the deploy fails (or panics).
struct NameTaken<'a> {
    apps: &'a Mutex<HashMap<String, Option<Arc<AppEntry>>>>,
    name: String,
    filled: bool,
}

impl<'a> NameTaken<'a> {
    fn take(apps: &'a Mutex<HashMap<String, Option<Arc<AppEntry>>>>, name: &str) -> Result<Self> {
        let mut map = apps.lock().map_err(|_| EngineError::Stopped)?;
        if map.contains_key(name) {
            return Err(EngineError::AppExists(name.to_owned()));
        }
        map.insert(name.to_owned(), None);
        Ok(NameTaken {
            apps,
            name: name.to_owned(),
            filled: false,
        })
    }

    fn fill(&mut self, entry: Arc<AppEntry>) -> Result<()> {
        let mut map = self.apps.lock().map_err(|_| EngineError::Stopped)?;
        map.insert(self.name.clone(), Some(entry));
        self.filled = true;
        Ok(())
    }
}

impl Drop for NameTaken<'_> {
    fn drop(&mut self) {
        if self.filled {
            return;
        }
        let mut map = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&self.name);
    }
}

fn state_sink(journal: Sender<JournalMsg>) -> StateSink {
    Arc::new(move |s: SavedState| {
        let _ = journal.send(JournalMsg::State(s));
    })
}

/// A deployed app: ingest, barriers, explicit scaling, quiescence.
#[derive(Clone)]
pub struct AppHandle {
    pub(crate) entry: Arc<AppEntry>,
}

impl AppHandle {
    /// The app's name.
    pub fn name(&self) -> &str {
        &self.plan().name
    }

    /// The app's id on this node.
    pub fn id(&self) -> AppId {
        self.plan().id
    }

    fn plan(&self) -> &Arc<Plan> {
        self.entry.ingress.plan()
    }

    /// The operator (not a source) named `name`.
    fn op(&self, name: &str) -> Result<OperatorId> {
        self.plan()
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
        let plan = self.plan();
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
            entry: self.entry.clone(),
            op,
            _t: PhantomData,
        })
    }

    /// An upper bound on the app's messages in memory now, wherever they
    /// are (inboxes, rings, mailboxes, lessees): what
    /// `NodeConfig::max_in_flight` limits.
    pub fn in_flight(&self) -> u64 {
        self.entry.ingress.in_flight()
    }

    /// Inject a barrier at every source: each operator runs its critical
    /// messages on its whole, consolidated state, after every event sent
    /// before this call and before every event sent after it.
    ///
    /// On a durable app the barrier goes into the ingress log first (unless
    /// it is a checkpoint: use [`Self::checkpoint`]).
    ///
    /// A barrier is messages too: while the app holds its limit of
    /// messages (`NodeConfig::max_in_flight`) this waits for room, up to
    /// `limits::SEND_WAIT`, then refuses with `AppFull`.
    pub fn inject_barrier(&self, kind: BarrierKind, tag: u64) -> Result<Epoch> {
        self.entry.ingress.wait_for_room(SEND_WAIT)?;
        match self.journal_barrier(kind, tag)? {
            None => self.entry.ingress.inject_now(kind, tag),
            Some(rx) => rx.recv().map_err(|_| EngineError::Stopped)?,
        }
    }

    /// `inject_barrier` for a task on a shard's executor
    /// (`Node::spawn_on_shards`): it waits for room, for full inboxes and
    /// for a durable app's journal by yielding, never blocking the shard's
    /// thread. Must run on a glommio executor.
    pub async fn inject_barrier_async(&self, kind: BarrierKind, tag: u64) -> Result<Epoch> {
        self.entry.ingress.wait_for_room_async(SEND_WAIT).await?;
        match self.journal_barrier(kind, tag)? {
            None => self.entry.ingress.inject_now_async(kind, tag).await,
            Some(rx) => rx.recv_async().await.map_err(|_| EngineError::Stopped)?,
        }
    }

    /// A durable app's barrier goes into its ingress log first: sent to
    /// the journal, whose answer comes on the receiver. `None`: not
    /// durable, inject it now.
    #[allow(clippy::type_complexity)]
    fn journal_barrier(
        &self,
        kind: BarrierKind,
        tag: u64,
    ) -> Result<Option<flume::Receiver<Result<Epoch>>>> {
        let Some(j) = &self.entry.journal else {
            return Ok(None);
        };
        if kind == BarrierKind::Checkpoint {
            return Err(EngineError::Durability {
                app: self.name().to_owned(),
                reason: "checkpoint barriers of a durable app are taken with AppHandle::checkpoint"
                    .into(),
            });
        }
        self.entry.ingress.ensure_open()?;
        let (tx, rx) = flume::bounded(1);
        j.tx.send(JournalMsg::Barrier {
            kind,
            tag,
            reply: tx,
        })
        .map_err(|_| EngineError::Stopped)?;
        Ok(Some(rx))
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
        self.entry.ingress.ensure_open()?;
        let (tx, rx) = mpsc::channel();
        j.tx.send(JournalMsg::Checkpoint { reply: tx })
            .map_err(|_| EngineError::Stopped)?;
        rx.recv_timeout(CHECKPOINT_TIMEOUT + CONTROL_TIMEOUT)
            .map_err(|_| EngineError::Timeout(CHECKPOINT_TIMEOUT))?
    }

    /// Durable apps: what deploy found on disk, restored and replayed.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.entry.recovery.as_ref()
    }

    /// Ask for a lessee of operator `op` on `shard` (explicit scaling).
    /// `Ok(None)` when the operator cannot lease there now.
    pub fn lease(&self, op: &str, shard: usize) -> Result<Option<LeaseId>> {
        self.entry.ingress.ensure_open()?;
        let id = self.op(op)?;
        let node = self
            .plan()
            .node(id)
            .expect("op() returns existing operators");
        if node.strategy == Strategy::Sequential {
            return Err(EngineError::NotLeasable {
                app: self.name().to_owned(),
                op: op.to_owned(),
            });
        }
        let shards = self.entry.ingress.shards();
        if shard >= shards.count() {
            let count = shards.count();
            return Err(EngineError::NoSuchShard {
                shard,
                shards: count,
            });
        }
        let actor = ActorId {
            app: self.id(),
            op: id,
        };
        shards.ask(node.home as usize, |reply| Command::Lease {
            actor,
            shard: shard as ShardId,
            reply,
        })
    }

    /// Revoke the lessees of operator `op` (on `shard`, or all). Returns how
    /// many revokes were started.
    pub fn revoke(&self, op: &str, shard: Option<usize>) -> Result<usize> {
        self.entry.ingress.ensure_open()?;
        let id = self.op(op)?;
        let node = self
            .plan()
            .node(id)
            .expect("op() returns existing operators");
        let actor = ActorId {
            app: self.id(),
            op: id,
        };
        let shards = self.entry.ingress.shards().count();
        if let Some(shard) = shard.filter(|&s| s >= shards) {
            return Err(EngineError::NoSuchShard { shard, shards });
        }
        let shard = shard.map(|s| s as ShardId);
        self.entry
            .ingress
            .shards()
            .ask(node.home as usize, |reply| Command::Revoke {
                actor,
                shard,
                reply,
            })
    }

    /// Wait until everything accepted so far has been processed: every
    /// command taken by its shard, every message it caused processed, as
    /// two agreeing reads of the counters show (see `quiesce`).
    pub fn quiesce(&self, timeout: Duration) -> Result<()> {
        self.entry.ingress.quiesce(timeout)
    }
}
