//! `dirigo node --config node.toml`: run a node on the network until
//! SIGINT or SIGTERM, then shut it down cleanly (stop accepting, checkpoint
//! the durable apps, stop the journals and the shards, exit 0). A second
//! signal exits at once: durable apps then recover from their log and last
//! checkpoint on the next start.
//!
//! It prints one line when it serves, `dirigo node: binary <addr> http
//! <addr>`, so a script (or a test) that asked for port 0 learns the ports;
//! everything else goes to the `tracing` log on stderr (`RUST_LOG`).

mod config;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dirigo_engine::Node;
use dirigo_net::{Catalog, DeploySpec, Server};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// `dirigo node`'s flags.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The config file (TOML; `tools/examples/node.toml` documents every key).
    #[arg(long, short)]
    config: PathBuf,
}

/// Why the node did not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NodeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("the node did not start: {0}")]
    Engine(#[from] dirigo_engine::EngineError),
    #[error("the server did not start: {0}")]
    Net(#[from] dirigo_net::NetError),
    #[error("app {app:?} of the config did not deploy: {reason}")]
    Deploy { app: String, reason: String },
    #[error("cannot wait for signals: {0}")]
    Signals(std::io::Error),
}

impl NodeError {
    /// The exit code: 2 for a bad config, 1 otherwise.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            NodeError::Config(_) => 2,
            _ => 1,
        }
    }
}

pub(crate) fn run(args: Args) -> Result<(), NodeError> {
    let file = config::File::load(&args.config)?;
    let server_cfg = file.server(&args.config)?;
    // Signals are caught before anything starts, so none is lost.
    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(NodeError::Signals)?;
    let node = Arc::new(Node::start(file.node())?);
    let server = Server::builder(node)
        .catalog(Catalog::builtin())
        .config(server_cfg)
        .serve()?;
    for a in &file.apps {
        let spec = DeploySpec {
            name: a.name.clone(),
            slo: a.slo_ms.map(|ms| Duration::from_micros((ms * 1e3) as u64)),
            durable: a.durable,
        };
        let params = a
            .params
            .as_ref()
            .map(config::to_json)
            .unwrap_or(serde_json::json!({}));
        server
            .deploy(&a.kind, spec, params, &a.ingest_token, &a.read_token)
            .map_err(|reason| NodeError::Deploy {
                app: a.name.clone(),
                reason,
            })?;
    }
    let http = server
        .http_addr()
        .map_or("off".to_string(), |a| a.to_string());
    println!("dirigo node: binary {} http {http}", server.local_addr());
    let first = signals.forever().next();
    tracing::info!(signal = ?first, "shutting down (a second signal exits at once)");
    std::thread::spawn(move || {
        if let Some(s) = signals.forever().next() {
            eprintln!("dirigo node: signal {s} again: exiting now");
            std::process::exit(130);
        }
    });
    let report = server.shutdown();
    for (app, n) in &report.checkpointed {
        tracing::info!(%app, checkpoint = n, "checkpointed");
    }
    for (app, why) in &report.failed {
        tracing::warn!(%app, %why, "checkpoint failed; the app recovers from its log");
    }
    tracing::info!("stopped");
    Ok(())
}
