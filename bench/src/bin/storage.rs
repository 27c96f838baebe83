//! `storage`: checkpoint write throughput and recovery time against state
//! size, next to the raw sequential write and read speed of the same disk,
//! in the same run and the same folder (`dirigo_bench::storage_bench` has
//! the details of each measurement).
//!
//! For each size S (`--sizes`, default 1 MiB, 10 MiB, 100 MiB, 1 GiB;
//! `MB` means MiB), `--reps` times (default 3), raw and storage reps
//! interleaved so that drift of the disk hits both alike:
//!
//! - **raw**: S pseudo-random bytes written to a new file in 1 MiB writes +
//!   fdatasync (MiB/s); the file evicted from the page cache (fdatasync,
//!   `posix_fadvise(DONTNEED)`, residue checked with `mincore`: no root
//!   needed) and read back sequentially in 1 MiB reads (cold MiB/s), then
//!   read again (warm MiB/s).
//! - **storage**: the same S bytes split over `--ops` operators (default 4)
//!   written as one checkpoint, `Checkpoints::begin` + `put`s + `commit`
//!   (seal, fdatasync, manifest, folder fsync), into a fresh folder; then the
//!   folder evicted and recovered cold: `Checkpoints::open` (map + validate)
//!   and every `state(op)` read and summed (`state` joins a state's 8 MiB
//!   parts into one buffer, as the engine's restore does); then evicted and
//!   recovered again reading the parts in place (`state_parts`, zero-copy).
//! - **engine** (sizes up to `--engine-max`, default 1 GiB): a durable app
//!   whose one `Keyed<Vec<u8>>` operator holds S bytes in values of
//!   `--value-bytes` (default 1 KiB), loaded through its durable source with
//!   small fill events (so the log stays small) and checkpointed once
//!   untimed, its node stopped; then, per rep, the folder evicted, a new
//!   node + `deploy` of the same app on the same folder timed until deploy
//!   returns (restore + replay of ~nothing) and until a new event's output
//!   reaches the sink; then `AppHandle::checkpoint()` timed (the first after
//!   a deploy: a whole one, even with incremental checkpoints) and the node
//!   stopped.
//!
//! Printed: one table per level, medians with (min-max) over the reps, and
//! each checkpoint and recovery rate as a ratio of the raw write and cold
//! read rate of the same size (e.g. `0.83x` = 83% of the raw disk speed).
//! Every read is checked against the sum of the bytes written. `--json PATH`
//! writes every figure. Files go to a fresh `run-<pid>` folder under `--dir`
//! (default `target/storage-bench/`), which is deleted at the end unless
//! `--keep`; the free space is checked before anything is written.
//!
//! Rerun: `cargo run --release -p dirigo-bench --bin storage` (add
//! `-- --sizes 1MB,100MB --reps 5 --json storage.json` for a variant).

/// The allocator of the binaries (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use dirigo_bench::storage_bench::{
    self as sb, checkpoint_recover, checkpoint_write, checksum, chunked_checksum, engine_run,
    evict, evict_tree, human, mib_s, parse_size, raw_read, raw_write, BenchError, EngineConfig,
    EngineResult, ReadAs, Residency, Spread, MIB,
};

#[derive(Parser, Debug)]
#[command(about = "Checkpoint write and recovery vs state size, against the raw disk")]
struct Cli {
    /// State sizes (comma-separated; KB/MB/GB are powers of 1024).
    #[arg(long, value_delimiter = ',', default_value = "1MB,10MB,100MB,1GB", value_parser = parse_size)]
    sizes: Vec<u64>,
    /// Repetitions per size and level; medians and ranges are over these.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Folder on the disk under test; the run writes into a fresh
    /// `run-<pid>` folder inside it.
    #[arg(long, default_value = "target/storage-bench")]
    dir: PathBuf,
    /// Operators the storage-level checkpoint splits the state over.
    #[arg(long, default_value_t = 4)]
    ops: usize,
    /// Largest size the engine level runs (it loads the state through the
    /// engine, which takes longer).
    #[arg(long, default_value = "1GB", value_parser = parse_size)]
    engine_max: u64,
    /// Skip the engine level.
    #[arg(long)]
    no_engine: bool,
    /// Bytes of each key's value in the engine level.
    #[arg(long, default_value_t = 1024)]
    value_bytes: u32,
    /// Shards of the engine level's node.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Keep the files of the last rep of each size and level.
    #[arg(long)]
    keep: bool,
    /// Also write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn fail(msg: String) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ValueValidation, msg)
        .exit()
}

fn validate(cli: &Cli) {
    if cli.reps == 0 {
        fail("--reps must be at least 1".into());
    }
    if cli.ops == 0 || cli.ops > 1024 {
        fail(format!("--ops must be in 1..=1024, got {}", cli.ops));
    }
    if cli.value_bytes == 0 {
        fail("--value-bytes must be at least 1".into());
    }
    if cli.shards == 0 || cli.shards > 256 {
        fail(format!("--shards must be in 1..=256, got {}", cli.shards));
    }
    if cli.sizes.is_empty() {
        fail("--sizes needs at least one size".into());
    }
    if let Some(&s) = cli.sizes.iter().find(|&&s| usize::try_from(s).is_err()) {
        fail(format!("size {s} does not fit in memory on this machine"));
    }
}

/// The run's folder; deleted when dropped unless kept (also on a panic).
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep {
            println!("kept {}", self.path.display());
        } else if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("storage: cannot delete {}: {e}", self.path.display());
        }
    }
}

/// Raw-disk figures of one size, seconds per rep.
#[derive(Default)]
struct Raw {
    write_s: Vec<f64>,
    cold_s: Vec<f64>,
    warm_s: Vec<f64>,
    residue: Residency,
}

/// Storage-level figures of one size.
#[derive(Default)]
struct Store {
    file_bytes: u64,
    write_s: Vec<f64>,
    open_s: Vec<f64>,
    recover_s: Vec<f64>,
    /// Open plus reading the parts in place (`state_parts`).
    parts_s: Vec<f64>,
    residue: Residency,
}

struct Point {
    size: u64,
    raw: Raw,
    store: Store,
    engine: Option<EngineResult>,
}

impl Point {
    fn raw_write(&self) -> Spread {
        rate(self.size, &self.raw.write_s)
    }
    fn raw_cold(&self) -> Spread {
        rate(self.size, &self.raw.cold_s)
    }
}

/// MiB/s of `bytes` per rep time.
fn rate(bytes: u64, secs: &[f64]) -> Spread {
    Spread::of(secs).map(|t| mib_s(bytes, t))
}

fn ms(secs: &[f64]) -> Spread {
    Spread::of(secs).map(|t| t * 1e3)
}

fn remove_file(path: &Path) -> Result<(), BenchError> {
    fs::remove_file(path).map_err(|source| BenchError::Io {
        path: path.to_owned(),
        op: "delete",
        source,
    })
}

fn remove_dir(path: &Path) -> Result<(), BenchError> {
    fs::remove_dir_all(path).map_err(|source| BenchError::Io {
        path: path.to_owned(),
        op: "delete",
        source,
    })
}

fn check(what: String, got: u64, want: u64) -> Result<(), BenchError> {
    if got == want {
        Ok(())
    } else {
        Err(BenchError::Mismatch { what, got, want })
    }
}

/// The bytes of one size and the sums a read-back must find.
struct Input<'a> {
    /// The size as a file-name part: `1MiB`.
    tag: String,
    data: &'a [u8],
    /// `data` split over the operators, at multiples of 8 bytes.
    parts: Vec<&'a [u8]>,
    /// Sum of `parts` (what a checkpoint's states add up to).
    want: u64,
    /// What a chunked raw read of `data` adds up to.
    want_raw: u64,
}

/// One raw rep: write, evict, cold read, warm read.
fn raw_rep(
    run: &Path,
    input: &Input,
    keep: bool,
    buf: &mut Vec<u8>,
    raw: &mut Raw,
) -> Result<(), BenchError> {
    let path = run.join(format!("raw-{}.dat", input.tag));
    raw.write_s
        .push(raw_write(&path, input.data)?.as_secs_f64());
    raw.residue = raw.residue.worst(evict(&path)?);
    let want = input.want_raw;
    let (t, n, sum) = raw_read(&path, buf)?;
    check(format!("raw cold read of {}", path.display()), sum, want)?;
    check(
        format!("bytes of {}", path.display()),
        n,
        input.data.len() as u64,
    )?;
    raw.cold_s.push(t.as_secs_f64());
    let (t, _, sum) = raw_read(&path, buf)?;
    check(format!("raw warm read of {}", path.display()), sum, want)?;
    raw.warm_s.push(t.as_secs_f64());
    if !keep {
        remove_file(&path)?;
    }
    Ok(())
}

/// One storage rep: checkpoint into a fresh folder, evict, recover joined;
/// evict, recover by parts.
fn store_rep(
    run: &Path,
    input: &Input,
    rep: usize,
    keep: bool,
    store: &mut Store,
) -> Result<(), BenchError> {
    let dir = run.join(format!("ckpt-{}-rep{rep}", input.tag));
    let (t, file_bytes) = checkpoint_write(&dir, &input.parts)?;
    store.write_s.push(t.as_secs_f64());
    store.file_bytes = file_bytes;
    for read in [ReadAs::Joined, ReadAs::Parts] {
        store.residue = store.residue.worst(evict_tree(&dir)?);
        let rec = checkpoint_recover(&dir, read)?;
        check(
            format!("checkpoint in {} ({read:?})", dir.display()),
            rec.sum,
            input.want,
        )?;
        check(
            format!("state bytes in {}", dir.display()),
            rec.bytes,
            input.data.len() as u64,
        )?;
        match read {
            ReadAs::Joined => {
                store.open_s.push(rec.open.as_secs_f64());
                store.recover_s.push(rec.total.as_secs_f64());
            }
            ReadAs::Parts => store.parts_s.push(rec.total.as_secs_f64()),
        }
    }
    if !keep {
        remove_dir(&dir)?;
    }
    Ok(())
}

/// Raw and storage levels of one size, reps interleaved.
fn run_disk(cli: &Cli, run: &Path, size: u64) -> Result<(Raw, Store), BenchError> {
    let len = usize::try_from(size).expect("validate checked that sizes fit in usize");
    let mut data = vec![0u8; len];
    sb::fill(&mut data, size);
    // Split at multiples of 8 bytes, so the parts' sums add up to the whole's.
    let part = len.div_ceil(cli.ops).next_multiple_of(8).max(8);
    let parts: Vec<&[u8]> = data.chunks(part).collect();
    let input = Input {
        tag: human(size).replace(' ', ""),
        want: parts.iter().fold(0u64, |s, p| s.wrapping_add(checksum(p))),
        want_raw: chunked_checksum(&data),
        data: &data,
        parts,
    };
    let (mut raw, mut store) = (Raw::default(), Store::default());
    let mut buf = Vec::new();
    for rep in 0..cli.reps {
        let keep = cli.keep && rep + 1 == cli.reps;
        // Alternate which level goes first, so that neither always follows
        // the other's deletions and writeback.
        if rep % 2 == 0 {
            raw_rep(run, &input, keep, &mut buf, &mut raw)?;
            store_rep(run, &input, rep, keep, &mut store)?;
        } else {
            store_rep(run, &input, rep, keep, &mut store)?;
            raw_rep(run, &input, keep, &mut buf, &mut raw)?;
        }
        eprintln!(
            "  {} rep {rep}: raw write {:.0} MiB/s, cold read {:.0} MiB/s; checkpoint \
             {:.0} MiB/s, recovery {:.1} ms",
            input.tag,
            mib_s(size, raw.write_s[rep]),
            mib_s(size, raw.cold_s[rep]),
            mib_s(size, store.write_s[rep]),
            store.recover_s[rep] * 1e3
        );
    }
    Ok((raw, store))
}

fn run(cli: &Cli, run: &Path) -> Result<Vec<Point>, BenchError> {
    let engine_cfg = EngineConfig {
        shards: cli.shards,
        value_bytes: cli.value_bytes,
        reps: cli.reps,
    };
    let mut points = Vec::new();
    for &size in &cli.sizes {
        eprintln!("{}: raw + storage ...", human(size));
        let (raw, store) = run_disk(cli, run, size)?;
        let engine = if !cli.no_engine && size <= cli.engine_max {
            eprintln!("{}: engine ...", human(size));
            let dir = run.join(format!("engine-{}", human(size).replace(' ', "")));
            let r = engine_run(&dir, size, engine_cfg)?;
            eprintln!(
                "  load {:.1} s, checkpoint {:.1} ms, deploy {:.1} ms",
                r.load_s,
                ms(&r.checkpoint_s).median,
                ms(&r.deploy_s).median
            );
            if !cli.keep {
                remove_dir(&dir)?;
            }
            Some(r)
        } else {
            None
        };
        points.push(Point {
            size,
            raw,
            store,
            engine,
        });
    }
    Ok(points)
}

fn spread(s: Spread, prec: usize) -> String {
    format!("{:.p$} ({:.p$}-{:.p$})", s.median, s.min, s.max, p = prec)
}

fn ratio(x: Spread, base: Spread) -> f64 {
    x.median / base.median.max(1e-9)
}

fn pct(r: Residency) -> String {
    format!("{:.1}%", r.fraction() * 100.0)
}

fn print_tables(cli: &Cli, points: &[Point]) {
    println!();
    println!(
        "raw disk: sequential, 1 MiB requests; MiB/s, median (min-max) of {} reps",
        cli.reps
    );
    println!(
        "{:<9} {:>24} {:>24} {:>24} {:>14}",
        "size", "write+fdatasync", "cold read", "warm read", "cached@cold"
    );
    for p in points {
        println!(
            "{:<9} {:>24} {:>24} {:>24} {:>14}",
            human(p.size),
            spread(p.raw_write(), 0),
            spread(p.raw_cold(), 0),
            spread(rate(p.size, &p.raw.warm_s), 0),
            pct(p.raw.residue)
        );
    }

    println!();
    println!(
        "storage checkpoint: begin + {} puts + commit, then cold Checkpoints::open + every \
         state(op); median (min-max)",
        cli.ops
    );
    println!(
        "{:<9} {:>9} {:>22} {:>20} {:>9} {:>22} {:>20} {:>9} {:>9} {:>10} {:>9} {:>8}",
        "size",
        "file MiB",
        "write ms",
        "write MiB/s",
        "/raw wr",
        "recover ms",
        "recover MiB/s",
        "/raw rd",
        "open ms",
        "parts ms",
        "parts/rd",
        "cached"
    );
    for p in points {
        let w = rate(p.size, &p.store.write_s);
        let r = rate(p.size, &p.store.recover_s);
        let z = rate(p.size, &p.store.parts_s);
        println!(
            "{:<9} {:>9.1} {:>22} {:>20} {:>8.2}x {:>22} {:>20} {:>8.2}x {:>9.1} {:>10.1} {:>8.2}x {:>8}",
            human(p.size),
            p.store.file_bytes as f64 / MIB as f64,
            spread(ms(&p.store.write_s), 1),
            spread(w, 0),
            ratio(w, p.raw_write()),
            spread(ms(&p.store.recover_s), 1),
            spread(r, 0),
            ratio(r, p.raw_cold()),
            ms(&p.store.open_s).median,
            ms(&p.store.parts_s).median,
            ratio(z, p.raw_cold()),
            pct(p.store.residue)
        );
    }

    println!();
    if cli.no_engine {
        println!("engine: skipped (--no-engine)");
        return;
    }
    println!(
        "engine: durable app, one Keyed<Vec<u8>> operator, {} B per key, {} shards; \
         per rep a cold new Node + deploy, then AppHandle::checkpoint (whole); median (min-max)",
        cli.value_bytes, cli.shards
    );
    println!(
        "{:<9} {:>8} {:>9} {:>22} {:>18} {:>9} {:>22} {:>18} {:>9} {:>10} {:>9} {:>8} {:>7} {:>7}",
        "state",
        "keys",
        "file MiB",
        "checkpoint ms",
        "ckpt MiB/s",
        "/raw wr",
        "deploy ms",
        "deploy MiB/s",
        "/raw rd",
        "1st out ms",
        "start ms",
        "replay",
        "cached",
        "load s"
    );
    for p in points {
        let Some(e) = &p.engine else {
            println!(
                "{:<9} (not run: above --engine-max {})",
                human(p.size),
                human(cli.engine_max)
            );
            continue;
        };
        let c = rate(e.state_bytes, &e.checkpoint_s);
        let d = rate(e.state_bytes, &e.deploy_s);
        println!(
            "{:<9} {:>8} {:>9.1} {:>22} {:>18} {:>8.2}x {:>22} {:>18} {:>8.2}x {:>10.1} {:>9.1} {:>8} {:>7} {:>7.1}",
            human(e.state_bytes),
            e.keys,
            e.checkpoint_file_bytes.iter().max().copied().unwrap_or(0) as f64 / MIB as f64,
            spread(ms(&e.checkpoint_s), 1),
            spread(c, 0),
            ratio(c, p.raw_write()),
            spread(ms(&e.deploy_s), 1),
            spread(d, 0),
            ratio(d, p.raw_cold()),
            ms(&e.first_output_s).median,
            ms(&e.node_start_s).median,
            e.replayed.iter().max().copied().unwrap_or(0),
            pct(e.residue),
            e.load_s
        );
    }
}

fn eviction_note(points: &[Point]) -> String {
    let worst = points.iter().fold(Residency::default(), |w, p| {
        let e = p
            .engine
            .as_ref()
            .map_or(Residency::default(), |e| e.residue);
        w.worst(p.raw.residue).worst(p.store.residue).worst(e)
    });
    if worst.fraction() < 0.01 {
        format!(
            "page-cache eviction worked: at most {} of a file's pages stayed resident after \
             fdatasync + posix_fadvise(DONTNEED) (checked with mincore), so cold reads came \
             from the disk (or from the hypervisor's cache, which the guest cannot see)",
            pct(worst)
        )
    } else {
        format!(
            "page-cache eviction was NOT fully possible: up to {} of a file's pages stayed \
             resident after posix_fadvise(DONTNEED); cold figures are partly warm",
            pct(worst)
        )
    }
}

fn to_json(cli: &Cli, run: &Path, free: u64, points: &[Point]) -> serde_json::Value {
    let secs = |v: &[f64]| serde_json::json!(v);
    let sizes: Vec<serde_json::Value> = points
        .iter()
        .map(|p| {
            let sw = rate(p.size, &p.store.write_s);
            let sr = rate(p.size, &p.store.recover_s);
            let engine = p.engine.as_ref().map(|e| {
                let c = rate(e.state_bytes, &e.checkpoint_s);
                let d = rate(e.state_bytes, &e.deploy_s);
                serde_json::json!({
                    "keys": e.keys,
                    "value_bytes": cli.value_bytes,
                    "state_bytes": e.state_bytes,
                    "checkpoint_file_bytes": e.checkpoint_file_bytes,
                    "app_dir_bytes": e.app_dir_bytes,
                    "app_dir_files": e.app_dir_files,
                    "load_s": e.load_s,
                    "load_checkpoint_s": e.load_checkpoint_s,
                    "checkpoint_s": secs(&e.checkpoint_s),
                    "checkpoint_ms": ms(&e.checkpoint_s).json(),
                    "checkpoint_mib_s": c.json(),
                    "checkpoint_over_raw_write": ratio(c, p.raw_write()),
                    "node_start_s": secs(&e.node_start_s),
                    "deploy_s": secs(&e.deploy_s),
                    "deploy_ms": ms(&e.deploy_s).json(),
                    "deploy_mib_s": d.json(),
                    "deploy_over_raw_cold_read": ratio(d, p.raw_cold()),
                    "first_output_s": secs(&e.first_output_s),
                    "replayed_entries": e.replayed,
                    "resident_after_evict": e.residue.fraction(),
                })
            });
            serde_json::json!({
                "bytes": p.size,
                "raw": {
                    "write_s": secs(&p.raw.write_s),
                    "cold_read_s": secs(&p.raw.cold_s),
                    "warm_read_s": secs(&p.raw.warm_s),
                    "write_mib_s": p.raw_write().json(),
                    "cold_read_mib_s": p.raw_cold().json(),
                    "warm_read_mib_s": rate(p.size, &p.raw.warm_s).json(),
                    "resident_after_evict": p.raw.residue.fraction(),
                },
                "storage": {
                    "ops": cli.ops,
                    "file_bytes": p.store.file_bytes,
                    "write_s": secs(&p.store.write_s),
                    "open_s": secs(&p.store.open_s),
                    "recover_s": secs(&p.store.recover_s),
                    "recover_parts_s": secs(&p.store.parts_s),
                    "recover_parts_mib_s": rate(p.size, &p.store.parts_s).json(),
                    "write_mib_s": sw.json(),
                    "recover_mib_s": sr.json(),
                    "write_over_raw_write": ratio(sw, p.raw_write()),
                    "recover_over_raw_cold_read": ratio(sr, p.raw_cold()),
                    "resident_after_evict": p.store.residue.fraction(),
                },
                "engine": engine,
            })
        })
        .collect();
    serde_json::json!({
        "unit": "MiB = 2^20 bytes; times in seconds unless named _ms",
        "dir": run.display().to_string(),
        "free_bytes_before": free,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "reps": cli.reps,
        "chunk_bytes": sb::CHUNK,
        "ops": cli.ops,
        "engine_max_bytes": if cli.no_engine { 0 } else { cli.engine_max },
        "engine_shards": cli.shards,
        "sizes": sizes,
    })
}

fn main() {
    let cli = Cli::parse();
    validate(&cli);
    if let Err(e) = fs::create_dir_all(&cli.dir) {
        fail(format!("cannot create --dir {}: {e}", cli.dir.display()));
    }
    let path = cli.dir.join(format!("run-{}", std::process::id()));
    if let Err(e) = fs::create_dir(&path) {
        fail(format!(
            "cannot create the run folder {}: {e}",
            path.display()
        ));
    }
    let run_dir = RunDir {
        path,
        keep: cli.keep,
    };
    let engine_max = if cli.no_engine { 0 } else { cli.engine_max };
    let need = sb::space_needed(&cli.sizes, engine_max, cli.value_bytes, cli.keep);
    let free = match sb::free_bytes(&run_dir.path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("storage: {e}");
            std::process::exit(1);
        }
    };
    if need > free {
        eprintln!(
            "storage: {}",
            BenchError::NoSpace {
                dir: run_dir.path.clone(),
                need,
                free
            }
        );
        drop(run_dir);
        std::process::exit(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "storage: {} cores; folder {} ({} MiB free, run needs ~{} MiB); sizes {}; {} reps",
        cores,
        run_dir.path.display(),
        free / MIB,
        need / MIB,
        cli.sizes
            .iter()
            .map(|&s| human(s))
            .collect::<Vec<_>>()
            .join(", "),
        cli.reps
    );

    let points = match run(&cli, &run_dir.path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("storage: {e}");
            drop(run_dir);
            std::process::exit(1);
        }
    };
    print_tables(&cli, &points);
    println!();
    println!("{}.", eviction_note(&points));
    println!(
        "/raw wr, /raw rd: the median rate over the raw sequential write (incl. fdatasync) or \
         cold read rate of the same size; engine rates are of the state bytes (keys x value), \
         file MiB is what the checkpoint file holds. recover = open + read every state(op) \
         (joins the 8 MiB parts, as the engine's restore does); parts = open + read the parts \
         in place (state_parts, zero-copy); deploy \
         = Node::deploy until it returns (restore + replay); 1st out = deploy's return to a new \
         event's output at the sink; cached = worst share of pages still in the page cache \
         after eviction."
    );
    if let Some(path) = &cli.json {
        let doc = to_json(&cli, &run_dir.path, free, &points);
        let text = serde_json::to_string_pretty(&doc)
            .unwrap_or_else(|e| panic!("a JSON value serializes: {e}"));
        match fs::write(path, text) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("storage: cannot write --json {}: {e}", path.display());
                drop(run_dir);
                std::process::exit(1);
            }
        }
    }
}
