//! How much CPU a benchmark and everything else on the machine used
//! (Linux `/proc`), so that a run disturbed by another process shows as
//! such: this machine is shared, and every benchmark reports it.

/// CPU time counters of the machine and of this process.
#[derive(Clone, Copy, Debug)]
pub struct CpuSnap {
    /// Non-idle ticks over all CPUs.
    busy: u64,
    /// All ticks over all CPUs.
    total: u64,
    /// CPUs listed in `/proc/stat`.
    pub cpus: usize,
    /// This process's user + system ticks.
    own: u64,
}

/// The counters now; `None` where `/proc` cannot be read.
pub fn snap() -> Option<CpuSnap> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let f: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    let total = busy + at(3) + at(4);
    let cpus = lines.filter(|l| l.starts_with("cpu")).count().max(1);
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at the
    // state, field 3; utime and stime are fields 14 and 15.
    let after = &me[me.rfind(')')? + 1..];
    let g: Vec<&str> = after.split_whitespace().collect();
    let own = g.get(11)?.parse::<u64>().ok()? + g.get(12)?.parse::<u64>().ok()?;
    Some(CpuSnap {
        busy,
        total,
        cpus,
        own,
    })
}

/// CPU core-seconds over some wall time: this process's, every other
/// process's, and what the machine had (cores × wall time).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    /// This process's core-seconds.
    pub own_s: f64,
    /// Every other process's core-seconds.
    pub others_s: f64,
    /// Cores × wall time.
    pub capacity_s: f64,
}

impl CpuUse {
    /// Between two snapshots `wall_s` apart (ticks scaled so that all
    /// ticks over all CPUs are `cpus × wall_s`).
    pub fn between(a: Option<CpuSnap>, b: Option<CpuSnap>, wall_s: f64) -> Option<CpuUse> {
        let (a, b) = (a?, b?);
        let total = b.total.checked_sub(a.total).filter(|t| *t > 0)? as f64;
        let busy = b.busy.saturating_sub(a.busy) as f64;
        let own = (b.own.saturating_sub(a.own) as f64).min(busy);
        let capacity_s = b.cpus as f64 * wall_s;
        let scale = capacity_s / total;
        Some(CpuUse {
            own_s: own * scale,
            others_s: (busy - own) * scale,
            capacity_s,
        })
    }
}

/// The sum of two spans.
impl std::ops::Add for CpuUse {
    type Output = CpuUse;
    fn add(self, o: CpuUse) -> CpuUse {
        CpuUse {
            own_s: self.own_s + o.own_s,
            others_s: self.others_s + o.others_s,
            capacity_s: self.capacity_s + o.capacity_s,
        }
    }
}
