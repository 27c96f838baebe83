//! A connection's requests, one at a time in the order they came: ingest
//! read in place from the frame and handed to the engine on this shard;
//! barriers injected from here (so they stay in order with the ingests
//! before them); subscriptions as tasks; control requests on the control
//! thread. Every answer is a `Response` of the request's id; an error
//! refuses that request only, unless the frame itself was bad.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use dirigo_engine::BarrierKind;
use rkyv::rancor;

use super::codes;
use super::link::{error, frame, Conn};
use super::state::{DeployReq, Deployed, Right};
use super::stats;
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
    let answer = match request {
        Request::Subscribe { app, sink, lag } => {
            return subscribe(conn, req, &app, &sink, lag).await
        }
        Request::Barrier { app, window } => barrier(conn, &app, window).await,
        other => control(conn, other).await,
    };
    conn.send(frame(&answer, req)).await
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

fn unauthorized() -> Response {
    refusal(ErrorCode::Unauthorized, "the token does not allow this")
}

fn no_app(app: &str) -> Response {
    refusal(ErrorCode::NotFound, format!("no app {app:?} is deployed"))
}

/// The app, if this connection may do `right` on it.
fn app_for(conn: &Conn, app: &str, right: Right) -> Result<Arc<Deployed>, Response> {
    let Some(d) = conn.ctx.state.app(app) else {
        // An unknown app and a forbidden one look the same to a tenant.
        return Err(if conn.allows(right, None) {
            no_app(app)
        } else {
            unauthorized()
        });
    };
    if !conn.allows(right, Some(&d)) {
        return Err(unauthorized());
    }
    Ok(d)
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
    let max = conn.ctx.state.cfg.max_batch;
    let refused = match app_for(conn, app, Right::Ingest) {
        Err(r) => Some(r),
        Ok(_) if batch.len() > max => Some(refusal(
            ErrorCode::Limit,
            format!(
                "a batch of {} events is over the limit of {max}",
                batch.len()
            ),
        )),
        Ok(d) => match d.sources.get(source) {
            None => Some(refusal(
                ErrorCode::NotFound,
                format!("app {app:?} has no source {source:?}"),
            )),
            Some(port) => {
                let port = port.clone();
                let Ok(permit) = conn.window.clone().acquire_static_permit(1).await else {
                    return Err("the connection is closing".into());
                };
                let timeout = conn.ctx.state.cfg.ingest_timeout;
                match port.submit(batch, timeout).await {
                    Acked::Now(r) => Some(accepted(r)),
                    Acked::Later(ack) => {
                        let out = conn.out.clone();
                        glommio::spawn_local(async move {
                            let answer = accepted(ack.await);
                            let _ = out.send(frame(&answer, req)).await;
                            drop(permit);
                        })
                        .detach();
                        None
                    }
                }
            }
        },
    };
    match refused {
        Some(answer) => conn.send(frame(&answer, req)).await,
        None => Ok(()),
    }
}

fn accepted(r: Result<usize, crate::error::PortError>) -> Response {
    match r {
        Ok(n) => Response::Accepted { events: n as u64 },
        Err(e) => refusal(codes::port(&e), e.to_string()),
    }
}

/// Close window `window` of an app, injected from this shard so that it
/// follows every ingest this connection sent before it.
async fn barrier(conn: &Conn, app: &str, window: u64) -> Response {
    let d = match app_for(conn, app, Right::Ingest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match d
        .handle
        .inject_barrier_async(BarrierKind::WindowClose, window)
        .await
    {
        Ok(_) => Response::Ok,
        Err(e) => refusal(codes::engine(&e), e.to_string()),
    }
}

/// Subscribe to a sink: `Ok`, then its outputs as `Output` frames of this
/// request's id, from a task of this connection.
async fn subscribe(
    conn: &mut Conn,
    req: u64,
    app: &str,
    sink: &str,
    lag: Lag,
) -> Result<(), String> {
    let answer = match app_for(conn, app, Right::Read) {
        Err(r) => r,
        Ok(_) if !conn.subscription_room() => refusal(
            ErrorCode::Limit,
            "this connection has its most subscriptions",
        ),
        Ok(d) => match d.sinks.get(sink) {
            None => refusal(
                ErrorCode::NotFound,
                format!("app {app:?} has no sink {sink:?}"),
            ),
            Some(port) => {
                let cfg = &conn.ctx.state.cfg;
                match port.subscribe(
                    lag,
                    cfg.subscriber_buffer,
                    Format::Binary,
                    cfg.max_subscribers,
                ) {
                    Err(e) => refusal(codes::port(&e), e.to_string()),
                    Ok((sub, hub_pump)) => {
                        if let Some(p) = hub_pump {
                            glommio::spawn_local(p).detach();
                        }
                        conn.send(frame(&Response::Ok, req)).await?;
                        let ended = Rc::new(Cell::new(false));
                        let task =
                            glommio::spawn_local(pump(sub, req, conn.out.clone(), ended.clone()));
                        conn.subs.push((ended, task));
                        return Ok(());
                    }
                }
            }
        },
    };
    conn.send(frame(&answer, req)).await
}

/// A subscription's outputs to the writer, until it closes or the
/// connection does.
async fn pump(
    sub: Subscription,
    req: u64,
    out: Rc<glommio::channels::local_channel::LocalSender<Vec<u8>>>,
    ended: Rc<Cell<bool>>,
) {
    while let Some(d) = sub.next().await {
        let (o, last) = match d {
            Delivery::Data { key, value } => (Output::Data { key, value }, false),
            Delivery::Barrier { window } => (Output::Barrier { window }, false),
            Delivery::Lagged { dropped } => (Output::Lagged { dropped }, false),
            Delivery::Closed { reason } => (
                Output::Closed {
                    code: ErrorCode::Limit,
                    message: reason,
                },
                true,
            ),
        };
        if out.send(frame(&o, req)).await.is_err() || last {
            break;
        }
    }
    ended.set(true);
}

/// Deploy, undeploy, apps, stats, checkpoint: checked here, run on the
/// control thread.
async fn control(conn: &Conn, request: Request) -> Response {
    let state = conn.ctx.state.clone();
    let ctl = &conn.ctx.control;
    let failed = || refusal(ErrorCode::Failed, "the control thread failed this request");
    match request {
        Request::Deploy {
            kind,
            name,
            params_json,
            slo_us,
            durable,
            ingest_token,
            read_token,
        } => {
            if !conn.allows(Right::Admin, None) {
                return unauthorized();
            }
            let spec = DeploySpec {
                name,
                slo: slo_us.map(Duration::from_micros),
                durable,
            };
            let req = DeployReq {
                kind,
                spec,
                params_json,
                ingest_token,
                read_token,
            };
            match ctl.run(move || state.deploy(req)).await {
                Some(Ok(())) => Response::Ok,
                Some(Err(e)) => refusal(codes::deploy(&e), e.to_string()),
                None => failed(),
            }
        }
        Request::Undeploy { app } => {
            if !conn.allows(Right::Admin, None) {
                return unauthorized();
            }
            match ctl
                .run(move || state.undeploy(&app).map(|found| (found, app)))
                .await
            {
                Some(Ok((true, _))) => Response::Ok,
                Some(Ok((false, app))) => no_app(&app),
                Some(Err(e)) => refusal(codes::engine(&e), e.to_string()),
                None => failed(),
            }
        }
        Request::Apps if conn.allows(Right::Admin, None) => Response::Apps(state.app_names()),
        Request::Stats { app: None } if conn.allows(Right::Admin, None) => {
            match ctl.run(move || state.node.stats()).await {
                Some(Ok(s)) => Response::Stats(stats::node_json(&s).to_string()),
                Some(Err(e)) => refusal(codes::engine(&e), e.to_string()),
                None => failed(),
            }
        }
        Request::Stats { app: Some(app) } => {
            let d = match app_for(conn, &app, Right::Read) {
                Ok(d) => d,
                Err(r) => return r,
            };
            let id = d.handle.id();
            match ctl.run(move || state.node.stats()).await {
                Some(Ok(s)) => match s.apps.get(&id) {
                    Some(a) => Response::Stats(stats::app_json(a).to_string()),
                    None => no_app(&app),
                },
                Some(Err(e)) => refusal(codes::engine(&e), e.to_string()),
                None => failed(),
            }
        }
        Request::Checkpoint { app } => {
            if !conn.allows(Right::Admin, None) {
                return unauthorized();
            }
            let Some(d) = state.app(&app) else {
                return no_app(&app);
            };
            match ctl.run(move || d.handle.checkpoint()).await {
                Some(Ok(n)) => Response::Checkpointed { checkpoint: n },
                Some(Err(e)) => refusal(codes::engine(&e), e.to_string()),
                None => failed(),
            }
        }
        Request::Apps | Request::Stats { app: None } => unauthorized(),
        Request::Ingest { .. } | Request::Barrier { .. } | Request::Subscribe { .. } => {
            unreachable!("handled before")
        }
    }
}
