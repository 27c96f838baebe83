//! A built application, as the builder hands it to a node: its name, SLO,
//! class, and its nodes (sources, operators, sinks) with their erased
//! functions and input edges, in declaration order.
//!
//! The builder (`api::app`) makes it; `Plan::compile` turns it into what the
//! shards run. It sits here, below both, so the compiled plan never imports
//! the client API.

use std::any::TypeId;
use std::sync::Arc;
use std::time::Duration;

use crate::func::{ErasedFunction, EventCodec};
use crate::model::{AnyBox, AppClass, Payload};
use crate::protocol::Time;

/// Copies a source's event for its second and later output edges.
pub(crate) type Cloner = Arc<dyn Fn(&AnyBox) -> AnyBox + Send + Sync>;

/// A source's events, boxed one by one (logged input), as batch messages
/// of its type, the first of root sequence number `u64`.
pub(crate) type Rebatch = fn(Vec<(u64, AnyBox)>, u64) -> Vec<crate::model::Batch>;

/// The latest event time among a source's events in a payload (one
/// event, or a batch of them), read with the user's extractor.
pub(crate) type Latest = Arc<dyn Fn(&Payload) -> Option<Time> + Send + Sync>;

/// How a source makes watermarks: from the latest event time it saw, less
/// the out-of-orderness it allows, at most once per period, and `Time::MAX`
/// (idle) after a quiet spell, so it does not hold the app back.
#[derive(Clone)]
pub(crate) struct SourceTime {
    pub latest: Latest,
    pub out_of_order: Time,
    pub period_ns: u64,
    /// 0: never idle.
    pub idle_ns: u64,
}

pub(crate) enum NodeKind {
    Source {
        type_id: TypeId,
        type_name: &'static str,
        clone: Cloner,
        /// Its boxed events as batches.
        rebatch: Rebatch,
        /// How its events go into the ingress log (durable sources).
        codec: Option<EventCodec>,
        /// Its event time and watermarks, if it has them.
        time: Option<SourceTime>,
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

/// A built application, ready to deploy.
pub struct App {
    pub(crate) name: String,
    pub(crate) slo: Duration,
    pub(crate) class: AppClass,
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) durable: bool,
    /// Every node homed on one shard (`AppBuilder::colocated`).
    pub(crate) colocated: bool,
    /// A durable app's deploy note (`App::with_deploy_note`).
    pub(crate) note: Option<String>,
}

impl App {
    /// The app's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the app was built `durable`.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// A note on how the app was made (a catalog's kind and parameters,
    /// say): a durable deploy writes it to `DEPLOY` in the app's folder,
    /// where tools read it back (`inspect::AppFolder::deploy_note`) to
    /// build the same app again and read its state, once the deploy has
    /// restored the folder. At most `limits::MAX_DEPLOY_NOTE` bytes (a
    /// longer one fails the deploy).
    pub fn with_deploy_note(mut self, note: impl Into<String>) -> App {
        self.note = Some(note.into());
        self
    }
}
