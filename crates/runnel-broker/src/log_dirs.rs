//! The broker's log directories (`log.dirs`, JBOD): which are online, where each hosted
//! partition lives, where a new one goes, Kafka's `-future` directories of a move between them,
//! and what DescribeLogDirs reports of each.
//!
//! - Layout. The first log directory is the data directory: it also holds the metadata log and
//!   `meta.properties` (Kafka's default `metadata.log.dir`). Every log directory gets a
//!   `meta.properties` with the node id, the cluster id and its own `directory.id` (Kafka's
//!   `MetaProperties` v1 with KIP-858's directory id), its `.lock`, and its own
//!   `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint` and
//!   `cleaner-offset-checkpoint` for the partitions it holds, as Kafka keeps them per log dir.
//!   One directory (the default) is exactly the layout Runnel always had.
//! - Placement. A new partition goes to the online directory that holds the fewest partitions,
//!   the first configured on a tie (Kafka's `LogManager.nextLogDirs`).
//! - Failure. A directory that is missing-and-cannot-be-made, not a directory, unreadable or
//!   unwritable at start, or on which a write, read or fsync fails later, goes offline (Kafka's
//!   `LogDirFailureChannel`): logged at ERROR once, reported `KAFKA_STORAGE_ERROR` by
//!   DescribeLogDirs, and every partition in it is offline (produce, fetch and list offsets get
//!   `KAFKA_STORAGE_ERROR`; Metadata reports leader -1 and the replica offline) while the broker
//!   and the other directories' partitions keep working. Nothing in an offline directory is
//!   touched again until a restart finds it healthy. At start, a partition the metadata names
//!   that no online directory holds, while a directory is offline, is offline too: it may live
//!   in the failed directory, so it is never created afresh elsewhere. The first directory
//!   failing at start is fatal (it holds the metadata log), as in Kafka.
//! - Moves (`replica_move.rs`) copy a partition into `<topic>-<partition>.<id>-future/` in the
//!   destination; [`settle_future_dirs`] decides at start what a crash left (see there).
//!
//! Paths are reported as Kafka reports a log directory: absolute (`Path.toAbsolutePath`), not
//! resolved through symlinks.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use runnel_metadata::MetadataImage;
use uuid::Uuid;

use crate::data_dir::{DataDirError, DataDirLock, Inventory};
use crate::meta_properties::{self, MetaPropertiesError};

use std::path::{Path, PathBuf};

/// Kafka's suffix of a replica being copied into another log directory.
pub const FUTURE_DIR_SUFFIX: &str = "-future";

/// One configured log directory and whether it is online.
#[derive(Debug)]
pub struct LogDir {
    /// As configured.
    pub path: PathBuf,
    online: AtomicBool,
    /// Why it went offline, for messages.
    failure: Mutex<Option<String>>,
}

impl LogDir {
    pub fn new(path: PathBuf) -> Arc<LogDir> {
        Arc::new(LogDir {
            path,
            online: AtomicBool::new(true),
            failure: Mutex::new(None),
        })
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Takes the directory offline; the first failure is logged at ERROR (a person must
    /// replace or repair the disk), later ones are not.
    pub fn fail(&self, error: &dyn fmt::Display) {
        let mut failure = self.failure.lock().expect("log dir failure lock poisoned");
        if failure.is_none() {
            tracing::error!(
                dir = %self.path.display(), %error,
                "log directory failed: its partitions are offline until a restart finds it healthy"
            );
            *failure = Some(error.to_string());
        }
        self.online.store(false, Ordering::Release);
    }

    /// Why the directory is offline, if it is.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .expect("log dir failure lock poisoned")
            .clone()
    }

    /// The directory as DescribeLogDirs reports it.
    pub fn absolute(&self) -> PathBuf {
        absolute(&self.path)
    }

    /// Whether `path` is this directory (compared as absolute paths).
    pub fn is(&self, path: &Path) -> bool {
        absolute(path) == self.absolute()
    }
}

/// Locks every log directory: the first (the data directory) must succeed; another that
/// cannot be made, is not a directory, cannot be written or locked goes offline (locked by
/// another process is still refused: two servers must never share a directory).
pub fn open_all(paths: &[PathBuf]) -> Result<(Vec<Arc<LogDir>>, Vec<DataDirLock>), DataDirError> {
    let dirs: Vec<Arc<LogDir>> = paths.iter().cloned().map(LogDir::new).collect();
    let mut locks = Vec::with_capacity(dirs.len());
    for (i, dir) in dirs.iter().enumerate() {
        match DataDirLock::acquire(&dir.path) {
            Ok(lock) => locks.push(lock),
            Err(error @ DataDirError::Locked { .. }) => return Err(error),
            Err(error) if i == 0 => return Err(error),
            Err(error) => dir.fail(&error),
        }
    }
    Ok((dirs, locks))
}

/// The partition and deletion directories of every online log directory, merged (name
/// order); one that cannot be listed goes offline, unless it is the data directory.
pub fn scan_inventory(dirs: &[Arc<LogDir>]) -> Result<Inventory, DataDirError> {
    let mut all = Inventory::default();
    for (i, dir) in dirs.iter().enumerate().filter(|(_, d)| d.is_online()) {
        match Inventory::scan(&dir.path) {
            Ok(inventory) => {
                all.partitions.extend(inventory.partitions);
                all.deleted.extend(inventory.deleted);
            }
            Err(error) if i == 0 => return Err(error),
            Err(error) => dir.fail(&error),
        }
    }
    all.partitions
        .sort_by(|a, b| (&a.topic, a.partition, &a.path).cmp(&(&b.topic, b.partition, &b.path)));
    all.deleted.sort();
    Ok(all)
}

/// Gives every online log directory its `meta.properties` with a directory id
/// ([`meta_properties::ensure_directory_id`]). A directory of another node or cluster is
/// refused (a wrong disk); one that cannot be written goes offline, unless it is the data
/// directory.
pub fn ensure_meta_properties(
    dirs: &[Arc<LogDir>],
    node_id: i32,
    cluster_id: &str,
) -> Result<(), MetaPropertiesError> {
    for (i, dir) in dirs.iter().enumerate().filter(|(_, d)| d.is_online()) {
        match meta_properties::ensure_directory_id(&dir.path, node_id, cluster_id) {
            Ok(_) => {}
            Err(error @ MetaPropertiesError::Invalid { .. }) => return Err(error),
            Err(error) if i == 0 => return Err(error),
            Err(error) => dir.fail(&error),
        }
    }
    Ok(())
}

/// Where a partition's directory was found among the log directories.
#[derive(Debug)]
pub enum Located {
    In(Arc<LogDir>),
    /// In no online directory, and every directory is online: a new partition.
    Nowhere,
    /// In no online directory while one is offline: it may be there.
    Unknown,
    /// In more than one directory: refused, as Kafka refuses duplicate log directories.
    Duplicate(Vec<PathBuf>),
}

/// Finds the directory `name` (`<topic>-<partition>`) in `dirs`.
pub fn locate(dirs: &[Arc<LogDir>], name: &str) -> Located {
    let found: Vec<&Arc<LogDir>> = dirs
        .iter()
        .filter(|dir| dir.is_online() && dir.path.join(name).is_dir())
        .collect();
    match found.as_slice() {
        [one] => Located::In(Arc::clone(one)),
        [] if dirs.iter().all(|dir| dir.is_online()) => Located::Nowhere,
        [] => Located::Unknown,
        many => Located::Duplicate(many.iter().map(|dir| dir.path.join(name)).collect()),
    }
}

/// The online directory for a new partition: the one holding the fewest partitions
/// (`hosted`, by absolute path), the first configured on a tie.
pub fn choose_for_new(
    dirs: &[Arc<LogDir>],
    hosted: &HashMap<PathBuf, usize>,
) -> Option<Arc<LogDir>> {
    dirs.iter()
        .filter(|dir| dir.is_online())
        .min_by_key(|dir| hosted.get(&dir.absolute()).copied().unwrap_or(0))
        .cloned()
}

/// `<topic>-<partition>.<32 hex digits>-future`, Kafka's `logFutureDirName`, the topic cut
/// short so the name fits in 255 bytes.
pub fn future_dir_name(topic: &str, partition: i32) -> String {
    let id = Uuid::new_v4().simple().to_string();
    let suffix = format!("-{partition}.{id}{FUTURE_DIR_SUFFIX}");
    let keep = topic.len().min(255 - suffix.len());
    // Topic names are ASCII, so any byte index is a character boundary.
    format!("{}{suffix}", &topic[..keep])
}

/// The `<topic>-<partition>` a future directory's name copies, if it is one.
pub fn parse_future_dir_name(name: &str) -> Option<String> {
    let stem = name.strip_suffix(FUTURE_DIR_SUFFIX)?;
    let (partition_dir, id) = stem.rsplit_once('.')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| runnel_log::parse_partition_dir_name(partition_dir))
        .flatten()
        .map(|_| partition_dir.to_string())
}

/// Settles the `-future` directories a move interrupted by a crash left (crash policy of
/// `replica_move.rs`): a move renames the source `<topic>-<partition>` away only once the
/// future copy is complete and fsynced, then renames the future copy into place. So:
/// - a future directory whose partition directory exists in an online log directory is an
///   incomplete copy: the source is live, and the copy is removed;
/// - a future directory of a partition the metadata names and no log directory holds is the
///   complete copy of a move whose source was already renamed away: it is renamed into place
///   and becomes the live one;
/// - while any log directory is offline, or for a partition the metadata does not name,
///   nothing is decided: the directory is kept and logged at WARN.
pub fn settle_future_dirs(dirs: &[Arc<LogDir>], image: &MetadataImage) {
    let all_online = dirs.iter().all(|dir| dir.is_online());
    for dir in dirs.iter().filter(|dir| dir.is_online()) {
        let Ok(entries) = std::fs::read_dir(&dir.path) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(partition_dir) = parse_future_dir_name(&name) else {
                continue;
            };
            let future = entry.path();
            let named = runnel_log::parse_partition_dir_name(&partition_dir).is_some_and(
                |(topic, partition)| {
                    image
                        .topic(&topic)
                        .is_some_and(|t| t.partitions.iter().any(|p| p.partition == partition))
                },
            );
            let live = dirs
                .iter()
                .any(|d| d.is_online() && d.path.join(&partition_dir).is_dir());
            if !all_online || !named {
                tracing::warn!(dir = %future.display(),
                    "keeping a future replica directory a move left: a log directory is offline \
                     or the metadata does not name its partition");
            } else if live {
                tracing::info!(dir = %future.display(),
                    "removing the incomplete copy of a move a restart interrupted; the source is live");
                if let Err(error) = std::fs::remove_dir_all(&future) {
                    tracing::error!(dir = %future.display(), %error, "could not remove it");
                }
            } else {
                let target = dir.path.join(&partition_dir);
                tracing::info!(dir = %future.display(),
                    "completing a move a restart interrupted: the complete copy becomes the live one");
                let renamed = std::fs::rename(&future, &target)
                    .and_then(|()| std::fs::File::open(&dir.path).and_then(|d| d.sync_all()));
                if let Err(error) = renamed {
                    dir.fail(&format!("rename {} into place: {error}", future.display()));
                }
            }
        }
    }
}

/// One log directory's file-system space, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub total_bytes: i64,
    pub usable_bytes: i64,
}

/// `dir` as Kafka reports a log directory: absolute, `.` and `..` left as configured
/// components are not resolved, symlinks not followed.
pub fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The total and usable (available to unprivileged users, Java's `getUsableSpace`) space of
/// the file system holding `dir`.
#[cfg(unix)]
pub fn space(dir: &Path) -> std::io::Result<Space> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `stat` is a
    // plain struct statvfs fills in; it is read only when the call succeeded.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stat
    };
    // The fields' widths differ between platforms (u64 on 64-bit Linux).
    #[allow(clippy::unnecessary_cast)]
    let (fragment, blocks, available) = (
        (stat.f_frsize as u64).max(1),
        stat.f_blocks as u64,
        stat.f_bavail as u64,
    );
    let bytes = |blocks: u64| i64::try_from(blocks.saturating_mul(fragment)).unwrap_or(i64::MAX);
    Ok(Space {
        total_bytes: bytes(blocks),
        usable_bytes: bytes(available),
    })
}

/// Without statvfs the space is unknown (Kafka's `UNKNOWN_VOLUME_BYTES`).
#[cfg(not(unix))]
pub fn space(_dir: &Path) -> std::io::Result<Space> {
    Ok(Space {
        total_bytes: -1,
        usable_bytes: -1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(topic: &str, partitions: i32) -> MetadataImage {
        MetadataImage::default().apply(&runnel_metadata::MetadataRecord::Topic {
            name: topic.into(),
            topic_id: Uuid::new_v4(),
            partitions,
            leader: 1,
            configs: Default::default(),
            replicas: Vec::new(),
        })
    }

    /// The crash policy of `replica_move.rs`, state by state: before the source is renamed
    /// away the source is live (the copy goes); after, the complete copy is renamed into place.
    #[test]
    fn a_move_a_crash_interrupted_leaves_one_live_copy() {
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let dirs = vec![LogDir::new(a.path().into()), LogDir::new(b.path().into())];
        let image = image_with("t", 2);
        // Crash while copying: t-0 live in a, its incomplete future in b.
        std::fs::create_dir(a.path().join("t-0")).expect("source");
        std::fs::write(a.path().join("t-0/00000000000000000000.log"), b"old").expect("log");
        let future = b.path().join(future_dir_name("t", 0));
        std::fs::create_dir(&future).expect("future");
        // Crash after the source was renamed away: only t-1's complete future is left.
        let complete = b.path().join(future_dir_name("t", 1));
        std::fs::create_dir(&complete).expect("complete");
        std::fs::write(complete.join("00000000000000000000.log"), b"new").expect("log");
        // A future of a partition the metadata does not name is kept.
        let stray = b.path().join(future_dir_name("gone", 0));
        std::fs::create_dir(&stray).expect("stray");

        settle_future_dirs(&dirs, &image);
        assert!(!future.exists(), "the incomplete copy is removed");
        assert_eq!(
            std::fs::read(a.path().join("t-0/00000000000000000000.log")).expect("source kept"),
            b"old"
        );
        assert!(!complete.exists());
        assert_eq!(
            std::fs::read(b.path().join("t-1/00000000000000000000.log")).expect("promoted"),
            b"new"
        );
        assert!(stray.is_dir(), "kept");
        assert!(matches!(locate(&dirs, "t-1"), Located::In(dir) if dir.path == b.path()));

        // While a directory is offline nothing is decided.
        let pending = a.path().join(future_dir_name("t", 0));
        std::fs::create_dir(&pending).expect("pending");
        dirs[1].fail(&"test");
        settle_future_dirs(&dirs, &image);
        assert!(pending.is_dir());
        assert!(matches!(locate(&dirs, "t-1"), Located::Unknown));
    }

    #[test]
    fn new_partitions_go_to_the_dir_with_the_fewest() {
        let dirs = vec![LogDir::new("/x".into()), LogDir::new("/y".into())];
        let mut hosted = HashMap::new();
        let first = choose_for_new(&dirs, &hosted).expect("a dir");
        assert_eq!(first.path, PathBuf::from("/x"), "a tie goes to the first");
        hosted.insert(absolute(Path::new("/x")), 3);
        hosted.insert(absolute(Path::new("/y")), 2);
        assert_eq!(
            choose_for_new(&dirs, &hosted).expect("a dir").path,
            PathBuf::from("/y")
        );
        dirs[1].fail(&"test");
        assert_eq!(
            choose_for_new(&dirs, &hosted).expect("a dir").path,
            PathBuf::from("/x")
        );
        assert_eq!(
            parse_future_dir_name(&future_dir_name("t.x-y", 7)).as_deref(),
            Some("t.x-y-7")
        );
        assert_eq!(parse_future_dir_name("t-7.abc-future"), None);
    }

    #[test]
    fn space_of_a_real_directory() {
        let dir = std::env::temp_dir();
        let space = space(&dir).expect("statvfs");
        assert!(space.total_bytes > 0);
        assert!((0..=space.total_bytes).contains(&space.usable_bytes));
        assert!(absolute(Path::new("relative")).is_absolute());
    }
}
