//! The HTTP/1.1 front: hyper's server on every shard's executor, beside
//! the binary protocol's listener (the same `SO_REUSEPORT` scheme), each
//! connection served on the shard that accepted it.
//!
//! - `io`: hyper's I/O and timer traits over glommio;
//! - `routes`: the routes (apps, events, SSE sinks, barriers, checkpoints,
//!   stats, health, metrics);
//! - `metrics`: the Prometheus text of a stats snapshot.
//!
//! hyper reads the request head within `handshake_timeout` (its header
//! read timeout); a keep-alive connection silent for `idle_timeout` is
//! closed by its read timeout.

mod io;
mod metrics;
mod routes;

use std::sync::Arc;

use glommio::net::TcpStream;

use super::link::Ctx;

/// Serve one accepted HTTP connection until it closes.
pub(super) async fn serve(stream: TcpStream, ctx: Arc<Ctx>, shard: usize) {
    let state = ctx.state.clone();
    if !state.open_connection() {
        // Past the limit: a short refusal, then close.
        let body =
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let mut s = stream;
        let _ = futures_lite::AsyncWriteExt::write_all(&mut s, body.as_bytes()).await;
        return;
    }
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(state.cfg.idle_timeout));
    let service = hyper::service::service_fn(move |req| routes::route(ctx.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(io::Timer)
        .header_read_timeout(state.cfg.handshake_timeout)
        .max_buf_size(state.cfg.max_frame.max(8192))
        .serve_connection(io::Io::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(shard, error = %e, "http connection ended");
    }
    state.close_connection();
}
