//! `cold_start`: what it costs to wake a virtual actor, by state size.
//!
//! One keyed operator (`store`) holds S bytes of state (1 KiB values, one
//! per key); each event writes one value and emits one output, so the
//! sink's end-to-end latency is the time from the client's hand-off to the
//! output. For each size, three ways the event finds the actor:
//!
//! - `warm`: active (its state in memory, nothing to do but run);
//! - `dormant-mem`: deactivated after `--idle-ms` in an app that is not
//!   durable: the protocol state is rebuilt, the state stays in memory;
//! - `dormant-spilled`: deactivated in a durable app: the state was written
//!   to a spill segment and dropped from memory; the event maps the file,
//!   validates it (checksums, bytecheck), deserializes the state and deletes
//!   the file (`engine/src/spill.rs`). `restore` is the shard's own timing
//!   of that step (`ShardStats::unspill_ns`).
//!
//! Each run waits for the actor to be deactivated (and spilled) again before
//! the next sample; the durable app's events also go through its ingress
//! log (group commit + fdatasync), which the `warm` durable row shows.
//!
//! Rerun: `cargo run --release -p dirigo-bench --bin cold_start` (defaults:
//! sizes 1KiB,1MiB,16MiB,128MiB, 15 samples each, 2 shards pinned, data
//! under target/cold-start, removed at the end).

/// The allocator of the binaries (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use dirigo_engine::rkyv;
use dirigo_engine::{
    key_hash, AppBuilder, AppHandle, Context, Function, Keyed, Node, NodeConfig, Placement,
    SinkEvent, SinkReceiver, SourceHandle,
};

#[derive(Parser, Debug)]
#[command(about = "Latency of an event that wakes a dormant actor, by state size")]
struct Cli {
    /// State sizes (bytes; K/M/G suffixes, binary), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1KiB,1MiB,16MiB,128MiB")]
    sizes: Vec<String>,
    /// Samples per size and mode.
    #[arg(long, default_value_t = 15)]
    samples: usize,
    /// Deactivate an actor idle this long, ms.
    #[arg(long, default_value_t = 50)]
    idle_ms: u64,
    /// Data folder (removed at the end unless --keep).
    #[arg(long, default_value = "target/cold-start")]
    dir: PathBuf,
    #[arg(long)]
    keep: bool,
    #[arg(long, default_value_t = 2)]
    shards: usize,
    #[arg(long)]
    unpinned: bool,
    /// Also write the table as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

const VALUE: usize = 1024;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug)]
#[rkyv(crate = dirigo_engine::rkyv)]
struct Put {
    slot: u64,
    value: Vec<u8>,
}

struct Store;

impl Function for Store {
    type In = Put;
    type Out = u64;
    type State = Keyed<Vec<u8>>;
    fn on_message(&self, s: &mut Keyed<Vec<u8>>, key: u64, p: Put, ctx: &mut Context<'_, u64>) {
        let _ = p.slot;
        s.insert(key, p.value);
        ctx.emit(key, s.len() as u64);
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((t, 1));
    num.trim()
        .parse::<u64>()
        .map(|n| n * mul)
        .map_err(|_| format!("not a size: {s:?} (e.g. 16MiB)"))
}

fn human(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

struct Setup {
    node: Node,
    app: AppHandle,
    src: SourceHandle<Put>,
    rx: SinkReceiver<u64>,
}

fn setup(cli: &Cli, durable: bool, name: &str) -> Setup {
    let node = Node::start(NodeConfig {
        shards: cli.shards,
        placement: if cli.unpinned {
            Placement::Unpinned
        } else {
            Placement::Pinned
        },
        data_dir: Some(cli.dir.clone()),
        idle_deactivate: Duration::from_millis(cli.idle_ms),
        ..NodeConfig::default()
    })
    .unwrap_or_else(|e| fail(&format!("node: {e}")));
    let mut b = AppBuilder::new(name).slo(Duration::from_secs(10));
    if durable {
        b = b.durable();
    }
    let src = if durable {
        b.durable_source::<Put>("puts")
    } else {
        b.source::<Put>("puts")
    };
    let out = if durable {
        b.durable_operator("store", Store, &[src])
    } else {
        b.operator("store", Store, &[src])
    };
    let rx = b.sink("out", out);
    let app = node
        .deploy(b.build().unwrap_or_else(|e| fail(&format!("app: {e}"))))
        .unwrap_or_else(|e| fail(&format!("deploy: {e}")));
    let src = app
        .source::<Put>("puts")
        .unwrap_or_else(|e| fail(&format!("source: {e}")));
    Setup { node, app, src, rx }
}

fn fail(msg: &str) -> ! {
    eprintln!("cold_start: {msg}");
    std::process::exit(1)
}

/// Fill the store with `bytes` of values.
fn load(s: &Setup, bytes: u64) {
    let n = bytes.div_ceil(VALUE as u64);
    let mut slot = 0u64;
    while slot < n {
        let end = (slot + 512).min(n);
        let batch = (slot..end)
            .map(|i| {
                (
                    key_hash(&i.to_le_bytes()),
                    Put {
                        slot: i,
                        value: vec![i as u8; VALUE],
                    },
                )
            })
            .collect();
        s.src
            .send_batch(batch, Duration::from_secs(30))
            .unwrap_or_else(|r| fail(&format!("load: {}", r.error)));
        slot = end;
    }
    s.app
        .quiesce(Duration::from_secs(120))
        .unwrap_or_else(|e| fail(&format!("load: {e}")));
    s.rx.drain();
}

/// One event to an existing key; its end-to-end latency, ns.
fn probe(s: &Setup, i: u64) -> u64 {
    let put = Put {
        slot: 0,
        value: vec![i as u8; VALUE],
    };
    s.src
        .send_batch(
            vec![(key_hash(&0u64.to_le_bytes()), put)],
            Duration::from_secs(30),
        )
        .unwrap_or_else(|r| fail(&format!("probe: {}", r.error)));
    loop {
        match s.rx.recv_timeout(Duration::from_secs(60)) {
            Some(SinkEvent::Data { latency_ns, .. }) => return latency_ns,
            Some(SinkEvent::Barrier(_)) => {}
            None => fail("no output within 60 s"),
        }
    }
}

/// Wait until the store is dormant (and, if `spilled`, in a file).
fn wait_dormant(s: &Setup, spilled: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = s
            .node
            .stats()
            .unwrap_or_else(|e| fail(&format!("stats: {e}")));
        let lessors: usize = st.shards.iter().map(|s| s.lessors).sum();
        let n_spilled: usize = st.shards.iter().map(|s| s.spilled).sum();
        // The sink (not durable) and the store both go dormant.
        if lessors == 0 && (!spilled || n_spilled >= 1) {
            return;
        }
        if Instant::now() > deadline {
            fail("the actor did not go dormant within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn unspill_ns(s: &Setup) -> (u64, u64) {
    let st = s
        .node
        .stats()
        .unwrap_or_else(|e| fail(&format!("stats: {e}")));
    (
        st.shards.iter().map(|s| s.unspills).sum(),
        st.shards.iter().map(|s| s.unspill_ns).sum(),
    )
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

struct Row {
    size: u64,
    mode: &'static str,
    p50: u64,
    min: u64,
    max: u64,
    restore_p50: Option<u64>,
}

fn measure(cli: &Cli, size: u64, durable: bool, idx: usize, rows: &mut Vec<Row>) {
    let name = format!("cold{idx}{}", if durable { "d" } else { "m" });
    let s = setup(cli, durable, &name);
    load(&s, size);
    // Warm: back to back, well inside the idle timeout.
    let mut warm: Vec<u64> = (0..cli.samples as u64).map(|i| probe(&s, i)).collect();
    let (lo, hi) = (
        warm.iter().copied().min().unwrap_or(0),
        warm.iter().copied().max().unwrap_or(0),
    );
    rows.push(Row {
        size,
        mode: if durable { "warm (durable)" } else { "warm" },
        p50: median(&mut warm),
        min: lo,
        max: hi,
        restore_p50: None,
    });
    let mut cold = Vec::with_capacity(cli.samples);
    let mut restore = Vec::with_capacity(cli.samples);
    for i in 0..cli.samples as u64 {
        wait_dormant(&s, durable);
        let (n0, t0) = unspill_ns(&s);
        cold.push(probe(&s, i));
        let (n1, t1) = unspill_ns(&s);
        if durable && n1 > n0 {
            restore.push((t1 - t0) / (n1 - n0));
        }
    }
    let (lo, hi) = (
        cold.iter().copied().min().unwrap_or(0),
        cold.iter().copied().max().unwrap_or(0),
    );
    rows.push(Row {
        size,
        mode: if durable {
            "dormant-spilled"
        } else {
            "dormant-mem"
        },
        p50: median(&mut cold),
        min: lo,
        max: hi,
        restore_p50: (!restore.is_empty()).then(|| median(&mut restore)),
    });
    s.node.shutdown();
}

fn main() {
    let cli = Cli::parse();
    let sizes: Vec<u64> = cli
        .sizes
        .iter()
        .map(|s| parse_size(s).unwrap_or_else(|e| fail(&e)))
        .collect();
    if cli.samples == 0 {
        fail("--samples must be at least 1");
    }
    if cli.dir.exists() {
        let _ = std::fs::remove_dir_all(&cli.dir);
    }
    let mut rows = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        eprintln!("state {} ...", human(size));
        measure(&cli, size, false, i, &mut rows);
        measure(&cli, size, true, i, &mut rows);
    }
    println!(
        "cold start of a virtual actor: {} shards ({}), idle timeout {} ms, {} samples, 1 KiB values",
        cli.shards,
        if cli.unpinned { "unpinned" } else { "pinned" },
        cli.idle_ms,
        cli.samples
    );
    println!(
        "{:>8}  {:<16} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "state", "mode", "p50 ms", "min ms", "max ms", "restore ms", "MB/s"
    );
    for r in &rows {
        let (restore, rate) = match r.restore_p50 {
            Some(ns) if ns > 0 => (
                format!("{:.3}", ms(ns)),
                format!("{:.0}", r.size as f64 / 1e6 / (ns as f64 / 1e9)),
            ),
            _ => ("-".into(), "-".into()),
        };
        println!(
            "{:>8}  {:<16} {:>10.3} {:>10.3} {:>10.3} {:>12} {:>10}",
            human(r.size),
            r.mode,
            ms(r.p50),
            ms(r.min),
            ms(r.max),
            restore,
            rate
        );
    }
    println!(
        "\np50/min/max: end-to-end latency of one event (client hand-off to sink output); \
         restore: the shard's time to map, validate and deserialize the spilled state (p50); \
         MB/s: state bytes over restore time."
    );
    if let Some(path) = &cli.json {
        let doc = serde_json::json!({
            "shards": cli.shards,
            "idle_ms": cli.idle_ms,
            "samples": cli.samples,
            "rows": rows.iter().map(|r| serde_json::json!({
                "state_bytes": r.size,
                "mode": r.mode,
                "p50_ns": r.p50,
                "min_ns": r.min,
                "max_ns": r.max,
                "restore_p50_ns": r.restore_p50,
            })).collect::<Vec<_>>(),
        });
        let text =
            serde_json::to_string_pretty(&doc).unwrap_or_else(|e| fail(&format!("json: {e}")));
        std::fs::write(path, text).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
    }
    if !cli.keep {
        let _ = std::fs::remove_dir_all(&cli.dir);
    }
}
