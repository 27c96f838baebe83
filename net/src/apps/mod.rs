//! The built-in applications: the node catalog's kinds (`catalog::builtin`),
//! the demo's apps and the benchmarks' workloads.
//!
//! Each app does real per-message work (microseconds, configurable) so that
//! scheduling and scaling have something to act on:
//! - `wordcount`: lines -> split (stateless) -> count (`Keyed`, windowed) -> sink
//! - `sensors`: readings -> stats (`Merged` per-sensor aggregates, windowed)
//!   -> sink, and readings -> alerts (stateless filter) -> sink
//! - `clicks`: clicks -> sessions (`Keyed` per user, windowed) -> sink
//!
//! Their windows close on client barriers (the node's `barrier` call);
//! [`timed`] has the same three on event time, the demo's.

pub mod timed;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dirigo_engine::rkyv;
use dirigo_engine::{
    key_hash, App, AppBuilder, Barrier, BarrierKind, Context, Function, Keyed, Merge, Merged,
    SinkReceiver,
};

/// Burn about `us` microseconds of CPU, the stand-in for a function's real
/// work (parsing, model scoring, enrichment).
pub fn spin_work(us: u64) {
    if us == 0 {
        return;
    }
    let until = Instant::now() + Duration::from_micros(us);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while Instant::now() < until {
        for _ in 0..64 {
            x = x.rotate_left(7).wrapping_mul(0xff51_afd7_ed55_8ccd);
        }
        std::hint::black_box(x);
    }
}

/// Outputs of the windowed operators: (window tag, name, value).
pub type WindowRow = (u64, String, f64);

// ---------------------------------------------------------------------
// wordcount
// ---------------------------------------------------------------------

struct Split {
    work_us: u64,
}

impl Function for Split {
    type In = String;
    type Out = String;
    type State = Merged<()>;
    fn on_message(&self, _: &mut Merged<()>, _: u64, line: String, ctx: &mut Context<'_, String>) {
        spin_work(self.work_us);
        for w in line.split_whitespace() {
            ctx.emit(key_hash(w.as_bytes()), w.to_owned());
        }
    }
}

#[derive(Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(crate = dirigo_engine::rkyv)]
struct WordCount {
    word: String,
    count: u64,
}

struct Count {
    work_us: u64,
}

impl Function for Count {
    type In = String;
    type Out = WindowRow;
    type State = Keyed<WordCount>;
    fn on_message(
        &self,
        st: &mut Keyed<WordCount>,
        key: u64,
        word: String,
        _: &mut Context<'_, WindowRow>,
    ) {
        spin_work(self.work_us);
        let e = st.entry(key);
        if e.word.is_empty() {
            e.word = word;
        }
        e.count += 1;
    }
    fn on_critical(
        &self,
        st: &mut Keyed<WordCount>,
        b: &Barrier,
        _: u16,
        ctx: &mut Context<'_, WindowRow>,
    ) {
        if b.kind == BarrierKind::WindowClose {
            for (k, v) in st.drain() {
                ctx.emit(k, (b.tag, v.word, v.count as f64));
            }
        }
    }
}

/// Windowed word count; `work_us` per line (split) and per word (count).
pub fn wordcount(name: &str, slo: Duration, work_us: u64) -> (App, SinkReceiver<WindowRow>) {
    wordcount_app(name, slo, work_us, false)
}

/// The same word count as a durable app: lines go into its ingress log
/// before they are acknowledged, and checkpoints save the counts.
pub fn wordcount_durable(
    name: &str,
    slo: Duration,
    work_us: u64,
) -> (App, SinkReceiver<WindowRow>) {
    wordcount_app(name, slo, work_us, true)
}

fn wordcount_app(
    name: &str,
    slo: Duration,
    work_us: u64,
    durable: bool,
) -> (App, SinkReceiver<WindowRow>) {
    wordcount_on(AppBuilder::new(name).slo(slo), work_us, durable)
        .expect("the built-in wordcount app is valid")
}

/// The word count on a builder whose name and class the caller set (the
/// catalog's): source `lines`, sink `out`.
pub fn wordcount_on(
    mut b: AppBuilder,
    work_us: u64,
    durable: bool,
) -> dirigo_engine::Result<(App, SinkReceiver<WindowRow>)> {
    let count = Count {
        work_us: work_us / 4,
    };
    let counts = if durable {
        b = b.durable();
        let lines = b.durable_source::<String>("lines");
        let words = b.durable_operator("split", Split { work_us }, &[lines]);
        b.durable_operator("count", count, &[words])
    } else {
        let lines = b.source::<String>("lines");
        let words = b.operator("split", Split { work_us }, &[lines]);
        b.operator("count", count, &[words])
    };
    let rx = b.sink("out", counts);
    Ok((b.build()?, rx))
}

// ---------------------------------------------------------------------
// sensors
// ---------------------------------------------------------------------

/// A sensor reading, the input of the `sensors` app.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(crate = dirigo_engine::rkyv)]
pub struct Reading {
    /// The sensor; `stats` aggregates per sensor.
    pub sensor: u32,
    /// The value read; `alerts` passes on the readings above 0.99.
    pub value: f64,
}

/// A sensor's readings in one window: count, sum, least and greatest
/// (`Default` is the empty aggregate, the identity of its `Merge`).
#[derive(Clone, Copy, Debug)]
struct Agg {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Agg {
    fn default() -> Self {
        Agg {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Merge for Agg {
    fn merge(&mut self, o: Agg) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

struct Stats {
    work_us: u64,
}

impl Function for Stats {
    type In = Reading;
    type Out = WindowRow;
    type State = Merged<HashMap<u32, Agg>>;
    fn on_message(
        &self,
        st: &mut Merged<HashMap<u32, Agg>>,
        _: u64,
        r: Reading,
        _: &mut Context<'_, WindowRow>,
    ) {
        spin_work(self.work_us);
        let a = st.0.entry(r.sensor).or_default();
        a.merge(Agg {
            count: 1,
            sum: r.value,
            min: r.value,
            max: r.value,
        });
    }
    fn on_critical(
        &self,
        st: &mut Merged<HashMap<u32, Agg>>,
        b: &Barrier,
        _: u16,
        ctx: &mut Context<'_, WindowRow>,
    ) {
        if b.kind == BarrierKind::WindowClose {
            for (sensor, a) in st.0.drain() {
                ctx.emit(
                    sensor as u64,
                    (
                        b.tag,
                        format!("sensor{sensor}.mean"),
                        a.sum / a.count.max(1) as f64,
                    ),
                );
            }
        }
    }
}

struct Alerts {
    threshold: f64,
    work_us: u64,
}

impl Function for Alerts {
    type In = Reading;
    type Out = Reading;
    type State = Merged<()>;
    fn on_message(&self, _: &mut Merged<()>, key: u64, r: Reading, ctx: &mut Context<'_, Reading>) {
        spin_work(self.work_us);
        if r.value > self.threshold {
            ctx.emit(key, r);
        }
    }
}

/// Sensor aggregates per window, plus threshold alerts.
pub fn sensors(
    name: &str,
    slo: Duration,
    work_us: u64,
) -> (App, SinkReceiver<WindowRow>, SinkReceiver<Reading>) {
    sensors_on(AppBuilder::new(name).slo(slo), work_us).expect("the built-in sensors app is valid")
}

/// The sensors app on a builder whose name and class the caller set:
/// source `readings`, sinks `out` and `alert-sink`.
pub fn sensors_on(
    mut b: AppBuilder,
    work_us: u64,
) -> dirigo_engine::Result<(App, SinkReceiver<WindowRow>, SinkReceiver<Reading>)> {
    let readings = b.source::<Reading>("readings");
    let stats = b.operator("stats", Stats { work_us }, &[readings]);
    let alerts = b.operator(
        "alerts",
        Alerts {
            threshold: 0.99,
            work_us: work_us / 2,
        },
        &[readings],
    );
    let rx = b.sink("out", stats);
    let alerts_rx = b.sink("alert-sink", alerts);
    Ok((b.build()?, rx, alerts_rx))
}

// ---------------------------------------------------------------------
// clicks (best effort, heavy)
// ---------------------------------------------------------------------

/// A page view, the input of the `clicks` app.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(crate = dirigo_engine::rkyv)]
pub struct Click {
    /// The user; `sessions` keeps a session per event key (the demo keys
    /// each click by the user's hash).
    pub user: u64,
    /// The page viewed, folded into the session's page hash.
    pub page: u32,
}

#[derive(Default)]
struct Session {
    clicks: u64,
    pages: u64,
}

struct Sessions {
    work_us: u64,
}

impl Function for Sessions {
    type In = Click;
    type Out = WindowRow;
    type State = Keyed<Session>;
    fn on_message(
        &self,
        st: &mut Keyed<Session>,
        key: u64,
        c: Click,
        _: &mut Context<'_, WindowRow>,
    ) {
        spin_work(self.work_us);
        let s = st.entry(key);
        s.clicks += 1;
        s.pages = s.pages.wrapping_mul(31).wrapping_add(c.page as u64);
    }
    fn on_critical(
        &self,
        st: &mut Keyed<Session>,
        b: &Barrier,
        _: u16,
        ctx: &mut Context<'_, WindowRow>,
    ) {
        if b.kind == BarrierKind::WindowClose {
            let users = st.len();
            let clicks: u64 = st.drain().map(|(_, s)| s.clicks).sum();
            ctx.emit(
                0,
                (
                    b.tag,
                    format!("clicks/user over {users} users"),
                    clicks as f64 / users.max(1) as f64,
                ),
            );
        }
    }
}

/// Per-user sessions; best effort.
pub fn clicks(name: &str, work_us: u64) -> (App, SinkReceiver<WindowRow>) {
    clicks_on(AppBuilder::new(name).best_effort(), work_us)
        .expect("the built-in clicks app is valid")
}

/// The clicks app on a builder whose name and class the caller set:
/// source `clicks`, sink `out`.
pub fn clicks_on(
    mut b: AppBuilder,
    work_us: u64,
) -> dirigo_engine::Result<(App, SinkReceiver<WindowRow>)> {
    let clicks = b.source::<Click>("clicks");
    let sessions = b.operator("sessions", Sessions { work_us }, &[clicks]);
    let rx = b.sink("out", sessions);
    Ok((b.build()?, rx))
}

// ---------------------------------------------------------------------
// the generic keyed aggregate
// ---------------------------------------------------------------------

/// The keyed aggregate's event: a key and a number (over HTTP the catalog
/// takes them from two fields of a JSON object, its `key_field` and
/// `value_field` parameters).
#[derive(
    Clone,
    Debug,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(crate = dirigo_engine::rkyv)]
pub struct Row {
    /// The key the aggregate groups by.
    pub key: String,
    /// The number it aggregates.
    pub value: f64,
}

/// What the keyed aggregate computes per key and window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggFn {
    /// How many events.
    Count,
    /// Their sum.
    Sum,
    /// The least value.
    Min,
    /// The greatest value.
    Max,
    /// The mean value.
    Mean,
}

/// One key's running aggregate in the open window.
#[derive(Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(crate = dirigo_engine::rkyv)]
struct RowAgg {
    key: String,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl RowAgg {
    fn add(&mut self, row: Row) {
        if self.count == 0 {
            (self.min, self.max) = (row.value, row.value);
            self.key = row.key;
        }
        self.count += 1;
        self.sum += row.value;
        self.min = self.min.min(row.value);
        self.max = self.max.max(row.value);
    }

    fn result(&self, f: AggFn) -> f64 {
        match f {
            AggFn::Count => self.count as f64,
            AggFn::Sum => self.sum,
            AggFn::Min => self.min,
            AggFn::Max => self.max,
            AggFn::Mean => self.sum / self.count.max(1) as f64,
        }
    }
}

struct Aggregate {
    f: AggFn,
}

impl Function for Aggregate {
    type In = Row;
    type Out = WindowRow;
    type State = Keyed<RowAgg>;
    fn on_message(
        &self,
        st: &mut Keyed<RowAgg>,
        key: u64,
        row: Row,
        _: &mut Context<'_, WindowRow>,
    ) {
        st.entry(key).add(row);
    }
    fn on_critical(
        &self,
        st: &mut Keyed<RowAgg>,
        b: &Barrier,
        _: u16,
        ctx: &mut Context<'_, WindowRow>,
    ) {
        if b.kind == BarrierKind::WindowClose {
            for (k, a) in st.drain() {
                let value = a.result(self.f);
                ctx.emit(k, (b.tag, a.key, value));
            }
        }
    }
}

/// A keyed aggregate closed by window barriers: source `events` of
/// [`Row`]s keyed by `key_hash(row.key)`, sink `out` of one
/// `(window, key, f(values))` per key seen in the window.
pub fn aggregate_on(
    mut b: AppBuilder,
    f: AggFn,
    durable: bool,
) -> dirigo_engine::Result<(App, SinkReceiver<WindowRow>)> {
    let agg = if durable {
        b = b.durable();
        let rows = b.durable_source::<Row>("events");
        b.durable_operator("aggregate", Aggregate { f }, &[rows])
    } else {
        let rows = b.source::<Row>("events");
        b.operator("aggregate", Aggregate { f }, &[rows])
    };
    let rx = b.sink("out", agg);
    Ok((b.build()?, rx))
}

// ---------------------------------------------------------------------
// checkpointed state as JSON (`dirigo inspect --dump`)
// ---------------------------------------------------------------------

/// A durable `wordcount` operator's checkpointed state as JSON: `count`'s
/// open window as `[{"word", "count"}]` by word; `split` keeps none.
/// `None` for another operator or a state of another type.
pub fn wordcount_state_json(op: &str, state: Box<dyn std::any::Any>) -> Option<serde_json::Value> {
    match op {
        "split" => Some(serde_json::Value::Null),
        "count" => {
            let s = state.downcast::<Keyed<WordCount>>().ok()?;
            let mut rows: Vec<_> = s.iter().map(|(_, w)| (w.word.clone(), w.count)).collect();
            rows.sort();
            let rows = rows
                .into_iter()
                .map(|(word, count)| serde_json::json!({"word": word, "count": count}));
            Some(serde_json::Value::Array(rows.collect()))
        }
        _ => None,
    }
}

/// A durable `aggregate` operator's checkpointed state as JSON: the open
/// window's `[{"key", "count", "sum", "min", "max"}]` by key.
pub fn aggregate_state_json(op: &str, state: Box<dyn std::any::Any>) -> Option<serde_json::Value> {
    if op != "aggregate" {
        return None;
    }
    let s = state.downcast::<Keyed<RowAgg>>().ok()?;
    let mut rows: Vec<&RowAgg> = s.iter().map(|(_, a)| a).collect();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    let rows = rows.into_iter().map(|a| {
        serde_json::json!({"key": a.key, "count": a.count, "sum": a.sum, "min": a.min, "max": a.max})
    });
    Some(serde_json::Value::Array(rows.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_work_takes_about_the_asked_time() {
        let t = Instant::now();
        spin_work(200);
        assert!(t.elapsed() >= Duration::from_micros(200));
    }

    #[test]
    fn agg_merge_is_the_aggregate_of_the_union() {
        let mut a = Agg::default();
        a.merge(Agg {
            count: 2,
            sum: 3.0,
            min: 1.0,
            max: 2.0,
        });
        a.merge(Agg {
            count: 1,
            sum: 5.0,
            min: 5.0,
            max: 5.0,
        });
        assert_eq!((a.count, a.sum, a.min, a.max), (3, 8.0, 1.0, 5.0));
    }
}
