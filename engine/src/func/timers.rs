//! Event-time timers of one actor instance, per key, and the instance's
//! watermark: what `Context::set_timer` writes and a tick fires.
//!
//! Timers are part of an instance's state as the protocol moves it: a
//! `Keyed` lease takes the timers of its partitions with their state, a
//! consolidation or a revoke brings them home (`take_partitions`,
//! `take_all`, `absorb`), so a key's timer fires on the instance that owns
//! the key when the watermark passes it, once.

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
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
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

/// An instance's event time: its watermark (the last tick it ran, or what
/// its lessor's was when it took partitions) and its timers.
#[derive(Debug, Default)]
pub(crate) struct EventClock {
    pub(crate) watermark: Time,
    pub(crate) timers: Timers,
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
}

/// The first byte of an encoded event clock (its format's version).
const CLOCK_FORMAT: u8 = 1;

impl EventClock {
    /// Its bytes for a checkpoint: the format, the watermark, the number
    /// of timers, each timer's time and key (little-endian u64s).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let timers = self.timers.sorted();
        let mut out = Vec::with_capacity(17 + 16 * timers.len());
        out.push(CLOCK_FORMAT);
        out.extend(self.watermark.to_le_bytes());
        out.extend((timers.len() as u64).to_le_bytes());
        for (t, k) in &timers {
            out.extend(t.to_le_bytes());
            out.extend(k.to_le_bytes());
        }
        out
    }

    /// Read back what `encode` wrote; why not, if the bytes are not that.
    pub(crate) fn decode(bytes: &[u8]) -> Result<EventClock, String> {
        let word = |i: usize| -> Result<u64, String> {
            let b = bytes.get(i..i + 8).ok_or("cut short")?;
            Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        match bytes.first() {
            Some(&CLOCK_FORMAT) => {}
            other => return Err(format!("not an event clock (format {other:?})")),
        }
        let (watermark, n) = (word(1)?, word(9)?);
        let n = usize::try_from(n).map_err(|_| "too many timers")?;
        if n > MAX_TIMERS_PER_INSTANCE || bytes.len() != 17 + 16 * n {
            return Err(format!("{} bytes for {n} timers", bytes.len()));
        }
        let pairs = (0..n)
            .map(|i| Ok((word(17 + 16 * i)?, word(25 + 16 * i)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let mut timers = Timers::default();
        timers.insert_all(pairs);
        Ok(EventClock {
            watermark,
            timers,
            late: 0,
        })
    }

    /// The lessor's: the timers of partitions `parts`, with its watermark.
    pub(crate) fn take_partitions(&mut self, parts: PartitionSet) -> ClockPart {
        ClockPart {
            watermark: Some(self.watermark),
            timers: self.timers.take_partitions(parts),
        }
    }

    /// A lessee's, going home: every timer.
    pub(crate) fn take_all(&mut self) -> ClockPart {
        ClockPart {
            watermark: None,
            timers: self.timers.take_all(),
        }
    }

    pub(crate) fn absorb(&mut self, other: ClockPart) {
        if let Some(w) = other.watermark {
            self.watermark = self.watermark.max(w);
        }
        self.timers.absorb(other.timers);
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
        let bytes = c.encode();
        let back = EventClock::decode(&bytes).expect("reads back");
        assert_eq!(
            (back.watermark, back.timers.sorted()),
            (77, c.timers.sorted())
        );
        assert!(EventClock::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(EventClock::decode(&[9]).is_err());
        let mut huge = bytes.clone();
        huge[9..17].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(EventClock::decode(&huge).is_err());
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
