//! Hash partitions of a keyed actor's state: a fixed space of 64, so a set of
//! partitions is one `u64` bitmask, cheap to copy into control messages.

/// Number of hash partitions of a keyed actor.
pub const PARTITIONS: u32 = 64;

/// A set of partitions, as a bitmask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PartitionSet(pub u64);

impl PartitionSet {
    /// No partition.
    pub const EMPTY: PartitionSet = PartitionSet(0);
    /// All [`PARTITIONS`] partitions.
    pub const ALL: PartitionSet = PartitionSet(u64::MAX);

    /// The partition of a key hash (Fibonacci hashing of the top bits, so a
    /// weak key hash still spreads).
    #[inline]
    pub fn partition_of(key_hash: u64) -> u32 {
        (key_hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as u32
    }

    /// The set of partition `p` alone; `p` must be below [`PARTITIONS`].
    #[inline]
    pub fn single(p: u32) -> PartitionSet {
        assert!(p < PARTITIONS);
        PartitionSet(1u64 << p)
    }

    /// Whether partition `p` is a member.
    #[inline]
    pub fn contains(self, p: u32) -> bool {
        self.0 & (1u64 << p) != 0
    }

    /// Whether the partition of `key_hash` is a member.
    #[inline]
    pub fn contains_key(self, key_hash: u64) -> bool {
        self.contains(Self::partition_of(key_hash))
    }

    /// Whether the set has no member.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of members.
    #[inline]
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Partitions in either set.
    #[inline]
    pub fn union(self, o: PartitionSet) -> PartitionSet {
        PartitionSet(self.0 | o.0)
    }

    /// Partitions of `self` not in `o`.
    #[inline]
    pub fn minus(self, o: PartitionSet) -> PartitionSet {
        PartitionSet(self.0 & !o.0)
    }

    /// Whether the two sets share a partition.
    #[inline]
    pub fn intersects(self, o: PartitionSet) -> bool {
        self.0 & o.0 != 0
    }

    /// The member partitions, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..PARTITIONS).filter(move |&p| self.contains(p))
    }

    /// The lowest `n` members (all of them if there are fewer).
    pub fn take_lowest(self, n: u32) -> PartitionSet {
        let mut out = 0u64;
        let mut rest = self.0;
        for _ in 0..n {
            if rest == 0 {
                break;
            }
            let bit = rest & rest.wrapping_neg();
            out |= bit;
            rest &= !bit;
        }
        PartitionSet(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_lowest_takes_exactly_n_members() {
        let s = PartitionSet(0b1011_0110);
        assert_eq!(s.take_lowest(2), PartitionSet(0b0000_0110));
        assert_eq!(s.take_lowest(10), s);
        assert_eq!(PartitionSet::ALL.take_lowest(64), PartitionSet::ALL);
    }

    #[test]
    fn partition_of_spreads_small_keys() {
        let mut seen = PartitionSet::EMPTY;
        for k in 0..1000u64 {
            seen = seen.union(PartitionSet::single(PartitionSet::partition_of(k)));
        }
        assert_eq!(seen.len(), PARTITIONS);
    }
}
