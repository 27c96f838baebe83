//! A subscriber that reads slower than its sink produces: its buffer is
//! bounded, then the policy it chose applies. `DropOldest`: it is told how
//! many outputs it lost, and what it got plus what it lost is everything.
//! `Disconnect`: its subscription ends with a `Closed` frame. Either way
//! the app and the other subscribers go on.

mod common;

use std::time::Duration;

use dirigo_net::apps::Reading;
use dirigo_net::{Client, DeployOptions, Lag, Output, ServerConfig};
use serde_json::json;

const EVENTS: u64 = 400_000;

/// Deploy `sensors`, subscribe a slow reader to its alerts with `lag` and
/// a fast one, send `EVENTS` alerts, then read the slow one. Returns the
/// slow one's data outputs, its lag notices' sum and whether it closed.
fn run(lag: Lag) -> (u64, u64, bool) {
    let server = common::serve(
        2,
        ServerConfig {
            subscriber_buffer: 4096,
            ..Default::default()
        },
    );
    let addr = server.local_addr();
    let mut admin = Client::connect(addr, "").unwrap();
    let o = DeployOptions {
        slo: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    admin.deploy("sensors", "s", &json!({}), &o).unwrap();
    let mut slow = Client::connect(addr, "").unwrap();
    let slow_sub = slow.subscribe("s", "alert-sink", lag).unwrap();
    let mut fast = Client::connect(addr, "").unwrap();
    fast.subscribe("s", "alert-sink", Lag::Disconnect).unwrap();
    // The fast reader reads on its own thread; the loader waits for it
    // after each batch, so it is never more than a batch behind.
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = read.clone();
    let reader = std::thread::spawn(move || {
        let mut n = 0u64;
        while n < EVENTS {
            match fast.next_output(Duration::from_secs(30)).unwrap() {
                Some((_, Output::Data { .. })) => n += 1,
                Some((_, o)) => panic!("the fast reader got {o:?}"),
                None => panic!("the fast reader starved at {n}"),
            }
            counter.store(n, std::sync::atomic::Ordering::Release);
        }
        n
    });
    for b in 0..EVENTS / 1000 {
        let batch: Vec<Reading> = (0..1000)
            .map(|i| Reading {
                sensor: ((b * 1000 + i) % 64) as u32,
                value: 1.0,
            })
            .collect();
        assert_eq!(admin.ingest("s", "readings", &batch).unwrap(), 1000);
        while read.load(std::sync::atomic::Ordering::Acquire) < (b + 1) * 1000 {
            std::thread::yield_now();
        }
    }
    assert_eq!(
        reader.join().unwrap(),
        EVENTS,
        "the fast reader got everything"
    );
    let (mut data, mut dropped, mut closed) = (0u64, 0u64, false);
    while let Some((id, o)) = slow.next_output(Duration::from_secs(2)).unwrap() {
        assert_eq!(id, slow_sub);
        match o {
            Output::Data { .. } => data += 1,
            Output::Lagged { dropped: d } => dropped += d,
            Output::Closed { .. } => closed = true,
            Output::Barrier { .. } => {}
        }
    }
    (data, dropped, closed)
}

#[test]
fn a_slow_subscriber_dropping_oldest_is_told_what_it_lost() {
    let (data, dropped, closed) = run(Lag::DropOldest);
    assert!(!closed);
    assert!(dropped > 0, "it fell behind ({data} read)");
    assert_eq!(data + dropped, EVENTS);
}

#[test]
fn a_slow_subscriber_that_asked_to_be_cut_off_is() {
    let (data, dropped, closed) = run(Lag::Disconnect);
    assert!(closed, "its subscription ended with a Closed frame");
    assert_eq!(dropped, 0);
    assert!(data < EVENTS);
}
