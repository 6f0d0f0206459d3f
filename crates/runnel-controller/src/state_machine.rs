//! The state machine: the `runnel-metadata` image, with the Raft position it reflects.
//!
//! Applying an entry folds its records into the image ([`MetadataImage::apply`], as the
//! quorum of one does) and publishes the new image on a `watch` ([`AppliedMetadata`]); blank
//! entries (a new leader's) and membership entries change only the position and membership.
//! The image lives in memory. What survives a restart is the newest snapshot, the image
//! serialized ([`crate::snapshot`]), kept as `__cluster_metadata-0/<index>-<term>.checkpoint`;
//! at start the state machine is that snapshot, and openraft re-applies the committed entries
//! after it from the log (the committed log id is kept in `quorum-state`).
//!
//! Snapshot files are written atomically (`.tmp`, fsync, rename, directory fsync) and older
//! ones are deleted after the rename; a damaged snapshot at start is refused, never skipped
//! (the log before it may have been purged, so nothing else could rebuild the image).

use std::fs::{self, File};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, StorageIOError};
use runnel_metadata::MetadataImage;
use thiserror::Error;
use tokio::sync::watch;

use crate::snapshot::{self, SnapshotError};
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

const SNAPSHOT_SUFFIX: &str = ".checkpoint";

/// The image as of one applied log index: what [`crate::MetadataQuorum::image`] publishes.
#[derive(Debug, Clone, Default)]
pub struct AppliedMetadata {
    /// The last applied entry's log id; `None` before anything was applied.
    pub last_applied: Option<LogId>,
    pub image: Arc<MetadataImage>,
}

impl AppliedMetadata {
    /// The index of the last applied entry, if any.
    pub fn applied_index(&self) -> Option<u64> {
        self.last_applied.map(|id| id.index)
    }
}

#[derive(Debug, Error)]
pub enum StateMachineError {
    #[error("{verb} {path}: {source}")]
    Io {
        verb: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Snapshot {
        path: PathBuf,
        source: SnapshotError,
    },
}

/// The state machine store; clones share one state (the snapshot builder is a clone).
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<StateMachine>>,
    dir: PathBuf,
    published: watch::Sender<AppliedMetadata>,
}

struct StateMachine {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    image: Arc<MetadataImage>,
    /// The newest snapshot, as its bytes.
    current: Option<(SnapshotMeta, Vec<u8>)>,
}

impl StateMachineStore {
    /// The state machine of the log in `dir` (`__cluster_metadata-0`): its newest snapshot, or
    /// the empty image.
    pub fn open(dir: &Path) -> Result<StateMachineStore, StateMachineError> {
        fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        let mut machine = StateMachine {
            last_applied: None,
            membership: StoredMembership::default(),
            image: Arc::new(MetadataImage::default()),
            current: None,
        };
        if let Some(path) = newest_snapshot(dir)? {
            let bytes = fs::read(&path).map_err(io("read", &path))?;
            let decoded =
                snapshot::decode(&bytes).map_err(|source| StateMachineError::Snapshot {
                    path: path.clone(),
                    source,
                })?;
            tracing::info!(path = %path.display(), "metadata snapshot loaded");
            machine.last_applied = decoded.meta.last_log_id;
            machine.membership = decoded.meta.last_membership.clone();
            machine.image = Arc::new(decoded.image);
            machine.current = Some((decoded.meta, bytes));
        }
        let (published, _) = watch::channel(AppliedMetadata {
            last_applied: machine.last_applied,
            image: Arc::clone(&machine.image),
        });
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(machine)),
            dir: dir.to_path_buf(),
            published,
        })
    }

    /// A receiver of every applied image.
    pub fn subscribe(&self) -> watch::Receiver<AppliedMetadata> {
        self.published.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, StateMachine> {
        self.inner.lock().expect("state machine lock poisoned")
    }

    fn publish(&self, machine: &StateMachine) {
        self.published.send_replace(AppliedMetadata {
            last_applied: machine.last_applied,
            image: Arc::clone(&machine.image),
        });
    }

    /// Writes `bytes` as the snapshot at `meta` and deletes older snapshot files.
    fn persist_snapshot(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<(), StateMachineError> {
        let (index, term) = meta
            .last_log_id
            .map_or((0, 0), |id| (id.index, id.leader_id.term));
        let name = format!("{index:020}-{term:010}{SNAPSHOT_SUFFIX}");
        let path = self.dir.join(&name);
        let temp = self.dir.join(format!("{name}.tmp"));
        let mut file = File::create(&temp).map_err(io("create", &temp))?;
        file.write_all(bytes).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("fsync", &temp))?;
        fs::rename(&temp, &path).map_err(io("rename", &temp))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io("fsync", &self.dir))?;
        for (_, older) in snapshot_files(&self.dir)? {
            if older != path {
                fs::remove_file(&older).map_err(io("remove", &older))?;
            }
        }
        Ok(())
    }
}

fn io(verb: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateMachineError {
    let path = path.to_path_buf();
    move |source| StateMachineError::Io { verb, path, source }
}

/// A snapshot file's (index, term) and path.
type SnapshotFile = ((u64, u64), PathBuf);

/// Snapshot files in `dir`, by (index, term).
fn snapshot_files(dir: &Path) -> Result<Vec<SnapshotFile>, StateMachineError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io("list", dir))? {
        let path = entry.map_err(io("list", dir))?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(SNAPSHOT_SUFFIX))
        else {
            continue;
        };
        let Some((index, term)) = stem.split_once('-') else {
            continue;
        };
        if let (Ok(index), Ok(term)) = (index.parse(), term.parse()) {
            found.push(((index, term), path));
        }
    }
    found.sort();
    Ok(found)
}

/// The snapshot files in a metadata log directory, oldest first (by index, then term): what
/// a repair reads when the log itself is damaged.
pub fn snapshot_paths(dir: &Path) -> Result<Vec<PathBuf>, StateMachineError> {
    Ok(snapshot_files(dir)?
        .into_iter()
        .map(|(_, path)| path)
        .collect())
}

fn newest_snapshot(dir: &Path) -> Result<Option<PathBuf>, StateMachineError> {
    Ok(snapshot_files(dir)?.pop().map(|(_, path)| path))
}

fn storage_error(error: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_state_machine(error).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (meta, image) = {
            let machine = self.lock();
            let snapshot_id = match machine.last_applied {
                Some(id) => format!("{}-{}", id.index, id.leader_id.term),
                None => "empty".to_string(),
            };
            let meta = SnapshotMeta {
                last_log_id: machine.last_applied,
                last_membership: machine.membership.clone(),
                snapshot_id,
            };
            (meta, Arc::clone(&machine.image))
        };
        let bytes = snapshot::encode(&meta, &image).map_err(|e| storage_error(&e))?;
        self.persist_snapshot(&meta, &bytes)
            .map_err(|e| storage_error(&e))?;
        self.lock().current = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let machine = self.lock();
        Ok((machine.last_applied, machine.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut machine = self.lock();
        let mut responses = Vec::new();
        for entry in entries {
            machine.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(records) => {
                    let mut image = (*machine.image).clone();
                    for record in &records.0 {
                        image = image.apply(record);
                    }
                    machine.image = Arc::new(image);
                }
                EntryPayload::Membership(membership) => {
                    machine.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            responses.push(());
        }
        self.publish(&machine);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> StateMachineStore {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let decoded = snapshot::decode(&bytes).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        })?;
        if decoded.meta.last_log_id != meta.last_log_id {
            let error = std::io::Error::other(format!(
                "snapshot bytes are at {:?} but the leader announced {:?}",
                decoded.meta.last_log_id, meta.last_log_id
            ));
            return Err(StorageIOError::read_snapshot(Some(meta.signature()), &error).into());
        }
        self.persist_snapshot(meta, &bytes)
            .map_err(|e| storage_error(&e))?;
        let mut machine = self.lock();
        machine.last_applied = meta.last_log_id;
        machine.membership = meta.last_membership.clone();
        machine.image = Arc::new(decoded.image);
        machine.current = Some((meta.clone(), bytes));
        self.publish(&machine);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let machine = self.lock();
        Ok(machine.current.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}
