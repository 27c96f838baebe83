//! HTTP ingest, one event per request, keep-alive: the bench's own client
//! (one thread per connection), and wrk when it is installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use dirigo_engine::Placement;
use dirigo_net::{Client, DeployOptions};
use serde_json::json;

use crate::{median, serve, Cli, Error};

const PATH: &str = "/v1/apps/h/sources/events/events";
const BODY: &str = r#"[{"key":"k","value":1}]"#;

/// One connection's requests until `end`; how many were answered 200.
fn client(addr: SocketAddr, end: Instant) -> Result<u64, String> {
    let s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let req = format!("POST {PATH} HTTP/1.1\r\nhost: b\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}", BODY.len());
    let (mut ok, mut line, mut body) = (0u64, String::new(), Vec::new());
    while Instant::now() < end {
        w.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        line.clear();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let status_ok = line.split_whitespace().nth(1) == Some("200");
        let mut len = 0;
        loop {
            line.clear();
            r.read_line(&mut line).map_err(|e| e.to_string())?;
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        body.resize(len, 0);
        r.read_exact(&mut body).map_err(|e| e.to_string())?;
        ok += u64::from(status_ok);
    }
    Ok(ok)
}

fn own_run(addr: SocketAddr, conns: usize, secs: u64) -> Result<f64, Error> {
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| std::thread::spawn(move || client(addr, end)))
        .collect();
    let mut total = 0;
    for t in threads {
        total += t.join().map_err(|_| "a client panicked")??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// wrk's requests/s, if wrk is installed.
fn wrk(addr: SocketAddr, conns: usize, secs: u64) -> Option<f64> {
    let script = std::env::temp_dir().join(format!("dirigo-wrk-{}.lua", std::process::id()));
    let lua = format!("wrk.method = \"POST\"\nwrk.body = '{BODY}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n");
    std::fs::write(&script, lua).ok()?;
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{conns}"), &format!("-d{secs}s"), "-s"])
        .arg(&script)
        .arg(format!("http://{addr}{PATH}"))
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

pub(crate) fn report(cli: &Cli) -> Result<(), Error> {
    let server = serve(2, Placement::Pinned)?;
    let addr = server.http_addr().ok_or("no HTTP front")?;
    let mut c = Client::connect(server.local_addr(), "")?;
    c.deploy(
        "aggregate",
        "h",
        &json!({"fn": "count"}),
        &DeployOptions::default(),
    )?;
    let runs: Vec<f64> = (0..cli.runs)
        .map(|_| own_run(addr, cli.http_conns, cli.http_secs))
        .collect::<Result<_, _>>()?;
    println!(
        "\nHTTP ingest, one event per request, 2 shards, {} keep-alive connections: {:.0} req/s (median of {})",
        cli.http_conns,
        median(runs),
        cli.runs
    );
    match wrk(addr, cli.http_conns * 4, cli.http_secs) {
        Some(r) => println!("  wrk -t2 -c{}: {r:.0} req/s", cli.http_conns * 4),
        None => println!("  (wrk is not installed: the bench's own client only)"),
    }
    server.shutdown();
    Ok(())
}
