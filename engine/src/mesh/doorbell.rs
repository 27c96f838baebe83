//! Waking a parked shard, and only a parked one.
//!
//! A shard that runs out of work spins briefly, then parks: it announces that
//! with [`ParkFlag::prepare_park`], looks at its inbound rings and command
//! queue one last time, and only then sleeps on its doorbell. A sender first
//! publishes its packet (ring `tail`, command queue), then calls
//! [`Doorbell::ring`], which writes to the socket only if the flag says the
//! peer is parked. This is the Dekker handshake: both sides store, issue a
//! SeqCst fence, then load the other side's location, so at least one of them
//! sees the other: either the sender sees `parked` and wakes the shard, or
//! the shard sees the packet and does not sleep. A busy shard therefore costs
//! its senders one fence and one load, never a syscall.
//!
//! The flag protocol lives in [`ParkFlag`] (plain atomics from [`crate::sync`],
//! modelled by loom); the wake-up channel is a nonblocking Unix socket pair
//! whose read end the shard awaits through glommio's reactor.

#[cfg(feature = "runtime")]
use std::io::{self, Write};
#[cfg(feature = "runtime")]
use std::os::fd::{FromRawFd, IntoRawFd};
#[cfg(feature = "runtime")]
use std::os::unix::net::UnixStream as StdUnixStream;

use crate::sync::{fence, AtomicBool, Ordering};

/// The shared half of the park handshake.
#[derive(Debug, Default)]
pub struct ParkFlag {
    parked: AtomicBool,
}

impl ParkFlag {
    /// A flag that says "not parked".
    pub fn new() -> ParkFlag {
        ParkFlag {
            parked: AtomicBool::new(false),
        }
    }

    /// Sleeper, step 1: announce the intent to park. The caller must then
    /// re-check every source of work before sleeping.
    pub fn prepare_park(&self) {
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Sleeper: it found work (or woke by timeout); take the flag back.
    pub fn cancel_park(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Sender, after publishing its work: whether it must wake the sleeper.
    /// At most one of several concurrent senders gets `true` per park.
    pub fn should_wake(&self) -> bool {
        fence(Ordering::SeqCst);
        // Cheap check first: a busy peer costs a load, not a locked RMW.
        self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst)
    }
}

#[cfg(feature = "runtime")]
/// The sending side: any thread may ring it.
#[derive(Debug)]
pub struct Doorbell {
    flag: ParkFlag,
    wake: StdUnixStream,
}

#[cfg(feature = "runtime")]
/// The sleeping side before it reaches its shard's thread (`Send`).
pub struct DoorbellWaiter {
    bell: std::sync::Arc<Doorbell>,
    read: StdUnixStream,
}

#[cfg(feature = "runtime")]
/// The sleeping side on its shard's executor (`!Send`: a glommio socket).
pub struct LocalWaiter {
    bell: std::sync::Arc<Doorbell>,
    stream: glommio::net::UnixStream,
}

#[cfg(feature = "runtime")]
impl Doorbell {
    /// A doorbell and the waiter of the shard it wakes.
    pub fn new() -> io::Result<(std::sync::Arc<Doorbell>, DoorbellWaiter)> {
        let (w, r) = StdUnixStream::pair()?;
        w.set_nonblocking(true)?;
        r.set_nonblocking(true)?;
        let bell = std::sync::Arc::new(Doorbell {
            flag: ParkFlag::new(),
            wake: w,
        });
        Ok((bell.clone(), DoorbellWaiter { bell, read: r }))
    }

    /// Wake the shard if it is parked; cheap if it is not. Call after the
    /// work it should find has been published.
    pub fn ring(&self) {
        if self.flag.should_wake() {
            // A full socket buffer means wake-ups are already pending, and a
            // closed peer means the shard is gone: neither needs handling.
            let _ = (&self.wake).write(&[1u8]);
        }
    }
}

#[cfg(feature = "runtime")]
impl DoorbellWaiter {
    /// Bind to the current glommio executor; call on the shard's thread.
    pub fn into_local(self) -> LocalWaiter {
        // SAFETY: `into_raw_fd` gives up ownership of a valid, open socket
        // fd, which the glommio stream takes over and will close.
        let stream = unsafe { glommio::net::UnixStream::from_raw_fd(self.read.into_raw_fd()) };
        LocalWaiter {
            bell: self.bell,
            stream,
        }
    }
}

#[cfg(feature = "runtime")]
impl LocalWaiter {
    /// See [`ParkFlag::prepare_park`].
    pub fn prepare_park(&self) {
        self.bell.flag.prepare_park();
    }

    /// See [`ParkFlag::cancel_park`].
    pub fn cancel_park(&self) {
        self.bell.flag.cancel_park();
    }

    /// Sleep until rung. Must run on the shard's glommio executor. A wake-up
    /// may be spurious (a ring that raced a cancelled park leaves a byte).
    pub async fn wait(&mut self) -> io::Result<()> {
        use futures_lite::AsyncReadExt;
        let mut buf = [0u8; 64];
        let n = self.stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "doorbell closed",
            ));
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn only_a_parked_sleeper_is_woken_once() {
        let f = ParkFlag::new();
        assert!(!f.should_wake());
        f.prepare_park();
        assert!(f.should_wake());
        assert!(!f.should_wake(), "the second sender must not ring again");
        f.prepare_park();
        f.cancel_park();
        assert!(!f.should_wake());
    }

    #[test]
    #[cfg(feature = "runtime")]
    fn ring_wakes_a_waiting_executor() {
        let (bell, waiter) = Doorbell::new().expect("doorbell");
        // The executor waits on its own thread, so a lost wake-up fails the
        // test after a timeout instead of hanging it.
        let (woke, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .make()
                .expect("executor");
            ex.run(async move {
                let mut waiter = waiter.into_local();
                waiter.prepare_park();
                waiter.wait().await.expect("wait");
            });
            let _ = woke.send(());
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        bell.ring();
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the ring woke the parked executor");
    }
}
