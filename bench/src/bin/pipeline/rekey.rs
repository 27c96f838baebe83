//! A two-operator keyed pipeline with a re-key between them: source ->
//! `first` (counts per key, passes each event on under a new key) ->
//! `second` (counts per new key), so events cross shards between the two.
//! Dirigo: `Keyed` operators, the window closed by a barrier whose arrival
//! at the sink ends the timing; timely: two `unary` operators after
//! `exchange`s by each key. Both end with `second`'s keys and events.

use std::collections::HashMap;
use std::time::Instant;

use dirigo_engine::{AppBuilder, Barrier, Context, Function, Keyed};

use crate::{count_to_barrier, key_of, start_node, timely_count, timely_total, Error, Totals};

/// The second key of an event of key `k`.
fn rekey(k: u64, keys: u64) -> u64 {
    k.wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(29) % keys
}

pub(crate) fn oracle(events: u64, keys: u64) -> Totals {
    let mut seen = std::collections::HashSet::new();
    for i in 0..events {
        seen.insert(rekey(key_of(i, keys), keys));
    }
    Totals {
        keys: seen.len() as u64,
        events,
    }
}

/// Counts per key and sends each event on under its second key.
struct First(u64);
impl Function for First {
    type In = u64;
    type Out = u64;
    type State = Keyed<u64>;
    fn on_message(&self, st: &mut Keyed<u64>, key: u64, v: u64, ctx: &mut Context<'_, u64>) {
        *st.entry(key) += 1;
        ctx.emit(rekey(key, self.0), v);
    }
}

/// Counts per key; at a window close, emits its keys and events.
struct Second;
impl Function for Second {
    type In = u64;
    type Out = (u64, u64);
    type State = Keyed<u64>;
    fn on_message(&self, st: &mut Keyed<u64>, key: u64, _: u64, _: &mut Context<'_, (u64, u64)>) {
        *st.entry(key) += 1;
    }
    fn on_critical(
        &self,
        st: &mut Keyed<u64>,
        _: &Barrier,
        _: u16,
        ctx: &mut Context<'_, (u64, u64)>,
    ) {
        let events = st.iter().map(|(_, n)| *n).sum();
        ctx.emit(0, (st.len() as u64, events));
    }
}

pub(crate) fn dirigo(
    shards: usize,
    events: u64,
    keys: u64,
    batch: usize,
) -> Result<(f64, Totals), Error> {
    let mut b = AppBuilder::new("pipeline-rekey");
    let src = b.source::<u64>("events");
    let first = b.operator("first", First(keys), &[src]);
    let second = b.operator("second", Second, &[first]);
    let out = b.sink("out", second);
    count_to_barrier(
        start_node(shards, batch)?,
        b.build()?,
        out,
        events,
        keys,
        batch,
    )
}

pub(crate) fn timely(
    workers: usize,
    events: u64,
    keys: u64,
    batch: usize,
) -> Result<(f64, Totals), Error> {
    use std::cell::RefCell;
    use std::rc::Rc;
    use timely::dataflow::channels::pact::Exchange;
    use timely::dataflow::operators::{Input, Operator, Probe};
    use timely::dataflow::{InputHandle, ProbeHandle};
    let results = timely::execute(timely::Config::process(workers), move |worker| {
        let mut input = InputHandle::<u64, (u64, u64)>::new();
        let mut probe = ProbeHandle::new();
        let totals = Rc::new(RefCell::new(Totals::default()));
        let out = totals.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let rekeyed = scope.input_from(&mut input).unary(
                Exchange::new(|x: &(u64, u64)| x.0),
                "first",
                move |_, _| {
                    let mut counts: HashMap<u64, u64> = HashMap::new();
                    let mut buf = Vec::new();
                    move |input, output| {
                        input.for_each(|cap, data| {
                            data.swap(&mut buf);
                            let mut session = output.session(&cap);
                            for (k, v) in buf.drain(..) {
                                *counts.entry(k).or_insert(0) += 1;
                                session.give((rekey(k, keys), v));
                            }
                        });
                    }
                },
            );
            timely_count(&rekeyed, "second", out).probe_with(&mut probe);
        });
        let start = Instant::now();
        if worker.index() == 0 {
            crate::feed_timely(worker, &mut input, events, keys, batch);
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
        let t = *totals.borrow();
        (start.elapsed().as_secs_f64(), t)
    })
    .map_err(|e| format!("timely: {e}"))?;
    timely_total(results.join(), events, |t, w: Totals| {
        t.keys += w.keys;
        t.events += w.events;
    })
}
