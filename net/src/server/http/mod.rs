//! The HTTP/1.1 front: hyper's server on every shard's executor, beside
//! the binary protocol's listener (the same `SO_REUSEPORT` scheme), each
//! connection served on the shard that accepted it.
//!
//! - `io`: hyper's I/O and timer traits over glommio;
//! - `routes`: the routes (apps, events, SSE sinks, barriers, checkpoints,
//!   stats, health, metrics);
//! - `metrics`: the Prometheus text of a stats snapshot;
//! - `dashboard`: the live dashboard's page and assets (`GET /`), embedded
//!   in the binary, which polls `GET /v1/stats`.
//!
//! hyper reads the request head within `handshake_timeout` (its header
//! read timeout); a keep-alive connection silent for `idle_timeout` is
//! closed by its read timeout. At a shutdown (the shard's `Stop`) a
//! connection shuts down gracefully: the request in flight is answered
//! (with `connection: close`), an event stream sends what its buffer
//! holds and a `closed` event of `shutting_down`, then it closes.

mod dashboard;
mod io;
mod metrics;
mod routes;

use std::sync::Arc;

use glommio::net::TcpStream;

use super::link::{Ctx, Stop};

/// Serve one accepted HTTP connection until it closes.
pub(super) async fn serve(stream: TcpStream, ctx: Arc<Ctx>, shard: usize, stop: Stop) {
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
    let route_stop = stop.clone();
    let service =
        hyper::service::service_fn(move |req| routes::route(ctx.clone(), route_stop.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(io::Timer)
        .header_read_timeout(state.cfg.handshake_timeout)
        .max_buf_size(state.cfg.max_frame.max(8192))
        .serve_connection(io::Io::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let ended = futures_lite::future::or(async { Some(conn.as_mut().await) }, async {
        stop.wait().await;
        None
    })
    .await;
    let ended = match ended {
        Some(e) => e,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(shard, error = %e, "http connection ended");
    }
    state.close_connection();
}
