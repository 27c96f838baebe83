//! What a shard keeps of the actors homed on it that are not active: the
//! protocol's dormant records (state in memory, or in a spill file for
//! durable operators), and the states a checkpoint restored at deploy for
//! each operator's first activation. One wake path brings an actor back
//! from either.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::instance::Instance;
use crate::durability::spill;
use crate::func::{ErasedFunction, ErasedState};
use crate::model::{ActorId, AppId, Message};
use crate::plan::PlanNode;
use crate::protocol::{Dormant, Lessor, ShardId};
use crate::runtime::metrics::ShardStats;

/// What a shard keeps of the actors homed on it that are not active.
#[derive(Default)]
pub(super) struct Asleep {
    /// Deactivated actors: the protocol's record, with the state in memory
    /// or (durable operators) in a spill file.
    pub(super) dormant: HashMap<ActorId, Dormant<Instance>>,
    /// States restored from a checkpoint at deploy, for each operator's
    /// first activation.
    pub(super) restored: HashMap<ActorId, Box<dyn ErasedState>>,
    /// Dormant actors whose state is in a spill file (see `spill`).
    pub(super) spilled: HashMap<ActorId, std::path::PathBuf>,
    /// Spill files written by this shard (their ids and names).
    pub(super) spill_seq: u64,
}

impl Asleep {
    /// The lessor for `actor`'s first message since deploy or since it went
    /// dormant: from its dormant record (its state read back from its spill
    /// file if it was spilled), else on the state a checkpoint restored,
    /// else fresh.
    pub(super) fn wake(
        &mut self,
        me: ShardId,
        stats: &mut ShardStats,
        actor: ActorId,
        node: &PlanNode,
        f: &Arc<dyn ErasedFunction>,
    ) -> Lessor<Message, Instance> {
        match self.dormant.remove(&actor) {
            Some(d) => {
                let d = self.unspill(me, stats, actor, f, d);
                Lessor::from_dormant(me, node.strategy, node.inputs, d)
            }
            None => {
                let state = self
                    .restored
                    .remove(&actor)
                    .unwrap_or_else(|| f.new_state());
                Lessor::new(
                    me,
                    node.strategy,
                    node.inputs,
                    Instance::new(state, node.outs.len()),
                )
            }
        }
    }

    /// Bring a spilled dormant actor's state back from its file (the
    /// actor's cold start).
    ///
    /// A spill file that cannot be read back (deleted or damaged under the
    /// running node) leaves no state to run the actor on: the shard stops
    /// (panics) rather than run it on an empty one; the app's checkpoint
    /// and ingress log recover it on the next deploy.
    fn unspill(
        &mut self,
        me: ShardId,
        stats: &mut ShardStats,
        actor: ActorId,
        f: &Arc<dyn ErasedFunction>,
        mut d: Dormant<Instance>,
    ) -> Dormant<Instance> {
        let Some(path) = self.spilled.remove(&actor) else {
            return d;
        };
        let codec = f
            .state_codec()
            .expect("only durable operators' states are spilled");
        let started = Instant::now();
        match spill::read(&path, codec.unspill) {
            Ok(state) => {
                d.state.user = state;
                stats.unspills += 1;
                stats.unspill_ns += started.elapsed().as_nanos() as u64;
                d
            }
            Err(e) => panic!(
                "shard {me}: the dormant state of {actor} in {} cannot be read back: {e}",
                path.display()
            ),
        }
    }

    /// Drop everything of an undeployed app (its spill files too).
    pub(super) fn forget_app(&mut self, app: AppId) {
        self.dormant.retain(|a, _| a.app != app);
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
