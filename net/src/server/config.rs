//! What a server is told: where it listens, its admin token, and every
//! limit a deployment may tune, with safe defaults (`limits`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::NetError;
use crate::limits::*;

/// How a node serves the network.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The binary protocol's address (default `127.0.0.1:7070`; port 0:
    /// any free port, see `Server::local_addr`). Every shard listens on it
    /// (`SO_REUSEPORT`).
    pub listen: SocketAddr,
    /// The HTTP front's address (default `127.0.0.1:8080`; `None`: no
    /// HTTP front).
    pub http: Option<SocketAddr>,
    /// The token of deploy, undeploy, checkpoint and node stats; `None`:
    /// the node is open (every request allowed), for a loopback node.
    pub admin_token: Option<String>,
    /// The largest frame payload accepted, bytes.
    pub max_frame: usize,
    /// The most events one ingest may carry.
    pub max_batch: usize,
    /// Connections served at once; past it a new one is refused.
    pub max_connections: usize,
    /// Subscribers one sink may have.
    pub max_subscribers: usize,
    /// Outputs a subscriber's buffer holds before its lag policy applies.
    pub subscriber_buffer: usize,
    /// Ingests of one connection waiting for their acknowledgment at once.
    pub window: usize,
    /// Time a new connection has to complete its handshake.
    pub handshake_timeout: Duration,
    /// Time a connection without subscriptions may stay silent.
    pub idle_timeout: Duration,
    /// Time an ingest waits out backpressure before it is refused.
    pub ingest_timeout: Duration,
    /// Time a shutdown waits for connections to answer the requests they
    /// took (and send the acknowledgments they owe) and close; past it the
    /// node stops anyway.
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            admin_token: None,
            max_frame: DEFAULT_MAX_FRAME_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            subscriber_buffer: DEFAULT_SUBSCRIBER_BUFFER,
            window: DEFAULT_WINDOW,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            ingest_timeout: DEFAULT_INGEST_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

impl ServerConfig {
    /// Every limit within its bounds.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |s: String| Err(NetError::Config(s));
        let in_range = |v: usize, lo: usize, hi: usize| (lo..=hi).contains(&v);
        if !in_range(self.max_frame, HEADER_LEN, MAX_FRAME_BYTES) {
            return bad(format!(
                "max_frame must be in {HEADER_LEN}..={MAX_FRAME_BYTES}"
            ));
        }
        if !in_range(self.max_batch, 1, MAX_BATCH) {
            return bad(format!("max_batch must be in 1..={MAX_BATCH}"));
        }
        if !in_range(self.window, 1, MAX_WINDOW) {
            return bad(format!("window must be in 1..={MAX_WINDOW}"));
        }
        if !in_range(self.subscriber_buffer, 1, MAX_SUBSCRIBER_BUFFER) {
            return bad(format!(
                "subscriber_buffer must be in 1..={MAX_SUBSCRIBER_BUFFER}"
            ));
        }
        if self.max_connections == 0 || self.max_subscribers == 0 {
            return bad("max_connections and max_subscribers must be positive".into());
        }
        let timeouts = [
            self.handshake_timeout,
            self.idle_timeout,
            self.ingest_timeout,
            self.drain_timeout,
        ];
        if timeouts.iter().any(Duration::is_zero) {
            return bad(
                "handshake_timeout, idle_timeout, ingest_timeout and drain_timeout must be \
                 positive"
                    .into(),
            );
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.len() > MAX_TOKEN_BYTES)
        {
            return bad(format!("admin_token must have 1..={MAX_TOKEN_BYTES} bytes"));
        }
        Ok(())
    }
}
