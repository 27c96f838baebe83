//! The catalog of app kinds a node deploys over the wire.
//!
//! An [`AppKind`] is a name, a JSON schema of its parameters and a factory
//! that builds the app from checked parameters and a [`DeploySpec`] (name,
//! SLO or best effort, durability), together with its [`Ports`]: each
//! source with its event type and key, each sink with its output type, so
//! the server can decode what clients send and encode what they read.
//!
//! `builtin` holds the kinds every node has (the demo's and the benches'
//! apps, and a generic keyed aggregate); a user's own binary registers its
//! own functions the same way (see `examples/embed.rs`).

mod builtin;
pub(crate) mod schema;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dirigo_engine::{App, AppBuilder, SinkReceiver};
use serde_json::Value;

use crate::codec::WireValue;
use crate::error::{CatalogError, CodecError};
use crate::ports::{BindSource, Hub, SinkPort, SourceSpec, SubscribePort};

/// What a deploy asks for, besides the kind and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploySpec {
    /// The app's name.
    pub name: String,
    /// Its latency target; `None`: best effort.
    pub slo: Option<Duration>,
    /// Whether its input is logged and its state checkpointed.
    pub durable: bool,
}

impl DeploySpec {
    /// An `AppBuilder` with the spec's name and class (not yet durable: a
    /// factory that supports durability declares its sources durable).
    pub fn builder(&self) -> AppBuilder {
        let b = AppBuilder::new(self.name.clone());
        match self.slo {
            Some(slo) => b.slo(slo),
            None => b.best_effort(),
        }
    }
}

/// An app built by a factory, with its ports.
pub struct Built {
    pub(crate) app: App,
    pub(crate) ports: Ports,
}

impl Built {
    /// The app and the ports of its sources and sinks.
    pub fn new(app: App, ports: Ports) -> Built {
        Built { app, ports }
    }

    /// The app alone (a tool that reads its folder needs no ports).
    pub fn into_app(self) -> App {
        self.app
    }
}

/// The sources and sinks of a built app that clients reach, with their
/// types.
#[derive(Default)]
pub struct Ports {
    pub(crate) sources: Vec<Box<dyn BindSource>>,
    pub(crate) sinks: Vec<(String, Arc<dyn SubscribePort>)>,
}

impl Ports {
    /// No ports yet.
    pub fn new() -> Ports {
        Ports::default()
    }

    /// Source `name` takes `T`s, each keyed by `key_of`.
    pub fn source<T: WireValue>(
        self,
        name: &str,
        key_of: impl Fn(&T) -> u64 + Send + Sync + 'static,
    ) -> Ports {
        self.source_with(name, key_of, T::from_json)
    }

    /// The same, with the kind's own reading of JSON events (fields chosen
    /// by parameters, say); the binary form stays `T`'s.
    pub fn source_with<T: WireValue>(
        mut self,
        name: &str,
        key_of: impl Fn(&T) -> u64 + Send + Sync + 'static,
        from_json: impl Fn(Value) -> Result<T, CodecError> + Send + Sync + 'static,
    ) -> Ports {
        self.sources.push(Box::new(SourceSpec::<T> {
            name: name.to_owned(),
            key_of: Arc::new(key_of),
            from_json: Arc::new(from_json),
        }));
        self
    }

    /// Sink `name`'s outputs, read through `rx`.
    pub fn sink<T: WireValue>(mut self, name: &str, rx: SinkReceiver<T>) -> Ports {
        let port: Arc<dyn SubscribePort> = Arc::new(SinkPort(Hub::new(rx)));
        self.sinks.push((name.to_owned(), port));
        self
    }
}

/// Builds an app of a kind from its checked parameters.
pub type Factory = dyn Fn(&DeploySpec, &Value) -> Result<Built, String> + Send + Sync;

/// An operator's checkpointed state (its function's `State`, erased) as
/// JSON; `None` when the kind has no such operator or state.
pub type StateDump = dyn Fn(&str, Box<dyn Any>) -> Option<Value> + Send + Sync;

/// One kind of app.
pub struct AppKind {
    name: String,
    description: String,
    schema: Value,
    factory: Box<Factory>,
    dump: Option<Box<StateDump>>,
}

impl AppKind {
    /// A kind: its name, what it does, the schema of its parameters, and
    /// its factory (which sees the parameters checked, defaults filled in).
    pub fn new(
        name: &str,
        description: &str,
        schema: Value,
        factory: impl Fn(&DeploySpec, &Value) -> Result<Built, String> + Send + Sync + 'static,
    ) -> AppKind {
        AppKind {
            name: name.to_owned(),
            description: description.to_owned(),
            schema,
            factory: Box::new(factory),
            dump: None,
        }
    }

    /// How its durable operators' checkpointed states read as JSON (for
    /// `dirigo inspect --dump`).
    pub fn with_state_dump(
        mut self,
        dump: impl Fn(&str, Box<dyn Any>) -> Option<Value> + Send + Sync + 'static,
    ) -> AppKind {
        self.dump = Some(Box::new(dump));
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it does.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The JSON schema of its parameters.
    pub fn schema(&self) -> &Value {
        &self.schema
    }
}

/// The kinds a node deploys.
#[derive(Default)]
pub struct Catalog {
    kinds: BTreeMap<String, AppKind>,
}

impl Catalog {
    /// No kinds.
    pub fn empty() -> Catalog {
        Catalog::default()
    }

    /// The kinds every node has: `wordcount`, `sensors`, `clicks` and
    /// `aggregate` (see `builtin`).
    pub fn builtin() -> Catalog {
        let mut c = Catalog::empty();
        for k in builtin::kinds() {
            c.register(k)
                .expect("the built-in kinds are valid and distinct");
        }
        c
    }

    /// Add a kind; refused if its name is taken or its schema uses what
    /// the validator does not know.
    pub fn register(&mut self, kind: AppKind) -> Result<(), CatalogError> {
        schema::check_schema(&kind.schema).map_err(|reason| CatalogError::BadSchema {
            kind: kind.name.clone(),
            reason,
        })?;
        if self.kinds.contains_key(&kind.name) {
            return Err(CatalogError::Duplicate(kind.name));
        }
        self.kinds.insert(kind.name.clone(), kind);
        Ok(())
    }

    /// The kinds, by name.
    pub fn kinds(&self) -> impl Iterator<Item = &AppKind> {
        self.kinds.values()
    }

    /// Build an app of `kind` from `params` (JSON, checked against the
    /// kind's schema).
    pub fn build(
        &self,
        kind: &str,
        spec: &DeploySpec,
        params: Value,
    ) -> Result<Built, CatalogError> {
        let k = self
            .kinds
            .get(kind)
            .ok_or_else(|| CatalogError::UnknownKind(kind.to_owned()))?;
        let params = schema::validate(&k.schema, params)?;
        let note = serde_json::json!({"kind": kind, "params": params}).to_string();
        if spec.durable && note.len() > dirigo_engine::limits::MAX_DEPLOY_NOTE {
            return Err(CatalogError::Factory {
                kind: kind.to_owned(),
                reason: format!(
                    "a durable app's parameters are at most {} bytes of JSON; these are {}",
                    dirigo_engine::limits::MAX_DEPLOY_NOTE,
                    note.len()
                ),
            });
        }
        let mut built = (k.factory)(spec, &params).map_err(|reason| CatalogError::Factory {
            kind: kind.to_owned(),
            reason,
        })?;
        // A durable app's folder says how to build it again (`inspect`).
        built.app = built.app.with_deploy_note(note);
        Ok(built)
    }

    /// Operator `op`'s checkpointed state of an app of `kind`, as JSON.
    pub fn dump_state(
        &self,
        kind: &str,
        op: &str,
        state: Box<dyn Any>,
    ) -> Result<Value, CatalogError> {
        let k = self
            .kinds
            .get(kind)
            .ok_or_else(|| CatalogError::UnknownKind(kind.to_owned()))?;
        let dump = k.dump.as_ref().ok_or_else(|| CatalogError::Factory {
            kind: kind.to_owned(),
            reason: "its states have no JSON form".into(),
        })?;
        dump(op, state).ok_or_else(|| CatalogError::Factory {
            kind: kind.to_owned(),
            reason: format!("no operator {op:?} with a state to show"),
        })
    }
}
