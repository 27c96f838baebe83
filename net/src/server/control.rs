//! The control thread: where a server runs what blocks (deploy, undeploy,
//! stats, checkpoint wait for every shard's reply), off the shards. A
//! connection sends it a job and awaits the answer by yielding, so its
//! shard keeps running meanwhile. Jobs run one at a time, in order; a job
//! that panics answers nothing (the connection reports a failure) and the
//! thread goes on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct Control {
    tx: Mutex<Option<flume::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Control {
    pub(crate) fn start() -> std::io::Result<Control> {
        let (tx, rx) = flume::unbounded::<Job>();
        let thread = std::thread::Builder::new()
            .name("dirigo-net-control".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    if catch_unwind(AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a control job panicked");
                    }
                }
            })?;
        Ok(Control {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Run `f` on the control thread; `None` if it panicked or the thread
    /// is gone.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = flume::bounded(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let tx = self.tx.lock().ok()?.clone()?;
        tx.send(job).ok()?;
        rx.recv_async().await.ok()
    }

    /// Finish the jobs sent so far, then stop.
    pub(crate) fn stop(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            *tx = None;
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop();
    }
}
