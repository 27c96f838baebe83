//! Bad input over the binary protocol: each case gets a clear error (a
//! refused handshake, an error frame, or an error response with a stable
//! code), only its connection is affected, and nothing already accepted
//! is lost: after all of them, a window still closes over exactly the
//! events that were accepted.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dirigo_net::apps::{Row, WindowRow};
use dirigo_net::frame::{encode, Kind};
use dirigo_net::{
    Client, ClientError, DeployOptions, ErrorCode, Event, Lag, Message, Request, Response,
    ServerConfig, Session, Welcome,
};
use serde_json::json;

/// Everything a raw connection reads until the node closes it.
fn read_to_close(mut s: TcpStream) -> Session {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut session = Session::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return session,
            Ok(n) => session.feed(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return session,
            Err(e) => panic!("the node neither answered nor closed: {e}"),
        }
    }
}

fn refused_with(session: &mut Session) -> ErrorCode {
    match session.absorb().expect("frames") {
        Some(Welcome::Refused { code, .. }) => code,
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}

fn node_code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Node { code, .. } => code,
        e => panic!("expected an error response, got {e}"),
    }
}

#[test]
fn bad_input_is_refused_and_nothing_accepted_is_lost() {
    let server = common::serve(
        2,
        ServerConfig {
            max_batch: 100,
            max_frame: 64 << 10,
            ..Default::default()
        },
    );
    let addr = server.local_addr();
    let mut c = Client::connect(addr, "").expect("connects");
    let o = DeployOptions {
        slo: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    c.deploy("aggregate", "agg", &json!({"fn": "count"}), &o)
        .expect("deploys");
    let sub = c
        .subscribe("agg", "out", Lag::Disconnect)
        .expect("subscribes");
    let row = |k: &str| Row {
        key: k.into(),
        value: 1.0,
    };
    assert_eq!(c.ingest("agg", "events", &[row("a"), row("b")]).unwrap(), 2);

    // Garbage instead of a handshake.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(refused_with(&mut read_to_close(s)), ErrorCode::BadFrame);
    // Another protocol version.
    let mut s = TcpStream::connect(addr).unwrap();
    let mut hello = Vec::new();
    dirigo_net::Hello {
        version: 99,
        token: String::new(),
    }
    .encode(0, 1 << 20, &mut hello)
    .unwrap();
    s.write_all(&hello).unwrap();
    assert_eq!(refused_with(&mut read_to_close(s)), ErrorCode::BadVersion);
    // A handshake cut short, then silence: the node closes at its end.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&hello[..7]).unwrap();
    drop(s);

    // After a good handshake: a frame over the limit closes the connection
    // with an error frame.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&Session::hello("").unwrap()).unwrap();
    let mut big = Vec::new();
    encode(Kind::Request, 7, &vec![0u8; 100 << 10], 1 << 20, &mut big).unwrap();
    s.write_all(&big).unwrap();
    let mut session = read_to_close(s);
    assert!(matches!(
        session.absorb().unwrap(),
        Some(Welcome::Accepted { .. })
    ));
    session.absorb().unwrap();
    match session.take_answer(0) {
        Some(Response::Error {
            code: ErrorCode::BadFrame,
            message,
        }) => assert!(message.contains("over the limit"), "{message}"),
        other => panic!("expected a BadFrame error, got {other:?}"),
    }
    // A request frame whose payload is not a request.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&Session::hello("").unwrap()).unwrap();
    let mut junk = Vec::new();
    encode(Kind::Request, 9, &[0xAB; 64], 1 << 20, &mut junk).unwrap();
    s.write_all(&junk).unwrap();
    let mut session = read_to_close(s);
    session.absorb().unwrap();
    session.absorb().unwrap();
    assert!(matches!(
        session.take_answer(9),
        Some(Response::Error {
            code: ErrorCode::BadFrame,
            ..
        })
    ));

    // Requests that are refused alone: the connection goes on.
    assert_eq!(
        node_code(c.ingest("nope", "events", &[row("x")]).unwrap_err()),
        ErrorCode::NotFound
    );
    assert_eq!(
        node_code(c.ingest("agg", "nope", &[row("x")]).unwrap_err()),
        ErrorCode::NotFound
    );
    let too_many: Vec<Row> = (0..101).map(|_| row("x")).collect();
    assert_eq!(
        node_code(c.ingest("agg", "events", &too_many).unwrap_err()),
        ErrorCode::Limit
    );
    // An event that does not decode refuses its whole batch.
    let bad = Request::Ingest {
        app: "agg".into(),
        source: "events".into(),
        events: vec![
            Event {
                value: Row {
                    key: "x".into(),
                    value: 1.0,
                }
                .to_binary(),
            },
            Event {
                value: vec![1, 2, 3],
            },
        ],
    };
    match c.call(&bad).unwrap_err() {
        ClientError::Node {
            code: ErrorCode::InvalidInput,
            message,
        } => assert!(message.contains("event 1"), "{message}"),
        e => panic!("expected InvalidInput, got {e}"),
    }
    let d = |kind: &str, params: serde_json::Value| c_deploy(addr, kind, params);
    assert_eq!(d("nope", json!({})), ErrorCode::NotFound);
    assert_eq!(
        d("aggregate", json!({"fn": "median"})),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        d("aggregate", json!({"fn": "sum", "extra": 1})),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        node_code(
            c.deploy("aggregate", "agg", &json!({"fn": "sum"}), &o)
                .unwrap_err()
        ),
        ErrorCode::Conflict
    );
    let raw = Request::Deploy {
        kind: "aggregate".into(),
        name: "x".into(),
        params_json: "{not json".into(),
        slo_us: None,
        durable: false,
        ingest_token: String::new(),
        read_token: String::new(),
    };
    assert_eq!(
        node_code(c.call(&raw).unwrap_err()),
        ErrorCode::InvalidInput
    );

    // The node still serves, and the window holds exactly the accepted.
    assert_eq!(c.ingest("agg", "events", &[row("a")]).unwrap(), 1);
    c.barrier("agg", 1).unwrap();
    let mut got = common::read_window::<WindowRow>(&mut c, sub, 1);
    got.sort_by(|a, b| a.1 .1.cmp(&b.1 .1));
    let got: Vec<(String, f64)> = got.into_iter().map(|(_, (_, k, n))| (k, n)).collect();
    assert_eq!(got, [("a".to_string(), 2.0), ("b".to_string(), 1.0)]);
}

/// A deploy on a fresh connection; its error code.
fn c_deploy(addr: std::net::SocketAddr, kind: &str, params: serde_json::Value) -> ErrorCode {
    let mut c = Client::connect(addr, "").unwrap();
    node_code(
        c.deploy(kind, "y", &params, &DeployOptions::default())
            .unwrap_err(),
    )
}

trait ToBinary {
    fn to_binary(&self) -> Vec<u8>;
}

impl ToBinary for Row {
    fn to_binary(&self) -> Vec<u8> {
        dirigo_net::WireValue::to_binary(self).unwrap()
    }
}
