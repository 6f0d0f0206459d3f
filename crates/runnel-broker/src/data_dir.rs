//! The data directory as a whole: one server at a time, what it holds, and which partition
//! directories the metadata does not name.
//!
//! - [`DataDirLock`]: an exclusive `flock` on `<data-dir>/.lock` (Kafka's file name; Linux), taken
//!   before anything else is read and held for the life of the server, so a second server on
//!   the same directory stops at once instead of recovering logs under the first one's feet.
//!   It also checks, before anything else, that the directory is a directory and writable, so
//!   either mistake is reported in one plain sentence.
//! - [`Inventory`]: the partition directories (`<topic>-<partition>/`) and Kafka's deletion
//!   directories (`<topic>-<partition>.<id>-delete/`) found at start.
//! - [`settle_stray`]: what happens at start to partition directories that the metadata image
//!   does not name ("stray" directories, Kafka's word). Invariant: a directory is removed only when the metadata log itself
//!   accounts for its deletion: it was renamed to `-delete` (which [`crate::replica_manager`]
//!   does only after the RemoveTopic record is durable, as Kafka's `LogManager.asyncDelete`), or
//!   a RemoveTopic record names a topic of that name whose partitions included it (and the
//!   directory's `partition.metadata`, when present, names that topic's id). Every other
//!   stray directory is kept as it is, logged at WARN and reported in `/metrics` and the
//!   console: metadata that lost a topic must never delete the topic's data.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use runnel_metadata::MetadataImage;
use thiserror::Error;
use uuid::Uuid;

use crate::controller::METADATA_LOG_DIR;
use crate::partition_metadata;

/// Kafka's lock file in each log directory.
pub const LOCK_FILE: &str = ".lock";
/// Created and removed at start to prove the directory is writable.
const WRITE_CHECK_FILE: &str = ".write-check";
/// Kafka's suffix of a partition directory renamed for deletion.
pub const DELETE_DIR_SUFFIX: &str = "-delete";
/// Unnamed directories listed by name in the start-up WARN; the rest are counted.
const STRAY_DIRS_LOGGED_MAX: usize = 50;

/// Why the data directory cannot be used.
#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("data directory {path} is a file, not a directory")]
    NotADirectory { path: String },
    #[error("data directory {path} is not writable: {source}")]
    NotWritable {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "data directory {path} is in use by another Runnel process (it holds the lock on its \
         {LOCK_FILE} file); one server per data directory"
    )]
    Locked { path: String },
    #[error("data directory {path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
}

/// The held lock on a data directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Creates `dir` if missing, checks it is a writable directory and locks it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, DataDirError> {
        let path = dir.display().to_string();
        match std::fs::metadata(dir) {
            Ok(metadata) if !metadata.is_dir() => return Err(DataDirError::NotADirectory { path }),
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|source| classify(&path, "create", source))?
            }
            Err(source) => return Err(classify(&path, "inspect", source)),
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|source| classify(&path, "open the lock file", source))?;
        match try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => return Err(DataDirError::Locked { path }),
            Err(source) => return Err(classify(&path, "lock the lock file", source)),
        }
        let probe = dir.join(WRITE_CHECK_FILE);
        File::create(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|source| classify(&path, "write", source))?;
        Ok(DataDirLock { _file: file })
    }
}

/// `flock(LOCK_EX | LOCK_NB)`, as Kafka's `FileLock.tryLock`: `false` when another open file
/// description holds it. (std's `File::try_lock` is newer than the workspace's MSRV.)
#[cfg(target_os = "linux")]
fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`), and
    // flock takes no pointers.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}

/// Without libc (not Linux) the directory is not locked.
#[cfg(not(target_os = "linux"))]
fn try_lock_exclusive(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

fn classify(path: &str, op: &'static str, source: std::io::Error) -> DataDirError {
    match source.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => DataDirError::NotWritable {
            path: path.to_string(),
            source,
        },
        ErrorKind::NotADirectory => DataDirError::NotADirectory {
            path: path.to_string(),
        },
        _ => DataDirError::Io {
            path: path.to_string(),
            op,
            source,
        },
    }
}

/// A `<topic>-<partition>/` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDir {
    pub topic: String,
    pub partition: i32,
    pub path: PathBuf,
}

impl PartitionDir {
    pub fn name(&self) -> String {
        runnel_log::partition_dir_name(&self.topic, self.partition)
    }
}

/// What the data directory holds besides the metadata log.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Partition directories, in name order (the metadata log excluded).
    pub partitions: Vec<PartitionDir>,
    /// Kafka's `<topic>-<partition>.<id>-delete/` directories.
    pub deleted: Vec<PathBuf>,
}

impl Inventory {
    pub fn scan(dir: &Path) -> Result<Inventory, DataDirError> {
        let io = |op, source| DataDirError::Io {
            path: dir.display().to_string(),
            op,
            source,
        };
        let mut inventory = Inventory::default();
        for entry in std::fs::read_dir(dir).map_err(|e| io("list", e))? {
            let entry = entry.map_err(|e| io("list", e))?;
            if !entry.file_type().map_err(|e| io("list", e))?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            if name == METADATA_LOG_DIR {
                continue;
            }
            if is_delete_dir_name(&name) {
                inventory.deleted.push(entry.path());
            } else if let Some((topic, partition)) = runnel_log::parse_partition_dir_name(&name) {
                inventory.partitions.push(PartitionDir {
                    topic,
                    partition,
                    path: entry.path(),
                });
            }
        }
        inventory
            .partitions
            .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        inventory.deleted.sort();
        Ok(inventory)
    }

    /// Up to `count` partition directory names, for messages.
    pub fn examples(&self, count: usize) -> String {
        names(self.partitions.iter().map(PartitionDir::name), count)
    }

    /// The partition directories that hold records ([`holds_no_records`] is false), named as
    /// [`Inventory::examples`] names them, or `None` when none does. Reads every directory:
    /// called only when the start is about to be refused for them.
    pub fn examples_with_records(&self, count: usize) -> Option<String> {
        let with_records: Vec<String> = self
            .partitions
            .iter()
            .filter(|dir| !holds_no_records(&dir.path))
            .map(PartitionDir::name)
            .collect();
        (!with_records.is_empty()).then(|| names(with_records.into_iter(), count))
    }
}

/// `a-0, b-1, … and 7 more`.
fn names(all: impl ExactSizeIterator<Item = String>, count: usize) -> String {
    let total = all.len();
    let mut text: Vec<String> = all.take(count).collect();
    if total > count {
        text.push(format!("and {} more", total - count));
    }
    text.join(", ")
}

/// Kafka's `DeleteDirPattern`: `<topic>-<partition>.<unique id>-delete`.
fn is_delete_dir_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(DELETE_DIR_SUFFIX) else {
        return false;
    };
    stem.rsplit_once('.')
        .is_some_and(|(partition_dir, id)| !id.is_empty() && partition_dir.contains('-'))
}

/// The name a partition directory is renamed to before it is deleted (Kafka's
/// `logDeleteDirName`): `<topic>-<partition>.<32 hex digits>-delete`, the topic cut short so
/// the name fits in 255 bytes.
pub fn delete_dir_name(topic: &str, partition: i32) -> String {
    let id = Uuid::new_v4().simple().to_string();
    let suffix = format!("-{partition}.{id}{DELETE_DIR_SUFFIX}");
    let keep = topic.len().min(255 - suffix.len());
    // Topic names are ASCII, so any byte index is a character boundary.
    format!("{}{suffix}", &topic[..keep])
}

pub use runnel_metadata::RemovedTopic;

/// Whether the metadata log accounts for `dir` as part of a deleted topic.
pub(crate) fn deletion_recorded(dir: &PartitionDir, removed: &[RemovedTopic]) -> bool {
    let on_disk = match partition_metadata::read(&dir.path) {
        Ok(id) => id,
        // A directory whose topic id cannot be read is not known to be the deleted one.
        Err(_) => return false,
    };
    removed.iter().any(|topic| {
        topic.name == dir.topic
            && dir.partition < topic.partitions
            && on_disk.is_none_or(|id| id == topic.topic_id)
    })
}

/// Finishes deletions the metadata log accounts for and returns the stray partition
/// directories (those the metadata does not name), which are kept (see the module doc).
pub fn settle_stray(
    inventory: &Inventory,
    image: &MetadataImage,
    removed: &[RemovedTopic],
) -> Vec<PartitionDir> {
    for dir in &inventory.deleted {
        tracing::info!(dir = %dir.display(), "removing a partition directory renamed for deletion");
        remove_dir(dir);
    }
    let mut stray = Vec::new();
    for dir in &inventory.partitions {
        let named = image.topic(&dir.topic).is_some_and(|topic| {
            usize::try_from(dir.partition).is_ok_and(|p| p < topic.partitions.len())
        });
        if named {
            continue;
        }
        if deletion_recorded(dir, removed) {
            tracing::info!(dir = %dir.path.display(), topic = %dir.topic,
                "finishing the deletion of a topic deleted before the restart");
            remove_dir(&dir.path);
        } else {
            stray.push(dir.clone());
        }
    }
    if !stray.is_empty() {
        tracing::warn!(
            count = stray.len(),
            dirs = %names(stray.iter().map(PartitionDir::name), STRAY_DIRS_LOGGED_MAX),
            "partition directories that the metadata does not name are kept untouched and not \
             served; move them away, or run `runnel metadata rebuild` if the metadata lost them"
        );
    }
    stray
}

fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => {
            tracing::error!(dir = %dir.display(), %error, "could not remove a deleted partition's directory")
        }
    }
}

/// Whether a partition directory holds no record bytes: it contains only regular files, of
/// the kinds a partition that was never appended to has (`.log` files that are empty, their
/// `.index` and `.timeindex`, `partition.metadata`, `leader-epoch-checkpoint`, producer
/// `.snapshot`s), so removing it loses nothing. Anything else, or a directory that cannot be
/// read, counts as holding records.
pub fn holds_no_records(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.into_iter().all(|entry| {
        let Ok(entry) = entry else { return false };
        let Ok(metadata) = entry.metadata() else {
            return false;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        metadata.is_file()
            && if name.ends_with(".log") {
                metadata.len() == 0
            } else {
                name.ends_with(".index")
                    || name.ends_with(".timeindex")
                    || name.ends_with(".snapshot")
                    || name == partition_metadata::PARTITION_METADATA_FILE
                    || name == runnel_log::leader_epoch::LEADER_EPOCH_CHECKPOINT_FILE
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_dir_names_follow_kafka_and_fit() {
        let name = delete_dir_name("orders", 3);
        assert!(
            name.starts_with("orders-3.") && name.ends_with("-delete"),
            "{name}"
        );
        assert!(is_delete_dir_name(&name));
        assert_eq!(runnel_log::parse_partition_dir_name(&name), None);
        let long = delete_dir_name(&"t".repeat(249), 12345);
        assert_eq!(long.len(), 255);
        assert!(is_delete_dir_name(&long));
        for not in ["orders-3", "orders-delete", "x.y-delete-1", "-delete"] {
            assert!(!is_delete_dir_name(not), "{not}");
        }
    }

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DataDirLock::acquire(dir.path()).expect("first lock");
        assert!(matches!(
            DataDirLock::acquire(dir.path()),
            Err(DataDirError::Locked { .. })
        ));
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free again");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert!(matches!(
            DataDirLock::acquire(&file),
            Err(DataDirError::NotADirectory { .. })
        ));
        assert!(matches!(
            DataDirLock::acquire(&file.join("below")),
            Err(DataDirError::NotADirectory { .. })
        ));
    }
}
