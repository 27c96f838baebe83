//! The running shards as client threads see them: how a node starts its
//! shards (the mesh built, one glommio executor per shard, pinned or not)
//! and the links a client uses to reach each one.
//!
//! A client never touches shard state. It sends [`Command`]s: ingest and
//! barriers on the shard's bounded inbox (a full inbox is backpressure),
//! everything else on its control channel (never full: each control command
//! comes from a client call that waits for its reply), then rings the
//! shard's doorbell, which wakes the shard only if it parked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement as GPlacement};

use super::clock::{Clock, Gauge};
use super::command::Command;
use super::config::{NodeConfig, Placement};
use super::metrics::{NodeStats, ShardStats};
use super::shard::{Packet, Shard, ShardParts};
use crate::limits::{CONTROL_TIMEOUT, SHARD_IO_MEMORY};
use crate::mesh::doorbell::Doorbell;
use crate::mesh::Mesh;
use crate::model::{EngineError, Result};
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
}

/// The threads of a node's shards, joined when the node stops.
pub(crate) type ShardThreads = Vec<ExecutorJoinHandle<()>>;

impl Shards {
    /// Start `cfg.shard_count()` shards on a full mesh.
    pub(crate) fn start(cfg: NodeConfig) -> Result<(Arc<Shards>, ShardThreads)> {
        cfg.validate()?;
        let n = cfg.shard_count();
        let clock = Clock(Instant::now());
        let cores = available_cores();
        let mesh = Mesh::<Packet>::full(n, cfg.ring_capacity)?;
        let gauges: Arc<[Gauge]> = (0..n).map(|_| Gauge::default()).collect();
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
            };
            let placement = match cfg.placement {
                Placement::Pinned => GPlacement::Fixed(cores[i % cores.len()]),
                Placement::Unpinned => GPlacement::Unbound,
            };
            threads.push(spawn(i, placement, parts)?);
        }
        let shards = Shards {
            cfg,
            clock,
            links,
            stopped: AtomicBool::new(false),
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

    /// Send a data command (ingest, barrier) to `shard`'s bounded inbox,
    /// ringing its doorbell; a full inbox hands the command back.
    pub(crate) fn try_command(
        &self,
        shard: usize,
        cmd: Command,
    ) -> std::result::Result<(), TrySendError<Command>> {
        let link = &self.links[shard];
        link.tx.try_send(cmd)?;
        link.bell.ring();
        Ok(())
    }

    /// Send a control command on the shard's control channel.
    fn control(&self, shard: usize, cmd: Command) -> Result<()> {
        let link = &self.links[shard];
        link.ctl.send(cmd).map_err(|_| EngineError::Stopped)?;
        link.bell.ring();
        Ok(())
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
            .map_err(|_| EngineError::Timeout(CONTROL_TIMEOUT))
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
            .map(|rx| {
                rx.recv_timeout(CONTROL_TIMEOUT)
                    .map_err(|_| EngineError::Timeout(CONTROL_TIMEOUT))
            })
            .collect()
    }

    /// Figures from every shard, merged.
    pub(crate) fn stats(&self) -> Result<NodeStats> {
        let shards: Vec<ShardStats> = self.ask_all(|_, tx| Command::Stats(tx))?;
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

/// Shard `i`'s thread: one glommio executor running its dispatcher loop.
fn spawn(i: usize, placement: GPlacement, parts: ShardParts) -> Result<ExecutorJoinHandle<()>> {
    LocalExecutorBuilder::new(placement)
        .name(&format!("dirigo-shard-{i}"))
        .io_memory(SHARD_IO_MEMORY)
        .spawn(move || async move { Shard::new(parts).run().await })
        .map_err(|e| EngineError::ShardStart {
            shard: i,
            reason: e.to_string(),
        })
}
