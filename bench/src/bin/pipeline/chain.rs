//! Throughput of a chain of three stateless operators: source -> map (+1)
//! -> filter (drops multiples of 3) -> map (x2) -> out. Dirigo: a sink read
//! by its own thread; timely: the same closures, counted in an `inspect`,
//! timed until the probe passes the last round. Both end with the number
//! and the sum of the outputs, checked against a sequential oracle.

use std::time::{Duration, Instant};

use dirigo_engine::{AppBuilder, SinkEvent};

use crate::{batches, start_node, timely_total, Error, Step};

/// Outputs seen and their sum: what both engines must end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Outputs {
    pub(crate) count: u64,
    pub(crate) sum: u64,
}

fn map1(v: u64) -> u64 {
    v + 1
}
fn keep(v: &u64) -> bool {
    v % 3 != 0
}
fn map2(v: u64) -> u64 {
    v.wrapping_mul(2)
}

pub(crate) fn oracle(events: u64) -> Outputs {
    let mut o = Outputs::default();
    for v in (0..events).map(map1).filter(keep).map(map2) {
        o.count += 1;
        o.sum = o.sum.wrapping_add(v);
    }
    o
}

/// The chain as a Dirigo app, its sink, and its source's name.
pub(crate) fn app(name: &str) -> (dirigo_engine::App, dirigo_engine::SinkReceiver<u64>) {
    let mut b = AppBuilder::new(name);
    let src = b.source::<u64>("events");
    let a = b.operator("map1", Step(|v| Some(map1(v))), &[src]);
    let f = b.operator("filter", Step(|v| keep(&v).then_some(v)), &[a]);
    let c = b.operator("map2", Step(|v| Some(map2(v))), &[f]);
    let out = b.sink("out", c);
    (b.build().expect("a valid chain"), out)
}

pub(crate) fn dirigo(
    shards: usize,
    events: u64,
    keys: u64,
    batch: usize,
) -> Result<(f64, Outputs), Error> {
    let node = start_node(shards, batch)?;
    let (app, out) = app("pipeline-chain");
    let app = node.deploy(app)?;
    let src = app.source::<u64>("events")?;
    let want = oracle(events).count;
    let input = batches(events, keys, batch);
    let reader = std::thread::spawn(move || {
        let mut got = Outputs::default();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut evs = Vec::new();
        while got.count < want && Instant::now() < deadline {
            // Nothing waiting: block until something is (a spinning reader
            // would take the core the client and the shard share).
            if out.drain_into(&mut evs) == 0 {
                evs.extend(out.recv_timeout(Duration::from_millis(10)));
            }
            for ev in evs.drain(..) {
                if let SinkEvent::Data { value, .. } = ev {
                    got.count += 1;
                    got.sum = got.sum.wrapping_add(value);
                }
            }
        }
        (got, Instant::now())
    });
    let start = Instant::now();
    for b in input {
        src.send_batch(b, Duration::from_secs(30))
            .map_err(|r| r.error)?;
    }
    let (got, end) = reader.join().map_err(|_| "chain reader panicked")?;
    node.shutdown();
    Ok((events as f64 / (end - start).as_secs_f64(), got))
}

pub(crate) fn timely(
    workers: usize,
    events: u64,
    keys: u64,
    batch: usize,
) -> Result<(f64, Outputs), Error> {
    use std::cell::Cell;
    use std::rc::Rc;
    use timely::dataflow::operators::{Filter, Input, Inspect, Map, Probe};
    use timely::dataflow::{InputHandle, ProbeHandle};
    let results = timely::execute(timely::Config::process(workers), move |worker| {
        let mut input = InputHandle::<u64, (u64, u64)>::new();
        let mut probe = ProbeHandle::new();
        let (count, sum) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(0u64)));
        let (c, s) = (count.clone(), sum.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .map(|(k, v)| (k, map1(v)))
                .filter(|(_, v)| keep(v))
                .map(|(k, v)| (k, map2(v)))
                .inspect(move |(_, v)| {
                    c.set(c.get() + 1);
                    s.set(s.get().wrapping_add(*v));
                })
                .probe_with(&mut probe);
        });
        let start = Instant::now();
        if worker.index() == 0 {
            crate::feed_timely(worker, &mut input, events, keys, batch);
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
        let out = Outputs {
            count: count.get(),
            sum: sum.get(),
        };
        (start.elapsed().as_secs_f64(), out)
    })
    .map_err(|e| format!("timely: {e}"))?;
    timely_total(results.join(), events, |t, w: Outputs| {
        t.count += w.count;
        t.sum = t.sum.wrapping_add(w.sum);
    })
}
