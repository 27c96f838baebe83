//! What a shard keeps of the actors homed on it that are not active: the
//! protocol's dormant records (state in memory, or in a spill file for
//! durable operators), and the states a checkpoint restored at deploy for
//! each operator's first activation. One wake path brings an actor back
//! from either.
//!
//! Waking never panics: a spill file that cannot be read back for a reason
//! that may pass (EMFILE, ENFILE, ENOMEM, EAGAIN, EINTR) keeps its actor dormant (the shard retries, holding the
//! actor's messages meanwhile); one that is gone or damaged fails only the
//! actor's app.

use std::sync::Arc;
use std::time::Instant;

use dirigo_storage::StorageError;

use super::instance::Instance;
use crate::durability::spill::{self, SpillError};
use crate::func::{ErasedFunction, Restored};
use crate::model::hash::IdMap;
use crate::model::{ActorId, AppId, Message};
use crate::plan::PlanNode;
use crate::protocol::{Dormant, Lessor, ShardId};
use crate::runtime::metrics::ShardStats;

/// What a shard keeps of the actors homed on it that are not active.
#[derive(Default)]
pub(super) struct Asleep {
    /// Deactivated actors: the protocol's record, with the state in memory
    /// or (durable operators) in a spill file.
    pub(super) dormant: IdMap<ActorId, Dormant<Instance>>,
    /// States restored from a checkpoint at deploy, for each operator's
    /// first activation.
    pub(super) restored: IdMap<ActorId, Restored>,
    /// Dormant actors whose state is in a spill file (see `spill`).
    pub(super) spilled: IdMap<ActorId, std::path::PathBuf>,
    /// Spill files written by this shard (their ids and names).
    pub(super) spill_seq: u64,
    /// Messages for dormant actors whose spill could not be read back yet
    /// (`WakeError::Retry`), in arrival order; retried by housekeeping.
    pub(super) waking: IdMap<ActorId, Vec<Message>>,
}

/// Why an actor could not be woken.
pub(super) enum WakeError {
    /// Reading its spill file back failed in a way that may pass (too many
    /// open files, no memory for the map...): it stays dormant, spilled,
    /// and is woken again later.
    Retry,
    /// Its spilled state is gone or damaged: there is no state to run it
    /// on, so its app fails (a durable app recovers on its next deploy).
    Damaged(String),
}

impl Asleep {
    /// The lessor for `actor`'s first message since deploy or since it went
    /// dormant: from its dormant record (its state read back from its spill
    /// file if it was spilled), else on the state a checkpoint restored,
    /// else fresh.
    pub(super) fn wake(
        &mut self,
        stats: &mut ShardStats,
        actor: ActorId,
        node: &PlanNode,
        f: &Arc<dyn ErasedFunction>,
        (me, timed, unix_origin_ns): (ShardId, bool, u64),
    ) -> Result<Lessor<Message, Instance>, WakeError> {
        if let Some(d) = self.dormant.remove(&actor) {
            let d = self.unspill(stats, actor, f, d)?;
            return Ok(Lessor::from_dormant(me, node.strategy, node.inputs, d));
        }
        let mut instance = Instance::new(f.new_state(), node.outs.len());
        if let Some(r) = self.restored.remove(&actor) {
            instance.user = r.user;
            instance.clock = r.clock;
            // Its processing-time timers were saved at wall-clock time.
            instance.clock.rebase_proc(unix_origin_ns);
        }
        let lessor = Lessor::new(me, node.strategy, node.inputs, instance);
        Ok(if timed { lessor.timed() } else { lessor })
    }

    /// Bring a spilled dormant actor's state back from its file (the
    /// actor's cold start). On an error the record stays dormant and
    /// spilled (`Retry`), or the error says the state is lost (`Damaged`).
    fn unspill(
        &mut self,
        stats: &mut ShardStats,
        actor: ActorId,
        f: &Arc<dyn ErasedFunction>,
        mut d: Dormant<Instance>,
    ) -> Result<Dormant<Instance>, WakeError> {
        let Some(path) = self.spilled.get(&actor) else {
            return Ok(d);
        };
        let codec = f
            .state_codec()
            .expect("only durable operators' states are spilled");
        let started = Instant::now();
        match spill::read(path, codec.unspill) {
            Ok(state) => {
                self.spilled.remove(&actor);
                d.state.user = state;
                stats.unspills += 1;
                stats.unspill_ns += started.elapsed().as_nanos() as u64;
                Ok(d)
            }
            Err(e) => {
                stats.unspill_errors += 1;
                let what = format!(
                    "the spilled state of {actor} in {} cannot be read back: {e}",
                    path.display()
                );
                stats.last_unspill_error = Some(what.clone());
                if transient(&e) {
                    self.dormant.insert(actor, d);
                    Err(WakeError::Retry)
                } else {
                    self.spilled.remove(&actor);
                    Err(WakeError::Damaged(what))
                }
            }
        }
    }

    /// Drop everything of an undeployed app (its spill files too).
    pub(super) fn forget_app(&mut self, app: AppId) {
        self.dormant.retain(|a, _| a.app != app);
        self.waking.retain(|a, _| a.app != app);
        self.restored.retain(|a, _| a.app != app);
        self.spilled.retain(|a, path| {
            let keep = a.app != app;
            if !keep {
                let _ = std::fs::remove_file(path);
            }
            keep
        });
    }
}

/// Whether a spill read failed for a reason that may pass: out of
/// descriptors or memory, interrupted, try again. Anything else (gone, no
/// permission, EIO, validation damage) will not pass by waiting.
fn transient(e: &SpillError) -> bool {
    match e {
        SpillError::Storage(StorageError::Io { source, .. }) => matches!(
            source.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN | libc::EINTR)
        ),
        _ => false,
    }
}
