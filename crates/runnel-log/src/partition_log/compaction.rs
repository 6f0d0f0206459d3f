//! Log compaction (`cleanup.policy=compact`): rewriting the non-active segments so that each key
//! keeps only its latest record, with Kafka's cleaner rules (`LogCleaner`, `Cleaner`).
//!
//! # What a pass does
//! The *cleaner offset* splits the log: below it the clean section (already compacted once),
//! from it the dirty section. A pass runs when the dirty share of the non-active segments'
//! bytes ([`PartitionLog::cleanable_ratio`]) reaches `min.cleanable.dirty.ratio`, when the
//! oldest dirty record is older than `max.compaction.lag.ms`, or when the delete horizon of a
//! kept tombstone or transaction marker has passed. It:
//! 1. bounds the dirty section at the first segment that is active, not wholly below the last
//!    stable offset (which is at most the high watermark), or (when `min.compaction.lag.ms` > 0) holds a record younger than that lag;
//! 2. builds a key → latest offset map over the dirty section, at most `offset_map_bytes_max`
//!    bytes (estimated [`OFFSET_MAP_ENTRY_OVERHEAD_BYTES`] + key length per key); when full,
//!    the pass cleans only up to the first offset the map does not cover;
//! 3. rewrites every non-active segment from the log start up to that end: a keyed record is
//!    kept only if no newer record of its key is in the map (records of the clean section
//!    included); records with a null key are kept; records of aborted transactions are
//!    removed and never enter the map; a transaction marker is removed once no data of its
//!    transaction is left and its delete horizon has passed, and each cleaned segment's
//!    `.txnindex` keeps the entries Kafka keeps (`compaction/transactions.rs`); tombstones and
//!    markers go as described below;
//! 4. moves the cleaner offset to the end of the cleaned section.
//!
//! Invariants: the clean section holds at most one record per key (every pass deduplicates
//! it against the map); retained records keep their offsets (gaps are allowed, the log end
//! offset never moves); the active segment and everything at or above the high watermark are
//! never touched.
//!
//! # Concurrency
//! A pass is three steps so that the partition's lock is not held while it reads and writes:
//! [`PartitionLog::plan_compaction`] (under the lock) decides whether a pass is due and clones
//! the sealed segments below the dirty section's end (shared file handles and indexes: sealed
//! bytes never change); [`CompactionPlan::run`] (no lock) builds the key map and writes and fsyncs the
//! `.cleaned` files; [`PartitionLog::apply_compaction`] (under the lock) swaps them in. Between
//! plan and apply the log only grows at its active segment or loses whole segments at its
//! start (retention, DeleteRecords); a planned segment gone by then is skipped and its cleaned
//! file deleted. Records appended meanwhile are dirty for the next pass. [`PartitionLog::compact`]
//! runs the three steps back to back.
//!
//! # Batches
//! A batch whose records all survive is copied byte for byte, unless it gets a delete horizon
//! (below). Otherwise it becomes one new batch with the same codec, timestamp type
//! (LogAppendTime batches keep their max timestamp), producer id/epoch, transactional and
//! control flags, delete horizon and leader epoch, whose base offset is its first retained
//! record's offset and whose base sequence moves with it (so each record keeps its sequence).
//! A batch left with no records is dropped, except a producer's last batch (Kafka's
//! `isBatchLastRecordOfProducer`, per the live producer state: the producer's newest data
//! batch, or for a producer whose state caches none, a marker at its current epoch), which
//! stays as an empty header with its original offsets, sequences and flags (no delete
//! horizon), as Kafka does, so that rebuilding producer state from the log still finds the
//! producer's epoch and last sequence. An empty header that is no longer its producer's last
//! is dropped. A segment left empty is deleted, except the first one, which keeps the log start
//! offset where it was.
//!
//! # Tombstones and transaction markers: the delete horizon (KIP-534)
//! Both follow Kafka's rule for v2 batches (`Cleaner.cleanInto`, `shouldRetainRecord`,
//! `MemoryRecords.filterTo`): the first pass that keeps a batch holding a tombstone (a keyed
//! record with a null value that is its key's latest), or a transaction marker no data of whose
//! transaction is left (`compaction/transactions.rs`), and that has no delete horizon yet,
//! rewrites it with one: attribute bit 6 set and the base timestamp = the pass's `now_ms` +
//! `delete.retention.ms` (saturating; record timestamps are kept, their deltas taken from the
//! horizon). A later pass whose `now_ms` is at or past the horizon drops the tombstone (unless
//! it lies beyond what the offset map covers) and the marker (as a whole batch; a producer's
//! last batch stays as an empty header). So a consumer that reads the log from its start within
//! `delete.retention.ms` of the first such pass still sees each tombstone and marker, and a
//! marker never goes while any batch of its transaction is in the log. When a marker goes, no
//! index entry is left for it: an ABORT's entry is kept only by a pass that saw data of its
//! transaction, so the pass that gives the marker its horizon already drops it. A replay of the
//! log after that (`producer_state.rs`) finds no transaction left open, since a data batch
//! outlives its marker in no case.
//!
//! Kafka's older rule (before KIP-534, for message formats below v2: tombstones and markers in
//! a segment last modified `delete.retention.ms` before the clean section's end) is not used:
//! Runnel stores only v2 batches. After a pass keeps a batch with a horizon ahead, the log
//! remembers (in memory only) the earliest one, so that a later pass runs once it has passed
//! even without new dirty data (Kafka waits for its next pass due by dirtiness); after a
//! restart the next regular pass removes what is due.
//!
//! # Crash policy (Kafka's `.cleaned` / `.swap` discipline)
//! Each cleaned segment is written to `<base>.log.cleaned` and fsynced, renamed to
//! `<base>.log.swap`, the directory fsynced; then the replaced segment's `.log`, `.index` and
//! `.timeindex` are deleted, the swap is renamed to `<base>.log`, its index files are written
//! (a cache, rebuilt if missing), its `.txnindex` replaces the old one atomically (the old one
//! stays until then: it describes the cleaned segment too, the cleaned one only lacks entries
//! of transactions the pass found no data of) and the directory is fsynced. On open
//! (`recovery.rs`), `*.cleaned` files are deleted (the old segment is intact) and every `*.swap`
//! is completed: the `.log` files whose base offset lies in `[swap base, swap next offset)` are
//! deleted and the swap becomes `<base>.log`, its indexes rebuilt by scanning and its
//! `.txnindex` by the producer-state replay. A crash at any point therefore
//! leaves, per segment, either the old or the cleaned version; both hold every record a
//! compaction must keep. The cleaner offset is persisted by the broker
//! (`cleaner-offset-checkpoint`) after a pass; an older checkpoint only makes the next pass
//! treat more of the log as dirty.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use runnel_protocol::record_batch::{BatchHeader, ATTR_DELETE_HORIZON, BATCH_HEADER_SIZE};
use runnel_protocol::reencode;

use super::PartitionLog;
use crate::checkpoint::sync_dir;
use crate::error::LogError;
use crate::producer_state::LastRecord;
use crate::segment::{
    segment_file_path, validate_stored_batch, AbortedTxn, Segment, CLEANED_SUFFIX, LOG_SUFFIX,
    SWAP_SUFFIX,
};
use runnel_protocol::control_record::ControlRecord;
use transactions::TxnTracker;

/// Estimated bytes one key takes in the offset map, besides the key itself (hash table slot,
/// `Bytes` handle, offset).
pub const OFFSET_MAP_ENTRY_OVERHEAD_BYTES: usize = 48;

/// The compaction settings of a topic, with Kafka's names. Negative lags count as 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionPolicy {
    /// `delete.retention.ms`: how long a tombstone stays after its first pass.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment with a record younger than this stays dirty.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record older than this forces a pass.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the dirty share of bytes that starts a pass.
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        // Kafka's defaults: 1 day, 0, unlimited, 0.5.
        CompactionPolicy {
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

/// What one call of [`PartitionLog::compact`] did. All zero (and the cleaner offset unchanged)
/// when no pass was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactionOutcome {
    /// Segments replaced by a cleaned version or deleted because nothing in them survived.
    pub segments_rewritten: usize,
    /// Log bytes of the segments the pass covered, before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    /// The cleaner offset after the pass: everything below it is clean.
    pub cleaner_offset: i64,
}

/// Key → offset of its latest record in the dirty section, bounded in estimated bytes.
struct OffsetMap {
    latest: HashMap<Bytes, i64>,
    size_bytes: usize,
    size_bytes_max: usize,
}

impl OffsetMap {
    fn new(size_bytes_max: usize) -> Self {
        OffsetMap {
            latest: HashMap::new(),
            size_bytes: 0,
            size_bytes_max,
        }
    }

    /// Records `offset` as the latest of `key`; `false` when a new key does not fit (the first
    /// key always fits, so that every pass makes progress).
    fn put(&mut self, key: &Bytes, offset: i64) -> bool {
        if let Some(latest) = self.latest.get_mut(key) {
            *latest = offset;
            return true;
        }
        let entry_bytes = OFFSET_MAP_ENTRY_OVERHEAD_BYTES + key.len();
        if !self.latest.is_empty() && self.size_bytes + entry_bytes > self.size_bytes_max {
            return false;
        }
        self.size_bytes += entry_bytes;
        self.latest.insert(key.clone(), offset);
        true
    }

    fn latest(&self, key: &Bytes) -> Option<i64> {
        self.latest.get(key).copied()
    }
}

/// The rules of one pass for deciding each batch's and record's fate.
struct Pass<'a> {
    map: &'a OffsetMap,
    /// Where the offset map stops covering: records from here on are kept as they are
    /// (Kafka's `pastLatestOffset`).
    dirty_end: i64,
    /// The time of the pass (Kafka's `currentTime`): a delete horizon at or before it has
    /// passed.
    now_ms: i64,
    /// The delete horizon a batch gets when this pass first finds it holding a tombstone or
    /// a removable marker: `now_ms + delete.retention.ms`.
    new_horizon_ms: i64,
}

/// What became of one batch.
enum Verdict {
    /// Every record survives: copy the batch as it is.
    Unchanged,
    /// Some records survive, or an empty header must stay: these bytes replace the batch.
    Rewritten(Vec<u8>),
    Dropped,
}

/// The cleaned version of one segment, and what it was made from.
#[derive(Debug)]
struct CleanedSegment {
    segment: Segment,
    source_base_offset: i64,
    source_next_offset: i64,
    source_size_bytes: u64,
    changed: bool,
    records_removed: u64,
    /// The earliest delete horizon still ahead among the batches kept with a tombstone or a
    /// removable marker: when a later pass can remove them.
    earliest_horizon_ms: Option<i64>,
}

impl PartitionLog {
    /// Everything below this offset is clean (compacted at least once); clamped to
    /// `[log start offset, log end offset]`.
    pub fn cleaner_offset(&self) -> i64 {
        self.cleaner_offset
            .clamp(self.log_start_offset, self.log_end_offset())
    }

    /// Sets the cleaner offset (from `cleaner-offset-checkpoint`, after open), at most the
    /// log end offset: a checkpoint above what recovery kept would otherwise mark offsets
    /// appended again later as clean, though no pass has seen them.
    pub fn set_cleaner_offset(&mut self, offset: i64) {
        self.cleaner_offset = offset.min(self.log_end_offset());
    }

    /// Dirty bytes / all bytes of the non-active segments, where a segment is dirty when it
    /// holds offsets at or after the cleaner offset. 0 when there are no such bytes.
    pub fn cleanable_ratio(&self) -> f64 {
        let first_dirty = self.cleaner_offset();
        let (mut clean, mut dirty) = (0u64, 0u64);
        for segment in &self.segments[..self.segments.len() - 1] {
            if segment.next_offset() > first_dirty {
                dirty += segment.size_bytes();
            } else {
                clean += segment.size_bytes();
            }
        }
        if clean + dirty == 0 {
            0.0
        } else {
            dirty as f64 / (clean + dirty) as f64
        }
    }

    /// Runs one cleaning pass if one is due at `now_ms` (see the module doc): plan, run and
    /// apply in one go, for a caller that holds the log throughout.
    pub fn compact(
        &mut self,
        policy: &CompactionPolicy,
        now_ms: i64,
        offset_map_bytes_max: usize,
    ) -> Result<CompactionOutcome, LogError> {
        match self.plan_compaction(policy, now_ms, offset_map_bytes_max)? {
            Some(plan) => {
                let compacted = plan.run()?;
                self.apply_compaction(compacted)
            }
            None => Ok(CompactionOutcome {
                cleaner_offset: self.cleaner_offset(),
                ..CompactionOutcome::default()
            }),
        }
    }

    /// Decides whether a pass is due at `now_ms` and, if so, what it covers: the first step
    /// of a pass, taken under the partition's lock. The returned plan holds copies of the
    /// sealed segments it reads, so [`CompactionPlan::run`] needs no lock.
    pub fn plan_compaction(
        &self,
        policy: &CompactionPolicy,
        now_ms: i64,
        offset_map_bytes_max: usize,
    ) -> Result<Option<CompactionPlan>, LogError> {
        let first_dirty = self.cleaner_offset();
        let end_bound = self
            .first_uncleanable_offset(policy, now_ms)
            .max(first_dirty);
        let has_dirty = end_bound > first_dirty;
        let dirty_due = has_dirty
            && (self.cleanable_ratio() >= policy.min_cleanable_dirty_ratio
                || self.dirty_lag_exceeded(first_dirty, policy, now_ms)?);
        let due = dirty_due
            || self
                .delete_horizon_ms
                .is_some_and(|horizon| horizon <= now_ms);
        if !due {
            return Ok(None);
        }
        let sealed = &self.segments[..self.segments.len() - 1];
        Ok(Some(CompactionPlan {
            dir: self.dir.clone(),
            index_interval_bytes: self.config.index_interval_bytes,
            first_dirty,
            end_bound,
            delete_retention_ms: policy.delete_retention_ms.max(0),
            now_ms,
            offset_map_bytes_max,
            segments: sealed
                .iter()
                .take_while(|s| s.base_offset() < end_bound)
                .map(Segment::pinned)
                .collect::<Result<_, _>>()?,
            producers_last_records: self.producers.last_records(),
            aborted_txns: self
                .aborted_txn_index()
                .into_iter()
                .filter(|txn| txn.first_offset < end_bound)
                .collect(),
        }))
    }

    /// Swaps in what [`CompactionPlan::run`] wrote: the last step of a pass, under the
    /// partition's lock. A planned segment that retention or DeleteRecords removed meanwhile
    /// is skipped (its cleaned file deleted); so is one that changed in any other way, which
    /// also holds the cleaner offset back to it, since it was not cleaned.
    pub fn apply_compaction(
        &mut self,
        compacted: CompactedSegments,
    ) -> Result<CompactionOutcome, LogError> {
        let mut outcome = CompactionOutcome::default();
        let mut cleaner_offset = compacted.dirty_end.max(compacted.first_dirty);
        let mut pending = compacted.cleaned.into_iter();
        while let Some(cleaned) = pending.next() {
            let sealed = &self.segments[..self.segments.len() - 1];
            let live = sealed
                .iter()
                .position(|s| s.base_offset() == cleaned.source_base_offset);
            let index = match live {
                Some(index) if same_segment(&self.segments[index], &cleaned) => index,
                Some(_) => {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        base_offset = cleaned.source_base_offset,
                        "segment changed during compaction: left as it is"
                    );
                    cleaner_offset = cleaner_offset.min(cleaned.source_base_offset);
                    discard(cleaned.segment)?;
                    continue;
                }
                None => {
                    discard(cleaned.segment)?;
                    continue;
                }
            };
            outcome.bytes_before += cleaned.source_size_bytes;
            outcome.records_removed += cleaned.records_removed;
            if !cleaned.changed {
                discard(cleaned.segment)?;
                outcome.bytes_after += cleaned.source_size_bytes;
            } else if cleaned.segment.is_empty() && index > 0 {
                self.drop_emptied_segment(index, cleaned.segment)?;
                outcome.segments_rewritten += 1;
            } else {
                outcome.bytes_after += cleaned.segment.size_bytes();
                if let Err(error) = self.swap_in(index, cleaned.segment) {
                    for rest in pending {
                        discard(rest.segment)?;
                    }
                    return Err(error);
                }
                outcome.segments_rewritten += 1;
            }
        }
        self.delete_horizon_ms = compacted.delete_horizon_ms;
        self.cleaner_offset = cleaner_offset;
        outcome.cleaner_offset = self.cleaner_offset();
        tracing::info!(
            dir = %self.dir.display(),
            segments_rewritten = outcome.segments_rewritten,
            bytes_before = outcome.bytes_before,
            bytes_after = outcome.bytes_after,
            records_removed = outcome.records_removed,
            cleaner_offset = outcome.cleaner_offset,
            "compacted log"
        );
        Ok(outcome)
    }

    /// Base offset of the first segment the pass may not clean: the active one, one not wholly
    /// below the last stable offset (Kafka: the cleaner never passes it, so an ongoing
    /// transaction is never compacted), a dirty one holding a record younger than the minimum lag, or
    /// a damaged one (kept as it is on disk; see `damage.rs`).
    fn first_uncleanable_offset(&self, policy: &CompactionPolicy, now_ms: i64) -> i64 {
        let first_dirty = self.cleaner_offset();
        let lag_cutoff_ms = now_ms.saturating_sub(policy.min_compaction_lag_ms.max(0));
        for segment in &self.segments[..self.segments.len() - 1] {
            let too_young = policy.min_compaction_lag_ms > 0
                && segment.next_offset() > first_dirty
                && segment.max_timestamp().0 > lag_cutoff_ms;
            if segment.next_offset() > self.last_stable_offset()
                || too_young
                || self.overlaps_damage(segment)
            {
                return segment.base_offset();
            }
        }
        self.active().base_offset()
    }

    /// Whether the first dirty batch is older than `max.compaction.lag.ms`.
    fn dirty_lag_exceeded(
        &self,
        first_dirty: i64,
        policy: &CompactionPolicy,
        now_ms: i64,
    ) -> Result<bool, LogError> {
        for segment in self
            .segments
            .iter()
            .filter(|s| s.next_offset() > first_dirty)
        {
            if let Some((_, header)) = segment.translate_offset(first_dirty)? {
                // A batch with a delete horizon holds it in its base timestamp.
                let oldest_ms = if header.delete_horizon_ms().is_some() {
                    header.max_timestamp
                } else {
                    header.base_timestamp
                };
                return Ok(oldest_ms >= 0
                    && now_ms.saturating_sub(oldest_ms) > policy.max_compaction_lag_ms.max(0));
            }
        }
        Ok(false)
    }

    /// Replaces segment `index` with its cleaned version (already fsync'd): `.cleaned` →
    /// `.swap`, fsync directory, delete the old files, `.swap` → `.log`, index files, fsync
    /// directory.
    fn swap_in(&mut self, index: usize, mut cleaned: Segment) -> Result<(), LogError> {
        let base_offset = cleaned.base_offset();
        let cleaned_path = segment_file_path(&self.dir, base_offset, CLEANED_SUFFIX);
        let swap_path = segment_file_path(&self.dir, base_offset, SWAP_SUFFIX);
        let log_path = segment_file_path(&self.dir, base_offset, LOG_SUFFIX);
        fs::rename(&cleaned_path, &swap_path).map_err(LogError::io("rename", &cleaned_path))?;
        sync_dir(&self.dir)?;
        self.segments[index].retire();
        // The old `.txnindex` stays until the cleaned one replaces it: either describes the
        // cleaned segment (the cleaned one drops only entries whose data the pass found none of).
        Segment::delete_log_and_indexes(&self.dir, base_offset)?;
        fs::rename(&swap_path, &log_path).map_err(LogError::io("rename", &swap_path))?;
        cleaned.set_log_path(log_path);
        cleaned.seal()?;
        let kept_txns = cleaned.aborted_txns().to_vec();
        cleaned.replace_txn_index(kept_txns)?;
        sync_dir(&self.dir)?;
        cleaned.dir_entry_synced = true;
        self.segments[index] = cleaned;
        Ok(())
    }

    /// Deletes segment `index` (not the first), none of whose records survived.
    fn drop_emptied_segment(&mut self, index: usize, cleaned: Segment) -> Result<(), LogError> {
        discard(cleaned)?;
        let removed = self.segments.remove(index);
        removed.retire();
        Segment::delete_files(&self.dir, removed.base_offset())?;
        sync_dir(&self.dir)
    }
}

/// A compaction pass planned under the partition's lock, to be run without it.
#[derive(Debug)]
pub struct CompactionPlan {
    dir: PathBuf,
    index_interval_bytes: u64,
    /// The cleaner offset when the pass was planned.
    first_dirty: i64,
    /// Where the dirty section the pass may clean ends.
    end_bound: i64,
    /// `delete.retention.ms` (at least 0).
    delete_retention_ms: i64,
    now_ms: i64,
    offset_map_bytes_max: usize,
    /// Copies of the sealed segments below `end_bound`, oldest first, each pinning its open
    /// handle (retention may delete a segment while the pass reads it; the handle keeps its
    /// bytes readable). A pass holds one descriptor per planned segment beyond the cache.
    segments: Vec<Segment>,
    /// Each producer's last data offset and epoch when the pass was planned (Kafka's
    /// `lastRecordsOfActiveProducers`). A batch that was a producer's last then may have been
    /// superseded since; keeping its empty header is then merely unneeded, never wrong.
    producers_last_records: HashMap<i64, LastRecord>,
    /// The log's aborted transactions that began below `end_bound`, from every segment's
    /// transaction index (a marker may lie beyond the planned segments).
    aborted_txns: Vec<AbortedTxn>,
}

/// What a run wrote: each planned segment's cleaned version (an fsync'd `.cleaned` file),
/// to be swapped in by [`PartitionLog::apply_compaction`].
#[derive(Debug)]
pub struct CompactedSegments {
    first_dirty: i64,
    dirty_end: i64,
    /// The earliest delete horizon ahead among what the pass kept (see [`CleanedSegment`]).
    delete_horizon_ms: Option<i64>,
    cleaned: Vec<CleanedSegment>,
}

impl CompactedSegments {
    /// Deletes the cleaned files without applying them (the partition went away).
    pub fn discard(self) -> Result<(), LogError> {
        for cleaned in self.cleaned {
            discard(cleaned.segment)?;
        }
        Ok(())
    }
}

impl CompactionPlan {
    /// Builds the offset map and writes every planned segment's cleaned version: the long
    /// step of a pass, which reads and writes only the plan's own copies and new files.
    pub fn run(self) -> Result<CompactedSegments, LogError> {
        let (map, dirty_end) = build_offset_map(
            &self.segments,
            self.first_dirty,
            self.end_bound,
            self.offset_map_bytes_max,
            &self.aborted_txns,
        )?;
        let walk_from = self.segments.first().map_or(0, Segment::base_offset);
        let mut txns = TxnTracker::new(&self.aborted_txns, walk_from);
        let pass = Pass {
            map: &map,
            dirty_end,
            now_ms: self.now_ms,
            new_horizon_ms: self.now_ms.saturating_add(self.delete_retention_ms),
        };
        let mut cleaned = Vec::new();
        let mut delete_horizon_ms: Option<i64> = None;
        for source in self.segments.iter().filter(|s| s.base_offset() < dirty_end) {
            let result = self
                .clean_segment(source, &pass, &mut txns)
                .and_then(|segment| {
                    if segment.changed {
                        let path = segment.segment.log_path().to_path_buf();
                        segment
                            .segment
                            .file()?
                            .sync_all()
                            .map_err(LogError::io("fsync", &path))?;
                    }
                    Ok(segment)
                });
            let segment = match result {
                Ok(segment) => segment,
                Err(error) => {
                    CompactedSegments {
                        first_dirty: self.first_dirty,
                        dirty_end,
                        delete_horizon_ms,
                        cleaned,
                    }
                    .discard()?;
                    return Err(error);
                }
            };
            delete_horizon_ms = earliest(delete_horizon_ms, segment.earliest_horizon_ms);
            cleaned.push(segment);
        }
        Ok(CompactedSegments {
            first_dirty: self.first_dirty,
            dirty_end,
            delete_horizon_ms,
            cleaned,
        })
    }

    /// Writes the cleaned version of `source` to `<base>.log.cleaned`.
    fn clean_segment(
        &self,
        source: &Segment,
        pass: &Pass<'_>,
        txns: &mut TxnTracker,
    ) -> Result<CleanedSegment, LogError> {
        let mut cleaned = CleanedSegment {
            segment: Segment::create_cleaned(&self.dir, source.base_offset())?,
            source_base_offset: source.base_offset(),
            source_next_offset: source.next_offset(),
            source_size_bytes: source.size_bytes(),
            changed: false,
            records_removed: 0,
            earliest_horizon_ms: None,
        };
        let mut kept_txns = Vec::new();
        for (position, header) in source.headers_below(i64::MAX)? {
            let bytes = source.read_batch(position, &header)?;
            let retain_empty = self.is_producers_last_batch(&header);
            let corrupt = |reason: String| LogError::Corrupt {
                path: source.log_path().to_path_buf(),
                reason: format!(
                    "re-encoding batch at offset {}: {reason}",
                    header.base_offset
                ),
            };
            let verdict = if header.is_control() {
                let marker = read_marker(source, position, &header)?;
                let read = txns.on_control_batch(&header, marker.as_ref());
                kept_txns.extend(read.kept_entry);
                let horizon = header.delete_horizon_ms();
                if read.removable && horizon.is_some_and(|h| h <= pass.now_ms) {
                    // No data of its transaction is left and its horizon has passed.
                    cleaned.records_removed += header.records_count.max(0) as u64;
                    emptied(&header, retain_empty)
                } else if header.records_count == 0 {
                    if retain_empty {
                        Verdict::Unchanged
                    } else {
                        Verdict::Dropped
                    }
                } else if read.removable {
                    let ahead = horizon.unwrap_or(pass.new_horizon_ms);
                    cleaned.earliest_horizon_ms =
                        earliest(cleaned.earliest_horizon_ms, Some(ahead));
                    match horizon {
                        Some(_) => Verdict::Unchanged,
                        None => {
                            // Kafka's containsMarkerForEmptyTxn: the first pass to find the
                            // marker removable gives it its delete horizon.
                            let records = decode_records(source, position, &header)?;
                            let rewritten = encode_retained(&header, records, Some(ahead));
                            Verdict::Rewritten(rewritten.map_err(corrupt)?)
                        }
                    }
                } else {
                    Verdict::Unchanged
                }
            } else if txns.on_data_batch(&header) {
                // Aborted data: every record goes; a producer's last batch stays as a header.
                cleaned.records_removed += header.records_count.max(0) as u64;
                emptied(&header, retain_empty)
            } else {
                let records = decode_records(source, position, &header)?;
                let total = records.len();
                let horizon = header.delete_horizon_ms();
                let retained: Vec<Record> = records
                    .into_iter()
                    .filter(|r| retain_record(r, horizon, pass))
                    .collect();
                cleaned.records_removed += (total - retained.len()) as u64;
                let has_tombstone = retained
                    .iter()
                    .any(|r| r.key.is_some() && r.value.is_none());
                let sets_horizon = has_tombstone && horizon.is_none();
                let horizon = if sets_horizon {
                    Some(pass.new_horizon_ms)
                } else {
                    horizon
                };
                if has_tombstone {
                    let ahead = horizon.filter(|&h| sets_horizon || h > pass.now_ms);
                    cleaned.earliest_horizon_ms = earliest(cleaned.earliest_horizon_ms, ahead);
                }
                if retained.is_empty() {
                    emptied(&header, retain_empty)
                } else if retained.len() == total && !sets_horizon {
                    Verdict::Unchanged
                } else {
                    Verdict::Rewritten(
                        encode_retained(&header, retained, horizon).map_err(corrupt)?,
                    )
                }
            };
            let written = match verdict {
                Verdict::Unchanged => bytes,
                Verdict::Rewritten(rewritten) => {
                    cleaned.changed = true;
                    rewritten
                }
                Verdict::Dropped => {
                    cleaned.changed = true;
                    continue;
                }
            };
            let written_header =
                validate_stored_batch(&written).map_err(|reason| LogError::Corrupt {
                    path: source.log_path().to_path_buf(),
                    reason: format!("cleaned batch at offset {}: {reason}", header.base_offset),
                })?;
            cleaned.segment.append(
                &written,
                &written_header,
                self.index_interval_bytes,
                self.now_ms,
            )?;
        }
        if kept_txns.as_slice() != source.aborted_txns() {
            cleaned.changed = true;
        }
        cleaned.segment.set_txn_index_in_memory(kept_txns);
        Ok(cleaned)
    }

    /// Whether `header` is the batch the producer state needs of its producer (Kafka's
    /// `isBatchLastRecordOfProducer`): the producer's newest data batch, or, for a producer
    /// whose state caches none, a control batch at its current epoch (which holds the epoch
    /// that fences its older instances).
    fn is_producers_last_batch(&self, header: &BatchHeader) -> bool {
        if !header.has_producer_id() {
            return false;
        }
        match self.producers_last_records.get(&header.producer_id) {
            Some(LastRecord {
                last_data_offset: Some(offset),
                ..
            }) => header.last_offset() == *offset,
            Some(LastRecord {
                last_data_offset: None,
                epoch,
            }) => header.is_control() && header.producer_epoch == *epoch,
            None => false,
        }
    }
}

/// What becomes of a batch none of whose records stay: an empty header when it is its
/// producer's last batch (Kafka's `RETAIN_EMPTY`), nothing otherwise.
fn emptied(header: &BatchHeader, retain_empty: bool) -> Verdict {
    match (retain_empty, header.records_count) {
        (true, 0) => Verdict::Unchanged,
        (true, _) => Verdict::Rewritten(empty_batch(header)),
        (false, _) => Verdict::Dropped,
    }
}

/// The earlier of two optional times.
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the live segment is still the one a cleaned segment was made from.
fn same_segment(live: &Segment, cleaned: &CleanedSegment) -> bool {
    live.next_offset() == cleaned.source_next_offset
        && live.size_bytes() == cleaned.source_size_bytes
}

/// Closes and deletes a cleaned segment's file that will not be swapped in.
fn discard(cleaned: Segment) -> Result<(), LogError> {
    let path = cleaned.log_path().to_path_buf();
    cleaned.retire();
    drop(cleaned);
    fs::remove_file(&path).map_err(LogError::io("remove", &path))
}

/// The key → latest offset map over `[first_dirty, end_bound)` of `segments`, and the offset
/// where it stops covering (`end_bound` unless it filled up).
/// Records of aborted transactions (`aborted`, see `compaction/transactions.rs`) are left out:
/// an aborted record never hides a committed one.
fn build_offset_map(
    segments: &[Segment],
    first_dirty: i64,
    end_bound: i64,
    size_bytes_max: usize,
    aborted: &[AbortedTxn],
) -> Result<(OffsetMap, i64), LogError> {
    let mut map = OffsetMap::new(size_bytes_max);
    let mut dirty = segments
        .iter()
        .filter(|s| s.next_offset() > first_dirty && s.base_offset() < end_bound)
        .peekable();
    let walk_from = dirty.peek().map_or(first_dirty, |s| s.base_offset());
    let mut txns = TxnTracker::new(aborted, walk_from);
    for segment in dirty {
        for (position, header) in segment.headers_below(end_bound)? {
            if header.is_control() {
                let marker = read_marker(segment, position, &header)?;
                txns.on_control_batch(&header, marker.as_ref());
                continue;
            }
            if txns.on_data_batch(&header) || header.last_offset() < first_dirty {
                continue;
            }
            for record in decode_records(segment, position, &header)? {
                if record.offset < first_dirty || record.offset >= end_bound {
                    continue;
                }
                let Some(key) = &record.key else { continue };
                if !map.put(key, record.offset) {
                    return Ok((map, record.offset));
                }
            }
        }
    }
    Ok((map, end_bound))
}

/// Whether a record of a non-control batch whose delete horizon is `delete_horizon_ms`
/// survives the pass (Kafka's `shouldRetainRecord`): it is beyond what the offset map covers,
/// or it has no key, or it is its key's latest and either has a value or is a tombstone whose
/// batch's horizon has not passed (or has none yet).
fn retain_record(record: &Record, delete_horizon_ms: Option<i64>, pass: &Pass<'_>) -> bool {
    if record.offset >= pass.dirty_end {
        return true;
    }
    let Some(key) = &record.key else {
        return true;
    };
    if pass
        .map
        .latest(key)
        .is_some_and(|latest| record.offset < latest)
    {
        return false;
    }
    record.value.is_some() || delete_horizon_ms.is_none_or(|horizon| pass.now_ms < horizon)
}

/// The record of a control batch, when it is a transaction marker that decodes (`None` for an
/// emptied batch or another type: it ends no transaction).
fn read_marker(
    segment: &Segment,
    position: u64,
    header: &BatchHeader,
) -> Result<Option<ControlRecord>, LogError> {
    if header.records_count == 0 || !header.has_producer_id() {
        return Ok(None);
    }
    let bytes = segment.read_batch(position, header)?;
    Ok(ControlRecord::decode_batch(&bytes).ok())
}

/// Decodes the records of the batch at `position`, checking its CRC first.
fn decode_records(
    segment: &Segment,
    position: u64,
    header: &BatchHeader,
) -> Result<Vec<Record>, LogError> {
    let bytes = segment.read_batch(position, header)?;
    let corrupt = |reason: String| LogError::Corrupt {
        path: segment.log_path().to_path_buf(),
        reason: format!("batch at position {position}: {reason}"),
    };
    validate_stored_batch(&bytes).map_err(corrupt)?;
    let mut buf = Bytes::from(bytes);
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|error| corrupt(format!("records do not decode: {error}")))?;
    Ok(set.records)
}

/// One batch holding `retained` (non-empty, from the batch `original`), in the original's
/// codec, with `delete_horizon_ms` as its delete horizon (see `runnel_protocol::reencode`).
fn encode_retained(
    original: &BatchHeader,
    retained: Vec<Record>,
    delete_horizon_ms: Option<i64>,
) -> Result<Vec<u8>, String> {
    let compression = reencode::compression_of(original.compression())?;
    reencode::encode_like(original, retained, compression, delete_horizon_ms)
}

/// A batch header with no records standing for `original` (a producer's last batch): same
/// offsets, sequences, producer fields, flags and timestamps, no compression and no delete
/// horizon (Kafka's `writeEmptyHeader`).
fn empty_batch(original: &BatchHeader) -> Vec<u8> {
    const CODEC_MASK: i16 = 0x07;
    let mut bytes = Vec::with_capacity(BATCH_HEADER_SIZE);
    bytes.extend_from_slice(&original.base_offset.to_be_bytes());
    bytes.extend_from_slice(&((BATCH_HEADER_SIZE - 12) as i32).to_be_bytes());
    bytes.extend_from_slice(&original.partition_leader_epoch.to_be_bytes());
    bytes.push(2);
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(
        &(original.attributes & !CODEC_MASK & !ATTR_DELETE_HORIZON).to_be_bytes(),
    );
    bytes.extend_from_slice(&original.last_offset_delta.to_be_bytes());
    bytes.extend_from_slice(&original.max_timestamp.to_be_bytes());
    bytes.extend_from_slice(&original.max_timestamp.to_be_bytes());
    bytes.extend_from_slice(&original.producer_id.to_be_bytes());
    bytes.extend_from_slice(&original.producer_epoch.to_be_bytes());
    bytes.extend_from_slice(&original.base_sequence.to_be_bytes());
    bytes.extend_from_slice(&0i32.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[cfg(test)]
mod tests;
mod transactions;
