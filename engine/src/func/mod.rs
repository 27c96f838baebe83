//! User functions and their state, the byte forms that make them durable,
//! and the type-erased layer the shards run.
//!
//! - `function`: [`Function`] and [`Context`], what a user writes;
//! - `state`: [`OperatorState`] and the strategies [`Keyed`], [`Merged`],
//!   [`Sequential`] (with [`Merge`]);
//! - `persist`: [`Persist`] and [`DurableState`], the byte forms of events
//!   and states (rkyv archives);
//! - `timers`: an instance's event-time timers and watermark, which move
//!   with its partitions;
//! - `window`: tumbling, sliding and session windows with aggregates and
//!   allowed lateness, a library over timers;
//! - `join`: windowed, interval and incremental joins of two keyed
//!   streams, over the same timers;
//! - `erased`: `ErasedFunction`, `ErasedState`, `StateCodec`, `EventCodec`,
//!   the forms an app takes once built, above both halves.
//!
//! Imports only the vocabulary (`model`) and the protocol's strategy and
//! partition types; nothing here knows shards, plans or journals.

mod erased;
mod function;
mod join;
mod persist;
mod state;
mod timers;
mod window;

pub(crate) use erased::{
    batches_into, rebatch, ErasedFunction, ErasedState, EventCodec, Restore, Restored, RunCtx,
    StateCodec, Typed,
};

pub use function::{Context, Function};
pub use join::{
    Buffered, IntervalJoin, InvalidWindows, JoinWindows, Joined, KeyedJoin, Side, Sides, WindowJoin,
};
pub(crate) use persist::aligned_copy;
pub use persist::{DurableState, Persist, PersistError};
pub use state::{Keyed, Merge, Merged, OperatorState, Sequential};
pub(crate) use timers::{ClockPart, Domain, EventClock};
pub use window::{
    Agg, AggAcc, Aggregate, FullWindow, KeyWindows, Window, WindowOut, WindowResult, Windows,
};
