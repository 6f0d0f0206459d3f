//! `PartitionLog`: the segments of one partition directory `<topic>-<partition>/`, with the
//! log start offset, log end offset, high watermark and recovery point.
//!
//! Invariants:
//! - segments are sorted by base offset, there is always at least one, and the last is the
//!   active segment (the only one appended to);
//! - offsets increase: each batch's base offset is above the previous batch's last offset
//!   (contiguous as appended; compaction leaves gaps, and its batches may hold fewer records
//!   than offsets, or none), and the log end offset is the last segment's next offset;
//! - `log start offset ≤ high watermark ≤ log end offset` and `recovery point ≤ log end offset`;
//! - the producer state and the leader-epoch cache describe exactly the batches in the log;
//! - each segment's transaction index holds the aborted transactions whose ABORT marker lies
//!   in it (`segment/txn_index.rs`), and `last stable offset ≤ high watermark`.
//!
//! Transactions (Kafka's exactly-once, log side): transactional batches start a producer's
//! transaction, markers ([`PartitionLog::append_txn_marker`], or a control batch through
//! [`PartitionLog::append`]) end it (`producer_state.rs` has the rules). The last stable offset
//! is Kafka's: the first unstable offset (the earliest ongoing transaction, or completed one
//! whose marker the high watermark has not passed, at least the log start offset) when it is
//! below the high watermark, else the high watermark. read_committed fetches read below it
//! ([`PartitionLog::read_committed`]) and get the aborted transactions of what they read
//! ([`PartitionLog::aborted_transactions`]).
//!
//! Locking is the caller's: `&mut self` methods run under the partition's lock and do page-cache
//! I/O only (fsync happens at roll, truncation and close, which are rare). Reads and flushes
//! return handles ([`ReadSlice`], [`FlushTarget`]) whose slow I/O runs after the lock is released.
//!
//! Opening and recovery live in `partition_log/recovery.rs`, timestamp lookups in
//! `partition_log/timestamps.rs`, retention in `partition_log/retention.rs`, compaction in
//! `partition_log/compaction.rs`, damage below the recovery point in `partition_log/damage.rs`,
//! a follower's appends of its leader's batches in `partition_log/replicated.rs`.
//! Reads, truncation and lookups find the first batch whose last offset is at or after the
//! offset asked for, so they land on the next record across gaps, except across a damaged range:
//! a read inside one fails and a read below one stops before it.

mod compaction;
mod damage;
mod recovery;
mod replicated;
mod retention;
mod timestamps;

pub use compaction::{
    CompactedSegments, CompactionOutcome, CompactionPlan, CompactionPolicy,
    OFFSET_MAP_ENTRY_OVERHEAD_BYTES,
};
pub use damage::{DamagedRange, DAMAGED_SEGMENTS_FILE};
pub use retention::RetentionPolicy;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runnel_protocol::record_batch::{
    set_base_offset, set_partition_leader_epoch, BatchError, BatchHeader,
};

use crate::checkpoint::sync_dir;
use crate::config::LogConfig;
use crate::error::{AppendError, LogError, ReadError};
use crate::leader_epoch::LeaderEpochCache;
use crate::open_files::SegmentFile;
use crate::producer_state::{
    delete_snapshots_after, OngoingTxn, ProducerCheck, ProducerStateManager, TxnMarker,
};
use crate::segment::{AbortedTxn, Segment};
use runnel_protocol::control_record::{ControlRecord, ControlType};

/// Producer-state snapshots kept in a partition directory.
pub const SNAPSHOTS_KEPT: usize = 2;
/// The transaction version whose marker rules apply to a control batch appended with
/// [`PartitionLog::append`] (Kafka's rule for markers that come without one, as replicated
/// ones do): a marker's epoch may equal the producer's.
pub const LEGACY_TRANSACTION_VERSION: i16 = 0;

/// The transaction marker of a control batch with a producer id: `None` for a batch emptied by
/// compaction (Kafka: the whole transaction was cleaned). A control batch of another type, or
/// one whose record does not decode, is refused.
fn read_marker(batch: &[u8], header: &BatchHeader) -> Result<Option<ControlRecord>, AppendError> {
    if header.records_count == 0 {
        return Ok(None);
    }
    let refused = |reason| AppendError::InvalidBatch(BatchError::Invalid { reason });
    match ControlRecord::decode_batch(batch) {
        Ok(marker) if !matches!(marker.control_type, ControlType::Other(_)) => Ok(Some(marker)),
        Ok(_) => Err(refused(
            "control batch of a producer is not a transaction marker",
        )),
        Err(_) => Err(refused("transaction marker does not decode")),
    }
}

/// The result of one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The batch was a retry of one already in the log: nothing was written and the offsets
    /// are the original ones.
    pub duplicate: bool,
    pub log_start_offset: i64,
}

/// What a fetch reads: a byte range of one segment file holding whole batches.
///
/// Computed under the partition lock by [`PartitionLog::read`]; the bytes are read afterwards
/// with [`ReadSlice::read_bytes`] (a segment file is only ever appended to or truncated below
/// the high watermark by replication, so the range stays valid for reads below it).
#[derive(Debug, Clone)]
pub struct ReadSlice {
    /// The segment's open handle; `None` when there is nothing to read (an empty read holds
    /// no descriptor).
    pub file: Option<Arc<File>>,
    pub position: u64,
    /// Bytes to read; 0 when there is nothing to return.
    pub length: usize,
    /// Base offset of the first batch (may be below the requested offset: batches are whole),
    /// or the requested offset when empty.
    pub base_offset: i64,
    /// Offset after the last batch returned: where the next fetch continues.
    pub next_offset: i64,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    /// The last stable offset when the read was taken (what a read_committed fetch reports).
    pub last_stable_offset: i64,
    pub log_end_offset: i64,
}

impl ReadSlice {
    /// Reads the range with one `pread`.
    pub fn read_bytes(&self) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.length];
        if let Some(file) = &self.file {
            file.read_exact_at(&mut bytes, self.position)?;
        }
        Ok(bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }
}

/// What a group-commit flush must fsync, taken under the lock and synced outside it.
#[derive(Debug, Clone)]
pub struct FlushTarget {
    /// Segment files holding data above the recovery point: cache entries, opened (again, if
    /// evicted) by [`FlushTarget::sync`] outside the lock.
    pub files: Vec<SegmentFile>,
    /// Transaction index files holding entries above the recovery point (see
    /// `segment/txn_index.rs`), fsynced with the log files.
    pub txn_index_files: Vec<PathBuf>,
    /// Whether the partition directory needs an fsync (segment files created).
    pub sync_dir: bool,
    pub dir: PathBuf,
    /// The log end offset when the target was taken: durable once [`FlushTarget::sync`] returns.
    pub up_to: i64,
}

impl FlushTarget {
    /// `fdatasync`s every file, then the directory if needed. A file retired meanwhile (its
    /// segment deleted by retention) has nothing left to make durable and is skipped.
    pub fn sync(&self) -> io::Result<()> {
        for file in &self.files {
            match file.get() {
                Ok(handle) => handle.sync_data()?,
                Err(_) if file.is_retired() => {}
                Err(error) => return Err(error),
            }
        }
        for path in &self.txn_index_files {
            match File::open(path) {
                Ok(file) => file.sync_data()?,
                // Its segment was deleted meanwhile (retention, truncation).
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        if self.sync_dir {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// The log of one partition.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    segments: Vec<Segment>,
    log_start_offset: i64,
    high_watermark: i64,
    recovery_point: i64,
    producers: ProducerStateManager,
    epochs: LeaderEpochCache,
    /// Below this offset the log is clean (compacted); see `compaction.rs`.
    cleaner_offset: i64,
    /// The earliest delete horizon still ahead among the tombstones and removable markers the
    /// last compaction kept (in memory only): a pass is due once it has passed.
    delete_horizon_ms: Option<i64>,
    /// Offset of the newest producer snapshot known on disk (loaded or written): `close`
    /// writes none when it is already at the log end offset.
    snapshot_offset: Option<i64>,
    /// Offsets lost or corrupt below the recovery point, by start offset (`damage.rs`).
    damaged: Vec<DamagedRange>,
}

impl PartitionLog {
    /// Appends one whole batch, already validated by the broker (`validate_batch`).
    ///
    /// Checks the idempotent producer's sequence and transaction state (a duplicate writes
    /// nothing and returns the original offsets; see `producer_state.rs`), assigns offsets from
    /// the log end offset, patches base offset and leader epoch (the CRC covers neither), rolls
    /// if needed and writes to the page cache. A control batch of a producer must be a
    /// transaction marker and is checked with the legacy marker rules
    /// ([`LEGACY_TRANSACTION_VERSION`]); [`PartitionLog::append_txn_marker`] writes one with a
    /// coordinator's transaction version.
    pub fn append(
        &mut self,
        batch: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, AppendError> {
        let header = BatchHeader::parse(batch)?;
        if header.size_bytes() != batch.len() {
            return Err(AppendError::InvalidBatch(BatchError::Invalid {
                reason: "not exactly one batch",
            }));
        }
        if batch.len() as u64 > self.config.segment_bytes_max() {
            return Err(AppendError::RecordTooLarge {
                size_bytes: batch.len(),
                segment_bytes: self.config.segment_bytes_max(),
            });
        }
        let marker = if header.is_control() && header.has_producer_id() {
            let marker = read_marker(batch, &header)?;
            if let Some(marker) = &marker {
                self.producers
                    .check_marker(&header, marker, LEGACY_TRANSACTION_VERSION)?;
            }
            marker
        } else {
            None
        };
        if let ProducerCheck::Duplicate(original) = self.producers.check(&header)? {
            return Ok(AppendOutcome {
                base_offset: original.first_offset,
                last_offset: original.last_offset,
                duplicate: true,
                log_start_offset: self.log_start_offset,
            });
        }
        self.append_checked(batch, header, marker, leader_epoch, now_ms)
    }

    /// Writes a COMMIT or ABORT marker for `marker.producer_id` (WriteTxnMarkers): a control
    /// batch stamped `now_ms`, checked with the rules of `marker.transaction_version` (see
    /// `producer_state.rs`). It ends the producer's ongoing transaction; an ABORT adds an entry
    /// to the active segment's transaction index.
    pub fn append_txn_marker(
        &mut self,
        marker: &TxnMarker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, AppendError> {
        let record = ControlRecord::marker(marker.commit, marker.coordinator_epoch);
        let mut batch = record.encode_batch(marker.producer_id, marker.producer_epoch, now_ms);
        let header = BatchHeader::parse(&batch)?;
        self.producers
            .check_marker(&header, &record, marker.transaction_version)?;
        self.append_checked(&mut batch, header, Some(record), leader_epoch, now_ms)
    }

    /// The append once the producer checks passed: offsets, roll, leader epoch, the
    /// transaction index entry of an ABORT, the write, the producer state.
    fn append_checked(
        &mut self,
        batch: &mut [u8],
        header: BatchHeader,
        marker: Option<ControlRecord>,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, AppendError> {
        let base_offset = self.log_end_offset();
        set_base_offset(batch, base_offset);
        set_partition_leader_epoch(batch, leader_epoch);
        let header = BatchHeader {
            base_offset,
            partition_leader_epoch: leader_epoch,
            ..header
        };
        self.write_at_log_end(batch, &header, marker.as_ref(), now_ms)
    }

    /// Writes one checked batch whose base offset is the log end offset and whose header is
    /// final: rolls the segment when due, opens the batch's leader epoch in the cache, indexes
    /// an aborted transaction its marker ends, and updates the producer state. Shared by the
    /// leader's appends and a follower's replicated ones.
    fn write_at_log_end(
        &mut self,
        batch: &[u8],
        header: &BatchHeader,
        marker: Option<&ControlRecord>,
        now_ms: i64,
    ) -> Result<AppendOutcome, AppendError> {
        let base_offset = header.base_offset;
        if self.should_roll(header, now_ms) {
            self.roll()?;
        }
        if self
            .epochs
            .assign(header.partition_leader_epoch, base_offset)
        {
            if let Err(error) = self.epochs.persist() {
                self.epochs.truncate_from_end(base_offset);
                return Err(error.into());
            }
        }
        let aborted = marker
            .and_then(|marker| self.producers.completed_by(header, marker))
            .filter(|completed| completed.is_aborted);
        if let Some(completed) = &aborted {
            self.active_mut()
                .append_aborted_txn(AbortedTxn::of(completed))?;
        }
        let interval = self.config.index_interval_bytes;
        if let Err(error) = self.active_mut().append(batch, header, interval, now_ms) {
            if aborted.is_some() {
                self.active_mut().remove_last_aborted_txn();
            }
            return Err(error.into());
        }
        match marker {
            Some(marker) => {
                self.producers.update_marker(header, marker);
            }
            None => self.producers.update(header),
        }
        Ok(AppendOutcome {
            base_offset,
            last_offset: header.last_offset(),
            duplicate: false,
            log_start_offset: self.log_start_offset,
        })
    }

    fn should_roll(&self, header: &BatchHeader, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let full =
            active.size_bytes() + header.size_bytes() as u64 > self.config.segment_bytes_max();
        let aged = active.rolling_started_ms.is_some_and(|started| {
            now_ms.saturating_sub(started) >= self.config.segment_ms.min(i64::MAX as u64) as i64
        });
        let index_full = active.offset_index_len() >= self.config.offset_index_entries_max()
            || active.time_index().len() + 1
                >= (self.config.segment_index_bytes / crate::segment::TIME_INDEX_ENTRY_SIZE as u64)
                    as usize;
        full || aged || index_full || active.offset_overflows(header.last_offset())
    }

    /// Rolls the active segment if it holds data: seals it (final time-index entry, index
    /// files), creates a new segment at the log end offset and writes a producer snapshot
    /// there (whose write fsyncs the directory, making the new segment's files durable).
    pub fn roll(&mut self) -> Result<(), LogError> {
        if self.active().is_empty() {
            return Ok(());
        }
        self.active_mut().seal()?;
        let base_offset = self.log_end_offset();
        self.push_active(Segment::create(&self.dir, base_offset)?)?;
        self.producers
            .write_snapshot(&self.dir, base_offset, SNAPSHOTS_KEPT)?;
        self.snapshot_offset = Some(base_offset);
        self.active_mut().dir_entry_synced = true;
        Ok(())
    }

    /// Computes what to read for a fetch at `offset` (see [`ReadSlice`]). Kafka's semantics:
    /// whole batches from the one containing `offset`, last offsets below `max_offset`, at most
    /// `max_bytes` except that `min_one_batch` returns a first batch larger than that whole.
    /// An offset in a damaged range is refused ([`ReadError::Damaged`]); a read below one ends
    /// before it.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<ReadSlice, ReadError> {
        let log_end_offset = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end_offset {
            return Err(ReadError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        if let Some(range) = self.damage_at(offset) {
            return Err(ReadError::Damaged {
                offset,
                start_offset: range.start_offset,
                end_offset: range.end_offset,
            });
        }
        // A fetch sends file ranges: never past what the file holds (direct mode).
        let max_offset = max_offset.min(self.active().file_next_offset());
        let max_offset = self
            .damage_above(offset)
            .map_or(max_offset, |range| max_offset.min(range.start_offset));
        let first = self
            .segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for segment in &self.segments[first..] {
            if let Some((position, header)) = segment.translate_offset(offset)? {
                let (end, next_offset) =
                    segment.read_extent(position, &header, max_bytes, max_offset, min_one_batch)?;
                let length = (end - position) as usize;
                return self.slice(
                    segment,
                    position,
                    length,
                    if length > 0 {
                        header.base_offset
                    } else {
                        offset
                    },
                    if length > 0 { next_offset } else { offset },
                );
            }
        }
        let active = self.active();
        self.slice(active, active.size_bytes(), 0, offset, offset)
    }

    /// A read_committed fetch (Kafka's `FetchIsolation.TXN_COMMITTED`): [`PartitionLog::read`]
    /// capped at the last stable offset, with the aborted transactions overlapping what it
    /// returns ([`PartitionLog::aborted_transactions`] from `offset` to the slice's next
    /// offset), as (producer id, first offset) pairs for the fetch response. An empty read
    /// carries none.
    pub fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<(ReadSlice, Vec<(i64, i64)>), ReadError> {
        let slice = self.read(offset, max_bytes, self.last_stable_offset(), min_one_batch)?;
        let aborted = if slice.is_empty() {
            Vec::new()
        } else {
            self.aborted_transactions(offset, slice.next_offset)
        };
        Ok((slice, aborted))
    }

    /// Kafka's `collectAbortedTransactions` for a fetch: the aborted transactions whose ABORT
    /// marker is at or after `start_offset` and whose first offset is below `upper_offset`, as
    /// (producer id, first offset), in marker order. The transaction indexes are searched from
    /// the segment holding `start_offset` on, and the search stops at the first entry whose
    /// last stable offset reaches `upper_offset` (no later abort can overlap the range).
    pub fn aborted_transactions(&self, start_offset: i64, upper_offset: i64) -> Vec<(i64, i64)> {
        let first = self
            .segments
            .partition_point(|s| s.base_offset() <= start_offset)
            .saturating_sub(1);
        let mut found = Vec::new();
        for segment in &self.segments[first..] {
            if segment.collect_aborted_txns(start_offset, upper_offset, &mut found) {
                break;
            }
        }
        found
            .into_iter()
            .map(|entry| (entry.producer_id, entry.first_offset))
            .collect()
    }

    /// Every entry of the segments' transaction indexes, oldest segment first.
    pub fn aborted_txn_index(&self) -> Vec<AbortedTxn> {
        self.segments
            .iter()
            .flat_map(|segment| segment.aborted_txns().iter().copied())
            .collect()
    }

    fn slice(
        &self,
        segment: &Segment,
        position: u64,
        length: usize,
        base_offset: i64,
        next_offset: i64,
    ) -> Result<ReadSlice, ReadError> {
        // A read of nothing names no range: its position may lie in a tail not yet written
        // (a fetch at the log end between an append and the flusher's write).
        debug_assert!(length == 0 || position + length as u64 <= segment.file_bytes());
        let file = if length > 0 {
            Some(segment.file()?)
        } else {
            None
        };
        Ok(ReadSlice {
            file,
            position,
            length,
            base_offset,
            next_offset,
            log_start_offset: self.log_start_offset,
            high_watermark: self.high_watermark,
            last_stable_offset: self.last_stable_offset(),
            log_end_offset: self.log_end_offset(),
        })
    }

    /// Appends `segment` as the new active segment, in direct mode when the config says so.
    fn push_active(&mut self, mut segment: Segment) -> Result<(), LogError> {
        if self.config.direct_appends {
            segment.enable_direct_appends()?;
        }
        self.segments.push(segment);
        Ok(())
    }

    /// Writes the active segment's direct tail to its file (nothing when appends are
    /// buffered): what [`PartitionLog::flush_target`] then makes durable.
    pub fn write_out_appends(&mut self) -> Result<(), LogError> {
        self.active_mut().write_out()
    }

    /// [`PartitionLog::write_out_appends`], then [`PartitionLog::flush_target`]: what a flush
    /// takes under the lock.
    pub fn prepare_flush(&mut self) -> Result<Option<FlushTarget>, LogError> {
        self.write_out_appends()?;
        Ok(self.flush_target())
    }

    /// What to fsync for everything appended so far; `None` when all of it is durable. In
    /// direct mode only what the file holds counts: call [`PartitionLog::prepare_flush`].
    pub fn flush_target(&self) -> Option<FlushTarget> {
        let files: Vec<SegmentFile> = self
            .segments
            .iter()
            .filter(|s| s.next_offset() > self.recovery_point && !s.is_empty())
            .map(|s| s.segment_file().clone())
            .collect();
        // An empty segment's entry need not be durable: a lost one is recreated by the open.
        let sync_dir = self
            .segments
            .iter()
            .any(|s| !s.dir_entry_synced && !s.is_empty());
        let txn_index_files: Vec<PathBuf> = self
            .segments
            .iter()
            .filter(|s| s.txn_index_has_entries_from(self.recovery_point))
            .map(Segment::txn_index_path)
            .collect();
        if files.is_empty() && !sync_dir && txn_index_files.is_empty() {
            return None;
        }
        // The offset below which the file holds every byte (all of it, but in direct mode
        // with appends still in the tail: nothing of the tail counts as flushed).
        let up_to = if self.active().has_unwritten_appends() {
            self.active().base_offset().max(self.recovery_point)
        } else {
            self.log_end_offset()
        };
        Some(FlushTarget {
            files,
            txn_index_files,
            sync_dir,
            dir: self.dir.clone(),
            up_to,
        })
    }

    /// Appends the active segment's new index entries to its index files (no fsync): the
    /// broker calls it with each recovery-point checkpoint, so that recovery after a crash
    /// resumes near the checkpointed recovery point instead of scanning the whole active
    /// segment (`segment/resume.rs`). Sealed segments' files were written whole at the roll.
    pub fn write_index_updates(&mut self) -> Result<(), LogError> {
        self.active_mut().write_index_updates()
    }

    /// Frees the active segment's in-memory copy of its partial last block if the partition
    /// took no append since the last call (direct mode; see `segment.rs`, "Direct appends"):
    /// the broker calls it with each checkpoint, so an idle partition holds no tail bytes.
    pub fn release_idle_tail(&mut self) {
        self.active_mut().release_idle_tail();
    }

    /// Records that everything below `up_to` is durable (after [`FlushTarget::sync`]).
    /// The recovery point never moves backwards, nor beyond the log end offset.
    pub fn mark_flushed(&mut self, up_to: i64) {
        let up_to = up_to.min(self.log_end_offset());
        self.recovery_point = self.recovery_point.max(up_to);
        // Only segments that held data below `up_to`: an empty one's entry was not synced
        // (see `flush_target`).
        for segment in &mut self.segments {
            if segment.base_offset() < up_to {
                segment.dir_entry_synced = true;
            }
        }
    }

    /// Removes every batch at and after `offset` (whole batches: the log end offset becomes the
    /// base offset of the batch containing `offset`). At or below the log start offset the log
    /// is emptied and restarts at `offset`. Adjusts high watermark, recovery point, indexes,
    /// producer state (rebuilt) and the leader-epoch cache.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset <= self.log_start_offset {
            for segment in self.segments.drain(..) {
                segment.retire();
                Segment::delete_files(&self.dir, segment.base_offset())?;
            }
            let offset = offset.max(0);
            self.push_active(Segment::create(&self.dir, offset)?)?;
            self.log_start_offset = offset;
        } else {
            while self.segments.len() > 1 && self.active().base_offset() >= offset {
                if let Some(segment) = self.segments.pop() {
                    segment.retire();
                    Segment::delete_files(&self.dir, segment.base_offset())?;
                }
            }
            let interval = self.config.index_interval_bytes;
            self.active_mut().truncate_to(offset, interval)?;
        }
        sync_dir(&self.dir)?;
        for segment in &mut self.segments {
            segment.dir_entry_synced = true;
        }
        let log_end_offset = self.log_end_offset();
        self.high_watermark = self
            .high_watermark
            .clamp(self.log_start_offset, log_end_offset);
        self.recovery_point = self.recovery_point.min(log_end_offset);
        // Offsets appended again after the truncation are dirty.
        self.cleaner_offset = self.cleaner_offset.min(log_end_offset);
        if self.epochs.truncate_from_end(log_end_offset) {
            self.epochs.persist()?;
        }
        delete_snapshots_after(&self.dir, log_end_offset)?;
        // The indexes were cut with their segments: what remains is trusted.
        self.rebuild_producer_state(log_end_offset)
    }

    /// Kafka's `truncateFullyAndStartAt`: removes every segment and restarts the log empty at
    /// `offset`, which may lie beyond the log end offset (a follower whose leader's log now
    /// starts past it, or one that installs a snapshot: the Raft metadata log). Log start
    /// offset, high watermark, recovery point and cleaner offset all become `offset`; the
    /// leader-epoch cache and producer state are emptied with the batches they described.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        let offset = offset.max(0);
        for segment in self.segments.drain(..) {
            segment.retire();
            Segment::delete_files(&self.dir, segment.base_offset())?;
        }
        self.push_active(Segment::create(&self.dir, offset)?)?;
        sync_dir(&self.dir)?;
        for segment in &mut self.segments {
            segment.dir_entry_synced = true;
        }
        self.log_start_offset = offset;
        self.high_watermark = offset;
        self.recovery_point = offset;
        self.cleaner_offset = offset;
        self.forget_damage_below_log_start()?;
        if self.epochs.truncate_from_end(i64::MIN) {
            self.epochs.persist()?;
        }
        delete_snapshots_after(&self.dir, i64::MIN)?;
        self.rebuild_producer_state(offset)
    }

    /// Flushes everything, writes the index files and a producer snapshot at the log end
    /// offset. The snapshot is skipped when one is already there, or when the log is empty
    /// with no producer state (nothing to snapshot, nothing to replay); the leader-epoch
    /// checkpoint is written on every change already. A log unchanged since it was opened
    /// thus closes without an fsync: a start and stop of many partitions stays cheap; one
    /// with new records costs the snapshot's fsync, not its directory's
    /// ([`ProducerStateManager::write_snapshot_at_close`]).
    pub fn close(mut self) -> Result<(), LogError> {
        // An empty active segment has no index entries to write (and is always scanned on
        // open, never loaded from its index files).
        if !self.active().is_empty() {
            self.active_mut().seal()?;
        }
        for segment in &self.segments {
            if segment.next_offset() > self.recovery_point && !segment.is_empty() {
                segment
                    .file()?
                    .sync_data()
                    .map_err(LogError::io("fsync", segment.log_path()))?;
            }
            if segment.txn_index_has_entries_from(self.recovery_point) {
                segment.sync_txn_index()?;
            }
        }
        // A transaction index created since the last flush: its name must survive too (the
        // next open trusts the indexes of a clean shutdown).
        if self
            .segments
            .iter()
            .any(|s| !s.dir_entry_synced && !s.aborted_txns().is_empty())
        {
            sync_dir(&self.dir)?;
        }
        let log_end_offset = self.log_end_offset();
        let nothing_to_snapshot =
            self.producers.producer_count() == 0 && self.log_start_offset == log_end_offset;
        if self.snapshot_offset == Some(log_end_offset) || nothing_to_snapshot {
            return Ok(());
        }
        self.producers
            .write_snapshot_at_close(&self.dir, log_end_offset, SNAPSHOTS_KEPT)
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(LogError::io("remove directory", &dir))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Applies new settings to a live log (a topic config change): they govern the next roll
    /// and index entries; existing segments stay as they are.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }
    /// Sets the high watermark, clamped to `[log start offset, log end offset]`; completed
    /// transactions whose markers it passes stop holding the last stable offset back.
    pub fn set_high_watermark(&mut self, offset: i64) {
        self.high_watermark = offset.clamp(self.log_start_offset, self.log_end_offset());
        self.producers
            .on_high_watermark_updated(self.high_watermark);
    }
    /// Kafka's first unstable offset: the first offset of the earliest ongoing transaction, or
    /// of a completed one whose marker is not below the high watermark, at least the log start
    /// offset. `None` when there is none.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .first_unstable_offset()
            .map(|offset| offset.max(self.log_start_offset))
    }
    /// Kafka's last stable offset: the first unstable offset when it is below the high
    /// watermark, else the high watermark. read_committed consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        match self.first_unstable_offset() {
            Some(offset) if offset < self.high_watermark => offset,
            _ => self.high_watermark,
        }
    }
    /// The ongoing transactions (producer id, epoch, first offset), by first offset: what
    /// DescribeProducers reports as `currentTxnStartOffset`.
    pub fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        self.producers.ongoing_transactions()
    }
    /// Whether `producer_id` has an ongoing transaction here (KIP-890 part 1: the broker's
    /// check that a transactional produce belongs to a transaction the partition was added to).
    pub fn has_ongoing_transaction(&self, producer_id: i64) -> bool {
        self.producers.has_ongoing_transaction(producer_id)
    }
    /// Everything below this offset is known to be on disk.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }
    /// Total bytes of the segments' log files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size_bytes).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(Segment::base_offset).collect()
    }
    /// Number of idempotent producers with state in this partition.
    pub fn producer_count(&self) -> usize {
        self.producers.producer_count()
    }
    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producers
    }
    /// The leader-epoch cache entries (epoch, start offset).
    pub fn leader_epochs(&self) -> &[(i32, i64)] {
        self.epochs.entries()
    }
    /// OffsetForLeaderEpoch: the largest epoch ≤ `epoch` and its end offset.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs
            .end_offset_for_epoch(epoch, self.log_end_offset())
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a partition log always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a partition log always has an active segment")
    }
}
