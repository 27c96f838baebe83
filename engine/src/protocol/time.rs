//! Event time in the protocol: watermark marks on an actor's input edges,
//! combined into the actor's input watermark, and the ticks that carry
//! each advance of it through the actor's instances in band.
//!
//! # How a watermark travels
//! Every instance of an upstream operator (its lessor, `Instance::Home`,
//! and each lessee, `Instance::Lease`) sends, on each out-edge, a
//! [`WatermarkMark`] after the data it sent before it, on the same FIFO
//! link as that data. The `k`-th mark of every instance carries the same
//! `seq` and `time` (they are copies of one tick of the upstream actor);
//! the home instance's mark also names the leases that got that tick (its
//! `roster`). So the downstream lessor knows that everything the upstream
//! actor sent before its `k`-th watermark has arrived once it holds the
//! home's mark `k` and mark `k` (or later) of every lease in its roster:
//! the edge's watermark is then `time` ([`EdgeClock`]). A lease being
//! revoked when the tick was made is in the roster without the tick (it
//! may still send what it ran before its revoke), and so is, once more, a
//! lease that went away since the last tick (its last outputs may still
//! be on their way, on a link the home's marks do not share); a lease
//! sends its last mark, of seq [`RETIRED`], after its last outputs.
//!
//! An actor's input watermark is the minimum over its edges, never moving
//! back ([`InputClock`]); each advance becomes a [`Tick`] that the lessor
//! puts in order among the messages it routes: into its own mailbox and,
//! on the same links as their deliveries, to every active lessee, so every
//! instance runs a tick after exactly the messages that arrived before it
//! (see `Lessor::on_watermark`).

use std::collections::{BTreeMap, VecDeque};

use super::LeaseId;

/// Event time, in the app's unit (the engine only orders it). `0` is "no
/// watermark yet"; `Time::MAX` is "this input is done".
pub type Time = u64;

/// The seq of a lease's last mark: it sends nothing more on this edge.
pub const RETIRED: u64 = u64::MAX;

/// Which instance of an actor sent a mark or runs a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Instance {
    /// The lessor, on the actor's home shard.
    Home,
    /// A lessee.
    Lease(LeaseId),
}

/// One advance of an actor's input watermark: the `seq`-th (from 1), to
/// `time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// Counts the actor's ticks, from 1.
    pub seq: u64,
    /// The input watermark from now on.
    pub time: Time,
    /// Every input is idle (see [`WatermarkMark::idle`]): `time` is the
    /// highest of their watermarks, and the actor's outputs are idle too.
    pub idle: bool,
    /// The lessor's epoch when it sent the tick out: the epoch of the
    /// outputs its timers emit. (An instance that consolidated for the
    /// barrier in progress holds no state and no timers, so a tick it
    /// runs before the resume emits nothing of the closing epoch.)
    pub epoch: super::Epoch,
}

/// A watermark as it arrives on an edge from one upstream instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatermarkMark {
    /// The sending instance.
    pub from: Instance,
    /// The upstream actor's tick this mark copies (sources count their
    /// own, from 1).
    pub seq: u64,
    /// The watermark: the sender's later data on this edge is of later
    /// event time (or late).
    pub time: Time,
    /// The sender is idle (a source quiet for its idle time, or an
    /// operator all of whose inputs are): the receiver leaves this edge out
    /// of its minimum until a mark says otherwise.
    pub idle: bool,
    /// From `Home` only: the leases that got tick `seq` and send mark
    /// `seq` too. Empty from a lease and from an actor without lessees.
    pub roster: Vec<LeaseId>,
}

/// One input edge's watermark, from the marks of its upstream instances.
#[derive(Debug, Default)]
pub struct EdgeClock {
    /// The home's marks whose roster has not caught up yet, in order:
    /// seq, time, idle, roster.
    waiting: VecDeque<(u64, Time, bool, Vec<LeaseId>)>,
    /// Each lease heard from or named: its latest mark's seq, and whether
    /// a completed roster named it.
    leases: BTreeMap<LeaseId, (u64, bool)>,
    /// The home's latest mark's seq (marks come in order).
    home_seq: u64,
    /// The edge's watermark.
    time: Time,
    /// Whether the edge's sender is idle (its latest completed mark's).
    idle: bool,
}

impl EdgeClock {
    /// The edge's watermark now.
    pub fn time(&self) -> Time {
        self.time
    }

    /// Whether its sender is idle.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// Whether marks wait for lessees' marks (then the actor is not idle).
    pub fn is_settled(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Take a mark; returns whether the edge's watermark moved or its
    /// sender's idleness changed.
    pub fn on_mark(&mut self, mark: WatermarkMark) -> bool {
        match mark.from {
            Instance::Home => {
                assert!(
                    mark.seq > self.home_seq,
                    "home marks in order: {} after {}",
                    mark.seq,
                    self.home_seq
                );
                self.home_seq = mark.seq;
                self.waiting
                    .push_back((mark.seq, mark.time, mark.idle, mark.roster));
            }
            Instance::Lease(l) => {
                assert!(mark.roster.is_empty(), "a lease's mark has no roster");
                let (seen, _) = self.leases.entry(l).or_default();
                assert!(mark.seq > *seen, "a lease's marks in order");
                *seen = mark.seq;
            }
        }
        self.advance()
    }

    /// Complete every waiting home mark whose roster caught up.
    fn advance(&mut self) -> bool {
        let before = (self.time, self.idle);
        while let Some((seq, time, idle, roster)) = self.waiting.front() {
            let caught_up = roster
                .iter()
                .all(|l| self.leases.get(l).is_some_and(|(s, _)| s >= seq));
            if !caught_up {
                break;
            }
            let (time, idle) = (*time, *idle);
            let (_, _, _, roster) = self.waiting.pop_front().expect("checked above");
            self.time = self.time.max(time);
            self.idle = idle;
            // Rosters name a lease over one run of ticks: one that a
            // completed roster named and this one leaves out is done with
            // (unless a waiting mark names it still). One never named yet
            // is new: its marks (even its retirement) may come ahead of
            // the home's first mark that names it.
            let waiting = &self.waiting;
            self.leases.retain(|l, (_, named)| {
                if roster.contains(l) {
                    *named = true;
                }
                roster.contains(l) || !*named || waiting.iter().any(|(.., r)| r.contains(l))
            });
        }
        (self.time, self.idle) != before
    }
}

/// An actor's input watermark over its edges, and the ticks of its
/// advances.
///
/// The watermark is the minimum over the edges whose sender is not idle;
/// while every sender is idle, the highest of their watermarks (not the
/// end of time: what comes after the quiet is not late for it), and the
/// actor is idle too. It never moves back.
#[derive(Debug)]
pub struct InputClock {
    edges: Vec<EdgeClock>,
    time: Time,
    idle: bool,
    ticks: u64,
}

impl InputClock {
    /// A clock of `inputs` edges, none heard from.
    pub fn new(inputs: u16) -> Self {
        InputClock {
            edges: (0..inputs).map(|_| EdgeClock::default()).collect(),
            time: 0,
            idle: false,
            ticks: 0,
        }
    }

    /// The input watermark: the minimum over the edges not idle (the
    /// highest while all are), never moving back.
    pub fn time(&self) -> Time {
        self.time
    }

    /// Ticks made so far (the last one's seq).
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Whether no edge waits for lessees' marks.
    pub fn is_settled(&self) -> bool {
        self.edges.iter().all(EdgeClock::is_settled)
    }

    /// Take a mark on `edge`; the tick of the advance (or of a change of
    /// idleness), if there was one.
    pub fn on_mark(&mut self, edge: u16, mark: WatermarkMark) -> Option<Tick> {
        let e = &mut self.edges[edge as usize];
        if !e.on_mark(mark) {
            return None;
        }
        let active = self
            .edges
            .iter()
            .filter(|e| !e.is_idle())
            .map(EdgeClock::time);
        let (time, idle) = match active.min() {
            Some(min) => (min, false),
            None => (
                self.edges.iter().map(EdgeClock::time).max().unwrap_or(0),
                true,
            ),
        };
        let time = time.max(self.time);
        if (time, idle) == (self.time, self.idle) {
            return None;
        }
        (self.time, self.idle) = (time, idle);
        self.ticks += 1;
        Some(Tick {
            seq: self.ticks,
            time,
            idle,
            epoch: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(seq: u64, time: Time, roster: &[u32]) -> WatermarkMark {
        WatermarkMark {
            from: Instance::Home,
            seq,
            time,
            idle: false,
            roster: roster.iter().map(|&l| LeaseId(l)).collect(),
        }
    }

    fn lease(l: u32, seq: u64, time: Time) -> WatermarkMark {
        WatermarkMark {
            from: Instance::Lease(LeaseId(l)),
            seq,
            time,
            idle: false,
            roster: Vec::new(),
        }
    }

    #[test]
    fn an_edge_waits_for_every_lease_of_the_roster() {
        let mut e = EdgeClock::default();
        assert!(!e.on_mark(home(1, 10, &[1, 2])));
        assert!(!e.on_mark(lease(2, 1, 10)));
        assert_eq!(e.time(), 0);
        assert!(e.on_mark(lease(1, 1, 10)));
        assert_eq!(e.time(), 10);
        assert!(e.is_settled());
    }

    #[test]
    fn a_lease_mark_may_come_first_and_a_gone_lease_is_forgotten() {
        let mut e = EdgeClock::default();
        // Lease 3 is new at tick 2; its mark overtakes the home's.
        assert!(!e.on_mark(lease(3, 2, 20)));
        assert!(e.on_mark(home(1, 10, &[])));
        assert_eq!(e.time(), 10);
        assert!(e.on_mark(home(2, 20, &[3])));
        assert_eq!(e.time(), 20);
        // Lease 3 revoked: tick 3 without it.
        assert!(e.on_mark(home(3, 30, &[])));
        assert!(e.leases.is_empty(), "{:?}", e.leases);
    }

    #[test]
    fn a_retirement_ahead_of_the_first_roster_naming_the_lease_is_kept() {
        let mut e = EdgeClock::default();
        // Lease 5 came and went between ticks 1 and 2; its retirement
        // arrives before the home's marks 1 (which omits it) and 2.
        assert!(!e.on_mark(lease(5, RETIRED, 0)));
        assert!(e.on_mark(home(1, 10, &[])));
        assert!(e.on_mark(home(2, 20, &[5])));
        assert_eq!(e.time(), 20);
    }

    #[test]
    fn a_retired_lease_satisfies_the_rosters_that_name_it_then_is_forgotten() {
        let mut e = EdgeClock::default();
        assert!(!e.on_mark(home(1, 10, &[4])));
        assert!(e.on_mark(lease(4, RETIRED, 0)));
        assert_eq!(e.time(), 10);
        // Still named by a mark on its way: it counts as caught up.
        assert!(e.on_mark(home(2, 20, &[4])));
        assert!(e.on_mark(home(3, 30, &[])));
        assert_eq!(e.time(), 30);
        assert!(e.leases.is_empty(), "{:?}", e.leases);
    }

    #[test]
    fn the_input_watermark_is_the_minimum_and_never_moves_back() {
        let mut c = InputClock::new(2);
        assert_eq!(c.on_mark(0, home(1, 50, &[])), None);
        assert_eq!(
            c.on_mark(1, home(1, 30, &[])),
            Some(Tick {
                seq: 1,
                time: 30,
                idle: false,
                epoch: 0
            })
        );
        assert_eq!(
            c.on_mark(1, home(2, 70, &[])),
            Some(Tick {
                seq: 2,
                time: 50,
                idle: false,
                epoch: 0
            })
        );
        // An edge that is done (MAX) leaves the other one in charge.
        assert_eq!(
            c.on_mark(0, home(2, Time::MAX, &[])),
            Some(Tick {
                seq: 3,
                time: 70,
                idle: false,
                epoch: 0
            })
        );
        assert_eq!(c.time(), 70);
    }

    #[test]
    fn idle_edges_are_left_out_and_all_idle_holds_the_highest() {
        let idle = |seq: u64, time: Time| WatermarkMark {
            idle: true,
            ..home(seq, time, &[])
        };
        let mut c = InputClock::new(2);
        assert_eq!(c.on_mark(0, home(1, 50, &[])), None);
        assert_eq!(c.on_mark(1, home(1, 30, &[])).map(|t| t.time), Some(30));
        // Edge 1 goes quiet: edge 0 alone decides.
        let t = c.on_mark(1, idle(2, 30)).expect("a tick");
        assert_eq!((t.time, t.idle), (50, false));
        // Both quiet: the highest, not the end of time, and idle.
        let t = c.on_mark(0, idle(2, 60)).expect("a tick");
        assert_eq!((t.time, t.idle), (60, true));
        // Edge 1 wakes behind: the watermark stays, no longer idle.
        let t = c.on_mark(1, home(3, 40, &[])).expect("a tick");
        assert_eq!((t.time, t.idle), (60, false));
        assert_eq!(c.on_mark(1, home(4, 55, &[])), None);
        // Edge 0 still idle: edge 1 alone moves it on.
        let t = c.on_mark(1, home(5, 80, &[])).expect("a tick");
        assert_eq!((t.time, t.idle), (80, false));
    }
}
