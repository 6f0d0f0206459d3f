//! Kafka's `partition.metadata`: the topic id a partition directory belongs to.
//!
//! Format (Kafka's `PartitionMetadataFile`, version 0), UTF-8 text, two lines:
//!
//! ```text
//! version: 0
//! topic_id: <the topic id, 22 characters of unpadded base64url>
//! ```
//!
//! Written (temp file, fsync, rename) when a partition is opened and the file is missing or
//! unreadable, before anything is appended, as Kafka does. It lets a start tell a directory of
//! a deleted topic from a directory of a later topic with the same name, and lets
//! `runnel metadata rebuild` keep topic ids. The image stays the authority for the topics it
//! names: an unreadable file (a crash during its first write) is rewritten from it.

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

/// Writes `dir/partition.metadata` naming `topic_id`, atomically.
pub fn write(dir: &Path, topic_id: Uuid) -> Result<(), PartitionMetadataError> {
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
    file.sync_all().map_err(io)?;
    std::fs::rename(&temp, &path).map_err(io)
}

/// Makes `dir/partition.metadata` name `topic_id`: an error when it names another topic
/// (Kafka's `InconsistentTopicIdException`), written when missing or unreadable.
pub fn ensure(dir: &Path, topic_id: Uuid) -> Result<(), PartitionMetadataError> {
    match read(dir) {
        Ok(Some(found)) if found == topic_id => Ok(()),
        Ok(Some(found)) => Err(PartitionMetadataError::Invalid {
            path: dir.join(PARTITION_METADATA_FILE).display().to_string(),
            reason: format!(
                "it names topic id {found}, but the metadata gives this partition's topic id \
                 {topic_id}: the directory holds another topic's data; move it away"
            ),
        }),
        Ok(None) => write(dir, topic_id),
        Err(error) => {
            tracing::warn!(%error, "rewriting an unreadable partition.metadata from the metadata");
            write(dir, topic_id)
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
        ensure(dir.path(), id).expect("written");
        let text = std::fs::read_to_string(dir.path().join(PARTITION_METADATA_FILE)).expect("read");
        assert_eq!(
            text,
            format!("version: 0\ntopic_id: {}", base64url(id.as_bytes()))
        );
        assert_eq!(read(dir.path()).expect("read"), Some(id));
        assert!(ensure(dir.path(), Uuid::new_v4()).is_err());
        std::fs::write(dir.path().join(PARTITION_METADATA_FILE), b"vers").expect("tear it");
        assert!(read(dir.path()).is_err());
        ensure(dir.path(), id).expect("rewritten");
        assert_eq!(read(dir.path()).expect("read"), Some(id));
    }
}
