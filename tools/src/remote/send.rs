//! `dirigo send APP SOURCE`: JSON lines from stdin (or `--file`) to a
//! source, in batches, with up to `--window` batches unacknowledged.
//!
//! Every line is checked as JSON here, and the node reads each event with
//! the source's own reading of JSON (a batch is taken whole or refused
//! whole, naming its first bad event; the events before that one are
//! good). What a bad line does is `--on-error`'s choice:
//! - `stop`: a line that is not JSON: the lines before it are sent, none
//!   after it is read. A line the node refuses: the lines of its batch
//!   before it are sent, nothing more is (batches already in flight may
//!   still be taken, and are counted).
//! - `skip`: the line is reported and the rest is sent; when the node
//!   refuses a line, the lines of its batch before it go as one batch and
//!   the ones after it one at a time (after the batches already in
//!   flight, so they may arrive after those).
//!
//! Either way the count acknowledged is printed, and the exit code is 1
//! when any line was not sent. A line longer than the node's frame limit
//! is refused without being held in memory whole.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use dirigo_net::{Client, ClientError, ErrorCode, Response};

use super::{CliError, Remote, MAX_WINDOW};

/// How long one batch may wait for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes a batch's frame leaves for its framing, under the node's frame
/// limit (a string's archived header and padding, the request's names).
const FRAME_SLACK: usize = 4096;
/// Bytes counted per event besides its text (its archived header).
const EVENT_OVERHEAD: usize = 16;

/// What a bad line does.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnError {
    /// Send the lines before it, then stop.
    Stop,
    /// Report it and send the rest.
    Skip,
}

/// `dirigo send`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    remote: Remote,
    /// The app.
    name: String,
    /// Its source (e.g. `lines` for wordcount, `events` for aggregate).
    source: String,
    /// Read this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Most events per batch (also capped by the node's limit).
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Most batches sent and not yet acknowledged.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// What a line that is not JSON, or that the source refuses, does.
    #[arg(long, value_enum, default_value = "stop")]
    on_error: OnError,
}

/// One batch: its events and the line of each.
#[derive(Default)]
struct Batch {
    lines: Vec<u64>,
    events: Vec<String>,
    bytes: usize,
}

impl Batch {
    /// The events from `at` on, taken out of this batch.
    fn split_off(&mut self, at: usize) -> Batch {
        Batch {
            lines: self.lines.split_off(at),
            events: self.events.split_off(at),
            bytes: 0,
        }
    }

    /// Drop the last event.
    fn pop(&mut self) {
        self.lines.pop();
        self.events.pop();
    }
}

/// A send in progress.
struct Sender {
    client: Client,
    app: String,
    source: String,
    on_error: OnError,
    window: usize,
    in_flight: VecDeque<(u64, Batch)>,
    acknowledged: u64,
    /// Lines not sent (bad, or refused).
    bad: u64,
    /// `--on-error stop` met a bad line: read nothing more.
    stopped: bool,
    /// `--on-error stop` met a line the node refused: send nothing more
    /// (a line the client found bad stops the reading only: the lines
    /// before it are still sent).
    halted: bool,
}

pub(crate) fn send(a: SendArgs) -> Result<(), CliError> {
    if a.batch == 0 || !(1..=MAX_WINDOW).contains(&a.window) {
        return Err(CliError::Usage(format!(
            "--batch must be at least 1 and --window in 1..={MAX_WINDOW}"
        )));
    }
    let input: Box<dyn BufRead> = match &a.file {
        Some(p) => {
            Box::new(BufReader::new(std::fs::File::open(p).map_err(|e| {
                CliError::Usage(format!("--file {}: {e}", p.display()))
            })?))
        }
        None => Box::new(BufReader::new(std::io::stdin().lock())),
    };
    let client = a.remote.connect()?;
    let accepted = client.accepted();
    let max_events = a.batch.min(accepted.max_batch as usize).max(1);
    let max_bytes = (accepted.max_frame as usize).saturating_sub(FRAME_SLACK);
    let mut s = Sender {
        client,
        app: a.name,
        source: a.source,
        on_error: a.on_error,
        window: a.window,
        in_flight: VecDeque::new(),
        acknowledged: 0,
        bad: 0,
        stopped: false,
        halted: false,
    };
    let read = s.read_all(input, max_events, max_bytes);
    let drained = s.drain();
    println!("acknowledged {} events", s.acknowledged);
    read?;
    drained?;
    match s.bad {
        0 => Ok(()),
        n => Err(CliError::Failed(format!("{n} line(s) were not sent"))),
    }
}

impl Sender {
    /// Read every line and send it in batches, until the input ends or a
    /// bad line stops the send.
    fn read_all(
        &mut self,
        mut input: Box<dyn BufRead>,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<(), CliError> {
        let mut batch = Batch::default();
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        while !self.stopped {
            buf.clear();
            let Some(whole) = read_line(&mut input, &mut buf, max_bytes)? else {
                break;
            };
            line_no += 1;
            if !whole {
                let why = format!("over the node's frame limit of {max_bytes} bytes");
                self.bad_line(line_no, &why);
                continue;
            }
            let Some(text) = self.check_line(line_no, &buf, max_bytes) else {
                continue;
            };
            let cost = text.len() + EVENT_OVERHEAD;
            if !batch.events.is_empty()
                && (batch.events.len() >= max_events || batch.bytes + cost > max_bytes)
            {
                self.submit(std::mem::take(&mut batch))?;
            }
            batch.lines.push(line_no);
            batch.events.push(text);
            batch.bytes += cost;
        }
        if !batch.events.is_empty() {
            self.submit(batch)?;
        }
        Ok(())
    }

    /// The line as an event's JSON text, or `None` (reported) when it is
    /// blank or bad.
    fn check_line(&mut self, line_no: u64, raw: &[u8], max_bytes: usize) -> Option<String> {
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t.trim(),
            Err(e) => return self.bad_line(line_no, &format!("not UTF-8: {e}")),
        };
        if text.is_empty() {
            return None;
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            return self.bad_line(line_no, &format!("not JSON: {e}"));
        }
        if text.len() + EVENT_OVERHEAD > max_bytes {
            let why = format!("{} bytes, over the node's frame limit", text.len());
            return self.bad_line(line_no, &why);
        }
        Some(text.to_owned())
    }

    fn bad_line(&mut self, line_no: u64, why: &str) -> Option<String> {
        eprintln!("dirigo send: line {line_no}: {why}");
        self.bad += 1;
        if self.on_error == OnError::Stop {
            self.stopped = true;
        }
        None
    }

    /// Send a batch, first waiting for the oldest when the window is full.
    fn submit(&mut self, b: Batch) -> Result<(), CliError> {
        while self.in_flight.len() >= self.window {
            self.settle_oldest()?;
        }
        if self.halted {
            self.bad += b.lines.len() as u64;
            return Ok(());
        }
        let r = Client::ingest_json_request(&self.app, &self.source, b.events.clone());
        let id = self
            .client
            .send(&r)
            .map_err(|e| CliError::node("send", e))?;
        tracing::debug!(
            request = id,
            events = b.events.len(),
            first_line = b.lines[0],
            "batch sent"
        );
        self.in_flight.push_back((id, b));
        Ok(())
    }

    /// Every batch in flight acknowledged (or refused).
    fn drain(&mut self) -> Result<(), CliError> {
        while !self.in_flight.is_empty() {
            self.settle_oldest()?;
        }
        Ok(())
    }

    /// Wait for the oldest batch's answer and account for it.
    fn settle_oldest(&mut self) -> Result<(), CliError> {
        let Some((id, b)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let answer = self
            .client
            .answer(id, ACK_TIMEOUT)
            .map_err(|e| CliError::node("send", e))?;
        self.settled(answer, b)
    }

    fn settled(&mut self, answer: Response, b: Batch) -> Result<(), CliError> {
        match answer {
            Response::Accepted { events, .. } => {
                self.acknowledged += events;
                Ok(())
            }
            Response::Error {
                code: ErrorCode::InvalidInput,
                message,
            } => self.refused_event(b, &message),
            Response::Error { code, message } => Err(CliError::node(
                format!("send (lines {}..)", b.lines[0]),
                ClientError::Node { code, message },
            )),
            r => Err(CliError::Failed(format!("unexpected answer {r:?}"))),
        }
    }

    /// The node refused a batch for one of its events: a port decodes in
    /// order and stops at the first bad event, so the ones before it are
    /// good. Report that line, send the good ones; under `stop`, nothing
    /// more; under `skip`, the rest one at a time (each refused one
    /// reported), so a batch of bad lines costs one request per line, not
    /// a resend of the rest per line.
    fn refused_event(&mut self, mut b: Batch, message: &str) -> Result<(), CliError> {
        let Some(i) = refused_index(message).filter(|i| *i < b.events.len()) else {
            // The refusal names no event: every line of the batch is bad.
            let (first, last) = (b.lines[0], b.lines[b.lines.len() - 1]);
            eprintln!("dirigo send: lines {first}..={last}: refused: {message}");
            self.bad += b.lines.len() as u64;
            self.halt_on_stop();
            return Ok(());
        };
        eprintln!("dirigo send: line {}: refused: {message}", b.lines[i]);
        self.bad += 1;
        let rest = b.split_off(i + 1);
        b.pop();
        if !b.events.is_empty() {
            self.send_good(b)?;
        }
        if self.on_error == OnError::Stop {
            self.bad += rest.lines.len() as u64;
            self.halt_on_stop();
            return Ok(());
        }
        for (line, event) in rest.lines.into_iter().zip(rest.events) {
            self.send_one(line, event)?;
        }
        Ok(())
    }

    /// Under `stop`: read no more and send nothing more.
    fn halt_on_stop(&mut self) {
        if self.on_error == OnError::Stop {
            self.stopped = true;
            self.halted = true;
        }
    }

    /// Send a batch the node is known to decode, and wait for it.
    fn send_good(&mut self, b: Batch) -> Result<(), CliError> {
        match self.call(b.events.clone())? {
            Response::Accepted { events, .. } => {
                self.acknowledged += events;
                Ok(())
            }
            Response::Error { code, message } => Err(CliError::node(
                format!("send (lines {}..)", b.lines[0]),
                ClientError::Node { code, message },
            )),
            r => Err(CliError::Failed(format!("unexpected answer {r:?}"))),
        }
    }

    /// Send one event alone (the rest of a refused batch, under `skip`).
    fn send_one(&mut self, line: u64, event: String) -> Result<(), CliError> {
        match self.call(vec![event])? {
            Response::Accepted { events, .. } => self.acknowledged += events,
            Response::Error {
                code: ErrorCode::InvalidInput,
                message,
            } => {
                eprintln!("dirigo send: line {line}: refused: {message}");
                self.bad += 1;
            }
            Response::Error { code, message } => {
                let e = ClientError::Node { code, message };
                return Err(CliError::node(format!("send (line {line})"), e));
            }
            r => return Err(CliError::Failed(format!("unexpected answer {r:?}"))),
        }
        Ok(())
    }

    /// One ingest request, waited for.
    fn call(&mut self, events: Vec<String>) -> Result<Response, CliError> {
        let r = Client::ingest_json_request(&self.app, &self.source, events);
        let id = self
            .client
            .send(&r)
            .map_err(|e| CliError::node("send", e))?;
        self.client
            .answer(id, ACK_TIMEOUT)
            .map_err(|e| CliError::node("send", e))
    }
}

/// Read one line into `buf`, keeping at most `max` bytes of it: `None`
/// at the end of the input, `Some(false)` for a longer line (the rest of
/// it read and dropped, never held), `Some(true)` otherwise.
fn read_line(
    input: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<bool>, CliError> {
    let io = |e: std::io::Error| CliError::Failed(format!("reading the input: {e}"));
    let mut limited = std::io::Read::take(&mut *input, max as u64 + 1);
    let n = limited.read_until(b'\n', buf).map_err(io)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.ends_with(b"\n") || n <= max {
        return Ok(Some(true));
    }
    // Over the limit: skip to the end of the line.
    loop {
        let chunk = input.fill_buf().map_err(io)?;
        if chunk.is_empty() {
            return Ok(Some(false));
        }
        match chunk.iter().position(|&c| c == b'\n') {
            Some(at) => {
                input.consume(at + 1);
                return Ok(Some(false));
            }
            None => {
                let len = chunk.len();
                input.consume(len);
            }
        }
    }
}

/// The index a port's refusal names ("event 3 does not decode: ...").
fn refused_index(message: &str) -> Option<usize> {
    let rest = message.split("event ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    rest[digits.len()..]
        .starts_with(" does not decode")
        .then(|| digits.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refused_event_is_read_from_the_ports_message() {
        assert_eq!(
            refused_index("event 3 does not decode: json: missing field"),
            Some(3)
        );
        assert_eq!(refused_index("the app is full"), None);
        assert_eq!(refused_index("event x does not decode"), None);
    }
}
