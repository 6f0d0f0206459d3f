//! The process-wide bound on open segment files: a cache of `.log` file handles with a fixed
//! capacity, so that the number of partitions (and segments) never decides how many file
//! descriptors the broker holds.
//!
//! # What it owns
//! - [`SegmentFile`]: one segment's `.log` file as the rest of the crate sees it: a path and,
//!   while it is cached, an open handle. [`SegmentFile::get`] returns the cached handle (an
//!   `Arc<File>`; no system call on a hit) or opens the file again.
//! - [`OpenFiles`]: the cache itself, one per process ([`OpenFiles::global`]): `RLIMIT_NOFILE`
//!   is a per-process limit, so a per-process bound is the one that matters. Its capacity is
//!   derived from the soft `RLIMIT_NOFILE` at first use ([`default_capacity`]: half of it, the
//!   other half left to sockets and short-lived files) and can be set with
//!   [`OpenFiles::set_capacity`] (the broker's `log.open.files.max`).
//!
//! # Invariants
//! - A [`SegmentFile`] holds an open handle exactly while it is in the cache's ring, and the
//!   cache counts it; the count exceeds the capacity only inside [`OpenFiles`]' own methods,
//!   which evict before they return.
//! - Eviction drops only the cache's reference: a handle handed out by [`SegmentFile::get`]
//!   (a fetch's `sendfile`, a flush's `fdatasync`, a compaction's reads) stays open and
//!   valid until its holder drops it. The descriptors open at a time are therefore the
//!   capacity plus the handles in use: a fetch response holds one per partition with records
//!   until it is sent (an empty read holds none), a compaction pass one per planned segment.
//!   When an open still fails with EMFILE the caller gets the error (a partition-level
//!   `KAFKA_STORAGE_ERROR`), never a crash.
//! - A file is reopened by path, so a path is only ever reopened while it names the same
//!   file: renames go through [`SegmentFile::set_path`], and a segment whose files are deleted
//!   or replaced is [`SegmentFile::retire`]d first; a retired file is never reopened.
//! - Lock order: the cache's ring, then a slot. A hit takes only its slot's lock.
//!
//! # Eviction
//! CLOCK (second chance), the usual approximation of LRU: a hit sets the slot's referenced bit
//! (no shared lock, no list move); a miss that takes the count over the capacity sweeps the
//! ring, clearing referenced bits and evicting the first slot found unreferenced.
//!
//! # Durability across eviction
//! A flush may `fdatasync` through a descriptor opened after the write, if the one that wrote
//! was evicted in between. On Linux (since 4.16) a writeback error not yet reported to any
//! descriptor is reported to the next `fsync` of the file whoever opened it, so the flush
//! still sees it; an append and a flush of the same segment within one flush interval almost
//! always share the cached handle anyway.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Fewest handles the cache keeps, whatever the limit: a partition's roll and recovery touch
/// two segments at once.
pub const OPEN_FILES_MIN: usize = 16;
/// Most handles the derived default keeps (a very large or unlimited `RLIMIT_NOFILE`).
pub const OPEN_FILES_DEFAULT_MAX: usize = 65_536;
/// Capacity when the limit cannot be read.
const OPEN_FILES_FALLBACK: usize = 256;

/// The default capacity: half of the soft `RLIMIT_NOFILE`, within
/// [`OPEN_FILES_MIN`]..=[`OPEN_FILES_DEFAULT_MAX`]. The other half is left to client sockets,
/// checkpoint and snapshot files, and handles in use by fetches and flushes.
pub fn default_capacity() -> usize {
    match soft_open_files_limit() {
        Some(limit) => {
            (limit / 2).clamp(OPEN_FILES_MIN as u64, OPEN_FILES_DEFAULT_MAX as u64) as usize
        }
        None => OPEN_FILES_FALLBACK,
    }
}

/// The soft `RLIMIT_NOFILE` of this process.
#[cfg(unix)]
pub fn soft_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer to a local.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if result != 0 {
        return None;
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return Some(u64::MAX);
    }
    #[allow(clippy::useless_conversion)] // rlim_t is not u64 on every unix
    u64::try_from(limit.rlim_cur).ok()
}

#[cfg(not(unix))]
pub fn soft_open_files_limit() -> Option<u64> {
    None
}

/// Counters of the cache, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenFilesStats {
    pub capacity: usize,
    /// Handles the cache holds now.
    pub open: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// The bounded cache of open segment files (see the module doc).
#[derive(Debug)]
pub struct OpenFiles {
    capacity: AtomicUsize,
    /// Slots holding a handle (those in `ring` that are alive and not retired).
    open: AtomicUsize,
    ring: Mutex<VecDeque<Weak<Slot>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl OpenFiles {
    /// A cache holding at most `capacity` handles (at least [`OPEN_FILES_MIN`]).
    pub fn new(capacity: usize) -> Arc<OpenFiles> {
        Arc::new(OpenFiles {
            capacity: AtomicUsize::new(capacity.max(OPEN_FILES_MIN)),
            open: AtomicUsize::new(0),
            ring: Mutex::new(VecDeque::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        })
    }

    /// The process's cache, created with [`default_capacity`] on first use.
    pub fn global() -> &'static Arc<OpenFiles> {
        static GLOBAL: OnceLock<Arc<OpenFiles>> = OnceLock::new();
        GLOBAL.get_or_init(|| OpenFiles::new(default_capacity()))
    }

    /// Changes the capacity (at least [`OPEN_FILES_MIN`]), evicting down to it at once.
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity
            .store(capacity.max(OPEN_FILES_MIN), Ordering::Relaxed);
        let mut ring = self.lock_ring();
        self.evict_over(&mut ring, self.capacity());
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> OpenFilesStats {
        OpenFilesStats {
            capacity: self.capacity(),
            open: self.open.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    fn lock_ring(&self) -> std::sync::MutexGuard<'_, VecDeque<Weak<Slot>>> {
        // The ring's state is a list of weak references: a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is taken over.
        self.ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a file just opened or created at `path` as cached.
    pub fn insert(self: &Arc<Self>, path: PathBuf, file: File) -> SegmentFile {
        let slot = Arc::new(Slot {
            cache: Arc::clone(self),
            referenced: AtomicBool::new(true),
            state: Mutex::new(SlotState {
                path,
                file: None,
                retired: false,
            }),
        });
        let mut ring = self.lock_ring();
        slot.lock().file = Some(Arc::new(file));
        self.admit(&mut ring, &slot);
        SegmentFile { slot }
    }

    /// Opens `path` (read and write) as a new cached segment file.
    pub fn open(self: &Arc<Self>, path: &Path) -> io::Result<SegmentFile> {
        let file = self.open_file(path, OpenOptions::new().read(true).write(true))?;
        Ok(self.insert(path.to_path_buf(), file))
    }

    /// Adds `slot` (already holding its handle) to the ring and evicts down to the capacity.
    fn admit(&self, ring: &mut VecDeque<Weak<Slot>>, slot: &Arc<Slot>) {
        ring.push_back(Arc::downgrade(slot));
        self.open.fetch_add(1, Ordering::Relaxed);
        self.evict_over(ring, self.capacity());
        // Dead entries (slots dropped or retired since) are skipped by sweeps; keep them from
        // piling up when no sweep runs.
        if ring.len() > 2 * self.capacity() + OPEN_FILES_MIN {
            ring.retain(|weak| {
                weak.upgrade()
                    .is_some_and(|slot| slot.lock().file.is_some())
            });
        }
    }

    /// Evicts until at most `capacity` handles are held (CLOCK).
    fn evict_over(&self, ring: &mut VecDeque<Weak<Slot>>, capacity: usize) {
        // Each entry is looked at at most twice (once to clear its bit, once to evict).
        let mut budget = ring.len() * 2 + 1;
        while self.open.load(Ordering::Relaxed) > capacity && budget > 0 {
            budget -= 1;
            let Some(weak) = ring.pop_front() else { break };
            let Some(slot) = weak.upgrade() else { continue };
            let mut state = slot.lock();
            if state.file.is_none() {
                continue;
            }
            if slot.referenced.swap(false, Ordering::Relaxed) {
                drop(state);
                ring.push_back(weak);
                continue;
            }
            state.file = None;
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Opens `path` with `options`. Out of descriptors (EMFILE, ENFILE), the cache gives up
    /// half of its handles and tries once more.
    pub fn open_file(&self, path: &Path, options: &OpenOptions) -> io::Result<File> {
        let open = || options.open(path);
        match open() {
            Err(error) if is_out_of_descriptors(&error) => {
                let held = self.open.load(Ordering::Relaxed);
                tracing::warn!(
                    path = %path.display(), %error, held,
                    "out of file descriptors; closing half of the cached segment files"
                );
                let mut ring = self.lock_ring();
                self.evict_over(&mut ring, held / 2);
                drop(ring);
                open()
            }
            result => result,
        }
    }
}

fn is_out_of_descriptors(error: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            error.raw_os_error(),
            Some(libc::EMFILE) | Some(libc::ENFILE)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

#[derive(Debug)]
struct Slot {
    cache: Arc<OpenFiles>,
    /// CLOCK's bit: set by every hit, cleared by a sweep passing over the slot.
    referenced: AtomicBool,
    state: Mutex<SlotState>,
}

#[derive(Debug)]
struct SlotState {
    path: PathBuf,
    file: Option<Arc<File>>,
    retired: bool,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // Each update of the state is a single assignment: a panic cannot tear it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if state.file.take().is_some() {
            self.cache.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One segment's `.log` file: its path and, while cached, its open handle. Clones share it.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    slot: Arc<Slot>,
}

impl SegmentFile {
    /// The open handle: the cached one (no system call), or the file opened again.
    pub fn get(&self) -> io::Result<Arc<File>> {
        let path = {
            let state = self.slot.lock();
            if let Some(file) = &state.file {
                self.slot.referenced.store(true, Ordering::Relaxed);
                self.slot.cache.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Arc::clone(file));
            }
            if state.retired {
                return Err(retired_error(&state.path));
            }
            state.path.clone()
        };
        let cache = &self.slot.cache;
        cache.misses.fetch_add(1, Ordering::Relaxed);
        let opened = cache.open_file(&path, OpenOptions::new().read(true).write(true))?;
        let mut ring = cache.lock_ring();
        let mut state = self.slot.lock();
        if let Some(file) = &state.file {
            // Another thread reopened it meanwhile: use theirs.
            return Ok(Arc::clone(file));
        }
        if state.retired {
            return Err(retired_error(&state.path));
        }
        if state.path != path {
            // Renamed while we opened it: a rename keeps the file, so the handle is right, but
            // look again rather than reason about which name we got.
            drop(state);
            drop(ring);
            return self.get();
        }
        let file = Arc::new(opened);
        state.file = Some(Arc::clone(&file));
        drop(state);
        self.slot.referenced.store(true, Ordering::Relaxed);
        cache.admit(&mut ring, &self.slot);
        Ok(file)
    }

    /// The file's current path.
    pub fn path(&self) -> PathBuf {
        self.slot.lock().path.clone()
    }

    /// Records that the file was renamed to `path` (handles in use stay valid).
    pub fn set_path(&self, path: PathBuf) {
        self.slot.lock().path = path;
    }

    /// Closes the cached handle for good: the file is about to be deleted or replaced, and
    /// its path must never be opened again for this segment. Handles in use stay valid.
    pub fn retire(&self) {
        let mut state = self.slot.lock();
        state.retired = true;
        if state.file.take().is_some() {
            self.slot.cache.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether the file was retired (its segment's files deleted or replaced).
    pub fn is_retired(&self) -> bool {
        self.slot.lock().retired
    }

    /// Whether the cache holds this file's handle now.
    pub fn is_cached(&self) -> bool {
        self.slot.lock().file.is_some()
    }
}

fn retired_error(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("segment file {} was deleted or replaced", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, count: usize) -> Vec<PathBuf> {
        (0..count)
            .map(|i| {
                let path = dir.join(format!("{i:020}.log"));
                std::fs::write(&path, format!("file {i}")).expect("write");
                path
            })
            .collect()
    }

    fn contents(file: &SegmentFile) -> String {
        use std::os::unix::fs::FileExt;
        let handle = file.get().expect("get");
        let mut bytes = vec![0u8; 64];
        let n = handle.read_at(&mut bytes, 0).expect("read");
        String::from_utf8_lossy(&bytes[..n]).into_owned()
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity_and_reopens_evicted_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = OpenFiles::new(OPEN_FILES_MIN);
        let segment_files: Vec<SegmentFile> = files(dir.path(), 100)
            .iter()
            .map(|path| cache.open(path).expect("open"))
            .collect();
        assert_eq!(cache.stats().open, OPEN_FILES_MIN);
        for round in 0..3 {
            for (i, file) in segment_files.iter().enumerate() {
                assert_eq!(contents(file), format!("file {i}"), "round {round}");
                assert!(cache.stats().open <= OPEN_FILES_MIN);
            }
        }
        let cached = segment_files.iter().filter(|f| f.is_cached()).count();
        assert_eq!(cached, OPEN_FILES_MIN);
        assert!(cache.stats().evictions > 0);
    }

    #[test]
    fn a_hit_returns_the_same_handle_and_a_handle_in_use_outlives_its_eviction() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = OpenFiles::new(OPEN_FILES_MIN);
        let paths = files(dir.path(), OPEN_FILES_MIN * 3);
        let first = cache.open(&paths[0]).expect("open");
        let in_use = first.get().expect("get");
        assert!(Arc::ptr_eq(&in_use, &first.get().expect("get again")));
        let rest: Vec<SegmentFile> = paths[1..]
            .iter()
            .map(|path| cache.open(path).expect("open"))
            .collect();
        for file in &rest {
            file.get().expect("get");
        }
        assert!(!first.is_cached(), "the first file was evicted");
        // The evicted handle still reads, even after its file is unlinked.
        std::fs::remove_file(&paths[0]).expect("remove");
        let mut bytes = [0u8; 6];
        in_use.read_exact_at(&mut bytes, 0).expect("read");
        assert_eq!(&bytes, b"file 0");
    }

    #[test]
    fn retired_and_dropped_files_release_their_handles_and_are_never_reopened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = OpenFiles::new(OPEN_FILES_MIN);
        let paths = files(dir.path(), 3);
        let kept = cache.open(&paths[0]).expect("open");
        let retired = cache.open(&paths[1]).expect("open");
        let dropped = cache.open(&paths[2]).expect("open");
        assert_eq!(cache.stats().open, 3);
        retired.retire();
        drop(dropped);
        assert_eq!(cache.stats().open, 1);
        let error = retired.get().expect_err("a retired file is not reopened");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert_eq!(contents(&kept), "file 0");
    }

    #[test]
    fn a_renamed_file_is_reopened_under_its_new_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = OpenFiles::new(OPEN_FILES_MIN);
        let paths = files(dir.path(), OPEN_FILES_MIN * 2);
        let renamed = cache.open(&paths[0]).expect("open");
        let new_path = dir.path().join("renamed.log");
        std::fs::rename(&paths[0], &new_path).expect("rename");
        renamed.set_path(new_path.clone());
        let others: Vec<SegmentFile> = paths[1..]
            .iter()
            .map(|path| cache.open(path).expect("open"))
            .collect();
        assert!(!renamed.is_cached());
        drop(others);
        assert_eq!(contents(&renamed), "file 0");
        assert_eq!(renamed.path(), new_path);
    }

    #[test]
    fn lowering_the_capacity_evicts_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = OpenFiles::new(64);
        let held: Vec<SegmentFile> = files(dir.path(), 64)
            .iter()
            .map(|path| cache.open(path).expect("open"))
            .collect();
        assert_eq!(cache.stats().open, 64);
        cache.set_capacity(OPEN_FILES_MIN);
        assert_eq!(cache.stats().open, OPEN_FILES_MIN);
        assert_eq!(
            held.iter().filter(|f| f.is_cached()).count(),
            OPEN_FILES_MIN
        );
    }
}
