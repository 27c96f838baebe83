//! Data-plane scheduling: the hooks every message's path calls, and the
//! `Policy` trait that answers them.
//!
//! A node runs one policy instance per shard (made by a [`PolicyFactory`]),
//! owned by the shard thread and called only from it: no locks, no
//! controller. Along a message's path the shard calls, in order:
//!
//! 1. [`Policy::on_ingress`] when a client event enters an app at its source:
//!    stamp the header's deadline and priority from the app's SLO and class;
//! 2. [`Policy::route`] when a `Mergeable` actor with lessees picks the
//!    instance (home or a lessee's shard) a message runs on;
//! 3. [`Policy::rank`] when an instance becomes ready with the message at the
//!    head of its queue: the shard's run queue (one for every app on the
//!    shard) runs the lowest rank first;
//! 4. [`Policy::on_emit`] for each output of a run: carry deadline and
//!    priority from the parent to the child (Cameo-style propagation);
//! 5. [`Policy::on_complete`] after a run, with its measured cost;
//!
//! and, for scaling, [`Policy::on_backlog`] when a message is queued at a
//! lessor (lease a lessee on an idle shard, or not) and
//! [`Policy::release_after`] when a lessee runs out of work (how long it may
//! stay idle before it asks to go home).
//!
//! What a policy sees is shard-local or comes from relaxed gauges: the
//! operator's learned cost ([`OpView`]), the queue of the actor
//! ([`QueueView`]), other shards' backlogs ([`ShardLoad`]). Per-key order,
//! exactly-once and barriers are the protocol's business, not the policy's:
//! ranks only order instances, never messages within an instance, and
//! routing only chooses among the instances the protocol allows.
//!
//! Built-in policies are in [`builtin`]; `engine/examples/user_policy.rs`
//! writes one from outside the crate.

pub mod builtin;

use std::sync::Arc;
use std::time::Duration;

use crate::model::AppClass;
use crate::model::{ActorId, Header};
use crate::protocol::{ShardId, Strategy};

pub use builtin::{Dirigo, Edf, Fifo, Llf, Priority};

/// A position in a shard's run queue: lower runs first; ties run in the
/// order they were queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank(pub u64, pub u64);

impl Rank {
    /// Protocol work (a lessee answering a barrier, a lessor finishing one):
    /// ahead of every message, since barriers hold messages back.
    pub const URGENT: Rank = Rank(0, 0);
}

/// What a policy sees of the operator a message is for. Costs are learned
/// by the engine (an exponentially weighted mean of measured run times,
/// shared by every shard through relaxed gauges), 0 until first measured.
#[derive(Clone, Copy, Debug)]
pub struct OpView<'a> {
    /// The actor (app and operator) the message is for.
    pub actor: ActorId,
    /// The app's name.
    pub app: &'a str,
    /// The operator's name.
    pub op: &'a str,
    /// Latency critical or best effort.
    pub class: AppClass,
    /// The app's end-to-end latency target.
    pub slo_ns: u64,
    /// How the operator's state splits (which leases it can take).
    pub strategy: Strategy,
    /// Mean cost of one message at this operator.
    pub cost_ns: u64,
    /// Cost of the longest path from this operator to a sink, this
    /// operator's own cost included.
    pub path_cost_ns: u64,
}

impl OpView<'_> {
    /// The latest time a message of this operator can start and still make
    /// `deadline_ns`, given the path still ahead of it (Cameo's latest start
    /// time).
    pub fn latest_start(&self, deadline_ns: u64) -> u64 {
        deadline_ns.saturating_sub(self.path_cost_ns)
    }
}

/// What a policy sees of an actor's queue on the lessor's shard when a
/// message was just queued there.
#[derive(Clone, Copy, Debug)]
pub struct QueueView<'a> {
    /// Messages queued at the lessor (forwarded ones not included).
    pub backlog: usize,
    /// Lessees granted (pending ones excluded).
    pub lessees: usize,
    /// The oldest queued message, if any.
    pub head: Option<&'a Header>,
}

/// One candidate shard and its backlog (its own, exact, for this shard;
/// a relaxed gauge, refreshed every housekeeping tick, for the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardLoad {
    /// The shard.
    pub shard: ShardId,
    /// Messages queued on it.
    pub backlog: usize,
}

/// The engine's limits on scaling, from `NodeConfig::autoscale`; a policy
/// decides when, within them.
#[derive(Clone, Copy, Debug)]
pub struct ScaleLimits {
    /// A lessor with more messages than this queued is long (the
    /// backlog rule of [`Policy::on_backlog`]'s default).
    pub up_backlog: usize,
    /// Most lessees an actor may have at once.
    pub max_lessees: usize,
    /// Default idle time before a lessee asks to go home.
    pub lessee_idle: Duration,
}

/// A scaling decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// No change.
    Hold,
    /// Ask for one more lessee, on the least loaded shard that accepts.
    Lease,
}

/// A scheduling policy, one instance per shard. Every hook but `rank` and
/// `name` has a default: FIFO-like stamping, the protocol's own routing, the
/// backlog scale rule.
pub trait Policy: Send + 'static {
    /// A short name for tables and logs.
    fn name(&self) -> &str;

    /// A client event enters its app: stamp deadline and priority. The
    /// header's `ingress_ns` is set. Default: deadline = ingress + SLO;
    /// priority 1 for latency-critical apps, 0 for best-effort ones.
    fn on_ingress(&mut self, op: &OpView<'_>, h: &mut Header) {
        h.deadline_ns = h.ingress_ns.saturating_add(op.slo_ns);
        h.priority = match op.class {
            AppClass::LatencyCritical => 1,
            AppClass::BestEffort => 0,
        };
    }

    /// A `Mergeable` actor with lessees picks where `h`'s message runs:
    /// an index into `candidates` (the home shard first), or `None` for the
    /// protocol's round robin.
    fn route(&mut self, h: &Header, op: &OpView<'_>, candidates: &[ShardLoad]) -> Option<usize> {
        let _ = (h, op, candidates);
        None
    }

    /// The rank of an instance whose next message is `h`, queued on this
    /// shard at `h.enqueued_ns`.
    fn rank(&mut self, h: &Header, op: &OpView<'_>, now_ns: u64) -> Rank;

    /// A run of `parent` emitted `child` (header copied from the parent, with
    /// the child's actor and edge): adjust what it inherits. Default: keep
    /// the parent's deadline and priority.
    fn on_emit(&mut self, parent: &Header, child: &mut Header, child_op: &OpView<'_>) {
        let _ = (parent, child, child_op);
    }

    /// `h`'s message ran for `cost_ns`, ending at `now_ns`.
    fn on_complete(&mut self, h: &Header, op: &OpView<'_>, cost_ns: u64, now_ns: u64) {
        let _ = (h, op, cost_ns, now_ns);
    }

    /// A message was queued at a lessor that could take one more lessee and
    /// has no lease request in flight. Default: lease when the backlog is
    /// longer than `limits.up_backlog`.
    fn on_backlog(
        &mut self,
        q: &QueueView<'_>,
        op: &OpView<'_>,
        limits: &ScaleLimits,
        now_ns: u64,
    ) -> Scale {
        let _ = (op, now_ns);
        if q.backlog > limits.up_backlog {
            Scale::Lease
        } else {
            Scale::Hold
        }
    }

    /// A lessee of `op` ran out of work: how long it may stay idle before it
    /// asks to go home. Default: `limits.lessee_idle`.
    fn release_after(&mut self, op: &OpView<'_>, limits: &ScaleLimits) -> Duration {
        let _ = op;
        limits.lessee_idle
    }
}

/// Makes the policy of each shard (a node config holds one).
#[derive(Clone)]
pub struct PolicyFactory {
    name: String,
    make: Arc<dyn Fn(ShardId) -> Box<dyn Policy> + Send + Sync>,
}

impl PolicyFactory {
    /// A factory from a function of the shard id.
    pub fn new(
        name: impl Into<String>,
        make: impl Fn(ShardId) -> Box<dyn Policy> + Send + Sync + 'static,
    ) -> PolicyFactory {
        PolicyFactory {
            name: name.into(),
            make: Arc::new(make),
        }
    }

    /// A factory that gives every shard `make()`.
    pub fn per_shard<P: Policy>(make: impl Fn() -> P + Send + Sync + 'static) -> PolicyFactory {
        let name = make().name().to_owned();
        PolicyFactory::new(name, move |_| Box::new(make()) as Box<dyn Policy>)
    }

    /// The built-in policies by name: `fifo` (static placement, the
    /// paper's baseline), `fifo-scaling`, `priority`, `edf`, `llf`, `dirigo`.
    pub fn builtin(name: &str) -> Option<PolicyFactory> {
        Some(match name {
            "fifo" => PolicyFactory::per_shard(Fifo::fixed),
            "fifo-scaling" => PolicyFactory::per_shard(Fifo::scaling),
            "priority" => PolicyFactory::per_shard(|| Priority),
            "edf" => PolicyFactory::per_shard(|| Edf),
            "llf" => PolicyFactory::per_shard(|| Llf),
            "dirigo" => PolicyFactory::per_shard(Dirigo::default),
            _ => return None,
        })
    }

    /// Names [`PolicyFactory::builtin`] knows.
    pub const BUILTIN: [&'static str; 6] =
        ["fifo", "fifo-scaling", "priority", "edf", "llf", "dirigo"];

    /// The policy of shard `shard`.
    pub fn make(&self, shard: ShardId) -> Box<dyn Policy> {
        (self.make)(shard)
    }

    /// The policy's name (for reports).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for PolicyFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PolicyFactory({})", self.name)
    }
}
