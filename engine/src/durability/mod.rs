//! Durable apps: the journal that logs every input before it is
//! acknowledged, checkpoints, recovery at deploy, and the spill files of
//! dormant actors.
//!
//! - `request`: the journal's request types and the [`Forward`] seam to the
//!   shards (a leaf: the client API sends requests, the runtime implements
//!   `Forward`);
//! - `codec`: the ingress log's records;
//! - `journal`: the group-commit loop and checkpoints;
//! - `recovery`: open an app's folder, restore, replay;
//! - `spill`: dormant state in segment files;
//! - `figures`: the journal's log and checkpoint figures, for stats;
//! - `inspect`: an app folder as it is on disk, read-only, for tools.
//!
//! Imports `plan`, `func` and the vocabulary, never the runtime or the
//! client API: what the journal logged reaches the shards through
//! `Forward`, what a checkpoint barrier saves comes back through the plan's
//! `StateSink`.

mod codec;
mod figures;
pub mod inspect;
mod journal;
mod recovery;
mod request;
pub(crate) mod spill;

pub use figures::DurableStats;
pub(crate) use figures::JournalFigures;
pub(crate) use journal::Journal;
pub use recovery::Recovery;
pub(crate) use recovery::{open, replay};
pub(crate) use request::{
    split_checkpoint_tag, EventSlot, Forward, IngestOutcome, IngestReply, JournalMsg,
};
