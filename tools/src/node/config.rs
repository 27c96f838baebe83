//! `dirigo node`'s config file (TOML): the node's shards and data folder,
//! the server's addresses, token and limits, and the apps to deploy at
//! start. Every key is optional but `[[app]]`'s `kind` and `name`; an
//! unknown key, a bad value or a bad address is an error that names the
//! file, the line and the key (toml's own report), and nothing starts.
//! `tools/examples/node.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dirigo_engine::{NodeConfig, Placement, PolicyFactory};
use dirigo_net::ServerConfig;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    #[serde(default)]
    pub(crate) node: NodeSection,
    #[serde(default)]
    pub(crate) server: ServerSection,
    #[serde(default, rename = "app")]
    pub(crate) apps: Vec<AppSection>,
}

/// `[node]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeSection {
    shards: Option<usize>,
    placement: Option<PlacementName>,
    policy: Option<String>,
    data_dir: Option<PathBuf>,
    max_in_flight: Option<usize>,
    max_batch: Option<usize>,
    inbox_capacity: Option<usize>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PlacementName {
    Pinned,
    Unpinned,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    listen: Option<SocketAddr>,
    /// An address, or `false` for no HTTP front.
    http: Option<HttpAddr>,
    admin_token: Option<String>,
    max_frame: Option<usize>,
    max_batch: Option<usize>,
    max_connections: Option<usize>,
    max_subscribers: Option<usize>,
    subscriber_buffer: Option<usize>,
    window: Option<usize>,
    handshake_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    ingest_timeout_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HttpAddr {
    Addr(SocketAddr),
    Off(bool),
}

/// One `[[app]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppSection {
    pub(crate) kind: String,
    pub(crate) name: String,
    /// The SLO in ms; absent: best effort.
    pub(crate) slo_ms: Option<f64>,
    #[serde(default)]
    pub(crate) durable: bool,
    #[serde(default)]
    pub(crate) params: Option<toml::Value>,
    #[serde(default)]
    pub(crate) ingest_token: String,
    #[serde(default)]
    pub(crate) read_token: String,
}

/// Why the config was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {key}: {reason}")]
    Value {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

impl File {
    /// Read and check `path`.
    pub(crate) fn load(path: &Path) -> Result<File, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: File = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        file.check(path)?;
        Ok(file)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Value {
            path: path.to_owned(),
            key: key.to_owned(),
            reason,
        };
        if let Some(p) = &self.node.policy {
            if PolicyFactory::builtin(p).is_none() {
                let known = PolicyFactory::BUILTIN.join(", ");
                return Err(bad(
                    "node.policy",
                    format!("unknown policy {p:?} (one of {known})"),
                ));
            }
        }
        for (i, a) in self.apps.iter().enumerate() {
            if a.slo_ms.is_some_and(|ms| !(ms > 0.0 && ms < 3.6e9)) {
                return Err(bad(&format!("app[{i}].slo_ms"), "must be positive".into()));
            }
            if a.durable && self.node.data_dir.is_none() {
                return Err(bad(
                    &format!("app[{i}].durable"),
                    "a durable app needs node.data_dir".into(),
                ));
            }
        }
        let names: std::collections::HashSet<_> = self.apps.iter().map(|a| &a.name).collect();
        if names.len() != self.apps.len() {
            return Err(bad("app", "two apps have the same name".into()));
        }
        self.server(path)?
            .validate()
            .map_err(|e| bad("server", e.to_string()))
    }

    /// The node's config.
    pub(crate) fn node(&self) -> NodeConfig {
        let n = &self.node;
        let d = NodeConfig::default();
        NodeConfig {
            shards: n.shards.unwrap_or(d.shards),
            placement: match n.placement {
                Some(PlacementName::Unpinned) => Placement::Unpinned,
                _ => Placement::Pinned,
            },
            policy: n
                .policy
                .as_deref()
                .and_then(PolicyFactory::builtin)
                .unwrap_or(d.policy.clone()),
            data_dir: n.data_dir.clone(),
            max_in_flight: n.max_in_flight.unwrap_or(d.max_in_flight),
            max_batch: n.max_batch.unwrap_or(d.max_batch),
            inbox_capacity: n.inbox_capacity.unwrap_or(d.inbox_capacity),
            ..d
        }
    }

    /// The server's config.
    pub(crate) fn server(&self, path: &Path) -> Result<ServerConfig, ConfigError> {
        let s = &self.server;
        let d = ServerConfig::default();
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        let http = match &s.http {
            None => d.http,
            Some(HttpAddr::Addr(a)) => Some(*a),
            Some(HttpAddr::Off(false)) => None,
            Some(HttpAddr::Off(true)) => {
                return Err(ConfigError::Value {
                    path: path.to_owned(),
                    key: "server.http".into(),
                    reason: "an address (\"127.0.0.1:8080\") or false".into(),
                })
            }
        };
        Ok(ServerConfig {
            listen: s.listen.unwrap_or(d.listen),
            http,
            admin_token: s.admin_token.clone().filter(|t| !t.is_empty()),
            max_frame: s.max_frame.unwrap_or(d.max_frame),
            max_batch: s.max_batch.unwrap_or(d.max_batch),
            max_connections: s.max_connections.unwrap_or(d.max_connections),
            max_subscribers: s.max_subscribers.unwrap_or(d.max_subscribers),
            subscriber_buffer: s.subscriber_buffer.unwrap_or(d.subscriber_buffer),
            window: s.window.unwrap_or(d.window),
            handshake_timeout: ms(s.handshake_timeout_ms, d.handshake_timeout),
            idle_timeout: ms(s.idle_timeout_ms, d.idle_timeout),
            ingest_timeout: ms(s.ingest_timeout_ms, d.ingest_timeout),
            drain_timeout: ms(s.drain_timeout_ms, d.drain_timeout),
        })
    }
}

/// A TOML value as JSON (an app's `params`).
pub(crate) fn to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<File, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(&p, text).unwrap();
        File::load(&p).map_err(|e| e.to_string())
    }

    #[test]
    fn the_shipped_example_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node.toml");
        let f = File::load(&p).unwrap_or_else(|e| panic!("{e}"));
        assert!(!f.apps.is_empty());
    }

    #[test]
    fn bad_configs_name_the_file_line_and_key() {
        let e = parse("[node]\nshards = 2\nshard_count = 3\n").unwrap_err();
        assert!(
            e.contains("node.toml") && e.contains("line 3") && e.contains("shard_count"),
            "{e}"
        );
        let e = parse("[server]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("listen"), "{e}");
        let e = parse("[node]\npolicy = \"magic\"\n").unwrap_err();
        assert!(e.contains("node.policy") && e.contains("magic"), "{e}");
        let e = parse("[server]\nwindow = 0\n").unwrap_err();
        assert!(e.contains("window"), "{e}");
        let e = parse("[[app]]\nkind = \"wordcount\"\nname = \"a\"\ndurable = true\n").unwrap_err();
        assert!(e.contains("app[0].durable"), "{e}");
        let e = parse("[[app]]\nname = \"a\"\n").unwrap_err();
        assert!(e.contains("kind"), "{e}");
    }

    #[test]
    fn http_can_be_turned_off_and_defaults_are_safe() {
        let f = parse("[server]\nhttp = false\n").unwrap();
        let s = f.server(Path::new("x")).unwrap();
        assert!(s.http.is_none());
        assert!(
            s.listen.ip().is_loopback(),
            "binds loopback unless told otherwise"
        );
        let f = parse("").unwrap();
        assert!(f
            .server(Path::new("x"))
            .unwrap()
            .http
            .unwrap()
            .ip()
            .is_loopback());
    }
}
