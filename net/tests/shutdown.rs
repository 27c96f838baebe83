//! A server's clean shutdown over loopback: every connection, busy or
//! idle, binary or HTTP, is told why it closes; the requests a connection
//! took are answered (accepted or refused with `ShuttingDown`, none left
//! without an answer); subscriptions end with a `ShuttingDown` close; and
//! no connection is left for the drain timeout to cut off.

#[path = "common/mod.rs"]
mod common;
#[path = "common/http.rs"]
mod http;

use std::time::Duration;

use dirigo_net::{Client, ClientError, DeployOptions, ErrorCode, Lag, Output, Response};
use dirigo_net::{Server, ServerConfig};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn server() -> Server {
    common::serve(
        2,
        ServerConfig {
            // Long enough that a connection the shutdown forgot would
            // still be open when it gives up.
            idle_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(30),
            ..ServerConfig::default()
        },
    )
}

/// Read answers until the connection closes: the ids answered, each
/// with whether it was accepted, and the last error of request 0.
fn answers_until_closed(c: &mut Client) -> (Vec<(u64, bool)>, Option<Response>) {
    let mut got = Vec::new();
    let mut last = None;
    loop {
        match c.answer(0, WAIT) {
            Ok(r) => last = Some(r),
            Err(ClientError::Closed) => break,
            Err(e) => panic!("reading the answers: {e}"),
        }
    }
    for (id, r) in c.take_answers().unwrap_or_default() {
        got.push((id, matches!(r, Response::Accepted { .. })));
    }
    (got, last)
}

fn shutting_down(r: &Option<Response>) -> bool {
    matches!(
        r,
        Some(Response::Error {
            code: ErrorCode::ShuttingDown,
            ..
        })
    )
}

#[test]
fn shutdown_answers_what_it_took_and_tells_every_connection() {
    let server = server();
    let (addr, http_addr) = (server.local_addr(), server.http_addr().unwrap());
    let mut admin = Client::connect(addr, "").expect("connects");
    admin
        .deploy("wordcount", "wc", &json!({}), &DeployOptions::default())
        .expect("deploys");
    let mut sub = Client::connect(addr, "").expect("connects");
    let sid = sub
        .subscribe("wc", "out", Lag::Disconnect)
        .expect("subscribes");
    let mut sse = http::events(http_addr, "/v1/apps/wc/sinks/out", "")
        .unwrap_or_else(|r| panic!("{}", r.text()));
    let mut idle = Client::connect(addr, "").expect("connects");
    let mut ing = Client::connect(addr, "").expect("connects");
    let lines = vec!["a b".to_owned(), "b c".to_owned()];
    let req = Client::ingest_request("wc", "lines", &lines).unwrap();
    assert!(matches!(
        ing.call(&req).unwrap(),
        Response::Accepted { events: 2, .. }
    ));
    // Pipelined, unread: the shutdown finds them queued or in flight.
    let sent: Vec<u64> = (0..200).map(|_| ing.send(&req).unwrap()).collect();

    let report = server.shutdown();
    assert_eq!(report.unclosed, 0, "every connection closed by itself");

    // The ingests: each one read was answered, then the close's reason.
    let (answered, last) = answers_until_closed(&mut ing);
    assert!(
        shutting_down(&last),
        "the ingest connection is told: {last:?}"
    );
    let ids: Vec<u64> = answered.iter().map(|(id, _)| *id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        sent[..ids.len()],
        "the answered ones are a prefix of those sent, each once"
    );
    // The idle one and the subscriber are told too.
    let (_, last) = answers_until_closed(&mut idle);
    assert!(
        shutting_down(&last),
        "the idle connection is told: {last:?}"
    );
    let closed = loop {
        match sub.next_output(WAIT) {
            Ok(Some((id, Output::Closed { code, .. }))) if id == sid => break code,
            Ok(Some(_)) => {}
            other => panic!("the subscription ends with a close: {other:?}"),
        }
    };
    assert_eq!(closed, ErrorCode::ShuttingDown);
    let ev = std::iter::from_fn(|| sse.next()).find(|(name, _)| name == "closed");
    let (_, data) = ev.expect("the event stream ends with a closed event");
    assert_eq!(data["code"], "shutting_down", "{data}");
}
