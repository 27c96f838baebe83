//! Processing-time timers on a shard: waking each instance here (lessor
//! or lessee) when its earliest one is due, and firing them.
//!
//! The timers themselves live in each instance's clock and move with its
//! partitions; the shard keeps only a heap of wake-ups (`slots::Wakeups`).
//! An instance's slot holds the time it is armed for (`wake_at`): an
//! entry of another time is stale (the timer fired, moved away or was
//! deleted) and is skipped when it comes up, so arming never searches the
//! heap. Entries are pushed only for an earlier time than the armed one,
//! and the heap is rebuilt from the slots when stale ones outnumber them
//! (`limits::WAKEUPS_SLACK`).

use std::cmp::Reverse;

use super::slots::{InstRef, NOT_ARMED};
use super::Shard;
use crate::limits::WAKEUPS_SLACK;

impl Shard {
    /// Fire the processing-time timers due at `now` on every instance
    /// here. Returns how many instances fired some.
    pub(super) fn fire_processing_timers(&mut self, now: u64) -> usize {
        let mut fired = 0;
        while let Some((t, r)) = self.wakeups.pop_due(now) {
            fired += usize::from(self.wake(t, r, now));
        }
        let armed = self.lessors.len() + self.lessees.len();
        if self.wakeups.heap.len() > armed.saturating_mul(2) + WAKEUPS_SLACK {
            self.rebuild_wakeups();
        }
        fired
    }

    /// Wake `r`, if it is still armed for `t`: fire its due timers, arm
    /// it for its next one.
    fn wake(&mut self, t: u64, r: InstRef, now: u64) -> bool {
        let Some(plan) = self.apps.get(&r.actor().app).cloned() else {
            return false;
        };
        if plan.failure().is_some() {
            return false;
        }
        match r {
            InstRef::Lessor(a) => {
                let Some(slot) = self.lessors.get_mut(&a).filter(|s| s.wake_at == t) else {
                    return false;
                };
                slot.wake_at = NOT_ARMED;
                let mut fx = self.env.fx(a, &plan, false);
                slot.m.visit(|st, epoch| fx.fire_processing(st, now, epoch));
                fx.finish();
                slot.last_active_ns = now;
                slot.arm(a, &mut self.wakeups);
            }
            InstRef::Lessee(a, l) => {
                let Some(slot) = self.lessees.get_mut(&(a, l)).filter(|s| s.wake_at == t) else {
                    return false;
                };
                slot.wake_at = NOT_ARMED;
                let mut fx = self.env.fx(a, &plan, true);
                slot.m.visit(|st, epoch| fx.fire_processing(st, now, epoch));
                fx.finish();
                slot.last_active_ns = now;
                slot.arm((a, l), &mut self.wakeups);
            }
        }
        true
    }

    /// The heap again from the slots' armed times, without stale entries.
    fn rebuild_wakeups(&mut self) {
        let lessors = self
            .lessors
            .iter()
            .map(|(a, s)| (s.wake_at, InstRef::Lessor(*a)));
        let lessees = self
            .lessees
            .iter()
            .map(|((a, l), s)| (s.wake_at, InstRef::Lessee(*a, *l)));
        self.wakeups.heap = lessors
            .chain(lessees)
            .filter(|(t, _)| *t != NOT_ARMED)
            .map(Reverse)
            .collect();
    }
}
