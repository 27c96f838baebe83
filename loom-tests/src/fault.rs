//! Deliberate bugs the harness can inject, so each model can show that its
//! assertions catch a broken protocol driver (`#[should_panic]` tests).
//!
//! Every fault lives in the harness (the transport, the test state, the
//! driver), never in the engine: the engine's own code is mutated only in a
//! scratch copy, by `tools/loom-mutants.sh` (see the crate docs).

/// Which deliberate bug, if any, a model runs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// A correct harness.
    #[default]
    None,
    /// The mesh lets a `Block` or `Revoke` overtake the deliveries queued
    /// before it on the same channel (the channel is not FIFO).
    ControlOvertakesData,
    /// The mesh swaps a delivery with the delivery queued just before it, for
    /// the same lessee (the channel is not FIFO for data).
    ReorderDeliveries,
    /// The mesh delivers the first `Deliver` it carries twice.
    DuplicateDelivery,
    /// `PartialState::absorb` loses the newest id of every part it folds in.
    LossyAbsorb,
    /// The lessor's shard reactivates a dormant actor as a fresh lessor,
    /// forgetting what deactivation kept (state, lease counter).
    ForgetDormant,
}
