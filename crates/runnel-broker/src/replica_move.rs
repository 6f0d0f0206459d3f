//! Moving a partition between log directories while it is served (AlterReplicaLogDirs,
//! KIP-113), as Kafka's `ReplicaAlterLogDirsThread` does: a `-future` replica is built in the
//! destination, catches up, and is swapped in; produce and fetch go on throughout.
//!
//! One thread per moving partition ([`ReplicaMoves`] holds at most one move per partition; a
//! request naming another destination redirects it, one naming the current directory
//! cancels it). The thread:
//! 1. creates `<dest>/<topic>-<partition>.<id>-future/` (Kafka's future directory name);
//! 2. copies the partition directory's files into it without the log's lock, pass after pass:
//!    a file seen before with the same inode that only grew (a segment being appended to) gets
//!    its new bytes, a file replaced or changed otherwise (a checkpoint rewritten by rename, a
//!    compacted segment) is copied again, a file gone is removed; temporary files of a
//!    compaction or a checkpoint in progress are skipped;
//! 3. once a pass copied little ([`CATCH_UP_BYTES_MAX`]) or after [`PASSES_MAX`] passes,
//!    takes the log's lock (produce and fetch of this partition wait, briefly), runs a last
//!    pass, fsyncs every copied file and the directory, and swaps: renames the source
//!    `<topic>-<partition>` to `<topic>-<partition>.<id>-delete`, renames the future directory
//!    to `<topic>-<partition>`, opens it as the partition's log (the active segment's indexes
//!    are not copied: opening always scans the active segment and rebuilds them) and puts it
//!    in place of the old one; then releases the lock and removes the `-delete` directory.
//!
//! Crash policy: the source is renamed away only once the future copy is complete and
//! fsynced, and the future directory is renamed into place after that. On restart
//! ([`crate::log_dirs::settle_future_dirs`]): a `-future` directory next to a live
//! `<topic>-<partition>` is an incomplete copy and is removed (the source is the live one); a
//! `-future` directory with no `<topic>-<partition>` anywhere is the complete copy of a move
//! that had renamed its source away, and is renamed into place (the new copy is the live one);
//! a `-delete` directory is removed as any deleted partition's. No record acknowledged before
//! the crash is lost either way. An I/O error on the destination abandons the move (the
//! destination goes offline, the source stays live); on the source, the source directory
//! goes offline as any failed directory.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use runnel_log::{partition_dir_name, PartitionLog};
use runnel_protocol::ErrorCode;

use crate::broker::Broker;
use crate::log_dirs::{self, LogDir};
use crate::partition::Partition;

/// A pass that copied fewer bytes than this is followed by the final, locked one.
pub const CATCH_UP_BYTES_MAX: u64 = 1 << 20;
/// Unlocked passes at most before the final one (a partition written faster than the copy
/// catches up is then stopped briefly for the rest).
pub const PASSES_MAX: usize = 16;
/// Copy buffer.
const COPY_BUFFER_BYTES: usize = 1 << 16;

/// Why a move failed.
#[derive(Debug, thiserror::Error)]
enum MoveError {
    #[error("{op} {path}: {source}")]
    Destination {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op} {path}: {source}")]
    Source {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Open(#[from] runnel_log::LogError),
}

/// One partition's move: where it is going and how far the copy has come.
#[derive(Debug)]
struct Move {
    dest: Arc<LogDir>,
    /// The future directory being filled, once created.
    future_dir: Option<PathBuf>,
    /// Bytes in the future directory.
    future_bytes: u64,
    /// Every record below this offset is in the future directory.
    future_end_offset: i64,
}

/// A move in progress, as DescribeLogDirs reports it (Kafka's future replica).
#[derive(Debug, Clone)]
pub struct FutureReplica {
    pub topic: String,
    pub partition: i32,
    pub log_dir: Arc<LogDir>,
    pub size_bytes: u64,
    pub end_offset: i64,
}

/// The moves in progress, one per partition.
#[derive(Debug, Default)]
pub struct ReplicaMoves {
    moves: Mutex<HashMap<(String, i32), Move>>,
}

impl ReplicaMoves {
    /// The future replicas of the moves that have created their directory.
    pub fn future_replicas(&self) -> Vec<FutureReplica> {
        let moves = self.moves.lock().expect("moves lock poisoned");
        moves
            .iter()
            .filter(|(_, m)| m.future_dir.is_some())
            .map(|((topic, partition), m)| FutureReplica {
                topic: topic.clone(),
                partition: *partition,
                log_dir: Arc::clone(&m.dest),
                size_bytes: m.future_bytes,
                end_offset: m.future_end_offset,
            })
            .collect()
    }

    fn dest(&self, key: &(String, i32)) -> Option<Arc<LogDir>> {
        let moves = self.moves.lock().expect("moves lock poisoned");
        moves.get(key).map(|m| Arc::clone(&m.dest))
    }

    fn update(&self, key: &(String, i32), f: impl FnOnce(&mut Move)) {
        if let Some(m) = self.moves.lock().expect("moves lock poisoned").get_mut(key) {
            f(m);
        }
    }
}

/// Asks for `topic`-`index` to live in the log directory `dest_path`, answering as Kafka's
/// `ReplicaManager.alterReplicaLogDirs`: a directory not configured is `LOG_DIR_NOT_FOUND`,
/// an offline one or an offline partition `KAFKA_STORAGE_ERROR`, a topic name too long for a
/// future directory `INVALID_TOPIC_EXCEPTION`, a partition the metadata does not name
/// `UNKNOWN_TOPIC_OR_PARTITION` and one it names but this node does not host
/// `REPLICA_NOT_AVAILABLE`. Otherwise the move starts (or is redirected, or cancelled when
/// `dest_path` is where the partition lives) and the answer is NONE at once; DescribeLogDirs
/// shows its progress.
pub fn alter_replica_log_dir(
    broker: &Arc<Broker>,
    topic: &str,
    index: i32,
    dest_path: &str,
) -> ErrorCode {
    // Kafka's `logFutureDirName` length check: `<topic>-<partition>.<32 hex>-future`.
    if partition_dir_name(topic, index).len() + 40 > 255 {
        return ErrorCode::InvalidTopicException;
    }
    let Some(dest) = broker.replicas.log_dir(Path::new(dest_path)) else {
        return ErrorCode::LogDirNotFound;
    };
    if !dest.is_online() {
        return ErrorCode::KafkaStorageError;
    }
    let Some(partition) = broker.replicas.replica(topic, index) else {
        let named = broker
            .controller
            .image()
            .topic(topic)
            .is_some_and(|t| t.partitions.iter().any(|p| p.partition == index));
        return if broker.replicas.is_offline(topic, index) {
            ErrorCode::KafkaStorageError
        } else if named {
            ErrorCode::ReplicaNotAvailable
        } else {
            ErrorCode::UnknownTopicOrPartition
        };
    };
    if partition.is_offline() {
        return ErrorCode::KafkaStorageError;
    }
    let key = (topic.to_string(), index);
    let moves = &broker.replicas.moves;
    let mut in_progress = moves.moves.lock().expect("moves lock poisoned");
    if let Some(existing) = in_progress.get_mut(&key) {
        // The running thread reads the destination before each pass.
        existing.dest = dest;
        return ErrorCode::None;
    }
    if Arc::ptr_eq(&partition.log_dir(), &dest) {
        return ErrorCode::None;
    }
    in_progress.insert(
        key.clone(),
        Move {
            dest,
            future_dir: None,
            future_bytes: 0,
            future_end_offset: 0,
        },
    );
    drop(in_progress);
    let thread_broker = Arc::clone(broker);
    let spawned = std::thread::Builder::new()
        .name("replica-move".into())
        .spawn(move || run(&thread_broker, &partition, &key));
    if let Err(error) = spawned {
        tracing::error!(%error, "could not start a replica move thread");
        let key = (topic.to_string(), index);
        moves
            .moves
            .lock()
            .expect("moves lock poisoned")
            .remove(&key);
        return ErrorCode::KafkaStorageError;
    }
    ErrorCode::None
}

/// The move thread: copies until the swap, a cancellation, shutdown or a failure.
fn run(broker: &Arc<Broker>, partition: &Arc<Partition>, key: &(String, i32)) {
    let moves = &broker.replicas.moves;
    let mut copy: Option<FutureCopy> = None;
    let outcome = copy_and_swap(broker, partition, key, &mut copy);
    match &outcome {
        Ok(true) => tracing::info!(topic = %key.0, partition = key.1,
            dir = %partition.log_dir().path.display(), "partition moved to another log directory"),
        Ok(false) => {}
        Err(error) => {
            tracing::error!(topic = %key.0, partition = key.1, %error, "replica move failed");
            match error {
                MoveError::Destination { .. } | MoveError::Open(_) => {
                    if let Some(copy) = &copy {
                        copy.dest.fail(error);
                    }
                }
                MoveError::Source { .. } => broker.replicas.fail_partition_dir(partition, error),
            }
        }
    }
    if let Some(copy) = copy.take() {
        copy.remove();
    }
    moves.moves.lock().expect("moves lock poisoned").remove(key);
}

/// Copies pass after pass into the destination the move names now, then swaps; `Ok(false)`
/// when the move was cancelled or cannot go on (shutdown, an offline directory).
fn copy_and_swap(
    broker: &Arc<Broker>,
    partition: &Arc<Partition>,
    key: &(String, i32),
    copy: &mut Option<FutureCopy>,
) -> Result<bool, MoveError> {
    let moves = &broker.replicas.moves;
    let stopping = broker.stopping();
    let mut passes = 0;
    loop {
        let Some(dest) = moves.dest(key) else {
            return Ok(false);
        };
        let here = partition.log_dir();
        if *stopping.borrow() || Arc::ptr_eq(&here, &dest) {
            return Ok(false);
        }
        if partition.is_offline() || !dest.is_online() {
            return Ok(false);
        }
        if copy.as_ref().is_some_and(|c| !Arc::ptr_eq(&c.dest, &dest)) {
            // Redirected: start again in the new destination.
            if let Some(old) = copy.take() {
                old.remove();
            }
            passes = 0;
        }
        let future = match copy {
            Some(future) => future,
            None => copy.insert(FutureCopy::create(partition, &dest)?),
        };
        let end_offset = partition.offsets().log_end_offset;
        let source = here.path.join(future.partition_dir_name());
        let copied = future.pass(&source, None)?;
        passes += 1;
        let (dir, bytes) = (future.dir.clone(), future.bytes());
        moves.update(key, |m| {
            m.future_dir = Some(dir);
            m.future_bytes = bytes;
            m.future_end_offset = end_offset;
        });
        if copied < CATCH_UP_BYTES_MAX || passes >= PASSES_MAX {
            swap(partition, future)?;
            return Ok(true);
        }
    }
}

/// The last pass under the log's lock, then the swap (see the module doc). A failure after
/// the source was renamed away puts both directories back as they were, so the old log goes
/// on serving.
fn swap(partition: &Arc<Partition>, future: &mut FutureCopy) -> Result<(), MoveError> {
    let mut log = partition.lock_for_move();
    // Appends waiting in a direct tail go to the file first: the copy reads files.
    log.write_out_appends()?;
    let source = log.dir().to_path_buf();
    let active_base = log.segment_base_offsets().last().copied();
    future.pass(&source, active_base)?;
    future.sync()?;
    let source_parent = partition.log_dir().path.clone();
    let deleted = source_parent.join(crate::data_dir::delete_dir_name(
        &partition.topic,
        partition.index,
    ));
    let source_error = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| MoveError::Source { op, path, source }
    };
    fs::rename(&source, &deleted).map_err(source_error("rename", &source))?;
    sync_dir(&source_parent).map_err(source_error("fsync", &source_parent))?;
    let target = future.dest.path.join(future.partition_dir_name());
    let opened = (|| {
        let dest_error = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| MoveError::Destination { op, path, source }
        };
        fs::rename(&future.dir, &target).map_err(dest_error("rename", &future.dir))?;
        sync_dir(&future.dest.path).map_err(dest_error("fsync", &future.dest.path))?;
        let moved = PartitionLog::open_at(
            &target,
            log.config().clone(),
            log.log_end_offset(),
            log.log_start_offset(),
        )?;
        Ok::<_, MoveError>(moved)
    })();
    let moved = match opened {
        Ok(moved) => moved,
        Err(error) => {
            if target.exists() {
                let _ = fs::rename(&target, &future.dir);
            }
            fs::rename(&deleted, &source).map_err(source_error("rename back", &deleted))?;
            let _ = sync_dir(&source_parent);
            return Err(error);
        }
    };
    let replaced = partition.swap_log(&mut log, moved, Arc::clone(&future.dest));
    drop(log);
    // The old log's directory is gone from under it; its files close as its handles drop.
    drop(replaced);
    future.dir = target;
    future.swapped = true;
    if let Err(error) = fs::remove_dir_all(&deleted) {
        tracing::warn!(dir = %deleted.display(), %error,
            "could not remove the moved partition's old directory; a restart removes it");
    }
    Ok(())
}

/// A `-future` directory and what has been copied into it, by file name.
struct FutureCopy {
    dest: Arc<LogDir>,
    dir: PathBuf,
    topic: String,
    partition: i32,
    copied: HashMap<String, Copied>,
    swapped: bool,
}

/// What was copied of one file: its inode, modification time and length when copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Copied {
    inode: u64,
    modified_ns: i128,
    len: u64,
}

impl FutureCopy {
    fn create(partition: &Partition, dest: &Arc<LogDir>) -> Result<FutureCopy, MoveError> {
        let dir = dest
            .path
            .join(log_dirs::future_dir_name(&partition.topic, partition.index));
        fs::create_dir(&dir).map_err(|source| MoveError::Destination {
            op: "create",
            path: dir.clone(),
            source,
        })?;
        Ok(FutureCopy {
            dest: Arc::clone(dest),
            dir,
            topic: partition.topic.to_string(),
            partition: partition.index,
            copied: HashMap::new(),
            swapped: false,
        })
    }

    fn partition_dir_name(&self) -> String {
        partition_dir_name(&self.topic, self.partition)
    }

    fn bytes(&self) -> u64 {
        self.copied.values().map(|c| c.len).sum()
    }

    /// Brings the future directory up to `source`; returns the bytes copied. With
    /// `active_base`, the active segment's index files are left out (the final pass).
    fn pass(&mut self, source: &Path, active_base: Option<i64>) -> Result<u64, MoveError> {
        let src_err = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| MoveError::Source { op, path, source }
        };
        let mut seen = Vec::new();
        let mut copied_bytes = 0;
        for entry in fs::read_dir(source).map_err(src_err("list", source))? {
            let entry = entry.map_err(src_err("list", source))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let path = entry.path();
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                // Deleted since the listing (retention): as if not listed.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(MoveError::Source {
                        op: "stat",
                        path,
                        source,
                    })
                }
            };
            if !metadata.is_file() || skipped(&name, active_base) {
                continue;
            }
            seen.push(name.clone());
            let now = Copied {
                inode: metadata.ino(),
                modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                    + i128::from(metadata.mtime_nsec()),
                len: metadata.len(),
            };
            let before = self.copied.get(&name).copied();
            if before == Some(now) {
                continue;
            }
            // A grown `.log` is copied again from the block its copy ended in: direct appends
            // pad that block with zeros and rewrite it with more bytes later.
            let appended_from = match before {
                Some(b) if b.inode == now.inode && now.len >= b.len && name.ends_with(".log") => {
                    runnel_log::direct_io::block_start(b.len.saturating_sub(1))
                }
                _ => 0,
            };
            match copy_file(&path, &self.dir.join(&name), appended_from) {
                Ok(len) => {
                    copied_bytes += len.saturating_sub(appended_from);
                    self.copied.insert(name, Copied { len, ..now });
                }
                Err(CopyError::Source(error)) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(CopyError::Source(source)) => {
                    return Err(MoveError::Source {
                        op: "read",
                        path,
                        source,
                    })
                }
                Err(CopyError::Destination(source)) => {
                    return Err(MoveError::Destination {
                        op: "write",
                        path: self.dir.join(&name),
                        source,
                    })
                }
            }
        }
        let gone: Vec<String> = self
            .copied
            .keys()
            .filter(|name| !seen.contains(name))
            .cloned()
            .collect();
        for name in gone {
            self.copied.remove(&name);
            let path = self.dir.join(&name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(MoveError::Destination {
                        op: "remove",
                        path,
                        source,
                    })
                }
            }
        }
        Ok(copied_bytes)
    }

    /// Fsyncs every copied file and the future directory.
    fn sync(&self) -> Result<(), MoveError> {
        let err = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| MoveError::Destination { op, path, source }
        };
        for name in self.copied.keys() {
            let path = self.dir.join(name);
            fs::File::open(&path)
                .and_then(|file| file.sync_all())
                .map_err(err("fsync", &path))?;
        }
        sync_dir(&self.dir).map_err(err("fsync", &self.dir))
    }

    /// Removes the future directory (a cancelled or abandoned move).
    fn remove(self) {
        if self.swapped {
            return;
        }
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error,
                "could not remove an abandoned future replica; a restart removes it");
        }
    }
}

/// Files a copy leaves out: temporary files of a checkpoint or compaction in progress, the
/// lock-free scratch of a cleaning, and, in the final pass, the active segment's indexes.
fn skipped(name: &str, active_base: Option<i64>) -> bool {
    let temporary = [".tmp", ".cleaned", ".swap", ".deleted"]
        .iter()
        .any(|suffix| name.ends_with(suffix));
    let active_index = active_base.is_some_and(|base| {
        let stem = format!("{base:020}");
        name == format!("{stem}.index") || name == format!("{stem}.timeindex")
    });
    temporary || active_index
}

enum CopyError {
    Source(std::io::Error),
    Destination(std::io::Error),
}

/// Copies `from` into `to` from byte `start` on (the bytes before it are already there);
/// returns the length copied up to.
fn copy_file(from: &Path, to: &Path, start: u64) -> Result<u64, CopyError> {
    let mut source = fs::File::open(from).map_err(CopyError::Source)?;
    source
        .seek(SeekFrom::Start(start))
        .map_err(CopyError::Source)?;
    let mut target = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(start == 0)
        .open(to)
        .map_err(CopyError::Destination)?;
    target.set_len(start).map_err(CopyError::Destination)?;
    target
        .seek(SeekFrom::Start(start))
        .map_err(CopyError::Destination)?;
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    let mut len = start;
    loop {
        let read = source.read(&mut buffer).map_err(CopyError::Source)?;
        if read == 0 {
            break;
        }
        target
            .write_all(&buffer[..read])
            .map_err(CopyError::Destination)?;
        len += read as u64;
    }
    Ok(len)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_and_the_active_indexes_are_not_copied() {
        assert!(skipped("00000000000000000000.log.cleaned", None));
        assert!(skipped("leader-epoch-checkpoint.tmp", None));
        assert!(!skipped("00000000000000000000.index", None));
        assert!(skipped("00000000000000000042.index", Some(42)));
        assert!(skipped("00000000000000000042.timeindex", Some(42)));
        assert!(!skipped("00000000000000000042.log", Some(42)));
    }

    #[test]
    fn appended_bytes_are_copied_after_the_first_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let from = dir.path().join("a.log");
        let to = dir.path().join("b.log");
        fs::write(&from, b"hello").expect("write");
        assert_eq!(copy_file(&from, &to, 0).ok(), Some(5));
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&from)
            .expect("open");
        file.write_all(b" world").expect("append");
        assert_eq!(copy_file(&from, &to, 5).ok(), Some(11));
        assert_eq!(fs::read(&to).expect("read"), b"hello world");
    }
}
