//! `meta.properties`: the node id and cluster id of a data directory, written once.
//!
//! Format (Kafka's, KRaft version 1): Java properties with `version=1`, `node.id=<i32>`,
//! `cluster.id=<22-character base64url UUID>`. Written atomically (temp file, fsync, rename)
//! on first start; later starts check that `node.id` matches the configuration, so a data
//! directory is never silently adopted by another node. A data directory that holds data but
//! no `meta.properties` is refused by the server (see `server.rs`), never given a new one.

use std::io::Write;
use std::path::Path;

use thiserror::Error;

pub const META_PROPERTIES: &str = "meta.properties";

#[derive(Debug, Error)]
pub enum MetaPropertiesError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path} belongs to node.id {found}, but this broker is node.id {configured}")]
    NodeIdMismatch {
        path: String,
        found: i32,
        configured: i32,
    },
}

/// Reads the data dir's cluster id, creating `meta.properties` on first start.
pub fn load_or_create(data_dir: &Path, node_id: i32) -> Result<String, MetaPropertiesError> {
    match load(data_dir, node_id)? {
        Some(cluster_id) => Ok(cluster_id),
        None => create(data_dir, node_id),
    }
}

/// The data dir's cluster id, checking its node id; `None` when there is no
/// `meta.properties`.
pub fn load(data_dir: &Path, node_id: i32) -> Result<Option<String>, MetaPropertiesError> {
    let path = data_dir.join(META_PROPERTIES);
    let display = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MetaPropertiesError::Io {
                path: display,
                source,
            })
        }
    };
    let invalid = |reason: &str| MetaPropertiesError::Invalid {
        path: display.clone(),
        reason: reason.to_string(),
    };
    let properties =
        crate::config::parse_properties(&text).map_err(|error| invalid(&error.to_string()))?;
    let found: i32 = properties
        .get("node.id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| invalid("node.id is missing or not a number"))?;
    if found != node_id {
        return Err(MetaPropertiesError::NodeIdMismatch {
            path: display.clone(),
            found,
            configured: node_id,
        });
    }
    properties
        .get("cluster.id")
        .cloned()
        .map(Some)
        .ok_or_else(|| invalid("cluster.id is missing"))
}

/// Writes a new `meta.properties` with a new cluster id, atomically; returns the id.
pub fn create(data_dir: &Path, node_id: i32) -> Result<String, MetaPropertiesError> {
    let path = data_dir.join(META_PROPERTIES);
    let io = |source| MetaPropertiesError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let cluster_id = base64url(uuid::Uuid::new_v4().as_bytes());
    let temp = data_dir.join(format!("{META_PROPERTIES}.tmp"));
    let mut file = std::fs::File::create(&temp).map_err(io)?;
    write!(
        file,
        "#\nversion=1\nnode.id={node_id}\ncluster.id={cluster_id}\n"
    )
    .map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temp, &path).map_err(io)?;
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io)?;
    Ok(cluster_id)
}

/// Makes `dir`'s `meta.properties` name this node, `cluster_id` and a `directory.id` (Kafka's
/// KIP-858 log directory id), as Kafka writes one in every log directory: a missing file is
/// written, one without a directory id is rewritten with a new one (atomically, keeping its
/// other keys), one of another node or cluster is refused. Returns the directory id.
pub fn ensure_directory_id(
    dir: &Path,
    node_id: i32,
    cluster_id: &str,
) -> Result<uuid::Uuid, MetaPropertiesError> {
    let path = dir.join(META_PROPERTIES);
    let display = path.display().to_string();
    let invalid = |reason: String| MetaPropertiesError::Invalid {
        path: display.clone(),
        reason,
    };
    let mut properties = match std::fs::read_to_string(&path) {
        Ok(text) => {
            crate::config::parse_properties(&text).map_err(|error| invalid(error.to_string()))?
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(source) => {
            return Err(MetaPropertiesError::Io {
                path: display,
                source,
            })
        }
    };
    if let Some(found) = properties.get("node.id") {
        if found.parse::<i32>().ok() != Some(node_id) {
            return Err(invalid(format!(
                "node.id {found} does not match this broker's {node_id}"
            )));
        }
    }
    if let Some(found) = properties.get("cluster.id") {
        if found != cluster_id {
            return Err(invalid(format!(
                "cluster.id {found} does not match the cluster's {cluster_id}"
            )));
        }
    }
    if let Some(id) = properties.get("directory.id") {
        return uuid_from_base64url(id)
            .ok_or_else(|| invalid(format!("directory.id {id} is not a UUID")));
    }
    let directory_id = uuid::Uuid::new_v4();
    properties.insert("version".into(), "1".into());
    properties.insert("node.id".into(), node_id.to_string());
    properties.insert("cluster.id".into(), cluster_id.to_string());
    properties.insert("directory.id".into(), base64url(directory_id.as_bytes()));
    let text: String = std::iter::once("#\n".to_string())
        .chain(
            properties
                .iter()
                .map(|(key, value)| format!("{key}={value}\n")),
        )
        .collect();
    write_atomically(dir, &text).map_err(|source| MetaPropertiesError::Io {
        path: display,
        source,
    })?;
    Ok(directory_id)
}

/// Writes `meta.properties` in `dir` through a fsynced temporary file and a rename.
fn write_atomically(dir: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!("{META_PROPERTIES}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, dir.join(META_PROPERTIES))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Unpadded base64url, as Kafka prints UUIDs.
pub(crate) fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The UUID that [`base64url`] printed as these 22 characters, or `None`.
pub(crate) fn uuid_from_base64url(text: &str) -> Option<uuid::Uuid> {
    const BASE64_UUID_CHARS: usize = 22;
    if text.len() != BASE64_UUID_CHARS {
        return None;
    }
    let sextet = |byte: u8| match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    };
    // 22 characters carry 132 bits: 128 of the UUID, then 4 zero bits.
    let (head, last) = text.as_bytes().split_at(BASE64_UUID_CHARS - 1);
    let mut bits: u128 = 0;
    for &byte in head {
        bits = bits << 6 | u128::from(sextet(byte)?);
    }
    let last = sextet(last[0])?;
    if last & 0x0f != 0 {
        return None;
    }
    Some(uuid::Uuid::from_u128(bits << 2 | u128::from(last >> 4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_of_a_uuid_is_22_characters() {
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(&[0u8; 16]).len(), 22);
        let id = uuid::Uuid::new_v4();
        assert_eq!(uuid_from_base64url(&base64url(id.as_bytes())), Some(id));
        assert_eq!(uuid_from_base64url("not a uuid"), None);
        assert_eq!(uuid_from_base64url("AAAAAAAAAAAAAAAAAAAAAB"), None);
    }

    #[test]
    fn written_once_then_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(dir.path(), 1).expect("create");
        assert_eq!(load_or_create(dir.path(), 1).expect("reload"), first);
        assert!(matches!(
            load_or_create(dir.path(), 2),
            Err(MetaPropertiesError::NodeIdMismatch {
                found: 1,
                configured: 2,
                ..
            })
        ));
    }

    #[test]
    fn every_log_dir_gets_a_directory_id_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = load_or_create(dir.path(), 1).expect("create");
        let id = ensure_directory_id(dir.path(), 1, &cluster).expect("add the id");
        assert_eq!(
            ensure_directory_id(dir.path(), 1, &cluster).expect("kept"),
            id
        );
        assert_eq!(
            load(dir.path(), 1).expect("still readable"),
            Some(cluster.clone())
        );
        let other = tempfile::tempdir().expect("tempdir");
        let second = ensure_directory_id(other.path(), 1, &cluster).expect("new file");
        assert_ne!(second, id);
        assert!(ensure_directory_id(other.path(), 1, "another-cluster").is_err());
        assert!(ensure_directory_id(other.path(), 2, &cluster).is_err());
    }
}
