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
//! **Latency without coordinated omission.** Each output carries when its
//! root message entered the engine, on the node clock (`ingress_ns`), and
//! each ingest answer the node clock when the node took the batch
//! (`node_ns`; on one connection batches are taken in send order, every
//! event before its batch's answer, every later batch after it). So the
//! root came in the first batch answered at or after its `ingress_ns`, and
//! the output's latency is its arrival here minus the time that batch's
//! first event was due: every wait of the sender, both network trips, the
//! node and this subscriber count. An output that arrives before its
//! batch's answer has been read is held (bounded) until it has. Two
//! approximations, both toward less latency by at most one batch: a batch
//! stands for its first event; a durable app answers at commit, which may
//! come before its events enter the engine; what a barrier closes is timed
//! from the first batch answered after the barrier reached the operator
//! (after the last barrier, empty batches go on while the last outputs
//! come, so there is one). Outputs no batch of the run
//! accounts for (another client's, or after the last answer) are counted
//! as untimed, not timed. Batches the node refused for
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
use super::{parse_duration, refusal, CliError, Remote, MAX_WINDOW};

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
    /// After the last send, the longest the run waits for outputs, quiet
    /// or not (a sink another client keeps busy never goes quiet).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_max: Duration,
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
    let wall = ended.duration_since(run.start);
    let ends = receiver::Ends {
        quiet: a.drain,
        at: ended + a.drain_max,
    };
    let outputs = rx.finish(ends, || run.heartbeat());
    // The subscriber's error first: it is why a send stopped early.
    let hist = outputs?;
    let sent = sent?;
    report(&a, &sent, &hist, shared.untimed(), wall)
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
    if !(1..=MAX_WINDOW).contains(&a.window) {
        return Err(CliError::Usage(format!("--window is in 1..={MAX_WINDOW}")));
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
    /// Requests in flight: their event counts (0 for a barrier), their
    /// first event's due time, and their number in send order.
    pending: HashMap<u64, (u64, u64, u64)>,
    /// Requests sent.
    requests: u64,
    barrier_every_ns: Option<u64>,
    barriers: u64,
    /// When the last barrier sent was due.
    last_barrier_due: Option<u64>,
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
            requests: 0,
            barrier_every_ns: a.barrier_every.map(|d| d.as_nanos() as u64),
            barriers: 0,
            last_barrier_due: None,
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
            if !more || self.shared.receiver_failed() {
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
        self.last_barrier_due = Some(due);
        let r = Request::Barrier {
            app: self.app.clone(),
            window: self.barriers,
        };
        self.request(r, 0, due)
    }

    /// Send `r` (of `n` events, the first due at `due`), first waiting for
    /// room in the window; its answer goes into the receiver's schedule.
    fn request(&mut self, r: Request, n: u64, due: u64) -> Result<(), CliError> {
        while self.pending.len() >= self.window {
            self.wait_one()?;
        }
        let id = self
            .client
            .send(&r)
            .map_err(|e| CliError::node("load", e))?;
        self.pending.insert(id, (n, due, self.requests));
        self.requests += 1;
        self.sent.sent += n;
        Ok(())
    }

    /// While the last outputs come: after barriers, an empty batch now and
    /// then, due when the last barrier was, so what the last barrier
    /// closes (which may enter the node after its answer) has a batch
    /// answered after it.
    fn heartbeat(&mut self) -> Result<(), CliError> {
        let Some(due) = self.last_barrier_due else {
            return Ok(());
        };
        if self.pending.len() < self.window {
            let marker = Request::IngestJson {
                app: self.app.clone(),
                source: self.source.clone(),
                events: Vec::new(),
            };
            self.request(marker, 0, due)?;
        }
        self.settle_answers()
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
        let (n, due, seq) = self.pending.remove(&id).unwrap_or((0, 0, 0));
        match a {
            Response::Accepted { events, node_ns } => {
                self.sent.acked += events;
                self.shared.note_answer(node_ns, seq, due);
            }
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
    untimed: u64,
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
        "{} outputs at {} ({untimed} untimed); latency from due time, ms: p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
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
