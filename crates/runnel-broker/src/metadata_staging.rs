//! Writing a whole metadata log beside the live one and swapping it in: how a data directory
//! from before the metadata quorum is migrated at start, and how `runnel metadata rebuild`
//! writes its new log.
//!
//! A log is staged in `<data dir>/.metadata-staging/__cluster_metadata-0/` by starting a
//! metadata quorum of one there and proposing the records, so the staged log is the quorum's
//! own format, written by the code that will read it. The quorum is then stopped and the
//! marker `.metadata-staging/complete` written and fsync'd: from then on the staged log is
//! whole.
//!
//! The swap ([`swap_in`]): the live `__cluster_metadata-0/`, if any, is renamed to the name the
//! caller keeps it under (`__cluster_metadata-0.<ms>-single-writer` for a migration,
//! `.<ms>-replaced` for a rebuild; names the inventory ignores), the data directory fsync'd, the
//! staged log renamed into place, the data directory fsync'd again, and the staging directory
//! removed. Nothing is deleted on the way: the old log stays under its new name.
//!
//! A crash during the swap leaves one of these, and the next start settles it before it reads
//! the metadata ([`settle_interrupted_swap`]):
//! - no marker: the staging never finished. The live log is untouched; the staging directory
//!   (derived from it, or from the data directory for a rebuild) is removed.
//! - marker, and a live log: the first rename never happened, and the live log is still the
//!   source; the staging directory is removed (a migration then runs again).
//! - marker, no live log: the crash fell between the two renames (or a rebuild had no log to
//!   replace); the staged log is renamed into place.

use std::fs::File;
use std::path::{Path, PathBuf};

use runnel_controller::{MetadataQuorum, QuorumConfig, Voter, PROPOSAL_BYTES_MAX};
use runnel_metadata::MetadataRecord;
use thiserror::Error;

use crate::controller::METADATA_LOG_DIR;

/// The staging directory under the data directory (a name the inventory ignores: no
/// `-<partition>` suffix).
pub const STAGING_DIR: &str = ".metadata-staging";
/// Written in the staging directory once its log is whole.
const COMPLETE_MARKER: &str = "complete";
/// How long the staging quorum of one may take to lead.
const STAGING_LEAD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum StagingError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a metadata record of {bytes} bytes is above {PROPOSAL_BYTES_MAX}, the most one metadata quorum entry holds")]
    RecordTooLarge { bytes: usize },
    #[error("the staging metadata quorum: {0}")]
    Quorum(String),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StagingError {
    let path = path.to_path_buf();
    move |source| StagingError::Io { op, path, source }
}

/// Writes `records`, in order, as a whole metadata log in the staging directory of
/// `data_dir` (replacing a leftover staging directory), with `node_id` its only voter.
pub async fn stage(
    data_dir: &Path,
    node_id: i32,
    records: Vec<MetadataRecord>,
) -> Result<(), StagingError> {
    let staging = data_dir.join(STAGING_DIR);
    remove_staging(&staging)?;
    std::fs::create_dir_all(&staging).map_err(io("create", &staging))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io("bind a loopback port for", &staging))?;
    let addr = listener.local_addr().map_err(io("bind", &staging))?;
    let voters = vec![Voter {
        id: node_id,
        address: addr.to_string(),
    }];
    let config = QuorumConfig::new(node_id, voters, staging.clone(), addr);
    let quorum = MetadataQuorum::start_with_listener(config, listener)
        .await
        .map_err(|error| StagingError::Quorum(error.to_string()))?;
    let proposed = propose_all(&quorum, records).await;
    let stopped = quorum.shutdown().await;
    proposed?;
    stopped.map_err(|error| StagingError::Quorum(error.to_string()))?;
    let marker = staging.join(COMPLETE_MARKER);
    File::create(&marker)
        .and_then(|file| file.sync_all())
        .map_err(io("write", &marker))?;
    sync_dir(&staging)?;
    sync_dir(data_dir)
}

/// Proposes `records` in entries of at most [`PROPOSAL_BYTES_MAX`] bytes, each committed
/// before the next.
async fn propose_all(
    quorum: &MetadataQuorum,
    records: Vec<MetadataRecord>,
) -> Result<(), StagingError> {
    quorum
        .wait_until_leading(STAGING_LEAD_DEADLINE)
        .await
        .map_err(|error| StagingError::Quorum(error.to_string()))?;
    let mut entry = Vec::new();
    let mut entry_bytes = 0;
    for record in records {
        let bytes = record.encode().len();
        if bytes > PROPOSAL_BYTES_MAX {
            return Err(StagingError::RecordTooLarge { bytes });
        }
        if entry_bytes + bytes > PROPOSAL_BYTES_MAX {
            propose(quorum, std::mem::take(&mut entry)).await?;
            entry_bytes = 0;
        }
        entry_bytes += bytes;
        entry.push(record);
    }
    if !entry.is_empty() {
        propose(quorum, entry).await?;
    }
    Ok(())
}

async fn propose(quorum: &MetadataQuorum, entry: Vec<MetadataRecord>) -> Result<(), StagingError> {
    quorum
        .propose(entry)
        .await
        .map(|_| ())
        .map_err(|error| StagingError::Quorum(error.to_string()))
}

/// Swaps the staged log in (see the module doc): the live log, if any, is kept as
/// `<data dir>/<keep_as>`. Returns where the old log was kept.
pub fn swap_in(data_dir: &Path, keep_as: &str) -> Result<Option<PathBuf>, StagingError> {
    let live = data_dir.join(METADATA_LOG_DIR);
    let kept = if live.exists() {
        let kept = data_dir.join(keep_as);
        std::fs::rename(&live, &kept).map_err(io("rename", &live))?;
        sync_dir(data_dir)?;
        Some(kept)
    } else {
        None
    };
    move_staged_into_place(data_dir)?;
    Ok(kept)
}

/// Settles a staging directory a crash left behind (see the module doc); returns whether the
/// staged log was moved into place.
pub fn settle_interrupted_swap(data_dir: &Path) -> Result<bool, StagingError> {
    let staging = data_dir.join(STAGING_DIR);
    if !staging.exists() {
        return Ok(false);
    }
    let complete = staging.join(COMPLETE_MARKER).exists();
    if complete && !data_dir.join(METADATA_LOG_DIR).exists() {
        tracing::warn!(
            staging = %staging.display(),
            "a metadata log swap was interrupted between its renames; moving the staged log into place"
        );
        move_staged_into_place(data_dir)?;
        return Ok(true);
    }
    tracing::warn!(
        staging = %staging.display(),
        complete,
        "removing a staged metadata log that was never swapped in (the live log is its source)"
    );
    remove_staging(&staging)?;
    Ok(false)
}

/// The name an old log is kept under by [`swap_in`]: `__cluster_metadata-0.<ms>-<why>`.
pub fn kept_name(why: &str) -> String {
    format!("{METADATA_LOG_DIR}.{}-{why}", crate::now_ms())
}

fn move_staged_into_place(data_dir: &Path) -> Result<(), StagingError> {
    let staging = data_dir.join(STAGING_DIR);
    let staged = staging.join(METADATA_LOG_DIR);
    let live = data_dir.join(METADATA_LOG_DIR);
    std::fs::rename(&staged, &live).map_err(io("rename", &staged))?;
    sync_dir(data_dir)?;
    remove_staging(&staging)
}

fn remove_staging(staging: &Path) -> Result<(), StagingError> {
    match std::fs::remove_dir_all(staging) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StagingError::Io {
            op: "remove",
            path: staging.to_path_buf(),
            source,
        }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StagingError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata_log;

    fn records() -> Vec<MetadataRecord> {
        vec![
            MetadataRecord::Topic {
                name: "orders".into(),
                topic_id: uuid::Uuid::from_u128(0x1234),
                partitions: 3,
                leader: 1,
                configs: Default::default(),
                replicas: Vec::new(),
            },
            MetadataRecord::ProducerIds {
                next_producer_id: 7000,
            },
        ]
    }

    #[tokio::test]
    async fn a_staged_log_holds_the_records_and_a_swap_keeps_the_old_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join(METADATA_LOG_DIR);
        std::fs::create_dir(&old).expect("old log");
        std::fs::write(old.join("00000000000000000000.log"), b"old").expect("old segment");
        stage(dir.path(), 1, records()).await.expect("staged");
        let kept = swap_in(dir.path(), "kept").expect("swapped");
        assert_eq!(kept, Some(dir.path().join("kept")));
        assert_eq!(
            std::fs::read(dir.path().join("kept/00000000000000000000.log")).expect("kept"),
            b"old"
        );
        assert!(!dir.path().join(STAGING_DIR).exists());
        let scan = metadata_log::scan(&old).expect("the new log reads");
        let read: Vec<MetadataRecord> = scan.records.into_iter().map(|(_, r)| r).collect();
        assert_eq!(read, records());
    }

    #[tokio::test]
    async fn a_crash_between_the_renames_is_finished_at_the_next_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        stage(dir.path(), 1, records()).await.expect("staged");
        // What the first rename leaves: no live log, a whole staged one.
        assert!(settle_interrupted_swap(dir.path()).expect("settled"));
        let scan = metadata_log::scan(&dir.path().join(METADATA_LOG_DIR)).expect("in place");
        assert_eq!(scan.records.len(), 2);
        assert!(!dir.path().join(STAGING_DIR).exists());
    }

    #[tokio::test]
    async fn a_staging_left_beside_the_live_log_is_removed_and_the_live_log_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = dir.path().join(METADATA_LOG_DIR);
        std::fs::create_dir(&live).expect("live log");
        std::fs::write(live.join("00000000000000000000.log"), b"live").expect("segment");
        // Whole, but the first rename never happened.
        stage(dir.path(), 1, records()).await.expect("staged");
        assert!(!settle_interrupted_swap(dir.path()).expect("settled"));
        // Unfinished: no marker.
        std::fs::create_dir_all(dir.path().join(STAGING_DIR).join(METADATA_LOG_DIR))
            .expect("unfinished staging");
        assert!(!settle_interrupted_swap(dir.path()).expect("settled"));
        assert!(!dir.path().join(STAGING_DIR).exists());
        assert_eq!(
            std::fs::read(live.join("00000000000000000000.log")).expect("live"),
            b"live"
        );
    }
}
