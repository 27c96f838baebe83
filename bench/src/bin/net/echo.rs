//! The peer: a raw io_uring echo server on a glommio executor pinned to
//! the node's core, returning whatever bytes come (the same frames the
//! node is sent): what the socket costs with no protocol and no engine.

use std::net::SocketAddr;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::Error;

/// Start the echo server on core 0; its address. It runs until the
/// process ends (parked while idle).
pub(crate) fn start() -> Result<SocketAddr, Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    LocalExecutorBuilder::new(Placement::Fixed(0))
        .name("echo")
        .spawn(move || async move {
            let l = match TcpListener::bind("127.0.0.1:0") {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = tx.send(l.local_addr().map_err(|e| e.to_string()));
            while let Ok(mut s) = l.accept().await {
                glommio::spawn_local(async move {
                    let _ = s.set_nodelay(true);
                    let mut buf = vec![0u8; 256 << 10];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                })
                .detach();
            }
        })?;
    Ok(rx.recv()??)
}
