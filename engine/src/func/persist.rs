//! What makes state and input durable: the byte forms the engine writes to
//! storage, and the traits a user's types implement (by deriving rkyv) to
//! get there.
//!
//! - [`Persist`]: a value the engine can turn into bytes and back: every
//!   type that derives `rkyv::Archive`, `rkyv::Serialize` and
//!   `rkyv::Deserialize` (with the validation rkyv's `bytecheck` derives).
//!   Source events of a durable app and operator state values are `Persist`.
//! - [`DurableState`]: an operator state the engine can checkpoint:
//!   [`Keyed`], [`Merged`] and [`Sequential`] of `Persist` values.
//!
//! Bytes read back from storage are copied into an aligned buffer before
//! they are validated and deserialized: the stored form of a state is a
//! byte string inside a record, whose alignment rkyv cannot rely on.

use crate::model::hash::{KeyMap, KeySet};

use rkyv::api::high::HighDeserializer;
use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::state::{Keyed, Merge, Merged, OperatorState, Sequential};

/// A value that could not be turned into bytes, or bytes that are not a
/// valid archive of the expected type.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct PersistError {
    /// The type that could not be stored or read back.
    pub what: &'static str,
    /// Why (rkyv's message).
    pub reason: String,
}

/// A value the engine can store and read back. Implemented for every type
/// rkyv can archive, validate and deserialize: derive `rkyv::Archive`,
/// `rkyv::Serialize` and `rkyv::Deserialize`.
pub trait Persist: Sized {
    /// The value archived (rkyv), 16-aligned.
    fn to_bytes(&self) -> Result<AlignedVec, PersistError>;
    /// The value from its archive, validated first (bytecheck); `bytes` may
    /// be at any alignment.
    fn from_bytes(bytes: &[u8]) -> Result<Self, PersistError>;
}

impl<T> Persist for T
where
    T: dirigo_storage::Record,
    T::Archived: rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    fn to_bytes(&self) -> Result<AlignedVec, PersistError> {
        rkyv::to_bytes::<rancor::Error>(self).map_err(|e| PersistError {
            what: std::any::type_name::<T>(),
            reason: format!("cannot archive: {e}"),
        })
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, PersistError> {
        let invalid = |e: rancor::Error| PersistError {
            what: std::any::type_name::<T>(),
            reason: format!("not a valid archive: {e}"),
        };
        // rkyv reads the archive in place, which needs its alignment (at
        // most 16); bytes that do not have it are copied once.
        if (bytes.as_ptr() as usize) % ALIGN == 0 {
            return rkyv::from_bytes::<T, rancor::Error>(bytes).map_err(invalid);
        }
        rkyv::from_bytes::<T, rancor::Error>(&aligned_copy([bytes], bytes.len())).map_err(invalid)
    }
}

/// The alignment archives are read at (rkyv's largest).
pub(crate) const ALIGN: usize = 16;

/// `parts` (`len` bytes in all) joined into one 16-aligned buffer: one copy.
pub(crate) fn aligned_copy<'a>(
    parts: impl IntoIterator<Item = &'a [u8]>,
    len: usize,
) -> AlignedVec<ALIGN> {
    let mut out = AlignedVec::<ALIGN>::with_capacity(len);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// An operator state the engine can checkpoint and restore. Each
/// strategy's state is stored as the archive of its contents, so a
/// checkpoint is independent of how the state was split among lessees.
///
/// Incremental checkpoints: a strategy that can tell what changed since the
/// last checkpoint ([`Keyed`]: the keys written since) saves only that
/// (`save_changes`), and recovery applies the changes of each incremental
/// checkpoint to its base (`apply_changes`). The others are saved whole
/// every time.
pub trait DurableState: OperatorState {
    /// The whole state (`&mut` only so that implementations can archive
    /// their parts in place; the state is unchanged after).
    fn save(&mut self) -> Result<AlignedVec, PersistError>;
    /// A state from `save`'s bytes, with no change pending.
    fn restore(bytes: &[u8]) -> Result<Self, PersistError>;
    /// An empty state, ready to track its changes.
    fn fresh() -> Self {
        Self::default()
    }
    /// What changed since the last checkpoint; `None` if this strategy is
    /// always saved whole.
    fn save_changes(&mut self) -> Option<Result<AlignedVec, PersistError>> {
        None
    }
    /// Apply `save_changes`'s bytes.
    fn apply_changes(&mut self, _bytes: &[u8]) -> Result<(), PersistError> {
        Err(PersistError {
            what: std::any::type_name::<Self>(),
            reason: "this state is always checkpointed whole".into(),
        })
    }
    /// A checkpoint saved the state (whole or its changes): none pending.
    fn checkpointed(&mut self) {}
    /// The whole state with its pending changes, for a spill file.
    fn spill(&mut self) -> Result<AlignedVec, PersistError> {
        self.save()
    }
    /// A state from `spill`'s bytes.
    fn unspill(bytes: &[u8]) -> Result<Self, PersistError> {
        Self::restore(bytes)
    }
}

impl<V: Send + 'static> DurableState for Keyed<V>
where
    KeyMap<V>: Persist,
    (KeyMap<V>, Vec<u64>): Persist,
    (KeyMap<V>, Option<Vec<u64>>): Persist,
{
    fn save(&mut self) -> Result<AlignedVec, PersistError> {
        self.map_ref().to_bytes()
    }
    fn restore(bytes: &[u8]) -> Result<Self, PersistError> {
        let map = KeyMap::<V>::from_bytes(bytes)?;
        Ok(Keyed::from_parts(map, Some(KeySet::default())))
    }
    fn fresh() -> Self {
        let mut k = Keyed::default();
        k.track();
        k
    }
    fn save_changes(&mut self) -> Option<Result<AlignedVec, PersistError>> {
        let changed: Vec<u64> = self.changed()?.iter().copied().collect();
        // Move the changed entries out, archive them, put them back: no
        // value is cloned.
        let mut upserts = KeyMap::with_capacity_and_hasher(changed.len(), Default::default());
        let mut removed = Vec::new();
        for k in changed {
            match self.take_entry(k) {
                Some(v) => {
                    upserts.insert(k, v);
                }
                None => removed.push(k),
            }
        }
        let delta = (upserts, removed);
        let bytes = delta.to_bytes();
        self.put_back(delta.0);
        Some(bytes)
    }
    fn apply_changes(&mut self, bytes: &[u8]) -> Result<(), PersistError> {
        let (upserts, removed) = <(KeyMap<V>, Vec<u64>)>::from_bytes(bytes)?;
        for k in removed {
            self.take_entry(k);
        }
        self.put_back(upserts);
        Ok(())
    }
    fn checkpointed(&mut self) {
        self.forget_changes();
    }
    fn spill(&mut self) -> Result<AlignedVec, PersistError> {
        // `None` (not tracking) stays `None`: everything may have changed.
        let pending: Option<Vec<u64>> = self.changed().map(|c| c.iter().copied().collect());
        let whole = (self.take_map(), pending);
        let bytes = whole.to_bytes();
        self.put_back(whole.0);
        bytes
    }
    fn unspill(bytes: &[u8]) -> Result<Self, PersistError> {
        let (map, pending) = <(KeyMap<V>, Option<Vec<u64>>)>::from_bytes(bytes)?;
        Ok(Keyed::from_parts(
            map,
            pending.map(|p| p.into_iter().collect()),
        ))
    }
}

impl<S: Merge + Default + Send + 'static + Persist> DurableState for Merged<S> {
    fn save(&mut self) -> Result<AlignedVec, PersistError> {
        self.0.to_bytes()
    }
    fn restore(bytes: &[u8]) -> Result<Self, PersistError> {
        S::from_bytes(bytes).map(Merged)
    }
}

impl<S: Default + Send + 'static + Persist> DurableState for Sequential<S> {
    fn save(&mut self) -> Result<AlignedVec, PersistError> {
        self.0.to_bytes()
    }
    fn restore(bytes: &[u8]) -> Result<Self, PersistError> {
        S::from_bytes(bytes).map(Sequential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Default, PartialEq)]
    struct Acc {
        n: u64,
        words: Vec<String>,
    }

    #[test]
    fn keyed_state_round_trips_from_unaligned_bytes() {
        let mut k: Keyed<Acc> = Keyed::fresh();
        k.entry(7).n = 3;
        k.entry(9).words.push("dirigo".into());
        let bytes = k.save().expect("saves");
        // Stored state comes back at any alignment.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        let back = Keyed::<Acc>::restore(&shifted[1..]).expect("restores");
        assert_eq!(back.len(), 2);
        assert_eq!(back.get(7).map(|a| a.n), Some(3));
        assert_eq!(
            back.get(9).map(|a| a.words.clone()),
            Some(vec!["dirigo".to_string()])
        );
    }

    #[test]
    fn merged_and_sequential_round_trip() {
        let mut m = Merged(41u64);
        assert_eq!(
            Merged::<u64>::restore(&m.save().expect("saves"))
                .expect("restores")
                .0,
            41
        );
        let mut s = Sequential(vec![1u32, 2, 3]);
        let back = Sequential::<Vec<u32>>::restore(&s.save().expect("saves")).expect("restores");
        assert_eq!(back.0, vec![1, 2, 3]);
    }

    #[test]
    fn garbage_is_an_error_naming_the_type() {
        let e = Keyed::<Acc>::restore(&[0xff; 5]).expect_err("not an archive");
        assert!(e.what.contains("HashMap"), "{e}");
    }

    use proptest::prelude::*;

    /// One write to a keyed state.
    #[derive(Clone, Debug)]
    enum Op {
        Put(u8, Vec<u8>),
        Remove(u8),
        /// A checkpoint: whole (true) or only the changes (false).
        Checkpoint(bool),
        /// Rewrite every value (a window close).
        Touch,
        /// The function replaces its state with a fresh, untracked one.
        Reset,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..12))
                .prop_map(|(k, v)| Op::Put(k, v)),
            2 => any::<u8>().prop_map(Op::Remove),
            1 => any::<bool>().prop_map(Op::Checkpoint),
            1 => Just(Op::Touch),
            1 => Just(Op::Reset),
        ]
    }

    proptest! {
        /// Restoring the last whole checkpoint and applying every later
        /// incremental one in order gives the state as it was at the last
        /// checkpoint, whatever the writes, and a spill in between loses
        /// no pending change.
        #[test]
        fn a_chain_of_checkpoints_restores_the_state(ops in proptest::collection::vec(op(), 0..60)) {
            let mut live: Keyed<Vec<u8>> = Keyed::fresh();
            let mut chain: Vec<(bool, AlignedVec)> = Vec::new();
            let mut at_last: Option<KeyMap<Vec<u8>>> = None;
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Op::Put(k, v) => { live.insert(u64::from(*k), v.clone()); }
                    Op::Remove(k) => { live.remove(u64::from(*k)); }
                    Op::Touch => {
                        for (_, v) in live.iter_mut() {
                            v.push(i as u8);
                        }
                    }
                    Op::Reset => live = Keyed::default(),
                    Op::Checkpoint(full) => {
                        // As the shard does: changes where asked and known.
                        let changes = if *full || chain.is_empty() {
                            None
                        } else {
                            live.save_changes()
                        };
                        let full = changes.is_none();
                        let bytes = match changes {
                            Some(c) => c.expect("saves"),
                            None => live.save().expect("saves"),
                        };
                        live.checkpointed();
                        if full {
                            chain.clear();
                        }
                        chain.push((full, bytes));
                        at_last = Some(live.map_ref().clone());
                    }
                }
                if i % 7 == 3 {
                    // A spill and wake-up keeps the pending changes.
                    let bytes = live.spill().expect("spills");
                    live = Keyed::unspill(&bytes).expect("unspills");
                }
            }
            if let Some(want) = at_last {
                let (first, rest) = chain.split_first().expect("a checkpoint was taken");
                prop_assert!(first.0, "a chain starts whole");
                let mut back = Keyed::<Vec<u8>>::restore(&first.1).expect("restores");
                for (full, delta) in rest {
                    prop_assert!(!full);
                    back.apply_changes(delta).expect("applies");
                }
                prop_assert_eq!(back.map_ref(), &want);
            }
        }
    }
}
