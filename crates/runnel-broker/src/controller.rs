//! The controller: validates each metadata change against the current image and writes it.
//!
//! It runs on the metadata quorum (`runnel-controller`, openraft): the Raft log in
//! `__cluster_metadata-0`, the image as its state machine. `runnel server` is a quorum of one,
//! this node its only voter, on the same code path as several voters: a change is proposed
//! and answered once committed and applied here. At start the quorum replays its snapshot and
//! log (its own scan refuses damage other than the torn tail of an unfinished write).
//!
//! Departure from DESIGN.md §8, for now: a data directory written before the quorum (one
//! metadata record per batch, no `quorum-state`) stays on the single writer that wrote it
//! (each record appended and fsync'd under a lock, then applied), read at start by
//! [`crate::metadata_log`]. Migrating such a log into the Raft log is the next step; then this
//! writer goes. `runnel metadata rebuild` writes that format too (and reads both).
//!
//! Either way the topics RemoveTopic records deleted are known at start (the image remembers
//! them), so the start can finish their deletion ([`crate::data_dir::settle_stray`]).
//!
//! Departure from DESIGN.md §3 (a single-task event loop): metadata changes are rare and
//! small, so a lock around check-then-write gives the same serialisation with less
//! machinery.
//!
//! Writes are `async`: callers await a change until it is durable (the proposal's commit, or
//! the single writer's fsync). The admin handlers that change metadata return
//! [`crate::api::Reply::Ordered`], so a connection's next request is read only after the change
//! (Kafka handles a connection's requests one at a time).
//!
//! Producer ids are recorded in blocks ([`Controller::allocate_producer_id_block`]); a block is
//! durable before any id in it is used ([`crate::producer_ids`] hands them out), and a restart
//! starts from the next unrecorded block, so an id is never handed out twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use runnel_controller::{
    AppliedMetadata, MetadataQuorum, ProposeError, QuorumConfig, StartError, Voter,
    PROPOSAL_BYTES_MAX,
};
use runnel_log::{LogConfig, LogError, PartitionLog};
use runnel_metadata::{MetadataImage, MetadataRecord, RemovedTopic, TopicImage};
use runnel_protocol::record_batch;
use thiserror::Error;
use tokio::sync::watch;
use uuid::Uuid;

use crate::metadata_log::{MetadataLogDamage, MetadataLogScan, METADATA_BATCH_BYTES_MAX};

/// The metadata log's directory name, as in KRaft.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
/// How long a start waits for the quorum to lead with its log applied.
const QUORUM_START_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("metadata log: {0}")]
    Log(#[from] LogError),
    #[error("metadata log append: {0}")]
    Append(#[from] runnel_log::AppendError),
    #[error("metadata log read: {0}")]
    Read(#[from] runnel_log::ReadError),
    #[error("metadata log I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata log holds an unreadable record at offset {offset}: {reason}")]
    Corrupt { offset: i64, reason: String },
    #[error(transparent)]
    Damaged(#[from] MetadataLogDamage),
    #[error("a metadata record of {bytes} bytes is above {max}, the most one write takes")]
    RecordTooLarge { bytes: usize, max: usize },
    #[error("metadata quorum: {0}")]
    Quorum(ProposeError),
    #[error("metadata quorum: {0}")]
    Start(#[from] StartError),
    #[error("the metadata quorum has stopped")]
    Stopped,
    #[error("topic {name} already exists")]
    TopicAlreadyExists { name: String },
    #[error("topic {name} does not exist")]
    UnknownTopic { name: String },
    #[error("topic {name} has {current} partitions: {requested} is not more")]
    PartitionCountNotIncreased {
        name: String,
        current: i32,
        requested: i32,
    },
}

/// The metadata writer and the published image.
pub struct Controller {
    node_id: i32,
    /// Topics the log's RemoveTopic records deleted, as they were (read at open).
    removed_at_open: Vec<RemovedTopic>,
    backend: Backend,
    /// Serialises each check-then-write: the image a change was validated against is the one
    /// it applies to (this node is the only proposer).
    writing: tokio::sync::Mutex<()>,
}

/// Where changes are written.
enum Backend {
    /// The metadata quorum (`runnel-controller`), here a quorum of one.
    Quorum {
        /// `None` once shut down.
        quorum: tokio::sync::Mutex<Option<MetadataQuorum>>,
        applied: watch::Receiver<AppliedMetadata>,
    },
    /// A data directory written before the quorum, in the single writer's format (one
    /// metadata record per batch): kept on that writer until its log is migrated.
    SingleWriter {
        log: Box<Mutex<PartitionLog>>,
        image: RwLock<Arc<MetadataImage>>,
    },
}

impl Controller {
    /// Starts the metadata quorum on the Raft log under `data_dir` as a quorum of one (this
    /// node its only voter) and waits until it leads with everything committed applied
    /// (a quorum of one leads at once: openraft restores a sole voter's leadership at start).
    /// Its controller listener is bound on a loopback port no peer uses.
    pub async fn start_quorum(
        data_dir: &Path,
        node_id: i32,
    ) -> Result<Controller, ControllerError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let voters = vec![Voter {
            id: node_id,
            address: addr.to_string(),
        }];
        let config = QuorumConfig::new(node_id, voters, data_dir.to_path_buf(), addr);
        let quorum = MetadataQuorum::start_with_listener(config, listener).await?;
        quorum
            .wait_until_leading(QUORUM_START_DEADLINE)
            .await
            .map_err(ControllerError::Quorum)?;
        let applied = quorum.image();
        let image = Arc::clone(&applied.borrow().image);
        let removed_at_open = image.removed_topics().cloned().collect();
        tracing::info!(
            topics = image.topics().count(),
            applied_index = ?applied.borrow().applied_index(),
            "metadata quorum of one started"
        );
        Ok(Controller {
            node_id,
            removed_at_open,
            backend: Backend::Quorum {
                quorum: tokio::sync::Mutex::new(Some(quorum)),
                applied,
            },
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// Opens the metadata log under `data_dir` that `scan` read: its torn tail, if any, is
    /// truncated by the log's recovery, and the image is folded from the scanned records.
    pub fn open_scanned(
        data_dir: &Path,
        node_id: i32,
        scan: MetadataLogScan,
    ) -> Result<Controller, ControllerError> {
        if let Some(torn) = &scan.torn_tail {
            tracing::warn!(
                segment = %torn.segment.display(),
                position = torn.position,
                bytes = torn.bytes,
                "the metadata log ends in the torn tail of an unfinished write; truncating it"
            );
        }
        let log = PartitionLog::open(&data_dir.join(METADATA_LOG_DIR), LogConfig::default(), 0)?;
        if log.log_end_offset() != scan.end_offset {
            return Err(ControllerError::Corrupt {
                offset: log.log_end_offset().min(scan.end_offset),
                reason: format!(
                    "recovery kept offsets up to {} but the scan read up to {}",
                    log.log_end_offset(),
                    scan.end_offset
                ),
            });
        }
        let (image, removed_at_open) = fold(scan.records.iter().map(|(_, record)| record));
        tracing::info!(
            topics = image.topics().count(),
            records_end_offset = log.log_end_offset(),
            "metadata replayed"
        );
        Ok(Controller {
            node_id,
            removed_at_open,
            backend: Backend::SingleWriter {
                log: Box::new(Mutex::new(log)),
                image: RwLock::new(Arc::new(image)),
            },
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// The topics the metadata log's RemoveTopic records deleted, as they were before.
    pub fn removed_topics(&self) -> &[RemovedTopic] {
        &self.removed_at_open
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        match &self.backend {
            Backend::Quorum { applied, .. } => Arc::clone(&applied.borrow().image),
            Backend::SingleWriter { image, .. } => {
                Arc::clone(&image.read().expect("metadata image lock poisoned"))
            }
        }
    }

    /// The record that creates topic `name` led by this node (a new topic id), and the topic
    /// as the image will hold it once the record is written: the broker opens the partitions
    /// from it before [`Controller::create_topic`] records them (all or nothing).
    pub fn plan_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<(MetadataRecord, Arc<TopicImage>), ControllerError> {
        let image = self.image();
        if image.topic(name).is_some() {
            return Err(ControllerError::TopicAlreadyExists {
                name: name.to_string(),
            });
        }
        let record = MetadataRecord::Topic {
            name: name.to_string(),
            topic_id: Uuid::new_v4(),
            partitions,
            leader: self.node_id,
            configs,
        };
        let topic = image.apply(&record).topic(name).cloned().ok_or_else(|| {
            ControllerError::UnknownTopic {
                name: name.to_string(),
            }
        })?;
        Ok((record, topic))
    }

    /// Writes a record from [`Controller::plan_topic`]; fails if the name was taken since.
    pub async fn create_topic(&self, record: &MetadataRecord) -> Result<(), ControllerError> {
        let _writing = self.writing.lock().await;
        if let MetadataRecord::Topic { name, .. } = record {
            if self.image().topic(name).is_some() {
                return Err(ControllerError::TopicAlreadyExists { name: name.clone() });
            }
        }
        self.write(record).await?;
        Ok(())
    }

    /// Deletes a topic by id, returning what it was.
    pub async fn delete_topic(&self, topic_id: Uuid) -> Result<Arc<TopicImage>, ControllerError> {
        let _writing = self.writing.lock().await;
        let Some(topic) = self.image().topic_by_id(&topic_id).cloned() else {
            return Err(ControllerError::UnknownTopic {
                name: topic_id.to_string(),
            });
        };
        self.write(&MetadataRecord::RemoveTopic { topic_id })
            .await?;
        Ok(topic)
    }

    /// The record that grows a topic to `partitions` partitions led by this node, and the
    /// topic as the image will hold it once written (see [`Controller::plan_topic`]). The
    /// count only grows: records are routed by partition count, so a shrink would move keys
    /// and strand data.
    pub fn plan_partitions(
        &self,
        topic_id: Uuid,
        partitions: i32,
    ) -> Result<(MetadataRecord, Arc<TopicImage>), ControllerError> {
        let image = self.image();
        let Some(topic) = image.topic_by_id(&topic_id).cloned() else {
            return Err(ControllerError::UnknownTopic {
                name: topic_id.to_string(),
            });
        };
        let current = topic.partitions.len() as i32;
        if partitions <= current {
            return Err(ControllerError::PartitionCountNotIncreased {
                name: topic.name.clone(),
                current,
                requested: partitions,
            });
        }
        let record = MetadataRecord::PartitionCount {
            topic_id,
            partitions,
            leader: self.node_id,
        };
        let grown = image
            .apply(&record)
            .topic_by_id(&topic_id)
            .cloned()
            .ok_or_else(|| ControllerError::UnknownTopic {
                name: topic.name.clone(),
            })?;
        Ok((record, grown))
    }

    /// Writes a record from [`Controller::plan_partitions`] if the topic still has the count
    /// `current` it was planned from.
    pub async fn create_partitions(
        &self,
        record: &MetadataRecord,
        current: usize,
    ) -> Result<(), ControllerError> {
        let _writing = self.writing.lock().await;
        if let MetadataRecord::PartitionCount {
            topic_id,
            partitions,
            ..
        } = record
        {
            let Some(topic) = self.image().topic_by_id(topic_id).cloned() else {
                return Err(ControllerError::UnknownTopic {
                    name: topic_id.to_string(),
                });
            };
            if topic.partitions.len() != current {
                return Err(ControllerError::PartitionCountNotIncreased {
                    name: topic.name.clone(),
                    current: topic.partitions.len() as i32,
                    requested: *partitions,
                });
            }
        }
        self.write(record).await?;
        Ok(())
    }

    /// Replaces a topic's config overrides (already validated), returning the topic after.
    pub async fn alter_topic_configs(
        &self,
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, ControllerError> {
        let _writing = self.writing.lock().await;
        if self.image().topic_by_id(&topic_id).is_none() {
            return Err(ControllerError::UnknownTopic {
                name: topic_id.to_string(),
            });
        }
        let image = self
            .write(&MetadataRecord::TopicConfigs { topic_id, configs })
            .await?;
        image
            .topic_by_id(&topic_id)
            .cloned()
            .ok_or_else(|| ControllerError::UnknownTopic {
                name: topic_id.to_string(),
            })
    }

    /// Replaces the dynamic configs of broker resource `resource_name` (a node id, or "" for
    /// the cluster default; already validated), returning the image after.
    pub async fn alter_broker_configs(
        &self,
        resource_name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<MetadataImage>, ControllerError> {
        let _writing = self.writing.lock().await;
        let record = MetadataRecord::BrokerConfigs {
            resource_name: resource_name.to_string(),
            configs,
        };
        self.write(&record).await
    }

    /// Records the next block of `size` producer ids, from the first id no block holds yet,
    /// and returns it once durable ([`crate::producer_ids`] hands the ids out).
    pub async fn allocate_producer_id_block(
        &self,
        size: i64,
    ) -> Result<std::ops::Range<i64>, ControllerError> {
        let _writing = self.writing.lock().await;
        let start = self.image().next_producer_id();
        let end = start.saturating_add(size);
        let record = MetadataRecord::ProducerIds {
            next_producer_id: end,
        };
        self.write(&record).await?;
        Ok(start..end)
    }

    /// Writes one record and returns the image after it, once it is durable: committed by the
    /// quorum (and applied here), or appended and fsync'd by the single writer.
    async fn write(&self, record: &MetadataRecord) -> Result<Arc<MetadataImage>, ControllerError> {
        match &self.backend {
            Backend::Quorum { quorum, .. } => {
                let quorum = quorum.lock().await;
                let Some(quorum) = quorum.as_ref() else {
                    return Err(ControllerError::Stopped);
                };
                quorum
                    .propose(vec![record.clone()])
                    .await
                    .map_err(|error| match error {
                        ProposeError::TooLarge { bytes } => ControllerError::RecordTooLarge {
                            bytes,
                            max: PROPOSAL_BYTES_MAX,
                        },
                        error => ControllerError::Quorum(error),
                    })?;
                Ok(self.image())
            }
            Backend::SingleWriter { log, image } => {
                let mut log = log.lock().expect("metadata writer lock poisoned");
                let mut batch = encode_record(record, crate::now_ms());
                if batch.len() > METADATA_BATCH_BYTES_MAX {
                    return Err(ControllerError::RecordTooLarge {
                        bytes: batch.len(),
                        max: METADATA_BATCH_BYTES_MAX,
                    });
                }
                log.append(&mut batch, 0, crate::now_ms())?;
                if let Some(target) = log.flush_target() {
                    target.sync()?;
                    log.mark_flushed(target.up_to);
                }
                let end = log.log_end_offset();
                log.set_high_watermark(end);
                let next = Arc::new(self.image().apply(record));
                *image.write().expect("metadata image lock poisoned") = Arc::clone(&next);
                Ok(next)
            }
        }
    }

    /// Stops the quorum (its log and snapshots stay as they are on disk).
    pub async fn shutdown(&self) {
        if let Backend::Quorum { quorum, .. } = &self.backend {
            if let Some(quorum) = quorum.lock().await.take() {
                if let Err(error) = quorum.shutdown().await {
                    tracing::warn!(%error, "the metadata quorum did not stop cleanly");
                }
            }
        }
    }
}

/// One metadata record as the batch the log stores.
pub(crate) fn encode_record(record: &MetadataRecord, timestamp: i64) -> Vec<u8> {
    let value = Some(Bytes::from(record.encode()));
    record_batch::encode_internal_batch([(None, value)], timestamp)
}

/// The image after `records`, and the topics their RemoveTopic records deleted (the most
/// recent [`runnel_metadata::REMOVED_TOPICS_KEPT`], as the image remembers them).
pub(crate) fn fold<'a>(
    records: impl IntoIterator<Item = &'a MetadataRecord>,
) -> (MetadataImage, Vec<RemovedTopic>) {
    let image = records
        .into_iter()
        .fold(MetadataImage::default(), |image, record| {
            image.apply(record)
        });
    let removed = image.removed_topics().cloned().collect();
    (image, removed)
}
