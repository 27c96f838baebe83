//! `dirigo load APP SOURCE`: an open-loop load against a node.
//!
//! Events come from a built-in generator (`generators`) and are due at the
//! times an arrival pattern says (`arrivals`), whatever the node does. The
//! sender sleeps until the next event is due (a millisecond at most) and
//! sends what is due by then in batches (JSON
//! events, up to the node's batch limit), with up to `--window` batches
//! unacknowledged; when the window is full it waits, and the events it
//! then sends late still count from when they were due. A subscriber on
//! its own connection reads the sink.
//!
//! **Latency without coordinated omission.** Each output carries the
//! engine's latency of its root message (ingest to sink); its arrival
//! here minus that is when the root entered the node, and the root is in
//! the last batch sent before then. The output's latency is its arrival
//! minus the time that batch's first event was due: it includes every
//! wait of the sender, the network and the node. (The attribution is
//! exact to one batch: the output's trip from the sink to here is not
//! known, so a batch sent during that trip may stand in for the root's
//! and the latency is short by at most the gap between two sends; at low
//! rates, where sends are single events, that gap is the events'.) Batches the node refused for
//! backpressure or a limit are *shed*, counted and reported, never resent.
//!
//! A progress line each second (rate, outputs, p50/p99 of that second,
//! shed) goes to stderr; at the end a summary goes to stdout and the whole
//! run's histogram to an `.hgrm` percentile file (`dirigo_bench::hgrm`).

mod arrivals;
mod generators;
mod receiver;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dirigo_net::{Client, ClientError, ErrorCode, Request, Response};

use self::arrivals::Arrivals;
use self::receiver::{Receiver, Shared};
use super::{parse_duration, refusal, CliError, Remote};

/// The longest run: its schedule of batches is kept in memory.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// How long the sender sleeps between sends.
const TICK: Duration = Duration::from_millis(1);
/// How long the end of a run waits for an acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// An arrival pattern's name.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// One event every 1/rate.
    Constant,
    /// Poisson arrivals at the mean rate.
    Poisson,
    /// The rate during --on, nothing during --off.
    Bursts,
    /// The offsets of --replay's file.
    Replay,
}

/// `dirigo load`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct LoadArgs {
    #[command(flatten)]
    remote: Remote,
    /// The app.
    name: String,
    /// Its source.
    source: String,
    /// What to send.
    #[arg(long, value_enum)]
    generator: generators::Kind,
    /// The sink whose outputs are timed.
    #[arg(long, default_value = "out")]
    sink: String,
    /// Events per second (during a burst, for --pattern bursts).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// When events are due.
    #[arg(long, value_enum, default_value = "constant")]
    pattern: Pattern,
    /// A burst's length (--pattern bursts).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    on: Duration,
    /// The quiet between bursts (--pattern bursts).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    off: Duration,
    /// A file of due offsets in seconds, one a line (--pattern replay).
    #[arg(long)]
    replay: Option<PathBuf>,
    /// How long to send (a replay also ends with its file).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Close a window this often (for apps whose windows close on
    /// barriers, such as aggregate); the last is closed at the end.
    #[arg(long, value_parser = parse_duration)]
    barrier_every: Option<Duration>,
    /// After the last send, how long the sink may stay quiet before the
    /// run ends.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    drain: Duration,
    /// Where the run's latency percentiles go.
    #[arg(long, default_value = "load.hgrm")]
    hgrm: PathBuf,
    /// Batches sent and not yet acknowledged, at most.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Seeds the generator and Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// What the sender counted.
#[derive(Default)]
struct Sent {
    due: u64,
    sent: u64,
    acked: u64,
    shed: u64,
    /// The most the sender was behind its schedule, ns.
    max_behind_ns: u64,
}

pub(crate) fn load(a: LoadArgs) -> Result<(), CliError> {
    check(&a)?;
    let arrivals = match a.pattern {
        Pattern::Constant => Arrivals::constant(a.rate),
        Pattern::Poisson => Arrivals::poisson(a.rate, a.seed),
        Pattern::Bursts => Arrivals::bursts(a.rate, a.on, a.off),
        Pattern::Replay => {
            let path = a
                .replay
                .as_ref()
                .ok_or_else(|| CliError::Usage("--pattern replay needs --replay FILE".into()))?;
            Arrivals::replay(path).map_err(CliError::Usage)?
        }
    };
    let sender = a.remote.connect()?;
    let shared = Arc::new(Shared::new());
    let rx = Receiver::start(&a.remote, &a.name, &a.sink, shared.clone())?;
    let mut run = Run::new(&a, sender, arrivals, shared.clone());
    let sent = run.send_all();
    let ended = Instant::now();
    let outputs = rx.finish(a.drain);
    let sent = sent?;
    let hist = outputs?;
    let wall = ended.duration_since(run.start);
    report(&a, &sent, &hist, wall)
}

/// Flags that cannot work together, before anything is sent.
fn check(a: &LoadArgs) -> Result<(), CliError> {
    if !(a.rate > 0.0 && a.rate <= 1e8) {
        return Err(CliError::Usage("--rate must be in (0, 100000000]".into()));
    }
    if a.duration > MAX_DURATION {
        return Err(CliError::Usage(format!(
            "--duration is at most {} s",
            MAX_DURATION.as_secs()
        )));
    }
    if a.window == 0 {
        return Err(CliError::Usage("--window must be at least 1".into()));
    }
    if a.pattern == Pattern::Bursts && a.on.is_zero() {
        return Err(CliError::Usage("--on must be more than 0".into()));
    }
    if a.barrier_every.is_some_and(|d| d < TICK) {
        return Err(CliError::Usage("--barrier-every is at least 1ms".into()));
    }
    Ok(())
}

/// The sender's state.
struct Run {
    client: Client,
    app: String,
    source: String,
    gen: generators::Generator,
    arrivals: Arrivals,
    /// The next event's due offset, ns (`None`: a replay has ended).
    next_due: Option<u64>,
    shared: Arc<Shared>,
    start: Instant,
    duration_ns: u64,
    max_batch: usize,
    max_bytes: usize,
    window: usize,
    /// Requests in flight: their event counts (0 for a barrier).
    pending: HashMap<u64, u64>,
    barrier_every_ns: Option<u64>,
    barriers: u64,
    sent: Sent,
}

impl Run {
    fn new(a: &LoadArgs, client: Client, mut arrivals: Arrivals, shared: Arc<Shared>) -> Run {
        let accepted = client.accepted();
        let next_due = arrivals.next_due();
        Run {
            max_batch: accepted.max_batch.max(1) as usize,
            max_bytes: (accepted.max_frame as usize).saturating_sub(4096).max(1024),
            client,
            app: a.name.clone(),
            source: a.source.clone(),
            gen: generators::Generator::new(a.generator, a.seed),
            arrivals,
            next_due,
            shared,
            start: Instant::now(),
            duration_ns: a.duration.as_nanos() as u64,
            window: a.window,
            pending: HashMap::new(),
            barrier_every_ns: a.barrier_every.map(|d| d.as_nanos() as u64),
            barriers: 0,
            sent: Sent::default(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Send on schedule until the duration (or the replay) ends, then the
    /// last barrier, and wait for every answer.
    fn send_all(&mut self) -> Result<Sent, CliError> {
        self.start = Instant::now();
        self.shared.set_start(self.start);
        let mut progress = receiver::Progress::new(self.start);
        loop {
            let now = self.now_ns();
            let more = self.next_due.is_some_and(|d| d < self.duration_ns);
            if !more {
                break;
            }
            self.send_due(now)?;
            self.barrier_if_due(now)?;
            self.settle_answers()?;
            progress.maybe_print(&self.shared, self.sent.sent, self.sent.shed);
            self.sleep_until_due();
        }
        if self.barrier_every_ns.is_some() {
            let now = self.now_ns();
            self.barrier(now)?;
        }
        self.drain_answers()?;
        Ok(std::mem::take(&mut self.sent))
    }

    /// Sleep until the next event is due, at most a tick (so answers and
    /// the progress line are seen to), never spinning: on a small machine
    /// a spinning sender takes the core the node needs, and its lateness
    /// counts anyway.
    fn sleep_until_due(&self) {
        let now = self.now_ns();
        let wake = self
            .next_due
            .unwrap_or(u64::MAX)
            .min(now + TICK.as_nanos() as u64);
        if wake > now {
            std::thread::sleep(Duration::from_nanos(wake - now));
        }
    }

    /// Every event due by `now`, in batches.
    fn send_due(&mut self, now: u64) -> Result<(), CliError> {
        while let Some(first) = self.next_due.filter(|&d| d <= now && d < self.duration_ns) {
            let mut events = Vec::new();
            let mut bytes = 0;
            while let Some(_due) = self.next_due.filter(|&d| d <= now && d < self.duration_ns) {
                if events.len() == self.max_batch || bytes >= self.max_bytes {
                    break;
                }
                let e = self.gen.next_json();
                bytes += e.len() + 16;
                events.push(e);
                self.next_due = self.arrivals.next_due();
            }
            let n = events.len() as u64;
            self.sent.due += n;
            self.sent.max_behind_ns = self.sent.max_behind_ns.max(now.saturating_sub(first));
            let r = Request::IngestJson {
                app: self.app.clone(),
                source: self.source.clone(),
                events,
            };
            self.request(r, n, first)?;
        }
        Ok(())
    }

    /// A barrier when one is due.
    fn barrier_if_due(&mut self, now: u64) -> Result<(), CliError> {
        match self.barrier_every_ns {
            Some(every) if now >= (self.barriers + 1) * every => {
                self.barrier((self.barriers + 1) * every)
            }
            _ => Ok(()),
        }
    }

    fn barrier(&mut self, due: u64) -> Result<(), CliError> {
        self.barriers += 1;
        let r = Request::Barrier {
            app: self.app.clone(),
            window: self.barriers,
        };
        self.request(r, 0, due)
    }

    /// Send `r` (of `n` events, the first due at `due`), first waiting for
    /// room in the window; noted in the schedule the receiver reads.
    fn request(&mut self, r: Request, n: u64, due: u64) -> Result<(), CliError> {
        while self.pending.len() >= self.window {
            self.wait_one()?;
        }
        let sent_at = self.now_ns();
        self.shared.note_send(sent_at, due);
        let id = self
            .client
            .send(&r)
            .map_err(|e| CliError::node("load", e))?;
        self.pending.insert(id, n);
        self.sent.sent += n;
        Ok(())
    }

    /// Answers read so far, without waiting.
    fn settle_answers(&mut self) -> Result<(), CliError> {
        let answers = self
            .client
            .take_answers()
            .map_err(|e| CliError::node("load", e))?;
        for (id, a) in answers {
            self.settle(id, a)?;
        }
        Ok(())
    }

    /// Wait for any one answer (the oldest request's).
    fn wait_one(&mut self) -> Result<(), CliError> {
        let Some(&id) = self.pending.keys().min() else {
            return Ok(());
        };
        let a = self
            .client
            .answer(id, ACK_TIMEOUT)
            .map_err(|e| CliError::node("load", e))?;
        self.settle(id, a)
    }

    fn drain_answers(&mut self) -> Result<(), CliError> {
        while !self.pending.is_empty() {
            self.wait_one()?;
        }
        Ok(())
    }

    fn settle(&mut self, id: u64, a: Response) -> Result<(), CliError> {
        let n = self.pending.remove(&id).unwrap_or(0);
        match a {
            Response::Accepted { events } => self.sent.acked += events,
            Response::Ok => {}
            Response::Error { code, .. } if refusal(code) && code != ErrorCode::Unauthorized => {
                self.sent.shed += n
            }
            Response::Error { code, message } => {
                let e = ClientError::Node { code, message };
                return Err(CliError::node("load", e));
            }
            r => return Err(CliError::Failed(format!("load: unexpected answer {r:?}"))),
        }
        Ok(())
    }
}

/// The summary on stdout and the percentile file.
fn report(
    a: &LoadArgs,
    s: &Sent,
    h: &hdrhistogram::Histogram<u64>,
    wall: Duration,
) -> Result<(), CliError> {
    std::fs::write(&a.hgrm, dirigo_bench::hgrm::percentiles(h))
        .map_err(|e| CliError::Failed(format!("{}: {e}", a.hgrm.display())))?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
    println!(
        "load {} {}: {:.1} s, {} events due, {} sent, {} acknowledged, {} shed; sender at most {:.2} ms behind",
        a.name,
        a.source,
        wall.as_secs_f64(),
        s.due,
        s.sent,
        s.acked,
        s.shed,
        s.max_behind_ns as f64 / 1e6
    );
    println!(
        "{} outputs at {}; latency from due time, ms: p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
        h.len(),
        a.sink,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1e6
    );
    println!("percentiles: {}", a.hgrm.display());
    if h.is_empty() {
        return Err(CliError::Failed(format!(
            "no output arrived at sink {:?} (does the app need --barrier-every?)",
            a.sink
        )));
    }
    Ok(())
}
