//! Binary ingest throughput against the raw echo of the same frames.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use dirigo_engine::Placement;
use dirigo_net::apps::{Row, WindowRow};
use dirigo_net::frame::{encode, Kind};
use dirigo_net::{Client, DeployOptions, Event, Lag, Output, Request, Response, WireValue};
use serde_json::json;

use crate::{echo, median, serve, Cli, Error};

/// The ingest request of one batch, as rkyv bytes (framed per send).
fn payload(batch: usize) -> Result<Vec<u8>, Error> {
    let events = (0..batch)
        .map(|i| {
            Row {
                key: format!("k{}", i % 1000),
                value: 1.0,
            }
            .to_binary()
            .map(|value| Event { value })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let r = Request::Ingest {
        app: "agg".into(),
        source: "events".into(),
        events,
    };
    let mut framed = Vec::new();
    dirigo_net::Message::encode(&r, 0, 64 << 20, &mut framed)?;
    Ok(framed[dirigo_net::limits::HEADER_LEN..].to_vec())
}

fn frame(payload: &[u8], id: u64) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    encode(Kind::Request, id, payload, 64 << 20, &mut out)?;
    Ok(out)
}

/// Frames to a 1-shard node, `window` unacknowledged; events/s and
/// frames/s. Checked: a barrier's counts add up to every event sent.
fn node_run(batch: usize, frames: usize, window: usize) -> Result<(f64, f64), Error> {
    let server = serve(1, Placement::Pinned)?;
    let mut c = Client::connect(server.local_addr(), "")?;
    let o = DeployOptions {
        slo: None,
        ..Default::default()
    };
    c.deploy("aggregate", "agg", &json!({"fn": "count"}), &o)?;
    let sub = c.subscribe("agg", "out", Lag::Disconnect)?;
    let p = payload(batch)?;
    let mut waiting = VecDeque::with_capacity(window);
    let start = Instant::now();
    for i in 0..frames as u64 {
        if waiting.len() >= window {
            acked(&mut c, waiting.pop_front())?;
        }
        let id = 1 << 40 | i;
        c.send_raw(&frame(&p, id)?)?;
        waiting.push_back(id);
    }
    while let Some(id) = waiting.pop_front() {
        acked(&mut c, Some(id))?;
    }
    let secs = start.elapsed().as_secs_f64();
    c.barrier("agg", 1)?;
    let mut total = 0.0;
    loop {
        match c.next_output(std::time::Duration::from_secs(30))? {
            Some((id, Output::Data { value, .. })) if id == sub => {
                total += WindowRow::from_binary(&value)?.2
            }
            Some((id, Output::Barrier { window: 1 })) if id == sub => break,
            Some(_) => {}
            None => return Err("no barrier after the run".into()),
        }
    }
    if total as usize != batch * frames {
        return Err(format!("the node counted {total} events of {}", batch * frames).into());
    }
    server.shutdown();
    Ok(((batch * frames) as f64 / secs, frames as f64 / secs))
}

fn acked(c: &mut Client, id: Option<u64>) -> Result<(), Error> {
    let Some(id) = id else { return Ok(()) };
    match c.answer(id, std::time::Duration::from_secs(30))? {
        Response::Accepted { .. } => Ok(()),
        other => Err(format!("ingest answered {other:?}").into()),
    }
}

/// The same frames to the echo, `window` outstanding; frames/s.
fn echo_run(addr: SocketAddr, batch: usize, frames: usize, window: usize) -> Result<f64, Error> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let p = payload(batch)?;
    let len = frame(&p, 0)?.len();
    let mut back = vec![0u8; len];
    let mut outstanding = 0;
    let start = Instant::now();
    for i in 0..frames as u64 {
        if outstanding >= window {
            s.read_exact(&mut back)?;
            outstanding -= 1;
        }
        s.write_all(&frame(&p, i)?)?;
        outstanding += 1;
    }
    for _ in 0..outstanding {
        s.read_exact(&mut back)?;
    }
    Ok(frames as f64 / start.elapsed().as_secs_f64())
}

pub(crate) fn report(cli: &Cli) -> Result<(), Error> {
    let echo = echo::start()?;
    println!(
        "\nbinary ingest, 1 shard, window {} (median of {})",
        cli.window, cli.runs
    );
    println!(
        "{:>6} {:>14} {:>12} {:>14} {:>10}",
        "batch", "node ev/s", "node fr/s", "echo fr/s", "node/echo"
    );
    for &batch in &cli.batch {
        let frames = cli.frames.min(cli.events / batch).max(200);
        let (mut ev, mut fr, mut ec) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..cli.runs {
            let (e, f) = node_run(batch, frames, cli.window)?;
            ev.push(e);
            fr.push(f);
            ec.push(echo_run(echo, batch, frames, cli.window)?);
        }
        let (e, f, x) = (median(ev), median(fr), median(ec));
        println!("{batch:>6} {e:>14.0} {f:>12.0} {x:>14.0} {:>10.2}", f / x);
    }
    Ok(())
}
