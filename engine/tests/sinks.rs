//! Sinks are bounded (issue 11 item 2): a reader that does not keep up
//! either holds the app back (`SinkPolicy::Block`, nothing lost) or loses
//! the oldest outputs, counted (`SinkPolicy::DropOldest`); memory never
//! grows with what the reader leaves unread.

mod common;

use std::time::{Duration, Instant};

use common::values;
use dirigo_engine::limits::BATCH_EVENTS;
use dirigo_engine::{
    AppBuilder, EngineError, Node, NodeConfig, Placement, SinkEvent, SinkPolicy, SinkReceiver,
};

const CAPACITY: usize = 100;

fn node() -> Node {
    Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        max_in_flight: 1000,
        max_batch: 50,
        ..Default::default()
    })
    .expect("node starts")
}

/// source -> sink, the sink with `policy`.
fn app(name: &str, policy: SinkPolicy) -> (dirigo_engine::App, SinkReceiver<u64>) {
    let mut b = AppBuilder::new(name);
    let src = b.source::<u64>("numbers");
    let rx = b.sink_with("out", src, policy);
    (b.build().expect("a valid app"), rx)
}

#[test]
fn a_full_blocking_sink_holds_the_app_back_and_loses_nothing() {
    let node = node();
    let (a, rx) = app("held", SinkPolicy::Block { capacity: CAPACITY });
    let h = node.deploy(a).expect("deploys");
    let src = h.source::<u64>("numbers").expect("source");
    // Nobody reads: the client is pushed back once the sink's queue and
    // the app's message limit are full.
    let (mut next, mut refused) = (0u64, 0u64);
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        match src.try_send_batch((next..next + 50).map(|i| (i, i)).collect()) {
            Ok(()) => next += 50,
            Err(r) => {
                assert!(
                    matches!(
                        r.error,
                        EngineError::AppFull { .. } | EngineError::Backpressure { .. }
                    ),
                    "{}",
                    r.error
                );
                refused += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
    assert!(refused > 0, "the client was pushed back");
    // A sink with room for one takes a whole batch message.
    assert!(
        rx.len() < CAPACITY + BATCH_EVENTS,
        "{} events queued at the sink",
        rx.len()
    );
    assert!(
        next <= (CAPACITY + 1000 + 50) as u64,
        "accepted {next}: at most the sink's queue, the app's limit and a batch"
    );
    // The reader catches up: every accepted event arrives once, in order.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (got.len() as u64) < next {
        assert!(Instant::now() < deadline, "got {} of {next}", got.len());
        if let Some(SinkEvent::Data { value, .. }) = rx.recv_timeout(Duration::from_millis(50)) {
            got.push(value);
        }
    }
    h.quiesce(Duration::from_secs(10))
        .expect("quiesces once read");
    got.extend(values(&rx));
    assert_eq!(got, (0..next).collect::<Vec<_>>());
    assert_eq!(rx.dropped(), 0);
    node.shutdown();
}

#[test]
fn a_drop_oldest_sink_keeps_the_newest_and_counts_the_rest() {
    let node = node();
    let (a, rx) = app("lossy", SinkPolicy::DropOldest { capacity: CAPACITY });
    let h = node.deploy(a).expect("deploys");
    let src = h.source::<u64>("numbers").expect("source");
    for i in 0..20u64 {
        src.send_batch(
            (i * 50..i * 50 + 50).map(|v| (v, v)).collect(),
            Duration::from_secs(5),
        )
        .expect("accepted");
    }
    // A dropping sink never holds the app back.
    h.quiesce(Duration::from_secs(10)).expect("quiesces unread");
    assert_eq!(rx.len(), CAPACITY);
    assert_eq!(rx.dropped(), 1000 - CAPACITY as u64);
    assert_eq!(values(&rx), (900..1000).collect::<Vec<_>>());
    node.shutdown();
}

#[test]
fn a_sink_capacity_out_of_range_is_a_build_error() {
    for capacity in [0, usize::MAX] {
        let mut b = AppBuilder::new("bad");
        let src = b.source::<u64>("numbers");
        let _rx = b.sink_with("out", src, SinkPolicy::Block { capacity });
        assert!(matches!(b.build(), Err(EngineError::InvalidApp { .. })));
    }
}

#[test]
fn drain_into_moves_every_output_once_in_order_into_a_reused_buffer() {
    let node = node();
    let (a, rx) = app("drained", SinkPolicy::Block { capacity: 10_000 });
    let h = node.deploy(a).expect("deploys");
    let src = h.source::<u64>("numbers").expect("source");
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let start = node.now_ns();
    for round in 0..5u64 {
        src.send_batch(
            (round * 50..round * 50 + 50).map(|v| (v, v)).collect(),
            Duration::from_secs(5),
        )
        .expect("accepted");
        h.quiesce(Duration::from_secs(10)).expect("quiesces");
        let moved = rx.drain_into(&mut buf);
        assert_eq!(moved, 50, "round {round}: the batch's outputs, once");
        assert!(rx.is_empty(), "drained");
        let now = node.now_ns();
        got.extend(buf.drain(..).filter_map(|e| match e {
            SinkEvent::Data { value, at_ns, .. } => {
                // The sink's time is on the node clock, after this test
                // began and before it read the output.
                assert!(
                    start <= at_ns && at_ns <= now,
                    "at_ns {at_ns} not in {start}..={now}"
                );
                Some(value)
            }
            SinkEvent::Barrier(_) => None,
        }));
    }
    assert_eq!(rx.drain_into(&mut buf), 0, "nothing left");
    assert_eq!(got, (0..250).collect::<Vec<_>>());
    node.shutdown();
}
