//! `quorum-state`: the node's vote, its last known committed log id and the last purged log
//! id, in `__cluster_metadata-0/quorum-state` (Kafka's file name for the same facts).
//!
//! # Format (all integers big-endian)
//! ```text
//! offset  size  field
//! 0       4     magic "RNQS"
//! 4       2     version: 1
//! 6       4     body length N, at most QUORUM_STATE_BYTES_MAX
//! 10      4     CRC-32C (Castagnoli) of the body
//! 14      N     body: JSON {"vote": Vote|null, "committed": LogId|null,
//!               "last_purged": LogId|null} (openraft's serde forms)
//! ```
//!
//! # Crash policy
//! Every write replaces the whole file atomically: `quorum-state.tmp` is written and fsync'd,
//! renamed over `quorum-state`, and the directory fsync'd, all before the write returns. So the
//! vote is durable before it is answered (Raft's rule: a node never votes twice in a term),
//! and a crash leaves the old file or the new one, never a mix. A file that is present but
//! fails its magic, version, length or CRC is therefore damage, not a crash: it is refused
//! ([`QuorumStateError::Corrupt`]) and the node does not start; guessing a vote could elect two
//! leaders in one term.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::types::{LogId, Vote};

pub const QUORUM_STATE_FILE: &str = "quorum-state";
const TEMP_FILE: &str = "quorum-state.tmp";
const MAGIC: &[u8; 4] = b"RNQS";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 14;
/// The largest body read: a vote and two log ids are well under a hundred bytes.
pub const QUORUM_STATE_BYTES_MAX: usize = 64 * 1024;

/// What `quorum-state` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumState {
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub last_purged: Option<LogId>,
}

#[derive(Debug, Error)]
pub enum QuorumStateError {
    #[error("{verb} {path}: {source}")]
    Io {
        verb: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {reason}; refusing to guess this node's vote")]
    Corrupt { path: PathBuf, reason: String },
}

impl QuorumState {
    /// Reads `dir/quorum-state`; a missing file is the state of a node that never voted.
    pub fn read(dir: &Path) -> Result<QuorumState, QuorumStateError> {
        let path = dir.join(QUORUM_STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(QuorumState::default())
            }
            Err(source) => {
                return Err(QuorumStateError::Io {
                    verb: "read",
                    path,
                    source,
                })
            }
        };
        decode(&bytes).map_err(|reason| QuorumStateError::Corrupt { path, reason })
    }

    /// Replaces `dir/quorum-state` durably (see the module doc).
    pub fn write(&self, dir: &Path) -> Result<(), QuorumStateError> {
        let temp = dir.join(TEMP_FILE);
        let path = dir.join(QUORUM_STATE_FILE);
        let io = |verb, path: &Path| {
            let path = path.to_path_buf();
            move |source| QuorumStateError::Io { verb, path, source }
        };
        let mut file = File::create(&temp).map_err(io("create", &temp))?;
        file.write_all(&encode(self)).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("fsync", &temp))?;
        fs::rename(&temp, &path).map_err(io("rename", &temp))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", dir))
    }
}

fn encode(state: &QuorumState) -> Vec<u8> {
    // Plain data: serialising cannot fail.
    let body = serde_json::to_vec(state).expect("quorum state serialises");
    let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_be_bytes());
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

fn decode(bytes: &[u8]) -> Result<QuorumState, String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!("{} bytes, shorter than its header", bytes.len()));
    }
    if &bytes[..4] != MAGIC {
        return Err("bad magic".into());
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(format!("unknown version {version}"));
    }
    let length = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]) as usize;
    if length > QUORUM_STATE_BYTES_MAX || HEADER_BYTES + length != bytes.len() {
        return Err(format!(
            "body length {length} does not match the file's {} bytes",
            bytes.len()
        ));
    }
    let crc = u32::from_be_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]);
    let body = &bytes[HEADER_BYTES..];
    if crc32c::crc32c(body) != crc {
        return Err("CRC mismatch".into());
    }
    crate::openraft_json::decode(body).map_err(|error| format!("body does not decode: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    #[test]
    fn state_round_trips_and_damage_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            QuorumState::read(dir.path()).expect("missing"),
            QuorumState::default()
        );
        let state = QuorumState {
            vote: Some(Vote::new(3, 2)),
            committed: Some(LogId::new(CommittedLeaderId::new(3, 2), 17)),
            last_purged: None,
        };
        state.write(dir.path()).expect("write");
        assert_eq!(QuorumState::read(dir.path()).expect("read"), state);
        let path = dir.path().join(QUORUM_STATE_FILE);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 0x01;
        fs::write(&path, &bytes).expect("damage");
        let error = QuorumState::read(dir.path()).expect_err("damage");
        assert!(error.to_string().contains("CRC mismatch"), "{error}");
        fs::write(&path, b"RNQS").expect("short");
        assert!(QuorumState::read(dir.path()).is_err());
    }
}
