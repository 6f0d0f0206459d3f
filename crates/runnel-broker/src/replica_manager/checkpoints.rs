//! Kafka's per-log-directory checkpoint files of the hosted partitions
//! (`recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`,
//! `cleaner-offset-checkpoint`: each log directory lists the partitions it holds), read at
//! start and written by the checkpoint task (which also writes the active segments' new index
//! entries first, [`crate::partition::Partition::checkpoint_offsets`]), retention, the
//! cleaner and shutdown (`startup.rs`); and closing one partition at shutdown. A directory
//! whose file cannot be written goes offline when it is not the only one
//! ([`crate::log_dirs`]); offline directories are not touched.

use std::collections::HashMap;
use std::sync::Arc;

use runnel_log::{
    read_offset_checkpoint, write_offset_checkpoint, LogError, CLEANER_OFFSET_CHECKPOINT_FILE,
};

use super::{
    DirCheckpoints, ReplicaManager, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT,
};
use crate::log_dirs::LogDir;
use crate::partition::Partition;

impl ReplicaManager {
    /// Writes every partition's recovery point and log start offset to Kafka's checkpoints
    /// (each active segment's new index entries first, so that recovery resumes near the
    /// recovery point), in the log directory that holds it (every online directory gets both
    /// files, empty when it holds no partition; offline directories are not touched).
    pub fn write_checkpoints(&self) -> Result<(), LogError> {
        let _writer = self
            .checkpoint_writer
            .lock()
            .expect("checkpoint writer lock poisoned");
        let mut recovery_points = DirCheckpoints::new();
        let mut log_starts = DirCheckpoints::new();
        for partition in self.all_partitions() {
            let dir = partition.log_dir().absolute();
            let key = (partition.topic.to_string(), partition.index);
            let (recovery_point, log_start) = partition.checkpoint_offsets();
            recovery_points
                .entry(dir.clone())
                .or_default()
                .insert(key.clone(), recovery_point);
            log_starts.entry(dir).or_default().insert(key, log_start);
        }
        self.write_checkpoint_files(&recovery_points, &log_starts)
    }

    /// Writes Kafka's two per-partition checkpoint files in each online log directory; the
    /// caller holds `checkpoint_writer`. A directory whose write fails goes offline; the
    /// others are still written.
    pub(super) fn write_checkpoint_files(
        &self,
        recovery_points: &DirCheckpoints,
        log_starts: &DirCheckpoints,
    ) -> Result<(), LogError> {
        let empty = HashMap::new();
        let mut first_error = None;
        for dir in self.log_dirs.iter().filter(|dir| dir.is_online()) {
            let absolute = dir.absolute();
            let written = write_offset_checkpoint(
                &dir.path.join(RECOVERY_POINT_CHECKPOINT),
                recovery_points.get(&absolute).unwrap_or(&empty),
            )
            .and_then(|()| {
                write_offset_checkpoint(
                    &dir.path.join(LOG_START_OFFSET_CHECKPOINT),
                    log_starts.get(&absolute).unwrap_or(&empty),
                )
            });
            if let Err(error) = written {
                self.fail_dir_unless_only(dir, &error);
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Takes `partition`'s log directory offline after an I/O error on it (Kafka's
    /// `LogDirFailureChannel`): every partition in it goes offline, the rest keep working.
    /// With a single log directory nothing goes offline: the error is the request's alone,
    /// and a later request may succeed (the behaviour before JBOD).
    pub fn fail_partition_dir(&self, partition: &Partition, error: &dyn std::fmt::Display) {
        self.fail_dir_unless_only(&partition.log_dir(), error);
    }

    /// Takes `dir` offline after `error`, unless it is the only log directory (then the error
    /// is reported to the caller alone, as before JBOD: one directory is the whole broker).
    fn fail_dir_unless_only(&self, dir: &LogDir, error: &dyn std::fmt::Display) {
        if self.log_dirs.len() > 1 {
            dir.fail(error);
        }
    }

    /// Writes `cleaner-offset-checkpoint` in each online log directory: where the cleaner has
    /// reached in each compacted partition there, so a restart does not clean everything
    /// again.
    pub fn write_cleaner_checkpoint(&self) -> Result<(), LogError> {
        let _writer = self
            .cleaner_checkpoint_writer
            .lock()
            .expect("cleaner checkpoint writer lock poisoned");
        let mut offsets = DirCheckpoints::new();
        for partition in self.all_partitions() {
            if partition.settings().cleanup_compact {
                offsets
                    .entry(partition.log_dir().absolute())
                    .or_default()
                    .insert(
                        (partition.topic.to_string(), partition.index),
                        partition.cleaner_offset(),
                    );
            }
        }
        let empty = HashMap::new();
        let mut first_error = None;
        for dir in self.log_dirs.iter().filter(|dir| dir.is_online()) {
            let path = dir.path.join(CLEANER_OFFSET_CHECKPOINT_FILE);
            let dir_offsets = offsets.get(&dir.absolute()).unwrap_or(&empty);
            if let Err(error) = write_offset_checkpoint(&path, dir_offsets) {
                self.fail_dir_unless_only(dir, &error);
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sets each partition's cleaner offset from the `cleaner-offset-checkpoint` of the log
    /// directory that holds it, if any.
    pub fn load_cleaner_checkpoint(&self) -> Result<(), LogError> {
        let offsets = self.read_dir_checkpoints(CLEANER_OFFSET_CHECKPOINT_FILE)?;
        for partition in self.all_partitions() {
            let key = (partition.topic.to_string(), partition.index);
            let offset = offsets
                .get(&partition.log_dir().absolute())
                .and_then(|offsets| offsets.get(&key));
            if let Some(&offset) = offset {
                partition.set_cleaner_offset(offset);
            }
        }
        Ok(())
    }

    /// The recovery points each online log directory's last checkpoint saved.
    pub fn read_recovery_points(&self) -> Result<DirCheckpoints, LogError> {
        self.read_dir_checkpoints(RECOVERY_POINT_CHECKPOINT)
    }

    /// The log start offsets each online log directory's last checkpoint saved.
    pub fn read_log_start_offsets(&self) -> Result<DirCheckpoints, LogError> {
        self.read_dir_checkpoints(LOG_START_OFFSET_CHECKPOINT)
    }

    /// `file` of every online log directory (missing: empty), by absolute path. A directory
    /// whose file cannot be read goes offline when it is not the only one.
    fn read_dir_checkpoints(&self, file: &str) -> Result<DirCheckpoints, LogError> {
        let mut all = DirCheckpoints::new();
        for dir in self.log_dirs.iter().filter(|dir| dir.is_online()) {
            match read_offset_checkpoint(&dir.path.join(file)) {
                Ok(offsets) => {
                    all.insert(dir.absolute(), offsets);
                }
                Err(error) if self.log_dirs.len() > 1 => dir.fail(&error),
                Err(error) => return Err(error),
            }
        }
        Ok(all)
    }
}

/// What closing one partition at shutdown left.
pub(super) struct Closed {
    pub recovery_point: i64,
    pub log_start_offset: i64,
    /// False when the partition was still in use: flushed, but not closed (its index files
    /// not written), so its directory gets no clean-shutdown marker.
    pub closed: bool,
}

/// Closes (or, still shared, flushes) one partition at shutdown.
pub(super) fn close_at_shutdown(
    partition: Arc<Partition>,
    durable: bool,
) -> Result<Closed, LogError> {
    match Arc::try_unwrap(partition) {
        Ok(partition) => {
            let log = partition.into_log();
            // `close` flushes everything: the whole log is the recovery point.
            let closed = Closed {
                recovery_point: log.log_end_offset(),
                log_start_offset: log.log_start_offset(),
                closed: true,
            };
            log.close()?;
            Ok(closed)
        }
        Err(shared) => {
            tracing::warn!(
                topic = %shared.topic, partition = shared.index,
                "partition still in use at shutdown; flushing it without closing"
            );
            if let Some(target) = shared.flush_target()? {
                let dir = shared.with_log(|log| log.dir().to_path_buf());
                target.sync().map_err(|source| LogError::Io {
                    op: "fsync",
                    path: dir,
                    source,
                })?;
                shared.mark_flushed(target.up_to, durable);
            }
            let (recovery_point, log_start_offset) =
                shared.with_log(|log| (log.recovery_point(), log.log_start_offset()));
            Ok(Closed {
                recovery_point,
                log_start_offset,
                closed: false,
            })
        }
    }
}
