//! The Raft log on disk: openraft's [`RaftLogStorage`] over a `runnel-log` [`PartitionLog`] in
//! `<data dir>/__cluster_metadata-0/`, the directory KRaft uses, in Kafka's segment layout.
//!
//! # Why `runnel-log`
//! Its `PartitionLog` already gives what a Raft log needs, with the crash policy the broker's
//! partitions rely on: contiguous offsets from a chosen start, append, fsync through
//! [`PartitionLog::flush_target`], truncation of a suffix (fsync'd), deletion of a prefix by
//! whole segments ([`PartitionLog::advance_log_start_offset`]), restart at any offset
//! ([`PartitionLog::truncate_fully_and_start_at`], Kafka's name), CRC-checked recovery, and a
//! leader-epoch checkpoint that here records where each Raft term starts. One format on disk
//! for every log, readable with the same tools.
//!
//! # Format of one entry
//! Each Raft entry is one record batch (v2, uncompressed, CRC-32C), holding one record:
//! - batch base offset = the entry's Raft log index (openraft's first index is 0, Kafka's first
//!   offset is 0: they are the same number);
//! - batch partition leader epoch = the entry's term (terms above `i32::MAX` are refused);
//! - the record's key is empty, its value the entry in JSON (openraft's serde form of
//!   `Entry`: `{"log_id": {"leader_id": term, "index"}, "payload": ...}` (entries written before
//!   one leader per term also name the leader's node, read as `openraft_json` says), where
//!   a `Normal` payload is the [`crate::MetadataRecords`], each record in the JSON
//!   `runnel-metadata` defines).
//!
//! Reading checks that a batch holds exactly one record and that the entry's index and term
//! equal the batch's base offset and leader epoch; anything else is damage.
//!
//! The vote, the committed log id and the last purged log id live beside the segments in
//! `quorum-state` ([`crate::quorum_state`]).
//!
//! # Durability
//! - `save_vote` returns once `quorum-state` is fsync'd (and renamed, and the directory fsync'd).
//! - `append` writes the batches, fsyncs the segment files (and the directory when a segment was
//!   created), and only then calls [`LogFlushed::log_io_completed`].
//! - `truncate` removes the suffix with `set_len` + fsync (`PartitionLog::truncate_to`).
//! - `purge` records the purged log id durably first, then deletes whole segments below it:
//!   entries below the recorded point may remain on disk for a while, which is harmless.
//! - At open, the log is scanned first (`log_scan.rs`): a torn tail of the last segment
//!   (an unfinished write) is truncated by recovery; damage anywhere else, or an entry that does
//!   not match its batch, stops the open with an error that says where. Good entries are never
//!   deleted to get past damage.
//!
//! # Departure from DESIGN.md §3 (fsync on a flusher task)
//! The fsync runs inline, on the Raft core's storage task, under the log's lock: metadata
//! entries are rare, openraft serialises log I/O anyway (its rule: a later write is never
//! applied before an earlier one completes), and the readers (replication) are delayed by one
//! fsync at most.

// openraft's `StorageError` (224 bytes) is the error of the traits implemented here; the
// helpers return it as the trait methods must.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, StorageIOError};
use runnel_log::{LogConfig, LogError, PartitionLog};
use runnel_metadata::MetadataRecord;
use runnel_protocol::record_batch::{self, BatchHeader};
use runnel_protocol::records::RecordBatchDecoder;
use thiserror::Error;

use crate::log_scan::{self, MetadataLogDamage};
use crate::quorum_state::{QuorumState, QuorumStateError};
use crate::types::{Entry, LogId, MetadataRecords, StorageError, TypeConfig, Vote};

/// The Raft log's directory name, as in KRaft.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
/// The largest batch (one entry) written or read.
pub const METADATA_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Bytes read from the log at a time when openraft asks for entries.
const READ_BYTES_MAX: usize = 1024 * 1024;

/// Why the Raft log could not be opened.
#[derive(Debug, Error)]
pub enum LogStoreError {
    #[error(transparent)]
    Damaged(#[from] MetadataLogDamage),
    #[error("metadata log: {0}")]
    Log(#[from] LogError),
    #[error(transparent)]
    QuorumState(#[from] QuorumStateError),
    #[error(
        "metadata log recovery kept offsets up to {recovered} but the scan read up to {scanned}"
    )]
    RecoveryMismatch { recovered: i64, scanned: i64 },
}

/// The Raft log store; clones share one log (openraft's log reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

struct LogInner {
    dir: PathBuf,
    log: PartitionLog,
    state: QuorumState,
    /// The log id of the last entry present, `None` when the log holds none.
    last_log_id: Option<LogId>,
}

impl LogStore {
    /// Opens (creating if missing) the Raft log in `data_dir/__cluster_metadata-0`, recovering
    /// a torn tail and refusing damage (see the module doc).
    pub fn open(data_dir: &Path, config: LogConfig) -> Result<LogStore, LogStoreError> {
        let dir = data_dir.join(METADATA_LOG_DIR);
        let scan = log_scan::scan(&dir)?;
        if let Some(torn) = &scan.torn_tail {
            tracing::warn!(
                segment = %torn.segment.display(),
                position = torn.position,
                bytes = torn.bytes,
                "the metadata log ends in the torn tail of an unfinished write; truncating it"
            );
        }
        let state = QuorumState::read(&dir)?;
        let log_start_offset = state.last_purged.map_or(0, |id| id.index as i64 + 1);
        let log = PartitionLog::open_at(&dir, config, 0, log_start_offset)?;
        if log.log_end_offset() != scan.end_offset.max(log.log_start_offset()) {
            return Err(LogStoreError::RecoveryMismatch {
                recovered: log.log_end_offset(),
                scanned: scan.end_offset,
            });
        }
        let last_log_id = scan
            .last_log_id
            .filter(|id| id.index as i64 >= log.log_start_offset());
        tracing::info!(
            dir = %dir.display(),
            log_start_offset = log.log_start_offset(),
            log_end_offset = log.log_end_offset(),
            "metadata log opened"
        );
        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogInner {
                dir,
                log,
                state,
                last_log_id,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().expect("metadata log lock poisoned")
    }
}

/// The batch that stores `entry` (see the module doc), before its offset is assigned.
pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, String> {
    let value = serde_json::to_vec(entry).map_err(|e| format!("entry does not encode: {e}"))?;
    let batch = record_batch::encode_internal_batch([(None, Some(Bytes::from(value)))], now_ms());
    if batch.len() > METADATA_BATCH_BYTES_MAX {
        return Err(format!(
            "entry of {} bytes is above {METADATA_BATCH_BYTES_MAX}",
            batch.len()
        ));
    }
    Ok(batch)
}

/// The entry a stored batch holds, checked against the batch (see the module doc).
/// The metadata records of one stored Raft entry's value (none for a blank or membership
/// entry); `None` when the value is not a Raft entry. For tools that read the log's records
/// without the quorum (`runnel metadata rebuild`).
pub fn entry_records(value: &[u8]) -> Option<Vec<MetadataRecord>> {
    let entry: Entry = crate::openraft_json::decode(value).ok()?;
    Some(match entry.payload {
        openraft::EntryPayload::Normal(MetadataRecords(records)) => records,
        openraft::EntryPayload::Blank | openraft::EntryPayload::Membership(_) => Vec::new(),
    })
}

pub(crate) fn decode_entry(header: &BatchHeader, bytes: Vec<u8>) -> Result<Entry, String> {
    if header.records_count != 1 {
        return Err(format!(
            "batch holds {} records, not one entry",
            header.records_count
        ));
    }
    let mut batch = Bytes::from(bytes);
    let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| e.to_string())?;
    let [record] = set.records.as_slice() else {
        return Err(format!("batch holds {} records", set.records.len()));
    };
    let value = record.value.clone().unwrap_or_default();
    let entry: Entry =
        crate::openraft_json::decode(&value).map_err(|e| format!("entry does not decode: {e}"))?;
    if entry.log_id.index != header.base_offset as u64
        || entry.log_id.leader_id.term != header.partition_leader_epoch as u64
    {
        return Err(format!(
            "entry {} is stored at offset {} in leader epoch {}",
            entry.log_id, header.base_offset, header.partition_leader_epoch
        ));
    }
    Ok(entry)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn read_error(error: impl std::error::Error + Send + Sync + 'static) -> StorageError {
    StorageIOError::read_logs(&error).into()
}

fn write_error(error: impl std::error::Error + Send + Sync + 'static) -> StorageError {
    StorageIOError::write_logs(&error).into()
}

fn damaged(reason: String) -> StorageError {
    StorageIOError::read_logs(&std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        reason,
    ))
    .into()
}

impl LogInner {
    /// Entries with indexes in `[start, end)`, read from the segments.
    ///
    /// A range that starts below the log start offset (purged, into a snapshot) gives no
    /// entries, not an error: openraft allows entries not found, and reads such a range from a
    /// replication stream left over from this node's earlier leadership after the node, now a
    /// follower, purged its log. An error there would stop the Raft node (openraft takes a
    /// replication's storage error as fatal, whatever leadership it belonged to). No suffix of
    /// the range is returned either: entries must follow `start` with no gap.
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        if start < self.log.log_start_offset() as u64 {
            return Ok(Vec::new());
        }
        let end = end.min(self.log.log_end_offset() as u64);
        let mut entries = Vec::new();
        let mut offset = start;
        while offset < end {
            let slice = self
                .log
                .read(offset as i64, READ_BYTES_MAX, end as i64, true)
                .map_err(read_error)?;
            if slice.is_empty() {
                break;
            }
            let bytes = slice.read_bytes().map_err(read_error)?;
            for batch in record_batch::batches(&bytes) {
                let (header, range) = batch.map_err(|e| damaged(e.to_string()))?;
                let entry = decode_entry(&header, bytes[range].to_vec()).map_err(damaged)?;
                if (start..end).contains(&entry.log_id.index) {
                    entries.push(entry);
                }
            }
            offset = slice.next_offset as u64;
        }
        Ok(entries)
    }

    /// The last entry's log id after the log changed at its end.
    fn refresh_last_log_id(&mut self) -> Result<(), StorageError> {
        let end = self.log.log_end_offset();
        self.last_log_id = if end > self.log.log_start_offset() {
            let entries = self.read_range(end as u64 - 1, end as u64)?;
            entries.last().map(|entry| entry.log_id)
        } else {
            None
        };
        Ok(())
    }

    fn write_state(&self) -> Result<(), StorageError> {
        self.state
            .write(&self.dir)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))
    }

    fn append_entry(&mut self, entry: &Entry) -> Result<(), StorageError> {
        let end = self.log.log_end_offset();
        if entry.log_id.index != end as u64 {
            return Err(StorageIOError::new(
                ErrorSubject::Log(entry.log_id),
                ErrorVerb::Write,
                &std::io::Error::other(format!(
                    "appending at index {} but the log ends at {end}",
                    entry.log_id.index
                )),
            )
            .into());
        }
        let term = i32::try_from(entry.log_id.leader_id.term).map_err(|_| {
            write_error(std::io::Error::other(format!(
                "term {} does not fit a leader epoch",
                entry.log_id.leader_id.term
            )))
        })?;
        let mut batch = encode_entry(entry).map_err(|e| write_error(std::io::Error::other(e)))?;
        self.log
            .append(&mut batch, term, now_ms())
            .map_err(|e| StorageError::from(StorageIOError::write_log_entry(entry.log_id, &e)))?;
        self.last_log_id = Some(entry.log_id);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(target) = self.log.flush_target() {
            target.sync()?;
            self.log.mark_flushed(target.up_to);
        }
        Ok(())
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        self.lock().read_range(start, end)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last_purged_log_id = inner.state.last_purged;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: inner.last_log_id.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.state.vote = Some(*vote);
        inner.write_state()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().state.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.state.committed = committed;
        if let Some(committed) = committed {
            inner.log.set_high_watermark(committed.index as i64 + 1);
        }
        inner.write_state()
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().state.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        for entry in entries {
            inner.append_entry(&entry)?;
        }
        match inner.flush() {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let storage_error =
                    write_error(std::io::Error::new(error.kind(), error.to_string()));
                callback.log_io_completed(Err(error));
                Err(storage_error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner
            .log
            .truncate_to(log_id.index as i64)
            .map_err(write_error)?;
        inner.refresh_last_log_id()
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if inner.state.last_purged >= Some(log_id) {
            return Ok(());
        }
        inner.state.last_purged = Some(log_id);
        inner.write_state()?;
        let start = log_id.index as i64 + 1;
        if start > inner.log.log_end_offset() {
            // A snapshot beyond the whole log (installed from the leader): restart there.
            inner
                .log
                .truncate_fully_and_start_at(start)
                .map_err(write_error)?;
        } else {
            let high_watermark = inner.log.high_watermark().max(start);
            inner.log.set_high_watermark(high_watermark);
            inner
                .log
                .advance_log_start_offset(start)
                .map_err(write_error)?;
        }
        inner.refresh_last_log_id()
    }
}
