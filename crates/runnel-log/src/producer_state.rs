//! Idempotent and transactional producer state of one partition, with Kafka's rules
//! (`ProducerStateManager`, `ProducerAppendInfo`, `ProducerStateEntry`).
//!
//! For each producer id we keep its epoch, the metadata of its last
//! [`PRODUCER_BATCHES_CACHED`] batches (first/last sequence, first/last offset, max timestamp),
//! the epoch of the transaction coordinator that wrote its last marker, and the first offset of
//! its ongoing transaction (Kafka's `currentTxnFirstOffset`). A data batch with a producer id
//! ≥ 0 is checked before it is written:
//!
//! - same epoch, same first and last sequence as a cached batch → duplicate: nothing is written
//!   and the cached offsets are returned;
//! - epoch lower than the current one → `InvalidProducerEpoch`;
//! - epoch higher: the first sequence must be 0 (else `OutOfOrderSequence`), then the cached
//!   batches reset;
//! - same epoch: the first sequence must be the last cached sequence + 1, wrapping from
//!   `i32::MAX` to 0, or 0 when no batch is cached (a producer known only from a marker), else
//!   `OutOfOrderSequence`;
//! - unknown producer id: any sequence is accepted (KIP-360);
//! - then, a non-transactional batch from a producer with an ongoing transaction →
//!   `InvalidTxnState`. A transactional batch with no ongoing transaction starts one at its
//!   base offset.
//!
//! A transaction marker (a control batch holding COMMIT or ABORT, `runnel_protocol::control_record`)
//! goes through no sequence check. It is refused with `InvalidProducerEpoch` when its epoch is
//! below the producer's (transaction version 2: at or below, except a retry of the marker that
//! ended the last transaction, at the same epoch with none ongoing, which Kafka writes again),
//! and with `TransactionCoordinatorFenced` when its coordinator epoch is below the one of the
//! producer's last marker. Written, it ends the producer's ongoing transaction, if any: the
//! transaction moves to the *unreplicated* set until the high watermark passes its marker
//! ([`ProducerStateManager::on_high_watermark_updated`]); an ABORT yields a [`CompletedTxn`]
//! whose entry goes to the segment's transaction index (`segment/txn_index.rs`). The first
//! unstable offset is the lowest first offset of an ongoing or unreplicated transaction.
//!
//! Invariant: the state equals what replaying every batch of the log from its start would
//! give (markers read whole, other batches by their header), with the unreplicated set emptied
//! by the high watermark at the log end offset. It is rebuilt that way when no snapshot helps.
//!
//! # Snapshot file format
//!
//! `<20-digit offset>.snapshot`: the state after every batch below `offset`. Big-endian:
//!
//! | size | field                                                           |
//! |-----:|-----------------------------------------------------------------|
//! |    4 | magic `RNPS`                                                    |
//! |    2 | version (2; version 1 is still read)                            |
//! |    4 | CRC-32C of every byte after this field                          |
//! |    8 | offset (equals the file name's)                                 |
//! |    4 | producer count                                                  |
//! |      | per producer: producer id (8), epoch (2), then in version 2 only coordinator epoch (4, -1 none) and current transaction first offset (8, -1 none), then batch count (1), then |
//! |      | per batch: first seq (4), last seq (4), first offset (8), last offset (8), max timestamp (8) |
//!
//! A version 1 file holds no transaction state: its producers have coordinator epoch -1 and no
//! ongoing transaction. The unreplicated set is not stored (Kafka does not either): a log is
//! opened with its high watermark at its log end offset, which empties it.
//!
//! Written atomically (temp file, fsync, rename, fsync dir) at segment roll and close. A file
//! that is short, has trailing bytes, a wrong magic, version or CRC, or a count beyond what its
//! bytes can hold, is ignored.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use runnel_protocol::control_record::{ControlRecord, ControlType};
use runnel_protocol::record_batch::BatchHeader;

use crate::checkpoint::{write_atomically, write_atomically_leaving_dir};
use crate::error::{AppendError, LogError};

/// Batches remembered per producer for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`, matching `max.in.flight.requests.per.connection` ≤ 5).
pub const PRODUCER_BATCHES_CACHED: usize = 5;
/// File name suffix of producer state snapshots.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`: the epoch of a producer id with no state.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// The coordinator epoch of a producer that no marker has ended a transaction of.
pub const NO_COORDINATOR_EPOCH: i32 = -1;

const SNAPSHOT_MAGIC: &[u8; 4] = b"RNPS";
const SNAPSHOT_VERSION: u16 = 2;
const SNAPSHOT_VERSION_1: u16 = 1;
const SNAPSHOT_HEADER_SIZE: usize = 4 + 2 + 4;
const SNAPSHOT_BATCH_SIZE: usize = 4 + 4 + 8 + 8 + 8;
/// Smallest bytes a producer takes in a snapshot (version 1, no batch).
const SNAPSHOT_PRODUCER_SIZE_MIN: usize = 8 + 2 + 1;

/// Metadata of one appended batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// A producer's last record in the log, as the log cleaner needs it (Kafka's `LastRecord`):
/// the last offset of its newest data batch, when its state caches one, and its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRecord {
    pub last_data_offset: Option<i64>,
    pub epoch: i16,
}

/// What we know of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Last batches, oldest first, at most [`PRODUCER_BATCHES_CACHED`].
    pub batches: VecDeque<BatchMetadata>,
    /// Epoch of the coordinator that wrote the producer's last marker
    /// ([`NO_COORDINATOR_EPOCH`] when none did).
    pub coordinator_epoch: i32,
    /// First offset of the producer's ongoing transaction (Kafka's `currentTxnFirstOffset`).
    pub current_txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            coordinator_epoch: NO_COORDINATOR_EPOCH,
            current_txn_first_offset: None,
        }
    }

    /// Kafka's `maybeUpdateProducerEpoch`: a new epoch forgets the cached batches.
    fn set_epoch(&mut self, epoch: i16) {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }
}

/// The verdict on a batch before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerCheck {
    /// Not idempotent, or in sequence: write it.
    Append,
    /// Already written: answer with these offsets, write nothing.
    Duplicate(BatchMetadata),
}

/// A transaction that a marker ended (Kafka's `CompletedTxn`, with the last stable offset its
/// transaction-index entry records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub is_aborted: bool,
    /// Kafka's `ProducerStateManager.lastStableOffset(completedTxn)`: the first offset of the
    /// earliest transaction of another producer still ongoing, else the marker's offset + 1.
    pub last_stable_offset: i64,
}

/// An ongoing transaction, for DescribeProducers' `currentTxnStartOffset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OngoingTxn {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_offset: i64,
}

/// A COMMIT or ABORT marker to write for a producer (what WriteTxnMarkers asks for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
    /// The transaction version the coordinator runs (0 and 1: legacy; 2: KIP-890's, where a
    /// marker's epoch must be above the producer's).
    pub transaction_version: i16,
}

/// Idempotent and transactional producer state of one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    /// Ongoing transactions: first offset → producer id (Kafka's `ongoingTxns`).
    ongoing: BTreeMap<i64, i64>,
    /// Completed transactions whose markers are not yet below the high watermark: first
    /// offset → (producer id, marker offset) (Kafka's `unreplicatedTxns`).
    unreplicated: BTreeMap<i64, (i64, i64)>,
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of producer ids with state.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Every producer id with state and its entry, by producer id (Kafka's
    /// `ProducerStateManager.activeProducers`).
    pub fn producers(&self) -> Vec<(i64, &ProducerEntry)> {
        let mut producers: Vec<(i64, &ProducerEntry)> = self
            .producers
            .iter()
            .map(|(id, entry)| (*id, entry))
            .collect();
        producers.sort_unstable_by_key(|(id, _)| *id);
        producers
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Each producer's last data offset and epoch, by producer id (Kafka's
    /// `lastRecordsOfActiveProducers`): what the log cleaner keeps of each producer.
    pub fn last_records(&self) -> HashMap<i64, LastRecord> {
        self.producers
            .iter()
            .map(|(id, entry)| {
                let last = LastRecord {
                    last_data_offset: entry.batches.back().map(|batch| batch.last_offset),
                    epoch: entry.epoch,
                };
                (*id, last)
            })
            .collect()
    }

    /// The lowest first offset of an ongoing transaction or of a completed one whose marker
    /// the high watermark has not passed (Kafka's `firstUnstableOffset`).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let ongoing = self.ongoing.keys().next().copied();
        let unreplicated = self.unreplicated.keys().next().copied();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The ongoing transactions, by first offset.
    pub fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        self.ongoing
            .iter()
            .map(|(&first_offset, &producer_id)| OngoingTxn {
                producer_id,
                producer_epoch: self
                    .producers
                    .get(&producer_id)
                    .map_or(NO_PRODUCER_EPOCH, |entry| entry.epoch),
                first_offset,
            })
            .collect()
    }

    /// Whether `producer_id` has an ongoing transaction in this partition.
    pub fn has_ongoing_transaction(&self, producer_id: i64) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|entry| entry.current_txn_first_offset.is_some())
    }

    /// Forgets the completed transactions whose markers lie below `high_watermark` (Kafka's
    /// `onHighWatermarkUpdated`).
    pub fn on_high_watermark_updated(&mut self, high_watermark: i64) {
        self.unreplicated
            .retain(|_, (_, marker_offset)| *marker_offset >= high_watermark);
    }

    /// Forgets the completed transactions whose markers lie below the new log start offset
    /// (Kafka's `onLogStartOffsetIncremented`). Producer entries are kept, as Kafka keeps them.
    pub fn on_log_start_offset_incremented(&mut self, log_start_offset: i64) {
        self.on_high_watermark_updated(log_start_offset);
    }

    /// Checks a data batch against the producer's state without changing it. A control batch
    /// passes (markers are checked by [`ProducerStateManager::check_marker`]).
    pub fn check(&self, header: &BatchHeader) -> Result<ProducerCheck, AppendError> {
        if !header.has_producer_id() || header.is_control() {
            return Ok(ProducerCheck::Append);
        }
        let producer_id = header.producer_id;
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(ProducerCheck::Append);
        };
        let first = header.base_sequence;
        let last = header.last_sequence();
        if header.producer_epoch == entry.epoch {
            if let Some(cached) = entry
                .batches
                .iter()
                .find(|b| b.first_sequence == first && b.last_sequence == last)
            {
                return Ok(ProducerCheck::Duplicate(*cached));
            }
        }
        if header.producer_epoch < entry.epoch {
            return Err(AppendError::InvalidProducerEpoch {
                producer_id,
                current_epoch: entry.epoch,
                received_epoch: header.producer_epoch,
            });
        }
        let expected = if header.producer_epoch > entry.epoch {
            (entry.epoch != NO_PRODUCER_EPOCH).then_some(0)
        } else {
            Some(entry.batches.back().map_or(0, |previous| {
                if previous.last_sequence == i32::MAX {
                    0
                } else {
                    previous.last_sequence + 1
                }
            }))
        };
        if let Some(expected) = expected.filter(|&expected| expected != first) {
            return Err(AppendError::OutOfOrderSequence {
                producer_id,
                expected,
                received: first,
            });
        }
        if entry.current_txn_first_offset.is_some() && !header.is_transactional() {
            return Err(AppendError::InvalidTxnState { producer_id });
        }
        Ok(ProducerCheck::Append)
    }

    /// Checks a transaction marker (`header` of its control batch, `marker` its record) for
    /// the coordinator's `transaction_version`, without changing the state (Kafka's
    /// `checkProducerEpoch` and `checkCoordinatorEpoch` in `appendEndTxnMarker`).
    pub fn check_marker(
        &self,
        header: &BatchHeader,
        marker: &ControlRecord,
        transaction_version: i16,
    ) -> Result<(), AppendError> {
        let producer_id = header.producer_id;
        let entry = self.producers.get(&producer_id);
        let current = entry.map_or(NO_PRODUCER_EPOCH, |entry| entry.epoch);
        let epoch = header.producer_epoch;
        let ongoing = entry.is_some_and(|entry| entry.current_txn_first_offset.is_some());
        let invalid = if transaction_version >= 2 {
            // KAFKA-19999: a retry of the marker that ended the last transaction is written.
            epoch < current || (epoch == current && ongoing)
        } else {
            epoch < current
        };
        if invalid {
            return Err(AppendError::InvalidProducerEpoch {
                producer_id,
                current_epoch: current,
                received_epoch: epoch,
            });
        }
        let current_coordinator_epoch = entry.map_or(NO_COORDINATOR_EPOCH, |e| e.coordinator_epoch);
        let received = marker.coordinator_epoch.unwrap_or(NO_COORDINATOR_EPOCH);
        if current_coordinator_epoch > received {
            return Err(AppendError::TransactionCoordinatorFenced {
                producer_id,
                current_coordinator_epoch,
                received_coordinator_epoch: received,
            });
        }
        Ok(())
    }

    /// The transaction a marker at `header.base_offset` would end, without changing the state:
    /// `None` when the producer has no ongoing transaction (Kafka writes no index entry then).
    pub fn completed_by(
        &self,
        header: &BatchHeader,
        marker: &ControlRecord,
    ) -> Option<CompletedTxn> {
        let producer_id = header.producer_id;
        let first_offset = self.producers.get(&producer_id)?.current_txn_first_offset?;
        let last_offset = header.base_offset;
        let last_stable_offset = self
            .ongoing
            .iter()
            .find(|(_, &other)| other != producer_id)
            .map_or(last_offset + 1, |(&first, _)| first);
        Some(CompletedTxn {
            producer_id,
            first_offset,
            last_offset,
            is_aborted: marker.control_type == ControlType::Abort,
            last_stable_offset,
        })
    }

    /// Records a data batch that was written (or replayed from the log) with its final
    /// offsets. Control batches are ignored here (see [`ProducerStateManager::update_marker`]).
    pub fn update(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() || header.is_control() {
            return;
        }
        let producer_id = header.producer_id;
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::new(header.producer_epoch));
        entry.set_epoch(header.producer_epoch);
        entry.batches.push_back(BatchMetadata {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
        });
        while entry.batches.len() > PRODUCER_BATCHES_CACHED {
            entry.batches.pop_front();
        }
        if header.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(header.base_offset);
            self.ongoing.insert(header.base_offset, producer_id);
        }
    }

    /// Records a COMMIT or ABORT marker that was written (or replayed) at
    /// `header.base_offset`; returns the transaction it ended, if any. Other control types
    /// change nothing.
    pub fn update_marker(
        &mut self,
        header: &BatchHeader,
        marker: &ControlRecord,
    ) -> Option<CompletedTxn> {
        if !header.has_producer_id() || matches!(marker.control_type, ControlType::Other(_)) {
            return None;
        }
        let completed = self.completed_by(header, marker);
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry::new(header.producer_epoch));
        entry.set_epoch(header.producer_epoch);
        entry.coordinator_epoch = marker.coordinator_epoch.unwrap_or(NO_COORDINATOR_EPOCH);
        entry.current_txn_first_offset = None;
        if let Some(txn) = &completed {
            self.ongoing.remove(&txn.first_offset);
            self.unreplicated
                .insert(txn.first_offset, (txn.producer_id, txn.last_offset));
        }
        completed
    }

    /// Encodes the state as a snapshot taken at `offset` (see the module doc).
    pub fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        let mut body = Vec::new();
        body.extend_from_slice(&offset.to_be_bytes());
        body.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let entry = &self.producers[&id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&entry.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            body.push(entry.batches.len() as u8);
            for batch in &entry.batches {
                body.extend_from_slice(&batch.first_sequence.to_be_bytes());
                body.extend_from_slice(&batch.last_sequence.to_be_bytes());
                body.extend_from_slice(&batch.first_offset.to_be_bytes());
                body.extend_from_slice(&batch.last_offset.to_be_bytes());
                body.extend_from_slice(&batch.max_timestamp.to_be_bytes());
            }
        }
        let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER_SIZE + body.len());
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Decodes a snapshot (version 1 or 2); returns its offset and state, or why it is
    /// refused.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<(i64, Self), &'static str> {
        if bytes.len() < SNAPSHOT_HEADER_SIZE + 12 {
            return Err("short file");
        }
        if &bytes[..4] != SNAPSHOT_MAGIC {
            return Err("bad magic");
        }
        let version = u16::from_be_bytes([bytes[4], bytes[5]]);
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_1 {
            return Err("unknown version");
        }
        let stored = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        let mut body = Reader {
            bytes: &bytes[SNAPSHOT_HEADER_SIZE..],
        };
        if crc32c::crc32c(body.bytes) != stored {
            return Err("CRC mismatch");
        }
        let offset = body.i64()?;
        let count = body.u32()? as usize;
        if count > body.bytes.len() / SNAPSHOT_PRODUCER_SIZE_MIN {
            return Err("bad producer count");
        }
        let mut state = ProducerStateManager::new();
        for _ in 0..count {
            let id = body.i64()?;
            let mut entry = ProducerEntry::new(body.i16()?);
            if version == SNAPSHOT_VERSION {
                entry.coordinator_epoch = body.i32()?;
                let first = body.i64()?;
                entry.current_txn_first_offset = (first >= 0).then_some(first);
            }
            let batch_count = usize::from(body.u8()?);
            if batch_count > PRODUCER_BATCHES_CACHED
                || body.bytes.len() < batch_count * SNAPSHOT_BATCH_SIZE
            {
                return Err("bad batch count");
            }
            for _ in 0..batch_count {
                entry.batches.push_back(BatchMetadata {
                    first_sequence: body.i32()?,
                    last_sequence: body.i32()?,
                    first_offset: body.i64()?,
                    last_offset: body.i64()?,
                    max_timestamp: body.i64()?,
                });
            }
            if let Some(first) = entry.current_txn_first_offset {
                if state.ongoing.insert(first, id).is_some() {
                    return Err("two ongoing transactions share a first offset");
                }
            }
            if state.producers.insert(id, entry).is_some() {
                return Err("duplicate producer id");
            }
        }
        if !body.bytes.is_empty() {
            return Err("trailing bytes");
        }
        Ok((offset, state))
    }
    /// Writes a snapshot at `offset` into `dir` atomically and keeps only the newest
    /// `keep` snapshots.
    pub fn write_snapshot(&self, dir: &Path, offset: i64, keep: usize) -> Result<(), LogError> {
        let path = snapshot_path(dir, offset);
        write_atomically(&path, &self.encode_snapshot(offset))?;
        self.keep_newest(dir, keep)
    }

    /// [`ProducerStateManager::write_snapshot`] without fsyncing the directory, for a log's
    /// close: losing the new name (or an old snapshot's removal) in a crash leaves older
    /// snapshots, each still a valid picture of the log at its offset, and the replay after
    /// the newest of them gives the same state; the content is fsynced before the rename, so a
    /// name never holds a torn snapshot. A shutdown of many partitions saves two directory
    /// fsyncs per partition this way.
    pub fn write_snapshot_at_close(
        &self,
        dir: &Path,
        offset: i64,
        keep: usize,
    ) -> Result<(), LogError> {
        let path = snapshot_path(dir, offset);
        write_atomically_leaving_dir(&path, &self.encode_snapshot(offset))?;
        self.keep_newest(dir, keep)
    }

    /// Removes all but the newest `keep` snapshots.
    fn keep_newest(&self, dir: &Path, keep: usize) -> Result<(), LogError> {
        let snapshots = list_snapshots(dir)?;
        let excess = snapshots.len().saturating_sub(keep);
        for (_, old) in snapshots.into_iter().take(excess) {
            fs::remove_file(&old).map_err(LogError::io("remove", &old))?;
        }
        Ok(())
    }
}

/// Path of the snapshot at `offset` in `dir`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// Snapshot files in `dir`, oldest first.
pub fn list_snapshots(dir: &Path) -> Result<Vec<(i64, PathBuf)>, LogError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(LogError::io("list", dir))? {
        let entry = entry.map_err(LogError::io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(offset) = name
            .strip_suffix(SNAPSHOT_SUFFIX)
            .and_then(crate::segment::parse_base_offset)
        {
            found.push((offset, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Deletes snapshots taken after `offset` (the log was truncated to `offset`).
pub fn delete_snapshots_after(dir: &Path, offset: i64) -> Result<(), LogError> {
    for (snapshot_offset, path) in list_snapshots(dir)? {
        if snapshot_offset > offset {
            fs::remove_file(&path).map_err(LogError::io("remove", &path))?;
        }
    }
    Ok(())
}

/// Loads the newest valid snapshot whose offset lies in `[min_offset, max_offset]`. Invalid
/// snapshots are skipped with a WARN. Returns `None` when none qualifies.
pub fn load_newest_snapshot(
    dir: &Path,
    min_offset: i64,
    max_offset: i64,
) -> Result<Option<(i64, ProducerStateManager)>, LogError> {
    for (offset, path) in list_snapshots(dir)?.into_iter().rev() {
        if offset > max_offset || offset < min_offset {
            continue;
        }
        let bytes = fs::read(&path).map_err(LogError::io("read", &path))?;
        match ProducerStateManager::decode_snapshot(&bytes) {
            Ok((stored, state)) if stored == offset => return Ok(Some((offset, state))),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "ignoring producer snapshot: offset does not match its name")
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), reason, "ignoring corrupt producer snapshot")
            }
        }
    }
    Ok(None)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        if self.bytes.len() < N {
            return Err("short file");
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[..N]);
        self.bytes = &self.bytes[N..];
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, &'static str> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, &'static str> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, &'static str> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests;
