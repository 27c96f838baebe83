//! The NEXMark generator as a source that runs on the shards: a task on
//! the executor of the app's `events` source's home shard generates the
//! events and hands them over in batches through the shard-local path
//! (`SourceHandle::send_async`), with no client thread in between.

use std::sync::mpsc;
use std::time::Duration;

use dirigo_engine::{home_shard, AppHandle, EngineError, Node};

use super::{Event, Generator, GeneratorConfig};

/// Longest wait for one batch to be taken.
const SEND_WAIT: Duration = Duration::from_secs(60);

/// Generate `events` events of `cfg` on the shard of `app`'s source
/// `events` (the app's first node, not colocated), in batches of `batch`.
/// The receiver says when the task handed the last one over, or why it
/// stopped.
pub fn on_shards(
    node: &Node,
    app: &AppHandle,
    cfg: GeneratorConfig,
    events: usize,
    batch: usize,
) -> Result<mpsc::Receiver<Result<(), String>>, EngineError> {
    app.source::<Event>("events")?;
    let home = home_shard(app.name(), 0, node.shards()) as usize;
    let (tx, rx) = mpsc::channel();
    let app = app.clone();
    node.spawn_on_shards(move |shard| {
        let (app, tx) = (app.clone(), tx.clone());
        Box::pin(async move {
            if shard != home {
                return;
            }
            let src = match app.source::<Event>("events") {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let mut generator = Generator::new(cfg);
            let mut left = events;
            while left > 0 {
                let n = batch.max(1).min(left);
                let b = generator.take(n).into_iter().map(|e| (0, e)).collect();
                if let Err(r) = src.send_async(b, SEND_WAIT).await {
                    let _ = tx.send(Err(r.error.to_string()));
                    return;
                }
                left -= n;
            }
            let _ = tx.send(Ok(()));
        })
    })?;
    Ok(rx)
}
