//! The built-in policies: `Fifo` (the paper's baseline), `Priority` (static
//! classes), `Edf` (earliest deadline first), `Llf` (least laxity, from the
//! learned per-operator costs) and `Dirigo` (laxity ranking with deadlines
//! carried along the DAG, Cameo-style, plus lease/release decisions from the
//! predicted laxity of the queue).
//!
//! Ranks use times only as differences against the same clock, so they are
//! stable while an instance waits: the laxity `deadline - now - remaining
//! cost` of every waiting message shrinks at the same rate, so ordering by
//! the latest start time `deadline - remaining cost` is the same order.

use std::time::Duration;

use super::{OpView, Policy, QueueView, Rank, Scale, ScaleLimits, ShardLoad};
use crate::model::AppClass;
use crate::model::Header;

/// Index of the least loaded candidate, if the loads differ at all.
fn least_loaded(candidates: &[ShardLoad]) -> Option<usize> {
    let (first, rest) = candidates.split_first()?;
    if rest.iter().all(|c| c.backlog == first.backlog) {
        return None; // all equal: the protocol's round robin spreads better
    }
    candidates
        .iter()
        .enumerate()
        .min_by_key(|(_, c)| c.backlog)
        .map(|(i, _)| i)
}

/// First come, first served across every app on the shard: the rank is the
/// time the message was queued here. `Fifo::fixed()` never scales (static
/// placement, the paper's baseline); `Fifo::scaling()` leases by backlog.
#[derive(Clone, Debug)]
pub struct Fifo {
    scaling: bool,
}

impl Fifo {
    /// FIFO with static placement: no lessee is ever asked for.
    pub fn fixed() -> Fifo {
        Fifo { scaling: false }
    }

    /// FIFO with the backlog scale rule.
    pub fn scaling() -> Fifo {
        Fifo { scaling: true }
    }
}

impl Policy for Fifo {
    fn name(&self) -> &str {
        if self.scaling {
            "fifo+scaling"
        } else {
            "fifo"
        }
    }

    fn rank(&mut self, h: &Header, _op: &OpView<'_>, _now: u64) -> Rank {
        Rank(h.enqueued_ns, 0)
    }

    fn on_backlog(
        &mut self,
        q: &QueueView<'_>,
        _op: &OpView<'_>,
        limits: &ScaleLimits,
        _now: u64,
    ) -> Scale {
        if self.scaling && q.backlog > limits.up_backlog {
            Scale::Lease
        } else {
            Scale::Hold
        }
    }
}

/// Static priority classes: a higher `Header::priority` runs first (by
/// default latency-critical apps get 1, best-effort ones 0), FIFO within a
/// class. Scales by backlog.
#[derive(Clone, Debug, Default)]
pub struct Priority;

impl Policy for Priority {
    fn name(&self) -> &str {
        "priority"
    }

    fn rank(&mut self, h: &Header, _op: &OpView<'_>, _now: u64) -> Rank {
        Rank(u64::from(u8::MAX - h.priority), h.enqueued_ns)
    }
}

/// Earliest deadline first: the rank is the message's end-to-end deadline
/// (stamped at ingress, inherited by every child). Scales by backlog.
#[derive(Clone, Debug, Default)]
pub struct Edf;

impl Policy for Edf {
    fn name(&self) -> &str {
        "edf"
    }

    fn rank(&mut self, h: &Header, _op: &OpView<'_>, _now: u64) -> Rank {
        Rank(h.deadline_ns, h.enqueued_ns)
    }
}

/// Least laxity first: the rank is the latest start time, the deadline
/// minus the learned cost of the path still ahead (this operator's included),
/// so a message with more work left runs earlier. Scales by backlog.
#[derive(Clone, Debug, Default)]
pub struct Llf;

impl Policy for Llf {
    fn name(&self) -> &str {
        "llf"
    }

    fn rank(&mut self, h: &Header, op: &OpView<'_>, _now: u64) -> Rank {
        Rank(op.latest_start(h.deadline_ns), h.enqueued_ns)
    }
}

/// Dirigo's policy.
///
/// - Rank: latency-critical messages by latest start time (deadline minus
///   the learned cost of the path ahead: Cameo's priority), all before
///   best-effort messages, which run FIFO in the gaps.
/// - Deadlines: stamped at ingress from the SLO and carried to every child
///   (the path cost in the rank does the propagation).
/// - Routing (`Mergeable` actors with lessees): the instance on the least
///   loaded shard.
/// - Scaling, latency-critical apps: when a message is queued, predict when
///   the queue drains (`backlog × cost / instances`); lease a lessee when
///   that eats more than `headroom` of the slack the SLO leaves after the
///   path's cost, or when the oldest message can no longer start in time.
///   Best-effort apps lease only on the backlog rule, on shards that are
///   idle enough to accept.
/// - Release: a lessee idle for twice the SLO (at least 1 ms, at most the
///   node's `lessee_idle`) goes home, so cores come back soon after a burst.
#[derive(Clone, Debug)]
pub struct Dirigo {
    /// Share of the slack the predicted drain time may take before a lease.
    pub headroom: f64,
}

impl Default for Dirigo {
    fn default() -> Self {
        Dirigo { headroom: 0.5 }
    }
}

impl Dirigo {
    /// Whether the queue, drained by `instances` instances, leaves its
    /// messages short of laxity.
    fn laxity_short(&self, q: &QueueView<'_>, op: &OpView<'_>, now: u64) -> bool {
        let instances = q.lessees as u64 + 1;
        let drain = (q.backlog as u64).saturating_mul(op.cost_ns) / instances;
        let slack = op.slo_ns.saturating_sub(op.path_cost_ns);
        let predicted_short = drain as f64 > slack as f64 * self.headroom;
        let head_late = q
            .head
            .is_some_and(|h| op.latest_start(h.deadline_ns) < now.saturating_add(drain));
        predicted_short || head_late
    }
}

impl Policy for Dirigo {
    fn name(&self) -> &str {
        "dirigo"
    }

    fn route(&mut self, _h: &Header, _op: &OpView<'_>, candidates: &[ShardLoad]) -> Option<usize> {
        least_loaded(candidates)
    }

    fn rank(&mut self, h: &Header, op: &OpView<'_>, _now: u64) -> Rank {
        match op.class {
            AppClass::LatencyCritical => Rank(0, op.latest_start(h.deadline_ns)),
            AppClass::BestEffort => Rank(1, h.enqueued_ns),
        }
    }

    fn on_backlog(
        &mut self,
        q: &QueueView<'_>,
        op: &OpView<'_>,
        limits: &ScaleLimits,
        now: u64,
    ) -> Scale {
        let short = match op.class {
            // Cost unknown yet: nothing to predict from.
            AppClass::LatencyCritical if op.cost_ns > 0 => self.laxity_short(q, op, now),
            AppClass::LatencyCritical => false,
            AppClass::BestEffort => q.backlog > limits.up_backlog,
        };
        if short {
            Scale::Lease
        } else {
            Scale::Hold
        }
    }

    fn release_after(&mut self, op: &OpView<'_>, limits: &ScaleLimits) -> Duration {
        let floor = Duration::from_millis(1);
        let want = Duration::from_nanos(op.slo_ns.saturating_mul(2)).max(floor);
        want.min(limits.lessee_idle.max(floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActorId, AppId, Kind, OperatorId};
    use crate::protocol::Strategy;

    fn op(class: AppClass, cost_ns: u64, path_cost_ns: u64) -> OpView<'static> {
        OpView {
            actor: ActorId {
                app: AppId(1),
                op: OperatorId(1),
            },
            app: "app",
            op: "op",
            class,
            slo_ns: 10_000_000,
            strategy: Strategy::Mergeable,
            cost_ns,
            path_cost_ns,
        }
    }

    fn header(ingress_ns: u64, enqueued_ns: u64) -> Header {
        Header {
            actor: ActorId {
                app: AppId(1),
                op: OperatorId(1),
            },
            edge: 0,
            kind: Kind::User,
            critical: None,
            epoch: 0,
            ingress_ns,
            deadline_ns: 0,
            priority: 0,
            seq: 0,
            enqueued_ns,
        }
    }

    fn stamped(p: &mut dyn Policy, o: &OpView<'_>, ingress_ns: u64, enqueued_ns: u64) -> Header {
        let mut h = header(ingress_ns, enqueued_ns);
        p.on_ingress(o, &mut h);
        h
    }

    const LIMITS: ScaleLimits = ScaleLimits {
        up_backlog: 100,
        max_lessees: 3,
        lessee_idle: Duration::from_millis(200),
    };

    #[test]
    fn ingress_stamps_deadline_from_the_slo_and_priority_from_the_class() {
        let lc = op(AppClass::LatencyCritical, 0, 0);
        let h = stamped(&mut Fifo::fixed(), &lc, 5_000, 5_000);
        assert_eq!(h.deadline_ns, 5_000 + 10_000_000);
        assert_eq!(h.priority, 1);
        let be = op(AppClass::BestEffort, 0, 0);
        assert_eq!(stamped(&mut Fifo::fixed(), &be, 0, 0).priority, 0);
    }

    #[test]
    fn children_inherit_deadline_and_priority() {
        let o = op(AppClass::LatencyCritical, 0, 0);
        for p in [
            &mut Fifo::fixed() as &mut dyn Policy,
            &mut Priority,
            &mut Edf,
            &mut Llf,
            &mut Dirigo::default(),
        ] {
            let parent = stamped(p, &o, 1_000, 1_000);
            let mut child = Header {
                enqueued_ns: 0,
                ..parent
            };
            p.on_emit(&parent, &mut child, &o);
            assert_eq!(
                (child.deadline_ns, child.priority),
                (parent.deadline_ns, parent.priority),
                "{}",
                p.name()
            );
        }
    }

    #[test]
    fn fifo_orders_by_queueing_time_only() {
        let (lc, be) = (
            op(AppClass::LatencyCritical, 0, 0),
            op(AppClass::BestEffort, 0, 0),
        );
        let mut p = Fifo::fixed();
        let early_be = stamped(&mut p, &be, 0, 100);
        let late_lc = stamped(&mut p, &lc, 0, 200);
        assert!(p.rank(&early_be, &be, 300) < p.rank(&late_lc, &lc, 300));
    }

    #[test]
    fn priority_puts_latency_critical_first_then_fifo() {
        let (lc, be) = (
            op(AppClass::LatencyCritical, 0, 0),
            op(AppClass::BestEffort, 0, 0),
        );
        let mut p = Priority;
        let early_be = stamped(&mut p, &be, 0, 100);
        let late_lc = stamped(&mut p, &lc, 0, 200);
        let later_lc = stamped(&mut p, &lc, 0, 300);
        assert!(p.rank(&late_lc, &lc, 400) < p.rank(&early_be, &be, 400));
        assert!(p.rank(&late_lc, &lc, 400) < p.rank(&later_lc, &lc, 400));
    }

    #[test]
    fn edf_orders_by_deadline_across_slos() {
        let mut tight = op(AppClass::LatencyCritical, 0, 0);
        tight.slo_ns = 1_000_000;
        let loose = op(AppClass::LatencyCritical, 0, 0); // 10 ms
        let mut p = Edf;
        // The loose one came first but is due later.
        let a = stamped(&mut p, &loose, 0, 0);
        let b = stamped(&mut p, &tight, 500_000, 500_000);
        assert!(p.rank(&b, &tight, 600_000) < p.rank(&a, &loose, 600_000));
    }

    #[test]
    fn llf_runs_the_message_with_more_work_ahead_first() {
        // Same deadline; one has 4 ms of path ahead, the other 1 ms.
        let long = op(AppClass::LatencyCritical, 1_000_000, 4_000_000);
        let short = op(AppClass::LatencyCritical, 1_000_000, 1_000_000);
        let mut p = Llf;
        let a = stamped(&mut p, &short, 0, 0);
        let b = stamped(&mut p, &long, 0, 10);
        assert!(p.rank(&b, &long, 20) < p.rank(&a, &short, 20));
        // EDF cannot tell them apart but by arrival.
        assert!(Edf.rank(&a, &short, 20) < Edf.rank(&b, &long, 20));
    }

    #[test]
    fn dirigo_ranks_latency_critical_by_latest_start_before_best_effort() {
        let lc_long = op(AppClass::LatencyCritical, 1_000, 4_000_000);
        let lc_short = op(AppClass::LatencyCritical, 1_000, 1_000);
        let be = op(AppClass::BestEffort, 1_000, 1_000);
        let mut p = Dirigo::default();
        let b = stamped(&mut p, &be, 0, 0);
        let s = stamped(&mut p, &lc_short, 0, 5);
        let l = stamped(&mut p, &lc_long, 0, 10);
        let (rb, rs, rl) = (
            p.rank(&b, &be, 20),
            p.rank(&s, &lc_short, 20),
            p.rank(&l, &lc_long, 20),
        );
        assert!(rl < rs && rs < rb, "{rl:?} {rs:?} {rb:?}");
    }

    #[test]
    fn dirigo_leases_when_predicted_drain_eats_the_slack_and_not_before() {
        // 10 ms SLO, 1 ms of path: 9 ms of slack; headroom 0.5 = 4.5 ms.
        let o = op(AppClass::LatencyCritical, 100_000, 1_000_000); // 100 µs/msg
        let mut p = Dirigo::default();
        let h = stamped(&mut p, &o, 0, 0);
        let q = |backlog, lessees| QueueView {
            backlog,
            lessees,
            head: Some(&h),
        };
        // 40 queued = 4 ms of drain: fine.
        assert_eq!(p.on_backlog(&q(40, 0), &o, &LIMITS, 0), Scale::Hold);
        // 50 queued = 5 ms: lease.
        assert_eq!(p.on_backlog(&q(50, 0), &o, &LIMITS, 0), Scale::Lease);
        // With one lessee, 50 drain in 2.5 ms: fine.
        assert_eq!(p.on_backlog(&q(50, 1), &o, &LIMITS, 0), Scale::Hold);
        // A head that can no longer start in time: lease, whatever the queue.
        assert_eq!(p.on_backlog(&q(1, 1), &o, &LIMITS, 9_500_000), Scale::Lease);
        // Unknown cost: nothing to predict from.
        let fresh = op(AppClass::LatencyCritical, 0, 0);
        assert_eq!(p.on_backlog(&q(1000, 0), &fresh, &LIMITS, 0), Scale::Hold);
    }

    #[test]
    fn fixed_fifo_never_scales_and_the_backlog_rule_does() {
        let o = op(AppClass::LatencyCritical, 100_000, 100_000);
        let q = QueueView {
            backlog: 1_000,
            lessees: 0,
            head: None,
        };
        assert_eq!(Fifo::fixed().on_backlog(&q, &o, &LIMITS, 0), Scale::Hold);
        assert_eq!(Fifo::scaling().on_backlog(&q, &o, &LIMITS, 0), Scale::Lease);
        assert_eq!(Edf.on_backlog(&q, &o, &LIMITS, 0), Scale::Lease);
        let short = QueueView { backlog: 10, ..q };
        assert_eq!(Edf.on_backlog(&short, &o, &LIMITS, 0), Scale::Hold);
    }

    #[test]
    fn dirigo_routes_to_the_least_loaded_instance() {
        let o = op(AppClass::LatencyCritical, 0, 0);
        let h = header(0, 0);
        let loads = |b: [usize; 3]| -> Vec<ShardLoad> {
            b.iter()
                .enumerate()
                .map(|(i, &backlog)| ShardLoad {
                    shard: i as u16,
                    backlog,
                })
                .collect()
        };
        let mut p = Dirigo::default();
        assert_eq!(p.route(&h, &o, &loads([5, 1, 3])), Some(1));
        assert_eq!(p.route(&h, &o, &loads([2, 2, 2])), None);
        assert_eq!(Fifo::fixed().route(&h, &o, &loads([5, 1, 3])), None);
    }

    #[test]
    fn dirigo_releases_idle_lessees_after_twice_the_slo_within_bounds() {
        let mut p = Dirigo::default();
        let o = op(AppClass::LatencyCritical, 0, 0); // 10 ms SLO
        assert_eq!(p.release_after(&o, &LIMITS), Duration::from_millis(20));
        let mut tiny = o;
        tiny.slo_ns = 1_000;
        assert_eq!(p.release_after(&tiny, &LIMITS), Duration::from_millis(1));
        let mut huge = o;
        huge.slo_ns = 10_000_000_000;
        assert_eq!(p.release_after(&huge, &LIMITS), LIMITS.lessee_idle);
    }
}
