//! The demo's three apps on event time: the workloads of `apps`, their
//! windows closed by watermarks instead of client barriers.
//!
//! Every event carries its event time, ms (the load generator stamps it
//! when it makes the event); each source lets events come up to
//! [`BOUND_MS`] out of order and sends at most one watermark per
//! [`MARK_PERIOD`]. A window's result is emitted once the watermark passes
//! its end, on the instance that owns its key (no barrier, no
//! consolidation):
//! - `wordcount`: lines -> split -> per word, tumbling windows of
//!   [`WINDOW_MS`] (a durable function of its own, so the durable
//!   wordcount checkpoints its windows with their timers);
//! - `sensors`: per sensor, the mean reading over tumbling windows of
//!   [`WINDOW_MS`] (the library's `Window`), plus threshold alerts;
//! - `clicks`: per user, sessions closed after [`SESSION_GAP_MS`] without
//!   a click (the library's session `Window`).
//!
//! Outputs are [`WindowRow`]s tagged with the window's start (ms). To
//! close every window at the end of a run, the volatile sources take a
//! client's watermark at `Time::MAX`; the durable source refuses client
//! watermarks (they are not logged), so it takes [`end_of_lines`], an
//! empty line at the end of time, which is logged and replayed like any.

use std::time::Duration;

use dirigo_engine::rkyv;
use dirigo_engine::{
    key_hash, Agg, App, AppBuilder, Context, EventTime, Function, Keyed, Merged, SinkReceiver,
    Time, Window, WindowResult, Windows,
};

use super::{spin_work, Click, Reading, WindowRow};

/// Length of the tumbling windows, ms of event time.
pub const WINDOW_MS: Time = 1_000;
/// How far out of order events may come, ms.
pub const BOUND_MS: Time = 50;
/// The quiet that ends a clicks session, ms.
pub const SESSION_GAP_MS: Time = 2_000;
/// At most one watermark per source per this long.
pub const MARK_PERIOD: Duration = Duration::from_millis(10);

/// A line of text at event time `ts` (ms).
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(crate = dirigo_engine::rkyv)]
pub struct Line {
    /// Event time, ms.
    pub ts: Time,
    /// The text.
    pub text: String,
}

/// The line that ends a durable wordcount's run: no words, at the end of
/// time, so its watermark closes every window.
pub fn end_of_lines() -> Line {
    Line {
        ts: Time::MAX,
        text: String::new(),
    }
}

/// A reading at event time `ts` (ms).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimedReading {
    /// Event time, ms.
    pub ts: Time,
    /// The reading.
    pub reading: Reading,
}

/// A click at event time `ts` (ms).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimedClick {
    /// Event time, ms.
    pub ts: Time,
    /// The click.
    pub click: Click,
}

// ---------------------------------------------------------------------
// wordcount
// ---------------------------------------------------------------------

struct Split {
    work_us: u64,
}

impl Function for Split {
    type In = Line;
    type Out = (Time, String);
    type State = Merged<()>;
    fn on_message(&self, _: &mut Merged<()>, _: u64, l: Line, ctx: &mut Context<'_, Self::Out>) {
        spin_work(self.work_us);
        for w in l.text.split_whitespace() {
            ctx.emit(key_hash(w.as_bytes()), (l.ts, w.to_owned()));
        }
    }
}

/// A word's open windows: (start, count), and the word.
#[derive(Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(crate = dirigo_engine::rkyv)]
struct WordWindows {
    word: String,
    open: Vec<(Time, u64)>,
}

/// Counts each word per tumbling window of event time; a window's count
/// goes out when the watermark passes its last instant, a word at or
/// before the watermark is late (counted, dropped).
struct Count {
    work_us: u64,
}

impl Function for Count {
    type In = (Time, String);
    type Out = WindowRow;
    type State = Keyed<WordWindows>;
    fn on_message(
        &self,
        st: &mut Keyed<WordWindows>,
        key: u64,
        (ts, word): (Time, String),
        ctx: &mut Context<'_, WindowRow>,
    ) {
        spin_work(self.work_us);
        let start = ts / WINDOW_MS * WINDOW_MS;
        let last = start + WINDOW_MS - 1;
        if last <= ctx.watermark() {
            ctx.late();
            return;
        }
        let e = st.entry(key);
        if e.word.is_empty() {
            e.word = word;
        }
        match e.open.iter_mut().find(|(s, _)| *s == start) {
            Some((_, n)) => *n += 1,
            None => {
                e.open.push((start, 1));
                // A refused timer (the instance holds its most) would lose
                // the window: count the word late instead.
                if !ctx.set_timer(last) {
                    e.open.pop();
                    ctx.late();
                }
            }
        }
    }
    fn on_timer(
        &self,
        st: &mut Keyed<WordWindows>,
        key: u64,
        at: Time,
        ctx: &mut Context<'_, WindowRow>,
    ) {
        let Some(e) = st.get_mut(key) else { return };
        let start = at + 1 - WINDOW_MS;
        if let Some(i) = e.open.iter().position(|(s, _)| *s == start) {
            let (_, n) = e.open.swap_remove(i);
            ctx.emit(key, (start, e.word.clone(), n as f64));
        }
        if e.open.is_empty() {
            st.remove(key);
        }
    }
}

/// The word count on event time, on a builder whose name and class the
/// caller set: source `lines` (of [`Line`]), sink `out`; durable (log,
/// checkpoints of the windows and their timers) when asked.
pub fn wordcount_on(
    mut b: AppBuilder,
    work_us: u64,
    durable: bool,
) -> dirigo_engine::Result<(App, SinkReceiver<WindowRow>)> {
    let count = Count {
        work_us: work_us / 4,
    };
    let time = EventTime::new(|l: &Line| l.ts)
        .out_of_orderness(BOUND_MS)
        .period(MARK_PERIOD);
    let counts = if durable {
        b = b.durable();
        let lines = b.durable_source::<Line>("lines");
        b.event_time(lines, time);
        let words = b.durable_operator("split", Split { work_us }, &[lines]);
        b.durable_operator("count", count, &[words])
    } else {
        let lines = b.source::<Line>("lines");
        b.event_time(lines, time);
        let words = b.operator("split", Split { work_us }, &[lines]);
        b.operator("count", count, &[words])
    };
    let rx = b.sink("out", counts);
    Ok((b.build()?, rx))
}

/// The event-time word count named `name` with SLO `slo`.
pub fn wordcount(
    name: &str,
    slo: Duration,
    work_us: u64,
    durable: bool,
) -> (App, SinkReceiver<WindowRow>) {
    wordcount_on(AppBuilder::new(name).slo(slo), work_us, durable)
        .expect("the built-in event-time wordcount is valid")
}

// ---------------------------------------------------------------------
// sensors and clicks, on the library's windows
// ---------------------------------------------------------------------

/// A window's result as a row: its start, `label` of its key, its value.
struct ToRow {
    label: fn(u64) -> String,
}

impl Function for ToRow {
    type In = WindowResult<f64>;
    type Out = WindowRow;
    type State = Merged<()>;
    fn on_message(
        &self,
        _: &mut Merged<()>,
        key: u64,
        r: WindowResult<f64>,
        ctx: &mut Context<'_, WindowRow>,
    ) {
        ctx.emit(key, (r.start, (self.label)(r.key), r.value));
    }
}

/// Its events on, after about `work_us` of work each (the stand-in for
/// parsing or enrichment ahead of a window).
struct Busy<T> {
    work_us: u64,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T> Busy<T> {
    fn new(work_us: u64) -> Self {
        Busy {
            work_us,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: Clone + Send + 'static> Function for Busy<T> {
    type In = T;
    type Out = T;
    type State = Merged<()>;
    fn on_message(&self, _: &mut Merged<()>, key: u64, v: T, ctx: &mut Context<'_, T>) {
        spin_work(self.work_us);
        ctx.emit(key, v);
    }
}

struct Alerts {
    threshold: f64,
    work_us: u64,
}

impl Function for Alerts {
    type In = TimedReading;
    type Out = Reading;
    type State = Merged<()>;
    fn on_message(
        &self,
        _: &mut Merged<()>,
        key: u64,
        r: TimedReading,
        ctx: &mut Context<'_, Reading>,
    ) {
        spin_work(self.work_us);
        if r.reading.value > self.threshold {
            ctx.emit(key, r.reading);
        }
    }
}

/// Per sensor (the event key is the sensor's number), the mean reading
/// per tumbling window of event time, plus threshold alerts: source
/// `readings` (of [`TimedReading`]), sinks `out` and `alert-sink`.
pub fn sensors(
    name: &str,
    slo: Duration,
    work_us: u64,
) -> (App, SinkReceiver<WindowRow>, SinkReceiver<Reading>) {
    let mut b = AppBuilder::new(name).slo(slo);
    let readings = b.source::<TimedReading>("readings");
    b.event_time(
        readings,
        EventTime::new(|r: &TimedReading| r.ts)
            .out_of_orderness(BOUND_MS)
            .period(MARK_PERIOD),
    );
    let mean = Window::new(
        Windows::Tumbling { size: WINDOW_MS },
        |r: &TimedReading| r.ts,
        Agg::mean(|r: &TimedReading| r.reading.value),
    );
    let parsed = b.operator("parse", Busy::new(work_us), &[readings]);
    let (means, _late) = b.window("stats", mean, parsed);
    let rows = b.operator(
        "stats.rows",
        ToRow {
            label: |sensor| format!("sensor{sensor}.mean"),
        },
        &[means],
    );
    let alerts = b.operator(
        "alerts",
        Alerts {
            threshold: 0.99,
            work_us: work_us / 2,
        },
        &[readings],
    );
    let rx = b.sink("out", rows);
    let alerts_rx = b.sink("alert-sink", alerts);
    let app = b
        .build()
        .expect("the built-in event-time sensors app is valid");
    (app, rx, alerts_rx)
}

/// Per user, the clicks of each session (closed after `SESSION_GAP_MS`
/// of event time without one), `work_us` per click ahead of the window;
/// best effort: source `clicks` (of [`TimedClick`]), sink `out`.
pub fn clicks(name: &str, work_us: u64) -> (App, SinkReceiver<WindowRow>) {
    let mut b = AppBuilder::new(name).best_effort();
    let clicks = b.source::<TimedClick>("clicks");
    b.event_time(
        clicks,
        EventTime::new(|c: &TimedClick| c.ts)
            .out_of_orderness(BOUND_MS)
            .period(MARK_PERIOD),
    );
    let sessions = Window::new(
        Windows::Session {
            gap: SESSION_GAP_MS,
        },
        |c: &TimedClick| c.ts,
        Agg::count(),
    );
    let enriched = b.operator("enrich", Busy::new(work_us), &[clicks]);
    let (counts, _late) = b.window("sessions", sessions, enriched);
    let rows = b.operator(
        "sessions.rows",
        ToRow {
            label: |user| format!("clicks of user {user:x}'s session"),
        },
        &[counts],
    );
    let rx = b.sink("out", rows);
    let app = b
        .build()
        .expect("the built-in event-time clicks app is valid");
    (app, rx)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dirigo_engine::{Node, NodeConfig, Placement, SinkEvent};

    use super::*;

    fn node() -> Node {
        Node::start(NodeConfig {
            shards: 2,
            placement: Placement::Unpinned,
            ..Default::default()
        })
        .expect("node starts")
    }

    fn rows(rx: &SinkReceiver<WindowRow>) -> Vec<WindowRow> {
        rx.drain()
            .into_iter()
            .filter_map(|e| match e {
                SinkEvent::Data { value, .. } => Some(value),
                SinkEvent::Barrier(_) => None,
            })
            .collect()
    }

    /// Event time `i`-th: 10 ms apart, up to 40 ms out of order (within
    /// the bound: nothing is late).
    fn ts(i: u64) -> Time {
        1_000 + i * 10 - (i * 7919 % 41)
    }

    #[test]
    fn the_wordcount_counts_each_word_per_window_of_event_time() {
        let node = node();
        let (app, rx) = wordcount("wc", Duration::from_millis(100), 0, false);
        let h = node.deploy(app).expect("deploys");
        let src = h.source::<Line>("lines").expect("source");
        let mut want: BTreeMap<(Time, String), f64> = BTreeMap::new();
        let lines: Vec<(u64, Line)> = (0..600u64)
            .map(|i| {
                let text = format!("w{} w{} w{}", i % 3, i % 5, i % 7);
                for w in text.split_whitespace() {
                    *want
                        .entry((ts(i) / WINDOW_MS * WINDOW_MS, w.into()))
                        .or_default() += 1.0;
                }
                (0, Line { ts: ts(i), text })
            })
            .collect();
        for chunk in lines.chunks(25) {
            src.send_batch(chunk.to_vec(), Duration::from_secs(5))
                .expect("accepted");
        }
        src.watermark(Time::MAX).expect("the last watermark");
        h.quiesce(Duration::from_secs(30)).expect("quiesces");
        let got: BTreeMap<(Time, String), f64> = rows(&rx)
            .into_iter()
            .map(|(start, word, n)| ((start, word), n))
            .collect();
        assert_eq!(got, want);
        assert!(
            got.keys()
                .map(|(s, _)| s)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 3
        );
        node.shutdown();
    }

    #[test]
    fn sensors_report_each_sensors_mean_per_window_and_clicks_their_sessions() {
        let node = node();
        let (app, rx, _alerts) = sensors("se", Duration::from_millis(100), 0);
        let h = node.deploy(app).expect("deploys");
        let src = h.source::<TimedReading>("readings").expect("source");
        let mut sums: BTreeMap<(Time, u64), (f64, f64)> = BTreeMap::new();
        let readings: Vec<(u64, TimedReading)> = (0..500u64)
            .map(|i| {
                let sensor = (i % 4) as u32;
                let value = (i % 10) as f64 / 10.0;
                let s = sums
                    .entry((ts(i) / WINDOW_MS * WINDOW_MS, sensor as u64))
                    .or_default();
                *s = (s.0 + value, s.1 + 1.0);
                let reading = Reading { sensor, value };
                (sensor as u64, TimedReading { ts: ts(i), reading })
            })
            .collect();
        for chunk in readings.chunks(20) {
            src.send_batch(chunk.to_vec(), Duration::from_secs(5))
                .expect("accepted");
        }
        src.watermark(Time::MAX).expect("the last watermark");
        h.quiesce(Duration::from_secs(30)).expect("quiesces");
        let got = rows(&rx);
        assert_eq!(got.len(), sums.len());
        for (start, label, mean) in got {
            let sensor: u64 = label["sensor".len()..label.len() - ".mean".len()]
                .parse()
                .expect("a sensor's label");
            let (sum, n) = sums[&(start, sensor)];
            assert!((mean - sum / n).abs() < 1e-9, "{label} at {start}: {mean}");
        }

        // Clicks: three bursts per user, apart by more than the gap.
        let (app, rx) = clicks("cl", 0);
        let h = node.deploy(app).expect("deploys");
        let src = h.source::<TimedClick>("clicks").expect("source");
        for burst in 0..3u64 {
            let batch: Vec<(u64, TimedClick)> = (0..30u64)
                .map(|i| {
                    let user = i % 3;
                    let click = Click { user, page: 1 };
                    let ts = 10_000 + burst * 3 * SESSION_GAP_MS + i * 5;
                    (key_hash(&user.to_le_bytes()), TimedClick { ts, click })
                })
                .collect();
            src.send_batch(batch, Duration::from_secs(5))
                .expect("accepted");
        }
        src.watermark(Time::MAX).expect("the last watermark");
        h.quiesce(Duration::from_secs(30)).expect("quiesces");
        let got = rows(&rx);
        assert_eq!(got.len(), 9, "three sessions of three users: {got:?}");
        assert!(got.iter().all(|(_, _, n)| *n == 10.0), "{got:?}");
        node.shutdown();
    }
}
