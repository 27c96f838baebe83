//! What crosses the mesh between shards: an input for an actor's lessor, or
//! a protocol wire between a lessor and a lessee. Plain owned data (`Send`).

use super::instance::Part;
use crate::model::{ActorId, Message};
use crate::protocol::Wire;

/// What crosses the mesh between shards.
pub(crate) enum Packet {
    /// A message for the lessor of `msg.header.actor`.
    Input(Message),
    /// A wire for a lessee of `actor` (the lease is in the wire).
    ToLessee {
        actor: ActorId,
        wire: Wire<Message, Part>,
    },
    /// A wire for the lessor of `actor`.
    ToLessor {
        actor: ActorId,
        wire: Wire<Message, Part>,
    },
}
