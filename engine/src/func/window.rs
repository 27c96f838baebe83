//! Windows as a library over timers: tumbling, sliding and session
//! windows per key, with incremental aggregates ([`Aggregate`]: count,
//! sum, min, max, mean, a full-window function, or a user's), allowed
//! lateness, and late events as their own output; on event time, or on
//! the shard clock ([`Window::processing_time`]: an event is of the
//! instant it runs, a window fires when the node clock reaches its end,
//! and nothing is late).
//!
//! A [`Window`] is an ordinary `Keyed` [`Function`]: each key's open
//! windows live in its state, and a timer at a window's last instant fires
//! it when the watermark passes; both move with the key's partition when
//! the operator leases or revokes, so a window fires on the instance that
//! owns its key, without a consolidation. Its output is a [`WindowOut`]:
//! a result (again, marked `update`, for each event that comes within the
//! allowed lateness after it fired) or an event too late for every window
//! it belongs to (counted in `AppStats::late_events`).
//! `AppBuilder::window` splits the two into streams of their own.

use std::marker::PhantomData;

use super::function::{Context, Function};
use super::state::Keyed;
use crate::protocol::Time;

/// How events are grouped into windows, in event-time units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Windows {
    /// `[k·size, (k+1)·size)`.
    Tumbling {
        /// The windows' length.
        size: Time,
    },
    /// `[k·slide, k·slide + size)`: an event is in `size / slide` windows.
    Sliding {
        /// The windows' length.
        size: Time,
        /// How far each window starts after the one before.
        slide: Time,
    },
    /// A key's events closer than `gap` to each other, merged: a window
    /// from its first event to its last plus `gap`.
    Session {
        /// The quiet time that ends a session.
        gap: Time,
    },
}

impl Windows {
    /// The windows an event at `ts` falls in, as `(start, end)` (`end`
    /// excluded), latest first, without allocating. A session's is its
    /// own, to merge.
    pub(crate) fn of(self, ts: Time) -> impl Iterator<Item = (Time, Time)> {
        let (first, size, step) = match self {
            Windows::Tumbling { size } => (ts / size * size, size, size),
            Windows::Sliding { size, slide } => (ts / slide * slide, size, slide),
            Windows::Session { gap } => (ts, gap, gap),
        };
        let sliding = matches!(self, Windows::Sliding { .. });
        std::iter::successors(Some(first), move |&s| {
            s.checked_sub(step)
                .filter(|s| sliding && s.saturating_add(size) > ts)
        })
        .map(move |s| (s, s.saturating_add(size)))
    }

    /// The windows an event at `ts` falls in, earliest first.
    #[cfg(test)]
    pub(crate) fn assign(self, ts: Time) -> Vec<(Time, Time)> {
        match self {
            Windows::Tumbling { size } => {
                let start = ts / size * size;
                vec![(start, start.saturating_add(size))]
            }
            Windows::Sliding { size, slide } => {
                let last = ts / slide * slide;
                let mut out = Vec::new();
                let mut start = last;
                loop {
                    if start.saturating_add(size) > ts {
                        out.push((start, start.saturating_add(size)));
                    }
                    match start.checked_sub(slide) {
                        Some(s) if s.saturating_add(size) > ts => start = s,
                        _ => break,
                    }
                }
                out.reverse();
                out
            }
            Windows::Session { gap } => vec![(ts, ts.saturating_add(gap))],
        }
    }

    /// Whether it is valid: a positive size, gap and slide, a slide within
    /// the size.
    pub(crate) fn check(self) -> Result<(), String> {
        match self {
            Windows::Tumbling { size: 0 } => Err("a tumbling window of size 0".into()),
            Windows::Sliding { size, slide } if slide == 0 || size == 0 || slide > size => Err(
                format!("a sliding window needs 0 < slide <= size (size {size}, slide {slide})"),
            ),
            Windows::Session { gap: 0 } => Err("a session window of gap 0".into()),
            _ => Ok(()),
        }
    }
}

/// An incremental aggregate of a window's events.
pub trait Aggregate: Send + Sync + 'static {
    /// The events it takes.
    type In;
    /// What it keeps per window.
    type Acc: Default + Send + 'static;
    /// What a window's result is.
    type Out: Clone + Send + 'static;
    /// Fold one event in.
    fn add(&self, acc: &mut Self::Acc, event: &Self::In);
    /// Fold another window's accumulator in (session windows merge).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The window's result now.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// Count, sum, min, max or mean of a number read from each event.
pub struct Agg<T> {
    kind: AggKind,
    read: fn(&T) -> f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AggKind {
    Count,
    Sum,
    Min,
    Max,
    Mean,
}

impl<T> Agg<T> {
    /// How many events.
    pub fn count() -> Self {
        Agg {
            kind: AggKind::Count,
            read: |_| 0.0,
        }
    }
    /// The sum of `read`.
    pub fn sum(read: fn(&T) -> f64) -> Self {
        Agg {
            kind: AggKind::Sum,
            read,
        }
    }
    /// The least `read`.
    pub fn min(read: fn(&T) -> f64) -> Self {
        Agg {
            kind: AggKind::Min,
            read,
        }
    }
    /// The greatest `read`.
    pub fn max(read: fn(&T) -> f64) -> Self {
        Agg {
            kind: AggKind::Max,
            read,
        }
    }
    /// The mean of `read`.
    pub fn mean(read: fn(&T) -> f64) -> Self {
        Agg {
            kind: AggKind::Mean,
            read,
        }
    }
}

/// What [`Agg`] keeps: the count, and the sum, least and greatest value.
#[derive(Clone, Copy, Debug, Default)]
pub struct AggAcc {
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl<T: Send + Sync + 'static> Aggregate for Agg<T> {
    type In = T;
    type Acc = AggAcc;
    type Out = f64;
    fn add(&self, acc: &mut AggAcc, event: &T) {
        let v = (self.read)(event);
        let first = acc.n == 0;
        acc.n += 1;
        acc.sum += v;
        acc.min = if first { v } else { acc.min.min(v) };
        acc.max = if first { v } else { acc.max.max(v) };
    }
    fn merge(&self, acc: &mut AggAcc, other: AggAcc) {
        if other.n == 0 {
            return;
        }
        if acc.n == 0 {
            *acc = other;
            return;
        }
        acc.n += other.n;
        acc.sum += other.sum;
        acc.min = acc.min.min(other.min);
        acc.max = acc.max.max(other.max);
    }
    fn result(&self, acc: &AggAcc) -> f64 {
        match self.kind {
            AggKind::Count => acc.n as f64,
            AggKind::Sum => acc.sum,
            AggKind::Min => acc.min,
            AggKind::Max => acc.max,
            AggKind::Mean if acc.n == 0 => 0.0,
            AggKind::Mean => acc.sum / acc.n as f64,
        }
    }
}

/// A full-window function: the window keeps its events (in arrival
/// order) and `f` reads them all when it fires.
pub struct FullWindow<T, O> {
    f: fn(&[T]) -> O,
}

impl<T, O> FullWindow<T, O> {
    /// Results by `f` over a window's events.
    pub fn new(f: fn(&[T]) -> O) -> Self {
        FullWindow { f }
    }
}

impl<T: Clone + Send + Sync + 'static, O: Clone + Send + 'static> Aggregate for FullWindow<T, O> {
    type In = T;
    type Acc = Vec<T>;
    type Out = O;
    fn add(&self, acc: &mut Vec<T>, event: &T) {
        acc.push(event.clone());
    }
    fn merge(&self, acc: &mut Vec<T>, mut other: Vec<T>) {
        acc.append(&mut other);
    }
    fn result(&self, acc: &Vec<T>) -> O {
        (self.f)(acc)
    }
}

/// One window's result.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowResult<O> {
    /// The key hash the window is of.
    pub key: u64,
    /// Its first instant.
    pub start: Time,
    /// Its end (excluded).
    pub end: Time,
    /// The aggregate.
    pub value: O,
    /// A late firing: the window fired before, and an event within the
    /// allowed lateness changed it.
    pub update: bool,
}

/// What a [`Window`] emits.
#[derive(Clone, Debug, PartialEq)]
pub enum WindowOut<T, O> {
    /// A window's result.
    Result(WindowResult<O>),
    /// An event later than the allowed lateness of every window it is in.
    Late(T),
}

/// A key's windows: by `(start, end)`, the accumulator and whether it
/// fired. A key has few open at once (one tumbling window, `size / slide`
/// sliding ones, a session or two), so a small vector, searched in
/// place, not a map (no node allocated per key and window).
pub struct KeyWindows<A> {
    open: Vec<((Time, Time), (A, bool))>,
}

impl<A> Default for KeyWindows<A> {
    fn default() -> Self {
        KeyWindows { open: Vec::new() }
    }
}

impl<A> KeyWindows<A> {
    fn get_mut(&mut self, win: &(Time, Time)) -> Option<&mut (A, bool)> {
        self.open.iter_mut().find(|(w, _)| w == win).map(|(_, v)| v)
    }

    fn get(&self, win: &(Time, Time)) -> Option<&(A, bool)> {
        self.open.iter().find(|(w, _)| w == win).map(|(_, v)| v)
    }

    fn remove(&mut self, win: &(Time, Time)) -> Option<(A, bool)> {
        let i = self.open.iter().position(|(w, _)| w == win)?;
        Some(self.open.swap_remove(i).1)
    }

    fn insert(&mut self, win: (Time, Time), v: (A, bool)) {
        match self.get_mut(&win) {
            Some(old) => *old = v,
            None => self.open.push((win, v)),
        }
    }

    fn windows(&self) -> impl Iterator<Item = (Time, Time)> + '_ {
        self.open.iter().map(|(w, _)| *w)
    }

    fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// A windowed aggregate per key, over event time or processing time.
pub struct Window<T, A> {
    windows: Windows,
    /// How to read an event's time; `None`: processing time.
    time: Option<fn(&T) -> Time>,
    agg: A,
    lateness: Time,
    _t: PhantomData<fn(T)>,
}

impl<T, A: Aggregate<In = T>> Window<T, A> {
    /// `agg` over `windows`, an event's time read by `time`; no allowed
    /// lateness.
    pub fn new(windows: Windows, time: fn(&T) -> Time, agg: A) -> Self {
        Window {
            windows,
            time: Some(time),
            agg,
            lateness: 0,
            _t: PhantomData,
        }
    }

    /// `agg` over `windows` on the shard clock: an event is of the node
    /// clock's ns when it runs ([`Context::now_ns`]), window sizes are in
    /// ns, and a window fires (on processing-time timers) once the clock
    /// reaches its end; no event is late. The app needs no event time.
    pub fn processing_time(windows: Windows, agg: A) -> Self {
        Window {
            windows,
            time: None,
            agg,
            lateness: 0,
            _t: PhantomData,
        }
    }

    /// What "now" is for its windows: the watermark, or the node clock.
    fn now(&self, ctx: &Context<'_, WindowOut<T, A::Out>>) -> Time {
        match self.time {
            Some(_) => ctx.watermark(),
            None => ctx.now_ns(),
        }
    }

    /// Set this key's timer at `at` on its clock (a window's timer must
    /// be set: the instance holding its most timers is a broken app).
    fn set_timer(&self, ctx: &mut Context<'_, WindowOut<T, A::Out>>, at: Time) {
        let set = match self.time {
            Some(_) => ctx.set_timer(at),
            None => ctx.set_processing_timer(at),
        };
        assert!(set, "a window's timer: the instance holds its most timers");
    }

    fn delete_timer(&self, ctx: &mut Context<'_, WindowOut<T, A::Out>>, at: Time) {
        match self.time {
            Some(_) => ctx.delete_timer(at),
            None => ctx.delete_processing_timer(at),
        }
    }

    /// Keep each window `lateness` past its end: a late event within it
    /// updates the window and its result is emitted again (`update`).
    pub fn allowed_lateness(mut self, lateness: Time) -> Self {
        self.lateness = lateness;
        self
    }

    /// Whether its windows are valid.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.time.is_none() && self.lateness > 0 {
            return Err("allowed lateness on processing time, where nothing is late".into());
        }
        self.windows.check()
    }

    fn result(
        &self,
        key: u64,
        win: (Time, Time),
        acc: &A::Acc,
        update: bool,
    ) -> WindowOut<T, A::Out> {
        WindowOut::Result(WindowResult {
            key,
            start: win.0,
            end: win.1,
            value: self.agg.result(acc),
            update,
        })
    }

    /// When a window fires (its timer) and when it is dropped (its
    /// allowed lateness over). On event time it fires at its last instant
    /// (a watermark there says every event of the window arrived); on the
    /// shard clock at its end (every event stamped before it has run).
    fn instants(&self, win: (Time, Time)) -> (Time, Time) {
        let last = match self.time {
            Some(_) => win.1 - 1,
            None => win.1,
        };
        (last, last.saturating_add(self.lateness))
    }

    /// The key's windows `win` overlaps taken out (a session's new window),
    /// their timers deleted: the merged window, its accumulator, and
    /// whether any of them fired.
    fn merge_sessions(
        &self,
        w: &mut KeyWindows<A::Acc>,
        mut win: (Time, Time),
        ctx: &mut Context<'_, WindowOut<T, A::Out>>,
    ) -> ((Time, Time), A::Acc, bool) {
        let mut overlapping: Vec<(Time, Time)> = w
            .windows()
            .filter(|(s, e)| *e > win.0 && *s < win.1)
            .collect();
        // In window order, so the accumulators merge in one order.
        overlapping.sort_unstable();
        let mut acc = A::Acc::default();
        let mut fired = false;
        for k in overlapping {
            let (a, f) = w.remove(&k).expect("listed above");
            let (last, gone) = self.instants(k);
            self.delete_timer(ctx, last);
            self.delete_timer(ctx, gone);
            self.agg.merge(&mut acc, a);
            fired |= f;
            win = (win.0.min(k.0), win.1.max(k.1));
        }
        (win, acc, fired)
    }

    /// Add `event` to window `win` (tumbling or sliding) of a key: in
    /// place when it is open (one map lookup, its timer already set), else
    /// a new window with its timer.
    fn add_in_place(
        &self,
        w: &mut KeyWindows<A::Acc>,
        key: u64,
        win: (Time, Time),
        event: &T,
        ctx: &mut Context<'_, WindowOut<T, A::Out>>,
    ) {
        if let Some((acc, fired)) = w.get_mut(&win) {
            self.agg.add(acc, event);
            if *fired {
                ctx.emit(key, self.result(key, win, acc, true));
            }
            return;
        }
        let mut acc = A::Acc::default();
        self.agg.add(&mut acc, event);
        let (last, gone) = self.instants(win);
        let fired = last <= self.now(ctx);
        self.set_timer(ctx, if fired { gone } else { last });
        if fired {
            ctx.emit(key, self.result(key, win, &acc, true));
        }
        w.insert(win, (acc, fired));
    }

    /// Add `event` to session `win`, merged with the key's sessions it
    /// overlaps: a result now if the window already fired (a late
    /// firing), else a timer at its end.
    fn add(
        &self,
        w: &mut KeyWindows<A::Acc>,
        key: u64,
        win: (Time, Time),
        event: &T,
        ctx: &mut Context<'_, WindowOut<T, A::Out>>,
    ) {
        let (win, mut acc, _) = self.merge_sessions(w, win, ctx);
        self.agg.add(&mut acc, event);
        let (last, gone) = self.instants(win);
        let fired = last <= self.now(ctx);
        self.set_timer(ctx, if fired { gone } else { last });
        if fired {
            ctx.emit(key, self.result(key, win, &acc, true));
        }
        w.insert(win, (acc, fired));
    }
}

impl<T, A> Function for Window<T, A>
where
    T: Clone + Send + 'static,
    A: Aggregate<In = T>,
{
    type In = T;
    type Out = WindowOut<T, A::Out>;
    type State = Keyed<KeyWindows<A::Acc>>;

    fn on_message(
        &self,
        st: &mut Self::State,
        key: u64,
        event: T,
        ctx: &mut Context<'_, Self::Out>,
    ) {
        let ts = match self.time {
            Some(time) => time(&event),
            None => ctx.now_ns(),
        };
        let wm = self.now(ctx);
        let mut took = false;
        for win in self.windows.of(ts) {
            let (_, gone) = self.instants(win);
            if gone <= wm {
                continue; // past its allowed lateness
            }
            match self.windows {
                Windows::Session { .. } => self.add(st.entry(key), key, win, &event, ctx),
                _ => self.add_in_place(st.entry(key), key, win, &event, ctx),
            }
            took = true;
        }
        if !took {
            ctx.late();
            ctx.emit(key, WindowOut::Late(event));
        }
    }

    fn on_timer(&self, st: &mut Self::State, key: u64, at: Time, ctx: &mut Context<'_, Self::Out>) {
        self.fire(st, key, at, ctx);
    }

    fn on_processing_timer(
        &self,
        st: &mut Self::State,
        key: u64,
        at: u64,
        ctx: &mut Context<'_, Self::Out>,
    ) {
        self.fire(st, key, at, ctx);
    }
}

impl<T: Clone + Send + 'static, A: Aggregate<In = T>> Window<T, A> {
    /// `key`'s timer at `at` fired: emit each of its windows that fires by
    /// then and did not yet, drop those whose lateness is over.
    fn fire(
        &self,
        st: &mut Keyed<KeyWindows<A::Acc>>,
        key: u64,
        at: Time,
        ctx: &mut Context<'_, WindowOut<T, A::Out>>,
    ) {
        let Some(w) = st.get_mut(key) else { return };
        let mut due: Vec<(Time, Time)> = w
            .windows()
            .filter(|&win| self.instants(win).0 <= at)
            .collect();
        due.sort_unstable();
        for win in due {
            let (last, gone) = self.instants(win);
            let fired = w.get(&win).is_some_and(|e| e.1);
            if !fired && last <= at {
                let acc = &w.get(&win).expect("listed above").0;
                ctx.emit(key, self.result(key, win, acc, false));
                if gone > at {
                    self.set_timer(ctx, gone);
                }
                w.get_mut(&win).expect("listed above").1 = true;
            }
            if gone <= at {
                w.remove(&win);
            }
        }
        if w.is_empty() {
            st.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_of_an_instant_are_the_assigned_ones() {
        for w in [
            Windows::Tumbling { size: 10 },
            Windows::Sliding { size: 10, slide: 3 },
            Windows::Sliding { size: 9, slide: 3 },
            Windows::Session { gap: 4 },
        ] {
            for ts in [0, 1, 5, 9, 10, 11, 29, 30, 1000] {
                let mut of: Vec<_> = w.of(ts).collect();
                of.reverse();
                assert_eq!(of, w.assign(ts), "{w:?} at {ts}");
                assert!(of.iter().all(|(s, e)| *s <= ts && ts < *e), "{w:?} at {ts}");
            }
        }
    }
}
