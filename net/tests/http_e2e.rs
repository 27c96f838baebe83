//! The HTTP front end to end over loopback: deploy with JSON, send events
//! as a JSON array and as JSON lines, read the sink as Server-Sent Events
//! up to a window's barrier against an oracle, stats, metrics, health,
//! errors as JSON with stable codes, and the same with curl when it is
//! installed.

#[path = "common/mod.rs"]
mod common;
#[path = "common/http.rs"]
mod http;

use std::collections::BTreeMap;

use dirigo_net::ServerConfig;
use serde_json::json;

#[test]
fn wordcount_over_http_gives_the_oracle_counts() {
    let server = common::serve(2, ServerConfig::default());
    let addr = server.http_addr().expect("an HTTP front");
    let deploy = json!({"kind": "wordcount", "name": "wc", "slo_ms": 50});
    let r = http::request(addr, "POST", "/v1/apps", "", deploy.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        http::request(addr, "GET", "/v1/apps", "", b"").json(),
        json!({"apps": ["wc"]})
    );
    let mut sse =
        http::events(addr, "/v1/apps/wc/sinks/out", "").unwrap_or_else(|r| panic!("{}", r.text()));
    let lines: Vec<String> = (0..300)
        .map(|i| format!("a{} b{} c", i % 13, i % 5))
        .collect();
    let array = serde_json::to_vec(&lines[..150]).unwrap();
    let r = http::request(addr, "POST", "/v1/apps/wc/sources/lines/events", "", &array);
    assert_eq!((r.status, r.json()), (200, json!({"accepted": 150})));
    let jsonl: String = lines[150..]
        .iter()
        .map(|l| format!("{}\n", json!(l)))
        .collect();
    let r = http::request(
        addr,
        "POST",
        "/v1/apps/wc/sources/lines/events",
        "",
        jsonl.as_bytes(),
    );
    assert_eq!((r.status, r.json()), (200, json!({"accepted": 150})));
    let r = http::request(
        addr,
        "POST",
        "/v1/apps/wc/barriers",
        "",
        br#"{"window": 1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut got = BTreeMap::new();
    loop {
        let (name, data) = sse.next().expect("an event");
        match name.as_str() {
            "output" => {
                let v = &data["value"];
                assert_eq!(v[0], 1);
                got.insert(v[1].as_str().unwrap().to_owned(), v[2].as_f64().unwrap());
            }
            "barrier" if data["window"] == 1 => break,
            other => panic!("unexpected event {other}: {data}"),
        }
    }
    assert_eq!(got, common::word_counts(&lines));
    let stats = http::request(addr, "GET", "/v1/apps/wc/stats", "", b"").json();
    assert_eq!(stats["name"], "wc");
    assert!(stats["delivered"].as_u64().unwrap() >= got.len() as u64);
    let m = http::request(addr, "GET", "/metrics", "", b"");
    assert_eq!(m.status, 200);
    let text = m.text();
    for needle in [
        "dirigo_app_delivered_total{app=\"wc\"}",
        "dirigo_app_latency_seconds_bucket{le=\"+Inf\",app=\"wc\"}",
        "dirigo_app_slo_satisfaction{app=\"wc\"}",
        "dirigo_app_late_events_total{app=\"wc\"} 0",
        "dirigo_app_timers_total{app=\"wc\"} 0",
        "dirigo_shard_busy_seconds_total{shard=\"1\"}",
        "# EOF",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert_eq!(http::request(addr, "GET", "/healthz", "", b"").status, 200);
    assert_eq!(http::request(addr, "GET", "/readyz", "", b"").status, 200);
    assert_eq!(
        http::request(addr, "DELETE", "/v1/apps/wc", "", b"").status,
        200
    );
    let r = http::request(addr, "GET", "/v1/apps/wc", "", b"");
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (404, json!("not_found"))
    );
}

#[test]
fn bad_http_requests_get_json_errors_with_stable_codes() {
    let cfg = ServerConfig {
        admin_token: Some("adm".into()),
        max_batch: 10,
        ..Default::default()
    };
    let server = common::serve(1, cfg);
    let addr = server.http_addr().unwrap();
    let code = |r: http::Reply| {
        (
            r.status,
            r.json()["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    };
    let d = json!({"kind": "aggregate", "name": "agg", "params": {"fn": "sum"}, "ingest_token": "in", "read_token": "rd"});
    assert_eq!(
        code(http::request(
            addr,
            "POST",
            "/v1/apps",
            "",
            d.to_string().as_bytes()
        )),
        (401, "unauthorized".into())
    );
    assert_eq!(
        http::request(addr, "POST", "/v1/apps", "adm", d.to_string().as_bytes()).status,
        201
    );
    assert_eq!(
        code(http::request(
            addr,
            "POST",
            "/v1/apps",
            "adm",
            d.to_string().as_bytes()
        )),
        (409, "conflict".into())
    );
    assert_eq!(
        code(http::request(addr, "POST", "/v1/apps", "adm", b"{not json")),
        (400, "invalid_input".into())
    );
    let unknown = json!({"kind": "nope", "name": "x"});
    assert_eq!(
        code(http::request(
            addr,
            "POST",
            "/v1/apps",
            "adm",
            unknown.to_string().as_bytes()
        )),
        (404, "not_found".into())
    );
    let ev = "/v1/apps/agg/sources/events/events";
    assert_eq!(
        code(http::request(
            addr,
            "POST",
            ev,
            "rd",
            br#"[{"key":"a","value":1}]"#
        )),
        (401, "unauthorized".into())
    );
    let r = http::request(
        addr,
        "POST",
        ev,
        "in",
        b"{\"key\":\"a\",\"value\":1}\n{oops}\n",
    );
    let (status, c) = code(r);
    assert_eq!((status, c.as_str()), (400, "invalid_input"));
    let r = http::request(addr, "POST", ev, "in", br#"[{"key":"a","value":"one"}]"#);
    assert!(r.text().contains("event 0"), "{}", r.text());
    let many = serde_json::to_vec(&vec![json!({"key": "a", "value": 1}); 11]).unwrap();
    assert_eq!(
        code(http::request(addr, "POST", ev, "in", &many)),
        (413, "limit".into())
    );
    assert_eq!(
        code(http::request(
            addr,
            "POST",
            "/v1/apps/agg/sources/nope/events",
            "in",
            b"[]"
        )),
        (404, "not_found".into())
    );
    assert_eq!(
        code(http::request(
            addr,
            "POST",
            "/v1/apps/agg/barriers",
            "in",
            b"{}"
        )),
        (400, "invalid_input".into())
    );
    assert_eq!(
        http::request(addr, "PUT", "/v1/apps", "adm", b"").status,
        405
    );
    assert_eq!(http::request(addr, "GET", "/nowhere", "", b"").status, 404);
    assert_eq!(
        code(http::request(addr, "GET", "/metrics", "in", b"")),
        (401, "unauthorized".into())
    );
    assert!(http::events(addr, "/v1/apps/agg/sinks/out", "in").is_err_and(|r| r.status == 401));
    assert!(http::events(addr, "/v1/apps/agg/sinks/out?lag=maybe", "rd")
        .is_err_and(|r| r.status == 400));
    // Still serving, and only the accepted events are in the window.
    let mut sse = http::events(addr, "/v1/apps/agg/sinks/out", "rd")
        .unwrap_or_else(|r| panic!("{}", r.text()));
    assert_eq!(
        http::request(addr, "POST", ev, "in", br#"[{"key":"a","value":2.5}]"#).json(),
        json!({"accepted": 1})
    );
    assert_eq!(
        http::request(
            addr,
            "POST",
            "/v1/apps/agg/barriers",
            "in",
            br#"{"window": 7}"#
        )
        .status,
        200
    );
    assert_eq!(
        sse.next().unwrap(),
        (
            "output".to_string(),
            json!({"key": dirigo_engine::key_hash(b"a"), "value": [7, "a", 2.5]})
        )
    );
    assert_eq!(
        sse.next().unwrap(),
        ("barrier".to_string(), json!({"window": 7}))
    );
}

/// The same with curl, when the machine has it.
#[test]
fn curl_works_unchanged() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let server = common::serve(1, ServerConfig::default());
    let base = format!("http://{}", server.http_addr().unwrap());
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let deploy = r#"{"kind":"aggregate","name":"c","params":{"fn":"count"}}"#;
    assert!(
        curl(&["-X", "POST", "-d", deploy, &format!("{base}/v1/apps")]).contains("\"name\":\"c\"")
    );
    let sse_url = format!("{base}/v1/apps/c/sinks/out");
    let reader = std::thread::spawn(move || {
        let out = std::process::Command::new("curl")
            .args(["-sSN", "--max-time", "3", &sse_url])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let body = "{\"key\":\"x\",\"value\":1}\n{\"key\":\"x\",\"value\":1}\n";
    assert_eq!(
        curl(&[
            "-X",
            "POST",
            "--data-binary",
            body,
            &format!("{base}/v1/apps/c/sources/events/events")
        ]),
        r#"{"accepted":2}"#
    );
    curl(&[
        "-X",
        "POST",
        "-d",
        r#"{"window":1}"#,
        &format!("{base}/v1/apps/c/barriers"),
    ]);
    let events = reader.join().unwrap();
    assert!(
        events.contains("event: output\ndata: {\"key\":"),
        "{events}"
    );
    assert!(events.contains("[1,\"x\",2.0]"), "{events}");
    assert!(
        events.contains("event: barrier\ndata: {\"window\":1}"),
        "{events}"
    );
    assert!(curl(&[&format!("{base}/metrics")]).contains("dirigo_app_delivered_total{app=\"c\"} 1"));
}

/// The generic aggregate groups JSON events by the field its parameters
/// name and aggregates another.
#[test]
fn the_aggregate_reads_the_fields_its_parameters_name() {
    let server = common::serve(2, ServerConfig::default());
    let addr = server.http_addr().unwrap();
    let d = json!({"kind": "aggregate", "name": "lat", "slo_ms": 50,
                   "params": {"fn": "max", "key_field": "user", "value_field": "ms"}});
    assert_eq!(
        http::request(addr, "POST", "/v1/apps", "", d.to_string().as_bytes()).status,
        201
    );
    let mut sse =
        http::events(addr, "/v1/apps/lat/sinks/out", "").unwrap_or_else(|r| panic!("{}", r.text()));
    let ev = "/v1/apps/lat/sources/events/events";
    let body = br#"[{"user":"ann","ms":3,"page":"/"},{"user":"bob","ms":9},{"user":"ann","ms":7.5},{"user":7,"ms":1}]"#;
    assert_eq!(
        http::request(addr, "POST", ev, "", body).json(),
        json!({"accepted": 4})
    );
    let r = http::request(
        addr,
        "POST",
        ev,
        "",
        br#"[{"user":"ann","ms":1},{"user":"ann"}]"#,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("event 1") && r.text().contains("\\\"ms\\\""),
        "{}",
        r.text()
    );
    assert_eq!(
        http::request(
            addr,
            "POST",
            "/v1/apps/lat/barriers",
            "",
            br#"{"window":1}"#
        )
        .status,
        200
    );
    let mut got = BTreeMap::new();
    loop {
        let (name, data) = sse.next().expect("an event");
        if name == "barrier" {
            break;
        }
        let v = &data["value"];
        got.insert(v[1].as_str().unwrap().to_owned(), v[2].as_f64().unwrap());
    }
    let want: BTreeMap<String, f64> = [("ann", 7.5), ("bob", 9.0), ("7", 1.0)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(got, want);
}

/// A durable app's stats and metrics carry its ingress log's and its
/// checkpoints' figures.
#[test]
fn a_durable_apps_log_and_checkpoints_show_in_stats_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let node = dirigo_engine::NodeConfig {
        shards: 2,
        data_dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let server = common::serve_on(node, ServerConfig::default());
    let addr = server.http_addr().unwrap();
    let d = json!({"kind": "aggregate", "name": "dur", "durable": true, "params": {"fn": "count"}});
    let r = http::request(addr, "POST", "/v1/apps", "", d.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let ev = "/v1/apps/dur/sources/events/events";
    for _ in 0..3 {
        let body = br#"[{"key":"a","value":1},{"key":"b","value":2}]"#;
        let r = http::request(addr, "POST", ev, "", body);
        assert_eq!(r.json(), json!({"accepted": 2}));
    }
    let r = http::request(addr, "POST", "/v1/apps/dur/checkpoint", "", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let s = http::request(addr, "GET", "/v1/apps/dur/stats", "", b"").json();
    let dur = &s["durable"];
    assert_eq!(dur["log_entries"], 6, "{s}");
    assert_eq!(dur["log_position"], 6, "{s}");
    assert!(dur["log_bytes"].as_u64().unwrap() > 0, "{s}");
    assert!(dur["log_commits"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(dur["checkpoints"], 1, "{s}");
    assert_eq!(dur["full_checkpoints"], 1, "{s}");
    assert_eq!(dur["checkpoint_failures"], 0, "{s}");
    assert!(dur["last_checkpoint_bytes"].as_u64().unwrap() > 0, "{s}");
    let text = http::request(addr, "GET", "/metrics", "", b"").text();
    for needle in [
        "dirigo_durable_log_entries_total{app=\"dur\"} 6",
        "dirigo_durable_checkpoints_total{app=\"dur\"} 1",
        "dirigo_durable_log_failed{app=\"dur\"} 0",
        "dirigo_durable_log_commit_seconds_total{app=\"dur\"}",
        "dirigo_durable_last_checkpoint_bytes{app=\"dur\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // A volatile app has no durable figures.
    let v = json!({"kind": "aggregate", "name": "vol", "params": {"fn": "count"}});
    assert_eq!(
        http::request(addr, "POST", "/v1/apps", "", v.to_string().as_bytes()).status,
        201
    );
    let s = http::request(addr, "GET", "/v1/apps/vol/stats", "", b"").json();
    assert!(s["durable"].is_null(), "{s}");
    let text = http::request(addr, "GET", "/metrics", "", b"").text();
    assert!(!text.contains("dirigo_durable_log_entries_total{app=\"vol\"}"));
}
