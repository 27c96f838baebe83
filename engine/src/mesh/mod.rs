//! The shard mesh: how shards reach each other without sharing anything but
//! rings.
//!
//! - [`ring`]: the link, a bounded SPSC ring per ordered pair of shards;
//! - [`doorbell`]: waking a parked shard, and only a parked one (the park
//!   handshake is loom-modelled);
//! - `outbox`: a shard's sending side, keeping each link FIFO when a ring is
//!   full;
//! - [`Mesh::full`]: the full mesh of `n` shards, every shard's ends in one
//!   value, as glommio's `channel_mesh` makes the mesh a type.
//!
//! The mesh is sans-IO but for the doorbell's socket: it carries packets of
//! any type `P` and knows nothing of what they mean. It imports only `sync`,
//! the protocol's `ShardId` and `limits`.

pub mod doorbell;
#[cfg(feature = "runtime")]
mod outbox;
pub mod ring;

#[cfg(feature = "runtime")]
pub(crate) use full::{Mesh, MeshEnds};
#[cfg(feature = "runtime")]
pub(crate) use outbox::Outbox;

#[cfg(feature = "runtime")]
mod full {
    use std::sync::Arc;

    use super::doorbell::{Doorbell, DoorbellWaiter};
    use super::outbox::Outbox;
    use super::ring::{ring, Consumer};
    use crate::protocol::ShardId;

    /// One shard's ends of the full mesh (all `Send`: they travel to the
    /// shard's thread).
    pub(crate) struct MeshEnds<P> {
        /// The ring from each peer, with the peer's id.
        pub inbound: Vec<(ShardId, Consumer<P>)>,
        /// The rings to every peer, and their doorbells.
        pub outbox: Outbox<P>,
        /// This shard's side of its own doorbell.
        pub waiter: DoorbellWaiter,
    }

    /// A full mesh of `n` shards: `ends[i]` is shard `i`'s, `bells[i]` rings
    /// shard `i` (for clients, which send commands rather than packets).
    pub(crate) struct Mesh<P> {
        pub bells: Vec<Arc<Doorbell>>,
        pub ends: Vec<MeshEnds<P>>,
    }

    impl<P> Mesh<P> {
        /// Rings of `capacity` packets between every ordered pair of `n`
        /// shards, and a doorbell per shard.
        pub(crate) fn full(n: usize, capacity: usize) -> std::io::Result<Mesh<P>> {
            assert!(n > 0 && n <= crate::limits::MAX_SHARDS, "{n} shards");
            let mut bells = Vec::with_capacity(n);
            let mut waiters = Vec::with_capacity(n);
            for _ in 0..n {
                let (bell, waiter) = Doorbell::new()?;
                bells.push(bell);
                waiters.push(waiter);
            }
            // outbound[i][j] feeds inbound[j] from i.
            let mut outbound: Vec<Vec<Option<_>>> =
                (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
            let mut inbound: Vec<Vec<(ShardId, Consumer<P>)>> =
                (0..n).map(|_| Vec::new()).collect();
            for (i, row) in outbound.iter_mut().enumerate() {
                for (j, link) in row.iter_mut().enumerate() {
                    if i != j {
                        let (p, c) = ring(capacity);
                        *link = Some(p);
                        inbound[j].push((i as ShardId, c));
                    }
                }
            }
            let ends = waiters
                .into_iter()
                .zip(outbound.into_iter().zip(inbound))
                .enumerate()
                .map(|(i, (waiter, (out, inbound)))| MeshEnds {
                    inbound,
                    outbox: Outbox::new(i as ShardId, out, bells.clone()),
                    waiter,
                })
                .collect();
            Ok(Mesh { bells, ends })
        }
    }
}
