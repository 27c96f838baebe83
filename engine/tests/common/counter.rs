//! A durable test app and its sequential oracle, shared by the durability
//! tests and the crash test.
//!
//! `events` (durable source of [`Ev`], keyed by word) feeds
//! - `counts`: `Keyed` per-word tally of the current window (reset at each
//!   window close), which also checks per-key FIFO: ids of one word must
//!   arrive increasing (a replay out of order or twice shows as `disorder`);
//! - `total`: `Merged` sum and count of every event ever taken (never reset).
//!
//! A `Query` barrier makes both emit their whole state to the sink, which
//! [`query`] collects: the state a test compares with [`oracle`].
//!
//! Included by path from several test binaries, each using part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use dirigo_engine::protocol::EdgeId;
use dirigo_engine::rkyv;
use dirigo_engine::{
    key_hash, App, AppBuilder, AppHandle, Barrier, BarrierKind, Context, Function, Keyed, Merge,
    Merged, SinkEvent, SinkReceiver,
};

/// An input event: word `word` seen, with a unique, increasing id.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq)]
#[rkyv(crate = dirigo_engine::rkyv)]
pub(crate) struct Ev {
    pub id: u64,
    pub word: u32,
}

/// Words of event `id` (a fixed spread, so a test can recompute it).
pub(crate) fn word_of(id: u64) -> u32 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u32 % 97
}

pub(crate) fn event(id: u64) -> (u64, Ev) {
    let word = word_of(id);
    (key_hash(&word.to_le_bytes()), Ev { id, word })
}

/// Per-word state of the current window.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, Default, PartialEq)]
#[rkyv(crate = dirigo_engine::rkyv)]
pub(crate) struct Tally {
    pub word: u32,
    pub n: u64,
    pub id_sum: u64,
    pub last_id: u64,
    /// Events of this word that arrived with an id not above the last one.
    pub disorder: u64,
}

/// What the sink sees.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Out {
    Word(Tally),
    Total { n: u64, id_sum: u64 },
}

struct Counts;

impl Function for Counts {
    type In = Ev;
    type Out = Out;
    type State = Keyed<Tally>;

    fn on_message(&self, s: &mut Keyed<Tally>, key: u64, e: Ev, _: &mut Context<'_, Out>) {
        let t = s.entry(key);
        if t.n > 0 && e.id <= t.last_id {
            t.disorder += 1;
        }
        t.word = e.word;
        t.n += 1;
        t.id_sum += e.id;
        t.last_id = e.id;
    }

    fn on_critical(
        &self,
        s: &mut Keyed<Tally>,
        b: &Barrier,
        _: EdgeId,
        ctx: &mut Context<'_, Out>,
    ) {
        match b.kind {
            BarrierKind::WindowClose => {
                // Only the per-key order check survives a window.
                for (_, t) in s.iter_mut() {
                    *t = Tally {
                        word: t.word,
                        last_id: t.last_id,
                        disorder: t.disorder,
                        ..Tally::default()
                    };
                }
            }
            BarrierKind::Query => {
                for (k, t) in s.iter() {
                    ctx.emit(k, Out::Word(t.clone()));
                }
            }
            BarrierKind::Checkpoint => {}
        }
    }
}

/// Running totals of every event.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Copy, Debug, Default)]
#[rkyv(crate = dirigo_engine::rkyv)]
pub(crate) struct Sum {
    pub n: u64,
    pub id_sum: u64,
}

impl Merge for Sum {
    fn merge(&mut self, o: Sum) {
        self.n += o.n;
        self.id_sum = self.id_sum.wrapping_add(o.id_sum);
    }
}

struct Total;

impl Function for Total {
    type In = Ev;
    type Out = Out;
    type State = Merged<Sum>;

    fn on_message(&self, s: &mut Merged<Sum>, _: u64, e: Ev, _: &mut Context<'_, Out>) {
        s.0.n += 1;
        s.0.id_sum = s.0.id_sum.wrapping_add(e.id);
    }

    fn on_critical(&self, s: &mut Merged<Sum>, b: &Barrier, _: EdgeId, ctx: &mut Context<'_, Out>) {
        if b.kind == BarrierKind::Query {
            ctx.emit(
                0,
                Out::Total {
                    n: s.0.n,
                    id_sum: s.0.id_sum,
                },
            );
        }
    }
}

/// The durable app, named `name`.
pub(crate) fn app(name: &str) -> (App, SinkReceiver<Out>) {
    let mut b = AppBuilder::new(name)
        .slo(Duration::from_millis(200))
        .durable();
    let ev = b.durable_source::<Ev>("events");
    let counts = b.durable_operator("counts", Counts, &[ev]);
    let total = b.durable_operator("total", Total, &[ev]);
    let out = b.durable_operator("merge", Union, &[counts, total]);
    let rx = b.sink("out", out);
    (b.build().expect("the counter app is valid"), rx)
}

/// Joins both operators' outputs into one sink.
struct Union;

impl Function for Union {
    type In = Out;
    type Out = Out;
    type State = Merged<()>;
    fn on_message(&self, _: &mut Merged<()>, key: u64, v: Out, ctx: &mut Context<'_, Out>) {
        ctx.emit(key, v);
    }
}

/// The state as the app reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    /// word -> (n, id_sum) of the current window.
    pub words: BTreeMap<u32, (u64, u64)>,
    pub disorder: u64,
    pub total_n: u64,
    pub total_id_sum: u64,
}

/// Inject a `Query` barrier and collect what the sink reports for it
/// (after dropping whatever the sink got before: a replayed query's
/// answers, for one).
pub(crate) fn query(h: &AppHandle, rx: &SinkReceiver<Out>) -> State {
    h.quiesce(Duration::from_secs(30))
        .expect("drains before the query");
    rx.drain();
    h.inject_barrier(BarrierKind::Query, 0)
        .expect("query barrier");
    let mut st = State::default();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Some(SinkEvent::Data { value, .. }) => match value {
                Out::Word(t) => {
                    st.disorder += t.disorder;
                    if t.n > 0 {
                        st.words.insert(t.word, (t.n, t.id_sum));
                    }
                }
                Out::Total { n, id_sum } => {
                    st.total_n = n;
                    st.total_id_sum = id_sum;
                }
            },
            Some(SinkEvent::Barrier(b)) if b.kind == BarrierKind::Query => return st,
            Some(SinkEvent::Barrier(_)) => {}
            None => panic!("no answer to the query barrier within 30 s"),
        }
    }
}

/// One step of input, for the oracle.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step {
    /// Events with these ids, `lo..hi`.
    Events(u64, u64),
    WindowClose,
}

/// The state a sequential run of `steps` ends in.
pub(crate) fn oracle(steps: &[Step]) -> State {
    let mut st = State::default();
    for s in steps {
        match *s {
            Step::Events(lo, hi) => {
                for id in lo..hi {
                    let w = st.words.entry(word_of(id)).or_default();
                    w.0 += 1;
                    w.1 += id;
                    st.total_n += 1;
                    st.total_id_sum = st.total_id_sum.wrapping_add(id);
                }
            }
            Step::WindowClose => st.words.clear(),
        }
    }
    st
}
