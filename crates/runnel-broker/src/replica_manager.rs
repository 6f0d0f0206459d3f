//! The partitions this broker hosts: opening them at start, finding them per request,
//! appending produced batches, and closing them at shutdown (both in parallel, with the log
//! directories' clean-shutdown markers: `replica_manager/startup.rs`).
//!
//! New partitions are opened in two steps so that a creation is all or nothing
//! ([`ReplicaManager::prepare_partitions`], then [`ReplicaManager::install`] once the metadata
//! records them, or [`ReplicaManager::discard`]). A partition holds no file descriptor of its
//! own: segment files live in `runnel_log`'s bounded cache of open files.
//!
//! DESIGN.md §2 step 4 lives here: a produced batch is checked (extent, magic, CRC, fields,
//! `max.message.bytes`, then every record, streaming through the decompressor with the inflated
//! size bounded by `socket.request.max.bytes`: `runnel_protocol::record_validation`), handed
//! to its partition's log (which checks the producer's sequence and assigns offsets), and its partition is queued for the group commit. Errors are per
//! partition, mapped to Kafka's codes in one place: [`AppendFailure::error_code`].

mod checkpoints;
mod startup;

pub use startup::{open_close_threads, take_clean_shutdown_markers, OPEN_CLOSE_THREADS_MAX};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use runnel_log::{partition_dir_name, AppendError, LastShutdown, LogError, PartitionLog};
use runnel_metadata::{PartitionImage, TopicImage};
use runnel_protocol::record_batch::{self, BatchError, BatchHeader};
use runnel_protocol::record_validation::{
    self, RecordPolicy, RecordValidationError, TimestampBounds,
};
use runnel_protocol::reencode;
use runnel_protocol::ErrorCode;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::{BrokerConfig, ConfigError, TopicSettings};
use crate::data_dir::{self, PartitionDir};
use crate::flusher::Flusher;
use crate::log_dirs::{self, LogDir};
use crate::partition::Partition;
use crate::partition_metadata::{self, PartitionMetadataError};
use crate::record_errors::RefusedRecords;

/// Kafka's file of per-partition recovery points.
pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
/// Kafka's file of per-partition log start offsets.
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";

/// Why a produced batch was not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendFailure {
    #[error("produce request carries no records")]
    NoRecords,
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("{0}")]
    Batch(#[from] BatchError),
    #[error("produce request carries more than one record batch")]
    MultipleBatches,
    #[error("control batches cannot be produced by clients")]
    ControlBatch,
    /// Well-formed records the topic's policy refuses (KIP-467's per-record errors).
    #[error("{0}")]
    RecordsRefused(RefusedRecords),
    #[error(
        "the in-sync replicas ({isr}) are fewer than min.insync.replicas ({min}) for acks=all"
    )]
    NotEnoughReplicas { isr: usize, min: usize },
    #[error("compression codec {codec} is not supported")]
    UnsupportedCompression { codec: i16 },
    #[error("{0}")]
    Records(#[from] RecordValidationError),
    #[error("{0}")]
    Log(#[from] AppendError),
    #[error("the partition's log directory is offline")]
    Offline,
}

impl AppendFailure {
    /// The Kafka error code a producer gets for this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            AppendFailure::NoRecords
            | AppendFailure::MultipleBatches
            | AppendFailure::ControlBatch => ErrorCode::InvalidRecord,
            AppendFailure::RecordsRefused(refused) => refused.error_code,
            AppendFailure::TooLarge { .. } => ErrorCode::MessageTooLarge,
            AppendFailure::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
            AppendFailure::Batch(BatchError::UnsupportedMagic { .. }) => {
                ErrorCode::UnsupportedForMessageFormat
            }
            AppendFailure::Batch(BatchError::CrcMismatch { .. })
            | AppendFailure::Batch(BatchError::Truncated { .. })
            | AppendFailure::Batch(BatchError::InvalidLength { .. }) => ErrorCode::CorruptMessage,
            AppendFailure::Batch(BatchError::Invalid { .. }) => ErrorCode::InvalidRecord,
            AppendFailure::UnsupportedCompression { .. } => ErrorCode::UnsupportedCompressionType,
            AppendFailure::Records(error) => error.error_code(),
            AppendFailure::Log(AppendError::InvalidProducerEpoch { .. }) => {
                ErrorCode::InvalidProducerEpoch
            }
            AppendFailure::Log(AppendError::OutOfOrderSequence { .. }) => {
                ErrorCode::OutOfOrderSequenceNumber
            }
            AppendFailure::Log(AppendError::InvalidTxnState { .. }) => ErrorCode::InvalidTxnState,
            AppendFailure::Log(AppendError::TransactionCoordinatorFenced { .. }) => {
                ErrorCode::TransactionCoordinatorFenced
            }
            // Kafka's RecordBatchTooLargeException: a batch larger than a segment.
            AppendFailure::Log(AppendError::RecordTooLarge { .. }) => ErrorCode::RecordListTooLarge,
            AppendFailure::Log(_) | AppendFailure::Offline => ErrorCode::KafkaStorageError,
        }
    }
}

/// What an append did: the offsets a produce response reports.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
    /// The time the broker stamped on a LogAppendTime topic's batch, else -1.
    pub log_append_time_ms: i64,
}

/// The hosted partitions, by topic name then partition index.
pub struct ReplicaManager {
    /// The configuration at start: the data directory, the flush policy and the request
    /// limits, which stay as they were while the broker runs.
    config: Arc<BrokerConfig>,
    /// The live configuration (with the dynamic broker configs) that new partitions' topic
    /// settings resolve over.
    live_config: RwLock<Arc<BrokerConfig>>,
    /// `None`: an offline partition that could not be opened (see `offline_partitions`).
    topics: RwLock<HashMap<String, HostedTopic>>,
    flusher: Arc<Flusher>,
    flusher_thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    data_changed: watch::Sender<u64>,
    /// Bumped on every append to a partition with followers, and by the flusher when it has
    /// written a led partition's direct tail to its file: what wakes the followers' parked
    /// fetches (a follower reads past the high watermark, so `data_changed` is not enough,
    /// but only what the file holds, so an append still in the tail is not either).
    appended: watch::Sender<u64>,
    /// Partition directories found at start that the metadata does not name: kept, not
    /// served, reported ([`crate::data_dir::settle_stray`]).
    stray_dirs: RwLock<Vec<PartitionDir>>,
    /// One writer at a time of `recovery-point-offset-checkpoint` and
    /// `log-start-offset-checkpoint` (the checkpoint task, retention, shutdown): held across
    /// reading the offsets and writing both files, so that writers neither collide on the
    /// files' temporary `.tmp` nor write older offsets over newer ones.
    checkpoint_writer: std::sync::Mutex<()>,
    /// The same for `cleaner-offset-checkpoint`.
    cleaner_checkpoint_writer: std::sync::Mutex<()>,
    /// `log.dirs`, the data directory first ([`crate::log_dirs`]).
    log_dirs: Vec<Arc<LogDir>>,
    /// Partitions the metadata names that were not opened because no online log directory
    /// holds them while one is offline: offline, not unknown.
    offline_partitions: RwLock<std::collections::HashSet<(String, i32)>>,
    /// Partitions moving between log directories ([`crate::replica_move`]).
    pub(crate) moves: crate::replica_move::ReplicaMoves,
}

/// A topic's partitions by index; `None` for one offline since start.
type HostedTopic = Arc<[Option<Arc<Partition>>]>;

/// Per log directory (absolute path), per partition: a checkpointed offset.
pub type DirCheckpoints = HashMap<PathBuf, HashMap<(String, i32), i64>>;

impl ReplicaManager {
    /// A replica manager over `log_dirs` (from [`open_log_dirs`], the data directory first).
    pub fn new(
        config: Arc<BrokerConfig>,
        log_dirs: Vec<Arc<LogDir>>,
    ) -> std::io::Result<ReplicaManager> {
        if config.flush.sync_filesystem {
            crate::filesystem_sync::check_supported(log_dirs.iter().map(|dir| dir.path.as_path()))
                .map_err(std::io::Error::other)?;
        }
        let (data_changed, _) = watch::channel(0u64);
        let (appended, _) = watch::channel(0u64);
        let (flusher, thread) =
            Flusher::start(config.flush, data_changed.clone(), appended.clone())?;
        Ok(ReplicaManager {
            live_config: RwLock::new(Arc::clone(&config)),
            topics: RwLock::new(HashMap::new()),
            flusher,
            flusher_thread: std::sync::Mutex::new(Some(thread)),
            data_changed,
            appended,
            stray_dirs: RwLock::new(Vec::new()),
            checkpoint_writer: std::sync::Mutex::new(()),
            cleaner_checkpoint_writer: std::sync::Mutex::new(()),
            log_dirs,
            offline_partitions: RwLock::new(Default::default()),
            moves: Default::default(),
            config,
        })
    }

    /// Replaces the live configuration topic settings resolve over (the partitions already
    /// open get theirs through [`ReplicaManager::update_topic_settings`]).
    pub fn set_live_config(&self, config: Arc<BrokerConfig>) {
        *self.live_config.write().expect("live config lock poisoned") = config;
    }

    fn live_config(&self) -> Arc<BrokerConfig> {
        Arc::clone(&self.live_config.read().expect("live config lock poisoned"))
    }

    /// The log directories, the data directory first.
    pub fn log_dirs(&self) -> &[Arc<LogDir>] {
        &self.log_dirs
    }

    /// The log directory configured as `path`, if any.
    pub fn log_dir(&self, path: &Path) -> Option<Arc<LogDir>> {
        self.log_dirs.iter().find(|dir| dir.is(path)).cloned()
    }

    /// The `-future` replicas of moves in progress.
    pub fn future_replicas(&self) -> Vec<crate::replica_move::FutureReplica> {
        self.moves.future_replicas()
    }

    /// Whether `topic`-`index` is named by the metadata but offline (its log directory
    /// failed), so that requests for it get `KAFKA_STORAGE_ERROR`, not "unknown".
    pub fn is_offline(&self, topic: &str, index: i32) -> bool {
        match self.replica(topic, index) {
            Some(partition) => partition.is_offline(),
            None => self
                .offline_partitions
                .read()
                .expect("offline partitions lock poisoned")
                .contains(&(topic.to_string(), index)),
        }
    }

    /// Hosted partitions per log directory (absolute path), for placement.
    fn hosted_per_dir(&self) -> HashMap<PathBuf, usize> {
        let mut hosted = HashMap::new();
        for partition in self.all_partitions() {
            *hosted.entry(partition.log_dir().absolute()).or_insert(0) += 1;
        }
        hosted
    }

    /// Opens the partitions of `topic` (as the image will have it) from index `from` on,
    /// without hosting them yet: the first step of an all-or-nothing creation. When one fails
    /// (out of disk space, say), the ones opened are closed and the directories this call
    /// created are removed again (a directory that was already there is left as it was), and
    /// the error is returned.
    pub fn prepare_partitions(
        &self,
        topic: &TopicImage,
        from: usize,
    ) -> Result<PreparedPartitions, OpenTopicError> {
        let settings = TopicSettings::resolve(&self.live_config(), &topic.configs)?;
        let mut prepared = PreparedPartitions {
            topic: topic.name.clone(),
            from,
            partitions: Vec::with_capacity(topic.partitions.len().saturating_sub(from)),
            created_dirs: Vec::new(),
        };
        let mut hosted = self.hosted_per_dir();
        for image in topic.partitions.iter().skip(from) {
            if !self.opens_here(&topic.name, image) {
                prepared.partitions.push(None);
                continue;
            }
            let Some(log_dir) = log_dirs::choose_for_new(&self.log_dirs, &hosted) else {
                self.discard(prepared);
                return Err(OpenTopicError::NoOnlineLogDir);
            };
            *hosted.entry(log_dir.absolute()).or_insert(0) += 1;
            let dir = log_dir
                .path
                .join(partition_dir_name(&topic.name, image.partition));
            if !dir.exists() {
                prepared.created_dirs.push(dir);
            }
            // partition.metadata is fsynced before the first append, not here: one fsync per
            // partition would make a creation of 10,000 partitions slow (see
            // `partition_metadata.rs` for why a crash before then is safe).
            let sync = partition_metadata::Sync::BeforeFirstAppend;
            let opened = self.open_partition(
                topic,
                image,
                &settings,
                &log_dir,
                (0, 0),
                sync,
                LastShutdown::Unclean,
            );
            match opened {
                Ok(partition) => prepared.partitions.push(Some(partition)),
                Err(error) => {
                    self.discard(prepared);
                    return Err(error);
                }
            }
        }
        // The new directories' entries, once per log directory for the whole creation.
        for parent in parents(&prepared.created_dirs) {
            let synced = std::fs::File::open(&parent).and_then(|dir| dir.sync_all());
            if let Err(source) = synced {
                self.discard(prepared);
                return Err(OpenTopicError::Log(LogError::Io {
                    op: "fsync",
                    path: parent,
                    source,
                }));
            }
        }
        Ok(prepared)
    }

    /// Hosts partitions from [`ReplicaManager::prepare_partitions`] once their record is
    /// written.
    pub fn install(&self, prepared: PreparedPartitions) {
        let mut topics = self.topics.write().expect("topics lock poisoned");
        let mut partitions: Vec<Option<Arc<Partition>>> = topics
            .get(&prepared.topic)
            .map(|hosted| hosted.to_vec())
            .unwrap_or_default();
        for (at, partition) in (prepared.from..).zip(prepared.partitions) {
            if partitions.len() <= at {
                partitions.resize(at + 1, None);
            }
            if partition.is_some() {
                partitions[at] = partition;
            }
        }
        topics.insert(prepared.topic, partitions.into());
    }

    /// Undoes [`ReplicaManager::prepare_partitions`]: closes the partitions and removes the
    /// directories it created.
    pub fn discard(&self, prepared: PreparedPartitions) {
        drop(prepared.partitions);
        for dir in &prepared.created_dirs {
            if let Err(error) = remove_dir(dir) {
                tracing::error!(%error, "removing a partition directory of a failed creation");
            }
        }
        for parent in parents(&prepared.created_dirs) {
            if let Err(error) = std::fs::File::open(&parent).and_then(|dir| dir.sync_all()) {
                tracing::warn!(%error, "fsync of a log directory after a failed creation");
            }
        }
    }

    /// Partitions hosted now.
    pub fn partition_count(&self) -> usize {
        let topics = self.topics.read().expect("topics lock poisoned");
        topics.values().map(|partitions| partitions.len()).sum()
    }

    /// Opens one partition at its checkpointed `(recovery point, log start offset)`, knowing
    /// how its directory's last process ended, and makes its `partition.metadata` name the
    /// topic, durable as `sync` says.
    #[allow(clippy::too_many_arguments)]
    fn open_partition(
        &self,
        topic: &TopicImage,
        image: &PartitionImage,
        settings: &TopicSettings,
        log_dir: &Arc<LogDir>,
        (recovery_point, log_start): (i64, i64),
        sync: partition_metadata::Sync,
        last_shutdown: LastShutdown,
    ) -> Result<Arc<Partition>, OpenTopicError> {
        let dir = log_dir
            .path
            .join(partition_dir_name(&topic.name, image.partition));
        let log = PartitionLog::open_after(
            &dir,
            settings.log.clone(),
            recovery_point,
            log_start,
            last_shutdown,
        )?;
        let written = partition_metadata::ensure(&dir, topic.topic_id, sync)?;
        let partition = Partition::new(
            Arc::from(topic.name.as_str()),
            topic.topic_id,
            self.config.node_id,
            image,
            settings.clone(),
            log,
            Arc::clone(log_dir),
        );
        if written && sync == partition_metadata::Sync::BeforeFirstAppend {
            partition.sync_metadata_file_before_append();
        }
        Ok(Arc::new(partition))
    }

    /// Refuses partitions `partitions` of a new or growing `topic` whose directory exists
    /// already and holds records: data the metadata does not name, which a new partition must
    /// never adopt. A directory that holds no record bytes
    /// ([`crate::data_dir::holds_no_records`]) is what a
    /// creation interrupted by a crash leaves (its directories are made before its metadata
    /// record is written): it is removed, which loses nothing, so that the name can be used.
    pub fn check_no_directory(
        &self,
        topic: &str,
        partitions: std::ops::Range<i32>,
    ) -> Result<(), OpenTopicError> {
        let dirs = partitions.flat_map(|partition| {
            let name = partition_dir_name(topic, partition);
            self.log_dirs
                .iter()
                .map(move |log_dir| log_dir.path.join(&name))
        });
        for dir in dirs {
            if !dir.exists() {
                continue;
            }
            if !crate::data_dir::holds_no_records(&dir) {
                return Err(OpenTopicError::DirectoryExists { dir });
            }
            tracing::info!(
                dir = %dir.display(),
                "removing a partition directory without records, left by a creation a crash interrupted"
            );
            std::fs::remove_dir_all(&dir).map_err(|source| {
                OpenTopicError::Log(LogError::Io {
                    op: "remove",
                    path: dir.clone(),
                    source,
                })
            })?;
            self.stray_dirs
                .write()
                .expect("stray dirs lock poisoned")
                .retain(|stray| stray.path != dir);
        }
        Ok(())
    }

    /// The partition directories found at start that the metadata does not name.
    pub fn stray_partition_dirs(&self) -> Vec<PartitionDir> {
        self.stray_dirs
            .read()
            .expect("stray dirs lock poisoned")
            .clone()
    }

    pub(crate) fn set_stray_partition_dirs(&self, dirs: Vec<PartitionDir>) {
        *self.stray_dirs.write().expect("stray dirs lock poisoned") = dirs;
    }

    /// Stops hosting `topic` and deletes its partitions' directories: each is first renamed
    /// to Kafka's `<topic>-<partition>.<id>-delete` (so a half-deleted directory never looks
    /// like a partition, and a restart finishes the removal), then removed. The caller has
    /// made the RemoveTopic record durable first.
    pub fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let removed = self
            .topics
            .write()
            .expect("topics lock poisoned")
            .remove(name);
        self.offline_partitions
            .write()
            .expect("offline partitions lock poisoned")
            .retain(|(topic, _)| topic != name);
        for partition in removed
            .iter()
            .flat_map(|partitions| partitions.iter().flatten())
        {
            if partition.is_offline() {
                // Nothing in a failed directory is touched; a restart on a healthy one finds
                // the directory stray (kept, reported).
                continue;
            }
            // In-flight requests may still hold the partition; its directory goes regardless:
            // their file handles stay valid until they finish.
            let dir = partition.mark_deleted();
            let parent = dir.parent().map(Path::to_path_buf).unwrap_or_default();
            let renamed = parent.join(data_dir::delete_dir_name(&partition.topic, partition.index));
            match std::fs::rename(&dir, &renamed) {
                Ok(()) => remove_dir(&renamed)?,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(LogError::Io {
                        op: "rename for deletion",
                        path: dir,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Applies a topic's changed configs to its live partitions.
    pub fn update_topic_settings(&self, topic: &str, settings: &TopicSettings) {
        let topics = self.topics.read().expect("topics lock poisoned");
        for partition in topics
            .get(topic)
            .iter()
            .flat_map(|partitions| partitions.iter().flatten())
        {
            partition.set_settings(settings.clone());
        }
    }

    /// Partition `index` of `topic` if this broker hosts it and leads it: what every request
    /// of a client reaches (a follower's replica answers them NOT_LEADER_OR_FOLLOWER).
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.replica(topic, index)
            .filter(|partition| partition.is_led_here())
    }

    /// Partition `index` of `topic` if this broker hosts a replica of it, leader or follower.
    pub fn replica(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topics = self.topics.read().expect("topics lock poisoned");
        let partitions = topics.get(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| partitions.get(i))
            .cloned()
            .flatten()
    }

    /// Whether partition `image` of `topic` is one to open here: placed on this broker, and
    /// neither open nor offline here already.
    pub fn opens_here(&self, topic: &str, image: &PartitionImage) -> bool {
        image.is_replica(self.config.node_id)
            && !self.is_offline(topic, image.partition)
            && self.replica(topic, image.partition).is_none()
    }

    /// Each hosted topic's name and the topic id its open partitions carry (`None` when none
    /// of its partitions is open here).
    pub fn hosted_topics(&self) -> Vec<(String, Option<Uuid>)> {
        let topics = self.topics.read().expect("topics lock poisoned");
        topics
            .iter()
            .map(|(name, partitions)| {
                let id = partitions.iter().flatten().next().map(|p| p.topic_id);
                (name.clone(), id)
            })
            .collect()
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let topics = self.topics.read().expect("topics lock poisoned");
        topics
            .values()
            .flat_map(|partitions| partitions.iter().flatten().cloned())
            .collect()
    }

    /// The flusher's fsync figures, for `/metrics`.
    pub fn flush_figures(&self) -> &crate::flusher::FlushFigures {
        &self.flusher.figures
    }

    pub fn is_durable(&self) -> bool {
        self.config.flush.is_durable()
    }

    /// A receiver that changes whenever any partition's high watermark advances.
    pub fn data_changed(&self) -> watch::Receiver<u64> {
        self.data_changed.subscribe()
    }

    /// A receiver that changes whenever a partition with followers takes an append or has
    /// its appends written to its file.
    pub fn appended(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Records follower `node_id`'s fetch of `partition` at `fetch_offset`, waking consumers'
    /// fetches when the high watermark moved.
    pub fn follower_fetched(
        &self,
        partition: &Partition,
        node_id: i32,
        fetch_offset: i64,
    ) -> Result<(), crate::replication::replica_set::NotAReplica> {
        if partition.follower_fetched(node_id, fetch_offset, crate::now_ms())? {
            self.data_changed
                .send_modify(|version| *version = version.wrapping_add(1));
        }
        Ok(())
    }

    /// Takes the image's leader, replicas and ISR for `partition`, waking consumers' fetches
    /// when the high watermark moved (an ISR that shrank). Returns whether this broker has
    /// just become the partition's leader.
    pub fn assign(&self, partition: &Partition, image: &PartitionImage) -> bool {
        let before = partition.offsets().high_watermark;
        let became_leader = partition.assign(image);
        if partition.offsets().high_watermark != before {
            self.data_changed
                .send_modify(|version| *version = version.wrapping_add(1));
        }
        became_leader
    }

    /// Appends a batch copied from the partition's leader on this follower and queues it for
    /// the group commit (a follower reports an offset to its leader only once it is durable
    /// here, in durable mode: `replication/fetcher.rs`).
    pub fn append_replicated(
        &self,
        partition: &Arc<Partition>,
        batch: &[u8],
    ) -> Result<runnel_log::AppendOutcome, AppendError> {
        if partition.is_offline() {
            return Err(AppendError::Io {
                op: "append to",
                path: partition.log_dir().path.clone(),
                source: std::io::Error::other("the partition's log directory is offline"),
            });
        }
        let outcome = match partition.append_replicated(batch, crate::now_ms(), self.is_durable()) {
            Ok(outcome) => outcome,
            Err(error @ AppendError::Io { .. }) => {
                self.fail_partition_dir(partition, &error);
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        let records = (outcome.last_offset - outcome.base_offset + 1).max(0) as u64;
        partition
            .metrics
            .bytes_in
            .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.flusher.appended(partition, records);
        Ok(outcome)
    }

    /// Validates and appends the one record batch of a produce request's partition. With
    /// `acks_all`, the partition's in-sync replicas must number at least the topic's
    /// `min.insync.replicas` (the ISR the image names), as Kafka checks before appending.
    ///
    /// `records` is appended where it lies (the request's own frame), not copied: the log
    /// patches its base offset and leader epoch, and a log-append-time topic its timestamps,
    /// in place. Only a batch recompressed for the topic's `compression.type` is a new buffer.
    pub fn append(
        &self,
        partition: &Arc<Partition>,
        records: &mut [u8],
        acks_all: bool,
    ) -> Result<Appended, AppendFailure> {
        if partition.is_offline() {
            return Err(AppendFailure::Offline);
        }
        let settings = partition.settings();
        let isr = partition.isr_len();
        if acks_all && settings.min_insync_replicas > isr {
            return Err(AppendFailure::NotEnoughReplicas {
                isr,
                min: settings.min_insync_replicas,
            });
        }
        let header = validate_produced(records, settings.max_message_bytes)?;
        let mut recompressed = self.checked_batch(partition, records, &header, &settings)?;
        let batch: &mut [u8] = match recompressed.as_mut() {
            Some(recompressed) => recompressed,
            None => records,
        };
        let log_append_time = settings.log_append_time.then(crate::now_ms);
        if let Some(now) = log_append_time {
            record_batch::set_log_append_time(batch, now);
        }
        self.write_batch(partition, batch, &header, log_append_time)
    }

    /// Appends a batch one of this broker's coordinators wrote: a transaction marker (a
    /// control batch) or TxnOffsetCommit's transactional offsets (Kafka's
    /// `AppendOrigin.COORDINATOR`). Checked as one whole valid v2 batch; its records are ours,
    /// so the topic's record policy is not walked and no recompression happens.
    pub fn append_coordinator_batch(
        &self,
        partition: &Arc<Partition>,
        batch: &mut [u8],
    ) -> Result<Appended, AppendFailure> {
        if partition.is_offline() {
            return Err(AppendFailure::Offline);
        }
        let header = record_batch::validate_batch(batch)?;
        if header.size_bytes() != batch.len() {
            return Err(AppendFailure::MultipleBatches);
        }
        self.write_batch(partition, batch, &header, None)
    }

    /// Hands a checked batch to the partition's log and queues it for the group commit.
    fn write_batch(
        &self,
        partition: &Arc<Partition>,
        batch: &mut [u8],
        header: &BatchHeader,
        log_append_time: Option<i64>,
    ) -> Result<Appended, AppendFailure> {
        let durable = self.is_durable();
        let outcome = match partition.append(batch, crate::now_ms(), durable) {
            Ok(outcome) => outcome,
            Err(error @ AppendError::Io { .. }) => {
                self.fail_partition_dir(partition, &error);
                return Err(error.into());
            }
            Err(error) => return Err(error.into()),
        };
        if !outcome.duplicate {
            let records = header.records_count.max(0) as u64;
            partition
                .metrics
                .bytes_in
                .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
            partition
                .metrics
                .records_in
                .fetch_add(records, std::sync::atomic::Ordering::Relaxed);
            self.flusher.appended(partition, records);
            if !durable {
                self.data_changed
                    .send_modify(|version| *version = version.wrapping_add(1));
            }
            if partition.has_followers() {
                self.appended
                    .send_modify(|version| *version = version.wrapping_add(1));
            }
        }
        Ok(Appended {
            base_offset: outcome.base_offset,
            last_offset: outcome.last_offset,
            log_start_offset: outcome.log_start_offset,
            log_append_time_ms: log_append_time.unwrap_or(-1),
        })
    }

    /// Walks every record of the validated batch `records` (Kafka's `LogValidator`) and returns
    /// the batch to append instead of `records` (`None`: `records` itself): where the topic's
    /// `compression.type` names another codec, the batch recompressed in the same pass. A compacted topic refuses a
    /// record without a key, and a create-time topic a timestamp outside its bounds
    /// ([`crate::record_errors`]).
    fn checked_batch(
        &self,
        partition: &Partition,
        records: &[u8],
        header: &BatchHeader,
        settings: &TopicSettings,
    ) -> Result<Option<Vec<u8>>, AppendFailure> {
        let inflated_bytes_max = self.config.socket_request_max_bytes;
        let bounds = (!settings.log_append_time).then(|| TimestampBounds {
            now_ms: crate::now_ms(),
            before_max_ms: settings.timestamp_before_max_ms,
            after_max_ms: settings.timestamp_after_max_ms,
        });
        let policy = RecordPolicy {
            key_required: settings.cleanup_compact,
            create_time: bounds,
        };
        let (checked, recompressed) = match settings.compression {
            Some(codec) if reencode::codec_of(codec) != header.compression() => {
                let (checked, batch) = record_validation::validate_and_recompress(
                    records,
                    header,
                    &policy,
                    codec,
                    inflated_bytes_max,
                    settings.max_message_bytes,
                )?;
                (checked, Some(batch))
            }
            _ => (
                record_validation::validate_records(records, header, &policy, inflated_bytes_max)?,
                None,
            ),
        };
        if !checked.faults.is_empty() {
            return Err(AppendFailure::RecordsRefused(RefusedRecords::new(
                &partition.topic,
                partition.index,
                header,
                &checked.faults,
                bounds.as_ref(),
            )));
        }
        Ok(recompressed)
    }
}

/// The distinct parent directories of `dirs`.
fn parents(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut parents: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|dir| dir.parent().map(Path::to_path_buf))
        .collect();
    parents.sort();
    parents.dedup();
    parents
}

/// Partitions opened for a creation but not hosted yet (see
/// [`ReplicaManager::prepare_partitions`]).
pub struct PreparedPartitions {
    topic: String,
    /// Index of the first partition prepared.
    from: usize,
    /// By index from `from`: `None` for a partition another broker holds.
    partitions: Vec<Option<Arc<Partition>>>,
    /// Directories the preparation created (removed again if the creation fails).
    created_dirs: Vec<PathBuf>,
}

impl PreparedPartitions {
    /// The topic the partitions belong to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// Why a topic's partitions could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenTopicError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("{0}")]
    PartitionMetadata(#[from] PartitionMetadataError),
    #[error("no log directory is online")]
    NoOnlineLogDir,
    #[error(
        "the same partition is in more than one log directory: {dirs:?}; move all but one away"
    )]
    DuplicateDirs { dirs: Vec<PathBuf> },
    #[error(
        "directory {dir} exists but the metadata does not name it: it is kept, and a new \
         partition will not adopt its data; move it away first"
    )]
    DirectoryExists { dir: PathBuf },
}

/// Checks a produced partition's records: exactly one whole, valid v2 batch within the size
/// limit, not a control batch, with a known codec. A transactional batch passes: the produce
/// path has verified it with the transaction coordinator (`api/produce.rs`).
pub fn validate_produced(
    records: &[u8],
    max_message_bytes: usize,
) -> Result<BatchHeader, AppendFailure> {
    if records.is_empty() {
        return Err(AppendFailure::NoRecords);
    }
    if records.len() > max_message_bytes {
        return Err(AppendFailure::TooLarge {
            size: records.len(),
            max: max_message_bytes,
        });
    }
    let mut iter = record_batch::batches(records);
    let (_, range) = iter.next().ok_or(AppendFailure::NoRecords)??;
    if range.end != records.len() {
        return Err(AppendFailure::MultipleBatches);
    }
    let header = record_batch::validate_batch(records)?;
    if header.is_control() {
        return Err(AppendFailure::ControlBatch);
    }
    if header.compression() > 4 {
        return Err(AppendFailure::UnsupportedCompression {
            codec: header.compression(),
        });
    }
    Ok(header)
}

fn remove_dir(dir: &Path) -> Result<(), LogError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(LogError::Io {
            op: "remove",
            path: dir.to_path_buf(),
            source: error,
        }),
    }
}
