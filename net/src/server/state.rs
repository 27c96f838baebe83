//! What every connection of a server shares: the node, the catalog, the
//! config, the apps deployed over the wire with their ports and tokens, the
//! connection count, and the control thread.
//!
//! Control operations (deploy, undeploy, stats, checkpoint) block on the
//! node's replies from every shard, so they never run on a shard: a
//! connection hands them to the control thread and awaits the answer.
//! Ingest, barriers and subscriptions run on the connection's shard.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dirigo_engine::{AppHandle, EngineError, Node};

use super::config::ServerConfig;
use crate::catalog::{Catalog, DeploySpec};
use crate::error::CatalogError;
use crate::ports::{IngestPort, SubscribePort};

/// An app deployed over the wire.
pub(crate) struct Deployed {
    pub(crate) handle: AppHandle,
    pub(crate) durable: bool,
    /// The SLO it was deployed with; `None`: best effort.
    pub(crate) slo: Option<Duration>,
    pub(crate) sources: HashMap<String, Arc<dyn IngestPort>>,
    pub(crate) sinks: HashMap<String, Arc<dyn SubscribePort>>,
    ingest_token: Option<String>,
    read_token: Option<String>,
}

/// What a request needs the token to allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Right {
    /// Deploy, undeploy, checkpoint, the app list, node stats.
    Admin,
    /// Ingest and barriers of one app.
    Ingest,
    /// Subscriptions and stats of one app.
    Read,
}

/// `a == b` in time that depends on their lengths only.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..n {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// A deploy's request, as the control thread runs it.
pub(crate) struct DeployReq {
    pub(crate) kind: String,
    pub(crate) spec: DeploySpec,
    pub(crate) params_json: String,
    pub(crate) ingest_token: String,
    pub(crate) read_token: String,
}

/// Why a wire deploy failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeployError {
    #[error("the parameters are not JSON: {0}")]
    Json(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("a token is longer than {0} bytes")]
    Token(usize),
}

pub(crate) struct State {
    pub(crate) node: Arc<Node>,
    pub(crate) catalog: Catalog,
    pub(crate) cfg: ServerConfig,
    apps: Mutex<HashMap<String, Arc<Deployed>>>,
    pub(crate) connections: AtomicUsize,
    /// Events refused at ingest, per app (for `/metrics`).
    refused: Mutex<HashMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub(crate) fn new(node: Arc<Node>, catalog: Catalog, cfg: ServerConfig) -> State {
        State {
            node,
            catalog,
            cfg,
            apps: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            refused: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn app(&self, name: &str) -> Option<Arc<Deployed>> {
        lock(&self.apps).get(name).cloned()
    }

    /// The durable apps deployed over the wire.
    pub(crate) fn durable_apps(&self) -> Vec<Arc<Deployed>> {
        lock(&self.apps)
            .values()
            .filter(|d| d.durable)
            .cloned()
            .collect()
    }

    /// Each app's SLO (`None`: best effort), by name, for the stats.
    pub(crate) fn slos(&self) -> HashMap<String, Option<Duration>> {
        lock(&self.apps)
            .iter()
            .map(|(name, d)| (name.clone(), d.slo))
            .collect()
    }

    pub(crate) fn app_names(&self) -> Vec<String> {
        let mut v: Vec<_> = lock(&self.apps).keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether `token` may do what `right` names (on `app`).
    pub(crate) fn allows(&self, token: &str, right: Right, app: Option<&Deployed>) -> bool {
        let Some(admin) = &self.cfg.admin_token else {
            return true;
        };
        if ct_eq(token.as_bytes(), admin.as_bytes()) {
            return true;
        }
        let theirs = match (right, app) {
            (Right::Ingest, Some(a)) => a.ingest_token.as_deref(),
            (Right::Read, Some(a)) => a.read_token.as_deref(),
            _ => None,
        };
        theirs.is_some_and(|t| ct_eq(token.as_bytes(), t.as_bytes()))
    }

    /// Whether `token` opens a connection: the admin's, an app's, or any
    /// on an open node.
    pub(crate) fn knows(&self, token: &str) -> bool {
        let Some(admin) = &self.cfg.admin_token else {
            return true;
        };
        let t = token.as_bytes();
        ct_eq(t, admin.as_bytes())
            || lock(&self.apps).values().any(|a| {
                [&a.ingest_token, &a.read_token]
                    .into_iter()
                    .flatten()
                    .any(|x| ct_eq(t, x.as_bytes()))
            })
    }

    /// Deploy (on the control thread): build from the catalog, deploy on
    /// the node, bind the ports, register.
    pub(crate) fn deploy(&self, req: DeployReq) -> Result<(), DeployError> {
        let too_long = |t: &str| t.len() > crate::limits::MAX_TOKEN_BYTES;
        if too_long(&req.ingest_token) || too_long(&req.read_token) {
            return Err(DeployError::Token(crate::limits::MAX_TOKEN_BYTES));
        }
        let params: serde_json::Value = if req.params_json.trim().is_empty() {
            serde_json::json!({})
        } else {
            serde_json::from_str(&req.params_json).map_err(|e| DeployError::Json(e.to_string()))?
        };
        let built = self.catalog.build(&req.kind, &req.spec, params)?;
        let handle = self.node.deploy(built.app)?;
        let bound = built
            .ports
            .sources
            .iter()
            .map(|s| s.bind(&handle).map(|p| (s.name().to_owned(), p)))
            .collect::<Result<HashMap<_, _>, _>>();
        let sources = match bound {
            Ok(s) => s,
            Err(e) => {
                let _ = self.node.undeploy(&req.spec.name, Duration::ZERO);
                return Err(e.into());
            }
        };
        let token = |t: String| (!t.is_empty()).then_some(t);
        let durable = req.spec.durable;
        let d = Deployed {
            handle,
            durable,
            slo: req.spec.slo,
            sources,
            sinks: built.ports.sinks.into_iter().collect(),
            ingest_token: token(req.ingest_token),
            read_token: token(req.read_token),
        };
        tracing::info!(app = %req.spec.name, kind = %req.kind, durable, "deployed");
        lock(&self.apps).insert(req.spec.name, Arc::new(d));
        Ok(())
    }

    /// Undeploy (on the control thread): unregister, end its
    /// subscriptions, drain and remove it from the node.
    pub(crate) fn undeploy(&self, name: &str) -> Result<bool, EngineError> {
        let Some(d) = lock(&self.apps).remove(name) else {
            return Ok(false);
        };
        for s in d.sinks.values() {
            s.close("the app was undeployed");
        }
        tracing::info!(app = %name, "undeployed");
        self.node.undeploy(name, crate::limits::UNDEPLOY_DRAIN)
    }

    /// Count `n` events of `app` refused at ingest.
    pub(crate) fn count_refused(&self, app: &str, n: usize) {
        *lock(&self.refused).entry(app.to_owned()).or_default() += n as u64;
    }

    /// Events refused at ingest so far, per app.
    pub(crate) fn refused(&self) -> HashMap<String, u64> {
        lock(&self.refused).clone()
    }

    /// Connections open now.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// A connection opens: counted, or refused past the limit.
    pub(crate) fn open_connection(&self) -> bool {
        let n = self.connections.fetch_add(1, Ordering::AcqRel);
        if n >= self.cfg.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub(crate) fn close_connection(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret2"));
        assert!(!ct_eq(b"", b"x"));
        // Lengths that differ by a multiple of 256 still differ.
        assert!(!ct_eq(&[0; 256], b""));
    }
}
