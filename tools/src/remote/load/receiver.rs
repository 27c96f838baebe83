//! The subscriber of a load run: a thread on its own connection that
//! times every output against the schedule the sender notes (see the
//! parent module for the attribution), and the progress line.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dirigo_net::{Client, Lag, Output};
use hdrhistogram::Histogram;

use super::super::{CliError, Remote};

/// Latencies recorded, ns: up to a minute, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static bounds")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is a push or a record: never half done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the sender and the receiver share.
pub(super) struct Shared {
    start: OnceLock<Instant>,
    /// `(sent, due of its first event)` per request, ns from the start, in
    /// send order.
    schedule: Mutex<Vec<(u64, u64)>>,
    /// The whole run's latencies, and this second's.
    hist: Mutex<(Histogram<u64>, Histogram<u64>)>,
    sending: AtomicBool,
}

impl Shared {
    pub(super) fn new() -> Shared {
        Shared {
            start: OnceLock::new(),
            schedule: Mutex::new(Vec::new()),
            hist: Mutex::new((histogram(), histogram())),
            sending: AtomicBool::new(true),
        }
    }

    pub(super) fn set_start(&self, at: Instant) {
        let _ = self.start.set(at);
    }

    pub(super) fn note_send(&self, sent_ns: u64, due_ns: u64) {
        lock(&self.schedule).push((sent_ns, due_ns));
    }

    /// Time an output that arrived `arrival_ns` after the start and spent
    /// `latency_ns` in the node.
    fn record(&self, arrival_ns: u64, latency_ns: u64) {
        let entered = arrival_ns.saturating_sub(latency_ns);
        let due = {
            let s = lock(&self.schedule);
            let i = s.partition_point(|&(sent, _)| sent <= entered);
            s.get(i.saturating_sub(1)).map(|&(_, due)| due)
        };
        let Some(due) = due else { return };
        let late = arrival_ns.saturating_sub(due).clamp(1, 60_000_000_000);
        let mut h = lock(&self.hist);
        h.0.saturating_record(late);
        h.1.saturating_record(late);
    }
}

/// The subscriber thread.
pub(super) struct Receiver {
    shared: Arc<Shared>,
    thread: JoinHandle<Result<(), CliError>>,
    quiet: Arc<Mutex<Option<Duration>>>,
}

impl Receiver {
    /// Subscribe (before anything is sent) and read in a thread.
    pub(super) fn start(
        remote: &Remote,
        app: &str,
        sink: &str,
        shared: Arc<Shared>,
    ) -> Result<Receiver, CliError> {
        let mut c = remote.connect()?;
        let what = format!("load: subscribe to {app} {sink}");
        let sub = c
            .subscribe(app, sink, Lag::DropOldest)
            .map_err(|e| CliError::node(what, e))?;
        let quiet = Arc::new(Mutex::new(None));
        let (s, q) = (shared.clone(), quiet.clone());
        let thread = std::thread::spawn(move || read(c, sub, &s, &q));
        Ok(Receiver {
            shared,
            thread,
            quiet,
        })
    }

    /// The sender is done: read until the sink is quiet for `drain`; the
    /// run's histogram.
    pub(super) fn finish(self, drain: Duration) -> Result<Histogram<u64>, CliError> {
        *lock(&self.quiet) = Some(drain);
        self.shared.sending.store(false, Ordering::Release);
        self.thread
            .join()
            .map_err(|_| CliError::Failed("load: the subscriber thread panicked".into()))??;
        let h = std::mem::replace(&mut lock(&self.shared.hist).0, histogram());
        Ok(h)
    }
}

/// The thread's loop.
fn read(
    mut c: Client,
    sub: u64,
    s: &Shared,
    quiet: &Mutex<Option<Duration>>,
) -> Result<(), CliError> {
    let mut last = Instant::now();
    loop {
        let next = c
            .next_output(Duration::from_millis(50))
            .map_err(|e| CliError::node("load: subscription", e))?;
        let now = Instant::now();
        match next {
            Some((id, Output::Data { latency_ns, .. })) if id == sub => {
                last = now;
                if let Some(start) = s.start.get() {
                    s.record(now.duration_since(*start).as_nanos() as u64, latency_ns);
                }
            }
            Some((_, Output::Closed { code, message })) => {
                let e = dirigo_net::ClientError::Node { code, message };
                return Err(CliError::node("load: the subscription closed", e));
            }
            Some((_, Output::Lagged { dropped })) => {
                eprintln!("dirigo load: the subscriber fell behind: {dropped} output(s) not timed");
            }
            Some(_) => {}
            None => {}
        }
        if !s.sending.load(Ordering::Acquire) {
            let drain = lock(quiet).unwrap_or_default();
            if now.duration_since(last) >= drain {
                return Ok(());
            }
        }
    }
}

/// The progress line: once a second, on stderr (rewritten in place on a
/// terminal).
pub(super) struct Progress {
    start: Instant,
    next: Instant,
    sent: u64,
    tty: bool,
}

impl Progress {
    pub(super) fn new(start: Instant) -> Progress {
        Progress {
            start,
            next: start + Duration::from_secs(1),
            sent: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub(super) fn maybe_print(&mut self, s: &Shared, sent: u64, shed: u64) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next += Duration::from_secs(1);
        let (outputs, p50, p99) = {
            let mut h = lock(&s.hist);
            let i = &h.1;
            let f = (i.len(), i.value_at_quantile(0.5), i.value_at_quantile(0.99));
            h.1.reset();
            f
        };
        let line = format!(
            "[{:>6.1}s] sent {sent} ({}/s), outputs {outputs}/s, p50 {:.2} ms, p99 {:.2} ms, shed {shed}",
            now.duration_since(self.start).as_secs_f64(),
            sent - self.sent,
            p50 as f64 / 1e6,
            p99 as f64 / 1e6,
        );
        self.sent = sent;
        if self.tty {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }
}
