//! Kafka's `partition.metadata`: the topic id a partition directory belongs to.
//!
//! Format (Kafka's `PartitionMetadataFile`, version 0), UTF-8 text, two lines:
//!
//! ```text
//! version: 0
//! topic_id: <the topic id, 22 characters of unpadded base64url>
//! ```
//!
//! Written (temp file, rename) when a partition is opened and the file is missing or
//! unreadable, and durable before anything is appended, as Kafka does (`UnifiedLog` records
//! it at creation and `maybeFlushMetadataFile` fsyncs it before the first append). It lets a
//! start tell a directory of a deleted topic from a directory of a later topic with the same
//! name, and lets `runnel metadata rebuild` keep topic ids. The image stays the authority for
//! the topics it names: an unreadable file (a crash during its first write) is rewritten from
//! it.
//!
//! # Durability
//! A partition opened at start whose file is missing gets it written and fsynced at once
//! ([`Sync::Now`]). A new partition (CreateTopics, CreatePartitions) gets it written without
//! an fsync ([`Sync::BeforeFirstAppend`]): fsyncing 10,000 small files would make a large
//! creation slow, and until the partition holds data the file is not needed after a crash:
//! - the topic's record was written: the partition is named by the image, and a missing or
//!   torn file is rewritten from it at the next open;
//! - the crash came before the record: the directory holds no records. A torn file makes the
//!   start keep it as a stray directory (`data_dir.rs`); a missing one lets a RemoveTopic
//!   record of an older topic of that name account for it (removed, with no records lost),
//!   or else it is kept as stray.
//!
//! The partition then fsyncs the file and its directory before its first append
//! ([`crate::partition::Partition::append`]): no record is ever written, and so none can
//! reach the disk, before the topic id it belongs to is durable.

use std::io::Write;
use std::path::Path;

use thiserror::Error;
use uuid::Uuid;

use crate::meta_properties::{base64url, uuid_from_base64url};

pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Larger files are not ours: the two lines are under 50 bytes.
const FILE_BYTES_MAX: u64 = 4096;

#[derive(Debug, Error)]
pub enum PartitionMetadataError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a partition.metadata file of version 0: {reason}")]
    Invalid { path: String, reason: String },
}

/// The topic id in `dir/partition.metadata`; `None` when there is no such file.
pub fn read(dir: &Path) -> Result<Option<Uuid>, PartitionMetadataError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let display = || path.display().to_string();
    let invalid = |reason: &str| PartitionMetadataError::Invalid {
        path: display(),
        reason: reason.to_string(),
    };
    let io = |source| PartitionMetadataError::Io {
        path: display(),
        source,
    };
    match std::fs::metadata(&path) {
        Ok(metadata) if metadata.len() > FILE_BYTES_MAX => return Err(invalid("too large")),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io(error)),
    }
    let bytes = std::fs::read(&path).map_err(io)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid("not UTF-8"))?;
    let mut version = None;
    let mut topic_id = None;
    for line in text.lines() {
        match line.split_once(':') {
            Some(("version", value)) => version = Some(value.trim()),
            Some(("topic_id", value)) => topic_id = Some(value.trim()),
            _ => {}
        }
    }
    if version != Some("0") {
        return Err(invalid("version is missing or not 0"));
    }
    let topic_id = topic_id.ok_or_else(|| invalid("topic_id is missing"))?;
    uuid_from_base64url(topic_id)
        .map(Some)
        .ok_or_else(|| invalid("topic_id is not a topic id"))
}

/// When a written file is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// fsynced before [`write`] returns.
    Now,
    /// Left to the caller, who calls [`sync`] before the partition's first append.
    BeforeFirstAppend,
}

/// Writes `dir/partition.metadata` naming `topic_id`, atomically, fsynced.
pub fn write(dir: &Path, topic_id: Uuid) -> Result<(), PartitionMetadataError> {
    write_with(dir, topic_id, Sync::Now)
}

/// fsyncs `dir/partition.metadata` and `dir` (the file's entry).
pub fn sync(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir.join(PARTITION_METADATA_FILE))?.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

fn write_with(dir: &Path, topic_id: Uuid, sync: Sync) -> Result<(), PartitionMetadataError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let temp = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
    let io = |source| PartitionMetadataError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::create(&temp).map_err(io)?;
    write!(
        file,
        "version: 0\ntopic_id: {}",
        base64url(topic_id.as_bytes())
    )
    .map_err(io)?;
    if sync == Sync::Now {
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&temp, &path).map_err(io)
}

/// Makes `dir/partition.metadata` name `topic_id`: an error when it names another topic
/// (Kafka's `InconsistentTopicIdException`), written when missing or unreadable, made durable
/// as `sync` says. Returns whether it was written.
pub fn ensure(dir: &Path, topic_id: Uuid, sync: Sync) -> Result<bool, PartitionMetadataError> {
    match read(dir) {
        Ok(Some(found)) if found == topic_id => Ok(false),
        Ok(Some(found)) => Err(PartitionMetadataError::Invalid {
            path: dir.join(PARTITION_METADATA_FILE).display().to_string(),
            reason: format!(
                "it names topic id {found}, but the metadata gives this partition's topic id \
                 {topic_id}: the directory holds another topic's data; move it away"
            ),
        }),
        Ok(None) => write_with(dir, topic_id, sync).map(|()| true),
        Err(error) => {
            tracing::warn!(%error, "rewriting an unreadable partition.metadata from the metadata");
            write_with(dir, topic_id, sync).map(|()| true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_kafkas_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()).expect("absent"), None);
        let id = Uuid::new_v4();
        assert!(ensure(dir.path(), id, Sync::BeforeFirstAppend).expect("written"));
        sync(dir.path()).expect("synced");
        let text = std::fs::read_to_string(dir.path().join(PARTITION_METADATA_FILE)).expect("read");
        assert_eq!(
            text,
            format!("version: 0\ntopic_id: {}", base64url(id.as_bytes()))
        );
        assert_eq!(read(dir.path()).expect("read"), Some(id));
        assert!(!ensure(dir.path(), id, Sync::Now).expect("already there"));
        assert!(ensure(dir.path(), Uuid::new_v4(), Sync::Now).is_err());
        std::fs::write(dir.path().join(PARTITION_METADATA_FILE), b"vers").expect("tear it");
        assert!(read(dir.path()).is_err());
        assert!(ensure(dir.path(), id, Sync::Now).expect("rewritten"));
        assert_eq!(read(dir.path()).expect("read"), Some(id));
    }
}
