//! The HTTP front's routes: JSON in and out (errors as
//! `{"error": {"code", "message"}}` with a stable code), Server-Sent Events
//! for sinks, the Prometheus text for `/metrics`. Tokens come as
//! `Authorization: Bearer <token>`. Every route runs the same operation as
//! the binary protocol (`ops`). The dashboard's page and assets
//! (`dashboard`) are public; its data, `GET /v1/stats`, is the admin's.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::super::link::{Ctx, Stop, SHUTTING_DOWN};
use super::super::ops::{self, Control};
use super::super::state::DeployReq;
use super::{dashboard, metrics};
use crate::catalog::DeploySpec;
use crate::ports::{Acked, Batch, Delivery, Format, Subscription};
use crate::wire::{self, ErrorCode, Lag};

/// A response body: whole, or a stream (SSE).
pub(super) type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The stable code's name, the same for both fronts.
pub(crate) fn code_name(c: ErrorCode) -> &'static str {
    match c {
        ErrorCode::BadFrame => "bad_request",
        ErrorCode::BadVersion => "bad_version",
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::NotFound => "not_found",
        ErrorCode::Conflict => "conflict",
        ErrorCode::InvalidInput => "invalid_input",
        ErrorCode::Limit => "limit",
        ErrorCode::Backpressure => "backpressure",
        ErrorCode::Failed => "failed",
        ErrorCode::ShuttingDown => "shutting_down",
    }
}

fn status_of(c: ErrorCode) -> StatusCode {
    match c {
        ErrorCode::BadFrame | ErrorCode::BadVersion | ErrorCode::InvalidInput => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Limit => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Backpressure => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub(super) fn error(code: ErrorCode, message: impl Into<String>) -> Response<Body> {
    let v = json!({"error": {"code": code_name(code), "message": message.into()}});
    let mut r = json_response(status_of(code), &v);
    if code == ErrorCode::Backpressure {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

/// The wire's answer as HTTP.
fn answer(r: wire::Response) -> Response<Body> {
    let ok = |v: Value| json_response(StatusCode::OK, &v);
    match r {
        wire::Response::Ok => ok(json!({"ok": true})),
        wire::Response::Apps(v) => ok(json!({ "apps": v })),
        wire::Response::Accepted { events, .. } => ok(json!({ "accepted": events })),
        wire::Response::Stats(s) => ok(serde_json::from_str(&s).unwrap_or(Value::String(s))),
        wire::Response::Checkpointed { checkpoint } => ok(json!({ "checkpoint": checkpoint })),
        wire::Response::Error { code, message } => error(code, message),
    }
}

fn bearer<B>(req: &Request<B>) -> String {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// The body, up to `max` bytes.
async fn body(req: Request<Incoming>, max: usize) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(error(
                ErrorCode::Limit,
                format!("the body is over {max} bytes"),
            ))
        }
        Err(e) => Err(error(
            ErrorCode::BadFrame,
            format!("cannot read the body: {e}"),
        )),
    }
}

/// Serve one request.
pub(super) async fn route(
    ctx: Arc<Ctx>,
    stop: Stop,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let token = bearer(&req);
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let c = &*ctx;
    let r = match (&method, segs.as_slice()) {
        (&Method::GET, ["healthz"]) => json_response(StatusCode::OK, &json!({"ok": true})),
        (&Method::GET, ["readyz"]) => ready(c).await,
        (&Method::GET, ["metrics"]) => scrape(c, &token).await,
        (&Method::GET, ["v1", "stats"]) => {
            answer(ops::control(c, &token, Control::Stats(None)).await)
        }
        (&Method::GET, ["v1", "apps"]) => answer(ops::control(c, &token, Control::Apps).await),
        (&Method::POST, ["v1", "apps"]) => match body(req, c.state.cfg.max_frame).await {
            Ok(b) => deploy(c, &token, &b).await,
            Err(r) => r,
        },
        (&Method::GET, ["v1", "apps", app] | ["v1", "apps", app, "stats"]) => {
            let r = Control::Stats(Some((*app).to_owned()));
            answer(ops::control(c, &token, r).await)
        }
        (&Method::DELETE, ["v1", "apps", app]) => {
            let r = Control::Undeploy((*app).to_owned());
            answer(ops::control(c, &token, r).await)
        }
        (&Method::POST, ["v1", "apps", app, "checkpoint"]) => {
            let r = Control::Checkpoint((*app).to_owned());
            answer(ops::control(c, &token, r).await)
        }
        (&Method::POST, ["v1", "apps", app, "barriers"]) => {
            let app = (*app).to_owned();
            match body(req, c.state.cfg.max_frame).await {
                Ok(b) => barrier(c, &token, &app, &b).await,
                Err(r) => r,
            }
        }
        (&Method::POST, ["v1", "apps", app, "sources", source, "events"]) => {
            let (app, source) = ((*app).to_owned(), (*source).to_owned());
            match body(req, c.state.cfg.max_frame).await {
                Ok(b) => ingest(c, &token, &app, &source, &b).await,
                Err(r) => r,
            }
        }
        (&Method::GET, ["v1", "apps", app, "sinks", sink]) => {
            sse(c, stop, &token, app, sink, &query)
        }
        (&Method::GET, [name]) if dashboard::is_asset(name) => match dashboard::asset(name) {
            Some(r) => r.map(BodyExt::boxed_unsync),
            None => error(ErrorCode::NotFound, format!("no route {path}")),
        },
        (_, ["healthz" | "readyz" | "metrics"] | ["v1", "apps" | "stats", ..]) => {
            not_allowed(&method, &path)
        }
        (_, [name]) if dashboard::is_asset(name) => not_allowed(&method, &path),
        _ => error(ErrorCode::NotFound, format!("no route {path}")),
    };
    Ok(r)
}

fn not_allowed(method: &Method, path: &str) -> Response<Body> {
    let mut r = error(
        ErrorCode::InvalidInput,
        format!("{method} is not allowed on {path}"),
    );
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

async fn ready(c: &Ctx) -> Response<Body> {
    let state = c.state.clone();
    match c.control.run(move || state.node.stats()).await {
        Some(Ok(s)) if s.shards.iter().all(|x| x.died.is_none()) => {
            json_response(StatusCode::OK, &json!({"ready": true}))
        }
        Some(Ok(_)) => error(ErrorCode::Failed, "a shard died"),
        Some(Err(e)) => error(ErrorCode::Failed, e.to_string()),
        None => error(ErrorCode::Failed, "the control thread is gone"),
    }
}

async fn scrape(c: &Ctx, token: &str) -> Response<Body> {
    if !c
        .state
        .allows(token, super::super::state::Right::Admin, None)
    {
        return error(ErrorCode::Unauthorized, "the token does not allow this");
    }
    let state = c.state.clone();
    let Some(Ok(stats)) = c.control.run(move || state.node.stats()).await else {
        return error(ErrorCode::Failed, "the node did not answer");
    };
    match metrics::render(stats, c.state.refused(), c.state.connections()) {
        Ok(text) => {
            let mut r = Response::new(full(text));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        Err(_) => error(ErrorCode::Failed, "cannot encode the metrics"),
    }
}

/// `POST /v1/apps`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    kind: String,
    name: String,
    #[serde(default)]
    params: Value,
    /// The SLO in ms; absent: best effort.
    slo_ms: Option<f64>,
    #[serde(default)]
    durable: bool,
    #[serde(default)]
    ingest_token: String,
    #[serde(default)]
    read_token: String,
}

async fn deploy(c: &Ctx, token: &str, body: &[u8]) -> Response<Body> {
    let d: DeployBody = match serde_json::from_slice(body) {
        Ok(d) => d,
        Err(e) => return error(ErrorCode::InvalidInput, format!("invalid deploy body: {e}")),
    };
    let slo_us = match d.slo_ms {
        Some(ms) if !(ms > 0.0 && ms < 3.6e9) => {
            return error(ErrorCode::InvalidInput, "slo_ms must be positive")
        }
        Some(ms) => Some((ms * 1e3) as u64),
        None => None,
    };
    let params = if d.params.is_null() {
        json!({})
    } else {
        d.params
    };
    let spec = DeploySpec {
        name: d.name.clone(),
        slo: slo_us.map(Duration::from_micros),
        durable: d.durable,
    };
    let r = DeployReq {
        kind: d.kind,
        spec,
        params_json: params.to_string(),
        ingest_token: d.ingest_token,
        read_token: d.read_token,
    };
    match ops::control(c, token, Control::Deploy(r)).await {
        wire::Response::Ok => json_response(StatusCode::CREATED, &json!({"name": d.name})),
        other => answer(other),
    }
}

async fn barrier(c: &Ctx, token: &str, app: &str, body: &[u8]) -> Response<Body> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct B {
        window: u64,
    }
    match serde_json::from_slice::<B>(body) {
        Ok(b) => answer(ops::barrier(c, token, app, b.window).await),
        Err(e) => error(
            ErrorCode::InvalidInput,
            format!("invalid barrier body (want {{\"window\": N}}): {e}"),
        ),
    }
}

/// A JSON array, or JSON lines: the events, or which line is bad.
fn parse_events(body: &[u8]) -> Result<Vec<Value>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).map_err(|e| format!("invalid JSON array: {e}"));
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

async fn ingest(c: &Ctx, token: &str, app: &str, source: &str, body: &[u8]) -> Response<Body> {
    let events = match parse_events(body) {
        Ok(v) => v,
        Err(e) => return error(ErrorCode::InvalidInput, e),
    };
    match ops::submit(c, token, app, source, Batch::Json(events)).await {
        Err(r) => answer(r),
        Ok(Acked::Now(r)) => answer(ops::accepted(r, c.state.node.now_ns())),
        Ok(Acked::Later(ack)) => {
            let r = ack.await;
            answer(ops::accepted(r, c.state.node.now_ns()))
        }
    }
}

/// The next delivery (`Some(None)`: the subscription ended), or `None`
/// once the server stops and the buffer holds nothing more.
async fn next_or_stop(s: &Subscription, stop: &Stop) -> Option<Option<Delivery>> {
    if stop.is_set() {
        return futures_lite::future::poll_once(s.next()).await;
    }
    futures_lite::future::or(async { Some(s.next().await) }, async {
        stop.wait().await;
        None
    })
    .await
}

/// The last SSE event of a stream cut short by a shutdown.
fn shutdown_event() -> (Bytes, bool) {
    let data = json!({"code": code_name(ErrorCode::ShuttingDown), "message": SHUTTING_DOWN});
    (
        Bytes::from(format!("event: closed\ndata: {data}\n\n")),
        true,
    )
}

/// One SSE event.
fn sse_event(d: Delivery) -> (Bytes, bool) {
    let (name, data, last) = match d {
        Delivery::Data { key, value, .. } => {
            let v: Value = serde_json::from_slice(&value).unwrap_or(Value::Null);
            ("output", json!({"key": key, "value": v}), false)
        }
        Delivery::Barrier { window } => ("barrier", json!({ "window": window }), false),
        Delivery::Lagged { dropped } => ("lagged", json!({ "dropped": dropped }), false),
        Delivery::Closed { code, reason } => (
            "closed",
            json!({"code": code_name(code), "message": reason}),
            true,
        ),
    };
    (
        Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
        last,
    )
}

fn sse(c: &Ctx, stop: Stop, token: &str, app: &str, sink: &str, query: &str) -> Response<Body> {
    let lag = match query.split('&').find_map(|kv| kv.strip_prefix("lag=")) {
        None | Some("disconnect") => Lag::Disconnect,
        Some("drop") => Lag::DropOldest,
        Some(other) => {
            return error(
                ErrorCode::InvalidInput,
                format!("lag must be drop or disconnect, not {other:?}"),
            )
        }
    };
    let sub = match ops::subscribe(c, token, app, sink, lag, Format::Json) {
        Ok(s) => s,
        Err(r) => return answer(r),
    };
    let stream = futures_lite::stream::unfold(Some(sub), move |sub: Option<Subscription>| {
        let stop = stop.clone();
        async move {
            let s = sub?;
            let (bytes, last) = match next_or_stop(&s, &stop).await {
                Some(d) => sse_event(d?),
                None => shutdown_event(),
            };
            Some((Ok(Frame::data(bytes)), (!last).then_some(s)))
        }
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    r
}
