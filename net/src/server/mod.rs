//! The node's server: every shard listens on the same address
//! (`SO_REUSEPORT`, glommio's io_uring TCP), the kernel spreads
//! connections over them, and each connection is served on the shard that
//! accepted it (`conn`, `requests`): its ingest enters the engine there
//! (the shard-local queue when the source is homed on that shard, the
//! target shard's inbox otherwise).
//!
//! - `config`: what a server is told ([`ServerConfig`]);
//! - `state`: what its connections share (apps deployed over the wire,
//!   their ports and tokens);
//! - `control`: the thread that runs blocking control requests;
//! - `conn`, `requests`: one connection, its requests; `link`: the
//!   connection's state and answer frames, which both use;
//! - `codes`, `stats`: error codes and stats as JSON.

mod codes;
pub mod config;
mod conn;
mod control;
mod link;
mod requests;
mod state;
mod stats;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dirigo_engine::Node;
use glommio::net::TcpListener;

pub use config::ServerConfig;
use control::Control;
use link::Ctx;
use state::State;

use crate::catalog::Catalog;
use crate::error::NetError;

/// How long `serve` waits for every shard to report its listener.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// A running server; [`Server::shutdown`] stops it.
pub struct Server {
    ctx: Arc<Ctx>,
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
}

/// Sets a server up: `Server::builder(node).catalog(c).config(cfg).serve()`.
pub struct ServerBuilder {
    node: Arc<Node>,
    catalog: Catalog,
    cfg: ServerConfig,
}

impl ServerBuilder {
    /// The kinds of app it deploys (default: `Catalog::builtin()`).
    pub fn catalog(mut self, catalog: Catalog) -> ServerBuilder {
        self.catalog = catalog;
        self
    }

    /// Where it listens and its limits (default: `ServerConfig::default()`).
    pub fn config(mut self, cfg: ServerConfig) -> ServerBuilder {
        self.cfg = cfg;
        self
    }

    /// Listen on every shard; returns once each one listens.
    pub fn serve(self) -> Result<Server, NetError> {
        self.cfg.validate()?;
        let control = Control::start()
            .map_err(|e| NetError::Config(format!("cannot start the control thread: {e}")))?;
        let listen = self.cfg.listen;
        let state = Arc::new(State::new(self.node, self.catalog, self.cfg));
        let ctx = Arc::new(Ctx {
            state,
            control: Arc::new(control),
        });
        // The first listener picks the port (when it is 0); the others
        // join it, which SO_REUSEPORT allows.
        let (addr, first) = bind(listen)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let (tx, rx) = flume::unbounded();
        let first = std::sync::Mutex::new(Some(first));
        let spawn_ctx = ctx.clone();
        let stop = stopping.clone();
        ctx.state.node.spawn_on_shards(move |shard| {
            let listener = match first.lock().ok().and_then(|mut f| f.take()) {
                Some(l) => l.into_glommio(),
                None => TcpListener::bind(addr).map_err(|e| NetError::Bind {
                    addr,
                    source: e.into(),
                }),
            };
            let ctx = spawn_ctx.clone();
            let (tx, stop) = (tx.clone(), stop.clone());
            Box::pin(async move {
                match listener {
                    Ok(l) => {
                        let _ = tx.send(Ok(()));
                        accept_loop(l, ctx, shard, stop).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
        })?;
        for _ in 0..ctx.state.node.shards() {
            match rx.recv_timeout(LISTEN_WAIT) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(NetError::Config(
                        "a shard did not start its listener".into(),
                    ))
                }
            }
        }
        tracing::info!(%addr, shards = ctx.state.node.shards(), "listening");
        Ok(Server {
            ctx,
            addr,
            stopping,
        })
    }
}

/// A listener made on the caller's thread, moved to a shard.
struct FirstListener(std::net::TcpListener);

impl FirstListener {
    fn into_glommio(self) -> Result<TcpListener, NetError> {
        use std::os::fd::{FromRawFd, IntoRawFd};
        let fd = self.0.into_raw_fd();
        // SAFETY: `fd` is the listening socket we own, just released by
        // `into_raw_fd`; glommio's listener takes it over and closes it.
        Ok(unsafe { TcpListener::from_raw_fd(fd) })
    }
}

/// Bind `addr` with `SO_REUSEPORT` and listen, so the shards' listeners
/// can join it; returns the bound address (the port chosen, for port 0).
fn bind(addr: SocketAddr) -> Result<(SocketAddr, FirstListener), NetError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| NetError::Bind { addr, source };
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.set_reuse_port(true).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    s.listen(1024).map_err(err)?;
    let local = s
        .local_addr()
        .map_err(err)?
        .as_socket()
        .ok_or_else(|| err(std::io::Error::other("not an IP socket")))?;
    Ok((local, FirstListener(s.into())))
}

/// Accept connections on one shard until the server stops; each one is a
/// task of this shard.
async fn accept_loop(l: TcpListener, ctx: Arc<Ctx>, shard: usize, stopping: Arc<AtomicBool>) {
    loop {
        let accepted = futures_lite::future::or(async { Some(l.accept().await) }, async {
            while !stopping.load(Ordering::Acquire) {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                glommio::spawn_local(conn::serve(stream, ctx.clone(), shard)).detach();
            }
            Some(Err(e)) => {
                tracing::warn!(shard, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

impl Server {
    /// A server for `node`, with the built-in catalog and default config.
    pub fn builder(node: Arc<Node>) -> ServerBuilder {
        ServerBuilder {
            node,
            catalog: Catalog::builtin(),
            cfg: ServerConfig::default(),
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node it serves.
    pub fn node(&self) -> &Arc<Node> {
        &self.ctx.state.node
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.ctx.state.connections.load(Ordering::Acquire)
    }

    /// Stop accepting connections and finish the control requests taken.
    /// Connections already open are served until the node stops.
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::Release);
        self.ctx.control.stop();
    }
}
