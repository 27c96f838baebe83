//! Hashers for the engine's own maps, cheaper than the standard SipHash,
//! which guards against hash flooding the engine does not need there.
//!
//! - [`KeyHash`]: for keys that are already 64-bit hashes (a message's key,
//!   `Keyed` state). One multiply and a shift fold: whatever bits the key
//!   has end up in the high bits, which hashbrown uses for its control
//!   bytes, so even keys like `0, 1, 2, ...` spread.
//! - [`IdHash`]: for the shards' small ids (app, operator, actor, lease),
//!   a multiply-rotate over each word written (as rustc's `FxHasher`).
//!
//! Neither is keyed: an adversary who picks keys can make them collide.
//! Keys reach the engine already hashed by the client (`key_hash`), ids
//! are the engine's own.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// An odd constant with well-mixed bits (2^64 / the golden ratio).
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// Hashes a `u64` key hash with one multiply (see the module comment).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(MIX);
        h ^ (h >> 29)
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(MIX);
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
}

/// Multiply-rotate over every word written (ids: a few small integers).
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(MIX);
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
}

/// Builds [`KeyHasher`]s.
pub type KeyHash = BuildHasherDefault<KeyHasher>;
/// Builds [`IdHasher`]s.
pub type IdHash = BuildHasherDefault<IdHasher>;
/// A map by key hash.
pub type KeyMap<V> = HashMap<u64, V, KeyHash>;
/// A set of key hashes.
pub type KeySet = HashSet<u64, KeyHash>;
/// A map by engine id.
pub type IdMap<K, V> = HashMap<K, V, IdHash>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn sequential_keys_reach_the_high_bits() {
        // hashbrown's control byte is the top 7 bits: sequential keys must
        // not all share it.
        let tops: HashSet<u64> = (0..1000u64)
            .map(|k| KeyHash::default().hash_one(k) >> 57)
            .collect();
        assert!(tops.len() > 100, "{} distinct control bytes", tops.len());
    }

    #[test]
    fn ids_that_differ_hash_apart() {
        let h = |v: (u32, u16)| IdHash::default().hash_one(v);
        assert_ne!(h((1, 2)), h((2, 1)));
        assert_ne!(h((0, 1)), h((1, 0)));
    }
}
