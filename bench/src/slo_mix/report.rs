//! What the `slo-mix` bench prints and writes: the workload's description
//! ([`describe`]), the per-configuration, per-app [`table`], the
//! [`comparison`] against fifo-static and against a static placement sized
//! for the bursts, and the output files ([`write_outputs`]: each app's
//! latency histogram in HdrHistogram V2 and as a percentile distribution,
//! each configuration's timeline CSV, the whole table as JSON).
//!
//! Everything here is a function of a [`Workload`] and the runs'
//! [`ConfigResult`]s; nothing measures.

use std::fmt::Write as _;
use std::path::Path;

use dirigo_engine::{AppClass, Placement};
use hdrhistogram::serialization::{Serializer, V2Serializer};
use serde_json::{json, Value};

use super::run::{AppResult, ConfigResult};
use super::workload::{AppKind, AppSpec, Config, Workload};
use super::Error;

// ---------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------

fn class_name(c: AppClass) -> &'static str {
    match c {
        AppClass::LatencyCritical => "LC",
        AppClass::BestEffort => "BE",
    }
}

/// The workload, as printed before the runs.
pub fn describe(w: &Workload, cores: &[usize]) -> String {
    let mut s = String::new();
    let d = w.demand();
    let _ = writeln!(
        s,
        "slo-mix: {} shards ({}) on a machine with {} cores {:?}; {:.0} s per configuration; \
         seed {}; window barriers {}",
        w.shards,
        match w.placement {
            Placement::Pinned => "pinned",
            Placement::Unpinned => "unpinned",
        },
        cores.len(),
        cores,
        w.duration.as_secs_f64(),
        w.seed,
        w.window
            .map_or("off".to_string(), |p| format!("every {} ms", p.as_millis()))
    );
    let _ = writeln!(s, "apps (same arrivals in every configuration):");
    for a in &w.apps {
        let sh = a.arrivals.shape;
        let load = if sh.burst > 1.0 {
            format!(
                "mean {:.0} ev/s, x{} bursts ({:.0} ev/s) for {} ms every {} ms, first at {} ms",
                sh.rate,
                sh.burst,
                a.arrivals.peak(),
                sh.on.as_millis(),
                (sh.on + sh.off).as_millis(),
                a.arrivals.first_burst.as_millis()
            )
        } else {
            format!("steady {:.0} ev/s", sh.rate)
        };
        let work = match a.kind {
            AppKind::LatencyCritical {
                parse_us, score_us, ..
            } => format!("parse {parse_us} us + score {score_us} us"),
            AppKind::BestEffort { work_us } => format!("enrich {work_us} us"),
        };
        let _ = writeln!(
            s,
            "  {:<14} {} {:>9}  home shard {}  {}; {}; {} keys",
            a.name,
            class_name(a.class()),
            a.slo()
                .map_or("-".to_string(), |d| format!("SLO {}ms", d.as_millis())),
            a.home,
            load,
            work,
            a.keys
        );
    }
    let _ = writeln!(
        s,
        "nominal demand (spin work only): mean {:.2} cores, peak {:.2} cores; a static placement \
         sized for the bursts reserves max(shards, ceil(peak)) = {} cores for the whole run",
        d.mean_cores,
        d.peak_cores,
        w.static_cores()
    );
    s
}

/// The per-configuration, per-app table.
pub fn table(results: &[ConfigResult]) -> String {
    let mut s = String::new();
    table_header(&mut s);
    for r in results {
        for a in &r.apps {
            table_row(&mut s, r, a);
        }
        table_footer(&mut s, r);
    }
    s
}

/// The table's column names.
fn table_header(s: &mut String) {
    let _ = writeln!(
        s,
        "{:<12} {:<14} {:>2} {:>4} {:>7} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>7} {:>5}",
        "config",
        "app",
        "cl",
        "slo",
        "sent",
        "shed",
        "deliv",
        "in-SLO",
        "p50ms",
        "p99ms",
        "p99.9ms",
        "ev/s",
        "qp99ms",
        "leases",
        "lessees",
        "left"
    );
}

/// One app's row of configuration `r`.
fn table_row(s: &mut String, r: &ConfigResult, a: &AppResult) {
    let sat = match a.class {
        AppClass::LatencyCritical => format!("{:.2}%", a.satisfaction * 100.0),
        AppClass::BestEffort => "-".to_string(),
    };
    let _ = writeln!(
        s,
        "{:<12} {:<14} {:>2} {:>4} {:>7} {:>6} {:>7} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.0} {:>7.2} {:>6} {:>7.2} {:>5}",
        r.config.name(),
        a.name,
        class_name(a.class),
        a.slo_ms.map_or("-".to_string(), |v| format!("{v:.0}")),
        a.sent,
        a.shed,
        a.delivered,
        sat,
        a.p50_ms,
        a.p99_ms,
        a.p999_ms,
        a.throughput,
        a.queue_p99_ms,
        a.leases,
        a.mean_lessees,
        a.lessees_left
    );
}

/// Configuration `r`'s totals, machine figures and warnings, under its rows.
fn table_footer(s: &mut String, r: &ConfigResult) {
    let _ = writeln!(
        s,
        "{:<12} busy {:.2} core-s (shards {}) vs {:.2} static-reserved, over {:.2} s; \
         shed {}; drained {} in {:.2} s; {} window barriers",
        "",
        r.busy_core_s,
        r.busy_per_shard
            .iter()
            .map(|b| format!("{b:.2}"))
            .collect::<Vec<_>>()
            .join("/"),
        r.static_core_s,
        r.window_s,
        r.shed,
        r.drained,
        r.drain_s,
        r.windows,
    );
    let _ = writeln!(
        s,
        "{:<12} machine: generator max lag {:.1} ms; CPU core-s of this process {}, of \
         other processes {}",
        "",
        r.gen_max_lag_ms,
        r.process_cpu_s
            .map_or("?".to_string(), |v| format!("{v:.2}")),
        r.other_cpu_s.map_or("?".to_string(), |v| format!("{v:.2}")),
    );
    if !r.placement_ok() {
        let _ = writeln!(
            s,
            "{:<12} WARNING: lessors ran off their intended home shard (see \
             lessor_runs_per_shard in the JSON)",
            ""
        );
    }
    if let Some(e) = &r.barrier_error {
        let _ = writeln!(s, "{:<12} WARNING: window barriers stopped: {e}", "");
    }
}

/// The comparison the issue asks for: LC satisfaction and core-seconds of
/// each configuration against fifo-static and against a static placement
/// sized for the bursts.
pub fn comparison(results: &[ConfigResult]) -> String {
    let mut s = String::new();
    let base = results.iter().find(|r| r.config == Config::FifoStatic);
    let _ = writeln!(
        s,
        "{:<12} {:>9} {:>9} {:>10} {:>10} {:>9} {:>10} {:>11} {:>10} {:>9}",
        "config",
        "LC-sat",
        "LC-min",
        "vs-fifo-st",
        "LC-viol/x",
        "busy-cs",
        "static-cs",
        "vs-static",
        "BE-ev/s",
        "BE-vs-fs"
    );
    for r in results {
        comparison_row(&mut s, r, base);
    }
    let _ = writeln!(
        s,
        "LC-sat: LC outputs within SLO over LC outputs; LC-min: worst LC app; vs-fifo-st: \
         difference with fifo-static; LC-viol/x: LC miss rate over fifo-static's; busy-cs: \
         core-seconds the shards were busy during the load window (NodeStats::busy_ns); \
         static-cs: core-seconds a static placement sized for the bursts reserves over the \
         same window (max(shards, ceil(peak nominal demand)) cores, all the time); vs-static: \
         busy-cs relative to static-cs; BE-vs-fs: BE throughput over fifo-static's."
    );
    if let (Some(b), Some(d)) = (base, results.iter().find(|r| r.config == Config::Dirigo)) {
        targets(&mut s, b, d);
    }
    s
}

/// Configuration `r`'s row of the comparison, against `base` (fifo-static)
/// if it ran.
fn comparison_row(s: &mut String, r: &ConfigResult, base: Option<&ConfigResult>) {
    let sat = r.lc_satisfaction();
    let (dsat, viol, be) = match base {
        Some(b) => versus_base(r, b),
        None => ("-".into(), "-".into(), "-".into()),
    };
    let _ = writeln!(
        s,
        "{:<12} {:>8.2}% {:>8.2}% {:>10} {:>10} {:>9.2} {:>10.2} {:>10.1}% {:>10.0} {:>9}",
        r.config.name(),
        sat * 100.0,
        r.lc_min_satisfaction() * 100.0,
        dsat,
        viol,
        r.busy_core_s,
        r.static_core_s,
        (r.busy_core_s / r.static_core_s - 1.0) * 100.0,
        r.be_throughput(),
        be
    );
}

/// `r` against `b`: LC satisfaction difference, LC miss rate ratio, BE
/// throughput ratio, as printed.
fn versus_base(r: &ConfigResult, b: &ConfigResult) -> (String, String, String) {
    let sat = r.lc_satisfaction();
    let bv = 1.0 - b.lc_satisfaction();
    let v = 1.0 - sat;
    (
        format!("{:+.2}pp", (sat - b.lc_satisfaction()) * 100.0),
        if bv > 0.0 {
            format!("{:.3}", v / bv)
        } else {
            "-".to_string()
        },
        if b.be_throughput() > 0.0 {
            format!("{:.2}", r.be_throughput() / b.be_throughput())
        } else {
            "-".to_string()
        },
    )
}

/// Whether the paper's targets were met, from fifo-static `b` and dirigo `d`.
fn targets(s: &mut String, b: &ConfigResult, d: &ConfigResult) {
    let fewer = 1.0 - d.busy_core_s / d.static_core_s;
    let _ = writeln!(
        s,
        "target: dirigo LC satisfaction >= 99% (every LC app): {} (min {:.2}%); \
         fifo-static below 90%: {} (LC {:.2}%, min {:.2}%); dirigo >= 30% fewer core-seconds \
         than static: {} ({:.1}% fewer)",
        yes(d.lc_min_satisfaction() >= 0.99),
        d.lc_min_satisfaction() * 100.0,
        yes(b.lc_satisfaction() < 0.90),
        b.lc_satisfaction() * 100.0,
        b.lc_min_satisfaction() * 100.0,
        yes(fewer >= 0.30),
        fewer * 100.0
    );
}

fn yes(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "NOT met"
    }
}

// ---------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------

fn timeline_csv(r: &ConfigResult, apps: &[AppSpec]) -> String {
    let mut s = String::from("t_s,busy_cores");
    for a in apps {
        let _ = write!(s, ",{0}_out_per_s,{0}_in_slo_pct,{0}_lessees", a.name);
    }
    s.push('\n');
    for pair in r.timeline.windows(2) {
        let (p, c) = (&pair[0], &pair[1]);
        let dt = (c.t_s - p.t_s).max(1e-9);
        let _ = write!(
            s,
            "{:.3},{:.3}",
            c.t_s,
            c.busy_ns.saturating_sub(p.busy_ns) as f64 / 1e9 / dt
        );
        for (x, y) in p.apps.iter().zip(&c.apps) {
            let d = y.0.saturating_sub(x.0);
            let within = y.1.saturating_sub(x.1);
            let pct = if d == 0 {
                100.0
            } else {
                100.0 * within as f64 / d as f64
            };
            let _ = write!(s, ",{:.0},{:.2},{}", d as f64 / dt, pct, y.2);
        }
        s.push('\n');
    }
    s
}

/// A finite float, or JSON `null` (a ratio over an empty run).
fn num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into)
}

/// The whole table as JSON.
fn to_json(w: &Workload, results: &[ConfigResult]) -> String {
    let d = w.demand();
    let apps: Vec<Value> = w.apps.iter().map(app_spec_json).collect();
    let configs: Vec<Value> = results.iter().map(config_json).collect();
    let doc = json!({
        "scenario": "slo-mix",
        "shards": w.shards,
        "duration_s": num(w.duration.as_secs_f64()),
        "seed": w.seed,
        "window_ms": w.window.map(|p| p.as_millis() as u64),
        "nominal_demand_cores": {"mean": num(d.mean_cores), "peak": num(d.peak_cores)},
        "static_cores": w.static_cores(),
        "apps": apps,
        "configs": configs,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| panic!("a JSON value serializes: {e}"))
}

/// One app of the workload as JSON.
fn app_spec_json(a: &AppSpec) -> Value {
    let sh = a.arrivals.shape;
    json!({
        "name": a.name,
        "class": class_name(a.class()),
        "slo_ms": a.slo().map(|d| num(d.as_secs_f64() * 1e3)),
        "home": a.home,
        "mean_rate": num(sh.rate),
        "burst": num(sh.burst),
        "on_ms": sh.on.as_millis() as u64,
        "off_ms": sh.off.as_millis() as u64,
        "first_burst_ms": a.arrivals.first_burst.as_millis() as u64,
        "work_us": a.work_us(),
        "keys": a.keys,
    })
}

/// One configuration's run as JSON, its apps' figures in it.
fn config_json(r: &ConfigResult) -> Value {
    let apps: Vec<Value> = r.apps.iter().map(app_result_json).collect();
    json!({
        "config": r.config.name(),
        "policy": r.policy,
        "autoscale": r.autoscale,
        "window_s": num(r.window_s),
        "drain_s": num(r.drain_s),
        "drained": r.drained,
        "busy_core_s": num(r.busy_core_s),
        "busy_core_s_per_shard": r.busy_per_shard.iter().copied().map(num).collect::<Vec<_>>(),
        "static_core_s": num(r.static_core_s),
        "busy_vs_static": num(r.busy_core_s / r.static_core_s),
        "shed": r.shed,
        "window_barriers": r.windows,
        "barrier_error": r.barrier_error,
        "generator_max_lag_ms": num(r.gen_max_lag_ms),
        "process_cpu_core_s": r.process_cpu_s.map(num),
        "other_processes_cpu_core_s": r.other_cpu_s.map(num),
        "lc_satisfaction": num(r.lc_satisfaction()),
        "lc_min_satisfaction": num(r.lc_min_satisfaction()),
        "be_throughput": num(r.be_throughput()),
        "placement_ok": r.placement_ok(),
        "apps": apps,
    })
}

/// One app's figures in one configuration as JSON.
fn app_result_json(a: &AppResult) -> Value {
    json!({
        "name": a.name,
        "class": class_name(a.class),
        "slo_ms": a.slo_ms.map(num),
        "home": a.home,
        "sent": a.sent,
        "shed": a.shed,
        "delivered": a.delivered,
        "within_slo": a.within_slo,
        "satisfaction": num(a.satisfaction),
        "satisfaction_incl_shed": num(a.satisfaction_incl_shed),
        "p50_ms": num(a.p50_ms),
        "p99_ms": num(a.p99_ms),
        "p99_9_ms": num(a.p999_ms),
        "max_ms": num(a.max_ms),
        "queueing_p99_ms": num(a.queue_p99_ms),
        "throughput": num(a.throughput),
        "runs": a.runs,
        "lessee_runs": a.lessee_runs,
        "leases_granted": a.leases,
        "revokes": a.revokes,
        "mean_lessees": num(a.mean_lessees),
        "lessees_left": a.lessees_left,
        "lessor_runs_per_shard": a.lessor_runs,
        "placement_ok": a.placement_ok,
    })
}

/// Write, under `out`: `<config>/<app>.hdr` (V2-serialized latency
/// histogram, ns), `<config>/<app>.txt` (its percentile distribution, ms),
/// `<config>/timeline.csv`, and `slo-mix.json`. Returns the files written.
pub fn write_outputs(
    out: &Path,
    w: &Workload,
    results: &[ConfigResult],
) -> Result<Vec<std::path::PathBuf>, Error> {
    let mut written = Vec::new();
    let with_path = |p: &Path, e: std::io::Error| Error::from(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(out).map_err(|e| with_path(out, e))?;
    for r in results {
        let dir = out.join(r.config.name());
        std::fs::create_dir_all(&dir).map_err(|e| with_path(&dir, e))?;
        for a in &r.apps {
            let hdr = dir.join(format!("{}.hdr", a.name));
            let mut buf = Vec::new();
            V2Serializer::new()
                .serialize(&a.latency, &mut buf)
                .map_err(|e| Error::from(format!("{}: {e:?}", hdr.display())))?;
            std::fs::write(&hdr, buf).map_err(|e| with_path(&hdr, e))?;
            written.push(hdr);
            let txt = dir.join(format!("{}.txt", a.name));
            std::fs::write(&txt, crate::hgrm::percentiles(&a.latency))
                .map_err(|e| with_path(&txt, e))?;
            written.push(txt);
        }
        let csv = dir.join("timeline.csv");
        std::fs::write(&csv, timeline_csv(r, &w.apps)).map_err(|e| with_path(&csv, e))?;
        written.push(csv);
    }
    let json = out.join("slo-mix.json");
    std::fs::write(&json, to_json(w, results)).map_err(|e| with_path(&json, e))?;
    written.push(json);
    Ok(written)
}
