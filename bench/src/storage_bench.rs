//! The `storage` benchmark's library (the binary is `src/bin/storage.rs`):
//! what it takes to write a checkpoint of S bytes and to recover from it,
//! next to what the same disk does with S bytes written and read plainly.
//!
//! Three levels, all on files in one folder of the disk under test:
//!
//! - **raw** ([`raw_write`], [`raw_read`]): S bytes written in 1 MiB
//!   `write`s to a new file, then `fdatasync`; the file read back in 1 MiB
//!   `read`s after evicting it from the page cache ([`evict`]), and once more
//!   warm. The floor the other two levels are compared against.
//! - **storage** ([`checkpoint_write`], [`checkpoint_recover`]):
//!   `dirigo_storage::Checkpoints::begin`, one `put` per operator (S split
//!   over K operators), `commit` (seal, fdatasync, manifest replace, folder
//!   fsync); then, after evicting the folder, `Checkpoints::open` (maps and
//!   validates the whole segment) and every operator's `state(op)`.
//! - **engine** ([`engine_run`]): a durable app whose one `Keyed<Vec<u8>>`
//!   operator holds S bytes, loaded and checkpointed once; then, each rep,
//!   a cold recovery (a new `Node` and `deploy` of the same app on the same
//!   data folder: restore the checkpoint, replay the log after it; then one
//!   event through to the sink) followed by a timed `AppHandle::checkpoint`
//!   (the first after a deploy, hence whole even where the engine would
//!   otherwise save only changes).
//!
//! Every read is used: the bytes are summed ([`checksum`]) and the sum is
//! compared with the one of the data written, so a read cannot be optimized
//! away and a wrong read-back is an error, not a fast number.
//!
//! Cold reads need the page cache emptied of the file, without root:
//! [`evict`] fdatasyncs it (dirty pages cannot be dropped) and calls
//! `posix_fadvise(POSIX_FADV_DONTNEED)`, then counts the pages still resident
//! with `mincore`, so each cold figure says whether it really was cold. (A
//! virtual disk may still be served from the host's cache; nothing in the
//! guest can see or drop that.)
//!
//! Sizes are binary: `MB` means MiB (2^20 bytes), `GB` GiB; rates are MiB/s.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dirigo_engine::{
    key_hash, App, AppBuilder, AutoScale, Context, EngineError, Function, Keyed, Node, NodeConfig,
    Placement, SinkEvent, SinkReceiver, SourceHandle,
};
use dirigo_storage::{Checkpoints, StorageError};

/// One MiB.
pub const MIB: u64 = 1 << 20;
/// Size of each `write`/`read` of the raw scenario.
pub const CHUNK: usize = 1 << 20;

/// What can stop a run, naming the file or the size it was at.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The file or folder it was on.
        path: PathBuf,
        /// What was being done (`open`, `write`, `fdatasync`, ...).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// `dirigo_storage` refused or failed.
    #[error("storage, {}: {source}", dir.display())]
    Storage {
        /// The checkpoint folder.
        dir: PathBuf,
        /// The storage error.
        source: StorageError,
    },
    /// The engine refused or failed.
    #[error("engine, {what}: {source}")]
    Engine {
        /// The step it failed at.
        what: String,
        /// The engine error.
        source: EngineError,
    },
    /// The disk under test has too little free space for the run.
    #[error(
        "not enough free space in {}: the run needs about {} MiB, {} MiB are free \
         (run fewer or smaller --sizes, or point --dir at a bigger disk)",
        dir.display(), need / MIB, free / MIB
    )]
    NoSpace {
        /// The folder the run writes in.
        dir: PathBuf,
        /// Bytes the run needs at its peak.
        need: u64,
        /// Bytes free there.
        free: u64,
    },
    /// Data read back does not sum to what was written.
    #[error("{what}: read back a different sum ({got:#x}) than written ({want:#x})")]
    Mismatch {
        /// Which read.
        what: String,
        /// The sum read.
        got: u64,
        /// The sum written.
        want: u64,
    },
    /// Anything else, said in words (a missing checkpoint, a wrong count).
    #[error("{0}")]
    Other(String),
}

/// The storage benchmark's results.
pub type Result<T> = std::result::Result<T, BenchError>;

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> BenchError + 'a {
    move |source| BenchError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

fn storage_err(dir: &Path) -> impl FnOnce(StorageError) -> BenchError + '_ {
    move |source| BenchError::Storage {
        dir: dir.to_owned(),
        source,
    }
}

fn engine_err(what: impl Into<String>) -> impl FnOnce(EngineError) -> BenchError {
    let what = what.into();
    move |source| BenchError::Engine { what, source }
}

/// Parses a size: a number with an optional binary suffix (`K`, `KB`,
/// `KiB`, `M`, `MB`, `MiB`, `G`, `GB`, `GiB`, any case; all powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 1MB, 512KiB, 1GB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use KB, MB or GB)")),
    };
    n.checked_mul(mult)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{s:?} must be between 1 byte and 16 EiB"))
}

/// A size for people: `1 MiB`, `100 MiB`, `1 GiB`, `1.5 KiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (m, u) in UNITS {
        if bytes >= m {
            return if bytes % m == 0 {
                format!("{} {u}", bytes / m)
            } else {
                format!("{:.1} {u}", bytes as f64 / m as f64)
            };
        }
    }
    format!("{bytes} B")
}

/// MiB/s of `bytes` in `secs`.
pub fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / MIB as f64 / secs.max(1e-9)
}

/// Median and range of a few repetitions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    /// The median (of an even count, the mean of the middle two).
    pub median: f64,
    /// The least.
    pub min: f64,
    /// The greatest.
    pub max: f64,
}

impl Spread {
    /// # Panics
    /// If `xs` is empty (the binary refuses `--reps 0`).
    pub fn of(xs: &[f64]) -> Spread {
        assert!(!xs.is_empty(), "a spread of no samples");
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    /// `f` of each figure, the ends kept in order (a time's spread as a
    /// rate's).
    pub fn map(self, f: impl Fn(f64) -> f64) -> Spread {
        // A decreasing `f` (a rate from a time) swaps the ends.
        let (a, b) = (f(self.min), f(self.max));
        Spread {
            median: f(self.median),
            min: a.min(b),
            max: a.max(b),
        }
    }

    /// `{"median", "min", "max"}`.
    pub fn json(self) -> serde_json::Value {
        serde_json::json!({ "median": self.median, "min": self.min, "max": self.max })
    }
}

/// Pages of files in the page cache, as `mincore` sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Residency {
    /// Pages in the page cache.
    pub resident: u64,
    /// Pages of the files.
    pub pages: u64,
}

impl Residency {
    /// Resident pages over pages (0 for no pages).
    pub fn fraction(self) -> f64 {
        if self.pages == 0 {
            0.0
        } else {
            self.resident as f64 / self.pages as f64
        }
    }

    /// The worse (more resident) of two.
    pub fn worst(self, other: Residency) -> Residency {
        if other.fraction() > self.fraction() {
            other
        } else {
            self
        }
    }

    fn add(self, other: Residency) -> Residency {
        Residency {
            resident: self.resident + other.resident,
            pages: self.pages + other.pages,
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant; no memory of ours is involved.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// How much of `f` (of `len` bytes) is in the page cache.
fn residency(f: &File, path: &Path, len: u64) -> Result<Residency> {
    if len == 0 {
        return Ok(Residency::default());
    }
    // SAFETY: memmap2 maps are unsafe because another process may change the
    // file under the map; this map is only handed to mincore, which reads
    // the page tables, never the mapped bytes, so no such change can break
    // anything we rely on. The map lives until the end of this function.
    let map = unsafe { memmap2::MmapOptions::new().map(f) }.map_err(io_err(path, "mmap"))?;
    let pages = map.len().div_ceil(page_size());
    let mut vec = vec![0u8; pages];
    // SAFETY: `map.as_ptr()` is the page-aligned start of a live mapping of
    // `map.len()` bytes, and `vec` holds one byte for each of its pages, as
    // mincore requires; mincore writes only into `vec`.
    let rc = unsafe {
        libc::mincore(
            map.as_ptr() as *mut libc::c_void,
            map.len(),
            vec.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io_err(path, "mincore")(io::Error::last_os_error()));
    }
    Ok(Residency {
        resident: vec.iter().filter(|&&b| b & 1 != 0).count() as u64,
        pages: pages as u64,
    })
}

/// Evicts one file from the page cache: fdatasync (dirty pages cannot be
/// dropped), `posix_fadvise(POSIX_FADV_DONTNEED)` over the whole file (no
/// root needed for clean pages), then reports what is still resident.
pub fn evict(path: &Path) -> Result<Residency> {
    let f = File::open(path).map_err(io_err(path, "open"))?;
    f.sync_data().map_err(io_err(path, "fdatasync"))?;
    let len = f.metadata().map_err(io_err(path, "stat"))?.len();
    // SAFETY: the descriptor is open for the whole call (`f` outlives it);
    // posix_fadvise only advises the kernel about the file's cached pages
    // and touches no memory of this process.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(io_err(path, "posix_fadvise")(io::Error::from_raw_os_error(
            rc,
        )));
    }
    residency(&f, path, len)
}

/// Evicts every file under `dir` (recursively); the sum of what stays.
pub fn evict_tree(dir: &Path) -> Result<Residency> {
    let mut total = Residency::default();
    for path in files_under(dir)? {
        total = total.add(evict(&path)?);
    }
    Ok(total)
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
        let e = e.map_err(io_err(dir, "list"))?;
        let p = e.path();
        let ty = e.file_type().map_err(io_err(&p, "stat"))?;
        if ty.is_dir() {
            out.extend(files_under(&p)?);
        } else if ty.is_file() {
            out.push(p);
        }
    }
    Ok(out)
}

/// The files under `dir`: (path relative to `dir`, bytes), sorted.
fn listing(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for p in files_under(dir)? {
        let len = fs::metadata(&p).map_err(io_err(&p, "stat"))?.len();
        let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
        out.push((rel, len));
    }
    out.sort();
    Ok(out)
}

/// Bytes an unprivileged process may still write on the file system of `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io_err(dir, "statvfs")(io::Error::from(e)))?;
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path that outlives the call, and `st`
    // points to writable memory for one `statvfs`, which the call fills
    // when it returns 0.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io_err(dir, "statvfs")(io::Error::last_os_error()));
    }
    // SAFETY: statvfs returned 0, so it initialized `st`.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Fills `buf` with pseudo-random bytes from `seed` (splitmix64):
/// incompressible, and cheap (a few GB/s).
pub fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed;
    let mut next = || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut words = buf.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&next().to_le_bytes());
    }
    let rest = words.into_remainder();
    let last = next().to_le_bytes();
    rest.copy_from_slice(&last[..rest.len()]);
}

/// Wrapping sum of the little-endian u64 words of `bytes` (plus the trailing
/// bytes one by one): touches every byte, at memory speed. Additive over
/// splits at multiples of 8.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut acc = [0u64; 4];
    let mut blocks = bytes.chunks_exact(32);
    for b in &mut blocks {
        for (i, a) in acc.iter_mut().enumerate() {
            let w: [u8; 8] = b[i * 8..i * 8 + 8]
                .try_into()
                .expect("a 32-byte block holds four 8-byte words");
            *a = a.wrapping_add(u64::from_le_bytes(w));
        }
    }
    let mut sum = acc.iter().fold(0u64, |s, &a| s.wrapping_add(a));
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        let w: [u8; 8] = w.try_into().expect("chunks_exact(8) yields 8 bytes");
        sum = sum.wrapping_add(u64::from_le_bytes(w));
    }
    for &b in words.remainder() {
        sum = sum.wrapping_add(u64::from(b));
    }
    sum
}

/// The sum [`raw_read`] must find for a file holding `data`.
pub fn chunked_checksum(data: &[u8]) -> u64 {
    data.chunks(CHUNK)
        .fold(0u64, |s, c| s.wrapping_add(checksum(c)))
}

// ---------------------------------------------------------------- raw disk

/// Writes `data` to a new file at `path` in [`CHUNK`]-byte `write`s, then
/// fdatasyncs it. Timed from the create to the end of the sync.
pub fn raw_write(path: &Path, data: &[u8]) -> Result<Duration> {
    let t = Instant::now();
    let mut f = File::create(path).map_err(io_err(path, "create"))?;
    for c in data.chunks(CHUNK) {
        f.write_all(c).map_err(io_err(path, "write"))?;
    }
    f.sync_data().map_err(io_err(path, "fdatasync"))?;
    Ok(t.elapsed())
}

/// Reads the file at `path` in [`CHUNK`]-byte `read`s, summing it. Timed
/// from the open to the last byte. Returns (time, bytes, sum).
pub fn raw_read(path: &Path, buf: &mut Vec<u8>) -> Result<(Duration, u64, u64)> {
    buf.resize(CHUNK, 0);
    let t = Instant::now();
    let mut f = File::open(path).map_err(io_err(path, "open"))?;
    let (mut n, mut sum) = (0u64, 0u64);
    loop {
        // Fill whole chunks, so the sum is the one chunked_checksum computes.
        let mut got = 0;
        while got < CHUNK {
            match f.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(path, "read")(e)),
            }
        }
        if got == 0 {
            break;
        }
        sum = sum.wrapping_add(checksum(&buf[..got]));
        n += got as u64;
    }
    Ok((t.elapsed(), n, sum))
}

// ------------------------------------------------------ storage checkpoint

/// Commits one checkpoint holding `parts[i]` as operator `i`'s state into
/// the (new, empty) folder `dir`. Timed: `begin`, the `put`s, `commit`.
/// Returns (time, checkpoint file bytes).
pub fn checkpoint_write(dir: &Path, parts: &[&[u8]]) -> Result<(Duration, u64)> {
    let (mut ckpts, newest) = Checkpoints::open(dir).map_err(storage_err(dir))?;
    if newest.is_some() {
        return Err(BenchError::Other(format!(
            "{} already holds a checkpoint; the bench writes into a fresh folder",
            dir.display()
        )));
    }
    let t = Instant::now();
    let mut w = ckpts.begin(ckpts.next_epoch()).map_err(storage_err(dir))?;
    for (op, bytes) in parts.iter().enumerate() {
        let op = u16::try_from(op)
            .map_err(|_| BenchError::Other(format!("{} operators: at most 65536", parts.len())))?;
        w.put(op, bytes).map_err(storage_err(dir))?;
    }
    ckpts.commit(w, &[(0, 0)]).map_err(storage_err(dir))?;
    let took = t.elapsed();
    Ok((took, newest_checkpoint_bytes(dir)?))
}

/// Length of the newest `ckpt-*.seg` file directly in `dir`.
fn newest_checkpoint_bytes(dir: &Path) -> Result<u64> {
    let mut newest: Option<PathBuf> = None;
    for e in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
        let p = e.map_err(io_err(dir, "list"))?.path();
        let is_ckpt = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ckpt-") && n.ends_with(".seg"));
        // Epochs are zero-padded: the greatest name is the newest.
        if is_ckpt && newest.as_ref().is_none_or(|n| p > *n) {
            newest = Some(p);
        }
    }
    let p = newest
        .ok_or_else(|| BenchError::Other(format!("no checkpoint file in {}", dir.display())))?;
    Ok(fs::metadata(&p).map_err(io_err(&p, "stat"))?.len())
}

/// One cold recovery at the storage level.
#[derive(Clone, Copy, Debug)]
pub struct StorageRecovery {
    /// `Checkpoints::open`: manifest, map, validation of every record.
    pub open: Duration,
    /// Open plus reading (and summing) every operator's `state(op)`.
    pub total: Duration,
    /// State bytes read, all operators.
    pub bytes: u64,
    /// The wrapping sum of their [`checksum`]s.
    pub sum: u64,
}

/// How [`checkpoint_recover`] reads the states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAs {
    /// `Checkpoint::state(op)`, as the engine's restore does: a state of
    /// more than one part (over 8 MiB) is joined into an owned buffer.
    Joined,
    /// `Checkpoint::state_parts(op)`: the parts borrowed from the map.
    Parts,
}

/// Opens the newest checkpoint in `dir` and reads every operator's state.
/// The caller evicts `dir` first for a cold read.
pub fn checkpoint_recover(dir: &Path, read: ReadAs) -> Result<StorageRecovery> {
    let t = Instant::now();
    let (_ckpts, newest) = Checkpoints::open(dir).map_err(storage_err(dir))?;
    let open = t.elapsed();
    let cp = newest.ok_or_else(|| {
        BenchError::Other(format!("no checkpoint to recover in {}", dir.display()))
    })?;
    let (mut bytes, mut sum) = (0u64, 0u64);
    let missing = |op: u16| BenchError::Other(format!("operator {op} is listed but has no state"));
    for op in cp.operators() {
        match read {
            ReadAs::Joined => {
                let state = cp.state(op).ok_or_else(|| missing(op))?;
                bytes += state.len() as u64;
                sum = sum.wrapping_add(checksum(&state));
            }
            ReadAs::Parts => {
                // The writer splits at multiples of 8 MiB: the parts' sums
                // add up to the joined state's.
                for part in cp.state_parts(op).ok_or_else(|| missing(op))? {
                    bytes += part.len() as u64;
                    sum = sum.wrapping_add(checksum(part));
                }
            }
        }
    }
    Ok(StorageRecovery {
        open,
        total: t.elapsed(),
        bytes,
        sum,
    })
}

// ------------------------------------------------------------------ engine

/// Input of the engine scenario's app.
#[derive(
    dirigo_engine::rkyv::Archive,
    dirigo_engine::rkyv::Serialize,
    dirigo_engine::rkyv::Deserialize,
    Clone,
    Debug,
)]
#[rkyv(crate = dirigo_engine::rkyv)]
enum Cmd {
    /// Set the key's value to `len` pseudo-random bytes from `seed`. The
    /// event is small, so the ingress log stays small; the state is large.
    Fill {
        /// Seed of the bytes ([`fill`]).
        seed: u64,
        /// How many bytes.
        len: u32,
    },
    /// Emit `(id, keys held)` to the sink.
    Probe {
        /// Tells this probe's answer from a replayed one's.
        id: u64,
    },
}

/// The app's one durable operator: a key-value store of byte strings.
struct Store;

impl Function for Store {
    type In = Cmd;
    type Out = (u64, u64);
    type State = Keyed<Vec<u8>>;

    fn on_message(
        &self,
        s: &mut Keyed<Vec<u8>>,
        key: u64,
        c: Cmd,
        ctx: &mut Context<'_, (u64, u64)>,
    ) {
        match c {
            Cmd::Fill { seed, len } => {
                let mut v = vec![0u8; len as usize];
                fill(&mut v, seed);
                s.insert(key, v);
            }
            Cmd::Probe { id } => ctx.emit(key, (id, s.len() as u64)),
        }
    }
}

/// Name of the app; its folder is `<data_dir>/store`.
const APP: &str = "store";
const SOURCE: &str = "fills";
/// Events per `send_batch` while loading (the engine's default max batch).
const LOAD_BATCH: usize = 4096;
/// Generous: a 1 GiB load on two shared cores takes tens of seconds.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

fn app() -> Result<(App, SinkReceiver<(u64, u64)>)> {
    let mut b = AppBuilder::new(APP).best_effort().durable();
    let src = b.durable_source::<Cmd>(SOURCE);
    let store = b.durable_operator("store", Store, &[src]);
    let rx = b.sink("out", store);
    let app = b.build().map_err(engine_err("build the app"))?;
    Ok((app, rx))
}

fn key_of(i: u64) -> u64 {
    key_hash(&i.to_le_bytes())
}

fn probe_key() -> u64 {
    key_hash(b"probe")
}

/// How the engine scenario runs.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Shards of the node (unpinned, autoscaling off).
    pub shards: usize,
    /// Bytes of each key's value: the state is `size / value_bytes` keys.
    pub value_bytes: u32,
    /// Recoveries (each followed by a timed checkpoint).
    pub reps: usize,
}

fn start_node(data_dir: &Path, shards: usize) -> Result<Node> {
    Node::start(NodeConfig {
        shards,
        // Two shards, the bench thread and the journal share two cores.
        placement: Placement::Unpinned,
        data_dir: Some(data_dir.to_owned()),
        // The state stays on its home shard: no lessee splits it.
        autoscale: AutoScale {
            enabled: false,
            ..AutoScale::default()
        },
        ..NodeConfig::default()
    })
    .map_err(engine_err("start a node"))
}

/// Sends a probe and waits for its answer: the keys the store holds.
fn probe(src: &SourceHandle<Cmd>, rx: &SinkReceiver<(u64, u64)>, id: u64) -> Result<u64> {
    src.send(probe_key(), Cmd::Probe { id })
        .map_err(engine_err(format!("send probe {id}")))?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            // A probe logged by an earlier recovery, replayed: not ours.
            Some(SinkEvent::Data {
                value: (got, keys), ..
            }) if got == id => return Ok(keys),
            Some(_) => {}
            None => {
                return Err(BenchError::Other(format!(
                    "no answer to probe {id} within {PROBE_TIMEOUT:?}"
                )))
            }
        }
    }
}

/// Figures of the engine scenario at one size.
#[derive(Clone, Debug, Default)]
pub struct EngineResult {
    /// Keys the store holds.
    pub keys: u64,
    /// Keys times value bytes: the state the app holds.
    pub state_bytes: u64,
    /// Sending the fill events and draining them (untimed setup).
    pub load_s: f64,
    /// The first checkpoint, after the load (also truncates the log).
    pub load_checkpoint_s: f64,
    /// Bytes of the checkpoint file each timed checkpoint wrote.
    pub checkpoint_file_bytes: Vec<u64>,
    /// Everything in the app's folder after the last timed checkpoint.
    pub app_dir_bytes: u64,
    /// The files of the app's folder then: (path in the folder, bytes).
    pub app_dir_files: Vec<(String, u64)>,
    /// Each rep's timed checkpoint (`AppHandle::checkpoint`), s.
    pub checkpoint_s: Vec<f64>,
    /// Each rep's `Node::start` on the data folder, s.
    pub node_start_s: Vec<f64>,
    /// `Node::deploy` until it returns: checkpoint open, restore, replay.
    pub deploy_s: Vec<f64>,
    /// From deploy's return to a new event's output at the sink.
    pub first_output_s: Vec<f64>,
    /// Log entries replayed at each recovery (probes of earlier reps).
    pub replayed: Vec<u64>,
    /// The worst page-cache residue after evicting the app's folder.
    pub residue: Residency,
}

/// The engine scenario at `size` bytes of state, in `data_dir` (fresh).
pub fn engine_run(data_dir: &Path, size: u64, cfg: EngineConfig) -> Result<EngineResult> {
    let value = u64::from(cfg.value_bytes.max(1));
    let keys = (size / value).max(1);
    let mut r = EngineResult {
        keys,
        state_bytes: keys * value,
        ..EngineResult::default()
    };
    let app_dir = data_dir.join(APP);
    let mut probe_id = 0u64;

    // Load, then one checkpoint (untimed), so that recovery has a whole
    // state to restore and a log with ~nothing after it.
    {
        let node = start_node(data_dir, cfg.shards)?;
        let (a, rx) = app()?;
        let h = node
            .deploy(a)
            .map_err(engine_err("deploy on an empty folder"))?;
        let src = h
            .source::<Cmd>(SOURCE)
            .map_err(engine_err("the app's source"))?;
        let t = Instant::now();
        let mut i = 0u64;
        while i < keys {
            let end = (i + LOAD_BATCH as u64).min(keys);
            let batch: Vec<(u64, Cmd)> = (i..end)
                .map(|k| {
                    (
                        key_of(k),
                        Cmd::Fill {
                            seed: k,
                            len: cfg.value_bytes.max(1),
                        },
                    )
                })
                .collect();
            src.send_batch(batch, Duration::from_secs(60))
                .map_err(|rej| engine_err(format!("load keys {i}..{end}"))(rej.error))?;
            i = end;
        }
        h.quiesce(DRAIN_TIMEOUT)
            .map_err(engine_err("drain the load"))?;
        r.load_s = t.elapsed().as_secs_f64();
        probe_id += 1;
        let held = probe(&src, &rx, probe_id)?;
        if held != keys {
            return Err(BenchError::Other(format!(
                "the store holds {held} keys after the load, {keys} were sent"
            )));
        }
        let t = Instant::now();
        h.checkpoint()
            .map_err(engine_err("checkpoint after the load"))?;
        r.load_checkpoint_s = t.elapsed().as_secs_f64();
        node.shutdown();
    }

    // Each rep: a cold recovery (new node, deploy, a first output), then a
    // timed checkpoint. The first checkpoint after a deploy saves every
    // state whole whatever the engine's incremental-checkpoint setting, so
    // each timed checkpoint writes all S bytes, and the next rep recovers
    // from one whole checkpoint, not a chain of changes.
    for rep in 0..cfg.reps {
        r.residue = r.residue.worst(evict_tree(&app_dir)?);
        let t0 = Instant::now();
        let node = start_node(data_dir, cfg.shards)?;
        let t1 = Instant::now();
        let (a, rx) = app()?;
        let h = node
            .deploy(a)
            .map_err(engine_err(format!("recovery {rep}: deploy")))?;
        let t2 = Instant::now();
        let src = h
            .source::<Cmd>(SOURCE)
            .map_err(engine_err("the app's source"))?;
        probe_id += 1;
        let held = probe(&src, &rx, probe_id)?;
        let t3 = Instant::now();
        if held != keys {
            return Err(BenchError::Other(format!(
                "recovery {rep}: the store holds {held} keys, the checkpoint had {keys}"
            )));
        }
        let rec = h.recovery().ok_or_else(|| {
            BenchError::Other("a durable app's deploy reported no recovery".into())
        })?;
        if rec.checkpoint.is_none() {
            return Err(BenchError::Other(format!(
                "recovery {rep} found no checkpoint in {}",
                app_dir.display()
            )));
        }
        r.replayed.push(rec.replayed_events + rec.replayed_barriers);
        r.node_start_s.push((t1 - t0).as_secs_f64());
        r.deploy_s.push((t2 - t1).as_secs_f64());
        r.first_output_s.push((t3 - t2).as_secs_f64());

        let t = Instant::now();
        h.checkpoint()
            .map_err(engine_err(format!("timed checkpoint {rep}")))?;
        r.checkpoint_s.push(t.elapsed().as_secs_f64());
        let file = newest_checkpoint_bytes(&app_dir)?;
        r.checkpoint_file_bytes.push(file);
        if file < r.state_bytes {
            return Err(BenchError::Other(format!(
                "timed checkpoint {rep} wrote a {file}-byte file for {} bytes of state: \
                 not a whole checkpoint, so its time would not measure one",
                r.state_bytes
            )));
        }
        if rep + 1 == cfg.reps {
            r.app_dir_files = listing(&app_dir)?;
            r.app_dir_bytes = r.app_dir_files.iter().map(|(_, n)| n).sum();
        }
        node.shutdown();
    }
    Ok(r)
}

/// Disk the run needs at its peak: per size, the raw file or the storage
/// checkpoint (never both at once), or the engine's folder (up to three
/// checkpoints while the third is written, plus the log of the load);
/// with `keep`, what every size leaves behind, plus the biggest peak.
pub fn space_needed(sizes: &[u64], engine_max: u64, value_bytes: u32, keep: bool) -> u64 {
    let engine = |s: u64| -> u64 {
        if s > engine_max {
            return 0;
        }
        let keys = s / u64::from(value_bytes.max(1)) + 1;
        // ~5% archive overhead per checkpoint, ~128 B per logged fill event.
        s / 20 * 63 + keys * 128
    };
    let peak = sizes
        .iter()
        .map(|&s| (s + s / 50).max(engine(s)))
        .max()
        .unwrap_or(0);
    let kept: u64 = if keep {
        sizes
            .iter()
            .map(|&s| 2 * (s + s / 50) + engine(s) / 3 * 2)
            .sum()
    } else {
        0
    };
    peak + kept + 256 * MIB
}
