//! Embedding: a program registers its own function as an app kind in a
//! catalog, serves the catalog on a node, deploys the kind over HTTP and
//! reads its output as Server-Sent Events. Run it with
//! `cargo run -p dirigo-net --example embed`; it checks what it reads and
//! fails if anything differs. `cargo test` runs it too (the example is
//! built as a test, `net/Cargo.toml`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use dirigo_engine::{key_hash, Context, Function, Merged, Node, NodeConfig, Placement};
use dirigo_net::{AppKind, Built, Catalog, Ports, Server, ServerConfig};
use serde_json::json;

/// The user's function: every line, shouted.
struct Shout {
    suffix: String,
}

impl Function for Shout {
    type In = String;
    type Out = String;
    type State = Merged<()>;
    fn on_message(
        &self,
        _: &mut Merged<()>,
        key: u64,
        line: String,
        ctx: &mut Context<'_, String>,
    ) {
        ctx.emit(key, format!("{}{}", line.to_uppercase(), self.suffix));
    }
}

/// The kind: its parameters' schema and its factory.
fn shout_kind() -> AppKind {
    let schema = json!({
        "type": "object", "additionalProperties": false,
        "properties": {"suffix": {"type": "string", "default": "!"}}
    });
    AppKind::new(
        "shout",
        "lines, shouted; source `lines`, sink `out`",
        schema,
        |spec, params| {
            let suffix = params["suffix"].as_str().unwrap_or("!").to_owned();
            let mut b = spec.builder();
            let lines = b.source::<String>("lines");
            let shouted = b.operator("shout", Shout { suffix }, &[lines]);
            let rx = b.sink("out", shouted);
            let app = b.build().map_err(|e| e.to_string())?;
            let ports = Ports::new()
                .source::<String>("lines", |l| key_hash(l.as_bytes()))
                .sink::<String>("out", rx);
            Ok(Built::new(app, ports))
        },
    )
}

/// One HTTP request; the status and body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connects");
    write!(s, "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn main() {
    run();
}

#[test]
fn the_embedding_example_runs() {
    run();
}

fn run() {
    let node = Node::start(NodeConfig {
        shards: 2,
        placement: Placement::Unpinned,
        ..Default::default()
    })
    .expect("node");
    let mut catalog = Catalog::builtin();
    catalog.register(shout_kind()).expect("a new kind");
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let server = Server::builder(Arc::new(node))
        .catalog(catalog)
        .config(cfg)
        .serve()
        .expect("serves");
    let addr = server.http_addr().unwrap();
    println!("serving HTTP on {addr}");

    let deploy = json!({"kind": "shout", "name": "loud", "params": {"suffix": "!!"}, "slo_ms": 20});
    let (status, body) = http(addr, "POST", "/v1/apps", &deploy.to_string());
    assert_eq!(status, 201, "deploy: {body}");

    // Subscribe first (Server-Sent Events), then send.
    let mut sse = TcpStream::connect(addr).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        sse,
        "GET /v1/apps/loud/sinks/out HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    .unwrap();
    let mut sse = BufReader::new(sse);
    let mut line = String::new();
    while line != "\r\n" {
        line.clear();
        sse.read_line(&mut line).unwrap();
    }
    let (status, body) = http(
        addr,
        "POST",
        "/v1/apps/loud/sources/lines/events",
        r#"["hello", "dirigo"]"#,
    );
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":2}"#));

    let mut got = Vec::new();
    while got.len() < 2 {
        line.clear();
        sse.read_line(&mut line).unwrap();
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            got.push(v["value"].as_str().unwrap().to_owned());
        }
    }
    got.sort();
    assert_eq!(got, ["DIRIGO!!", "HELLO!!"]);
    println!("read {got:?} from the user's function over HTTP");
    server.shutdown();
}
