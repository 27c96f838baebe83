//! Housekeeping, every `housekeeping` period: publish the backlog gauge,
//! account lessee-time, deactivate idle actors (spilling durable ones'
//! state to segment files); and the shard's stats snapshot.
//!
//! Scaling is not here: it happens on the message path (`scale`).

use super::instance::Instance;
use super::slots::LessorSlot;
use super::Shard;
use crate::durability::spill;
use crate::model::ActorId;
use crate::plan::PlanKind;
use crate::protocol::Dormant;
use crate::runtime::clock::nanos;
use crate::runtime::metrics::ShardStats;
use crate::sync::Ordering;

impl Shard {
    /// Every `housekeeping` period (`dt` since the last one): publish the
    /// backlog gauge, retry waking actors whose spill could not be read,
    /// deactivate idle actors, account lessee-time. Returns
    /// how many actors it deactivated.
    pub(super) fn housekeeping(&mut self, now: u64, dt: u64) -> usize {
        let backlog = self.backlog();
        self.env.gauge().backlog.store(backlog, Ordering::Relaxed);
        self.account_lessees(dt);
        // Spills that could not be read back are tried again; not counted
        // as work, so a lasting error does not keep the shard from parking.
        if !self.asleep.waking.is_empty() {
            self.retry_waking();
        }
        self.source_clocks();
        // The scan visits every active lessor, so it runs every eighth of
        // the idle timeout, not every housekeeping: an actor goes dormant at
        // most 12.5% late, and a shard with many actors does not spend its
        // turns scanning them.
        let idle_ns = nanos(self.cfg.idle_deactivate);
        if now.saturating_sub(self.last_idle_scan_ns) < idle_ns / 8 {
            return 0;
        }
        self.last_idle_scan_ns = now;
        self.deactivate_idle(now, idle_ns)
    }

    /// Deactivate every lessor idle for `idle_ns`: to a dormant record, its
    /// state spilled to a file if durable. Returns how many. One with a
    /// processing-time timer stays active: the timer wakes it.
    fn deactivate_idle(&mut self, now: u64, idle_ns: u64) -> usize {
        let idle: Vec<ActorId> = self
            .lessors
            .iter()
            .filter(|(_, s)| {
                !s.queued
                    && s.m.is_idle()
                    && s.m.state().clock.proc.len() == 0
                    && now.saturating_sub(s.last_active_ns) >= idle_ns
            })
            .map(|(a, _)| *a)
            .collect();
        let mut did = 0;
        for a in idle {
            let Some(slot) = self.lessors.remove(&a) else {
                continue;
            };
            let LessorSlot { m, .. } = slot;
            match m.into_dormant() {
                Ok(mut d) => {
                    self.spill(a, &mut d);
                    self.asleep.dormant.insert(a, d);
                    did += 1;
                }
                Err(_) => unreachable!("{a}: an idle lessor deactivates"),
            }
        }
        did
    }

    /// Lessee-time, per app: what the leased cores cost.
    fn account_lessees(&mut self, dt: u64) {
        for ((actor, _), _) in self.lessees.iter() {
            if let Some(st) = self.env.app_stats.get_mut(&actor.app) {
                st.lessee_ns += dt;
            }
        }
    }

    /// Move a deactivated durable actor's state out of memory into a spill
    /// file. On failure the state simply stays in memory.
    fn spill(&mut self, actor: ActorId, d: &mut Dormant<Instance>) {
        let Some(plan) = self.apps.get(&actor.app) else {
            return;
        };
        let (Some(dir), Some(node)) = (&plan.dir, plan.node(actor.op)) else {
            return;
        };
        let PlanKind::Function { f, .. } = &node.kind else {
            return;
        };
        let Some(codec) = f.state_codec() else {
            return;
        };
        let archived = match (codec.spill)(&mut *d.state.user) {
            Ok(a) => a,
            Err(_) => {
                self.stats.spill_errors += 1;
                return;
            }
        };
        self.asleep.spill_seq += 1;
        let seq = self.asleep.spill_seq;
        let path = spill::dir_of(dir).join(format!("s{}-{}-{seq}.seg", self.env.id, actor.op.0));
        match spill::write(&path, seq, &archived) {
            Ok(len) => {
                d.state.user = f.new_state();
                self.asleep.spilled.insert(actor, path);
                self.stats.spills += 1;
                self.stats.spill_bytes += len;
            }
            Err(_) => {
                let _ = std::fs::remove_file(&path);
                self.stats.spill_errors += 1;
            }
        }
    }

    pub(super) fn snapshot(&self) -> ShardStats {
        let mut s = self.stats.clone();
        s.task_panics = self.task_panics.get();
        s.lessors = self.lessors.len();
        s.lessees = self.lessees.len();
        s.dormant = self.asleep.dormant.len();
        s.spilled = self.asleep.spilled.len();
        s.apps = self
            .env
            .app_stats
            .iter()
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        for (id, st) in &mut s.apps {
            st.failed = self
                .apps
                .get(id)
                .and_then(|p| p.failure())
                .map(str::to_owned);
        }
        // `stats.runs` holds the runs of undeployed apps; add the live ones.
        s.runs += s.apps.values().map(|a| a.runs).sum::<u64>();
        s.backlog = self.backlog();
        for ((a, _), l) in &self.lessees {
            if let Some(st) = s.apps.get_mut(&a.app) {
                st.lessees += 1;
                st.queued += l.m.backlog();
            }
        }
        for (a, l) in &self.lessors {
            if let Some(st) = s.apps.get_mut(&a.app) {
                st.queued += l.m.backlog();
                let ls = l.m.stats();
                st.leases_granted += ls.leases_granted;
                st.revokes += ls.revokes;
            }
        }
        for (a, d) in &self.asleep.dormant {
            if let Some(st) = s.apps.get_mut(&a.app) {
                let ls = d.stats();
                st.leases_granted += ls.leases_granted;
                st.revokes += ls.revokes;
            }
        }
        s
    }
}
