//! Timers of one actor instance, per key, and the instance's watermark:
//! what `Context::set_timer` (event time, fired by a tick) and
//! `Context::set_processing_timer` (the node clock, fired by the shard
//! when the clock reaches it) write.
//!
//! Timers are part of an instance's state as the protocol moves it: a
//! `Keyed` lease takes the timers of its partitions with their state, a
//! consolidation or a revoke brings them home (`take_partitions`,
//! `take_all`, `absorb`), so a key's timer fires on the instance that owns
//! the key when the watermark (or the clock) passes it, once.

use std::collections::BTreeMap;

use crate::limits::MAX_TIMERS_PER_INSTANCE;
use crate::model::hash::KeySet;
use crate::protocol::{PartitionSet, Time};

/// An instance's event-time timers: by time, the keys whose timer is then.
/// (Many keys share a time, a window's end: one map entry per time and a
/// hashed set of keys, so setting a timer is a hash insert, not a search
/// of every timer.)
#[derive(Debug, Default)]
pub(crate) struct Timers {
    due: BTreeMap<Time, KeySet>,
    len: usize,
}

impl Timers {
    /// Set a timer for `key` at `at` (once: setting it again is a no-op).
    /// `false` when the instance already holds its most timers.
    pub(crate) fn set(&mut self, key: u64, at: Time) -> bool {
        let keys = self.due.entry(at).or_default();
        if keys.contains(&key) {
            return true;
        }
        if self.len >= MAX_TIMERS_PER_INSTANCE {
            if keys.is_empty() {
                self.due.remove(&at);
            }
            return false;
        }
        keys.insert(key);
        self.len += 1;
        true
    }

    /// Delete `key`'s timer at `at`, if set.
    pub(crate) fn delete(&mut self, key: u64, at: Time) {
        if let Some(keys) = self.due.get_mut(&at) {
            if keys.remove(&key) {
                self.len -= 1;
            }
            if keys.is_empty() {
                self.due.remove(&at);
            }
        }
    }

    /// The keys of the earliest time at or before `upto`, taken out (all
    /// at once: taking a hashed set's keys one by one from its start would
    /// scan its emptied buckets again each time).
    pub(crate) fn take_due(&mut self, upto: Time) -> Option<(Time, Vec<u64>)> {
        let first = self.due.first_entry()?;
        if *first.key() > upto {
            return None;
        }
        let (at, keys) = first.remove_entry();
        self.len -= keys.len();
        Some((at, keys.into_iter().collect()))
    }

    /// A timer at or before `upto` (the earliest time first), taken out.
    #[cfg(test)]
    pub(crate) fn pop_due(&mut self, upto: Time) -> Option<(Time, u64)> {
        let (at, mut keys) = self.take_due(upto)?;
        keys.sort_unstable();
        let key = keys.remove(0);
        self.insert_all(keys.into_iter().map(|k| (at, k)));
        Some((at, key))
    }

    /// Timers set.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The earliest time a timer is set at.
    pub(crate) fn next(&self) -> Option<Time> {
        self.due.keys().next().copied()
    }

    /// Every timer's time moved by `f` (a clock's change of origin).
    fn retime(&mut self, f: impl Fn(Time) -> Time) {
        let mut moved = Timers::default();
        for (t, keys) in std::mem::take(&mut self.due) {
            moved.insert_all(keys.into_iter().map(|k| (f(t), k)));
        }
        *self = moved;
    }

    /// Every timer as (time, key), in order.
    fn sorted(&self) -> Vec<(Time, u64)> {
        let mut all = Vec::with_capacity(self.len);
        for (&t, keys) in &self.due {
            let mut ks: Vec<u64> = keys.iter().copied().collect();
            ks.sort_unstable();
            all.extend(ks.into_iter().map(|k| (t, k)));
        }
        all
    }

    fn insert_all(&mut self, timers: impl IntoIterator<Item = (Time, u64)>) {
        for (t, k) in timers {
            if self.due.entry(t).or_default().insert(k) {
                self.len += 1;
            }
        }
    }

    /// The timers of keys in `parts`, taken out.
    pub(crate) fn take_partitions(&mut self, parts: PartitionSet) -> Timers {
        let mut moving = Timers::default();
        for (&t, keys) in self.due.iter_mut() {
            let before = keys.len();
            keys.retain(|k| {
                let go = parts.contains_key(*k);
                if go {
                    moving.due.entry(t).or_default().insert(*k);
                }
                !go
            });
            moving.len += before - keys.len();
        }
        self.due.retain(|_, keys| !keys.is_empty());
        self.len -= moving.len;
        moving
    }

    /// Every timer, taken out.
    pub(crate) fn take_all(&mut self) -> Timers {
        std::mem::take(self)
    }

    /// Fold another instance's timers in.
    pub(crate) fn absorb(&mut self, other: Timers) {
        if self.len == 0 {
            *self = other;
            return;
        }
        for (t, keys) in other.due {
            self.insert_all(keys.into_iter().map(|k| (t, k)));
        }
    }
}

/// Which clock a timer is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Domain {
    /// Event time: fires when the instance's watermark reaches it.
    Event,
    /// The node clock (ns since the node started): fires when the shard's
    /// clock reaches it.
    Processing,
}

/// An instance's time: its watermark (the last tick it ran, or what its
/// lessor's was when it took partitions) and its timers on either clock.
#[derive(Debug, Default)]
pub(crate) struct EventClock {
    pub(crate) watermark: Time,
    pub(crate) timers: Timers,
    /// Processing-time timers, at node-clock ns.
    pub(crate) proc: Timers,
    /// Events the function counted late since the shard last looked.
    pub(crate) late: u64,
}

/// Event time in transit with state: timers, and the lessor's watermark
/// when the lessor hands partitions out (a lessee's part carries none: a
/// lessee may have run ticks its lessor has not yet, and the lessor's
/// watermark follows its own mailbox only).
#[derive(Debug, Default)]
pub(crate) struct ClockPart {
    watermark: Option<Time>,
    timers: Timers,
    proc: Timers,
}

/// The first byte of an encoded clock (its format's version): 1 has event
/// timers only, 2 processing-time timers after them.
const CLOCK_FORMAT: u8 = 2;
const CLOCK_FORMAT_EVENT_ONLY: u8 = 1;

/// A list of timers as bytes: how many, then each one's time and key
/// (little-endian u64s).
fn put_timers(out: &mut Vec<u8>, timers: &[(Time, u64)]) {
    out.extend((timers.len() as u64).to_le_bytes());
    for (t, k) in timers {
        out.extend(t.to_le_bytes());
        out.extend(k.to_le_bytes());
    }
}

/// Read a list `put_timers` wrote at `at`; the timers and where the list
/// ends.
fn get_timers(bytes: &[u8], at: usize) -> Result<(Timers, usize), String> {
    let word = |i: usize| -> Result<u64, String> {
        let b = bytes.get(i..i + 8).ok_or("cut short")?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let n = usize::try_from(word(at)?).map_err(|_| "too many timers")?;
    let end = n
        .checked_mul(16)
        .and_then(|b| b.checked_add(at + 8))
        .filter(|&end| n <= MAX_TIMERS_PER_INSTANCE && end <= bytes.len())
        .ok_or_else(|| format!("{} bytes for {n} timers", bytes.len()))?;
    let pairs = (0..n)
        .map(|i| Ok((word(at + 8 + 16 * i)?, word(at + 16 + 16 * i)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let mut timers = Timers::default();
    timers.insert_all(pairs);
    Ok((timers, end))
}

impl EventClock {
    /// Its bytes for a checkpoint: the format, the watermark, the event
    /// timers, then the processing-time timers at unix-epoch ns (the node
    /// clock started at `unix_origin_ns`), so that after a restart they
    /// fire when the wall clock says (at once, those already past).
    pub(crate) fn encode(&self, unix_origin_ns: u64) -> Vec<u8> {
        let timers = self.timers.sorted();
        let proc: Vec<(Time, u64)> = self
            .proc
            .sorted()
            .into_iter()
            .map(|(t, k)| (t.saturating_add(unix_origin_ns), k))
            .collect();
        let mut out = Vec::with_capacity(25 + 16 * (timers.len() + proc.len()));
        out.push(CLOCK_FORMAT);
        out.extend(self.watermark.to_le_bytes());
        put_timers(&mut out, &timers);
        put_timers(&mut out, &proc);
        out
    }

    /// Read back what `encode` wrote (or format 1, without processing-time
    /// timers); why not, if the bytes are not that. The processing-time
    /// timers are at unix-epoch ns until `rebase_proc` moves them onto a
    /// node's clock.
    pub(crate) fn decode(bytes: &[u8]) -> Result<EventClock, String> {
        let format = match bytes.first() {
            Some(&f @ (CLOCK_FORMAT | CLOCK_FORMAT_EVENT_ONLY)) => f,
            other => return Err(format!("not an event clock (format {other:?})")),
        };
        let watermark = bytes
            .get(1..9)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or("cut short")?;
        let (timers, end) = get_timers(bytes, 9)?;
        let (proc, end) = match format {
            CLOCK_FORMAT => get_timers(bytes, end)?,
            _ => (Timers::default(), end),
        };
        if end != bytes.len() {
            return Err(format!("{} bytes, {} read as timers", bytes.len(), end));
        }
        Ok(EventClock {
            watermark,
            timers,
            proc,
            late: 0,
        })
    }

    /// A decoded clock's processing-time timers, from unix-epoch ns onto
    /// the clock of a node that started at `unix_origin_ns` (one already
    /// past fires at once).
    pub(crate) fn rebase_proc(&mut self, unix_origin_ns: u64) {
        self.proc.retime(|t| t.saturating_sub(unix_origin_ns));
    }

    /// The lessor's: the timers of partitions `parts`, with its watermark.
    pub(crate) fn take_partitions(&mut self, parts: PartitionSet) -> ClockPart {
        ClockPart {
            watermark: Some(self.watermark),
            timers: self.timers.take_partitions(parts),
            proc: self.proc.take_partitions(parts),
        }
    }

    /// A lessee's, going home: every timer.
    pub(crate) fn take_all(&mut self) -> ClockPart {
        ClockPart {
            watermark: None,
            timers: self.timers.take_all(),
            proc: self.proc.take_all(),
        }
    }

    pub(crate) fn absorb(&mut self, other: ClockPart) {
        if let Some(w) = other.watermark {
            self.watermark = self.watermark.max(w);
        }
        self.timers.absorb(other.timers);
        self.proc.absorb(other.proc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_time_order_and_move_with_their_partitions() {
        let mut t = Timers::default();
        let (a, b) = (1u64, 1u64 << 60);
        assert_ne!(PartitionSet::partition_of(a), PartitionSet::partition_of(b));
        assert!(t.set(a, 30) && t.set(b, 10) && t.set(a, 20) && t.set(a, 20));
        assert_eq!(t.len(), 3);
        let moved = t.take_partitions(PartitionSet::single(PartitionSet::partition_of(b)));
        assert_eq!(moved.len(), 1);
        let mut home = Timers::default();
        home.absorb(moved);
        home.absorb(t.take_all());
        assert_eq!(home.pop_due(25), Some((10, b)));
        assert_eq!(home.pop_due(25), Some((20, a)));
        assert_eq!(home.pop_due(25), None);
        home.delete(a, 30);
        assert_eq!(home.pop_due(Time::MAX), None);
    }

    #[test]
    fn a_clock_reads_back_what_it_wrote_and_refuses_damage() {
        let mut c = EventClock {
            watermark: 77,
            ..Default::default()
        };
        assert!(c.timers.set(5, 100) && c.timers.set(9, 80));
        assert!(c.proc.set(5, 1_000) && c.proc.set(7, 4_000));
        // Written by a node that started at unix 10_000, read by one that
        // started at unix 12_000: the timer due at unix 11_000 is past.
        let bytes = c.encode(10_000);
        let mut back = EventClock::decode(&bytes).expect("reads back");
        back.rebase_proc(12_000);
        assert_eq!(
            (back.watermark, back.timers.sorted(), back.proc.sorted()),
            (77, c.timers.sorted(), vec![(0, 5), (2_000, 7)])
        );
        assert!(EventClock::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(EventClock::decode(&[9]).is_err());
        let mut huge = bytes.clone();
        huge[9..17].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(EventClock::decode(&huge).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(EventClock::decode(&trailing).is_err());
    }

    #[test]
    fn a_clock_of_the_format_without_processing_timers_still_reads() {
        let mut v1 = vec![CLOCK_FORMAT_EVENT_ONLY];
        v1.extend(40u64.to_le_bytes());
        put_timers(&mut v1, &[(50, 3)]);
        let back = EventClock::decode(&v1).expect("format 1 reads");
        assert_eq!(back.watermark, 40);
        assert_eq!(back.timers.sorted(), vec![(50, 3)]);
        assert_eq!(back.proc.len(), 0);
    }

    #[test]
    fn processing_timers_move_with_their_partitions() {
        let mut home = EventClock::default();
        let (a, b) = (1u64, 1u64 << 60);
        assert!(home.proc.set(a, 10) && home.proc.set(b, 20));
        let mut lessee = EventClock::default();
        lessee.absorb(home.take_partitions(PartitionSet::single(PartitionSet::partition_of(b))));
        assert_eq!((home.proc.next(), lessee.proc.next()), (Some(10), Some(20)));
        home.absorb(lessee.take_all());
        assert_eq!(home.proc.sorted(), vec![(10, a), (20, b)]);
        assert_eq!(lessee.proc.next(), None);
    }

    #[test]
    fn a_lessees_part_does_not_move_the_lessors_watermark() {
        let mut home = EventClock {
            watermark: 50,
            ..Default::default()
        };
        let mut lessee = EventClock::default();
        lessee.absorb(home.take_partitions(PartitionSet::ALL));
        assert_eq!(lessee.watermark, 50, "a lease starts at its lessor's");
        lessee.watermark = 90; // it ran a tick its lessor has not yet
        home.absorb(lessee.take_all());
        assert_eq!(home.watermark, 50);
    }
}
