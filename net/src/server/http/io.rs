//! What hyper needs to run on a glommio executor: its I/O traits over a
//! glommio TCP stream, and a timer on glommio's timers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// A glommio stream as hyper's I/O. Reads go through a small buffer of
/// our own, so no uninitialized memory is handed to the socket.
pub(super) struct Io {
    stream: TcpStream,
    buf: Box<[u8]>,
}

impl Io {
    pub(super) fn new(stream: TcpStream) -> Io {
        Io {
            stream,
            buf: vec![0; 8192].into_boxed_slice(),
        }
    }
}

impl hyper::rt::Read for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let want = buf.remaining().min(this.buf.len());
        match Pin::new(&mut this.stream).poll_read(cx, &mut this.buf[..want]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&this.buf[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}

/// hyper's timer (its header-read timeout) on glommio's timers.
#[derive(Clone, Copy)]
pub(super) struct Timer;

/// A glommio timer as hyper's `Sleep`.
struct Sleep(glommio::timer::Timer);

// SAFETY: hyper asks `Send + Sync` of its sleeps so they may cross threads
// on a multi-threaded runtime. Here a `Sleep` is made, polled and dropped
// inside one HTTP connection's future, which runs as a glommio local task
// (`spawn_local`) and never leaves its executor's thread; nothing else
// holds a reference to it, so it is never sent nor shared.
unsafe impl Send for Sleep {}
// SAFETY: see `Send` above: never shared across threads.
unsafe impl Sync for Sleep {}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(|_| ())
    }
}

impl hyper::rt::Sleep for Sleep {}

impl hyper::rt::Timer for Timer {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep(glommio::timer::Timer::new(d)))
    }

    fn sleep_until(&self, at: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep(at.saturating_duration_since(Instant::now()))
    }
}
