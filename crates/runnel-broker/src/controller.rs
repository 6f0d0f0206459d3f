//! The quorum-of-one controller: the only writer of the metadata log.
//!
//! Each change is validated against the current image, appended to `__cluster_metadata-0` as
//! one record batch (the record's value is a [`MetadataRecord`] in JSON), fsync'd, and only
//! then applied and published. At start the whole log is read ([`crate::metadata_log`], which
//! refuses damage other than the torn tail of an unfinished write) and folded into the image;
//! the topics its RemoveTopic records deleted are kept aside so the start can finish their
//! deletion ([`crate::data_dir::settle_stray`]). A Raft quorum will replace this writer; the
//! records and the image stay as they are.
//!
//! Departure from DESIGN.md §3 (a single-task event loop): metadata changes are rare and
//! small, so a `Mutex` around the writer gives the same serialisation with less machinery. It
//! is held across the metadata fsync, which is what orders changes; nothing else waits on it.
//!
//! Writes are `async`: callers await a change until it is durable, which here is the fsync
//! under the writer's lock and, on the metadata quorum (`runnel-controller`), will be the
//! proposal's commit. The admin handlers that change metadata return
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
use runnel_log::{LogConfig, LogError, PartitionLog};
use runnel_metadata::{MetadataImage, MetadataRecord, RemovedTopic, TopicImage};
use runnel_protocol::record_batch;
use thiserror::Error;
use uuid::Uuid;

use crate::metadata_log::{self, MetadataLogDamage, MetadataLogScan, METADATA_BATCH_BYTES_MAX};

/// The metadata log's directory name, as in KRaft.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

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
    #[error("a metadata record of {bytes} bytes is above {METADATA_BATCH_BYTES_MAX}")]
    RecordTooLarge { bytes: usize },
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

struct Writer {
    log: PartitionLog,
}

/// The metadata writer and the published image.
pub struct Controller {
    node_id: i32,
    /// Topics the log's RemoveTopic records deleted, as they were (read at open).
    removed_at_open: Vec<RemovedTopic>,
    writer: Mutex<Writer>,
    image: RwLock<Arc<MetadataImage>>,
}

impl Controller {
    /// Opens (recovering) the metadata log under `data_dir` and replays it; a damaged log
    /// is refused.
    pub fn open(data_dir: &Path, node_id: i32) -> Result<Controller, ControllerError> {
        let scan = metadata_log::scan(&data_dir.join(METADATA_LOG_DIR))?;
        Controller::open_scanned(data_dir, node_id, scan)
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
            writer: Mutex::new(Writer { log }),
            image: RwLock::new(Arc::new(image)),
        })
    }

    /// The topics the metadata log's RemoveTopic records deleted, as they were before.
    pub fn removed_topics(&self) -> &[RemovedTopic] {
        &self.removed_at_open
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image.read().expect("metadata image lock poisoned"))
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
        let mut writer = self.writer.lock().expect("metadata writer lock poisoned");
        if let MetadataRecord::Topic { name, .. } = record {
            if self.image().topic(name).is_some() {
                return Err(ControllerError::TopicAlreadyExists { name: name.clone() });
            }
        }
        self.write(&mut writer, record)?;
        Ok(())
    }

    /// Deletes a topic by id, returning what it was.
    pub async fn delete_topic(&self, topic_id: Uuid) -> Result<Arc<TopicImage>, ControllerError> {
        let mut writer = self.writer.lock().expect("metadata writer lock poisoned");
        let Some(topic) = self.image().topic_by_id(&topic_id).cloned() else {
            return Err(ControllerError::UnknownTopic {
                name: topic_id.to_string(),
            });
        };
        self.write(&mut writer, &MetadataRecord::RemoveTopic { topic_id })?;
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
        let mut writer = self.writer.lock().expect("metadata writer lock poisoned");
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
        self.write(&mut writer, record)?;
        Ok(())
    }

    /// Replaces a topic's config overrides (already validated), returning the topic after.
    pub async fn alter_topic_configs(
        &self,
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, ControllerError> {
        let mut writer = self.writer.lock().expect("metadata writer lock poisoned");
        if self.image().topic_by_id(&topic_id).is_none() {
            return Err(ControllerError::UnknownTopic {
                name: topic_id.to_string(),
            });
        }
        let image = self.write(
            &mut writer,
            &MetadataRecord::TopicConfigs { topic_id, configs },
        )?;
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
        let mut writer = self.writer.lock().expect("metadata writer lock poisoned");
        let record = MetadataRecord::BrokerConfigs {
            resource_name: resource_name.to_string(),
            configs,
        };
        self.write(&mut writer, &record)
    }

    /// Records the next block of `size` producer ids, from the first id no block holds yet,
    /// and returns it once durable ([`crate::producer_ids`] hands the ids out).
    pub async fn allocate_producer_id_block(
        &self,
        size: i64,
    ) -> Result<std::ops::Range<i64>, ControllerError> {
        let mut writer = self.writer.lock().expect("metadata writer lock poisoned");
        let start = self.image().next_producer_id();
        let end = start.saturating_add(size);
        let record = MetadataRecord::ProducerIds {
            next_producer_id: end,
        };
        self.write(&mut writer, &record)?;
        Ok(start..end)
    }

    /// Appends, fsyncs, applies and publishes one record.
    fn write(
        &self,
        writer: &mut Writer,
        record: &MetadataRecord,
    ) -> Result<Arc<MetadataImage>, ControllerError> {
        let mut batch = encode_record(record, crate::now_ms());
        if batch.len() > METADATA_BATCH_BYTES_MAX {
            return Err(ControllerError::RecordTooLarge { bytes: batch.len() });
        }
        writer.log.append(&mut batch, 0, crate::now_ms())?;
        if let Some(target) = writer.log.flush_target() {
            target.sync()?;
            writer.log.mark_flushed(target.up_to);
        }
        let end = writer.log.log_end_offset();
        writer.log.set_high_watermark(end);
        let next = Arc::new(self.image().apply(record));
        *self.image.write().expect("metadata image lock poisoned") = Arc::clone(&next);
        Ok(next)
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
