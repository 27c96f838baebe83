//! The loom stand-in for the shard mesh: one inbox per shard behind one loom
//! `Mutex`, a loom `Condvar` per shard to sleep on, and quiescence detection.
//!
//! Why one mutex: every lock is a point where loom may switch threads, which
//! is exactly the freedom the protocol must survive (any arrival order that
//! keeps each channel FIFO), and nothing more: the protocol code between two
//! exchanges touches only shard-local data, so loom has nothing to explore
//! there. One inbox per shard is FIFO per ordered pair of shards (it is even
//! FIFO overall), which is all the protocol asks of the transport; which
//! sender's packet lands first is decided by the order loom runs the senders.
//!
//! A run ends at quiescence: every participant (shard or upstream source) is
//! idle and every inbox is empty. The last one to go idle sees that and stops
//! everybody, so models need no packet counts and cannot hang.
//!
//! The mesh also keeps the trace of the run (what each shard received, in the
//! global order of the locks, and what it did in between), printed when a
//! check fails: that is the failing schedule, in protocol terms.

use std::collections::VecDeque;
use std::fmt;
use std::sync::PoisonError;

use dirigo_engine::protocol::{Epoch, ShardId, Wire};
use loom::sync::{Condvar, Mutex, MutexGuard};

use crate::fault::Fault;
use crate::msg::{Msg, Part};

/// Something a driver asks of the lessor's shard: the upstream's messages and
/// the client's commands. Plain data, so scenarios can be cloned per run.
#[derive(Clone, Debug)]
pub enum Feed {
    /// A message for the actor, from upstream.
    Input(Msg),
    /// Several messages for the actor in one go (a client's ingest batch),
    /// taken in one turn, so they queue up behind each other: at most
    /// [`MAX_BATCH`].
    Batch(Vec<Msg>),
    /// Ask for a lease on this shard (the engine's `Command::Lease`).
    Lease(ShardId),
    /// Revoke the lease on this shard, if any (the engine's `Command::Revoke`).
    Revoke(ShardId),
}

/// What travels through the mesh.
pub enum Packet {
    /// An upstream input or a client command, for the home shard.
    Feed(Feed),
    /// A protocol message between the lessor and one of its lessees.
    Wire(Wire<Msg, Part>),
}

/// A shard's sends and trace events since its last exchange with the mesh:
/// flushed in one go, as the engine flushes its outbox once per turn.
#[derive(Default)]
pub struct Outbox {
    /// Packets for the inbox of the shard they name, in send order.
    pub packets: Vec<(ShardId, Packet)>,
    /// Trace events, appended to the run's trace at the next exchange.
    pub events: Vec<Event>,
}

/// One line of a run's trace.
#[derive(Clone, Debug)]
pub enum Event {
    /// Shard `at` took a packet from its inbox.
    Recv {
        /// The receiving shard.
        at: ShardId,
        /// The packet.
        what: Summary,
    },
    /// Shard `at` took the next item of its own script.
    Script {
        /// The shard whose script it is.
        at: ShardId,
        /// The item.
        what: Summary,
    },
    /// A source put an item into shard 0's inbox.
    Source {
        /// Index of the source in the scenario's `sources`.
        source: usize,
        /// The item.
        what: Summary,
    },
    /// A data message ran on shard `at`.
    Ran {
        /// The shard whose instance (lessor or lessee) ran it.
        at: ShardId,
        /// The message's id.
        id: u64,
    },
    /// The criticals of `barrier` ran, seeing `seen` data messages.
    Critical {
        /// The barrier they close.
        barrier: Epoch,
        /// How many data ids the consolidated state they ran on held.
        seen: usize,
    },
    /// Something a shard did on its own: lease asked, revoke, (de)activation.
    Did {
        /// The shard that did it.
        at: ShardId,
        /// What, as a fixed phrase (`"activated"`, `"asked for lease"`,
        /// `"revoked"`, `"lessee asked to leave"`, `"lessee gone"`,
        /// `"deactivated"`): what [`Event::is_did`] matches.
        what: &'static str,
        /// The lease it concerns, as its number; 0 and meaningless for
        /// activation and deactivation.
        lease: u32,
    },
    /// The sequential drain after the threads joined starts here.
    Drain,
}

impl Event {
    /// What shard took (from its inbox or its script), if this is that.
    fn taken(&self) -> Option<(ShardId, Summary)> {
        match self {
            Event::Recv { at, what } | Event::Script { at, what } => Some((*at, *what)),
            _ => None,
        }
    }

    /// Shard `at` received a protocol message of this kind (`"Block"`, ...).
    pub fn is_wire(&self, at: ShardId, kind: &str) -> bool {
        matches!(self, Event::Recv { at: a, what: Summary::Wire { kind: k, .. } } if *a == at && *k == kind)
    }

    /// Shard `at` received the delivery of data message `id`.
    pub fn is_deliver(&self, at: ShardId, id: u64) -> bool {
        matches!(self, Event::Recv { at: a, what: Summary::Wire { kind: "Deliver", id: Some(i), .. } } if *a == at && *i == id)
    }

    /// The home shard took a critical message.
    pub fn is_critical_input(&self) -> bool {
        matches!(self.taken(), Some((_, Summary::Critical { .. })))
    }

    /// The home shard took the critical message of edge `edge`.
    pub fn is_critical_of(&self, edge: u16) -> bool {
        matches!(self.taken(), Some((_, Summary::Critical { edge: e, .. })) if e == edge)
    }

    /// The home shard took the data message `id`.
    pub fn is_input(&self, id: u64) -> bool {
        match self.taken() {
            Some((_, Summary::Input { id: i })) => i == id,
            Some((_, Summary::Batch { ids, len })) => ids[..len].contains(&id),
            _ => false,
        }
    }

    /// The home shard took a client command to revoke.
    pub fn is_revoke_command(&self) -> bool {
        matches!(self.taken(), Some((_, Summary::Revoke { .. })))
    }

    /// Data message `id` ran on shard `at`.
    pub fn is_ran(&self, at: ShardId, id: u64) -> bool {
        matches!(self, Event::Ran { at: a, id: i } if *a == at && *i == id)
    }

    /// Some data message ran on shard `at`.
    pub fn ran_on(&self, at: ShardId) -> bool {
        matches!(self, Event::Ran { at: a, .. } if *a == at)
    }

    /// The criticals of a barrier ran.
    pub fn is_critical_run(&self) -> bool {
        matches!(self, Event::Critical { .. })
    }

    /// Shard `at` did `what` on its own (see `Event::Did`).
    pub fn is_did(&self, at: ShardId, what: &str) -> bool {
        matches!(self, Event::Did { at: a, what: w, .. } if *a == at && *w == what)
    }
}

/// A packet, in a line of trace.
#[derive(Clone, Copy)]
pub enum Summary {
    /// A data message for the actor ([`Feed::Input`] without a mark).
    Input {
        /// Its id.
        id: u64,
    },
    /// A [`Feed::Batch`] of data messages.
    Batch {
        /// Their ids, in order, in the first `len` slots (the rest is 0).
        ids: [u64; MAX_BATCH],
        /// How many messages the batch carries.
        len: usize,
    },
    /// A critical message for the actor ([`Feed::Input`] with a mark).
    Critical {
        /// The input edge it arrives on.
        edge: u16,
        /// The barrier it closes.
        barrier: Epoch,
    },
    /// The client's command [`Feed::Lease`].
    Lease {
        /// The shard to lease on.
        shard: ShardId,
    },
    /// The client's command [`Feed::Revoke`].
    Revoke {
        /// The shard whose lease to revoke.
        shard: ShardId,
    },
    /// A protocol message ([`Packet::Wire`]).
    Wire {
        /// The name of its [`Wire`] variant (`"Block"`, `"Deliver"`, ...).
        kind: &'static str,
        /// The lease it concerns, as its number.
        lease: u32,
        /// For a `Deliver`, the id of the message delivered.
        id: Option<u64>,
    },
}

impl fmt::Debug for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Summary::Input { id } => write!(f, "input #{id}"),
            Summary::Batch { ids, len } => write!(f, "input batch {:?}", &ids[..*len]),
            Summary::Critical { edge, barrier } => {
                write!(f, "critical of barrier {barrier} on edge {edge}")
            }
            Summary::Lease { shard } => write!(f, "command: lease on shard {shard}"),
            Summary::Revoke { shard } => write!(f, "command: revoke shard {shard}"),
            Summary::Wire { kind, lease, id } => match id {
                Some(id) => write!(f, "{kind}(lease {lease}, #{id})"),
                None => write!(f, "{kind}(lease {lease})"),
            },
        }
    }
}

/// The most messages a [`Feed::Batch`] may carry.
pub const MAX_BATCH: usize = 4;

impl Feed {
    /// The messages this item carries, if any.
    pub fn inputs(&self) -> &[Msg] {
        match self {
            Feed::Input(m) => std::slice::from_ref(m),
            Feed::Batch(ms) => ms,
            Feed::Lease(_) | Feed::Revoke(_) => &[],
        }
    }

    /// This item, as a line of trace. Panics on a batch of more than
    /// [`MAX_BATCH`] messages, or one that carries a critical.
    pub fn summary(&self) -> Summary {
        match self {
            Feed::Batch(ms) => {
                assert!(
                    ms.len() <= MAX_BATCH && ms.iter().all(Msg::is_data),
                    "a batch carries at most {MAX_BATCH} data messages"
                );
                let mut ids = [0; MAX_BATCH];
                for (slot, m) in ids.iter_mut().zip(ms) {
                    *slot = m.id;
                }
                Summary::Batch { ids, len: ms.len() }
            }
            Feed::Input(m) => match m.critical {
                Some(c) => Summary::Critical {
                    edge: m.edge,
                    barrier: c.barrier,
                },
                None => Summary::Input { id: m.id },
            },
            Feed::Lease(shard) => Summary::Lease { shard: *shard },
            Feed::Revoke(shard) => Summary::Revoke { shard: *shard },
        }
    }
}

impl Packet {
    /// This packet, as a line of trace: a feed's own summary, or a protocol
    /// message's kind, lease and delivered id.
    pub fn summary(&self) -> Summary {
        match self {
            Packet::Feed(feed) => feed.summary(),
            Packet::Wire(w) => {
                let (kind, id) = match w {
                    Wire::LeaseRequest { .. } => ("LeaseRequest", None),
                    Wire::Assign { .. } => ("Assign", None),
                    Wire::Deliver { msg, .. } => ("Deliver", Some(msg.id)),
                    Wire::Tick { tick, .. } => ("Tick", Some(tick.seq)),
                    Wire::Block { .. } => ("Block", None),
                    Wire::Revoke { .. } => ("Revoke", None),
                    Wire::Granted { .. } => ("Granted", None),
                    Wire::Refused { .. } => ("Refused", None),
                    Wire::Consolidate { .. } => ("Consolidate", None),
                    Wire::Released { .. } => ("Released", None),
                    Wire::ReleaseRequest { .. } => ("ReleaseRequest", None),
                };
                Summary::Wire {
                    kind,
                    lease: w.lease().0,
                    id,
                }
            }
        }
    }
}

/// What a shard does next, as the mesh tells it.
pub enum Turn {
    /// Handle this packet (then do a unit of local work).
    Packet(Packet),
    /// No packet, but the shard said it has local work: do a unit of it.
    Work,
    /// The whole mesh is quiescent: the run is over.
    Stop,
}

struct Inner {
    inbox: Vec<VecDeque<Packet>>,
    /// Per participant: shards `0..shards`, then sources.
    busy: Vec<bool>,
    quiet: bool,
    duplicated: bool,
    trace: Vec<Event>,
}

/// The transport of one run, shared by the shard and source threads: the
/// inboxes, who is busy, and the trace, behind one loom `Mutex`.
pub struct Mesh {
    inner: Mutex<Inner>,
    /// One per shard: rung when a packet lands in its inbox, and at the end.
    bells: Vec<Condvar>,
    shards: usize,
    fault: Fault,
}

impl Mesh {
    /// A mesh between `shards` shards and `sources` upstream sources, all
    /// busy until they say otherwise; `fault` is how the transport
    /// misbehaves, if the fault is one of the transport's.
    pub fn new(shards: usize, sources: usize, fault: Fault) -> Mesh {
        Mesh {
            inner: Mutex::new(Inner {
                inbox: (0..shards).map(|_| VecDeque::new()).collect(),
                busy: vec![true; shards + sources],
                quiet: false,
                duplicated: false,
                trace: Vec::new(),
            }),
            bells: (0..shards).map(|_| Condvar::new()).collect(),
            shards,
            fault,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means another thread of the model panicked, and loom
        // reports that panic; the data is still fine to look at.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A shard's one synchronisation point per turn: flush its outbox, then
    /// take the next packet from its inbox; with none, go on with local work
    /// if it has some, else sleep until a packet or the end of the run.
    pub fn exchange(&self, me: ShardId, out: &mut Outbox, has_work: bool) -> Turn {
        let me = me as usize;
        let mut g = self.lock();
        g.trace.append(&mut out.events);
        for (to, p) in out.packets.drain(..) {
            self.push(&mut g, to as usize, p);
        }
        loop {
            if let Some(p) = g.inbox[me].pop_front() {
                g.busy[me] = true;
                let what = p.summary();
                g.trace.push(Event::Recv {
                    at: me as ShardId,
                    what,
                });
                return Turn::Packet(p);
            }
            if has_work {
                g.busy[me] = true;
                return Turn::Work;
            }
            if g.quiet {
                return Turn::Stop;
            }
            g.busy[me] = false;
            if self.stop_if_quiescent(&mut g) {
                return Turn::Stop;
            }
            g = self.bells[me]
                .wait(g)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// An upstream source sends one item to shard `to`; `last` marks the end
    /// of its script (the source is idle from then on).
    pub fn source_send(&self, source: usize, to: ShardId, feed: Feed, last: bool) {
        let mut g = self.lock();
        let p = Packet::Feed(feed);
        let what = p.summary();
        g.trace.push(Event::Source { source, what });
        self.push(&mut g, to as usize, p);
        if last {
            g.busy[self.shards + source] = false;
            self.stop_if_quiescent(&mut g);
        }
    }

    /// The trace of the run (call after every thread joined).
    pub fn take_trace(&self) -> Vec<Event> {
        std::mem::take(&mut self.lock().trace)
    }

    fn stop_if_quiescent(&self, g: &mut Inner) -> bool {
        let quiet = !g.quiet && g.busy.iter().all(|b| !b) && g.inbox.iter().all(VecDeque::is_empty);
        if quiet {
            g.quiet = true;
            for bell in &self.bells {
                bell.notify_all();
            }
        }
        quiet
    }

    /// Put a packet into a shard's inbox (FIFO, unless a fault says not).
    fn push(&self, g: &mut Inner, to: usize, p: Packet) {
        let inbox = &mut g.inbox[to];
        match (self.fault, &p) {
            (
                Fault::ControlOvertakesData,
                Packet::Wire(Wire::Block { lease, .. } | Wire::Revoke { lease }),
            ) => {
                let at = inbox.iter().position(
                    |q| matches!(q, Packet::Wire(Wire::Deliver { lease: l, .. }) if l == lease),
                );
                inbox.insert(at.unwrap_or(inbox.len()), p);
            }
            (Fault::ReorderDeliveries, Packet::Wire(Wire::Deliver { lease, .. })) => {
                let swap = matches!(
                    inbox.back(),
                    Some(Packet::Wire(Wire::Deliver { lease: l, .. })) if l == lease
                );
                let at = if swap { inbox.len() - 1 } else { inbox.len() };
                inbox.insert(at, p);
            }
            (Fault::DuplicateDelivery, Packet::Wire(Wire::Deliver { lease, msg }))
                if !g.duplicated =>
            {
                let twin = Packet::Wire(Wire::Deliver {
                    lease: *lease,
                    msg: msg.clone(),
                });
                inbox.push_back(p);
                inbox.push_back(twin);
                g.duplicated = true;
            }
            _ => inbox.push_back(p),
        }
        self.bells[to].notify_one();
    }
}
