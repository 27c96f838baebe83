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
//! - `ops`: the operations both fronts serve, with their token checks;
//! - `http`: the HTTP/1.1 front (hyper on the shards' executors);
//! - `codes`, `stats`: error codes and stats as JSON.

mod codes;
pub mod config;
mod conn;
mod control;
mod http;
mod link;
mod ops;
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

use crate::catalog::{Catalog, DeploySpec};
use crate::error::NetError;

/// How long `serve` waits for every shard to report its listener.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// A running server; [`Server::shutdown`] stops it.
pub struct Server {
    ctx: Arc<Ctx>,
    addr: SocketAddr,
    http: Option<SocketAddr>,
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
        let mut fronts = vec![Front::bind(Proto::Binary, self.cfg.listen)?];
        if let Some(http) = self.cfg.http {
            fronts.push(Front::bind(Proto::Http, http)?);
        }
        let addrs: Vec<SocketAddr> = fronts.iter().map(|f| f.addr).collect();
        let state = Arc::new(State::new(self.node, self.catalog, self.cfg));
        let ctx = Arc::new(Ctx {
            state,
            control: Arc::new(control),
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let (tx, rx) = flume::unbounded();
        let fronts = Arc::new(fronts);
        let (spawn_ctx, stop) = (ctx.clone(), stopping.clone());
        ctx.state.node.spawn_on_shards(move |shard| {
            let listeners: Result<Vec<_>, _> = fronts
                .iter()
                .map(|f| f.listener().map(|l| (f.proto, l)))
                .collect();
            let (ctx, tx, stop) = (spawn_ctx.clone(), tx.clone(), stop.clone());
            Box::pin(async move {
                match listeners {
                    Ok(ls) => {
                        let _ = tx.send(Ok(()));
                        let shard_stop = link::Stop::new();
                        let loops = ls
                            .into_iter()
                            .map(|(proto, l)| {
                                glommio::spawn_local(accept_loop(
                                    l,
                                    proto,
                                    ctx.clone(),
                                    shard,
                                    stop.clone(),
                                    shard_stop.clone(),
                                ))
                            })
                            .collect::<Vec<_>>();
                        for l in loops {
                            l.await;
                        }
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
                        "a shard did not start its listeners".into(),
                    ))
                }
            }
        }
        tracing::info!(binary = %addrs[0], http = ?addrs.get(1), shards = ctx.state.node.shards(), "listening");
        Ok(Server {
            ctx,
            addr: addrs[0],
            http: addrs.get(1).copied(),
            stopping,
        })
    }
}

/// Which protocol a listener speaks.
#[derive(Clone, Copy, Debug)]
enum Proto {
    Binary,
    Http,
}

/// One front's address, and its first listener until a shard takes it.
struct Front {
    proto: Proto,
    addr: SocketAddr,
    first: std::sync::Mutex<Option<FirstListener>>,
}

impl Front {
    fn bind(proto: Proto, addr: SocketAddr) -> Result<Front, NetError> {
        let (addr, first) = bind(addr)?;
        Ok(Front {
            proto,
            addr,
            first: std::sync::Mutex::new(Some(first)),
        })
    }

    /// A shard's listener: the first one, or one more on the same port.
    fn listener(&self) -> Result<TcpListener, NetError> {
        let first = self.first.lock().ok().and_then(|mut f| f.take());
        match first {
            Some(l) => l.into_glommio(),
            None => TcpListener::bind(self.addr).map_err(|e| NetError::Bind {
                addr: self.addr,
                source: e.into(),
            }),
        }
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
async fn accept_loop(
    l: TcpListener,
    proto: Proto,
    ctx: Arc<Ctx>,
    shard: usize,
    stopping: Arc<AtomicBool>,
    stop: link::Stop,
) {
    loop {
        let accepted = futures_lite::future::or(async { Some(l.accept().await) }, async {
            while !stopping.load(Ordering::Acquire) {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            None
        })
        .await;
        match accepted {
            None => {
                stop.set();
                return;
            }
            Some(Ok(stream)) => {
                let (ctx, stop) = (ctx.clone(), stop.clone());
                match proto {
                    Proto::Binary => {
                        glommio::spawn_local(conn::serve(stream, ctx, shard, stop)).detach()
                    }
                    Proto::Http => {
                        glommio::spawn_local(http::serve(stream, ctx, shard, stop)).detach()
                    }
                };
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

    /// The binary protocol's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTP front's address, if it has one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The node it serves.
    pub fn node(&self) -> &Arc<Node> {
        &self.ctx.state.node
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.ctx.state.connections.load(Ordering::Acquire)
    }

    /// Deploy an app of the catalog as a client would (the node's apps
    /// at start come this way); blocks, so call it off the shards.
    pub fn deploy(
        &self,
        kind: &str,
        spec: DeploySpec,
        params: serde_json::Value,
        ingest_token: &str,
        read_token: &str,
    ) -> Result<(), String> {
        let req = state::DeployReq {
            kind: kind.to_owned(),
            spec,
            params_json: params.to_string(),
            ingest_token: ingest_token.to_owned(),
            read_token: read_token.to_owned(),
        };
        self.ctx.state.deploy(req).map_err(|e| e.to_string())
    }

    /// Stop serving, cleanly: stop accepting connections; let every
    /// connection answer the request it is handling, refuse the ones it
    /// read but did not start (`ShuttingDown`), send the acknowledgments
    /// it owes, end its subscriptions with a `ShuttingDown` close, and
    /// close (up to the drain timeout); finish the control requests
    /// taken; checkpoint every durable app (its state as of a cut of its
    /// log, so a restart replays little); then stop the node (its
    /// journals, then its shards). Returns the connections the drain
    /// timeout cut off, the durable apps checkpointed, and the ones whose
    /// checkpoint failed with why (they recover from their log alone).
    pub fn shutdown(self) -> Shutdown {
        self.stopping.store(true, Ordering::Release);
        let mut report = Shutdown {
            unclosed: self.drain(),
            ..Shutdown::default()
        };
        self.ctx.control.stop();
        for d in self.ctx.state.durable_apps() {
            let name = d.handle.name().to_owned();
            match d.handle.checkpoint() {
                Ok(n) => report.checkpointed.push((name, n)),
                Err(e) => report.failed.push((name, e.to_string())),
            }
        }
        self.ctx.state.node.stop();
        report
    }
}

impl Server {
    /// Wait until every connection closed (each answers what it took,
    /// then closes: `conn`, `http`), up to the drain timeout; returns how
    /// many were still open.
    fn drain(&self) -> usize {
        let deadline = std::time::Instant::now() + self.ctx.state.cfg.drain_timeout;
        while self.connections() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let open = self.connections();
        if open > 0 {
            tracing::warn!(open, "connections still open after the drain timeout");
        }
        open
    }
}

/// What a clean shutdown did.
#[derive(Debug, Default)]
pub struct Shutdown {
    /// Connections still open when the drain timeout passed (cut off by
    /// the node's stop).
    pub unclosed: usize,
    /// Durable apps checkpointed, with the checkpoint's number.
    pub checkpointed: Vec<(String, u64)>,
    /// Durable apps whose checkpoint failed, and why.
    pub failed: Vec<(String, String)>,
}
