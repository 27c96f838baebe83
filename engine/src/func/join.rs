//! Joins of two keyed streams, as library functions over event time:
//! a windowed join ([`WindowJoin`]: the pairs of one key's events that
//! fall in one window, when it fires), an interval join
//! ([`IntervalJoin`]: a right event within a span of a left one, as soon
//! as both are in), and an incremental join without windows
//! ([`KeyedJoin`]: every pair of one key, as it forms).
//!
//! Each takes both inputs as one stream of [`Side`]s (`AppBuilder::join`
//! makes it from the two), keyed by the join key: all three are `Keyed`
//! functions, so a key's buffered events and timers move with its
//! partition, and a pair forms on the instance that owns the key. Events
//! at or before the watermark are late: counted (`Context::late`) and
//! left out, as a sequential run at the same watermarks would.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use super::function::{Context, Function};
use super::state::Keyed;
use super::window::Windows;
use crate::protocol::Time;

/// An event of one side of a join.
#[derive(Clone, Debug, PartialEq)]
pub enum Side<L, R> {
    /// The left input's.
    Left(L),
    /// The right input's.
    Right(R),
}

/// A pair of events of one key.
#[derive(Clone, Debug, PartialEq)]
pub struct Joined<L, R> {
    /// The join key's hash.
    pub key: u64,
    /// The left event.
    pub left: L,
    /// The right event.
    pub right: R,
}

/// The event times of both sides.
struct Times<L, R> {
    left: fn(&L) -> Time,
    right: fn(&R) -> Time,
}

impl<L, R> Times<L, R> {
    fn of(&self, s: &Side<L, R>) -> Time {
        match s {
            Side::Left(l) => (self.left)(l),
            Side::Right(r) => (self.right)(r),
        }
    }
}

fn pair<L: Clone, R: Clone>(key: u64, l: &L, r: &R) -> Joined<L, R> {
    Joined {
        key,
        left: l.clone(),
        right: r.clone(),
    }
}

/// A key's buffered windows of a [`WindowJoin`].
pub struct JoinWindows<L, R> {
    open: BTreeMap<(Time, Time), (Vec<L>, Vec<R>)>,
}

impl<L, R> Default for JoinWindows<L, R> {
    fn default() -> Self {
        JoinWindows {
            open: BTreeMap::new(),
        }
    }
}

/// Every pair of a key's left and right events in one tumbling or
/// sliding window, emitted when the window fires (left events in arrival
/// order, each with the right ones in arrival order).
pub struct WindowJoin<L, R> {
    windows: Windows,
    times: Times<L, R>,
    _t: PhantomData<fn(L, R)>,
}

/// Windows a windowed join cannot take: sessions, or invalid sizes.
#[derive(Debug, thiserror::Error)]
#[error("a windowed join over {windows:?}: {why}")]
pub struct InvalidWindows {
    windows: Windows,
    why: String,
}

impl<L, R> WindowJoin<L, R> {
    /// A join over `windows` (tumbling or sliding), the sides' event times
    /// read by `left` and `right`.
    pub fn new(
        windows: Windows,
        left: fn(&L) -> Time,
        right: fn(&R) -> Time,
    ) -> Result<Self, InvalidWindows> {
        let bad = |why: String| Err(InvalidWindows { windows, why });
        if let Windows::Session { .. } = windows {
            return bad("sessions are not joined (tumbling or sliding only)".into());
        }
        if let Err(why) = windows.check() {
            return bad(why);
        }
        Ok(WindowJoin {
            windows,
            times: Times { left, right },
            _t: PhantomData,
        })
    }
}

impl<L, R> Function for WindowJoin<L, R>
where
    L: Clone + Send + 'static,
    R: Clone + Send + 'static,
{
    type In = Side<L, R>;
    type Out = Joined<L, R>;
    type State = Keyed<JoinWindows<L, R>>;

    fn on_message(
        &self,
        st: &mut Self::State,
        key: u64,
        e: Side<L, R>,
        ctx: &mut Context<'_, Self::Out>,
    ) {
        let ts = self.times.of(&e);
        let wm = ctx.watermark();
        let mut took = false;
        for win in self.windows.of(ts) {
            let last = win.1 - 1;
            if last <= wm {
                continue; // the window fired
            }
            let (ls, rs) = st.entry(key).open.entry(win).or_default();
            match &e {
                Side::Left(l) => ls.push(l.clone()),
                Side::Right(r) => rs.push(r.clone()),
            }
            assert!(
                ctx.set_timer(last),
                "a join's timer: the instance holds its most timers"
            );
            took = true;
        }
        if !took {
            ctx.late();
        }
    }

    fn on_timer(&self, st: &mut Self::State, key: u64, at: Time, ctx: &mut Context<'_, Self::Out>) {
        let Some(w) = st.get_mut(key) else { return };
        let due: Vec<(Time, Time)> = w
            .open
            .keys()
            .copied()
            .filter(|&(_, e)| e - 1 <= at)
            .collect();
        for win in due {
            let (ls, rs) = w.open.remove(&win).expect("listed above");
            for l in &ls {
                for r in &rs {
                    ctx.emit(key, pair(key, l, r));
                }
            }
        }
        if w.open.is_empty() {
            st.remove(key);
        }
    }
}

/// A key's buffered events of an [`IntervalJoin`], by event time.
pub struct Buffered<L, R> {
    left: BTreeMap<Time, Vec<L>>,
    right: BTreeMap<Time, Vec<R>>,
}

impl<L, R> Default for Buffered<L, R> {
    fn default() -> Self {
        Buffered {
            left: BTreeMap::new(),
            right: BTreeMap::new(),
        }
    }
}

/// A left event at `t` with every right event of its key in
/// `[t - before, t + after]`, emitted when the second of the two comes in.
/// A left event is kept until the watermark passes `t + after`, a right
/// one until it passes `t + before`: no event that could still come (later
/// than the watermark) matches them then.
pub struct IntervalJoin<L, R> {
    before: Time,
    after: Time,
    times: Times<L, R>,
    _t: PhantomData<fn(L, R)>,
}

impl<L, R> IntervalJoin<L, R> {
    /// Right events from `before` before to `after` after each left one,
    /// the sides' event times read by `left` and `right`.
    pub fn new(before: Time, after: Time, left: fn(&L) -> Time, right: fn(&R) -> Time) -> Self {
        IntervalJoin {
            before,
            after,
            times: Times { left, right },
            _t: PhantomData,
        }
    }
}

impl<L, R> Function for IntervalJoin<L, R>
where
    L: Clone + Send + 'static,
    R: Clone + Send + 'static,
{
    type In = Side<L, R>;
    type Out = Joined<L, R>;
    type State = Keyed<Buffered<L, R>>;

    fn on_message(
        &self,
        st: &mut Self::State,
        key: u64,
        e: Side<L, R>,
        ctx: &mut Context<'_, Self::Out>,
    ) {
        let t = self.times.of(&e);
        if t <= ctx.watermark() {
            ctx.late();
            return;
        }
        let b = st.entry(key);
        let keep_until = match e {
            Side::Left(l) => {
                let span = t.saturating_sub(self.before)..=t.saturating_add(self.after);
                for r in b.right.range(span).flat_map(|(_, rs)| rs) {
                    ctx.emit(key, pair(key, &l, r));
                }
                b.left.entry(t).or_default().push(l);
                t.saturating_add(self.after)
            }
            Side::Right(r) => {
                let span = t.saturating_sub(self.after)..=t.saturating_add(self.before);
                for l in b.left.range(span).flat_map(|(_, ls)| ls) {
                    ctx.emit(key, pair(key, l, &r));
                }
                b.right.entry(t).or_default().push(r);
                t.saturating_add(self.before)
            }
        };
        assert!(
            ctx.set_timer(keep_until),
            "a join's timer: the instance holds its most timers"
        );
    }

    fn on_timer(&self, st: &mut Self::State, key: u64, at: Time, _: &mut Context<'_, Self::Out>) {
        let Some(b) = st.get_mut(key) else { return };
        b.left.retain(|t, _| t.saturating_add(self.after) > at);
        b.right.retain(|t, _| t.saturating_add(self.before) > at);
        if b.left.is_empty() && b.right.is_empty() {
            st.remove(key);
        }
    }
}

/// A key's events of a [`KeyedJoin`], in arrival order.
pub struct Sides<L, R> {
    left: Vec<L>,
    right: Vec<R>,
}

impl<L, R> Default for Sides<L, R> {
    fn default() -> Self {
        Sides {
            left: Vec::new(),
            right: Vec::new(),
        }
    }
}

/// Every pair of one key's events, emitted as it forms (an event pairs
/// with every event of the other side that came before it), with no
/// window: a key's state grows with its events, for inputs that are
/// bounded per key (NEXMark's persons and their auctions).
pub struct KeyedJoin<L, R> {
    _t: PhantomData<fn(L, R)>,
}

impl<L, R> Default for KeyedJoin<L, R> {
    fn default() -> Self {
        KeyedJoin { _t: PhantomData }
    }
}

impl<L, R> Function for KeyedJoin<L, R>
where
    L: Clone + Send + 'static,
    R: Clone + Send + 'static,
{
    type In = Side<L, R>;
    type Out = Joined<L, R>;
    type State = Keyed<Sides<L, R>>;

    fn on_message(
        &self,
        st: &mut Self::State,
        key: u64,
        e: Side<L, R>,
        ctx: &mut Context<'_, Self::Out>,
    ) {
        let s = st.entry(key);
        match e {
            Side::Left(l) => {
                for r in &s.right {
                    ctx.emit(key, pair(key, &l, r));
                }
                s.left.push(l);
            }
            Side::Right(r) => {
                for l in &s.left {
                    ctx.emit(key, pair(key, l, &r));
                }
                s.right.push(r);
            }
        }
    }
}
