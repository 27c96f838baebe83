//! The operations both fronts serve (the binary protocol's `requests`
//! and HTTP's `http`), with their checks of tokens: each answers with the
//! wire's `Response`, which each front turns into its own form.

use std::sync::Arc;

use dirigo_engine::BarrierKind;

use super::codes;
use super::link::Ctx;
use super::state::{DeployReq, Deployed, Right};
use super::stats;
use crate::ports::{Acked, Batch, Format, Subscription};
use crate::wire::{ErrorCode, Lag, Response};

pub(super) fn refusal(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

pub(super) fn unauthorized() -> Response {
    refusal(ErrorCode::Unauthorized, "the token does not allow this")
}

pub(super) fn no_app(app: &str) -> Response {
    refusal(ErrorCode::NotFound, format!("no app {app:?} is deployed"))
}

/// The app, if this connection may do `right` on it.
pub(super) fn app_for(
    ctx: &Ctx,
    token: &str,
    app: &str,
    right: Right,
) -> Result<Arc<Deployed>, Response> {
    let Some(d) = ctx.state.app(app) else {
        // An unknown app and a forbidden one look the same to a tenant.
        return Err(if ctx.state.allows(token, right, None) {
            no_app(app)
        } else {
            unauthorized()
        });
    };
    if !ctx.state.allows(token, right, Some(&d)) {
        return Err(unauthorized());
    }
    Ok(d)
}

/// An ingest's answer: accepted at `node_ns` (the node clock, read after
/// the engine took the batch), or its refusal.
pub(super) fn accepted(r: Result<usize, crate::error::PortError>, node_ns: u64) -> Response {
    match r {
        Ok(n) => Response::Accepted {
            events: n as u64,
            node_ns,
        },
        Err(e) => refusal(codes::port(&e), e.to_string()),
    }
}

/// Close window `window` of an app, injected from this shard so that it
/// follows every ingest this connection sent before it.
pub(super) async fn barrier(ctx: &Ctx, token: &str, app: &str, window: u64) -> Response {
    let d = match app_for(ctx, token, app, Right::Ingest) {
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

/// Hand an ingest to its source, after the token and the batch limit
/// are checked: in order, waiting out backpressure (then refused).
pub(super) async fn submit(
    ctx: &Ctx,
    token: &str,
    app: &str,
    source: &str,
    batch: Batch<'_>,
) -> Result<Acked, Response> {
    let d = app_for(ctx, token, app, Right::Ingest)?;
    let max = ctx.state.cfg.max_batch;
    let n = batch.len();
    if n > max {
        ctx.state.count_refused(app, n);
        return Err(refusal(
            ErrorCode::Limit,
            format!("a batch of {n} events is over the limit of {max}"),
        ));
    }
    let Some(port) = d.sources.get(source).cloned() else {
        return Err(refusal(
            ErrorCode::NotFound,
            format!("app {app:?} has no source {source:?}"),
        ));
    };
    let acked = port.submit(batch, ctx.state.cfg.ingest_timeout).await;
    if let Acked::Now(Err(_)) = &acked {
        ctx.state.count_refused(app, n);
    }
    Ok(acked)
}

/// Subscribe to a sink, after the token is checked; the hub's pump is
/// started on this shard when none runs.
pub(super) fn subscribe(
    ctx: &Ctx,
    token: &str,
    app: &str,
    sink: &str,
    lag: Lag,
    format: Format,
) -> Result<Subscription, Response> {
    let d = app_for(ctx, token, app, Right::Read)?;
    let Some(port) = d.sinks.get(sink) else {
        return Err(refusal(
            ErrorCode::NotFound,
            format!("app {app:?} has no sink {sink:?}"),
        ));
    };
    let cfg = &ctx.state.cfg;
    let (sub, pump) = port
        .subscribe(lag, cfg.subscriber_buffer, format, cfg.max_subscribers)
        .map_err(|e| refusal(codes::port(&e), e.to_string()))?;
    if let Some(p) = pump {
        glommio::spawn_local(p).detach();
    }
    Ok(sub)
}

/// The control requests: checked here, run on the control thread.
pub(super) enum Control {
    Deploy(DeployReq),
    Undeploy(String),
    Apps,
    /// One app's stats, or the node's.
    Stats(Option<String>),
    Checkpoint(String),
}

/// Run a control request, after its token is checked.
pub(super) async fn control(ctx: &Ctx, token: &str, request: Control) -> Response {
    let state = ctx.state.clone();
    let ctl = &ctx.control;
    let admin = state.allows(token, Right::Admin, None);
    match request {
        Control::Stats(Some(app)) => app_stats(ctx, token, app).await,
        _ if !admin => unauthorized(),
        Control::Deploy(req) => match ctl.run(move || state.deploy(req)).await {
            Some(Ok(())) => Response::Ok,
            Some(Err(e)) => refusal(codes::deploy(&e), e.to_string()),
            None => failed(),
        },
        Control::Undeploy(app) => match ctl
            .run(move || state.undeploy(&app).map(|found| (found, app)))
            .await
        {
            Some(Ok((true, _))) => Response::Ok,
            Some(Ok((false, app))) => no_app(&app),
            Some(Err(e)) => refusal(codes::engine(&e), e.to_string()),
            None => failed(),
        },
        Control::Apps => Response::Apps(state.app_names()),
        Control::Stats(None) => node_stats(ctx).await,
        Control::Checkpoint(app) => {
            let Some(d) = state.app(&app) else {
                return no_app(&app);
            };
            match ctl.run(move || d.handle.checkpoint()).await {
                Some(Ok(n)) => Response::Checkpointed { checkpoint: n },
                Some(Err(e)) => refusal(codes::engine(&e), e.to_string()),
                None => failed(),
            }
        }
    }
}

fn failed() -> Response {
    refusal(ErrorCode::Failed, "the control thread failed this request")
}

/// The node's stats (the token was checked): the snapshot, the node clock
/// right after it, and the apps' SLOs.
async fn node_stats(ctx: &Ctx) -> Response {
    let state = ctx.state.clone();
    let snapshot = move || {
        let s = state.node.stats();
        s.map(|s| (s, state.node.now_ns(), state.slos()))
    };
    match ctx.control.run(snapshot).await {
        Some(Ok((s, now_ns, slos))) => {
            Response::Stats(stats::node_json(&s, now_ns, &slos).to_string())
        }
        Some(Err(e)) => refusal(codes::engine(&e), e.to_string()),
        None => failed(),
    }
}

/// One app's stats, for a token that may read it.
async fn app_stats(ctx: &Ctx, token: &str, app: String) -> Response {
    let d = match app_for(ctx, token, &app, Right::Read) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let id = d.handle.id();
    let state = ctx.state.clone();
    match ctx.control.run(move || state.node.stats()).await {
        Some(Ok(s)) => match s.apps.get(&id) {
            Some(a) => Response::Stats(stats::app_json(a, d.slo).to_string()),
            None => no_app(&app),
        },
        Some(Err(e)) => refusal(codes::engine(&e), e.to_string()),
        None => failed(),
    }
}
