//! Applications: a typed builder for DAGs of functions, and the compiled plan
//! a node deploys.
//!
//! An app is built from [`Stream`] handles: a source yields a `Stream<T>`; an
//! operator takes streams of its input type and yields a stream of its output
//! type; a sink consumes a stream into a [`SinkReceiver`]. Edges can only
//! point to nodes that already exist, so every app is a DAG by construction,
//! and edge types are checked by the compiler. [`AppBuilder::build`] checks
//! the rest (names, limits) and returns a clear error.

use std::any::TypeId;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::durable::{DurableState, EventCodec, Persist};
use crate::error::{EngineError, Result};
use crate::function::{AnyBox, Context, ErasedFunction, Function, Sequential, Typed};
use crate::journal::JournalMsg;
use crate::message::{key_hash, ActorId, AppId, Barrier, OperatorId};
use crate::policy::OpView;
use crate::protocol::{EdgeId, ShardId, Strategy};
use crate::quiesce::ShardCounters;
use crate::sync::{AtomicU64, Ordering};

/// Most nodes (sources, operators, sinks) one app may have.
pub const MAX_NODES: usize = 1024;
/// Most input edges one operator may have.
pub const MAX_INPUTS: usize = 64;

/// Whether an app's latency target is a promise or a wish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppClass {
    LatencyCritical,
    BestEffort,
}

/// A typed handle on the output of a node of an app under construction.
pub struct Stream<T> {
    node: u16,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Stream<T> {}

/// Copies a source's event for its second and later output edges.
pub(crate) type Cloner = Arc<dyn Fn(&AnyBox) -> AnyBox + Send + Sync>;

pub(crate) enum NodeKind {
    Source {
        type_id: TypeId,
        type_name: &'static str,
        clone: Cloner,
        /// How its events go into the ingress log (durable sources).
        codec: Option<EventCodec>,
    },
    Operator(Arc<dyn ErasedFunction>),
    Sink(Arc<dyn ErasedFunction>),
}

pub(crate) struct NodeSpec {
    pub name: String,
    pub kind: NodeKind,
    /// Upstream node of each input edge, in edge order.
    pub inputs: Vec<u16>,
}

/// Builds an [`App`].
pub struct AppBuilder {
    name: String,
    slo: Duration,
    class: AppClass,
    nodes: Vec<NodeSpec>,
    problems: Vec<String>,
    durable: bool,
}

/// What a sink receives.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkEvent<T> {
    Data {
        key: u64,
        value: T,
        /// End-to-end latency of the root message, ns.
        latency_ns: u64,
    },
    /// Every data message before this barrier has been delivered above.
    Barrier(Barrier),
}

/// The receiving end of a sink.
pub struct SinkReceiver<T> {
    rx: mpsc::Receiver<SinkEvent<T>>,
}

impl<T> SinkReceiver<T> {
    pub fn try_recv(&self) -> Option<SinkEvent<T>> {
        self.rx.try_recv().ok()
    }
    pub fn recv_timeout(&self, d: Duration) -> Option<SinkEvent<T>> {
        self.rx.recv_timeout(d).ok()
    }
    /// Everything received so far.
    pub fn drain(&self) -> Vec<SinkEvent<T>> {
        self.rx.try_iter().collect()
    }
}

struct SinkFn<T> {
    tx: mpsc::Sender<SinkEvent<T>>,
}

impl<T: Send + 'static> Function for SinkFn<T> {
    type In = T;
    type Out = ();
    type State = Sequential<()>;
    fn on_message(&self, _: &mut Sequential<()>, key: u64, value: T, ctx: &mut Context<'_, ()>) {
        let latency_ns = ctx.now_ns().saturating_sub(ctx.header().ingress_ns);
        // A dropped receiver means nobody listens any more: the outputs are
        // discarded, by the user's choice.
        let _ = self.tx.send(SinkEvent::Data {
            key,
            value,
            latency_ns,
        });
    }
    fn on_critical(&self, _: &mut Sequential<()>, b: &Barrier, _: EdgeId, _: &mut Context<'_, ()>) {
        let _ = self.tx.send(SinkEvent::Barrier(*b));
    }
}

impl AppBuilder {
    pub fn new(name: impl Into<String>) -> Self {
        AppBuilder {
            name: name.into(),
            slo: Duration::from_millis(100),
            class: AppClass::BestEffort,
            nodes: Vec::new(),
            problems: Vec::new(),
            durable: false,
        }
    }

    /// Make the app durable: on a node with a data folder, every event is
    /// in the app's ingress log before its send is acknowledged, checkpoints
    /// save every operator's state, and a redeploy after a crash restores
    /// the newest checkpoint and replays the log after it. Every source must
    /// then be a [`Self::durable_source`] and every operator a
    /// [`Self::durable_operator`] (checked by `build`).
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// End-to-end latency target of every message; makes the app latency
    /// critical.
    pub fn slo(mut self, slo: Duration) -> Self {
        self.slo = slo;
        self.class = AppClass::LatencyCritical;
        self
    }

    pub fn best_effort(mut self) -> Self {
        self.class = AppClass::BestEffort;
        self
    }

    fn add(&mut self, name: &str, kind: NodeKind, inputs: Vec<u16>) -> u16 {
        if self.nodes.len() >= MAX_NODES {
            self.problems.push(format!("more than {MAX_NODES} nodes"));
            return 0;
        }
        if name.is_empty() {
            self.problems.push("a node has an empty name".into());
        }
        if self.nodes.iter().any(|n| n.name == name) {
            self.problems.push(format!("two nodes are named {name:?}"));
        }
        self.nodes.push(NodeSpec {
            name: name.to_owned(),
            kind,
            inputs,
        });
        (self.nodes.len() - 1) as u16
    }

    /// A source of events of type `T`, fed through [`crate::Node::ingest`].
    pub fn source<T: Clone + Send + 'static>(&mut self, name: &str) -> Stream<T> {
        self.add_source(name, None)
    }

    /// A source whose events can go into the ingress log of a durable app.
    pub fn durable_source<T: Persist + Clone + Send + 'static>(&mut self, name: &str) -> Stream<T> {
        self.add_source(name, Some(EventCodec::of::<T>()))
    }

    fn add_source<T: Clone + Send + 'static>(
        &mut self,
        name: &str,
        codec: Option<EventCodec>,
    ) -> Stream<T> {
        let clone: Cloner = Arc::new(|v: &AnyBox| {
            let v = v
                .downcast_ref::<T>()
                .expect("a source's events have its type");
            Box::new(v.clone()) as AnyBox
        });
        let kind = NodeKind::Source {
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
            clone,
            codec,
        };
        Stream {
            node: self.add(name, kind, Vec::new()),
            _t: PhantomData,
        }
    }

    /// An operator running `f` on the union of `inputs` (edge `i` is
    /// `inputs[i]`).
    pub fn operator<F: Function>(
        &mut self,
        name: &str,
        f: F,
        inputs: &[Stream<F::In>],
    ) -> Stream<F::Out> {
        self.add_operator(name, Arc::new(Typed::new(f)), inputs)
    }

    /// An operator whose state a durable app checkpoints.
    pub fn durable_operator<F: Function>(
        &mut self,
        name: &str,
        f: F,
        inputs: &[Stream<F::In>],
    ) -> Stream<F::Out>
    where
        F::State: DurableState,
    {
        self.add_operator(name, Arc::new(Typed::durable(f)), inputs)
    }

    fn add_operator<I, O>(
        &mut self,
        name: &str,
        f: Arc<dyn ErasedFunction>,
        inputs: &[Stream<I>],
    ) -> Stream<O> {
        self.check_inputs(name, inputs.len());
        let kind = NodeKind::Operator(f);
        Stream {
            node: self.add(name, kind, inputs.iter().map(|s| s.node).collect()),
            _t: PhantomData,
        }
    }

    /// A sink: outputs of `input` arrive at the returned receiver, with
    /// barriers in place.
    pub fn sink<T: Send + 'static>(&mut self, name: &str, input: Stream<T>) -> SinkReceiver<T> {
        let (tx, rx) = mpsc::channel();
        let kind = NodeKind::Sink(Arc::new(Typed::new(SinkFn { tx })));
        self.add(name, kind, vec![input.node]);
        SinkReceiver { rx }
    }

    fn check_inputs(&mut self, name: &str, n: usize) {
        if n == 0 {
            self.problems
                .push(format!("operator {name:?} has no input"));
        }
        if n > MAX_INPUTS {
            self.problems.push(format!(
                "operator {name:?} has {n} inputs (max {MAX_INPUTS})"
            ));
        }
    }

    pub fn build(self) -> Result<App> {
        let mut problems = self.problems;
        if self.name.is_empty() {
            problems.push("the app has an empty name".into());
        }
        if !self
            .nodes
            .iter()
            .any(|n| matches!(n.kind, NodeKind::Source { .. }))
        {
            problems.push("the app has no source".into());
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let fed = self.nodes.iter().any(|m| m.inputs.contains(&(i as u16)));
            if !fed
                && !matches!(n.kind, NodeKind::Sink(_))
                && matches!(n.kind, NodeKind::Source { .. })
            {
                problems.push(format!("source {:?} feeds nothing", n.name));
            }
        }
        if self.slo.is_zero() {
            problems.push("the SLO is zero".into());
        }
        if self.durable {
            for n in &self.nodes {
                match &n.kind {
                    NodeKind::Source { codec: None, .. } => problems.push(format!(
                        "durable app: source {:?} is not a durable_source",
                        n.name
                    )),
                    NodeKind::Operator(f) if f.state_codec().is_none() => problems.push(format!(
                        "durable app: operator {:?} is not a durable_operator",
                        n.name
                    )),
                    _ => {}
                }
            }
        }
        if !problems.is_empty() {
            return Err(EngineError::InvalidApp {
                app: self.name,
                reason: problems.join("; "),
            });
        }
        Ok(App {
            name: self.name,
            slo: self.slo,
            class: self.class,
            nodes: self.nodes,
            durable: self.durable,
        })
    }
}

/// A built application, ready to deploy.
pub struct App {
    pub(crate) name: String,
    pub(crate) slo: Duration,
    pub(crate) class: AppClass,
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) durable: bool,
}

impl App {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the app was built `durable`.
    pub fn is_durable(&self) -> bool {
        self.durable
    }
}

// ---------------------------------------------------------------------
// The deployed plan
// ---------------------------------------------------------------------

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
    /// Durable sources: how events go into and come out of the log.
    pub event_codec: Option<EventCodec>,
    /// Learned mean cost of one message here, in ns (a relaxed gauge that
    /// any shard running the operator updates; an estimate, racy by design).
    pub cost_ns: AtomicU64,
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
    /// Durable apps: where checkpoint barriers send operator state (the
    /// app's journal thread, see `journal`).
    pub journal: Option<mpsc::Sender<JournalMsg>>,
    /// Durable apps: the app's data folder (`<data_dir>/<app>`).
    pub dir: Option<PathBuf>,
}

/// The home shard of node `node` (index in declaration order: sources,
/// operators and sinks alike) of the app named `app` on a node of `shards`
/// shards. Homes spread the actors of all apps over the shards and are
/// reproducible, so a deployment (or a benchmark that wants contention on a
/// given shard) can know where each lessor runs before it deploys.
pub fn home_shard(app: &str, node: usize, shards: usize) -> ShardId {
    home_of(key_hash(app.as_bytes()), node, shards)
}

fn home_of(app_hash: u64, node: usize, shards: usize) -> ShardId {
    debug_assert!(shards > 0, "a node has at least one shard");
    let h = (app_hash ^ (node as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0xff51_afd7_ed55_8ccd);
    ((h >> 32) % shards.max(1) as u64) as ShardId
}

impl Plan {
    pub fn compile(
        app: App,
        id: AppId,
        shards: usize,
        durable: Option<(mpsc::Sender<JournalMsg>, PathBuf)>,
    ) -> Plan {
        let (journal, dir) = durable.unzip();
        let n = app.nodes.len();
        let mut outs: Vec<Vec<(OperatorId, EdgeId)>> = vec![Vec::new(); n];
        for (to, node) in app.nodes.iter().enumerate() {
            for (edge, &from) in node.inputs.iter().enumerate() {
                outs[from as usize].push((OperatorId(to as u16), edge as EdgeId));
            }
        }
        let app_hash = key_hash(app.name.as_bytes());
        let nodes = app
            .nodes
            .into_iter()
            .zip(outs)
            .enumerate()
            .map(|(i, (spec, outs))| {
                let home = home_of(app_hash, i, shards);
                let inputs = spec.inputs.len().max(1) as u16;
                let (kind, strategy, source_type, source_clone, event_codec) = match spec.kind {
                    NodeKind::Source {
                        type_id,
                        type_name,
                        clone,
                        codec,
                    } => (
                        PlanKind::Source,
                        Strategy::Sequential,
                        Some((type_id, type_name)),
                        Some(clone),
                        codec,
                    ),
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
                    event_codec,
                    cost_ns: AtomicU64::new(0),
                }
            })
            .collect();
        Plan {
            id,
            name: app.name,
            slo_ns: app.slo.as_nanos().min(u64::MAX as u128) as u64,
            class: app.class,
            nodes,
            counters: (0..shards).map(|_| ShardCounters::default()).collect(),
            journal,
            dir,
        }
    }

    pub fn node_by_name(&self, name: &str) -> Option<(OperatorId, &PlanNode)> {
        self.nodes
            .iter()
            .enumerate()
            .find(|(_, n)| n.name == name)
            .map(|(i, n)| (OperatorId(i as u16), n))
    }

    pub fn node(&self, op: OperatorId) -> Option<&PlanNode> {
        self.nodes.get(op.0 as usize)
    }

    /// Learned mean cost of one message at `op` (0 until measured).
    pub fn cost_ns(&self, op: OperatorId) -> u64 {
        self.node(op)
            .map_or(0, |n| n.cost_ns.load(Ordering::Relaxed))
    }

    /// Fold one measured run time into `op`'s mean (weight 1/8).
    pub fn learn_cost(&self, op: OperatorId, sample_ns: u64) {
        if let Some(n) = self.node(op) {
            let old = n.cost_ns.load(Ordering::Relaxed);
            let new = if old == 0 {
                sample_ns
            } else {
                old - old / 8 + sample_ns / 8
            };
            n.cost_ns.store(new.max(1), Ordering::Relaxed);
        }
    }

    /// Learned cost of the longest path from `op` to a sink, `op` included.
    pub fn path_cost_ns(&self, op: OperatorId) -> u64 {
        let Some(n) = self.node(op) else { return 0 };
        let below = n
            .outs
            .iter()
            .map(|(child, _)| self.path_cost_ns(*child))
            .max()
            .unwrap_or(0);
        n.cost_ns.load(Ordering::Relaxed).saturating_add(below)
    }

    /// What a policy sees of `op`.
    pub fn op_view(&self, op: OperatorId) -> OpView<'_> {
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
