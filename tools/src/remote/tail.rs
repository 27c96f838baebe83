//! `dirigo tail APP SINK`: a sink's outputs as JSON lines on stdout, as
//! they come, until `--count` outputs, `--duration`, or the node ends the
//! subscription. It says on stderr when it has subscribed. A window's
//! barrier, and outputs a lagging subscription
//! lost (`--lag drop`), are noted on stderr (`--barriers` prints barriers
//! on stdout as `{"barrier": N}` lines instead).

use std::io::Write;
use std::time::{Duration, Instant};

use dirigo_net::{ClientError, Lag, Output};
use serde_json::{json, Value};

use super::{parse_duration, CliError, Remote};

/// What a subscriber that falls behind wants.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LagArg {
    /// Lose the oldest outputs, and be told how many.
    Drop,
    /// Be cut off (exit 4).
    Disconnect,
}

/// `dirigo tail`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    remote: Remote,
    /// The app.
    name: String,
    /// Its sink (e.g. `out`).
    sink: String,
    /// What happens when this reader falls behind the sink.
    #[arg(long, value_enum, default_value = "drop")]
    lag: LagArg,
    /// Exit after this many outputs.
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this long (e.g. 10s).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Each output as `{"key": K, "value": V}` instead of its value alone.
    #[arg(long)]
    with_key: bool,
    /// Window barriers on stdout as `{"barrier": N}` lines.
    #[arg(long)]
    barriers: bool,
}

pub(crate) fn tail(a: TailArgs) -> Result<(), CliError> {
    let mut c = a.remote.connect()?;
    let lag = match a.lag {
        LagArg::Drop => Lag::DropOldest,
        LagArg::Disconnect => Lag::Disconnect,
    };
    let what = format!("tail {} {}", a.name, a.sink);
    let sub = c
        .subscribe_as(&a.name, &a.sink, lag, true)
        .map_err(|e| CliError::node(&what, e))?;
    // Said on stderr, so a script knows that what it sends from now on is
    // seen.
    eprintln!("dirigo tail: subscribed to {} {}", a.name, a.sink);
    let end = a.duration.map(|d| Instant::now() + d);
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    while a.count.is_none_or(|n| seen < n) {
        let wait = end.map_or(Duration::from_secs(1), |e| {
            e.saturating_duration_since(Instant::now())
        });
        if wait.is_zero() {
            break;
        }
        let next = c
            .next_output(wait.min(Duration::from_secs(1)))
            .map_err(|e| CliError::node(&what, e))?;
        let Some((id, o)) = next else { continue };
        if id != sub {
            continue;
        }
        let line = match o {
            Output::Data { key, value, .. } => {
                seen += 1;
                let v: Value = serde_json::from_slice(&value)
                    .map_err(|e| CliError::Failed(format!("{what}: an output is not JSON: {e}")))?;
                if a.with_key {
                    json!({"key": key, "value": v})
                } else {
                    v
                }
            }
            Output::Barrier { window } if a.barriers => json!({ "barrier": window }),
            Output::Barrier { window } => {
                eprintln!("dirigo tail: window {window} closed");
                continue;
            }
            Output::Lagged { dropped } => {
                eprintln!("dirigo tail: fell behind: {dropped} output(s) dropped");
                continue;
            }
            Output::Closed { code, message } => {
                let _ = out.flush();
                return Err(CliError::node(&what, ClientError::Node { code, message }));
            }
        };
        // A closed stdout (`| head`) ends the tail quietly.
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return Ok(());
        }
    }
    Ok(())
}
