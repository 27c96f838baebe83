//! Two tenants isolated by tokens: each app's ingest token writes to it
//! alone, its read token reads it alone, neither deploys; the admin token
//! does everything; an unknown token is refused at the handshake. Silent
//! clients are closed after their timeouts; connections and subscribers
//! past their limits are refused.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dirigo_net::apps::Row;
use dirigo_net::{Client, ClientError, DeployOptions, ErrorCode, Lag, ServerConfig};
use serde_json::json;

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Node { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn opts(tenant: &str) -> DeployOptions {
    DeployOptions {
        slo: Some(Duration::from_millis(50)),
        ingest_token: format!("{tenant}-in"),
        read_token: format!("{tenant}-rd"),
        ..Default::default()
    }
}

#[test]
fn tokens_keep_tenants_apart() {
    let cfg = ServerConfig {
        admin_token: Some("root-secret".into()),
        ..Default::default()
    };
    let server = common::serve(2, cfg);
    let addr = server.local_addr();
    assert_eq!(code(Client::connect(addr, "")), ErrorCode::Unauthorized);
    assert_eq!(
        code(Client::connect(addr, "guess")),
        ErrorCode::Unauthorized
    );
    let mut admin = Client::connect(addr, "root-secret").unwrap();
    for t in ["a", "b"] {
        admin
            .deploy("aggregate", t, &json!({"fn": "count"}), &opts(t))
            .unwrap();
    }
    let row = [Row {
        key: "k".into(),
        value: 1.0,
    }];
    let mut a_in = Client::connect(addr, "a-in").unwrap();
    assert_eq!(a_in.ingest("a", "events", &row).unwrap(), 1);
    a_in.barrier("a", 1).unwrap();
    assert_eq!(
        code(a_in.ingest("b", "events", &row)),
        ErrorCode::Unauthorized
    );
    assert_eq!(code(a_in.barrier("b", 1)), ErrorCode::Unauthorized);
    assert_eq!(
        code(a_in.subscribe("a", "out", Lag::Disconnect)),
        ErrorCode::Unauthorized
    );
    // A tenant cannot learn which apps exist: unknown and forbidden look alike.
    assert_eq!(
        code(a_in.ingest("zzz", "events", &row)),
        ErrorCode::Unauthorized
    );
    assert_eq!(
        code(a_in.deploy("aggregate", "c", &json!({"fn": "sum"}), &opts("c"))),
        ErrorCode::Unauthorized
    );
    assert_eq!(code(a_in.undeploy("b")), ErrorCode::Unauthorized);
    assert_eq!(code(a_in.apps()), ErrorCode::Unauthorized);
    assert_eq!(code(a_in.stats(None)), ErrorCode::Unauthorized);
    let mut a_rd = Client::connect(addr, "a-rd").unwrap();
    a_rd.subscribe("a", "out", Lag::Disconnect).unwrap();
    assert!(a_rd.stats(Some("a")).unwrap()["name"] == "a");
    assert_eq!(
        code(a_rd.subscribe("b", "out", Lag::Disconnect)),
        ErrorCode::Unauthorized
    );
    assert_eq!(code(a_rd.stats(Some("b"))), ErrorCode::Unauthorized);
    assert_eq!(
        code(a_rd.ingest("a", "events", &row)),
        ErrorCode::Unauthorized
    );
    let mut b_in = Client::connect(addr, "b-in").unwrap();
    assert_eq!(b_in.ingest("b", "events", &row).unwrap(), 1);
    assert_eq!(
        code(b_in.ingest("a", "events", &row)),
        ErrorCode::Unauthorized
    );
    assert_eq!(admin.apps().unwrap(), ["a", "b"]);
    admin.undeploy("a").unwrap();
    // Its tokens die with it.
    assert_eq!(code(Client::connect(addr, "a-in")), ErrorCode::Unauthorized);
}

/// Whether the node closes `s` within `within`.
fn closed_within(mut s: TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed() <= within,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn silent_clients_are_closed_after_their_timeouts() {
    let cfg = ServerConfig {
        handshake_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let server = common::serve(1, cfg);
    let addr = server.local_addr();
    // No handshake at all.
    assert!(closed_within(
        TcpStream::connect(addr).unwrap(),
        Duration::from_secs(5)
    ));
    // A handshake, then silence.
    let mut c = Client::connect(addr, "").unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(matches!(
        c.apps(),
        Err(ClientError::Closed | ClientError::Io(_))
    ));
    // A subscriber is not idle while it waits for outputs.
    let mut s = Client::connect(addr, "").unwrap();
    s.deploy(
        "aggregate",
        "x",
        &json!({"fn": "sum"}),
        &DeployOptions::default(),
    )
    .unwrap();
    s.subscribe("x", "out", Lag::Disconnect).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(s.apps().unwrap(), ["x"]);
    assert_eq!(server.connections(), 1);
}

#[test]
fn connections_past_the_limit_are_refused_and_the_others_go_on() {
    let server = common::serve(
        1,
        ServerConfig {
            max_connections: 2,
            ..Default::default()
        },
    );
    let addr = server.local_addr();
    let mut a = Client::connect(addr, "").unwrap();
    let _b = Client::connect(addr, "").unwrap();
    assert_eq!(code(Client::connect(addr, "")), ErrorCode::Limit);
    assert!(a.apps().unwrap().is_empty());
    drop(_b);
    // A slot frees when a connection closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Client::connect(addr, "").is_err() {
        assert!(
            Instant::now() < deadline,
            "the closed connection's slot never came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn subscribers_past_a_sinks_limit_are_refused_until_one_leaves() {
    let server = common::serve(
        1,
        ServerConfig {
            max_subscribers: 2,
            ..Default::default()
        },
    );
    let addr = server.local_addr();
    let mut admin = Client::connect(addr, "").unwrap();
    admin
        .deploy("wordcount", "wc", &json!({}), &DeployOptions::default())
        .unwrap();
    let mut first = Client::connect(addr, "").unwrap();
    first.subscribe("wc", "out", Lag::Disconnect).unwrap();
    let mut second = Client::connect(addr, "").unwrap();
    let s2 = second.subscribe("wc", "out", Lag::DropOldest).unwrap();
    let mut third = Client::connect(addr, "").unwrap();
    assert_eq!(
        code(third.subscribe("wc", "out", Lag::Disconnect)),
        ErrorCode::Limit
    );
    // The refusal cost the third connection nothing else; the others
    // still get outputs.
    let lines = vec!["x".to_owned()];
    assert_eq!(third.ingest("wc", "lines", &lines).unwrap(), 1);
    third.barrier("wc", 1).unwrap();
    assert_eq!(
        common::read_window::<(u64, String, f64)>(&mut second, s2, 1).len(),
        1
    );
    // A subscriber that leaves frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = third.subscribe("wc", "out", Lag::Disconnect) {
        assert_eq!(code::<u64>(Err(e)), ErrorCode::Limit);
        assert!(Instant::now() < deadline, "the place never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
}
