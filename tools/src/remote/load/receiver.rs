//! The subscriber of a load run: a thread on its own connection that
//! times every output against the schedule the sender notes (see the
//! parent module for the attribution), and the progress line.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dirigo_net::{Client, Lag, Output};
use hdrhistogram::Histogram;

use super::super::{CliError, Remote};

/// Outputs whose batch's answer the sender has not read yet, held until
/// it has; past this many, the newest are not timed (and are counted).
const MAX_DEFERRED: usize = 1 << 20;

/// Latencies recorded, ns: up to a minute, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static bounds")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is an insert, a lookup or a record: never
    // half done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the sender and the receiver share.
pub(super) struct Shared {
    start: OnceLock<Instant>,
    /// Per acknowledged batch: `(node clock of its answer, its number)` ->
    /// the due time of its first event (ns from the start). Answers on one
    /// connection come in send order, so their node clocks do too.
    schedule: Mutex<BTreeMap<(u64, u64), u64>>,
    /// The whole run's latencies, and this second's.
    hist: Mutex<(Histogram<u64>, Histogram<u64>)>,
    sending: AtomicBool,
    /// The subscriber stopped (its error is in its thread's result).
    failed: AtomicBool,
    /// Outputs that could not be timed: no batch of this run answered
    /// after their root entered the node, or too many waiting.
    untimed: AtomicU64,
}

impl Shared {
    pub(super) fn new() -> Shared {
        Shared {
            start: OnceLock::new(),
            schedule: Mutex::new(BTreeMap::new()),
            hist: Mutex::new((histogram(), histogram())),
            sending: AtomicBool::new(true),
            failed: AtomicBool::new(false),
            untimed: AtomicU64::new(0),
        }
    }

    pub(super) fn set_start(&self, at: Instant) {
        let _ = self.start.set(at);
    }

    /// Batch `n`, whose first event was due at `due_ns`, was answered at
    /// `node_ns` on the node clock.
    pub(super) fn note_answer(&self, node_ns: u64, n: u64, due_ns: u64) {
        lock(&self.schedule).insert((node_ns, n), due_ns);
    }

    /// Whether the subscriber has stopped: the sender stops too.
    pub(super) fn receiver_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Outputs not timed.
    pub(super) fn untimed(&self) -> u64 {
        self.untimed.load(Ordering::Relaxed)
    }

    /// The due time of the batch an output's root came in: the first
    /// batch answered at or after the root entered the node. `None` while
    /// no answer that late has been read.
    fn due_of(&self, ingress_ns: u64) -> Option<u64> {
        let s = lock(&self.schedule);
        s.range((ingress_ns, 0)..).next().map(|(_, &due)| due)
    }

    fn record(&self, arrival_ns: u64, due_ns: u64) {
        let late = arrival_ns.saturating_sub(due_ns).clamp(1, 60_000_000_000);
        let mut h = lock(&self.hist);
        h.0.saturating_record(late);
        h.1.saturating_record(late);
    }
}

/// The subscriber thread.
pub(super) struct Receiver {
    shared: Arc<Shared>,
    thread: JoinHandle<Result<(), CliError>>,
    ends: Arc<Mutex<Option<Ends>>>,
}

/// When the reading stops once the sender is done.
#[derive(Clone, Copy)]
pub(super) struct Ends {
    /// The sink quiet this long.
    pub(super) quiet: Duration,
    /// Or this long after the sender finished, whatever comes.
    pub(super) at: Instant,
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
        let ends = Arc::new(Mutex::new(None));
        let (s, e) = (shared.clone(), ends.clone());
        let thread = std::thread::spawn(move || {
            let r = read(c, sub, &s, &e);
            s.failed.store(r.is_err(), Ordering::Release);
            r
        });
        Ok(Receiver {
            shared,
            thread,
            ends,
        })
    }

    /// The sender is done: read until `ends` says, calling `tick` every
    /// few milliseconds meanwhile; the run's histogram.
    pub(super) fn finish(
        self,
        ends: Ends,
        mut tick: impl FnMut() -> Result<(), CliError>,
    ) -> Result<Histogram<u64>, CliError> {
        *lock(&self.ends) = Some(ends);
        self.shared.sending.store(false, Ordering::Release);
        while !self.thread.is_finished() {
            tick()?;
            std::thread::sleep(Duration::from_millis(5));
        }
        self.thread
            .join()
            .map_err(|_| CliError::Failed("load: the subscriber thread panicked".into()))??;
        let h = std::mem::replace(&mut lock(&self.shared.hist).0, histogram());
        Ok(h)
    }
}

/// The thread's loop: time each output whose batch is known, hold the
/// others until it is (bounded), stop when the sender is done and `ends`
/// says.
fn read(mut c: Client, sub: u64, s: &Shared, ends: &Mutex<Option<Ends>>) -> Result<(), CliError> {
    let mut deferred: Vec<(u64, u64)> = Vec::new();
    let mut last = Instant::now();
    loop {
        let next = c
            .next_output(Duration::from_millis(50))
            .map_err(|e| CliError::node("load: subscription", e))?;
        let now = Instant::now();
        match next {
            Some((id, Output::Data { ingress_ns, .. })) if id == sub => {
                last = now;
                if let Some(start) = s.start.get() {
                    let arrival = now.duration_since(*start).as_nanos() as u64;
                    time_or_defer(s, &mut deferred, arrival, ingress_ns);
                }
            }
            Some((_, Output::Closed { code, message })) => {
                let e = dirigo_net::ClientError::Node { code, message };
                return Err(CliError::node("load: the subscription closed", e));
            }
            Some((_, Output::Lagged { dropped })) => {
                eprintln!("dirigo load: the subscriber fell behind: {dropped} output(s) not timed");
            }
            Some(_) | None => {}
        }
        deferred.retain(|&(arrival, ingress)| match s.due_of(ingress) {
            Some(due) => {
                s.record(arrival, due);
                false
            }
            None => true,
        });
        if !s.sending.load(Ordering::Acquire) {
            let e = lock(ends).expect("set before sending stops");
            if now.duration_since(last) >= e.quiet || now >= e.at {
                tracing::debug!(untimed = deferred.len(), "outputs no batch accounts for");
                s.untimed
                    .fetch_add(deferred.len() as u64, Ordering::Relaxed);
                return Ok(());
            }
        }
    }
}

/// Time an output now if its batch's answer has been read, else hold it.
fn time_or_defer(s: &Shared, deferred: &mut Vec<(u64, u64)>, arrival: u64, ingress: u64) {
    match s.due_of(ingress) {
        Some(due) => s.record(arrival, due),
        None if deferred.len() < MAX_DEFERRED => deferred.push((arrival, ingress)),
        None => {
            s.untimed.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_is_timed_from_the_first_batch_answered_after_its_root_entered() {
        let s = Shared::new();
        s.note_answer(1_000, 0, 10);
        s.note_answer(2_000, 1, 20);
        // Entered before batch 0's answer: batch 0; between: batch 1.
        assert_eq!(s.due_of(900), Some(10));
        assert_eq!(s.due_of(1_000), Some(10));
        assert_eq!(s.due_of(1_500), Some(20));
        // After every answer read so far: not yet known.
        assert_eq!(s.due_of(2_500), None);
        let mut deferred = Vec::new();
        time_or_defer(&s, &mut deferred, 5_000, 2_500);
        assert_eq!(deferred, [(5_000, 2_500)]);
        s.note_answer(3_000, 2, 30);
        assert_eq!(s.due_of(2_500), Some(30));
    }
}
