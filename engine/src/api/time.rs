//! How an app's source reads event time and makes watermarks
//! ([`EventTime`], given to `AppBuilder::event_time`).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::model::Payload;
use crate::plan::SourceTime;
use crate::protocol::Time;
use crate::runtime::clock::nanos;

/// A source's event time: how to read an event's time (in the app's unit:
/// ms or µs since an epoch, the engine only orders it), how far out of
/// order events may come, how often the source sends a watermark, and
/// after how long without events it counts as idle (its watermark then
/// holds nothing back until it has events again).
pub struct EventTime<T> {
    read: fn(&T) -> Time,
    out_of_order: Time,
    period: Duration,
    idle: Option<Duration>,
    _t: PhantomData<fn(&T)>,
}

impl<T: Send + 'static> EventTime<T> {
    /// Event time read by `read`; in order (no out-of-orderness), a
    /// watermark after every ingest, never idle.
    pub fn new(read: fn(&T) -> Time) -> Self {
        EventTime {
            read,
            out_of_order: 0,
            period: Duration::ZERO,
            idle: None,
            _t: PhantomData,
        }
    }

    /// Events may come up to `bound` (in event-time units) behind the
    /// latest one seen: the watermark is the latest time less `bound`.
    pub fn out_of_orderness(mut self, bound: Time) -> Self {
        self.out_of_order = bound;
        self
    }

    /// At most one watermark per `period` of the shard clock (the latest
    /// one is sent when the period is over); zero: after every ingest.
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// After `quiet` without events the source is idle until its next
    /// event: operators downstream leave it out of their watermark (the
    /// minimum over their inputs), so other inputs go on. An operator all
    /// of whose inputs are idle holds the highest of their watermarks (it
    /// does not jump to the end of time, so what comes after the quiet is
    /// not late for that), and is idle downstream in turn.
    pub fn idle_after(mut self, quiet: Duration) -> Self {
        self.idle = Some(quiet);
        self
    }

    pub(crate) fn erase(self) -> SourceTime {
        let read = self.read;
        SourceTime {
            latest: Arc::new(move |p: &Payload| match p {
                Payload::Data(v) => v.downcast_ref::<T>().map(read),
                Payload::Batch(b) => b.values::<T>()?.iter().map(|(_, v)| read(v)).max(),
                Payload::Barrier(_) | Payload::Mark(_) => None,
            }),
            out_of_order: self.out_of_order,
            period_ns: nanos(self.period),
            idle_ns: self.idle.map_or(0, |d| nanos(d).max(1)),
        }
    }
}
