//! The state of one actor instance as the engine hands it to the protocol:
//! the user's state, the instance's emission tally for the current epoch,
//! and its event time (watermark and timers, which move with partitions).
//!
//! The tally counts, per output edge, the data messages this instance emitted
//! in the current epoch. Consolidation and revocation carry it home with the
//! state, so at a critical the lessor's tally is the operator's total for the
//! epoch: the count its critical announces downstream (see
//! `protocol::lessor`, "Barriers and epochs").

use crate::func::{ClockPart, ErasedState, EventClock};
use crate::protocol::{PartialState, PartitionSet};

pub(crate) struct Instance {
    /// The user's state (this instance's part of it).
    pub user: Box<dyn ErasedState>,
    /// Data messages emitted per output edge in the current epoch.
    pub tally: Vec<u64>,
    /// Its watermark and the timers of its keys.
    pub clock: EventClock,
}

/// A piece of an instance in transit between shards.
pub(crate) struct Part {
    user: Box<dyn ErasedState>,
    tally: Vec<u64>,
    clock: ClockPart,
}

impl Instance {
    pub(crate) fn new(user: Box<dyn ErasedState>, outs: usize) -> Self {
        Instance {
            user,
            tally: vec![0; outs],
            clock: EventClock::default(),
        }
    }
}

impl PartialState for Instance {
    type Part = Part;

    fn take_partitions(&mut self, parts: PartitionSet) -> Part {
        // Handing partitions over moves state, not emissions.
        Part {
            user: self.user.take_partitions(parts),
            tally: vec![0; self.tally.len()],
            clock: self.clock.take_partitions(parts),
        }
    }

    fn take_all(&mut self) -> Part {
        let zeros = vec![0; self.tally.len()];
        let tally = std::mem::replace(&mut self.tally, zeros);
        Part {
            user: self.user.take_all(),
            tally,
            clock: self.clock.take_all(),
        }
    }

    fn absorb(&mut self, part: Part) {
        self.user.absorb(part.user);
        self.clock.absorb(part.clock);
        assert_eq!(self.tally.len(), part.tally.len(), "parts of one operator");
        for (mine, theirs) in self.tally.iter_mut().zip(part.tally) {
            *mine += theirs;
        }
    }
}
