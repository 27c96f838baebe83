//! The binary protocol end to end over loopback: deploy a catalog app,
//! subscribe, ingest (pipelined), close a window, read exactly the outputs
//! a sequential oracle gives, undeploy.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use dirigo_net::apps::{Row, WindowRow};
use dirigo_net::{Client, ClientError, DeployOptions, ErrorCode, Lag, ServerConfig};
use serde_json::json;

fn slo() -> DeployOptions {
    DeployOptions {
        slo: Some(Duration::from_millis(50)),
        ..Default::default()
    }
}

#[test]
fn wordcount_over_the_wire_gives_the_oracle_counts() {
    let server = common::serve(2, ServerConfig::default());
    let mut c = Client::connect(server.local_addr(), "").expect("connects");
    c.deploy("wordcount", "wc", &json!({}), &slo())
        .expect("deploys");
    assert_eq!(c.apps().unwrap(), ["wc"]);
    let sub = c
        .subscribe("wc", "out", Lag::Disconnect)
        .expect("subscribes");
    let lines: Vec<String> = (0..2000)
        .map(|i| format!("w{} w{} common", i % 37, i % 11))
        .collect();
    let batches: Vec<Vec<String>> = lines.chunks(100).map(|c| c.to_vec()).collect();
    let n = c
        .ingest_pipelined("wc", "lines", batches, 8)
        .expect("ingests");
    assert_eq!(n, lines.len() as u64);
    c.barrier("wc", 1).expect("barrier");
    let got: BTreeMap<String, f64> = common::read_window::<WindowRow>(&mut c, sub, 1)
        .into_iter()
        .map(|(_, (w, word, n))| {
            assert_eq!(w, 1);
            (word, n)
        })
        .collect();
    assert_eq!(got, common::word_counts(&lines));
    c.undeploy("wc").expect("undeploys");
    let e = c.ingest("wc", "lines", &["late".to_string()]).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Node {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{e}"
    );
    assert!(c.apps().unwrap().is_empty());
}

#[test]
fn the_keyed_aggregate_sums_per_key_and_window() {
    let server = common::serve(2, ServerConfig::default());
    let mut c = Client::connect(server.local_addr(), "").expect("connects");
    c.deploy("aggregate", "sums", &json!({"fn": "sum"}), &slo())
        .expect("deploys");
    let sub = c
        .subscribe("sums", "out", Lag::Disconnect)
        .expect("subscribes");
    for window in 1..=3u64 {
        let rows: Vec<Row> = (0..500)
            .map(|i| Row {
                key: format!("k{}", i % 7),
                value: (i as u64 * window) as f64,
            })
            .collect();
        let mut oracle = BTreeMap::new();
        for r in &rows {
            *oracle.entry(r.key.clone()).or_insert(0.0) += r.value;
        }
        c.ingest("sums", "events", &rows).expect("ingests");
        c.barrier("sums", window).expect("barrier");
        let got: BTreeMap<String, f64> = common::read_window::<WindowRow>(&mut c, sub, window)
            .into_iter()
            .map(|(_, (w, k, v))| {
                assert_eq!(w, window);
                (k, v)
            })
            .collect();
        assert_eq!(got, oracle, "window {window}");
    }
}

#[test]
fn the_glommio_client_does_the_same_from_an_executor() {
    let server = common::serve(2, ServerConfig::default());
    let addr = server.local_addr();
    let got = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let mut c = dirigo_net::LocalClient::connect(addr, "")
                .await
                .expect("connects");
            let deploy = dirigo_net::Request::Deploy {
                kind: "aggregate".into(),
                name: "max".into(),
                params_json: r#"{"fn": "max"}"#.into(),
                slo_us: None,
                durable: false,
                ingest_token: String::new(),
                read_token: String::new(),
            };
            c.call(&deploy).await.expect("deploys");
            let sub = c
                .subscribe("max", "out", Lag::Disconnect)
                .await
                .expect("subscribes");
            let rows: Vec<Row> = (0..100)
                .map(|i| Row {
                    key: format!("k{}", i % 3),
                    value: i as f64,
                })
                .collect();
            assert_eq!(c.ingest("max", "events", &rows).await.unwrap(), 100);
            c.barrier("max", 1).await.unwrap();
            let mut got = BTreeMap::new();
            loop {
                let (id, o) = c
                    .next_output(Duration::from_secs(20))
                    .await
                    .unwrap()
                    .expect("an output");
                assert_eq!(id, sub);
                match o {
                    dirigo_net::Output::Data { value, .. } => {
                        let (_, k, v) =
                            <WindowRow as dirigo_net::WireValue>::from_binary(&value).unwrap();
                        got.insert(k, v);
                    }
                    dirigo_net::Output::Barrier { window: 1 } => return got,
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .expect("an executor")
        .join()
        .expect("runs");
    let want: BTreeMap<String, f64> = [("k0", 99.0), ("k1", 97.0), ("k2", 98.0)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(got, want);
}

/// A connection's ingest enters its shard through the shard-local queue,
/// not the cross-thread inbox (one shard: the source is homed where the
/// connection is served).
#[test]
fn ingest_takes_the_shard_local_path() {
    let server = common::serve(1, ServerConfig::default());
    let mut c = Client::connect(server.local_addr(), "").expect("connects");
    assert_eq!(c.accepted().shard, 0);
    c.deploy("aggregate", "local", &json!({"fn": "count"}), &slo())
        .expect("deploys");
    for _ in 0..20 {
        let rows: Vec<Row> = (0..10)
            .map(|i| Row {
                key: format!("k{i}"),
                value: 1.0,
            })
            .collect();
        c.ingest("local", "events", &rows).expect("ingests");
    }
    let stats = c.stats(None).expect("stats");
    let shard = &stats["shards"][0];
    assert_eq!(shard["local_ingests"], 20, "{shard}");
    assert_eq!(shard["inbox_ingests"], 0, "{shard}");
}

#[test]
fn json_events_and_a_json_subscription_travel_the_binary_protocol() {
    let server = common::serve(2, ServerConfig::default());
    let mut c = Client::connect(server.local_addr(), "").expect("connects");
    c.deploy("aggregate", "t", &json!({"fn": "sum"}), &slo())
        .expect("deploys");
    let sub = c.subscribe_as("t", "out", Lag::Disconnect, true).unwrap();
    let good = |k: &str, v: u32| format!("{{\"key\":\"{k}\",\"value\":{v}}}");
    // A text that is not JSON refuses its batch, naming it; nothing of
    // the batch is taken.
    let bad = Client::ingest_json_request("t", "events", vec![good("a", 1), "{nope".into()]);
    match c.call(&bad) {
        Err(ClientError::Node {
            code: ErrorCode::InvalidInput,
            message,
        }) => assert!(message.contains("event 1 is not JSON"), "{message}"),
        r => panic!("{r:?}"),
    }
    let ok = Client::ingest_json_request("t", "events", vec![good("a", 2), good("a", 3)]);
    assert!(matches!(
        c.call(&ok),
        Ok(dirigo_net::Response::Accepted { events: 2, .. })
    ));
    c.barrier("t", 1).unwrap();
    let (id, o) = c.next_output(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(id, sub);
    let dirigo_net::Output::Data {
        value, latency_ns, ..
    } = o
    else {
        panic!("{o:?}")
    };
    let row: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(row, json!([1, "a", 5.0]));
    assert!(latency_ns > 0);
}
