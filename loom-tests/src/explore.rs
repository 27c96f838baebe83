//! Running a loom model with a stated preemption bound, and measuring it.
//!
//! [`explore`] wraps `loom::model::Builder`: it applies the model's
//! preemption bound (unless `LOOM_MAX_PREEMPTIONS` overrides it, for a deeper
//! run by hand), counts the interleavings loom runs and prints the count and
//! the wall time when the model ends, also when it fails (then it is the
//! number of interleavings it took to find the bug). Run the suite with
//! `-- --nocapture` to see the lines.
//!
//! [`explore_covering`] also collects the coverage facts each interleaving
//! reports (for instance "a Block overtook nothing but raced a delivery"), so
//! a model can assert that the races it is about really happened in some of
//! the interleavings loom ran: a model whose scenario never reaches its race
//! would pass vacuously.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Branches (loom scheduling decisions) one interleaving may take; loom's
/// default of 1,000 is too few for the protocol models.
const MAX_BRANCHES: usize = 20_000;

/// Prints the measurement when dropped: at the end of the model, or while a
/// failure unwinds.
struct Report {
    name: &'static str,
    bound: Option<usize>,
    runs: Arc<AtomicUsize>,
    start: Instant,
}

impl Drop for Report {
    fn drop(&mut self) {
        let n = self.runs.load(Ordering::Relaxed);
        let secs = self.start.elapsed().as_secs_f64();
        let bound = self
            .bound
            .map_or_else(|| "none".to_string(), |b| b.to_string());
        if std::thread::panicking() {
            println!(
                "loom model {}: FAILED at interleaving {n} ({secs:.2}s, preemption bound {bound})",
                self.name
            );
        } else {
            println!(
                "loom model {}: {n} interleavings in {secs:.2}s (preemption bound {bound})",
                self.name
            );
        }
    }
}

/// Explore every interleaving of `model` with at most `preemption_bound`
/// preemptions per interleaving (`None`: unbounded, fully exhaustive).
pub fn explore<F>(name: &'static str, preemption_bound: Option<usize>, model: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = preemption_bound;
    }
    builder.max_branches = builder.max_branches.max(MAX_BRANCHES);
    let runs = Arc::new(AtomicUsize::new(0));
    let _report = Report {
        name,
        bound: builder.preemption_bound,
        runs: runs.clone(),
        start: Instant::now(),
    };
    builder.check(move || {
        runs.fetch_add(1, Ordering::Relaxed);
        model();
    });
}

/// [`explore`], where each interleaving returns the coverage facts it saw;
/// returns the union over all interleavings.
pub fn explore_covering<F>(
    name: &'static str,
    preemption_bound: Option<usize>,
    model: F,
) -> BTreeSet<&'static str>
where
    F: Fn() -> Vec<&'static str> + Sync + Send + 'static,
{
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let sink = seen.clone();
    explore(name, preemption_bound, move || {
        let facts = model();
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(facts);
    });
    let facts = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    println!("loom model {name}: coverage {facts:?}");
    facts
}

/// Assert that every fact in `want` was seen in some interleaving.
pub fn assert_covered(seen: &BTreeSet<&'static str>, want: &[&'static str]) {
    let missing: Vec<_> = want.iter().filter(|f| !seen.contains(*f)).collect();
    assert!(
        missing.is_empty(),
        "no interleaving reached {missing:?} (seen: {seen:?}): the model does not test what it says"
    );
}
