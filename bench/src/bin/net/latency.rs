//! End-to-end latency, open loop: each event is due at `start + i / rate`,
//! its latency is when its output (or its echo) arrives minus that due
//! time, so a late sender counts too (no coordinated omission).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dirigo_engine::Placement;
use dirigo_net::apps::Reading;
use dirigo_net::frame::{encode, Kind};
use dirigo_net::{Client, DeployOptions, Lag, Output, Response, WireValue};
use hdrhistogram::Histogram;
use serde_json::json;

use crate::{echo, serve, Cli, Error};

/// Sleep until `due` (no spinning: on two cores a spinning sender would
/// take the core the subscriber and the node need; its lateness counts).
fn wait_until(due: Instant) {
    let now = Instant::now();
    if now < due {
        std::thread::sleep(due - now);
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static bounds")
}

fn due(start: Instant, i: u64, rate: u64) -> Instant {
    start + Duration::from_nanos(i * 1_000_000_000 / rate)
}

/// Through the node: sensors' alerts, one reading per frame.
fn node_run(rate: u64, n: u64) -> Result<Histogram<u64>, Error> {
    let server = serve(1, Placement::Pinned)?;
    let mut admin = Client::connect(server.local_addr(), "")?;
    let o = DeployOptions {
        slo: Some(Duration::from_millis(10)),
        ..Default::default()
    };
    admin.deploy("sensors", "s", &json!({}), &o)?;
    let mut sub = Client::connect(server.local_addr(), "")?;
    let id = sub.subscribe("s", "alert-sink", Lag::Disconnect)?;
    let start = Instant::now() + Duration::from_millis(50);
    let reader = std::thread::spawn(move || -> Result<Histogram<u64>, String> {
        let mut h = hist();
        while h.len() < n {
            match sub
                .next_output(Duration::from_secs(10))
                .map_err(|e| e.to_string())?
            {
                Some((sid, Output::Data { value, .. })) if sid == id => {
                    let r = Reading::from_binary(&value).map_err(|e| e.to_string())?;
                    let late =
                        Instant::now().saturating_duration_since(due(start, r.sensor as u64, rate));
                    h.record(late.as_nanos().max(1) as u64)
                        .map_err(|e| e.to_string())?;
                }
                Some(_) => {}
                None => return Err(format!("outputs stopped at {}", h.len())),
            }
        }
        Ok(h)
    });
    let mut c = Client::connect(server.local_addr(), "")?;
    for i in 0..n {
        wait_until(due(start, i, rate));
        let r = Client::ingest_request(
            "s",
            "readings",
            &[Reading {
                sensor: i as u32,
                value: 1.0,
            }],
        )?;
        c.send(&r)?;
        for (_, a) in c.take_answers()? {
            if !matches!(a, Response::Accepted { .. }) {
                return Err(format!("ingest answered {a:?}").into());
            }
        }
    }
    let h = reader.join().map_err(|_| "the reader panicked")??;
    server.shutdown();
    Ok(h)
}

/// Through the echo: the same single-event frames, back.
fn echo_run(rate: u64, n: u64) -> Result<Histogram<u64>, Error> {
    let addr = echo::start()?;
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut back = s.try_clone()?;
    let start = Instant::now() + Duration::from_millis(50);
    let reader = std::thread::spawn(move || -> Result<Histogram<u64>, String> {
        let mut h = hist();
        let mut head = [0u8; 16];
        let mut body = Vec::new();
        while h.len() < n {
            back.read_exact(&mut head).map_err(|e| e.to_string())?;
            let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
            let id = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
            body.resize(len, 0);
            back.read_exact(&mut body).map_err(|e| e.to_string())?;
            let late = Instant::now().saturating_duration_since(due(start, id, rate));
            h.record(late.as_nanos().max(1) as u64)
                .map_err(|e| e.to_string())?;
        }
        Ok(h)
    });
    for i in 0..n {
        wait_until(due(start, i, rate));
        let r = Client::ingest_request(
            "s",
            "readings",
            &[Reading {
                sensor: i as u32,
                value: 1.0,
            }],
        )?;
        let mut framed = Vec::new();
        dirigo_net::Message::encode(&r, 0, 1 << 20, &mut framed)?;
        let mut out = Vec::new();
        encode(Kind::Request, i, &framed[16..], 1 << 20, &mut out)?;
        s.write_all(&out)?;
    }
    Ok(reader.join().map_err(|_| "the reader panicked")??)
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

pub(crate) fn report(cli: &Cli) -> Result<(), Error> {
    let n = cli.rate * cli.latency_secs;
    println!(
        "\nend-to-end latency at {} ev/s, one event per frame, {} s (µs; median run of {})",
        cli.rate, cli.latency_secs, cli.runs
    );
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>9}",
        "", "p50", "p99", "p99.9", "max"
    );
    let mut rows = Vec::new();
    for (name, f) in [
        (
            "node",
            node_run as fn(u64, u64) -> Result<Histogram<u64>, Error>,
        ),
        ("echo", echo_run),
    ] {
        let mut runs: Vec<Histogram<u64>> = (0..cli.runs)
            .map(|_| f(cli.rate, n))
            .collect::<Result<_, _>>()?;
        runs.sort_by_key(|h| h.value_at_quantile(0.99));
        let h = &runs[runs.len() / 2];
        println!(
            "{name:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            us(h, 0.5),
            us(h, 0.99),
            us(h, 0.999),
            h.max() as f64 / 1e3
        );
        rows.push(us(h, 0.99));
    }
    println!("node p99 / echo p99: {:.2}", rows[0] / rows[1]);
    Ok(())
}
