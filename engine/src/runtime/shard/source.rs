//! The sources homed on a shard: an ingest batch becomes messages (header
//! stamped with ingress time, sequence, epoch, and the policy's deadline and
//! priority), sent to every operator the source feeds; a barrier becomes a
//! critical message on every output edge, announcing how many data messages
//! the source sent on it during the closing epoch.

use super::fx::send_input;
use super::Shard;
use crate::model::{ActorId, AnyBox, AppId, Barrier, Header, Kind, Message, OperatorId, Payload};
use crate::protocol::CriticalMark;

impl Shard {
    /// An ingest batch for `source` of `app`, handed over at `at_ns`.
    pub(super) fn ingest(
        &mut self,
        app: AppId,
        source: OperatorId,
        at_ns: u64,
        events: Vec<(u64, AnyBox)>,
    ) {
        let Some(plan) = self
            .apps
            .get(&app)
            .cloned()
            .filter(|p| p.failure().is_none())
        else {
            self.stats.dropped += events.len() as u64;
            return;
        };
        let (Some(node), Some(src)) = (plan.node(source), self.sources.get_mut(&(app, source)))
        else {
            self.stats.dropped += events.len() as u64;
            return;
        };
        let cloner = node.source_clone.clone();
        let now = at_ns;
        let source_view = plan.op_view(source);
        for (key, value) in events {
            src.seq += 1;
            let mut base = Header {
                actor: ActorId { app, op: source },
                edge: 0,
                kind: Kind::User,
                critical: None,
                epoch: src.epoch,
                ingress_ns: now,
                deadline_ns: now.saturating_add(plan.slo_ns),
                priority: 0,
                seq: src.seq,
                enqueued_ns: now,
            };
            self.env.policy.on_ingress(&source_view, &mut base);
            let mut value = Some(value);
            for (i, &(op, edge)) in node.outs.iter().enumerate() {
                let payload = if i + 1 == node.outs.len() {
                    value.take().expect("moved once, on the last edge")
                } else {
                    let v = value.as_ref().expect("present until the last edge");
                    (cloner.as_ref().expect("sources have a cloner"))(v)
                };
                src.tally[i] += 1;
                let header = Header {
                    actor: ActorId { app, op },
                    edge,
                    ..base
                };
                send_input(
                    self.env.id,
                    &plan,
                    &mut self.env.outbox,
                    Message {
                        header,
                        key,
                        payload: Payload::Data(payload),
                    },
                );
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
