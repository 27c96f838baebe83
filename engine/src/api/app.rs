//! Applications: a typed builder for DAGs of functions, and the sinks that
//! deliver their outputs.
//!
//! An app is built from [`Stream`] handles: a source yields a `Stream<T>`; an
//! operator takes streams of its input type and yields a stream of its output
//! type; a sink consumes a stream into a [`SinkReceiver`]. Edges can only
//! point to nodes that already exist, so every app is a DAG by construction,
//! and edge types are checked by the compiler. [`AppBuilder::build`] checks
//! the rest (names, limits) and returns a clear error.

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::sink::{sink, SinkPolicy, SinkReceiver};
use super::time::EventTime;
use crate::func::{Aggregate, Context, Merged, Side, Window, WindowOut, WindowResult};
use crate::func::{DurableState, ErasedFunction, EventCodec, Function, Persist, Typed};
use crate::limits::{MAX_INPUTS, MAX_NODES, MAX_SINK_CAPACITY};
use crate::model::{AnyBox, AppClass, EngineError, Result};
use crate::plan::{App, Cloner, NodeKind, NodeSpec};

/// A typed handle on the output of a node of an app under construction.
pub struct Stream<T> {
    node: u16,
    /// The builder it came from: a stream of another app is refused.
    builder: u64,
    _t: PhantomData<fn() -> T>,
}

/// Gives every `AppBuilder` its own id.
static BUILDERS: AtomicU64 = AtomicU64::new(0);

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Stream<T> {}

/// Builds an [`App`].
pub struct AppBuilder {
    id: u64,
    name: String,
    slo: Duration,
    class: AppClass,
    nodes: Vec<NodeSpec>,
    problems: Vec<String>,
    durable: bool,
    colocated: bool,
}

impl AppBuilder {
    /// An empty app named `name`: best effort, a 100 ms SLO until `slo`
    /// sets one, not durable.
    pub fn new(name: impl Into<String>) -> Self {
        AppBuilder {
            id: BUILDERS.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            slo: Duration::from_millis(100),
            class: AppClass::BestEffort,
            nodes: Vec::new(),
            problems: Vec::new(),
            durable: false,
            colocated: false,
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

    /// Home every node of the app on one shard (chosen by the app's name)
    /// instead of spreading them over the shards: a message goes from one
    /// operator to the next without crossing shards, so a pipeline pays no
    /// hop (and no wake of a parked peer) until load makes its operators
    /// lease other shards' cores.
    pub fn colocated(mut self) -> Self {
        self.colocated = true;
        self
    }

    /// Make the app best effort: its SLO is reported against, not
    /// scheduled for.
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

    /// A source of events of type `T`, fed through a `SourceHandle`
    /// (`AppHandle::source`).
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
            rebatch: crate::func::rebatch::<T>,
            codec,
            time: None,
        };
        Stream {
            node: self.add(name, kind, Vec::new()),
            builder: self.id,
            _t: PhantomData,
        }
    }

    /// Put source `source` on event time: `time` says how to read an
    /// event's time and how the source makes watermarks. The app's
    /// operators then get watermarks, their timers fire
    /// (`Context::set_timer`), and clients may send watermarks to the
    /// source (`SourceHandle::watermark`).
    pub fn event_time<T: Clone + Send + 'static>(&mut self, source: Stream<T>, time: EventTime<T>) {
        if source.builder != self.id {
            self.problems
                .push("event_time: a stream of another app builder".into());
            return;
        }
        let name = self.nodes[source.node as usize].name.clone();
        match &mut self.nodes[source.node as usize].kind {
            NodeKind::Source { time: t, .. } => *t = Some(time.erase()),
            _ => self
                .problems
                .push(format!("event_time: {name:?} is not a source")),
        }
    }

    /// A windowed aggregate of `input` per key: the operator `name` (a
    /// `Keyed` [`Window`]), and its results and its late events as two
    /// streams (split by the operators `{name}.results` and `{name}.late`).
    /// `input`'s source must be on event time (`event_time`).
    pub fn window<T, A>(
        &mut self,
        name: &str,
        w: Window<T, A>,
        input: Stream<T>,
    ) -> (Stream<WindowResult<A::Out>>, Stream<T>)
    where
        T: Clone + Send + Sync + 'static,
        A: Aggregate<In = T>,
    {
        if let Err(why) = w.check() {
            self.problems.push(format!("window {name:?}: {why}"));
        }
        let out = self.operator(name, w, &[input]);
        let results = self.operator(&format!("{name}.results"), TakeResults(PhantomData), &[out]);
        let late = self.operator(&format!("{name}.late"), TakeLate(PhantomData), &[out]);
        (results, late)
    }

    /// A join of `left` and `right`, both keyed by the join key: the
    /// operator `name` running `f` (a `WindowJoin`, `IntervalJoin`,
    /// `KeyedJoin`, or a user's function of `Side`s) on both, each side
    /// tagged by a stateless operator (`{name}.left`, `{name}.right`).
    pub fn join<L, R, F>(
        &mut self,
        name: &str,
        f: F,
        left: Stream<L>,
        right: Stream<R>,
    ) -> Stream<F::Out>
    where
        L: Clone + Send + 'static,
        R: Clone + Send + 'static,
        F: Function<In = Side<L, R>>,
    {
        let l = self.operator(
            &format!("{name}.left"),
            Tag::<L, R, true>(PhantomData),
            &[left],
        );
        let r = self.operator(
            &format!("{name}.right"),
            Tag::<L, R, false>(PhantomData),
            &[right],
        );
        self.operator(name, f, &[l, r])
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
        self.check_inputs(name, inputs.iter().map(|s| s.builder));
        let kind = NodeKind::Operator(f);
        Stream {
            node: self.add(name, kind, inputs.iter().map(|s| s.node).collect()),
            builder: self.id,
            _t: PhantomData,
        }
    }

    /// A sink: outputs of `input` arrive at the returned receiver, with
    /// barriers in place. Its queue holds `limits::SINK_CAPACITY` events
    /// and a full one holds the sink back (`SinkPolicy::Block`).
    pub fn sink<T: Send + 'static>(&mut self, name: &str, input: Stream<T>) -> SinkReceiver<T> {
        self.sink_with(name, input, SinkPolicy::default())
    }

    /// A sink with its own `policy` for a reader that falls behind.
    pub fn sink_with<T: Send + 'static>(
        &mut self,
        name: &str,
        input: Stream<T>,
        policy: SinkPolicy,
    ) -> SinkReceiver<T> {
        let cap = policy.capacity();
        if !(1..=MAX_SINK_CAPACITY).contains(&cap) {
            self.problems.push(format!(
                "sink {name:?} has a capacity of {cap} (1..={MAX_SINK_CAPACITY})"
            ));
        }
        let (node, rx) = sink::<T>(policy);
        let kind = NodeKind::Sink(Arc::new(node));
        self.check_inputs(name, [input.builder]);
        self.add(name, kind, vec![input.node]);
        rx
    }

    /// An operator or sink has 1..=`MAX_INPUTS` inputs, each a stream of
    /// this builder (so every edge points at an earlier node of this app).
    fn check_inputs(&mut self, name: &str, builders: impl IntoIterator<Item = u64>) {
        let builders: Vec<u64> = builders.into_iter().collect();
        if builders.iter().any(|&b| b != self.id) {
            self.problems.push(format!(
                "{name:?} takes a stream of another app (from another AppBuilder)"
            ));
        }
        let n = builders.len();
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

    /// Check the app (a source, names, limits, SLO, durable sources and
    /// operators of a durable app) and build it; every problem found is in
    /// the error.
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
            colocated: self.colocated,
            note: None,
        })
    }
}

/// A window's results, out of its output.
struct TakeResults<T, O>(PhantomData<fn(T, O)>);

impl<T: Clone + Send + 'static, O: Clone + Send + 'static> Function for TakeResults<T, O> {
    type In = WindowOut<T, O>;
    type Out = WindowResult<O>;
    type State = Merged<()>;
    fn on_message(
        &self,
        _: &mut Merged<()>,
        key: u64,
        v: Self::In,
        ctx: &mut Context<'_, Self::Out>,
    ) {
        if let WindowOut::Result(r) = v {
            ctx.emit(key, r);
        }
    }
}

/// A window's late events, out of its output.
struct TakeLate<T, O>(PhantomData<fn(T, O)>);

impl<T: Clone + Send + 'static, O: Clone + Send + 'static> Function for TakeLate<T, O> {
    type In = WindowOut<T, O>;
    type Out = T;
    type State = Merged<()>;
    fn on_message(&self, _: &mut Merged<()>, key: u64, v: Self::In, ctx: &mut Context<'_, T>) {
        if let WindowOut::Late(e) = v {
            ctx.emit(key, e);
        }
    }
}

/// One side of a join, tagged (`LEFT`: as the left one).
struct Tag<L, R, const LEFT: bool>(PhantomData<fn(L, R)>);

impl<L: Clone + Send + 'static, R: Clone + Send + 'static> Function for Tag<L, R, true> {
    type In = L;
    type Out = Side<L, R>;
    type State = Merged<()>;
    fn on_message(&self, _: &mut Merged<()>, key: u64, v: L, ctx: &mut Context<'_, Self::Out>) {
        ctx.emit(key, Side::Left(v));
    }
}

impl<L: Clone + Send + 'static, R: Clone + Send + 'static> Function for Tag<L, R, false> {
    type In = R;
    type Out = Side<L, R>;
    type State = Merged<()>;
    fn on_message(&self, _: &mut Merged<()>, key: u64, v: R, ctx: &mut Context<'_, Self::Out>) {
        ctx.emit(key, Side::Right(v));
    }
}
