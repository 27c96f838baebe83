//! The byte forms of a durable app's ingress log: one [`LogEntry`] per
//! event or client barrier, and the stable codes of barrier kinds.
//!
//! The log is what recovery replays after the newest checkpoint, so it holds
//! everything that changes state from the outside, in the order the sources
//! took it. Codes are part of the on-disk format: never renumber them.

use crate::model::BarrierKind;

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

/// The stable code of a barrier kind in the log.
pub(crate) fn kind_code(kind: BarrierKind) -> u8 {
    match kind {
        BarrierKind::WindowClose => 0,
        BarrierKind::Checkpoint => 1,
        BarrierKind::Query => 2,
    }
}

/// The barrier kind of a code, `None` for a code no kind has.
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
