//! A durable app on event time and its sequential oracle, for the crash
//! test: its windows and their timers must come through SIGKILLs exactly
//! once.
//!
//! `events` (durable source of [`TEv`] on event time, out of order within
//! [`BOUND`], so nothing is late) feeds
//! - `windows`: per user, tumbling windows of [`WINDOW`] counted on
//!   event-time timers; a window's count goes out when the watermark
//!   passes it;
//! - `fired`: per user, the counts of the windows that fired, summed.
//!
//! A `Query` barrier makes `windows` report its open windows and `fired`
//! the fired ones ([`query`]). Exactly once means: over the events in the
//! log, each window's count is in exactly one of the two, equal to the
//! oracle's, open windows are those the final watermark has not passed,
//! and fired ones those it has (a timer lost in a checkpoint would leave
//! its window open behind the watermark; one fired twice would count it
//! twice).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use dirigo_engine::protocol::EdgeId;
use dirigo_engine::rkyv;
use dirigo_engine::{
    key_hash, App, AppBuilder, AppHandle, Barrier, BarrierKind, Context, EventTime, Function,
    Keyed, SinkEvent, SinkReceiver, Time,
};

/// Windows' length, event-time units.
pub(crate) const WINDOW: Time = 1_000;
/// How far out of order events come (and the source's bound).
pub(crate) const BOUND: Time = 60;
const USERS: u64 = 7;

/// An event: a unique, increasing id, and its time.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq)]
#[rkyv(crate = dirigo_engine::rkyv)]
pub(crate) struct TEv {
    pub id: u64,
    pub ts: Time,
}

/// Event `id` (keyed by its user): 10 units after the one before, up to
/// `BOUND - 1` back.
pub(crate) fn event(id: u64) -> (u64, TEv) {
    let back = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58; // 0..64
    let ts = 1_000 + 10 * id - back.min(BOUND - 1);
    (user_key(id % USERS), TEv { id, ts })
}

fn user_key(user: u64) -> u64 {
    key_hash(&user.to_le_bytes())
}

/// What the sink sees: a window's count, still open or fired.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum WOut {
    Fired(u64, Time, u64),
    Open(u64, Time, u64),
    Done(u64, Time, u64),
}

struct Windows;

impl Function for Windows {
    type In = TEv;
    type Out = WOut;
    type State = Keyed<BTreeMap<Time, u64>>;
    fn on_message(&self, st: &mut Self::State, key: u64, e: TEv, ctx: &mut Context<'_, WOut>) {
        let start = e.ts / WINDOW * WINDOW;
        assert!(start + WINDOW - 1 > ctx.watermark(), "nothing is late here");
        *st.entry(key).entry(start).or_default() += 1;
        assert!(ctx.set_timer(start + WINDOW - 1));
    }
    fn on_timer(&self, st: &mut Self::State, key: u64, at: Time, ctx: &mut Context<'_, WOut>) {
        let start = at + 1 - WINDOW;
        let w = st.entry(key);
        let n = w.remove(&start).expect("a timer's window is open");
        if w.is_empty() {
            st.remove(key);
        }
        ctx.emit(key, WOut::Fired(key, start, n));
    }
    fn on_critical(
        &self,
        st: &mut Self::State,
        b: &Barrier,
        _: EdgeId,
        ctx: &mut Context<'_, WOut>,
    ) {
        if b.kind == BarrierKind::Query {
            for (key, w) in st.iter() {
                for (&start, &n) in w {
                    ctx.emit(key, WOut::Open(key, start, n));
                }
            }
        }
    }
}

struct Fired;

impl Function for Fired {
    type In = WOut;
    type Out = WOut;
    type State = Keyed<BTreeMap<Time, u64>>;
    fn on_message(&self, st: &mut Self::State, key: u64, o: WOut, ctx: &mut Context<'_, WOut>) {
        match o {
            WOut::Fired(k, start, n) => {
                let sum = st.entry(key).entry(start).or_default();
                assert_eq!(*sum, 0, "window {start} of {k:x} fired twice");
                *sum += n;
            }
            open => ctx.emit(key, open),
        }
    }
    fn on_critical(
        &self,
        st: &mut Self::State,
        b: &Barrier,
        _: EdgeId,
        ctx: &mut Context<'_, WOut>,
    ) {
        if b.kind == BarrierKind::Query {
            for (key, w) in st.iter() {
                for (&start, &n) in w {
                    ctx.emit(key, WOut::Done(key, start, n));
                }
            }
        }
    }
}

/// The durable app, named `name`.
pub(crate) fn app(name: &str) -> (App, SinkReceiver<WOut>) {
    let mut b = AppBuilder::new(name)
        .slo(Duration::from_millis(200))
        .durable();
    let ev = b.durable_source::<TEv>("events");
    b.event_time(ev, EventTime::new(|e: &TEv| e.ts).out_of_orderness(BOUND));
    let windows = b.durable_operator("windows", Windows, &[ev]);
    let fired = b.durable_operator("fired", Fired, &[windows]);
    let rx = b.sink("out", fired);
    (b.build().expect("the windowed app is valid"), rx)
}

/// Windows by (user key, start): the count, and whether it fired.
pub(crate) type Report = BTreeMap<(u64, Time), (u64, bool)>;

/// Inject a `Query` barrier and collect the open and fired windows (a
/// window in both is a failure).
pub(crate) fn query(h: &AppHandle, rx: &SinkReceiver<WOut>) -> Report {
    h.quiesce(Duration::from_secs(30))
        .expect("drains before the query");
    rx.drain();
    h.inject_barrier(BarrierKind::Query, 0)
        .expect("query barrier");
    let mut report = Report::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Some(SinkEvent::Data { value, .. }) => {
                let (k, start, n, fired) = match value {
                    WOut::Open(k, s, n) => (k, s, n, false),
                    WOut::Done(k, s, n) => (k, s, n, true),
                    WOut::Fired(..) => unreachable!("`fired` keeps those"),
                };
                let old = report.insert((k, start), (n, fired));
                assert!(old.is_none(), "window {start} of {k:x} reported twice");
            }
            Some(SinkEvent::Barrier(b)) if b.kind == BarrierKind::Query => return report,
            Some(SinkEvent::Barrier(_)) => {}
            None => panic!("no answer to the query barrier within 30 s"),
        }
    }
}

/// What a sequential run over events `0..n` reports: every window's
/// count, fired when the final watermark (the latest time less the bound)
/// passed its last instant.
pub(crate) fn oracle(n: u64) -> Report {
    let mut counts: BTreeMap<(u64, Time), u64> = BTreeMap::new();
    let mut latest = 0;
    for id in 0..n {
        let (k, e) = event(id);
        latest = latest.max(e.ts);
        *counts.entry((k, e.ts / WINDOW * WINDOW)).or_default() += 1;
    }
    let wm = latest.saturating_sub(BOUND);
    counts
        .into_iter()
        .map(|((k, s), n)| ((k, s), (n, s + WINDOW - 1 <= wm)))
        .collect()
}
