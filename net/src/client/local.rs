//! The client on a glommio executor: the same session as the blocking
//! client, over glommio's io_uring stream, for a program that is itself
//! thread-per-core (a loader, a bridge from another system). Not `Send`:
//! it lives on the executor that made it.

use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::{ok, unexpected, Accepted, ClientError, Session};
use crate::codec::WireValue;
use crate::limits::READ_CHUNK;
use crate::wire::{Lag, Output, Request, Response};

/// A client for a task on a glommio executor.
pub struct LocalClient {
    stream: TcpStream,
    session: Session,
    accepted: Accepted,
    buf: Vec<u8>,
}

impl LocalClient {
    /// Connect and shake hands with `token` (empty for none).
    pub async fn connect(addr: SocketAddr, token: &str) -> Result<LocalClient, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Io(e.into()))?;
        let _ = stream.set_nodelay(true);
        let mut c = LocalClient {
            stream,
            session: Session::new(),
            accepted: Accepted {
                max_frame: 0,
                max_batch: 0,
                shard: 0,
            },
            buf: vec![0; READ_CHUNK],
        };
        c.stream.write_all(&Session::hello(token)?).await?;
        loop {
            if let Some(a) = c.session.welcomed()? {
                c.accepted = a;
                return Ok(c);
            }
            c.read_some().await?;
        }
    }

    /// What the node said in the handshake.
    pub fn accepted(&self) -> Accepted {
        self.accepted
    }

    async fn read_some(&mut self) -> Result<(), ClientError> {
        match self.stream.read(&mut self.buf).await? {
            0 => Err(ClientError::Closed),
            n => {
                self.session.feed(&self.buf[..n]);
                Ok(())
            }
        }
    }

    /// Send a request; its id.
    pub async fn send(&mut self, r: &Request) -> Result<u64, ClientError> {
        let mut out = Vec::new();
        let id = self.session.request(r, &mut out)?;
        self.stream.write_all(&out).await?;
        Ok(id)
    }

    /// The answer to request `id`, once it comes.
    pub async fn answer(&mut self, id: u64) -> Result<Response, ClientError> {
        loop {
            self.session.absorb()?;
            if let Some(r) = self.session.take_answer(id) {
                return Ok(r);
            }
            self.read_some().await?;
        }
    }

    /// Send `r` and await its answer (an error answer is `Err`).
    pub async fn call(&mut self, r: &Request) -> Result<Response, ClientError> {
        let id = self.send(r).await?;
        ok(self.answer(id).await?)
    }

    /// Send one batch and await its acceptance; how many events.
    pub async fn ingest<T: WireValue>(
        &mut self,
        app: &str,
        source: &str,
        events: &[T],
    ) -> Result<u64, ClientError> {
        match self
            .call(&super::Client::ingest_request(app, source, events)?)
            .await?
        {
            Response::Accepted { events, .. } => Ok(events),
            r => Err(unexpected(r)),
        }
    }

    /// Close window `window` of an app.
    pub async fn barrier(&mut self, app: &str, window: u64) -> Result<(), ClientError> {
        self.call(&Request::Barrier {
            app: app.to_owned(),
            window,
        })
        .await
        .map(|_| ())
    }

    /// Subscribe to a sink; the subscription's id.
    pub async fn subscribe(&mut self, app: &str, sink: &str, lag: Lag) -> Result<u64, ClientError> {
        let r = Request::Subscribe {
            app: app.to_owned(),
            sink: sink.to_owned(),
            lag,
            json: false,
        };
        let id = self.send(&r).await?;
        ok(self.answer(id).await?)?;
        Ok(id)
    }

    /// The next output of any subscription, waiting up to `timeout`.
    pub async fn next_output(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(u64, Output)>, ClientError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.session.absorb()?;
            if let Some(o) = self.session.take_output() {
                return Ok(Some(o));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let read = futures_lite::future::or(async { Some(self.read_some().await) }, async {
                glommio::timer::sleep(left).await;
                None
            })
            .await;
            match read {
                Some(r) => r?,
                None => return Ok(None),
            }
        }
    }
}
