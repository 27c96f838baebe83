//! `dirigo inspect PATH`: what is on disk, read-only (safe beside a running
//! node). PATH is a node's data folder (every app folder in it), one app's
//! folder, or one segment file. For each app: its checkpoints (epoch, kind,
//! size, log position, the chain an incremental one is applied to, each
//! operator's part), its ingress log's segments (ranges of sequence
//! numbers) and its spill files; every checksum is checked, and damage is
//! reported with its file and byte offset. Exit 0 when nothing is
//! damaged, 1 when something is, 2 when PATH is none of those.
//!
//! `--dump OPERATOR` on an app's folder prints that operator's state as
//! the newest valid checkpoint has it (through its chain), as JSON: the
//! folder's `DEPLOY` note names the catalog kind and parameters it was
//! deployed with, so the app is built again and the kind's JSON form of
//! the state is used (the built-in durable kinds have one).

use std::path::{Path, PathBuf};

use dirigo_engine::inspect::{
    app_folder, is_app_folder, saved_state, AppFolder, CheckpointInfo, CheckpointKind,
};
use dirigo_net::{Catalog, DeploySpec};
use dirigo_storage::inspect::SegmentReport;
use dirigo_storage::StorageError;
use serde_json::{json, Value};

use crate::remote::CliError;

/// `dirigo inspect`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A data folder, an app's folder, or a segment file (`.seg`).
    path: PathBuf,
    /// The report as JSON.
    #[arg(long)]
    json: bool,
    /// Print this operator's state, as the newest valid checkpoint has it,
    /// as JSON (PATH: an app's folder, deployed from the node's catalog).
    #[arg(long, value_name = "OPERATOR")]
    dump: Option<String>,
}

fn storage(e: StorageError) -> CliError {
    CliError::Failed(format!("inspect: {e}"))
}

pub(crate) fn run(a: Args) -> Result<(), CliError> {
    if let Some(op) = &a.dump {
        return dump(&a.path, op);
    }
    let p = &a.path;
    let (text, report, damaged) = if p.is_file() {
        let r = dirigo_storage::inspect::segment(p).map_err(storage)?;
        (segment_line(&r), segment_json(&r), r.damage.is_some())
    } else if p.is_dir() {
        let apps = app_dirs(p)?;
        let folders = apps
            .iter()
            .map(|d| app_folder(d).map_err(storage))
            .collect::<Result<Vec<_>, _>>()?;
        let text = folders.iter().map(app_text).collect::<Vec<_>>().join("\n");
        let json = Value::from(folders.iter().map(app_json).collect::<Vec<_>>());
        let damaged = folders.iter().any(|f| !f.damage().is_empty());
        (text, json, damaged)
    } else {
        return Err(CliError::Usage(format!(
            "{}: no such file or folder",
            p.display()
        )));
    };
    if a.json {
        println!("{report:#}");
    } else {
        print!("{text}");
    }
    if damaged {
        return Err(CliError::Failed("inspect: damage found (see above)".into()));
    }
    Ok(())
}

/// `--dump OPERATOR`: build the app again from the folder's deploy note
/// (its catalog kind and parameters), restore the operator's state from
/// the newest checkpoint and print it through the kind's JSON form.
fn dump(p: &Path, op: &str) -> Result<(), CliError> {
    if !p.is_dir() || !is_app_folder(p) {
        return Err(CliError::Usage(format!(
            "--dump needs an app's folder; {} is not one",
            p.display()
        )));
    }
    let folder = app_folder(p).map_err(storage)?;
    let note = folder.deploy_note.as_deref().ok_or_else(|| {
        CliError::Failed(format!(
            "{} has no DEPLOY note (not deployed from a node's catalog): its state's type is unknown",
            p.display()
        ))
    })?;
    let note: Value = serde_json::from_str(note).map_err(|e| {
        CliError::Failed(format!("{}: the DEPLOY note is not JSON: {e}", p.display()))
    })?;
    let kind = note["kind"].as_str().unwrap_or_default();
    let name = p
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let spec = DeploySpec {
        name: name.clone(),
        slo: None,
        durable: true,
    };
    let catalog = Catalog::builtin();
    let fail = |e: &dyn std::fmt::Display| CliError::Failed(format!("--dump {op}: {e}"));
    let app = catalog
        .build(kind, &spec, note["params"].clone())
        .map_err(|e| fail(&e))?
        .into_app();
    let saved = saved_state(p, app, op).map_err(|e| fail(&e))?;
    let state = catalog
        .dump_state(kind, op, saved.state)
        .map_err(|e| fail(&e))?;
    let out = json!({"app": name, "kind": kind, "operator": op, "checkpoint": saved.epoch, "state": state});
    println!("{out:#}");
    Ok(())
}

/// The app folders at `p`: itself, or the ones directly in it.
fn app_dirs(p: &Path) -> Result<Vec<PathBuf>, CliError> {
    if is_app_folder(p) {
        return Ok(vec![p.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(p).map_err(|e| CliError::Usage(format!("{}: {e}", p.display())))?;
    let mut apps: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| d.is_dir() && is_app_folder(d))
        .collect();
    apps.sort();
    if apps.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: neither a data folder nor an app's folder (no MANIFEST or log/)",
            p.display()
        )));
    }
    Ok(apps)
}

fn status(d: &Option<StorageError>) -> String {
    d.as_ref().map_or("ok".into(), |e| format!("DAMAGED: {e}"))
}

fn segment_line(r: &SegmentReport) -> String {
    format!(
        "{}: segment {}, {} records, {} payload bytes, {} bytes: {}\n",
        r.path.display(),
        r.id.map_or("?".into(), |i| i.to_string()),
        r.records,
        r.payload_bytes,
        r.file_len,
        status(&r.damage)
    )
}

fn kind_name(k: Option<CheckpointKind>) -> &'static str {
    match k {
        Some(CheckpointKind::Full) => "full",
        Some(CheckpointKind::Incremental) => "incremental",
        None => "?",
    }
}

fn checkpoint_line(c: &CheckpointInfo) -> String {
    let chain = if c.chain.is_empty() {
        "-".to_string()
    } else {
        let epochs: Vec<String> = c.chain.iter().map(u64::to_string).collect();
        let missing = if c.base_missing {
            " (no full base listed)"
        } else {
            ""
        };
        format!("on {}{missing}", epochs.join(" <- "))
    };
    let ops: Vec<String> = c
        .operators
        .iter()
        .map(|o| {
            let what = if o.delta { "changes" } else { "state" };
            let clock = if o.clock_bytes > 0 {
                format!(" + clock {} B", o.clock_bytes)
            } else {
                String::new()
            };
            format!("op {}: {what} {} B{clock}", o.op, o.bytes)
        })
        .collect();
    format!(
        "    {:<8} {:<12} {:>10} {:>10}  {chain}: {}; {}\n",
        c.epoch,
        kind_name(c.kind),
        c.bytes,
        c.log_position.map_or("-".into(), |p| p.to_string()),
        if ops.is_empty() {
            "no state".into()
        } else {
            ops.join(", ")
        },
        status(&c.damage)
    )
}

fn app_text(f: &AppFolder) -> String {
    let mut t = format!("app folder {}\n", f.dir.display());
    let gen = f
        .generation
        .map_or("no manifest".into(), |g| format!("manifest generation {g}"));
    t += &format!("  checkpoints ({gen}):\n");
    t += &format!(
        "    {:<8} {:<12} {:>10} {:>10}  chain\n",
        "epoch", "kind", "bytes", "log-pos"
    );
    f.checkpoints.iter().for_each(|c| t += &checkpoint_line(c));
    if let Some(e) = &f.manifest_damage {
        t += &format!("    MANIFEST DAMAGED: {e}\n");
    }
    if f.manifest_tmp {
        t += "    a MANIFEST.tmp is left from an interrupted commit\n";
    }
    for u in &f.unlisted {
        t += &format!(
            "    not listed (a commit in progress, or an interrupted one's; never used): {}",
            segment_line(u)
        );
    }
    let entries: u64 = f.log.iter().map(|s| s.report.records).sum();
    t += &format!("  log: {} segment(s), {entries} entries\n", f.log.len());
    for s in &f.log {
        let r = &s.report;
        t += &format!(
            "    seqs {}..{} in {}, {} bytes: {}\n",
            s.first_seq,
            s.first_seq + r.records,
            r.path.display(),
            r.file_len,
            match (&r.damage, s.torn_tail) {
                (Some(e), true) => format!(
                    "torn tail (being written, or cut by a crash; recovery keeps the records before it): {e}"
                ),
                (d, _) => status(d),
            }
        );
    }
    t += &format!("  spill files: {}\n", f.spills.len());
    f.spills
        .iter()
        .for_each(|s| t += &format!("    {}", segment_line(s)));
    t += &format!(
        "  damage: {}\n",
        if f.damage().is_empty() {
            "none".to_string()
        } else {
            format!("{} place(s)", f.damage().len())
        }
    );
    t
}

fn err_json(d: &Option<StorageError>) -> Value {
    d.as_ref().map_or(
        Value::Null,
        |e| json!({"error": e.to_string(), "offset": e.offset()}),
    )
}

fn segment_json(r: &SegmentReport) -> Value {
    json!({
        "path": r.path, "id": r.id, "records": r.records, "payload_bytes": r.payload_bytes,
        "file_len": r.file_len, "damage": err_json(&r.damage),
    })
}

fn app_json(f: &AppFolder) -> Value {
    let ckpts: Vec<Value> = f
        .checkpoints
        .iter()
        .map(|c| {
            let ops: Vec<Value> = c.operators.iter().map(|o| json!({
                "op": o.op, "bytes": o.bytes, "delta": o.delta, "clock_bytes": o.clock_bytes,
            })).collect();
            json!({
                "epoch": c.epoch, "path": c.path, "kind": kind_name(c.kind), "bytes": c.bytes,
                "chain": c.chain, "base_missing": c.base_missing, "log_position": c.log_position,
                "operators": ops, "damage": err_json(&c.damage),
            })
        })
        .collect();
    let log: Vec<Value> = f
        .log
        .iter()
        .map(|s| {
            json!({
                "first_seq": s.first_seq, "end_seq": s.first_seq + s.report.records, "torn_tail": s.torn_tail,
                "segment": segment_json(&s.report),
            })
        })
        .collect();
    json!({
        "dir": f.dir, "generation": f.generation, "checkpoints": ckpts,
        "unlisted": f.unlisted.iter().map(segment_json).collect::<Vec<_>>(),
        "manifest_tmp": f.manifest_tmp,
        "manifest_damage": f.manifest_damage.as_ref().map(|e| e.to_string()),
        "log": log, "spills": f.spills.iter().map(segment_json).collect::<Vec<_>>(),
        "damaged": !f.damage().is_empty(),
    })
}
