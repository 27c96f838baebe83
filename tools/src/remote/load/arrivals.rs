//! When each event of an open-loop load is due, as an offset from the
//! start: constant gaps, Poisson arrivals (exponential gaps), on/off bursts,
//! or the offsets of a replay file. The schedule never looks at the node:
//! a slow node shows as latency, not as a slower load.

use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Most offsets a replay file may hold (16 bytes each in memory).
pub(crate) const MAX_REPLAY_EVENTS: usize = 50_000_000;

/// An arrival pattern.
pub(crate) enum Arrivals {
    /// One event every `1 / rate`.
    Constant { gap_ns: f64, next: u64 },
    /// Exponential gaps of mean `1 / rate`.
    Poisson {
        mean_gap_ns: f64,
        at_ns: f64,
        rng: Box<ChaCha8Rng>,
    },
    /// `rate` during `on`, nothing during `off`, repeated.
    Bursts {
        gap_ns: f64,
        on_ns: u64,
        off_ns: u64,
        next: u64,
    },
    /// The offsets of a file, in order.
    Replay { offsets: Vec<u64>, next: usize },
}

impl Arrivals {
    pub(crate) fn constant(rate: f64) -> Arrivals {
        Arrivals::Constant {
            gap_ns: 1e9 / rate,
            next: 0,
        }
    }

    pub(crate) fn poisson(rate: f64, seed: u64) -> Arrivals {
        Arrivals::Poisson {
            mean_gap_ns: 1e9 / rate,
            at_ns: 0.0,
            rng: Box::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    pub(crate) fn bursts(rate: f64, on: Duration, off: Duration) -> Arrivals {
        Arrivals::Bursts {
            gap_ns: 1e9 / rate,
            on_ns: on.as_nanos() as u64,
            off_ns: off.as_nanos() as u64,
            next: 0,
        }
    }

    /// A replay file: one offset from the start per line, in seconds
    /// (`0.0015`), non-decreasing; blank lines and `#` comments skipped.
    pub(crate) fn replay(path: &Path) -> Result<Arrivals, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--replay {}: {e}", path.display()))?;
        let mut offsets = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("--replay {} line {}: {why}", path.display(), i + 1);
            let s: f64 = t.parse().map_err(|_| bad("not a number of seconds"))?;
            if !(0.0..1e9).contains(&s) {
                return Err(bad("out of range"));
            }
            let ns = (s * 1e9) as u64;
            if offsets.last().is_some_and(|&l| ns < l) {
                return Err(bad("earlier than the line before"));
            }
            if offsets.len() == MAX_REPLAY_EVENTS {
                return Err(bad("more offsets than a replay may hold"));
            }
            offsets.push(ns);
        }
        Ok(Arrivals::Replay { offsets, next: 0 })
    }

    /// The next event's due offset, ns; `None` when a replay has ended.
    pub(crate) fn next_due(&mut self) -> Option<u64> {
        match self {
            Arrivals::Constant { gap_ns, next } => {
                let at = (*next as f64 * *gap_ns) as u64;
                *next += 1;
                Some(at)
            }
            Arrivals::Poisson {
                mean_gap_ns,
                at_ns,
                rng,
            } => {
                let at = *at_ns as u64;
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                *at_ns += -u.ln() * *mean_gap_ns;
                Some(at)
            }
            Arrivals::Bursts {
                gap_ns,
                on_ns,
                off_ns,
                next,
            } => {
                let in_burst = (*next as f64 * *gap_ns) as u64;
                *next += 1;
                let (on, period) = (*on_ns, *on_ns + *off_ns);
                Some(in_burst / on.max(1) * period + in_burst % on.max(1))
            }
            Arrivals::Replay { offsets, next } => {
                let at = offsets.get(*next).copied();
                *next += 1;
                at
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(a: &mut Arrivals, n: usize) -> Vec<u64> {
        (0..n).map_while(|_| a.next_due()).collect()
    }

    #[test]
    fn each_pattern_spaces_its_events_as_it_says() {
        assert_eq!(
            take(&mut Arrivals::constant(1000.0), 3),
            [0, 1_000_000, 2_000_000]
        );
        // 4 events of 1 ms in a 2 ms burst, then 3 ms off.
        let mut b = Arrivals::bursts(1000.0, Duration::from_millis(2), Duration::from_millis(3));
        assert_eq!(take(&mut b, 4), [0, 1_000_000, 5_000_000, 6_000_000]);
        // Poisson: non-decreasing, the mean gap near 1/rate.
        let p = take(&mut Arrivals::poisson(1000.0, 7), 20_000);
        assert!(p.windows(2).all(|w| w[0] <= w[1]));
        let mean = *p.last().unwrap() as f64 / (p.len() - 1) as f64;
        assert!((mean - 1e6).abs() < 3e4, "mean gap {mean}");
    }

    #[test]
    fn a_replay_file_is_read_in_order_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        std::fs::write(&p, "# offsets\n0\n0.5\n\n1.25\n").unwrap();
        let mut r = Arrivals::replay(&p).unwrap();
        assert_eq!(take(&mut r, 9), [0, 500_000_000, 1_250_000_000]);
        std::fs::write(&p, "0\n2\n1\n").unwrap();
        assert!(Arrivals::replay(&p).err().unwrap().contains("line 3"));
        std::fs::write(&p, "soon\n").unwrap();
        assert!(Arrivals::replay(&p).err().unwrap().contains("line 1"));
    }
}
