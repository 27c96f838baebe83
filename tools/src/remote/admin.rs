//! The node's control operations, one request each: `deploy`, `undeploy`,
//! `apps`, `stats` (a table, or the node's JSON with `--json`),
//! `barrier` and `checkpoint`.

use std::time::Duration;

use dirigo_net::{ClientError, DeployOptions, ErrorCode};
use serde_json::Value;

use super::{parse_duration, CliError, Remote};

/// `dirigo deploy`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct DeployArgs {
    #[command(flatten)]
    remote: Remote,
    /// The app's kind in the node's catalog (wordcount, sensors, clicks,
    /// aggregate).
    kind: String,
    /// The app's name: how every later command refers to it.
    name: String,
    /// A parameter of the kind, `key=value`; the value is read as JSON when
    /// it is JSON (`work_us=5`, `fn="sum"`) and as a string otherwise
    /// (`fn=sum`). Repeat for more.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, Value)>,
    /// The app's latency target (e.g. 20ms): the policy orders, routes and
    /// scales its messages to meet it.
    #[arg(long, value_parser = parse_duration, conflicts_with = "best_effort")]
    slo: Option<Duration>,
    /// No latency target (the default without --slo): the app runs in the
    /// time latency-critical apps leave.
    #[arg(long)]
    best_effort: bool,
    /// Log its input and checkpoint its state, so it survives a crash
    /// (the node needs a data folder).
    #[arg(long)]
    durable: bool,
    /// The token that may send to it and close its windows (default: the
    /// admin token only).
    #[arg(long, default_value = "")]
    ingest_token: String,
    /// The token that may tail its sinks and read its stats (default: the
    /// admin token only).
    #[arg(long, default_value = "")]
    read_token: String,
}

/// A `key=value` parameter.
fn parse_param(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

pub(crate) fn deploy(a: DeployArgs) -> Result<(), CliError> {
    let mut params = serde_json::Map::new();
    for (k, v) in a.params {
        if params.insert(k.clone(), v).is_some() {
            return Err(CliError::Usage(format!("--param {k} is given twice")));
        }
    }
    let o = DeployOptions {
        slo: a.slo,
        durable: a.durable,
        ingest_token: a.ingest_token,
        read_token: a.read_token,
    };
    let mut c = a.remote.connect()?;
    c.deploy(&a.kind, &a.name, &Value::Object(params), &o)
        .map_err(|e| match e {
            // The parameters are this command's flags: a usage error.
            ClientError::Node {
                code: ErrorCode::InvalidInput,
                message,
            } => CliError::Usage(format!("deploy {}: {message}", a.name)),
            e => CliError::node(format!("deploy {}", a.name), e),
        })?;
    println!("deployed {} ({})", a.name, a.kind);
    Ok(())
}

/// `dirigo undeploy`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct NameArgs {
    #[command(flatten)]
    remote: Remote,
    /// The app.
    name: String,
}

pub(crate) fn undeploy(a: NameArgs) -> Result<(), CliError> {
    let mut c = a.remote.connect()?;
    c.undeploy(&a.name)
        .map_err(|e| CliError::node(format!("undeploy {}", a.name), e))?;
    println!("undeployed {}", a.name);
    Ok(())
}

pub(crate) fn checkpoint(a: NameArgs) -> Result<(), CliError> {
    let mut c = a.remote.connect()?;
    let n = c
        .checkpoint(&a.name)
        .map_err(|e| CliError::node(format!("checkpoint {}", a.name), e))?;
    println!("checkpoint {n} of {}", a.name);
    Ok(())
}

/// `dirigo barrier`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct BarrierArgs {
    #[command(flatten)]
    remote: Remote,
    /// The app.
    name: String,
    /// The window to close: every event sent before this call is in it.
    #[arg(long)]
    window: u64,
}

pub(crate) fn barrier(a: BarrierArgs) -> Result<(), CliError> {
    let mut c = a.remote.connect()?;
    c.barrier(&a.name, a.window)
        .map_err(|e| CliError::node(format!("barrier {} window {}", a.name, a.window), e))?;
    println!("closed window {} of {}", a.window, a.name);
    Ok(())
}

/// `dirigo apps`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct AppsArgs {
    #[command(flatten)]
    remote: Remote,
    /// A JSON array instead of one name a line.
    #[arg(long)]
    json: bool,
}

pub(crate) fn apps(a: AppsArgs) -> Result<(), CliError> {
    let mut c = a.remote.connect()?;
    let names = c.apps().map_err(|e| CliError::node("apps", e))?;
    if a.json {
        println!("{}", Value::from(names));
    } else {
        names.iter().for_each(|n| println!("{n}"));
    }
    Ok(())
}

/// `dirigo stats`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    remote: Remote,
    /// One app; without it, the node's (every app and every shard).
    name: Option<String>,
    /// The node's JSON, unchanged, for scripts.
    #[arg(long)]
    json: bool,
}

pub(crate) fn stats(a: StatsArgs) -> Result<(), CliError> {
    let mut c = a.remote.connect()?;
    let what = a
        .name
        .as_deref()
        .map_or("stats".into(), |n| format!("stats {n}"));
    let s = c
        .stats(a.name.as_deref())
        .map_err(|e| CliError::node(what, e))?;
    if a.json {
        println!("{s}");
        return Ok(());
    }
    match a.name {
        Some(_) => print!("{}", app_table(std::slice::from_ref(&s))),
        None => {
            let apps = s["apps"].as_array().cloned().unwrap_or_default();
            print!("{}", app_table(&apps));
            let shards = s["shards"].as_array().cloned().unwrap_or_default();
            print!("\n{}", shard_table(&shards));
        }
    }
    Ok(())
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// One row per app: what an operator looks at first.
pub(crate) fn app_table(apps: &[Value]) -> String {
    let mut t = format!(
        "{:<16} {:<16} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>6}\n",
        "app",
        "class",
        "outputs",
        "in-SLO",
        "p50ms",
        "p99ms",
        "p999ms",
        "q-p99ms",
        "lessees",
        "leases",
        "revokes",
        "late"
    );
    for a in apps {
        let ms = |p: &str| num(&a["latency_us"][p]) / 1e3;
        t += &format!(
            "{:<16} {:<16} {:>10} {:>7.2}% {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>7} {:>7} {:>6}\n",
            a["name"].as_str().unwrap_or("?"),
            a["class"].as_str().unwrap_or("?"),
            num(&a["delivered"]),
            num(&a["satisfaction"]) * 100.0,
            ms("p50"),
            ms("p99"),
            ms("p999"),
            num(&a["queueing_us"]["p99"]) / 1e3,
            num(&a["lessees"]),
            num(&a["leases_granted"]),
            num(&a["revokes"]),
            num(&a["late_events"]),
        );
    }
    t
}

/// One row per shard.
fn shard_table(shards: &[Value]) -> String {
    let mut t = format!(
        "{:<6} {:>10} {:>12} {:>8} {:>8} {:>8} {:>8}\n",
        "shard", "busy s", "runs", "backlog", "lessors", "lessees", "state"
    );
    for s in shards {
        let state = s["died"]
            .as_str()
            .map_or("ok".to_string(), |d| format!("died: {d}"));
        t += &format!(
            "{:<6} {:>10.2} {:>12} {:>8} {:>8} {:>8} {:>8}\n",
            num(&s["shard"]),
            num(&s["busy_ns"]) / 1e9,
            num(&s["runs"]),
            num(&s["backlog"]),
            num(&s["lessors"]),
            num(&s["lessees"]),
            state
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_json_when_they_parse_and_strings_otherwise() {
        assert_eq!(parse_param("work_us=5"), Ok(("work_us".into(), 5.into())));
        assert_eq!(parse_param("fn=sum"), Ok(("fn".into(), "sum".into())));
        assert_eq!(parse_param("fn=\"sum\""), Ok(("fn".into(), "sum".into())));
        assert!(parse_param("nokey").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_param("=3").unwrap_err().contains("empty key"));
    }
}
