//! How the node learns, without locks, that an app has settled: everything
//! a client handed it has been processed, down to the last child message.
//!
//! `undeploy` closes an app and then waits for it to settle before the shards
//! drop its actors; `AppHandle::quiesce` waits the same way. Nothing on the
//! message path may take a lock for this, so the knowledge is spread over
//! counters that each have one writer:
//!
//! - [`Gate`], per app, written by client threads: `submitted` counts client
//!   commands (ingest batches, barriers) accepted into shard inboxes, and
//!   `closed` refuses new ones once undeploy began;
//! - [`ShardCounters`], per app and shard, written only by that shard:
//!   `sent` (messages routed to the app's actors, counted *before* anyone can
//!   see them), `done` (messages processed, counted *after* their outputs were
//!   counted as sent) and `taken` (client commands taken, counted after what
//!   they sent).
//!
//! The app has settled when `taken == submitted` and `sent == done`. One read
//! of the counters is not enough: the reads of different shards happen at
//! different times, and a message can move from a shard not yet read to one
//! already read. Two consecutive reads ("waves") that agree are, as in
//! Mattern's four-counter method: every counter but `submitted` only grows,
//! so a counter read equal twice did not change between the two reads, and a
//! message in flight between the waves would have changed a `sent`, `done` or
//! `taken` (an accepted command stays counted in `submitted` until it is
//! taken; a client only takes back the count of a command it never sent).
//!
//! Orderings: a shard's counter stores are `Release` and the waves read with
//! `Acquire`, so a read that sees a `done` also sees the `sent` that caused
//! it. The gate is a Dekker handshake: a client counts, then checks `closed`;
//! undeploy closes, then reads `submitted`; a `SeqCst` fence between the two
//! halves on each side means at least one of them sees the other (either the
//! client backs out, or the wave counts its command). (The `SeqCst` accesses
//! alone would do in the C++/Rust model; the fences make the handshake hold
//! also in loom's, which treats `SeqCst` accesses as acquire/release and
//! reports the lost count without them.)
//!
//! `loom-tests/tests/quiesce.rs` explores this code with a client racing an
//! undeploy and a command crossing two shards.
//!
//! The same counters bound an app's memory ([`in_flight`]): clients
//! *reserve* the messages a command will become (an ingest batch: its events
//! times the source's out-edges) in the gate before sending it, the shard
//! that takes it counts them `taken_msgs`, and `sent - done` is what the
//! shards hold (mailboxes, rings, spills, lessees). `reserved - taken_msgs +
//! sent - done` is the app's messages in memory; read in the order `done`,
//! `taken_msgs`, `sent`, `reserved`, it is never below the true count at the
//! moment `taken_msgs` was read, because each counter only grows and a
//! message is counted into the next state before it leaves the last
//! (`sent` before `taken_msgs`, `done` after its children's `sent`).

use crate::sync::{fence, AtomicBool, AtomicU64, Ordering};

/// Why [`Gate::enter`] refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed;

/// The client side of an app: accepted commands, and whether it still takes
/// new ones.
#[derive(Debug, Default)]
pub struct Gate {
    submitted: AtomicU64,
    closed: AtomicBool,
    /// Messages reserved for commands sent or about to be (see [`in_flight`]).
    reserved: AtomicU64,
}

impl Gate {
    /// An open gate with nothing submitted.
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Count one command as submitted, unless the app is closed. On `Ok`, the
    /// caller must hand the command to a shard or call [`Gate::undo`].
    pub fn enter(&self) -> Result<(), Closed> {
        self.submitted.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `close`: our count is visible to its wave,
        // or its `closed` is visible to us.
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.undo();
            return Err(Closed);
        }
        Ok(())
    }

    /// Take back the count of a command that was entered but never sent.
    pub fn undo(&self) {
        let before = self.submitted.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "undo without enter");
    }

    /// Refuse every command from now on. Commands already entered stay
    /// counted: wait for them with [`Snapshot::take`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Pairs with the fence in `enter`.
        fence(Ordering::SeqCst);
    }

    /// Whether the app refuses new commands (undeploy began).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn submitted(&self) -> u64 {
        self.submitted.load(Ordering::SeqCst)
    }

    /// Reserve `n` messages for a command about to be sent: call before it
    /// can reach a shard; the shard that takes it counts them taken.
    pub fn reserve(&self, n: u64) {
        self.reserved.fetch_add(n, Ordering::SeqCst);
    }

    /// Give back a reservation whose command was never sent.
    pub fn release(&self, n: u64) {
        let before = self.reserved.fetch_sub(n, Ordering::SeqCst);
        assert!(before >= n, "release of {n} with {before} reserved");
    }
}

/// An upper bound on the messages of the app in memory now: reserved by
/// clients and not yet taken by a shard, plus sent to an actor and not yet
/// processed (see the module comment for why the read order makes it one).
pub fn in_flight(gate: &Gate, shards: &[ShardCounters]) -> u64 {
    let sum = |f: fn(&ShardCounters) -> &AtomicU64| -> u64 {
        shards.iter().map(|c| f(c).load(Ordering::Acquire)).sum()
    };
    let done = sum(|c| &c.done);
    let taken = sum(|c| &c.taken_msgs);
    let sent = sum(|c| &c.sent);
    let reserved = gate.reserved.load(Ordering::SeqCst);
    (reserved.saturating_sub(taken)).saturating_add(sent.saturating_sub(done))
}

/// One shard's counters for one app. Only that shard writes them (a plain
/// load and a `Release` store, no read-modify-write); padded to its own
/// cache lines, since every shard writes its own on every message.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardCounters {
    sent: AtomicU64,
    done: AtomicU64,
    taken: AtomicU64,
    /// Messages reserved by the commands taken (`Gate::reserve`).
    taken_msgs: AtomicU64,
}

/// Add one to a counter that only the calling shard writes.
#[inline]
fn bump(c: &AtomicU64) {
    add(c, 1);
}

/// Add `n` to a counter that only the calling shard writes.
#[inline]
fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Release);
}

impl ShardCounters {
    /// `n` messages (a batch of `n`, or one) are about to be routed to one
    /// of the app's actors: call before they can reach any other shard.
    #[inline]
    pub fn count_sent(&self, n: u64) {
        add(&self.sent, n);
    }

    /// `n` messages were processed: call after their outputs were counted
    /// sent.
    #[inline]
    pub fn count_done(&self, n: u64) {
        add(&self.done, n);
    }

    /// A client command was taken: call after what it sent was counted.
    #[inline]
    pub fn count_taken(&self) {
        bump(&self.taken);
    }

    /// The command taken had reserved `n` messages: call after they were
    /// counted sent.
    #[inline]
    pub fn count_taken_msgs(&self, n: u64) {
        add(&self.taken_msgs, n);
    }
}

/// One wave: the gate's count, then every shard's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Client commands accepted into shard inboxes.
    pub submitted: u64,
    /// Of those, taken by their shards (summed over shards).
    pub taken: u64,
    /// Messages routed to the app's actors (summed over shards).
    pub sent: u64,
    /// Of those, processed (summed over shards).
    pub done: u64,
}

impl Snapshot {
    /// Read the counters once.
    pub fn take(gate: &Gate, shards: &[ShardCounters]) -> Snapshot {
        let submitted = gate.submitted();
        let (mut taken, mut sent, mut done) = (0, 0, 0);
        for c in shards {
            taken += c.taken.load(Ordering::Acquire);
            sent += c.sent.load(Ordering::Acquire);
            done += c.done.load(Ordering::Acquire);
        }
        Snapshot {
            submitted,
            taken,
            sent,
            done,
        }
    }

    /// Every accepted command taken and every message sent processed, as of
    /// this wave alone (necessary, not sufficient: see [`Snapshot::settled`]).
    pub fn balanced(&self) -> bool {
        self.taken == self.submitted && self.sent == self.done
    }

    /// The app had settled when `self` was read if `self` is balanced and a
    /// later wave, `next`, read the very same counts.
    pub fn settled(&self, next: &Snapshot) -> bool {
        self.balanced() && self == next
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_closed_gate_refuses_and_keeps_no_count() {
        let g = Gate::new();
        assert_eq!(g.enter(), Ok(()));
        g.close();
        assert_eq!(g.enter(), Err(Closed));
        assert_eq!(g.submitted(), 1);
        g.undo();
        assert_eq!(g.submitted(), 0);
    }

    #[test]
    fn settles_only_when_balanced_and_stable() {
        let g = Gate::new();
        let shards: Vec<ShardCounters> = (0..2).map(|_| ShardCounters::default()).collect();
        let s0 = Snapshot::take(&g, &shards);
        assert!(s0.settled(&Snapshot::take(&g, &shards)));

        // A command accepted but not yet taken.
        g.enter().expect("open");
        let s1 = Snapshot::take(&g, &shards);
        assert!(!s1.balanced());
        // Taken by shard 0, which sends one message to shard 1.
        shards[0].count_sent(1);
        shards[0].count_taken();
        let s2 = Snapshot::take(&g, &shards);
        assert!(!s2.balanced(), "a message is in flight");
        shards[1].count_done(1);
        let s3 = Snapshot::take(&g, &shards);
        assert!(s3.balanced());
        assert!(!s2.settled(&s3), "the waves differ");
        assert!(s3.settled(&Snapshot::take(&g, &shards)));
    }

    #[test]
    fn in_flight_counts_reserved_then_sent_until_done() {
        let g = Gate::new();
        let shards: Vec<ShardCounters> = (0..2).map(|_| ShardCounters::default()).collect();
        assert_eq!(in_flight(&g, &shards), 0);
        // A batch of 3 events into a source with 2 out-edges.
        g.reserve(6);
        assert_eq!(in_flight(&g, &shards), 6);
        // Shard 0 takes it: 6 messages sent, then counted taken.
        (0..6).for_each(|_| shards[0].count_sent(1));
        assert_eq!(in_flight(&g, &shards), 12, "counted twice, never less");
        shards[0].count_taken_msgs(6);
        assert_eq!(in_flight(&g, &shards), 6);
        // Shard 1 runs 4 of them; each of 2 emits one child.
        (0..2).for_each(|_| shards[1].count_sent(1));
        (0..4).for_each(|_| shards[1].count_done(1));
        assert_eq!(in_flight(&g, &shards), 4);
        // A reservation given back.
        g.reserve(5);
        g.release(5);
        assert_eq!(in_flight(&g, &shards), 4);
        (0..4).for_each(|_| shards[1].count_done(1));
        assert_eq!(in_flight(&g, &shards), 0);
    }
}
