//! The commands that talk to a running node over its binary protocol:
//! deploy and undeploy apps, list them, read their stats, close windows,
//! checkpoint, send events and tail outputs (`admin`, `send`, `tail`), and
//! run an open-loop load with latency percentiles (`load`), and watch a
//! node live (`top`).
//!
//! This module owns what they share: how to reach the node (`--addr`,
//! `--token`, `--connect-timeout`, each also from the environment), the
//! one error type every command returns, and the exit code each error maps
//! to, which scripts rely on:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | the operation failed (unknown app or kind, bad event, engine error) |
//! | 2 | usage or config error (a flag, a parameter, a file that cannot be read) |
//! | 3 | the node cannot be reached (nothing listens, no handshake in time) |
//! | 4 | refused: the token does not allow it, or a limit (batch, subscribers, backpressure) |
//!
//! The limits of what a command keeps in flight live here too.

/// Most batches a command keeps unacknowledged (`--window`): the node's
/// answers to them wait in the connection's buffers meanwhile.
pub(crate) const MAX_WINDOW: usize = 1024;

pub(crate) mod admin;
pub(crate) mod load;
pub(crate) mod send;
pub(crate) mod tail;
pub(crate) mod top;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use dirigo_net::{Client, ClientError, ErrorCode};

/// How to reach the node, shared by every remote command.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Remote {
    /// The node's binary-protocol address (host:port), as its `[server]
    /// listen` says.
    #[arg(long, env = "DIRIGO_ADDR", default_value = "127.0.0.1:7070")]
    pub(crate) addr: String,
    /// The token to present: the node's admin token, or an app's ingest or
    /// read token. Empty for a node without tokens.
    #[arg(long, env = "DIRIGO_TOKEN", default_value = "", hide_env_values = true)]
    pub(crate) token: String,
    /// How long to wait for the connection and for the node's handshake
    /// (e.g. 500ms, 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) connect_timeout: Duration,
}

/// Why a remote command failed; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A flag, parameter or input file is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Nothing answered at the address (exit 3).
    #[error("cannot reach the node at {addr}: {source}")]
    Unreachable { addr: String, source: ClientError },
    /// The node (or the connection) failed an operation: exit 4 for a
    /// refusal of the token or a limit, 1 otherwise.
    #[error("{what}: {source}")]
    Node { what: String, source: ClientError },
    /// The operation failed for a reason of its own (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The exit code (see the module's table).
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
            CliError::Node { source, .. } => code_of(source),
            CliError::Failed(_) => 1,
        }
    }

    /// The error of `what` failing with `source`.
    pub(crate) fn node(what: impl Into<String>, source: ClientError) -> CliError {
        CliError::Node {
            what: what.into(),
            source,
        }
    }
}

/// The exit code of a failed call: 4 for a refusal of the token or a
/// limit, 1 for anything else.
fn code_of(e: &ClientError) -> i32 {
    match e {
        ClientError::Node { code, .. } if refusal(*code) => 4,
        _ => 1,
    }
}

/// Whether a node's code says "not allowed" rather than "failed".
pub(crate) fn refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Unauthorized | ErrorCode::Limit | ErrorCode::Backpressure
    )
}

impl Remote {
    /// Every address `addr` resolves to (`localhost` may be `::1` and
    /// `127.0.0.1`).
    fn socket_addrs(&self) -> Result<Vec<SocketAddr>, CliError> {
        let addrs: Vec<SocketAddr> = self
            .addr
            .to_socket_addrs()
            .map_err(|e| CliError::Usage(format!("--addr {:?}: {e}", self.addr)))?
            .collect();
        if addrs.is_empty() {
            return Err(CliError::Usage(format!(
                "--addr {:?} resolves to nothing",
                self.addr
            )));
        }
        Ok(addrs)
    }

    /// Connect and shake hands, trying each address in turn. A refusal of
    /// the handshake (a wrong token) is the node's answer, not an
    /// unreachable node.
    pub(crate) fn connect(&self) -> Result<Client, CliError> {
        if self.connect_timeout.is_zero() {
            return Err(CliError::Usage(
                "--connect-timeout must be more than 0".into(),
            ));
        }
        let mut last = None;
        for addr in self.socket_addrs()? {
            tracing::debug!(%addr, "connecting");
            match Client::connect_within(addr, &self.token, self.connect_timeout) {
                Ok(c) => {
                    let a = c.accepted();
                    tracing::debug!(%addr, shard = a.shard, max_batch = a.max_batch, "connected");
                    return Ok(c);
                }
                Err(e @ ClientError::Node { .. }) => {
                    return Err(CliError::node("the node refused the connection", e))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(CliError::Unreachable {
            addr: self.addr.clone(),
            source: last.unwrap_or(ClientError::Closed),
        })
    }
}

/// A duration such as `20ms`, `1.5s`, `250us`, `2m` (a bare number is
/// milliseconds).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 20ms, 1.5s)"))?;
    let scale = match unit.trim() {
        "" | "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "s" => 1.0,
        "m" | "min" => 60.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (ns, us, ms, s, m)")),
    };
    let secs = n * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_their_units_and_bad_ones_say_why() {
        assert_eq!(parse_duration("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_millis(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration("3h").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn refusals_exit_4_and_failures_exit_1() {
        let node = |code| ClientError::Node {
            code,
            message: String::new(),
        };
        let e = CliError::node("x", node(ErrorCode::Unauthorized));
        assert_eq!(e.exit_code(), 4);
        assert_eq!(CliError::node("x", node(ErrorCode::Limit)).exit_code(), 4);
        assert_eq!(
            CliError::node("x", node(ErrorCode::NotFound)).exit_code(),
            1
        );
        assert_eq!(CliError::node("x", ClientError::Closed).exit_code(), 1);
        let u = CliError::Unreachable {
            addr: "a".into(),
            source: ClientError::Timeout,
        };
        assert_eq!(u.exit_code(), 3);
        assert_eq!(CliError::Usage("u".into()).exit_code(), 2);
    }
}
