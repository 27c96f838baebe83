//! A deployed app as the node's registry keeps it: its ingress, its
//! journal (durable apps) and what its deploy recovered. Shared by the
//! node, its `AppHandle`s and its `SourceHandle`s.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use crate::durability::{JournalFigures, JournalMsg, Recovery};
use crate::runtime::ingress::AppIngress;

/// A deployed app as the registry keeps it.
pub(crate) struct AppEntry {
    pub(crate) ingress: Arc<AppIngress>,
    /// Durable apps: the journal thread every input goes through.
    pub(crate) journal: Option<JournalLink>,
    /// Durable apps: what deploy restored and replayed.
    pub(crate) recovery: Option<Recovery>,
}

pub(crate) struct JournalLink {
    pub(crate) tx: Sender<JournalMsg>,
    pub(crate) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Its log and checkpoint figures.
    pub(crate) figures: Arc<JournalFigures>,
}

impl AppEntry {
    /// Stop the journal thread (after what it took is served) and wait.
    pub(crate) fn stop_journal(&self) {
        if let Some(j) = &self.journal {
            let _ = j.tx.send(JournalMsg::Stop);
            let handle = j.thread.lock().ok().and_then(|mut t| t.take());
            if let Some(h) = handle {
                let _ = h.join();
            }
        }
    }
}
