//! The sources homed on a shard: an ingest batch becomes messages (header
//! stamped with ingress time, sequence, epoch, and the policy's deadline and
//! priority), sent to every operator the source feeds: one per event for a
//! single event or logged input, one per `BATCH_EVENTS` events for a
//! client's batch (one header, one policy stamp, one box per batch); a barrier becomes a
//! critical message on every output edge, announcing how many data messages
//! the source sent on it during the closing epoch.
//!
//! A source on event time also makes watermarks: the latest event time it
//! sent less its out-of-orderness (or a client's watermark, the higher),
//! sent as a mark on every out-edge after the events before it, at most
//! once per period (housekeeping sends one the period held back); while
//! it is idle its marks say so (downstream leaves it out of the minimum).

use super::fx::{send_input, send_marks};
use super::slots::SourceClock;
use super::Shard;
use crate::model::{ActorId, AppId, Barrier, Header, Kind, Message, OperatorId, Payload};
use crate::plan::{Plan, SourceTime};
use crate::protocol::{CriticalMark, EdgeId, Instance, Time, WatermarkMark};
use crate::runtime::command::{Events, Incoming};
use crate::sched::policy::Policy;

impl Shard {
    /// An ingest batch for `source` of `app`, handed over at `at_ns`.
    pub(super) fn ingest(&mut self, app: AppId, source: OperatorId, at_ns: u64, events: Events) {
        let plan = self.apps.get(&app).cloned();
        let Some(plan) = plan.filter(|p| p.failure().is_none()) else {
            self.stats.dropped += events.len() as u64;
            return;
        };
        let Some(src) = self.sources.get(&(app, source)) else {
            self.stats.dropped += events.len() as u64;
            return;
        };
        let Some(rebatch) = plan.node(source).and_then(|n| n.source_rebatch) else {
            self.stats.dropped += events.len() as u64;
            return;
        };
        let items: Vec<(u64, Payload)> = match events.incoming(src.seq + 1, rebatch) {
            Incoming::Singles(events) => events
                .into_iter()
                .map(|(key, v)| (key, Payload::Data(v)))
                .collect(),
            Incoming::Batches(batches) => batches
                .into_iter()
                .map(|b| (0, Payload::Batch(b)))
                .collect(),
        };
        self.send_from_source(&plan, source, at_ns, items);
        self.source_mark(&plan, source, false);
    }

    /// A client's watermark for `source`: sent at once if it raises the
    /// source's watermark.
    pub(super) fn client_watermark(&mut self, app: AppId, source: OperatorId, time: Time) {
        let Some(plan) = self.apps.get(&app).cloned() else {
            return;
        };
        if let Some(c) = self
            .sources
            .get_mut(&(app, source))
            .and_then(|s| s.clock.as_mut())
        {
            c.client = c.client.max(time);
        }
        self.source_mark(&plan, source, true);
    }

    /// Every source on event time: idle after its quiet spell, and the
    /// watermark a period held back. Returns the marks sent.
    pub(super) fn source_clocks(&mut self) -> usize {
        let now = self.env.clock.now_ns();
        let mut due = Vec::new();
        for (&(app, op), s) in self.sources.iter_mut() {
            let Some(c) = s.clock.as_mut() else { continue };
            let Some(plan) = self.apps.get(&app) else {
                continue;
            };
            let Some(t) = plan.node(op).and_then(|n| n.source_time.as_ref()) else {
                continue;
            };
            let quiet = now.saturating_sub(c.last_event_ns);
            if t.idle_ns > 0 && !c.idle && c.marks > 0 && quiet >= t.idle_ns {
                c.idle = true;
            }
            if target(c, t) != c.sent {
                due.push((plan.clone(), op));
            }
        }
        due.into_iter()
            .filter(|(plan, op)| self.source_mark(plan, *op, false))
            .count()
    }

    /// Send `source`'s watermark if it changed and its period allows (or
    /// `now`: a client's). Returns whether it sent one.
    fn source_mark(&mut self, plan: &Plan, source: OperatorId, now: bool) -> bool {
        let Some(t) = plan.node(source).and_then(|n| n.source_time.as_ref()) else {
            return false;
        };
        let clock_ns = self.env.clock.now_ns();
        let Some(c) = self
            .sources
            .get_mut(&(plan.id, source))
            .and_then(|s| s.clock.as_mut())
        else {
            return false;
        };
        let (time, idle) = target(c, t);
        let early = clock_ns.saturating_sub(c.last_mark_ns) < t.period_ns && c.marks > 0;
        if (time, idle) == c.sent || (early && !now) {
            return false;
        }
        c.sent = (time, idle);
        c.marks += 1;
        c.last_mark_ns = clock_ns;
        let mark = WatermarkMark {
            from: Instance::Home,
            seq: c.marks,
            time,
            idle,
            roster: Vec::new(),
        };
        send_marks(self.env.id, plan, &mut self.env.outbox, source, &mark);
        true
    }

    /// Each item (one event, or a batch of them) as one message on every
    /// out-edge of the source: one header and one policy stamp per item.
    fn send_from_source(
        &mut self,
        plan: &Plan,
        source: OperatorId,
        at_ns: u64,
        items: Vec<(u64, Payload)>,
    ) {
        let node = plan
            .node(source)
            .expect("an ingest names a source of its app");
        let src = self.sources.get_mut(&(plan.id, source));
        let src = src.expect("`ingest` found the source");
        let cloner = node.source_clone.as_ref().expect("sources have a cloner");
        let copy = |p: &Payload| match p {
            Payload::Data(v) => Payload::Data(cloner(v)),
            Payload::Batch(b) => Payload::Batch(b.clone_batch()),
            Payload::Barrier(_) | Payload::Mark(_) => unreachable!("a source's items are data"),
        };
        let outs = node.outs.len();
        if let (Some(c), Some(t)) = (src.clock.as_mut(), &node.source_time) {
            saw_events(c, t, &items, self.env.clock.now_ns());
        }
        for (key, payload) in items {
            let (first, n) = match &payload {
                Payload::Batch(b) => (b.first_seq(), b.len() as u64),
                _ => (src.seq + 1, 1),
            };
            assert_eq!(first, src.seq + 1, "batches are cut in order");
            let base = stamp(&mut *self.env.policy, plan, source, src.epoch, at_ns, first);
            src.seq += n;
            let mut payload = Some(payload);
            for (i, &to) in node.outs.iter().enumerate() {
                let payload = if i + 1 == outs {
                    payload.take().expect("moved once, on the last edge")
                } else {
                    copy(payload.as_ref().expect("present until the last edge"))
                };
                src.tally[i] += n;
                let msg = Message {
                    header: on_edge(base, to),
                    key,
                    payload,
                };
                send_input(self.env.id, plan, &mut self.env.outbox, msg);
            }
        }
    }

    /// Barrier `barrier` at `source` of `app`: the next epoch begins.
    pub(super) fn inject_barrier(&mut self, app: AppId, source: OperatorId, barrier: Barrier) {
        let Some(plan) = self.apps.get(&app).cloned() else {
            return;
        };
        let (Some(node), Some(src)) = (plan.node(source), self.sources.get_mut(&(app, source)))
        else {
            return;
        };
        // Not an `assert!`: after a barrier that reached only some sources
        // (a shard gone mid-injection), the next one skips an id here.
        debug_assert_eq!(
            barrier.id,
            src.epoch + 1,
            "barriers reach a source in order"
        );
        let now = self.env.clock.now_ns();
        for (i, &(op, edge)) in node.outs.iter().enumerate() {
            let header = Header {
                actor: ActorId { app, op },
                edge,
                kind: Kind::Control,
                critical: Some(CriticalMark {
                    barrier: barrier.id,
                    sent: std::mem::take(&mut src.tally[i]),
                }),
                epoch: barrier.id - 1,
                ingress_ns: now,
                deadline_ns: now.saturating_add(plan.slo_ns),
                priority: 0,
                seq: src.seq,
                enqueued_ns: now,
            };
            send_input(
                self.env.id,
                &plan,
                &mut self.env.outbox,
                Message {
                    header,
                    key: 0,
                    payload: Payload::Barrier(barrier),
                },
            );
        }
        src.epoch = barrier.id;
    }
}

/// A source's watermark now, and whether it is idle: the latest event
/// time less the out-of-orderness, or the client's if higher (0: none).
fn target(c: &SourceClock, t: &SourceTime) -> (Time, bool) {
    let time = c.latest.saturating_sub(t.out_of_order).max(c.client);
    (time, c.idle)
}

/// Events came: the latest event time moves, and the source is not idle.
fn saw_events(c: &mut SourceClock, t: &SourceTime, items: &[(u64, Payload)], now: u64) {
    for (_, p) in items {
        if let Some(latest) = (t.latest)(p) {
            c.latest = c.latest.max(latest);
        }
    }
    c.last_event_ns = now;
    c.idle = false;
}

/// The header of an event (or a batch) entering `source` at `at_ns`, with
/// the policy's deadline and priority.
fn stamp(
    policy: &mut dyn Policy,
    plan: &Plan,
    source: OperatorId,
    epoch: u64,
    at_ns: u64,
    seq: u64,
) -> Header {
    let mut base = Header {
        actor: ActorId {
            app: plan.id,
            op: source,
        },
        edge: 0,
        kind: Kind::User,
        critical: None,
        epoch,
        ingress_ns: at_ns,
        deadline_ns: at_ns.saturating_add(plan.slo_ns),
        priority: 0,
        seq,
        enqueued_ns: at_ns,
    };
    policy.on_ingress(&plan.op_view(source), &mut base);
    base
}

/// `base` addressed to operator `op`'s input edge `edge`.
fn on_edge(base: Header, (op, edge): (OperatorId, EdgeId)) -> Header {
    Header {
        actor: ActorId {
            app: base.actor.app,
            op,
        },
        edge,
        ..base
    }
}
