//! The running shards as client threads see them: how a node starts its
//! shards (the mesh built, one glommio executor per shard, pinned or not)
//! and the links a client uses to reach each one.
//!
//! A client never touches shard state. It sends [`Command`]s: ingest and
//! barriers on the shard's bounded inbox (a full inbox is backpressure),
//! everything else on its control channel (never full: each control command
//! comes from a client call that waits for its reply), then rings the
//! shard's doorbell, which wakes the shard only if it parked.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement as GPlacement};

use super::clock::{Clock, Gauge};
use super::command::Command;
use super::config::{NodeConfig, Placement};
use super::local;
use super::metrics::{NodeStats, ShardStats};
use super::shard::{Packet, Shard, ShardParts};
use crate::limits::{CONTROL_TIMEOUT, DEATH_RECORD_WAIT, RETRY_PAUSE, SHARD_IO_MEMORY};
use crate::mesh::doorbell::Doorbell;
use crate::mesh::Mesh;
use futures_lite::FutureExt;

use crate::model::{panic_message, EngineError, Result};
use crate::protocol::ShardId;

/// A client's way to one shard.
struct ShardLink {
    /// Ingest and barriers: bounded (backpressure), in order.
    tx: SyncSender<Command>,
    /// Everything else (deploy, stats, lease, stop): taken every turn, even
    /// while the shard holds back ingest, so a loaded shard still answers.
    ctl: Sender<Command>,
    bell: Arc<Doorbell>,
}

/// A node's running shards, shared by the node and every handle on it.
pub(crate) struct Shards {
    cfg: NodeConfig,
    clock: Clock,
    links: Vec<ShardLink>,
    stopped: AtomicBool,
    /// Per shard, the panic that killed its thread, once it died.
    deaths: Arc<[OnceLock<String>]>,
    /// This node's number in the process (`local`: a shard thread knows
    /// which node's shard it runs).
    node_id: u64,
}

/// Numbers the nodes of a process.
static NODES: AtomicU64 = AtomicU64::new(1);

/// The threads of a node's shards, joined when the node stops.
pub(crate) type ShardThreads = Vec<ExecutorJoinHandle<()>>;

impl Shards {
    /// Start `cfg.shard_count()` shards on a full mesh.
    pub(crate) fn start(cfg: NodeConfig) -> Result<(Arc<Shards>, ShardThreads)> {
        cfg.validate()?;
        let n = cfg.shard_count();
        let clock = Clock::start();
        let cores = available_cores();
        let mesh = Mesh::<Packet>::full(n, cfg.ring_capacity)?;
        let gauges: Arc<[Gauge]> = (0..n).map(|_| Gauge::default()).collect();
        let deaths: Arc<[OnceLock<String>]> = (0..n).map(|_| OnceLock::new()).collect();
        let node_id = NODES.fetch_add(1, Ordering::Relaxed);
        let mut links = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (i, ends) in mesh.ends.into_iter().enumerate() {
            let (tx, commands) = mpsc::sync_channel(cfg.inbox_capacity);
            let (ctl, control) = mpsc::channel();
            links.push(ShardLink {
                tx,
                ctl,
                bell: mesh.bells[i].clone(),
            });
            let parts = ShardParts {
                id: i as ShardId,
                cfg: cfg.clone(),
                clock,
                mesh: ends,
                commands,
                control,
                gauges: gauges.clone(),
                node_id,
            };
            let placement = match cfg.placement {
                Placement::Pinned => GPlacement::Fixed(cores[i % cores.len()]),
                Placement::Unpinned => GPlacement::Unbound,
            };
            threads.push(spawn(i, placement, parts, deaths.clone())?);
        }
        let shards = Shards {
            cfg,
            clock,
            links,
            stopped: AtomicBool::new(false),
            deaths,
            node_id,
        };
        Ok((Arc::new(shards), threads))
    }

    /// How many shards the node has.
    pub(crate) fn count(&self) -> usize {
        self.links.len()
    }

    pub(crate) fn cfg(&self) -> &NodeConfig {
        &self.cfg
    }

    /// The node clock: ns since the node started.
    pub(crate) fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Send a data command (ingest, barrier) to `shard`: into its local
    /// queue when the caller runs on that shard's thread (`local`), else
    /// into its bounded inbox; then ring its doorbell (a no-op unless it
    /// parked). A full queue hands the command back.
    pub(crate) fn try_command(
        &self,
        shard: usize,
        cmd: Command,
    ) -> std::result::Result<(), TrySendError<Command>> {
        let link = &self.links[shard];
        match local::try_push(self.node_id, shard, cmd) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(cmd)) => link.tx.try_send(cmd)?,
            Err(full) => return Err(full),
        }
        link.bell.ring();
        Ok(())
    }

    /// The shard whose thread the caller runs on, if it is one of ours.
    pub(crate) fn current_shard(&self) -> Option<usize> {
        local::current_shard(self.node_id)
    }

    /// Run `make(shard)`'s future as a task on every shard's executor
    /// (`Command::Spawn`), beside the dispatcher.
    pub(crate) fn spawn_on_all(&self, make: Arc<super::command::TaskMaker>) -> Result<()> {
        for s in 0..self.count() {
            self.control(s, Command::Spawn(make.clone()))?;
        }
        Ok(())
    }

    /// Send a control command that has no reply.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn send_control(&self, shard: usize, cmd: Command) -> Result<()> {
        self.control(shard, cmd)
    }

    /// Send a control command on the shard's control channel.
    fn control(&self, shard: usize, cmd: Command) -> Result<()> {
        let link = &self.links[shard];
        link.ctl.send(cmd).map_err(|_| self.gone(shard))?;
        link.bell.ring();
        Ok(())
    }

    /// Why `shard` stopped answering: `ShardDied` with its panic, else the
    /// node stopped.
    pub(crate) fn gone(&self, shard: usize) -> EngineError {
        // A dying shard's channels close while it unwinds, a moment before
        // its cause is recorded: unless the node stops, wait for it.
        let deadline = Instant::now() + DEATH_RECORD_WAIT;
        while self.died(shard).is_none() && !self.is_stopped() && Instant::now() < deadline {
            std::thread::sleep(RETRY_PAUSE);
        }
        match self.died(shard) {
            Some(cause) => EngineError::ShardDied {
                shard,
                cause: cause.to_owned(),
            },
            None => EngineError::Stopped,
        }
    }

    /// The first shard that died and its panic, if one did.
    pub(crate) fn any_death(&self) -> Option<(usize, &str)> {
        (0..self.count()).find_map(|s| self.died(s).map(|c| (s, c)))
    }

    /// The panic that killed `shard`, if it died.
    pub(crate) fn died(&self, shard: usize) -> Option<&str> {
        self.deaths
            .get(shard)
            .and_then(|d| d.get())
            .map(String::as_str)
    }

    /// A reply that did not come: the shard died, or it is too slow.
    fn no_reply(&self, shard: usize, e: mpsc::RecvTimeoutError) -> EngineError {
        match e {
            mpsc::RecvTimeoutError::Disconnected => self.gone(shard),
            mpsc::RecvTimeoutError::Timeout => EngineError::Timeout(CONTROL_TIMEOUT),
        }
    }

    /// Ask `shard` and wait (up to `CONTROL_TIMEOUT`) for its reply.
    pub(crate) fn ask<R>(
        &self,
        shard: usize,
        make: impl FnOnce(Sender<R>) -> Command,
    ) -> Result<R> {
        let (tx, rx) = mpsc::channel();
        self.control(shard, make(tx))?;
        rx.recv_timeout(CONTROL_TIMEOUT)
            .map_err(|e| self.no_reply(shard, e))
    }

    /// Ask every shard at once (`make(shard, reply)`), then wait for every
    /// reply, in shard order.
    pub(crate) fn ask_all<R>(
        &self,
        mut make: impl FnMut(usize, Sender<R>) -> Command,
    ) -> Result<Vec<R>> {
        let mut replies = Vec::with_capacity(self.count());
        for s in 0..self.count() {
            let (tx, rx) = mpsc::channel();
            self.control(s, make(s, tx))?;
            replies.push(rx);
        }
        replies
            .into_iter()
            .enumerate()
            .map(|(s, rx)| {
                rx.recv_timeout(CONTROL_TIMEOUT)
                    .map_err(|e| self.no_reply(s, e))
            })
            .collect()
    }

    /// Figures from every shard, merged. A dead shard answers nothing: its
    /// entry says it died, and why.
    pub(crate) fn stats(&self) -> Result<NodeStats> {
        let mut replies = Vec::with_capacity(self.count());
        for s in 0..self.count() {
            let (tx, rx) = mpsc::channel();
            let sent = self.control(s, Command::Stats(tx));
            replies.push(sent.map(|()| rx));
        }
        let mut shards = Vec::with_capacity(self.count());
        for (shard, r) in replies.into_iter().enumerate() {
            let got = r.and_then(|rx| {
                rx.recv_timeout(CONTROL_TIMEOUT)
                    .map_err(|e| self.no_reply(shard, e))
            });
            shards.push(match got {
                Ok(st) => st,
                Err(EngineError::ShardDied { cause, .. }) => ShardStats {
                    shard,
                    died: Some(cause),
                    ..ShardStats::default()
                },
                Err(e) => return Err(e),
            });
        }
        Ok(NodeStats::from_shards(shards))
    }

    /// Tell every shard to stop (once; later calls return false).
    pub(crate) fn stop(&self) -> bool {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return false;
        }
        for s in 0..self.count() {
            let _ = self.control(s, Command::Stop);
        }
        true
    }
}

/// The ids of the cores this process may run on (at least one).
fn available_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![0])
}

/// Shard `i`'s thread: one glommio executor running its dispatcher loop. A
/// panic (an engine bug: user code's panics are caught where it runs)
/// ends the thread and is recorded in `deaths[i]`, for every client call
/// that reaches the shard to name; its backlog gauge goes to the maximum,
/// so no lease is asked of it.
fn spawn(
    i: usize,
    placement: GPlacement,
    parts: ShardParts,
    deaths: Arc<[OnceLock<String>]>,
) -> Result<ExecutorJoinHandle<()>> {
    LocalExecutorBuilder::new(placement)
        .name(&format!("dirigo-shard-{i}"))
        .io_memory(SHARD_IO_MEMORY)
        .spawn(move || async move {
            let gauges = parts.gauges.clone();
            let local = local::install(parts.node_id, i, parts.cfg.inbox_capacity);
            let run = AssertUnwindSafe(Shard::new(parts, local).run());
            if let Err(p) = run.catch_unwind().await {
                // No lessor may pick a dead shard as the least loaded.
                gauges[i].backlog.store(usize::MAX, Ordering::Relaxed);
                let _ = deaths[i].set(panic_message(&*p));
            }
        })
        .map_err(|e| EngineError::ShardStart {
            shard: i,
            reason: e.to_string(),
        })
}
