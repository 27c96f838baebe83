//! The deployed form of an application: its compiled DAG ([`Plan`]), shared
//! read-only by every shard, with each operator's home shard, output edges,
//! erased function and learned cost.
//!
//! Between the builder and the shards: `api` builds an [`App`] (`spec`),
//! `Plan::compile` compiles it, `runtime` and `durability` read it. A plan
//! does not know the journal: a durable app's checkpoint barriers hand each
//! operator's state to the plan's [`StateSink`], a callback the journal
//! provides at deploy.

mod spec;

pub use spec::App;
pub(crate) use spec::{Cloner, NodeKind, NodeSpec, Rebatch, SourceTime};

use std::any::TypeId;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rkyv::util::AlignedVec;

use crate::func::{ErasedFunction, EventCodec};
use crate::limits::MAX_NODES;
use crate::model::{key_hash, ActorId, AppClass, AppId, OperatorId};
use crate::protocol::{EdgeId, ShardId, Strategy};
use crate::quiesce::ShardCounters;
use crate::sched::policy::OpView;
use crate::sync::{AtomicU64, Ordering};

/// One operator's state for a checkpoint, from the shard that ran the
/// checkpoint's critical section.
pub(crate) struct SavedState {
    /// The checkpoint's number.
    pub checkpoint: u64,
    pub op: OperatorId,
    /// Only the changes since the previous checkpoint.
    pub delta: bool,
    /// The archived state, or why it could not be archived.
    pub bytes: std::result::Result<AlignedVec, String>,
    /// An app on event time: the operator's event clock (watermark and
    /// timers), whole.
    pub clock: Option<Vec<u8>>,
}

/// Where a durable app's operators hand their checkpointed state (the
/// app's journal).
pub(crate) type StateSink = Arc<dyn Fn(SavedState) + Send + Sync>;

pub(crate) enum PlanKind {
    Source,
    Function {
        f: Arc<dyn ErasedFunction>,
        sink: bool,
    },
}

pub(crate) struct PlanNode {
    pub name: String,
    pub kind: PlanKind,
    pub strategy: Strategy,
    pub inputs: u16,
    /// Downstream (operator, input edge) of each output edge.
    pub outs: Vec<(OperatorId, EdgeId)>,
    /// The lessor's shard (sources: the shard that stamps and sends).
    pub home: ShardId,
    pub source_type: Option<(TypeId, &'static str)>,
    pub source_clone: Option<Cloner>,
    /// A source's boxed events (logged input) as batch messages.
    pub source_rebatch: Option<Rebatch>,
    /// Durable sources: how events go into and come out of the log.
    pub event_codec: Option<EventCodec>,
    /// Sources on event time: how they make watermarks.
    pub source_time: Option<SourceTime>,
    /// What the shards learn of this node, on its own cache lines: every
    /// shard that runs the operator writes it, and every shard that routes
    /// to it reads the fields above on the message path.
    pub learned: Learned,
}

/// The learned costs of a node (relaxed gauges that any shard running the
/// operator updates, once per batch of runs; estimates, racy by design).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Learned {
    /// Mean cost of one message here, in ns.
    pub cost_ns: AtomicU64,
    /// Cost of the longest path from here to a sink, this node included:
    /// kept up to date by `learn_cost`, so reading it is O(1).
    pub path_cost_ns: AtomicU64,
}

/// An app as deployed on a node: shared, read-only, by every shard.
pub(crate) struct Plan {
    pub id: AppId,
    pub name: String,
    pub slo_ns: u64,
    pub class: AppClass,
    pub nodes: Vec<PlanNode>,
    /// Per shard: what it sent, processed and took of this app, for
    /// `quiesce` (each shard writes only its own).
    pub counters: Box<[ShardCounters]>,
    /// Some source is on event time: the app's lessors keep what their
    /// watermarks' rosters need (`Lessor::timed`).
    pub timed: bool,
    /// Durable apps: where checkpoint barriers send operator state (the
    /// app's journal).
    pub state_sink: Option<StateSink>,
    /// Durable apps: the app's data folder (`<data_dir>/<app>`).
    pub dir: Option<PathBuf>,
    /// The app's deploy note (`App::with_deploy_note`).
    pub note: Option<String>,
    /// Why the app failed, once it did (an operator panicked, a spilled
    /// state is damaged): set once, by the shard that saw it. A failed app
    /// runs nothing more and takes no input; undeploy clears it away.
    failure: OnceLock<String>,
}

/// The home shard of node `node` (index in declaration order: sources,
/// operators and sinks alike) of the app named `app` on a node of `shards`
/// shards (of a colocated app, every node's is node 0's). Homes spread the actors of all apps over the shards and are
/// reproducible, so a deployment (or a benchmark that wants contention on a
/// given shard) can know where each lessor runs before it deploys. A
/// `shards` of 0 counts as 1.
pub fn home_shard(app: &str, node: usize, shards: usize) -> ShardId {
    home_of(key_hash(app.as_bytes()), node, shards)
}

fn home_of(app_hash: u64, node: usize, shards: usize) -> ShardId {
    let h = (app_hash ^ (node as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0xff51_afd7_ed55_8ccd);
    ((h >> 32) % shards.max(1) as u64) as ShardId
}

impl PlanNode {
    /// A node as the shards run it: its spec, its output edges, its home.
    fn compile(spec: NodeSpec, outs: Vec<(OperatorId, EdgeId)>, home: ShardId) -> PlanNode {
        let inputs = spec.inputs.len().max(1) as u16;
        let (mut source_rebatch, mut source_time) = (None, None);
        let (kind, strategy, source_type, source_clone, event_codec) = match spec.kind {
            NodeKind::Source {
                type_id,
                type_name,
                clone,
                rebatch,
                codec,
                time,
            } => {
                source_rebatch = Some(rebatch);
                source_time = time;
                (
                    PlanKind::Source,
                    Strategy::Sequential,
                    Some((type_id, type_name)),
                    Some(clone),
                    codec,
                )
            }
            NodeKind::Operator(f) => {
                let s = f.strategy();
                (PlanKind::Function { f, sink: false }, s, None, None, None)
            }
            NodeKind::Sink(f) => (
                PlanKind::Function { f, sink: true },
                Strategy::Sequential,
                None,
                None,
                None,
            ),
        };
        PlanNode {
            name: spec.name,
            kind,
            strategy,
            inputs,
            outs,
            home,
            source_type,
            source_clone,
            source_rebatch,
            event_codec,
            source_time,
            learned: Learned::default(),
        }
    }
}

impl Plan {
    /// Compile a built app for a node of `shards` shards; a durable app
    /// comes with where its checkpointed states go and its data folder.
    pub(crate) fn compile(
        app: App,
        id: AppId,
        shards: usize,
        durable: Option<(StateSink, PathBuf)>,
    ) -> Plan {
        let (state_sink, dir) = durable.unzip();
        let n = app.nodes.len();
        assert!(n <= MAX_NODES, "the builder bounds an app's nodes");
        let mut outs: Vec<Vec<(OperatorId, EdgeId)>> = vec![Vec::new(); n];
        for (to, node) in app.nodes.iter().enumerate() {
            for (edge, &from) in node.inputs.iter().enumerate() {
                assert!((from as usize) < to, "edges point at earlier nodes: a DAG");
                outs[from as usize].push((OperatorId(to as u16), edge as EdgeId));
            }
        }
        let app_hash = key_hash(app.name.as_bytes());
        // A colocated app's nodes all live where its first one would.
        let home = |i: usize| home_of(app_hash, if app.colocated { 0 } else { i }, shards);
        let nodes: Vec<PlanNode> = app
            .nodes
            .into_iter()
            .zip(outs)
            .enumerate()
            .map(|(i, (spec, outs))| PlanNode::compile(spec, outs, home(i)))
            .collect();
        let timed = nodes.iter().any(|n| n.source_time.is_some());
        Plan {
            id,
            name: app.name,
            slo_ns: app.slo.as_nanos().min(u64::MAX as u128) as u64,
            class: app.class,
            nodes,
            counters: (0..shards).map(|_| ShardCounters::default()).collect(),
            timed,
            state_sink,
            dir,
            note: app.note,
            failure: OnceLock::new(),
        }
    }

    /// Fail the app for `cause` (the first cause stays).
    pub(crate) fn fail(&self, cause: String) {
        let _ = self.failure.set(cause);
    }

    /// Why the app failed, if it did.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    pub(crate) fn node_by_name(&self, name: &str) -> Option<(OperatorId, &PlanNode)> {
        self.nodes
            .iter()
            .enumerate()
            .find(|(_, n)| n.name == name)
            .map(|(i, n)| (OperatorId(i as u16), n))
    }

    pub(crate) fn node(&self, op: OperatorId) -> Option<&PlanNode> {
        self.nodes.get(op.0 as usize)
    }

    /// Learned mean cost of one message at `op` (0 until measured).
    pub(crate) fn cost_ns(&self, op: OperatorId) -> u64 {
        self.node(op)
            .map_or(0, |n| n.learned.cost_ns.load(Ordering::Relaxed))
    }

    /// Fold one measured run time into `op`'s mean (weight 1/8).
    pub(crate) fn learn_cost(&self, op: OperatorId, sample_ns: u64) {
        if let Some(n) = self.node(op) {
            let old = n.learned.cost_ns.load(Ordering::Relaxed);
            let new = if old == 0 {
                sample_ns
            } else {
                old - old / 8 + sample_ns / 8
            };
            n.learned.cost_ns.store(new.max(1), Ordering::Relaxed);
            self.update_path_costs(op);
        }
    }

    /// Refresh the path cost of `from` and of every node before it, in one
    /// backward pass: edges point from earlier to later nodes (the builder
    /// makes every app a DAG in declaration order), so a node's path cost
    /// depends only on later nodes' and only nodes up to `from` can have a
    /// path through it. O(nodes + edges) per cost update, where following
    /// every path would be exponential in a diamond-shaped DAG.
    fn update_path_costs(&self, from: OperatorId) {
        for n in self.nodes[..=from.0 as usize].iter().rev() {
            let below = n
                .outs
                .iter()
                .map(|(child, _)| {
                    self.nodes[child.0 as usize]
                        .learned
                        .path_cost_ns
                        .load(Ordering::Relaxed)
                })
                .max()
                .unwrap_or(0);
            let cost = n.learned.cost_ns.load(Ordering::Relaxed);
            n.learned
                .path_cost_ns
                .store(cost.saturating_add(below), Ordering::Relaxed);
        }
    }

    /// Learned cost of the longest path from `op` to a sink, `op` included.
    pub(crate) fn path_cost_ns(&self, op: OperatorId) -> u64 {
        self.node(op)
            .map_or(0, |n| n.learned.path_cost_ns.load(Ordering::Relaxed))
    }

    /// What a policy sees of `op`.
    pub(crate) fn op_view(&self, op: OperatorId) -> OpView<'_> {
        let node = self.node(op);
        OpView {
            actor: ActorId { app: self.id, op },
            app: &self.name,
            op: node.map_or("", |n| n.name.as_str()),
            class: self.class,
            slo_ns: self.slo_ns,
            strategy: node.map_or(Strategy::Sequential, |n| n.strategy),
            cost_ns: self.cost_ns(op),
            path_cost_ns: self.path_cost_ns(op),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::func::{Context, Function, Merged, Typed};

    struct Pass;
    impl Function for Pass {
        type In = u64;
        type Out = u64;
        type State = Merged<u64>;
        fn on_message(&self, _: &mut Merged<u64>, k: u64, v: u64, ctx: &mut Context<'_, u64>) {
            ctx.emit(k, v);
        }
    }

    /// A DAG given by each node's inputs (node 0 the source).
    fn plan(inputs: &[&[u16]]) -> Plan {
        plan_on(inputs, 1, false)
    }

    /// The same on `shards` shards, colocated or spread.
    fn plan_on(inputs: &[&[u16]], shards: usize, colocated: bool) -> Plan {
        let nodes = inputs
            .iter()
            .enumerate()
            .map(|(i, ins)| NodeSpec {
                name: format!("n{i}"),
                kind: if i == 0 {
                    NodeKind::Source {
                        type_id: TypeId::of::<u64>(),
                        type_name: "u64",
                        clone: Arc::new(|v: &crate::model::AnyBox| {
                            Box::new(*v.downcast_ref::<u64>().expect("u64")) as crate::model::AnyBox
                        }),
                        rebatch: crate::func::rebatch::<u64>,
                        codec: None,
                        time: None,
                    }
                } else {
                    NodeKind::Operator(Arc::new(Typed::new(Pass)))
                },
                inputs: ins.to_vec(),
            })
            .collect();
        let app = App {
            name: "dag".into(),
            slo: Duration::from_millis(10),
            class: AppClass::LatencyCritical,
            nodes,
            durable: false,
            colocated,
            note: None,
        };
        Plan::compile(app, AppId(1), shards, None)
    }

    #[test]
    fn a_colocated_app_is_homed_on_one_shard_and_a_spread_one_is_not() {
        let chain: &[&[u16]] = &[&[], &[0], &[1], &[2], &[3], &[4]];
        let homes = |p: &Plan| p.nodes.iter().map(|n| n.home).collect::<Vec<_>>();
        let together = homes(&plan_on(chain, 4, true));
        assert!(together.iter().all(|&h| h == together[0]), "{together:?}");
        let spread = homes(&plan_on(chain, 4, false));
        assert!(spread.iter().any(|&h| h != spread[0]), "{spread:?}");
        assert_eq!(together[0], spread[0], "node 0 is where it always was");
    }

    /// The sequential oracle: walk every path.
    fn longest(p: &Plan, op: usize) -> u64 {
        let n = &p.nodes[op];
        let below = n
            .outs
            .iter()
            .map(|(c, _)| longest(p, c.0 as usize))
            .max()
            .unwrap_or(0);
        n.learned.cost_ns.load(Ordering::Relaxed) + below
    }

    #[test]
    fn path_costs_equal_the_longest_path_after_every_update() {
        // Two diamonds in a row and a side branch:
        // 0 -> 1,2 -> 3 -> 4,5 -> 6; 1 -> 7.
        let p = plan(&[&[], &[0], &[0], &[1, 2], &[3], &[3], &[4, 5], &[1]]);
        let samples = [
            (3, 50),
            (6, 7),
            (2, 100),
            (5, 30),
            (1, 1),
            (7, 400),
            (4, 5),
            (6, 9),
        ];
        for (op, ns) in samples {
            p.learn_cost(OperatorId(op), ns);
            for i in 0..p.nodes.len() {
                assert_eq!(
                    p.path_cost_ns(OperatorId(i as u16)),
                    longest(&p, i),
                    "node {i} after learning {ns} ns at {op}"
                );
            }
        }
    }
}
