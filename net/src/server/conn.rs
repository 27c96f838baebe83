//! One binary-protocol connection, served on the shard that accepted it.
//!
//! A connection is a reader (this task: frames in, requests handled in
//! order), a writer task (frames out, coalesced into few writes) and one
//! task per subscription. Requests are handled in the order they came:
//! an ingest is handed to the engine before the next frame is read (so a
//! connection's events keep their order, and a node that cannot take more
//! stops reading the socket: TCP backpressure), while its acknowledgment
//! (a durable app's commit) may come later, up to `window` of them at once.
//! Control requests run on the control thread and are awaited by yielding.
//!
//! Bounded: the decoder holds at most a header, a frame and one read; the
//! writer's queue `OUT_QUEUE_FRAMES`; the unacknowledged ingests `window`;
//! the subscriptions `MAX_SUBSCRIPTIONS_PER_CONNECTION`, each with its
//! hub buffer. A bad frame answers with an error and closes this
//! connection only.
//!
//! At a shutdown (the shard's `Stop`), a connection reads no more: the
//! request it is handling is answered, frames already decoded are
//! refused with `ShuttingDown`, then a last `ShuttingDown` error (request
//! 0); its subscriptions send what they hold and a `ShuttingDown` close;
//! the acknowledgments it owes (durable commits) are sent; then it closes.

use std::rc::Rc;
use std::sync::Arc;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;

use super::link::{error, frame, Conn, Ctx, Stop, SHUTTING_DOWN};
use super::state::State;
use crate::frame::{Decoder, Frame};
use crate::limits::{OUT_COALESCE_BYTES, OUT_QUEUE_FRAMES, PROTOCOL_VERSION, READ_CHUNK};
use crate::wire::{ErrorCode, Hello, Message, Welcome};

/// Serve one accepted connection until it closes.
pub(crate) async fn serve(mut stream: TcpStream, ctx: Arc<Ctx>, shard: usize, stop: Stop) {
    let state = ctx.state.clone();
    if !state.open_connection() {
        let w = Welcome::Refused {
            code: ErrorCode::Limit,
            message: format!(
                "the node serves {} connections at most",
                state.cfg.max_connections
            ),
        };
        let _ = stream.write_all(&frame(&w, 0)).await;
        return;
    }
    let _open = OpenConnection(state.clone());
    let _ = stream.set_nodelay(true);
    let mut dec = Decoder::new(state.cfg.max_frame);
    let _ = stream.set_read_timeout(Some(state.cfg.handshake_timeout));
    let token = match handshake(&mut stream, &mut dec, &state, shard).await {
        Ok(t) => t,
        Err(why) => {
            tracing::debug!(shard, %why, "handshake failed");
            return;
        }
    };
    let _ = stream.set_read_timeout(Some(state.cfg.idle_timeout));
    let (rd, wr) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded(OUT_QUEUE_FRAMES);
    let writer = glommio::spawn_local(write_loop(wr, rx));
    let mut conn = Conn {
        window: Rc::new(Semaphore::new(state.cfg.window as u64)),
        ctx,
        token,
        out: Rc::new(tx),
        stop,
        subs: Vec::new(),
    };
    if let Err(why) = read_loop(&mut conn, rd, dec).await {
        tracing::debug!(shard, %why, "connection closed");
    }
    // Subscriptions end with the connection (at a shutdown, once they sent
    // their close); the writer sends what was answered, then closes.
    let subs = std::mem::take(&mut conn.subs);
    if conn.stop.is_set() {
        for (_, task) in subs {
            task.await;
        }
    } else {
        drop(subs); // cancelled: they hold the writer's queue open
    }
    let _ = conn.window.acquire(state.cfg.window as u64).await;
    drop(conn);
    writer.await;
}

/// Counts a connection while it is open.
struct OpenConnection(Arc<State>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.close_connection();
    }
}

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Frame(#[from] crate::error::FrameError),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Read until `dec` yields a frame; `None` at the end of the stream.
async fn read_frame(
    rd: &mut (impl futures_lite::AsyncRead + Unpin),
    dec: &mut Decoder,
    buf: &mut [u8],
) -> Result<Option<Frame>, ReadError> {
    loop {
        if let Some(f) = dec.next_frame()? {
            return Ok(Some(f));
        }
        let n = rd.read(buf).await?;
        if n == 0 {
            dec.finish()?;
            return Ok(None);
        }
        dec.feed(&buf[..n]);
    }
}

/// The first frame must be a `Hello` of our version with a token the node
/// knows; the answer is a `Welcome`. Returns the token.
async fn handshake(
    stream: &mut TcpStream,
    dec: &mut Decoder,
    state: &State,
    shard: usize,
) -> Result<String, String> {
    let mut buf = vec![0; 4096];
    let refuse = |code, message: String| {
        let w = Welcome::Refused {
            code,
            message: message.clone(),
        };
        (frame(&w, 0), message)
    };
    let got = read_frame(stream, dec, &mut buf).await;
    let (answer, result) = match got {
        Err(ReadError::Io(e)) => return Err(e.to_string()),
        Err(e) => {
            let (f, m) = refuse(ErrorCode::BadFrame, e.to_string());
            (f, Err(m))
        }
        Ok(None) => return Err("closed before its handshake".into()),
        Ok(Some(f)) => match Hello::decode(&f) {
            Err(e) => {
                let (f, m) = refuse(ErrorCode::BadFrame, e.to_string());
                (f, Err(m))
            }
            Ok(h) if h.version != PROTOCOL_VERSION => {
                let msg = format!("protocol version {} is not {PROTOCOL_VERSION}", h.version);
                let (f, m) = refuse(ErrorCode::BadVersion, msg);
                (f, Err(m))
            }
            Ok(h) if !state.knows(&h.token) => {
                let (f, m) = refuse(ErrorCode::Unauthorized, "unknown token".into());
                (f, Err(m))
            }
            Ok(h) => {
                let w = Welcome::Accepted {
                    version: PROTOCOL_VERSION,
                    max_frame: state.cfg.max_frame as u64,
                    max_batch: state.cfg.max_batch as u64,
                    shard: shard as u32,
                };
                (frame(&w, 0), Ok(h.token))
            }
        },
    };
    stream.write_all(&answer).await.map_err(|e| e.to_string())?;
    result
}

/// Frames in, requests handled, until the stream ends or goes bad.
async fn read_loop(
    conn: &mut Conn,
    mut rd: ReadHalf<TcpStream>,
    mut dec: Decoder,
) -> Result<(), String> {
    let mut buf = vec![0; READ_CHUNK];
    loop {
        if conn.stop.is_set() {
            return refuse_the_rest(conn, &mut dec).await;
        }
        let stop = conn.stop.clone();
        let got = futures_lite::future::or(
            async { Some(read_frame(&mut rd, &mut dec, &mut buf).await) },
            async {
                stop.wait().await;
                None
            },
        )
        .await;
        let Some(got) = got else {
            return refuse_the_rest(conn, &mut dec).await;
        };
        let f = match got {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(ReadError::Io(e))
                if e.kind() == std::io::ErrorKind::TimedOut && conn.subscribed() =>
            {
                continue;
            }
            Err(ReadError::Io(e)) => return Err(e.to_string()),
            Err(e) => {
                let _ = conn
                    .out
                    .send(error(0, ErrorCode::BadFrame, e.to_string()))
                    .await;
                return Err(e.to_string());
            }
        };
        super::requests::handle(conn, f).await?;
    }
}

/// At a shutdown: refuse the frames already decoded, then say why the
/// connection closes.
async fn refuse_the_rest(conn: &Conn, dec: &mut Decoder) -> Result<(), String> {
    while let Ok(Some(f)) = dec.next_frame() {
        conn.send(error(f.request, ErrorCode::ShuttingDown, SHUTTING_DOWN))
            .await?;
    }
    conn.send(error(0, ErrorCode::ShuttingDown, SHUTTING_DOWN))
        .await?;
    Err(SHUTTING_DOWN.into())
}

/// Frames out, as many as are queued in one write.
async fn write_loop(mut wr: WriteHalf<TcpStream>, rx: LocalReceiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(OUT_COALESCE_BYTES);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < OUT_COALESCE_BYTES {
            match futures_lite::future::poll_once(rx.recv()).await {
                Some(Some(more)) => batch.extend_from_slice(&more),
                _ => break,
            }
        }
        if wr.write_all(&batch).await.is_err() {
            return;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.close().await;
}
