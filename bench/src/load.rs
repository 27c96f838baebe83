//! Open-loop load: events are due at scheduled times whatever the engine
//! does (so a slow engine shows as latency, not as a slower load), with
//! on/off bursts.
//!
//! A generator ticks every millisecond, sends the events due by then in one
//! batch, and counts as *shed* what a source refused (backpressure): shed
//! events were never accepted, so they are not lost by the engine, and the
//! report says how many there were.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dirigo_engine::SourceHandle;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Mean rate with on/off bursts: during `on` the rate is `rate * burst`,
/// during `off` it is whatever keeps the mean at `rate`
/// (`rate * (on + off - burst * on) / off`, at least 0).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Mean events per second.
    pub rate: f64,
    /// The rate during `on` over the mean; 1 or less: steady.
    pub burst: f64,
    /// Length of a burst.
    pub on: Duration,
    /// Time from the end of a burst to the next.
    pub off: Duration,
}

impl Shape {
    /// A steady `rate`, no bursts.
    pub fn steady(rate: f64) -> Shape {
        Shape {
            rate,
            burst: 1.0,
            on: Duration::from_secs(1),
            off: Duration::from_secs(1),
        }
    }

    /// Events per second at `t` since the start.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let period = (self.on + self.off).as_secs_f64();
        if period <= 0.0 || self.burst <= 1.0 {
            return self.rate;
        }
        let phase = t.as_secs_f64() % period;
        if phase < self.on.as_secs_f64() {
            self.rate * self.burst
        } else {
            let on = self.on.as_secs_f64();
            let off = self.off.as_secs_f64();
            (self.rate * (on + off - self.burst * on) / off).max(0.0)
        }
    }
}

/// What a generator did.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadReport {
    /// Events the source accepted.
    pub sent: u64,
    /// Events the source refused (backpressure), never retried.
    pub shed: u64,
}

/// Run a generator until `stop` is set or `duration` passes.
pub fn run<T: Clone + Send + 'static>(
    src: SourceHandle<T>,
    shape: Shape,
    duration: Duration,
    seed: u64,
    stop: Arc<AtomicBool>,
    mut make: impl FnMut(&mut ChaCha8Rng, u64) -> (u64, T),
) -> LoadReport {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start = Instant::now();
    let tick = Duration::from_millis(1);
    let mut due = 0.0f64;
    let mut report = LoadReport::default();
    let mut n = 0u64;
    let mut next = start;
    while !stop.load(Ordering::Relaxed) {
        let t = start.elapsed();
        if t >= duration {
            break;
        }
        due += shape.rate_at(t) * tick.as_secs_f64();
        let k = due.floor() as usize;
        due -= k as f64;
        if k > 0 {
            let batch: Vec<(u64, T)> = (0..k)
                .map(|_| {
                    n += 1;
                    make(&mut rng, n)
                })
                .collect();
            match src.try_send_batch(batch) {
                Ok(()) => report.sent += k as u64,
                Err(r) => report.shed += r.events.len() as u64,
            }
        }
        next += tick;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_millis(100) {
            next = now; // far behind (machine stalled): do not burst to catch up
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursty_shape_keeps_the_mean_rate() {
        let s = Shape {
            rate: 1000.0,
            burst: 3.0,
            on: Duration::from_millis(200),
            off: Duration::from_millis(800),
        };
        assert_eq!(s.rate_at(Duration::from_millis(100)), 3000.0);
        let mut total = 0.0;
        for ms in 0..1000 {
            total += s.rate_at(Duration::from_millis(ms)) / 1000.0;
        }
        assert!((total - 1000.0).abs() < 1.0, "mean over a period: {total}");
    }
}
