//! A connection's requests, one at a time in the order they came: ingest
//! read in place from the frame and handed to the engine on this shard;
//! barriers injected from here (so they stay in order with the ingests
//! before them); subscriptions as tasks; control requests on the control
//! thread. Every answer is a `Response` of the request's id; an error
//! refuses that request only, unless the frame itself was bad.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use rkyv::rancor;

use super::link::{error, frame, Conn, Out, Stop, SHUTTING_DOWN};
use super::ops::{self, Control};
use super::state::DeployReq;
use crate::catalog::DeploySpec;
use crate::frame::Frame;
use crate::ports::{Acked, Batch, Delivery, Format, Subscription};
use crate::wire::{ArchivedRequest, ErrorCode, Lag, Message, Output, Request, Response};

/// Handle one frame of a connection; `Err` closes the connection.
pub(super) async fn handle(conn: &mut Conn, f: Frame) -> Result<(), String> {
    let req = f.request;
    let archived = match Request::access(&f) {
        Ok(a) => a,
        Err(e) => {
            conn.send(error(req, ErrorCode::BadFrame, e.to_string()))
                .await?;
            return Err(e.to_string());
        }
    };
    if let ArchivedRequest::Ingest {
        app,
        source,
        events,
    } = archived
    {
        // The hot path: read in place, never deserialized.
        let values = events.iter().map(|e| e.value.as_slice()).collect();
        return ingest(
            conn,
            req,
            app.as_str(),
            source.as_str(),
            Batch::Binary(values),
        )
        .await;
    }
    let request = match rkyv::deserialize::<Request, rancor::Error>(archived) {
        Ok(r) => r,
        Err(e) => {
            conn.send(error(req, ErrorCode::BadFrame, e.to_string()))
                .await?;
            return Err(e.to_string());
        }
    };
    owned(conn, req, request).await
}

/// A request other than a binary ingest, deserialized.
async fn owned(conn: &mut Conn, req: u64, request: Request) -> Result<(), String> {
    let answer = match request {
        Request::Subscribe {
            app,
            sink,
            lag,
            json,
        } => {
            let format = if json { Format::Json } else { Format::Binary };
            return subscribe(conn, req, &app, &sink, lag, format).await;
        }
        Request::IngestJson {
            app,
            source,
            events,
        } => match json_events(&events) {
            Ok(values) => return ingest(conn, req, &app, &source, Batch::Json(values)).await,
            Err(refusal) => refusal,
        },
        Request::Ingest {
            app,
            source,
            events,
        } => {
            // `handle` reads these in place; the owned form is the same.
            let values = events.iter().map(|e| e.value.as_slice()).collect();
            return ingest(conn, req, &app, &source, Batch::Binary(values)).await;
        }
        Request::Barrier { app, window } => {
            ops::barrier(&conn.ctx, &conn.token, &app, window).await
        }
        r @ Request::Deploy { .. } => match deploy_control(r) {
            Some(c) => control(conn, c).await,
            None => ops::refusal(ErrorCode::Failed, "a deploy that is not one"),
        },
        Request::Undeploy { app } => control(conn, Control::Undeploy(app)).await,
        Request::Apps => control(conn, Control::Apps).await,
        Request::Stats { app } => control(conn, Control::Stats(app)).await,
        Request::Checkpoint { app } => control(conn, Control::Checkpoint(app)).await,
    };
    conn.send(frame(&answer, req)).await
}

/// A `Deploy` request as the control thread's operation (`None` for any
/// other request).
fn deploy_control(r: Request) -> Option<Control> {
    let Request::Deploy {
        kind,
        name,
        params_json,
        slo_us,
        durable,
        ingest_token,
        read_token,
    } = r
    else {
        return None;
    };
    let spec = DeploySpec {
        name,
        slo: slo_us.map(Duration::from_micros),
        durable,
    };
    Some(Control::Deploy(DeployReq {
        kind,
        spec,
        params_json,
        ingest_token,
        read_token,
    }))
}

/// The JSON texts of an `IngestJson` parsed, or its refusal naming the
/// first that is not JSON (nothing of the batch is sent).
fn json_events(events: &[String]) -> Result<Vec<serde_json::Value>, Response> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::from_str(e).map_err(|err| {
                ops::refusal(
                    ErrorCode::InvalidInput,
                    format!("event {i} is not JSON: {err}"),
                )
            })
        })
        .collect()
}

async fn control(conn: &Conn, c: Control) -> Response {
    ops::control(&conn.ctx, &conn.token, c).await
}

/// An ingest: decoded and handed over now, in order; acknowledged now
/// (not durable) or by a task when the journal commits (durable), with at
/// most `window` such tasks at once.
async fn ingest(
    conn: &mut Conn,
    req: u64,
    app: &str,
    source: &str,
    batch: Batch<'_>,
) -> Result<(), String> {
    let Ok(permit) = conn.window.clone().acquire_static_permit(1).await else {
        return Err("the connection is closing".into());
    };
    let answer = match ops::submit(&conn.ctx, &conn.token, app, source, batch).await {
        Err(r) => r,
        Ok(Acked::Now(r)) => ops::accepted(r, conn.ctx.state.node.now_ns()),
        Ok(Acked::Later(ack)) => {
            let (out, node) = (conn.out.clone(), conn.ctx.state.node.clone());
            glommio::spawn_local(async move {
                let r = ack.await;
                let answer = ops::accepted(r, node.now_ns());
                let _ = out.send(frame(&answer, req)).await;
                drop(permit);
            })
            .detach();
            return Ok(());
        }
    };
    conn.send(frame(&answer, req)).await
}

/// Subscribe to a sink: `Ok`, then its outputs as `Output` frames of this
/// request's id, from a task of this connection.
async fn subscribe(
    conn: &mut Conn,
    req: u64,
    app: &str,
    sink: &str,
    lag: Lag,
    format: Format,
) -> Result<(), String> {
    if !conn.subscription_room() {
        let answer = ops::refusal(
            ErrorCode::Limit,
            "this connection has its most subscriptions",
        );
        return conn.send(frame(&answer, req)).await;
    }
    match ops::subscribe(&conn.ctx, &conn.token, app, sink, lag, format) {
        Err(answer) => conn.send(frame(&answer, req)).await,
        Ok(sub) => {
            conn.send(frame(&Response::Ok, req)).await?;
            let ended = Rc::new(Cell::new(false));
            let (out, stop) = (conn.out.clone(), conn.stop.clone());
            let task = glommio::spawn_local(pump(sub, req, out, ended.clone(), stop));
            conn.subs.push((ended, task));
            Ok(())
        }
    }
}

/// A subscription's outputs to the writer, until it closes or the
/// connection does. At a shutdown, what its buffer holds is sent, then a
/// `Closed` notice of `ShuttingDown`.
async fn pump(sub: Subscription, req: u64, out: Out, ended: Rc<Cell<bool>>, stop: Stop) {
    loop {
        let next = if stop.is_set() {
            futures_lite::future::poll_once(sub.next()).await
        } else {
            futures_lite::future::or(async { Some(sub.next().await) }, async {
                stop.wait().await;
                None
            })
            .await
        };
        let (o, last) = match next {
            Some(Some(d)) => output(d),
            Some(None) => break,
            None => {
                let message = SHUTTING_DOWN.to_owned();
                let code = ErrorCode::ShuttingDown;
                (Output::Closed { code, message }, true)
            }
        };
        if out.send(frame(&o, req)).await.is_err() || last {
            break;
        }
    }
    ended.set(true);
}

/// A delivery as an output frame's body, and whether it is the last.
fn output(d: Delivery) -> (Output, bool) {
    match d {
        Delivery::Data {
            key,
            value,
            latency_ns,
            ingress_ns,
        } => (
            Output::Data {
                key,
                value,
                latency_ns,
                ingress_ns,
            },
            false,
        ),
        Delivery::Barrier { window } => (Output::Barrier { window }, false),
        Delivery::Lagged { dropped } => (Output::Lagged { dropped }, false),
        Delivery::Closed { code, reason } => (
            Output::Closed {
                code,
                message: reason,
            },
            true,
        ),
    }
}
