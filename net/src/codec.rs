//! How an event or an output crosses the wire: its binary form for the
//! binary protocol (rkyv, the engine's `Persist`, validated with bytecheck
//! before use) and its JSON form for HTTP (serde).
//!
//! Every type a catalog app takes in or gives out implements [`WireValue`]
//! (blanket: `Persist` + serde), so a port decodes a frame's bytes into the
//! source's own type before anything reaches the engine: bytes that do not
//! decode are refused with the event's index, and nothing of the batch is
//! sent.

use dirigo_engine::Persist;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::CodecError;

/// A value with a binary and a JSON form.
pub trait WireValue: Sized + Clone + Send + 'static {
    /// The binary form.
    fn to_binary(&self) -> Result<Vec<u8>, CodecError>;
    /// The value from its binary form, validated first.
    fn from_binary(bytes: &[u8]) -> Result<Self, CodecError>;
    /// The JSON form.
    fn to_json(&self) -> Result<serde_json::Value, CodecError>;
    /// The value from its JSON form.
    fn from_json(v: serde_json::Value) -> Result<Self, CodecError>;
}

impl<T> WireValue for T
where
    T: Persist + Serialize + DeserializeOwned + Clone + Send + 'static,
{
    fn to_binary(&self) -> Result<Vec<u8>, CodecError> {
        self.to_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| CodecError::Binary(e.to_string()))
    }

    fn from_binary(bytes: &[u8]) -> Result<Self, CodecError> {
        T::from_bytes(bytes).map_err(|e| CodecError::Binary(e.to_string()))
    }

    fn to_json(&self) -> Result<serde_json::Value, CodecError> {
        serde_json::to_value(self).map_err(|e| CodecError::Json(e.to_string()))
    }

    fn from_json(v: serde_json::Value) -> Result<Self, CodecError> {
        serde_json::from_value(v).map_err(|e| CodecError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::Reading;

    #[test]
    fn a_value_round_trips_both_ways_and_garbage_is_an_error() {
        let r = Reading {
            sensor: 7,
            value: 0.5,
        };
        assert_eq!(Reading::from_binary(&r.to_binary().unwrap()).unwrap(), r);
        assert_eq!(Reading::from_json(r.to_json().unwrap()).unwrap(), r);
        assert!(matches!(
            Reading::from_binary(&[0xff; 3]),
            Err(CodecError::Binary(_))
        ));
        let bad = serde_json::json!({"sensor": "seven"});
        assert!(matches!(Reading::from_json(bad), Err(CodecError::Json(_))));
        let line = "a b".to_string();
        assert_eq!(
            String::from_binary(&line.to_binary().unwrap()).unwrap(),
            line
        );
    }
}
