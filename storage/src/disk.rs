//! The one seam every durability step of this crate goes through: the
//! fdatasync of a file, the fsync of a folder, and the changes to a folder
//! whose durability those syncs decide (creating a file, renaming one,
//! removing one, creating a folder).
//!
//! Why it exists: a SIGKILL keeps the page cache, so a crash test cannot see
//! a missing fsync; only a power loss can. Through this seam a test sees
//! every sync. A [`Watch`] on a folder records, for every path under it, the
//! length each file had when it was last made durable and the entries each
//! folder had when it was last made durable; [`Watch::image`] builds from
//! those records what a power loss would leave: a copy of the folder with
//! every file cut back to its durable length and every entry never made
//! durable either dropped ([`Loss::Dropped`]) or kept with only the data it
//! made durable, so empty unless it was fdatasynced ([`Loss::Kept`]).
//! [`Watch::fail_next`] makes the next sync, create or remove of a path
//! fail, to exercise error paths.
//!
//! Cost in production: with no watch alive, each call is its syscall plus
//! one atomic load. While some watch is alive (tests), each call takes one
//! process-wide mutex and holds it across the syscall, so an image (built
//! under that mutex) sees every operation wholly or not at all. Records are
//! kept only for paths under a watched folder and dropped with the watch,
//! so parallel tests in one process, each in its own temporary folder, do
//! not see each other's records or faults. Paths are compared as given
//! (component by component, not canonicalized): watch the folder under the
//! same spelling the storage is opened with.
//!
//! Invariants: every fdatasync and fsync of this crate is a call here (a
//! unit test checks the sources); a record is written only after its
//! syscall returned `Ok`, and a faulted operation is not performed; a
//! file's record is forgotten when the file is removed or created anew, and
//! follows it through a rename.
//!
//! What an image does not model: the bytes past a file's durable length are
//! cut off whole (a real disk may keep some, or tear a record); a removal
//! or a rename is durable at once (a removed file, or the one a rename
//! replaced, cannot be copied back), so a missing folder sync after either
//! goes unseen.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{Result, StorageError};
use crate::uring::Uring;

/// How many [`Watch`]es are alive; 0 keeps every call off the mutex.
static WATCHES: AtomicUsize = AtomicUsize::new(0);
/// The records and faults of every watch.
static STATE: Mutex<State> = Mutex::new(State::new());

/// An operation [`Watch::fail_next`] can make fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The fdatasync of a file or the fsync of a folder at that path.
    Sync,
    /// Creating a new file at that path (`SegmentWriter::create`).
    Create,
    /// Removing the file at that path.
    Remove,
}

/// What a power loss leaves of an entry (file or folder) that was never
/// made durable in its folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// The entry is gone (a folder with everything in it).
    Dropped,
    /// The entry survived, but only with the data it made durable itself: a
    /// file is cut back to its durable length, so it is empty unless it was
    /// fdatasynced (a renamed file's record follows it); a folder is kept
    /// and its own entries follow its own records.
    Kept,
}

/// What [`Watch::image`] kept and lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// Files written to the image (some maybe empty).
    pub files: usize,
    /// Files and folders left out: never made durable in their folder.
    pub dropped: usize,
    /// Files kept though their entry was never made durable ([`Loss::Kept`]).
    pub kept: usize,
    /// Bytes cut off the files kept: written, but never made durable.
    pub cut_bytes: u64,
}

/// Syncs counted under one watched folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Syncs {
    /// fdatasyncs of files.
    pub files: u64,
    /// fsyncs of folders.
    pub dirs: u64,
}

/// Records every durability step under one folder, for as long as it lives.
/// Watched folders must not nest (two tests, two temporary folders).
#[derive(Debug)]
#[must_use = "the records are dropped with the watch"]
pub struct Watch {
    root: PathBuf,
}

struct Root {
    path: PathBuf,
    syncs: Syncs,
}

struct Fault {
    op: Op,
    path: PathBuf,
    errno: i32,
}

struct State {
    roots: Vec<Root>,
    /// File path -> its length when last made durable.
    files: BTreeMap<PathBuf, u64>,
    /// Folder path -> its entries when last made durable.
    dirs: BTreeMap<PathBuf, BTreeSet<OsString>>,
    faults: Vec<Fault>,
}

impl State {
    const fn new() -> Self {
        Self {
            roots: Vec::new(),
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
            faults: Vec::new(),
        }
    }

    fn root_mut(&mut self, path: &Path) -> Option<&mut Root> {
        self.roots.iter_mut().find(|r| path.starts_with(&r.path))
    }

    /// The error of a fault armed for `op` on `path`, disarming it.
    fn fault(&mut self, op: Op, path: &Path) -> io::Result<()> {
        match self
            .faults
            .iter()
            .position(|f| f.op == op && f.path == path)
        {
            Some(i) => Err(io::Error::from_raw_os_error(self.faults.remove(i).errno)),
            None => Ok(()),
        }
    }
}

fn lock() -> MutexGuard<'static, State> {
    // A test that panicked while holding it left the records consistent:
    // each is written in one step after its syscall.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state, locked, if any watch is alive.
fn watched() -> Option<MutexGuard<'static, State>> {
    (WATCHES.load(Ordering::Acquire) > 0).then(lock)
}

/// fdatasync of `file` (at `path`), whose length is `len`: its data and
/// length are durable once this returns `Ok`.
pub(crate) fn sync_file(ring: &mut Uring, file: &File, path: &Path, len: u64) -> io::Result<()> {
    let mut state = watched();
    if let Some(s) = state.as_mut() {
        s.fault(Op::Sync, path)?;
    }
    ring.fdatasync(file.as_raw_fd())?;
    if let Some(s) = state.as_mut() {
        if let Some(root) = s.root_mut(path) {
            root.syncs.files += 1;
            s.files.insert(path.to_path_buf(), len);
        }
    }
    Ok(())
}

/// fsync of the folder `dir` (at `path`): its entries (new files, renames,
/// removals) are durable once this returns `Ok`.
pub(crate) fn sync_dir(ring: &mut Uring, dir: &File, path: &Path) -> io::Result<()> {
    let mut state = watched();
    let mut listing = None;
    if let Some(s) = state.as_mut() {
        s.fault(Op::Sync, path)?;
        if s.root_mut(path).is_some() {
            // Listed before the fsync: every name listed is then durable.
            listing = Some(names(path)?);
        }
    }
    ring.fsync(dir.as_raw_fd())?;
    if let (Some(s), Some(names)) = (state.as_mut(), listing) {
        if let Some(root) = s.root_mut(path) {
            root.syncs.dirs += 1;
            s.dirs.insert(path.to_path_buf(), names);
        }
    }
    Ok(())
}

/// fdatasync of the existing file at `path`, at its current length.
pub(crate) fn sync_existing(path: &Path) -> Result<()> {
    let io = |op| {
        move |source| StorageError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    let file = File::open(path).map_err(io("open"))?;
    let len = file.metadata().map_err(io("stat"))?.len();
    let mut ring = Uring::new().map_err(io("io_uring setup"))?;
    sync_file(&mut ring, &file, path, len).map_err(io("fdatasync"))
}

/// fsync of the folder at `path`.
pub(crate) fn sync_dir_at(path: &Path, ring: &mut Uring) -> Result<()> {
    let io = |op| {
        move |source| StorageError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    let dir = File::open(path).map_err(io("open directory"))?;
    sync_dir(ring, &dir, path).map_err(io("fsync directory"))
}

/// Creates a new file at `path`, for writing; fails if it exists.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    let mut state = watched();
    if let Some(s) = state.as_mut() {
        s.fault(Op::Create, path)?;
    }
    let file = File::options().write(true).create_new(true).open(path)?;
    if let Some(s) = state.as_mut() {
        s.files.remove(path);
    }
    Ok(file)
}

/// Renames `from` over `to`; durable once their folder is synced. The
/// records take it as durable at once (an image cannot bring back the file
/// `to` replaced): the file's durable length follows it, and so does its
/// entry, if it was durable under `from`.
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    let mut state = watched();
    fs::rename(from, to)?;
    if let Some(s) = state.as_mut() {
        match s.files.remove(from) {
            Some(len) => s.files.insert(to.to_path_buf(), len),
            None => s.files.remove(to),
        };
        let (Some(from_name), Some(to_name)) = (from.file_name(), to.file_name()) else {
            return Ok(());
        };
        let listed = from
            .parent()
            .and_then(|d| s.dirs.get_mut(d))
            .is_some_and(|names| names.remove(from_name));
        if let Some(names) = to.parent().and_then(|d| s.dirs.get_mut(d)) {
            if listed {
                names.insert(to_name.to_os_string());
            }
        }
    }
    Ok(())
}

/// Removes the file at `path` (a missing file is `NotFound`); durable once
/// its folder is synced.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    let mut state = watched();
    if let Some(s) = state.as_mut() {
        s.fault(Op::Remove, path)?;
    }
    fs::remove_file(path)?;
    if let Some(s) = state.as_mut() {
        s.files.remove(path);
    }
    Ok(())
}

/// Creates the folder `dir` and its missing parents, and makes it durable:
/// fsyncs every folder it created and the folder holding each, and, when
/// `dir` existed already, `dir` and its parent (an earlier run may have
/// crashed between creating it and syncing it). An error names the folder
/// and the step.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    let err = |path: &Path, op| {
        let path = path.to_path_buf();
        move |source| StorageError::Io { path, op, source }
    };
    // The folders to create, innermost first.
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match fs::symlink_metadata(at) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(at),
            Err(source) => return Err(err(at, "stat")(source)),
        }
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => break,
        }
    }
    for d in missing.iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            // Created meanwhile by someone else: synced below all the same.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(err(d, "create directory")(source)),
        }
    }
    if missing.is_empty() {
        missing.push(dir);
    }
    let outermost = missing[missing.len() - 1];
    let mut ring = Uring::new().map_err(err(dir, "io_uring setup"))?;
    for d in &missing {
        sync_dir_at(d, &mut ring)?;
    }
    match outermost.parent() {
        Some(p) if p.as_os_str().is_empty() => sync_dir_at(Path::new("."), &mut ring),
        Some(p) => sync_dir_at(p, &mut ring),
        None => Ok(()), // the file system's root: no folder holds it
    }
}

/// The names in the folder at `path`.
fn names(path: &Path) -> io::Result<BTreeSet<OsString>> {
    fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

impl Watch {
    /// Starts recording every durability step under `root` (which should
    /// exist: its own entry in its parent is taken as durable).
    ///
    /// # Panics
    /// If `root` is inside a watched folder or holds one.
    pub fn new(root: impl AsRef<Path>) -> Self {
        let root = root.as_ref().to_path_buf();
        let mut s = lock();
        assert!(
            !s.roots
                .iter()
                .any(|r| r.path.starts_with(&root) || root.starts_with(&r.path)),
            "{} overlaps a watched folder",
            root.display()
        );
        s.roots.push(Root {
            path: root.clone(),
            syncs: Syncs::default(),
        });
        WATCHES.fetch_add(1, Ordering::AcqRel);
        Self { root }
    }

    /// The watched folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The syncs counted under the folder so far.
    pub fn syncs(&self) -> Syncs {
        let mut s = lock();
        s.root_mut(&self.root).map(|r| r.syncs).unwrap_or_default()
    }

    /// The length the file at `path` had when it was last made durable;
    /// `None` if it never was (since it was created).
    pub fn durable_len(&self, path: impl AsRef<Path>) -> Option<u64> {
        lock().files.get(path.as_ref()).copied()
    }

    /// The entries of the folder at `path` when it was last made durable;
    /// `None` if it never was.
    pub fn durable_entries(&self, path: impl AsRef<Path>) -> Option<BTreeSet<OsString>> {
        lock().dirs.get(path.as_ref()).cloned()
    }

    /// Makes the next `op` on exactly `path` fail with OS error `errno`
    /// (e.g. 28, ENOSPC), without doing it. Once: the one after succeeds.
    ///
    /// # Panics
    /// If `path` is not under the watched folder.
    pub fn fail_next(&self, op: Op, path: impl AsRef<Path>, errno: i32) {
        let path = path.as_ref().to_path_buf();
        assert!(
            path.starts_with(&self.root),
            "{} is not under the watched {}",
            path.display(),
            self.root.display()
        );
        lock().faults.push(Fault { op, path, errno });
    }

    /// Builds in `to` (created if missing) what a power loss now would
    /// leave of the watched folder: every file whose entry was made durable
    /// is cut back to its durable length (empty if it was never synced);
    /// every entry never made durable in its folder is dropped or kept
    /// empty, as `loss` says. Safe while the storage runs: the seam's mutex
    /// is held for the whole copy, so no sync, create, rename or remove
    /// happens meanwhile, and bytes below a durable length never change.
    pub fn image(&self, to: impl AsRef<Path>, loss: Loss) -> io::Result<Image> {
        let s = lock();
        let mut image = Image::default();
        copy_tree(&s, &self.root, to.as_ref(), loss, &mut image)?;
        Ok(image)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut s = lock();
        let root = &self.root;
        s.roots.retain(|r| r.path != *root);
        s.files.retain(|p, _| !p.starts_with(root));
        s.dirs.retain(|p, _| !p.starts_with(root));
        s.faults.retain(|f| !f.path.starts_with(root));
        WATCHES.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Copies the folder `from` into `to` as a power loss would leave it.
fn copy_tree(s: &State, from: &Path, to: &Path, loss: Loss, image: &mut Image) -> io::Result<()> {
    fs::create_dir_all(to)?;
    let durable = s.dirs.get(from);
    for entry in fs::read_dir(from)? {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let name = entry.file_name();
        let (src, dst) = (entry.path(), to.join(&name));
        let kept = durable.is_some_and(|d| d.contains(&name));
        if !kept && loss == Loss::Dropped {
            image.dropped += 1;
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(s, &src, &dst, loss, image)?;
        } else if kind.is_file() {
            if !kept {
                image.kept += 1;
            }
            let len = s.files.get(&src).copied().unwrap_or(0);
            copy_prefix(&src, &dst, len, image)?;
        }
        // Anything else (a socket, a link) is none of this crate's.
    }
    Ok(())
}

/// Copies the first `len` bytes of `src` to a new file `dst`.
fn copy_prefix(src: &Path, dst: &Path, len: u64, image: &mut Image) -> io::Result<()> {
    let mut from = match File::open(src) {
        Ok(f) => f,
        // Removed meanwhile by a writer outside this crate (spill files).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let file_len = from.metadata()?.len();
    if file_len < len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is {file_len} bytes, shorter than its durable length {len}",
                src.display()
            ),
        ));
    }
    let mut out = File::create(dst)?;
    let copied = io::copy(&mut (&mut from).take(len), &mut out)?;
    debug_assert_eq!(copied, len);
    image.files += 1;
    image.cut_bytes += file_len - len;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn synced_file(path: &Path, bytes: &[u8]) -> File {
        let mut f = create_new(path).expect("create");
        f.write_all(bytes).expect("write");
        let mut ring = Uring::new().expect("io_uring");
        sync_file(&mut ring, &f, path, bytes.len() as u64).expect("sync");
        f
    }

    #[test]
    fn records_syncs_and_builds_images() {
        let root = tempfile::tempdir().expect("tempdir");
        let w = Watch::new(root.path());
        let a = root.path().join("a");
        let mut f = synced_file(&a, b"durable");
        f.write_all(b" and not").expect("write");
        sync_dir_at(root.path(), &mut Uring::new().expect("ring")).expect("sync dir");
        // Created after the folder sync: their entries are not durable;
        // b's data is, c's is not.
        synced_file(&root.path().join("b"), b"data");
        create_new(&root.path().join("c"))
            .and_then(|mut f| f.write_all(b"never"))
            .expect("c");
        assert_eq!(w.durable_len(&a), Some(7));
        assert_eq!(w.syncs(), Syncs { files: 2, dirs: 1 });

        let out = tempfile::tempdir().expect("tempdir");
        let img = w.image(out.path().join("x"), Loss::Dropped).expect("image");
        assert_eq!(fs::read(out.path().join("x/a")).expect("a"), b"durable");
        assert!(!out.path().join("x/b").exists());
        assert_eq!((img.files, img.dropped, img.cut_bytes), (1, 2, 8));
        let img = w.image(out.path().join("y"), Loss::Kept).expect("image");
        assert_eq!(fs::read(out.path().join("y/b")).expect("b"), b"data");
        assert_eq!(fs::read(out.path().join("y/c")).expect("c"), b"");
        assert_eq!((img.files, img.kept, img.cut_bytes), (3, 2, 8 + 5));
    }

    #[test]
    fn create_dir_all_syncs_each_new_folder_and_its_parent() {
        let root = tempfile::tempdir().expect("tempdir");
        let w = Watch::new(root.path());
        let deep = root.path().join("app").join("log");
        create_dir_all(&deep).expect("create");
        let has = |dir: &Path, name: &str| {
            w.durable_entries(dir)
                .is_some_and(|e| e.contains(&OsString::from(name)))
        };
        assert!(has(root.path(), "app") && has(&root.path().join("app"), "log"));
        assert_eq!(w.durable_entries(&deep), Some(BTreeSet::new()));
        // Existing: synced again, it and its parent.
        create_dir_all(&deep).expect("again");
        assert_eq!(w.syncs().dirs, 5);
    }

    #[test]
    fn a_fault_fails_the_next_operation_once() {
        let root = tempfile::tempdir().expect("tempdir");
        let w = Watch::new(root.path());
        let p = root.path().join("f");
        w.fail_next(Op::Create, &p, 24);
        let e = create_new(&p).expect_err("EMFILE");
        assert_eq!(e.raw_os_error(), Some(24));
        let f = create_new(&p).expect("once only");
        w.fail_next(Op::Sync, &p, 5);
        let mut ring = Uring::new().expect("ring");
        assert_eq!(
            sync_file(&mut ring, &f, &p, 0).map_err(|e| e.raw_os_error()),
            Err(Some(5))
        );
        assert_eq!(w.durable_len(&p), None, "a failed sync records nothing");
        w.fail_next(Op::Remove, &p, 1);
        assert!(remove(&p).is_err() && p.exists());
    }

    #[test]
    fn records_follow_renames_and_go_with_removals() {
        let root = tempfile::tempdir().expect("tempdir");
        let w = Watch::new(root.path());
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        synced_file(&a, b"12345");
        rename(&a, &b).expect("rename");
        assert_eq!((w.durable_len(&a), w.durable_len(&b)), (None, Some(5)));
        remove(&b).expect("remove");
        assert_eq!(w.durable_len(&b), None);
    }

    #[test]
    fn watches_of_other_folders_see_nothing() {
        let (one, two) = (
            tempfile::tempdir().expect("t"),
            tempfile::tempdir().expect("t"),
        );
        let (w1, w2) = (Watch::new(one.path()), Watch::new(two.path()));
        synced_file(&one.path().join("f"), b"x");
        assert_eq!(w1.syncs().files, 1);
        assert_eq!(w2.syncs(), Syncs::default());
        drop(w1);
        assert_eq!(
            lock()
                .files
                .keys()
                .filter(|p| p.starts_with(one.path()))
                .count(),
            0
        );
    }

    /// The seam is the only way to sync: no other source file of the crate
    /// calls the syscalls (so making the seam a no-op is visible to tests).
    #[test]
    fn every_sync_of_the_crate_goes_through_the_seam() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for entry in fs::read_dir(&src).expect("src") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if matches!(name, "disk.rs" | "uring.rs") {
                continue;
            }
            let text = fs::read_to_string(&path).expect("source");
            for call in [
                ".fdatasync(",
                ".fsync(",
                "sync_all(",
                "sync_data(",
                "fs::rename(",
            ] {
                assert!(!text.contains(call), "{name} calls {call} outside the seam");
            }
        }
    }
}
