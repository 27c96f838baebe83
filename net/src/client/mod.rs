//! The Rust client of the binary protocol.
//!
//! [`Session`] is its sans-IO core: it numbers requests, frames them, and
//! turns the bytes a connection reads into answers matched to their
//! requests and subscription outputs, so a blocking client and a glommio
//! one drive the same code. [`Client`] is the blocking one, for a plain
//! thread: one call per operation, and [`Client::ingest_pipelined`] keeps
//! up to a window of batches unacknowledged, the way a loader should send.
//! [`LocalClient`] (`local`) is the same on a glommio executor.

mod local;

pub use local::LocalClient;

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::codec::WireValue;
use thiserror::Error;

use crate::error::{CodecError, FrameError, WireError};
use crate::frame::{Decoder, Frame, Kind};
use crate::limits::{MAX_FRAME_BYTES, PROTOCOL_VERSION, READ_CHUNK};
use crate::wire::{ErrorCode, Event, Hello, Lag, Message, Output, Request, Response, Welcome};

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The node's bytes are not frames.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame is not the message it should be.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// An event does not encode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The node refused (its code and message).
    #[error("refused ({code:?}): {message}")]
    Node {
        /// The stable code.
        code: ErrorCode,
        /// Why.
        message: String,
    },
    /// The node answered out of protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The node closed the connection.
    #[error("the node closed the connection")]
    Closed,
}

/// What the node said in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The largest frame payload it accepts.
    pub max_frame: u64,
    /// The most events one ingest may carry.
    pub max_batch: u64,
    /// The shard that serves the connection.
    pub shard: u32,
}

/// A connection's protocol state, without I/O.
pub struct Session {
    dec: Decoder,
    next: u64,
    answers: HashMap<u64, Response>,
    outputs: VecDeque<(u64, Output)>,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    /// A session before its handshake.
    pub fn new() -> Session {
        Session {
            dec: Decoder::new(MAX_FRAME_BYTES),
            next: 1,
            answers: HashMap::new(),
            outputs: VecDeque::new(),
        }
    }

    /// The handshake's frame.
    pub fn hello(token: &str) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        let h = Hello {
            version: PROTOCOL_VERSION,
            token: token.to_owned(),
        };
        h.encode(0, MAX_FRAME_BYTES, &mut out)?;
        Ok(out)
    }

    /// Frame `r` as the next request onto `out`; returns its id.
    pub fn request(&mut self, r: &Request, out: &mut Vec<u8>) -> Result<u64, ClientError> {
        let id = self.next;
        self.next += 1;
        r.encode(id, MAX_FRAME_BYTES, out)?;
        Ok(id)
    }

    /// Bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.dec.feed(bytes);
    }

    /// The next whole frame read, if any.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        Ok(self.dec.next_frame()?)
    }

    /// Sort the frames read so far into answers and outputs; a `Welcome`
    /// is returned.
    pub fn absorb(&mut self) -> Result<Option<Welcome>, ClientError> {
        while let Some(f) = self.next_frame()? {
            match f.kind {
                Kind::Response => {
                    self.answers.insert(f.request, Response::decode(&f)?);
                }
                Kind::Output => self.outputs.push_back((f.request, Output::decode(&f)?)),
                Kind::Welcome => return Ok(Some(Welcome::decode(&f)?)),
                other => {
                    return Err(ClientError::Protocol(format!(
                        "a node sent a {other:?} frame"
                    )))
                }
            }
        }
        Ok(None)
    }

    /// The handshake's outcome once its `Welcome` is read: what the node
    /// accepted, or its refusal as `ClientError::Node`.
    pub fn welcomed(&mut self) -> Result<Option<Accepted>, ClientError> {
        match self.absorb()? {
            None => Ok(None),
            Some(Welcome::Accepted {
                max_frame,
                max_batch,
                shard,
                ..
            }) => Ok(Some(Accepted {
                max_frame,
                max_batch,
                shard,
            })),
            Some(Welcome::Refused { code, message }) => Err(ClientError::Node { code, message }),
        }
    }

    /// The answer to request `id`, once read.
    pub fn take_answer(&mut self, id: u64) -> Option<Response> {
        self.answers.remove(&id)
    }

    /// The oldest output read, with its subscription's request id.
    pub fn take_output(&mut self) -> Option<(u64, Output)> {
        self.outputs.pop_front()
    }
}

/// A blocking client.
pub struct Client {
    stream: TcpStream,
    session: Session,
    accepted: Accepted,
    buf: Vec<u8>,
}

/// A response that is not an error, or the error as `ClientError::Node`.
fn ok(r: Response) -> Result<Response, ClientError> {
    match r {
        Response::Error { code, message } => Err(ClientError::Node { code, message }),
        r => Ok(r),
    }
}

fn unexpected(r: Response) -> ClientError {
    ClientError::Protocol(format!("unexpected answer {r:?}"))
}

/// How a deploy asks for its app.
#[derive(Clone, Debug, Default)]
pub struct DeployOptions {
    /// Its SLO; `None`: best effort.
    pub slo: Option<Duration>,
    /// Logged input and checkpoints.
    pub durable: bool,
    /// The token that may ingest into it (empty: admin only).
    pub ingest_token: String,
    /// The token that may read it (empty: admin only).
    pub read_token: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.stream.peer_addr().ok())
            .field("accepted", &self.accepted)
            .finish()
    }
}

impl Client {
    /// Connect and shake hands with `token` (empty for none).
    pub fn connect(addr: SocketAddr, token: &str) -> Result<Client, ClientError> {
        Client::connect_within(addr, token, Duration::from_secs(10))
    }

    /// Connect and shake hands with `token`, giving up after `timeout` for
    /// the connection and again for the handshake.
    pub fn connect_within(
        addr: SocketAddr,
        token: &str,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        let mut c = Client {
            stream,
            session: Session::new(),
            accepted: Accepted {
                max_frame: 0,
                max_batch: 0,
                shard: 0,
            },
            buf: vec![0; READ_CHUNK],
        };
        c.stream.write_all(&Session::hello(token)?)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(a) = c.session.welcomed()? {
                c.accepted = a;
                return Ok(c);
            }
            c.read_some(deadline)?;
        }
    }

    /// What the node said in the handshake.
    pub fn accepted(&self) -> Accepted {
        self.accepted
    }

    /// Read once, waiting up to `deadline`.
    fn read_some(&mut self, deadline: Instant) -> Result<(), ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout);
        }
        self.stream.set_read_timeout(Some(left))?;
        match self.stream.read(&mut self.buf) {
            Ok(0) => Err(ClientError::Closed),
            Ok(n) => {
                self.session.feed(&self.buf[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(ClientError::Timeout)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Send a request; returns its id.
    pub fn send(&mut self, r: &Request) -> Result<u64, ClientError> {
        let mut out = Vec::new();
        let id = self.session.request(r, &mut out)?;
        self.stream.write_all(&out)?;
        Ok(id)
    }

    /// Wait up to `timeout` for the answer to request `id`.
    pub fn answer(&mut self, id: u64, timeout: Duration) -> Result<Response, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.session.absorb()?;
            if let Some(r) = self.session.take_answer(id) {
                return Ok(r);
            }
            self.read_some(deadline)?;
        }
    }

    /// Send `r` and wait (up to a minute) for its answer.
    pub fn call(&mut self, r: &Request) -> Result<Response, ClientError> {
        let id = self.send(r)?;
        ok(self.answer(id, Duration::from_secs(60))?)
    }

    /// Deploy an app of catalog kind `kind`.
    pub fn deploy(
        &mut self,
        kind: &str,
        name: &str,
        params: &serde_json::Value,
        o: &DeployOptions,
    ) -> Result<(), ClientError> {
        let r = Request::Deploy {
            kind: kind.to_owned(),
            name: name.to_owned(),
            params_json: params.to_string(),
            slo_us: o.slo.map(|d| d.as_micros() as u64),
            durable: o.durable,
            ingest_token: o.ingest_token.clone(),
            read_token: o.read_token.clone(),
        };
        self.call(&r).map(|_| ())
    }

    /// Undeploy an app.
    pub fn undeploy(&mut self, app: &str) -> Result<(), ClientError> {
        self.call(&Request::Undeploy {
            app: app.to_owned(),
        })
        .map(|_| ())
    }

    /// The apps deployed over the wire.
    pub fn apps(&mut self) -> Result<Vec<String>, ClientError> {
        match self.call(&Request::Apps)? {
            Response::Apps(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    /// An app's stats (or the node's, for `None`), JSON.
    pub fn stats(&mut self, app: Option<&str>) -> Result<serde_json::Value, ClientError> {
        match self.call(&Request::Stats {
            app: app.map(str::to_owned),
        })? {
            Response::Stats(s) => {
                serde_json::from_str(&s).map_err(|e| ClientError::Protocol(e.to_string()))
            }
            r => Err(unexpected(r)),
        }
    }

    /// Checkpoint a durable app; its number.
    pub fn checkpoint(&mut self, app: &str) -> Result<u64, ClientError> {
        match self.call(&Request::Checkpoint {
            app: app.to_owned(),
        })? {
            Response::Checkpointed { checkpoint } => Ok(checkpoint),
            r => Err(unexpected(r)),
        }
    }

    /// Close window `window` of an app.
    pub fn barrier(&mut self, app: &str, window: u64) -> Result<(), ClientError> {
        self.call(&Request::Barrier {
            app: app.to_owned(),
            window,
        })
        .map(|_| ())
    }

    /// The ingest request of `events` for `app`'s `source`.
    pub fn ingest_request<T: WireValue>(
        app: &str,
        source: &str,
        events: &[T],
    ) -> Result<Request, ClientError> {
        let events = events
            .iter()
            .map(|v| v.to_binary().map(|value| Event { value }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Request::Ingest {
            app: app.to_owned(),
            source: source.to_owned(),
            events,
        })
    }

    /// Send one batch and wait for it to be accepted; how many events.
    pub fn ingest<T: WireValue>(
        &mut self,
        app: &str,
        source: &str,
        events: &[T],
    ) -> Result<u64, ClientError> {
        match self.call(&Self::ingest_request(app, source, events)?)? {
            Response::Accepted { events, .. } => Ok(events),
            r => Err(unexpected(r)),
        }
    }

    /// The ingest request of events in their JSON form (each a JSON
    /// text), read by the source's own reading of JSON.
    pub fn ingest_json_request(app: &str, source: &str, events: Vec<String>) -> Request {
        Request::IngestJson {
            app: app.to_owned(),
            source: source.to_owned(),
            events,
        }
    }

    /// Send every batch, keeping up to `window` unacknowledged; returns
    /// the events accepted. Stops at the first refusal (the batches after
    /// it that were sent may have been accepted: their count is in the
    /// error's message).
    pub fn ingest_pipelined<T: WireValue>(
        &mut self,
        app: &str,
        source: &str,
        batches: impl IntoIterator<Item = Vec<T>>,
        window: usize,
    ) -> Result<u64, ClientError> {
        let mut waiting = VecDeque::new();
        let mut accepted = 0;
        for b in batches {
            if waiting.len() >= window.max(1) {
                accepted += self.acked(waiting.pop_front())?;
            }
            waiting.push_back(self.send(&Self::ingest_request(app, source, &b)?)?);
        }
        while let Some(id) = waiting.pop_front() {
            accepted += self.acked(Some(id))?;
        }
        Ok(accepted)
    }

    fn acked(&mut self, id: Option<u64>) -> Result<u64, ClientError> {
        let Some(id) = id else { return Ok(0) };
        match ok(self.answer(id, Duration::from_secs(60))?)? {
            Response::Accepted { events, .. } => Ok(events),
            r => Err(unexpected(r)),
        }
    }

    /// Subscribe to `app`'s `sink`; returns the subscription's id, which
    /// tags its outputs.
    pub fn subscribe(&mut self, app: &str, sink: &str, lag: Lag) -> Result<u64, ClientError> {
        self.subscribe_as(app, sink, lag, false)
    }

    /// Subscribe to `app`'s `sink` with outputs as JSON texts (`json`) or
    /// in the sink's binary codec; the subscription's id.
    pub fn subscribe_as(
        &mut self,
        app: &str,
        sink: &str,
        lag: Lag,
        json: bool,
    ) -> Result<u64, ClientError> {
        let id = self.send(&Request::Subscribe {
            app: app.to_owned(),
            sink: sink.to_owned(),
            lag,
            json,
        })?;
        ok(self.answer(id, Duration::from_secs(10))?)?;
        Ok(id)
    }

    /// The next output of any subscription, waiting up to `timeout`.
    pub fn next_output(&mut self, timeout: Duration) -> Result<Option<(u64, Output)>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.session.absorb()?;
            if let Some(o) = self.session.take_output() {
                return Ok(Some(o));
            }
            match self.read_some(deadline) {
                Err(ClientError::Timeout) => return Ok(None),
                r => r?,
            }
        }
    }

    /// Read whatever the node has sent, without waiting, and take every
    /// answer read so far (a sender that pipelines reads its answers this
    /// way between sends).
    pub fn take_answers(&mut self) -> Result<Vec<(u64, Response)>, ClientError> {
        self.stream.set_nonblocking(true)?;
        let read = loop {
            match self.stream.read(&mut self.buf) {
                Ok(0) => break Err(ClientError::Closed),
                Ok(n) => self.session.feed(&self.buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(e.into()),
            }
        };
        self.stream.set_nonblocking(false)?;
        read?;
        self.session.absorb()?;
        Ok(self.session.answers.drain().collect())
    }

    /// Send raw bytes (for tests of what a node does with bad input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        Ok(self.stream.write_all(bytes)?)
    }
}
