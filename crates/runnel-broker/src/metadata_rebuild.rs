//! `runnel metadata rebuild`: a new metadata log from what the data directory still holds,
//! for a stopped broker whose `__cluster_metadata-0` is missing or damaged (or whose
//! `meta.properties` is gone).
//!
//! What it keeps, in order of trust:
//! 1. the newest snapshot of the old metadata log that reads whole (`<index>-<term>.checkpoint`;
//!    the log below it may be purged, so it alone holds what came before) with the records of
//!    the log after its index, up to any damage ([`metadata_log::salvage`]): topics with ids,
//!    partition counts and config overrides, registered brokers, the producer id block. A
//!    snapshot that does not read is reported and an older one tried;
//! 2. every partition directory `<topic>-<partition>/`: a topic the salvaged records do not
//!    know is recreated with partitions `0..=max index` and the topic id in its
//!    `partition.metadata` files (a new id when none has one); its config overrides are lost
//!    and reported, except `__consumer_offsets`', which Runnel itself sets;
//! 3. directories of topics the salvaged records deleted are not recreated (and are reported).
//!
//! Producer ids: the new log's first free block starts above both the salvaged block and every
//! producer id found in the partitions' batch headers, so no id is handed out twice.
//!
//! The new log is the metadata quorum's (a Raft log with this node its only voter), staged and
//! swapped in by [`crate::metadata_staging`]. Nothing is deleted: the old log is renamed to
//! `__cluster_metadata-0.<ms>-replaced` (a name the broker ignores), and a crash during the
//! swap is settled at the next start. It takes the data directory's lock, so it cannot run
//! beside a server. A missing `meta.properties` is written anew (a new cluster id).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use runnel_log::segment::parse_base_offset;
use runnel_metadata::MetadataRecord;
use runnel_protocol::record_batch::{BatchHeader, BATCH_HEADER_SIZE};
use thiserror::Error;
use uuid::Uuid;

use crate::controller::{self, METADATA_LOG_DIR};
use crate::data_dir::{self, DataDirError, DataDirLock, Inventory, PartitionDir};
use crate::group_coordinator::OFFSETS_TOPIC;
use crate::meta_properties::{self, MetaPropertiesError};
use crate::metadata_log;
use crate::metadata_staging::{self, StagingError};
use crate::partition_metadata;
use crate::producer_ids::PRODUCER_ID_BLOCK_SIZE;

#[derive(Debug, Error)]
pub enum RebuildError {
    #[error("{0}")]
    DataDir(#[from] DataDirError),
    #[error("{0}")]
    MetaProperties(#[from] MetaPropertiesError),
    #[error("the partition directories of topic {topic} name different topic ids ({ids}) in partition.metadata; move the ones that do not belong away and run again")]
    InconsistentTopicIds { topic: String, ids: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the new metadata log: {0}")]
    Staging(#[from] StagingError),
}

/// Where a rebuilt topic's facts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The old metadata log's records before the damage.
    MetadataLog,
    /// The partition directories' `partition.metadata`.
    PartitionMetadata,
    /// Set by Runnel for its internal topic.
    Internal,
    /// Not recoverable: a new topic id, or no config overrides.
    Lost,
}

/// One topic of the new metadata log.
#[derive(Debug, Clone)]
pub struct RebuiltTopic {
    pub name: String,
    pub topic_id: Uuid,
    pub topic_id_from: Source,
    pub partitions: i32,
    /// Partitions below the count with no directory: they start empty.
    pub partitions_without_dir: Vec<i32>,
    pub configs: BTreeMap<String, String>,
    pub configs_from: Source,
}

/// What a rebuild did.
#[derive(Debug, Default)]
pub struct RebuildReport {
    pub data_dir: PathBuf,
    pub topics: Vec<RebuiltTopic>,
    /// Records of the old log used: those after the snapshot, when one was.
    pub records_salvaged: usize,
    /// The snapshot the rebuild started from.
    pub snapshot_used: Option<PathBuf>,
    /// Newer snapshots that did not read, and why.
    pub snapshots_unreadable: Vec<(PathBuf, String)>,
    /// Why the old log was not used whole, if it was damaged.
    pub damage: Option<String>,
    pub old_log_kept_at: Option<PathBuf>,
    /// The cluster id of a newly written `meta.properties`.
    pub cluster_id_written: Option<String>,
    /// Directories of topics the old log deleted: not recreated.
    pub deleted_topic_dirs: Vec<PathBuf>,
    pub next_producer_id: i64,
}

/// Rebuilds the metadata log of the stopped broker's `data_dir` (see the module doc).
pub async fn rebuild(data_dir: &Path, node_id: i32) -> Result<RebuildReport, RebuildError> {
    let _lock = DataDirLock::acquire(data_dir)?;
    let cluster_id = meta_properties::load(data_dir, node_id)?;
    let inventory = Inventory::scan(data_dir)?;
    let metadata_dir = data_dir.join(METADATA_LOG_DIR);
    let (scan, damage) = metadata_log::salvage(&metadata_dir);
    let mut report = RebuildReport {
        data_dir: data_dir.to_path_buf(),
        damage: damage.map(|damage| damage.to_string()),
        ..RebuildReport::default()
    };
    let snapshot = newest_readable_snapshot(&metadata_dir, &mut report);
    // Raft log index = batch offset: the records the snapshot does not hold yet.
    let after = snapshot.as_ref().and_then(|(_, decoded)| {
        decoded
            .meta
            .last_log_id
            .map(|id| i64::try_from(id.index).unwrap_or(i64::MAX))
    });
    let newer: Vec<&MetadataRecord> = scan
        .records
        .iter()
        .filter(|(offset, _)| after.is_none_or(|after| *offset > after))
        .map(|(_, record)| record)
        .collect();
    report.records_salvaged = newer.len();
    let (image, removed) = match snapshot {
        Some((path, decoded)) => {
            report.snapshot_used = Some(path);
            let image = newer
                .into_iter()
                .fold(decoded.image, |image, record| image.apply(record));
            let removed = image.removed_topics().cloned().collect();
            (image, removed)
        }
        None => controller::fold(newer),
    };

    let mut by_topic: BTreeMap<&str, Vec<&PartitionDir>> = BTreeMap::new();
    for dir in &inventory.partitions {
        by_topic.entry(&dir.topic).or_default().push(dir);
    }
    let mut topics: BTreeMap<String, RebuiltTopic> = image
        .topics()
        .map(|topic| {
            let rebuilt = RebuiltTopic {
                name: topic.name.clone(),
                topic_id: topic.topic_id,
                topic_id_from: Source::MetadataLog,
                partitions: topic.partitions.len() as i32,
                partitions_without_dir: Vec::new(),
                configs: topic.configs.clone(),
                configs_from: Source::MetadataLog,
            };
            (topic.name.clone(), rebuilt)
        })
        .collect();
    for (name, dirs) in by_topic {
        if !topics.contains_key(name)
            && dirs
                .iter()
                .all(|d| data_dir::deletion_recorded(d, &removed))
        {
            report
                .deleted_topic_dirs
                .extend(dirs.iter().map(|d| d.path.clone()));
            continue;
        }
        let from_dirs = topic_from_dirs(name, &dirs)?;
        let topic = topics.entry(name.to_string()).or_insert(from_dirs);
        let highest = dirs.iter().map(|d| d.partition).max().unwrap_or(0);
        topic.partitions = topic.partitions.max(highest + 1);
    }
    for topic in topics.values_mut() {
        let present: std::collections::HashSet<i32> = inventory
            .partitions
            .iter()
            .filter(|d| d.topic == topic.name)
            .map(|d| d.partition)
            .collect();
        topic.partitions_without_dir = (0..topic.partitions)
            .filter(|p| !present.contains(p))
            .collect();
    }
    report.topics = topics.into_values().collect();
    report.next_producer_id = next_producer_id(image.next_producer_id(), &inventory)?;

    metadata_staging::settle_interrupted_swap(data_dir)?;
    metadata_staging::stage(data_dir, node_id, new_log_records(&report, node_id)).await?;
    report.old_log_kept_at =
        metadata_staging::swap_in(data_dir, &metadata_staging::kept_name("replaced"))?;
    if cluster_id.is_none() {
        report.cluster_id_written = Some(meta_properties::create(data_dir, node_id)?);
    }
    Ok(report)
}

/// The newest snapshot in `metadata_dir` that decodes, with its path; each newer one that
/// does not is recorded in the report.
fn newest_readable_snapshot(
    metadata_dir: &Path,
    report: &mut RebuildReport,
) -> Option<(PathBuf, runnel_controller::snapshot::DecodedSnapshot)> {
    let paths = match runnel_controller::state_machine::snapshot_paths(metadata_dir) {
        Ok(paths) => paths,
        Err(error) => {
            // No directory, or one that cannot be listed: no snapshot to build on.
            tracing::debug!(%error, "no snapshot listed");
            return None;
        }
    };
    for path in paths.into_iter().rev() {
        let read = std::fs::read(&path).map_err(|error| error.to_string());
        match read.and_then(|bytes| {
            runnel_controller::snapshot::decode(&bytes).map_err(|error| error.to_string())
        }) {
            Ok(decoded) => return Some((path, decoded)),
            Err(reason) => report.snapshots_unreadable.push((path, reason)),
        }
    }
    None
}

/// A topic known only from its partition directories.
fn topic_from_dirs(name: &str, dirs: &[&PartitionDir]) -> Result<RebuiltTopic, RebuildError> {
    let mut ids: Vec<Uuid> = dirs
        .iter()
        .filter_map(|dir| partition_metadata::read(&dir.path).ok().flatten())
        .collect();
    ids.sort();
    ids.dedup();
    if ids.len() > 1 {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        return Err(RebuildError::InconsistentTopicIds {
            topic: name.to_string(),
            ids: ids.join(", "),
        });
    }
    let (topic_id, topic_id_from) = match ids.first() {
        Some(id) => (*id, Source::PartitionMetadata),
        None => (Uuid::new_v4(), Source::Lost),
    };
    let (configs, configs_from) = if name == OFFSETS_TOPIC {
        (
            crate::group_coordinator::offsets_topic_configs(),
            Source::Internal,
        )
    } else {
        (BTreeMap::new(), Source::Lost)
    };
    Ok(RebuiltTopic {
        name: name.to_string(),
        topic_id,
        topic_id_from,
        partitions: 0,
        partitions_without_dir: Vec::new(),
        configs,
        configs_from,
    })
}

/// The first producer id of a block above `salvaged` and every producer id in the batches.
fn next_producer_id(salvaged: i64, inventory: &Inventory) -> Result<i64, RebuildError> {
    let mut highest = -1;
    for dir in &inventory.partitions {
        highest = highest.max(highest_producer_id(&dir.path)?);
    }
    // Producer ids are never negative, so the division rounds down.
    let above_data = ((highest + 1) / PRODUCER_ID_BLOCK_SIZE + 1) * PRODUCER_ID_BLOCK_SIZE;
    Ok(salvaged.max(above_data))
}

/// The highest producer id in the batch headers of `dir`'s segments (-1 when none); each
/// segment is read up to its first unreadable header.
fn highest_producer_id(dir: &Path) -> Result<i64, RebuildError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RebuildError::Io {
            op: "read",
            path,
            source,
        }
    };
    let mut highest = -1;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let is_segment = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".log"))
            .and_then(parse_base_offset)
            .is_some();
        if !is_segment {
            continue;
        }
        let file = File::open(&path).map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        let mut header = [0u8; BATCH_HEADER_SIZE];
        let mut position = 0u64;
        while position + BATCH_HEADER_SIZE as u64 <= len {
            file.read_exact_at(&mut header, position)
                .map_err(io(&path))?;
            let Ok(parsed) = BatchHeader::parse(&header) else {
                break;
            };
            highest = highest.max(parsed.producer_id);
            position += parsed.size_bytes() as u64;
        }
    }
    Ok(highest)
}

/// The new log's records: the report's topics (led by `leader`), then its producer id block.
fn new_log_records(report: &RebuildReport, leader: i32) -> Vec<MetadataRecord> {
    let mut records: Vec<MetadataRecord> = report
        .topics
        .iter()
        .map(|topic| MetadataRecord::Topic {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
            partitions: topic.partitions,
            leader,
            configs: topic.configs.clone(),
            replicas: Vec::new(),
        })
        .collect();
    records.push(MetadataRecord::ProducerIds {
        next_producer_id: report.next_producer_id,
    });
    records
}

impl fmt::Display for RebuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, reason) in &self.snapshots_unreadable {
            writeln!(
                f,
                "snapshot {} does not read ({reason}): not used",
                path.display()
            )?;
        }
        if let Some(path) = &self.snapshot_used {
            writeln!(f, "started from snapshot {}", path.display())?;
        }
        match &self.damage {
            Some(damage) => writeln!(
                f,
                "the old metadata log was damaged ({damage}); {} record(s) before the damage were kept",
                self.records_salvaged
            )?,
            None => writeln!(f, "{} record(s) of the old metadata log were kept", self.records_salvaged)?,
        }
        for topic in &self.topics {
            write!(
                f,
                "topic {}: {} partition(s), id {}",
                topic.name, topic.partitions, topic.topic_id
            )?;
            if topic.topic_id_from == Source::Lost {
                write!(f, " (new: no partition.metadata names one)")?;
            }
            match topic.configs_from {
                Source::Lost => write!(
                    f,
                    "; config overrides LOST: set them again (runnel topic alter)"
                )?,
                Source::Internal => write!(f, "; configs: Runnel's for {OFFSETS_TOPIC}")?,
                _ if topic.configs.is_empty() => write!(f, "; no config overrides")?,
                _ => {
                    let configs: Vec<String> = topic
                        .configs
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    write!(f, "; configs {}", configs.join(", "))?
                }
            }
            if !topic.partitions_without_dir.is_empty() {
                write!(
                    f,
                    "; partitions {:?} had no directory and start empty",
                    topic.partitions_without_dir
                )?;
            }
            writeln!(f)?;
        }
        for dir in &self.deleted_topic_dirs {
            writeln!(
                f,
                "not recreated (its topic was deleted): {}",
                dir.display()
            )?;
        }
        writeln!(f, "producer ids start at {}", self.next_producer_id)?;
        if let Some(kept) = &self.old_log_kept_at {
            writeln!(f, "the old metadata log is kept at {}", kept.display())?;
        }
        if let Some(cluster_id) = &self.cluster_id_written {
            writeln!(f, "wrote a new meta.properties, cluster id {cluster_id}")?;
        }
        write!(
            f,
            "metadata rebuilt in {}; the broker can start",
            self.data_dir.display()
        )
    }
}
