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
//! - [`LogEntry`]: one record of an app's ingress log: an event (source,
//!   key, archived payload) or a barrier a client injected. The log is what
//!   recovery replays after the newest checkpoint, so it holds everything
//!   that changes state from the outside, in the order the sources took it.
//!
//! Bytes read back from storage are copied into an aligned buffer before
//! they are validated and deserialized: the stored form of a state is a
//! byte string inside a record, whose alignment rkyv cannot rely on.

use std::collections::HashMap;

use rkyv::api::high::HighDeserializer;
use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::function::{ErasedState, Keyed, Merge, Merged, OperatorState, Sequential};
use crate::message::BarrierKind;

/// A value that could not be turned into bytes, or bytes that are not a
/// valid archive of the expected type.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct PersistError {
    pub what: &'static str,
    pub reason: String,
}

/// A value the engine can store and read back. Implemented for every type
/// rkyv can archive, validate and deserialize: derive `rkyv::Archive`,
/// `rkyv::Serialize` and `rkyv::Deserialize`.
pub trait Persist: Sized {
    fn to_bytes(&self) -> Result<AlignedVec, PersistError>;
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
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| PersistError {
            what: std::any::type_name::<T>(),
            reason: format!("not a valid archive: {e}"),
        })
    }
}

/// An operator state the engine can checkpoint and restore whole. Each
/// strategy's state is stored as the archive of its contents, so a
/// checkpoint is independent of how the state was split among lessees.
pub trait DurableState: OperatorState {
    fn save(&self) -> Result<AlignedVec, PersistError>;
    fn restore(bytes: &[u8]) -> Result<Self, PersistError>;
}

impl<V: Send + 'static> DurableState for Keyed<V>
where
    HashMap<u64, V>: Persist,
{
    fn save(&self) -> Result<AlignedVec, PersistError> {
        self.map_ref().to_bytes()
    }
    fn restore(bytes: &[u8]) -> Result<Self, PersistError> {
        HashMap::<u64, V>::from_bytes(bytes).map(Keyed::from_map)
    }
}

impl<S: Merge + Default + Send + 'static + Persist> DurableState for Merged<S> {
    fn save(&self) -> Result<AlignedVec, PersistError> {
        self.0.to_bytes()
    }
    fn restore(bytes: &[u8]) -> Result<Self, PersistError> {
        S::from_bytes(bytes).map(Merged)
    }
}

impl<S: Default + Send + 'static + Persist> DurableState for Sequential<S> {
    fn save(&self) -> Result<AlignedVec, PersistError> {
        self.0.to_bytes()
    }
    fn restore(bytes: &[u8]) -> Result<Self, PersistError> {
        S::from_bytes(bytes).map(Sequential)
    }
}

pub(crate) type Restore = fn(&[u8]) -> Result<Box<dyn ErasedState>, PersistError>;

/// Type-erased checkpoint and restore of one operator's state
/// (monomorphized for the operator's state type when the app is built).
#[derive(Clone, Copy)]
pub(crate) struct StateCodec {
    pub save: fn(&dyn ErasedState) -> Result<AlignedVec, PersistError>,
    pub restore: Restore,
}

impl StateCodec {
    pub fn of<S: DurableState>() -> StateCodec {
        StateCodec {
            save: |state| {
                let state = state
                    .as_any()
                    .downcast_ref::<S>()
                    .expect("an actor instance holds its operator's state type");
                state.save()
            },
            restore: |bytes| S::restore(bytes).map(|s| Box::new(s) as Box<dyn ErasedState>),
        }
    }
}

/// Type-erased encoding of one durable source's events.
#[derive(Clone, Copy)]
pub(crate) struct EventCodec {
    pub encode: fn(&crate::function::AnyBox) -> Result<AlignedVec, PersistError>,
    pub decode: fn(&[u8]) -> Result<crate::function::AnyBox, PersistError>,
}

impl EventCodec {
    pub fn of<T: Persist + Send + 'static>() -> EventCodec {
        EventCodec {
            encode: |v| {
                v.downcast_ref::<T>()
                    .expect("a source's events have its type")
                    .to_bytes()
            },
            decode: |bytes| T::from_bytes(bytes).map(|v| Box::new(v) as crate::function::AnyBox),
        }
    }
}

/// One record of an app's ingress log.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub(crate) enum LogEntry {
    /// An event accepted by source `source` (operator index), with its key
    /// hash and its archived payload.
    Event {
        source: u16,
        key: u64,
        payload: Vec<u8>,
    },
    /// A barrier a client injected (not checkpoints: those are the log's
    /// own cut points, not inputs).
    Barrier { kind: u8, tag: u64 },
}

pub(crate) fn kind_code(kind: BarrierKind) -> u8 {
    match kind {
        BarrierKind::WindowClose => 0,
        BarrierKind::Checkpoint => 1,
        BarrierKind::Query => 2,
    }
}

pub(crate) fn kind_of(code: u8) -> Option<BarrierKind> {
    match code {
        0 => Some(BarrierKind::WindowClose),
        1 => Some(BarrierKind::Checkpoint),
        2 => Some(BarrierKind::Query),
        _ => None,
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
        let mut k: Keyed<Acc> = Keyed::default();
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
        let m = Merged(41u64);
        assert_eq!(
            Merged::<u64>::restore(&m.save().expect("saves"))
                .expect("restores")
                .0,
            41
        );
        let s = Sequential(vec![1u32, 2, 3]);
        let back = Sequential::<Vec<u32>>::restore(&s.save().expect("saves")).expect("restores");
        assert_eq!(back.0, vec![1, 2, 3]);
    }

    #[test]
    fn garbage_is_an_error_naming_the_type() {
        let e = Keyed::<Acc>::restore(&[0xff; 5]).expect_err("not an archive");
        assert!(e.what.contains("HashMap"), "{e}");
    }

    #[test]
    fn barrier_kinds_have_stable_codes() {
        for k in [
            BarrierKind::WindowClose,
            BarrierKind::Checkpoint,
            BarrierKind::Query,
        ] {
            assert_eq!(kind_of(kind_code(k)), Some(k));
        }
        assert_eq!(kind_of(9), None);
    }
}
