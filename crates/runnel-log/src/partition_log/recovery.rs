//! Opening a partition directory: loading segments, recovery after a crash, and rebuilding the
//! producer state and leader-epoch cache.
//!
//! Crash policy: data below the recovery point was fsynced and is trusted (its indexes are
//! checked and rebuilt when in doubt). Every segment holding offsets at or above the recovery
//! point, and always the active segment, is scanned batch by batch (`validate_stored_batch`: extent,
//! magic, CRC; plus offset continuity), and so is every segment whose indexes are inconsistent
//! or that `damaged-segments` lists. The scan of a segment holding the recovery point resumes
//! at the last offset-index entry of a batch below it (`segment/resume.rs`): what lies below
//! was fsynced, so only what may not have been is read. After a clean shutdown
//! ([`LastShutdown::Clean`], `clean_shutdown.rs`) the active segment's index is trusted whole
//! and only its last indexed batch and what follows it are scanned. At the first torn,
//! corrupt or non-contiguous batch of the active segment, or at or above the recovery point (the unflushed tail), the segment is
//! truncated there (set_len + fsync), every later segment is deleted, and a WARN says what was
//! dropped. A bad batch below the recovery point in a sealed segment is damage, not a crash: the
//! segment is kept as it is on disk, its valid prefix served, later segments kept, and the lost
//! offsets become a damaged range reported at ERROR (`damage.rs`, which also finds unexplained
//! gaps between segments). The recovered data is then fsynced, so the recovery point and the high
//! watermark start at the log end offset. An active segment that scans clean and lies wholly
//! below the recovery point (a clean shutdown) was already fsynced: nothing is rewritten.
//! Up to a block of zeros after the last batch of a segment is the padding of a direct write
//! (`direct_io.rs`), not damage: it is cut without a WARN (`Segment::scan`).
//! Leftover temp files (`*.tmp`, `*.deleted`, `*.cleaned`) and index files without a `.log`
//! (`.txnindex` included) are removed.
//!
//! Producer state and transaction indexes: each segment's `.txnindex` is read and checked
//! (`segment/txn_index.rs`; a damaged one is reported at WARN, never the log). The producer
//! state is the newest valid snapshot at or below the point where the transaction indexes stop
//! being trusted (the recovery point after a crash, the log end offset after a clean shutdown,
//! lowered to a segment whose index is damaged or whose compaction swap was completed), plus a
//! replay of the batches after it; the replay rebuilds every index entry of the markers it
//! passes (Kafka's `LogSegment.recover`), so after a kill -9 the state and the indexes equal a
//! replay of the log. A compaction interrupted after its `<base>.log.swap` was complete is finished first:
//! the `.log` files whose base offset lies in `[swap base, swap next offset)` (the segment it
//! replaces) are deleted with their indexes and the swap is renamed to `<base>.log`; its
//! indexes are then rebuilt by the scan (see `compaction.rs`).

use std::fs;
use std::path::Path;

use super::damage::{self, DamagedRange};
use super::PartitionLog;
use crate::checkpoint::{sync_dir, TEMP_SUFFIX};
use crate::clean_shutdown::LastShutdown;
use crate::config::LogConfig;
use crate::error::LogError;
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{delete_snapshots_after, load_newest_snapshot, ProducerStateManager};
use crate::segment::{
    parse_base_offset, segment_file_path, AbortedTxn, Segment, Truncation, INDEX_SUFFIX,
    LOG_SUFFIX, SWAP_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX,
};
use runnel_protocol::control_record::ControlRecord;

impl PartitionLog {
    /// Opens (creating if missing) the partition directory `dir` and recovers it; see the
    /// module doc. An empty directory gives an empty log with one segment at base 0.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        recovery_point: i64,
    ) -> Result<PartitionLog, LogError> {
        Self::open_at(dir, config, recovery_point, 0)
    }

    /// [`PartitionLog::open`] with the log start offset from `log-start-offset-checkpoint`:
    /// the log start offset is the larger of it and the first segment's base offset, and an
    /// empty directory starts its first segment there.
    pub fn open_at(
        dir: &Path,
        config: LogConfig,
        recovery_point: i64,
        log_start_offset: i64,
    ) -> Result<PartitionLog, LogError> {
        Self::open_after(
            dir,
            config,
            recovery_point,
            log_start_offset,
            LastShutdown::Unclean,
        )
    }

    /// [`PartitionLog::open_at`] knowing how the last process ended: after a clean shutdown
    /// the active segment's index is trusted (see the module doc).
    pub fn open_after(
        dir: &Path,
        config: LogConfig,
        recovery_point: i64,
        log_start_offset: i64,
        last_shutdown: LastShutdown,
    ) -> Result<PartitionLog, LogError> {
        fs::create_dir_all(dir).map_err(LogError::io("create directory", dir))?;
        let swapped = complete_swaps(dir)?;
        let bases = scan_directory(dir)?;
        let mut loader = Loader {
            dir,
            config: &config,
            recovery_point,
            last_shutdown,
            suspects: damage::read_damaged_segments(dir)?,
            epochs: LeaderEpochCache::load(dir)?,
            segments: Vec::new(),
            damaged: Vec::new(),
            recovered_any: false,
            removed_any: false,
        };
        for (i, &base_offset) in bases.iter().enumerate() {
            if !loader.load_segment(base_offset, bases.get(i + 1).copied(), &bases[i + 1..])? {
                break;
            }
        }
        loader.finish_segments(log_start_offset)?;
        let damaged_txn_indexes = loader.load_txn_indexes()?;
        let Loader {
            mut segments,
            mut damaged,
            mut epochs,
            recovered_any,
            ..
        } = loader;
        damaged.extend(damage::find_gaps(
            &segments,
            recovery_point,
            config.compacted,
            &damaged,
        ));
        damaged.sort_by_key(|r| r.start_offset);
        let log_end_offset = segments.last().map_or(0, Segment::next_offset);
        if let Some(active) = segments.last_mut() {
            if !active.is_empty() {
                active.rolling_started_ms = Some(now_ms());
            }
        }
        let first_base = segments.first().map_or(0, Segment::base_offset);
        let log_start_offset = log_start_offset.clamp(first_base, log_end_offset.max(first_base));
        let epochs_changed = epochs.truncate_from_end(log_end_offset);
        if epochs_changed || recovered_any {
            epochs.persist()?;
        }
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            high_watermark: log_end_offset,
            recovery_point: log_end_offset,
            producers: ProducerStateManager::new(),
            epochs,
            cleaner_offset: log_start_offset,
            delete_horizon_ms: None,
            snapshot_offset: None,
            damaged,
        };
        for range in &log.damaged {
            damage::report(dir, range, "below the recovery point");
        }
        if log.config.direct_appends {
            log.active_mut().enable_direct_appends()?;
        }
        log.forget_damage_below_log_start()?;
        log.persist_damaged_segments()?;
        delete_snapshots_after(dir, log_end_offset)?;
        // What the transaction indexes may lack: everything not known durable, and the
        // segments whose index is damaged or whose compaction swap was completed here.
        let txn_trusted_below = match last_shutdown {
            LastShutdown::Clean => log_end_offset,
            LastShutdown::Unclean => recovery_point,
        };
        let txn_trusted_below = swapped
            .iter()
            .chain(&damaged_txn_indexes)
            .fold(txn_trusted_below, |below, &base| below.min(base))
            .max(first_base);
        log.rebuild_producer_state(txn_trusted_below)?;
        Ok(log)
    }

    /// Loads the newest valid producer snapshot at or below both the log end offset and
    /// `txn_trusted_below` (the transaction indexes are trusted only below it) and replays the
    /// batches after it (from the log start when there is none): data batches by their
    /// header, markers read whole. Every transaction-index entry of a marker the replay passes
    /// is rebuilt from it (Kafka rebuilds the index in `LogSegment.recover`); files that differ
    /// are rewritten and fsynced. Ends with the unreplicated transactions below the high
    /// watermark and log start offset forgotten.
    pub(super) fn rebuild_producer_state(
        &mut self,
        txn_trusted_below: i64,
    ) -> Result<(), LogError> {
        let log_end_offset = self.log_end_offset();
        let loaded = load_newest_snapshot(&self.dir, 0, log_end_offset.min(txn_trusted_below))?;
        self.snapshot_offset = loaded.as_ref().map(|(offset, _)| *offset);
        let (from, state) = loaded.unwrap_or_else(|| (i64::MIN, ProducerStateManager::new()));
        self.producers = state;
        let mut changed_any = false;
        for segment in self.segments.iter_mut().filter(|s| s.next_offset() > from) {
            let mut entries: Vec<AbortedTxn> = segment
                .aborted_txns()
                .iter()
                .filter(|entry| entry.last_offset < from)
                .copied()
                .collect();
            replay_segment(segment, from, &mut self.producers, &mut entries)?;
            if segment.replace_txn_index(entries)? {
                tracing::info!(
                    path = %segment.txn_index_path().display(),
                    entries = segment.aborted_txns().len(),
                    "rebuilt the transaction index from the log"
                );
                changed_any = true;
            }
        }
        if changed_any {
            sync_dir(&self.dir)?;
        }
        self.producers
            .on_log_start_offset_incremented(self.log_start_offset);
        self.producers
            .on_high_watermark_updated(self.high_watermark);
        Ok(())
    }
}

/// The state of [`PartitionLog::open_at`] while it loads segments, oldest first.
struct Loader<'a> {
    dir: &'a Path,
    config: &'a LogConfig,
    recovery_point: i64,
    last_shutdown: LastShutdown,
    /// Segments listed in `damaged-segments`: scanned with CRC checks, never trusted.
    suspects: Vec<i64>,
    epochs: LeaderEpochCache,
    segments: Vec<Segment>,
    damaged: Vec<DamagedRange>,
    recovered_any: bool,
    removed_any: bool,
}

/// Replays the batches of `segment` from the one holding `from` into `producers`, adding the
/// transaction-index entry of every ABORT that ends a transaction to `entries`. A marker that
/// does not decode is reported and passed over (it ends nothing, as a marker the cleaner
/// emptied).
fn replay_segment(
    segment: &Segment,
    from: i64,
    producers: &mut ProducerStateManager,
    entries: &mut Vec<AbortedTxn>,
) -> Result<(), LogError> {
    let Some((mut position, _)) = segment.translate_offset(from.max(segment.base_offset()))? else {
        return Ok(());
    };
    while position < segment.size_bytes() {
        let header = segment.read_header(position, segment.size_bytes())?;
        if header.is_control() && header.has_producer_id() && header.records_count > 0 {
            let bytes = segment.read_batch(position, &header)?;
            match ControlRecord::decode_batch(&bytes) {
                Ok(marker) => {
                    let completed = producers.update_marker(&header, &marker);
                    if let Some(completed) = completed.filter(|c| c.is_aborted) {
                        entries.push(AbortedTxn::of(&completed));
                    }
                }
                Err(error) => tracing::warn!(
                    path = %segment.log_path().display(),
                    offset = header.base_offset,
                    %error,
                    "ignoring a transaction marker that does not decode"
                ),
            }
        } else {
            producers.update(&header);
        }
        position += header.size_bytes() as u64;
    }
    Ok(())
}

impl Loader<'_> {
    /// Reads every loaded segment's transaction index; returns the base offsets of those found
    /// damaged (reported at WARN), which the replay rebuilds.
    fn load_txn_indexes(&mut self) -> Result<Vec<i64>, LogError> {
        let mut damaged = Vec::new();
        for segment in &mut self.segments {
            if let Err(reason) = segment.load_txn_index()? {
                tracing::warn!(
                    path = %segment.txn_index_path().display(),
                    reason,
                    "transaction index is damaged; rebuilding it from the log"
                );
                damaged.push(segment.base_offset());
            }
        }
        Ok(damaged)
    }

    /// Loads (or scans) the segment at `base_offset`; `next_base` is the next segment's base
    /// offset, `later` the bases of every later segment. Returns false when recovery cut the
    /// log here (a bad tail at or above the recovery point): the later segments are deleted.
    fn load_segment(
        &mut self,
        base_offset: i64,
        next_base: Option<i64>,
        later: &[i64],
    ) -> Result<bool, LogError> {
        let holds_unflushed = next_base.is_none_or(|next| next > self.recovery_point);
        let previous_next = self.segments.last().map(Segment::next_offset);
        if !holds_unflushed && !self.suspects.contains(&base_offset) {
            let interval = self.config.index_interval_bytes;
            let loaded = Segment::load(self.dir, base_offset, interval)?
                .filter(|s| previous_next.is_none_or(|next| s.base_offset() >= next));
            if let Some(segment) = loaded {
                self.segments.push(segment);
                return Ok(true);
            }
            tracing::warn!(dir = %self.dir.display(), base_offset, "segment indexes missing or inconsistent; rebuilding by scanning the log");
        }
        let is_last = next_base.is_none();
        let epochs = &mut self.epochs;
        let on_batch = |header: &runnel_protocol::record_batch::BatchHeader| {
            epochs.assign(header.partition_leader_epoch, header.base_offset);
        };
        let previous_last = previous_next.map(|next| next - 1);
        let interval = self.config.index_interval_bytes;
        let (mut segment, failure) = if self.suspects.contains(&base_offset) {
            Segment::scan(self.dir, base_offset, previous_last, interval, on_batch)?
        } else {
            let trusted_below = match self.last_shutdown {
                LastShutdown::Clean if is_last => i64::MAX,
                _ => self.recovery_point,
            };
            let dir = self.dir;
            Segment::scan_from_index(
                dir,
                base_offset,
                previous_last,
                interval,
                trusted_below,
                on_batch,
            )?
        };
        let Some(cut) = failure else {
            // The active segment is scanned even after a clean shutdown; finding it intact
            // and wholly below the recovery point changes nothing on disk, so it needs no
            // fsync and no rewritten checkpoints.
            let verified_clean = is_last && segment.next_offset() <= self.recovery_point;
            self.recovered_any |= !verified_clean;
            if is_last {
                // No stale entries may stay for the next recovery to resume from.
                segment.write_index_files_if_stale()?;
            } else {
                segment.seal()?;
            }
            self.segments.push(segment);
            return Ok(true);
        };
        self.recovered_any = true;
        let damaged_from = segment
            .next_offset()
            .max(previous_next.unwrap_or(base_offset));
        if let Some(next_base) = next_base.filter(|_| damaged_from < self.recovery_point) {
            self.isolate_damage(segment, damaged_from, next_base, cut);
            return Ok(true);
        }
        segment.truncate_file_to_size()?;
        segment.write_index_files_if_stale()?;
        tracing::warn!(
            path = %segment.log_path().display(),
            position = cut.position,
            bytes_dropped = cut.bytes_dropped,
            reason = %cut.reason,
            later_segments_deleted = later.len(),
            "truncated log at the first invalid batch"
        );
        for &base in later {
            Segment::delete_files(self.dir, base)?;
            self.removed_any = true;
        }
        self.segments.push(segment);
        Ok(false)
    }

    /// Keeps a sealed segment damaged below the recovery point as it is on disk (its valid
    /// prefix served, no index written so the next open finds the damage again) and records
    /// the range it loses, up to the next segment's base offset.
    fn isolate_damage(
        &mut self,
        segment: Segment,
        damaged_from: i64,
        next_base: i64,
        cut: Truncation,
    ) {
        self.damaged.push(DamagedRange {
            start_offset: damaged_from,
            end_offset: next_base.max(damaged_from + 1),
            segment_base_offset: segment.base_offset(),
            position: cut.position,
            bytes: cut.bytes_dropped,
            reason: format!("at position {}: {}", cut.position, cut.reason),
        });
        self.segments.push(segment);
    }

    /// After the last segment: an empty log gets its first segment, an empty last segment
    /// overlapping its predecessor is dropped, and what recovery changed is made durable.
    fn finish_segments(&mut self, log_start_offset: i64) -> Result<(), LogError> {
        let dir = self.dir;
        let segments = &mut self.segments;
        // An empty directory (a new partition) gets its first segment without a directory
        // fsync: an empty log lost in a crash is recreated the same by the next open, and the
        // first flush with data fsyncs the directory (`dir_entry_synced` stays false).
        let created_empty = segments.is_empty();
        if created_empty {
            segments.push(Segment::create(dir, log_start_offset.max(0))?);
        }
        // A last segment left empty by recovery and overlapping its predecessor is dropped so
        // the log end offset stays the predecessor's.
        while segments.len() > 1
            && segments[segments.len() - 1].is_empty()
            && segments[segments.len() - 1].base_offset()
                < segments[segments.len() - 2].next_offset()
        {
            if let Some(segment) = segments.pop() {
                segment.retire();
                Segment::delete_files(dir, segment.base_offset())?;
                self.removed_any = true;
            }
        }
        if self.recovered_any {
            for segment in segments
                .iter()
                .filter(|s| s.next_offset() > self.recovery_point && !s.is_empty())
            {
                segment
                    .file()?
                    .sync_data()
                    .map_err(LogError::io("fsync", segment.log_path()))?;
            }
        }
        if self.removed_any {
            sync_dir(dir)?;
        }
        for segment in segments.iter_mut() {
            segment.dir_entry_synced = !created_empty;
        }
        Ok(())
    }
}

/// Finishes every interrupted segment swap of a compaction: deletes the segments a
/// `<base>.log.swap` replaces and renames it to `<base>.log`. The replaced segment's
/// `.txnindex` is kept (it describes the cleaned segment too; see `compaction.rs`) and rebuilt
/// by the replay: returns the swapped base offsets.
fn complete_swaps(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut swaps = Vec::new();
    let mut logs = Vec::new();
    for entry in fs::read_dir(dir).map_err(LogError::io("list", dir))? {
        let entry = entry.map_err(LogError::io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = name.strip_suffix(SWAP_SUFFIX).and_then(parse_base_offset) {
            swaps.push(base);
        } else if let Some(base) = name.strip_suffix(LOG_SUFFIX).and_then(parse_base_offset) {
            logs.push(base);
        }
    }
    if swaps.is_empty() {
        return Ok(swaps);
    }
    for &base in &swaps {
        let swap_path = segment_file_path(dir, base, SWAP_SUFFIX);
        let next_offset = swap_next_offset(&swap_path, base)?;
        for &old in logs
            .iter()
            .filter(|&&old| old > base && old < next_offset.max(base + 1))
        {
            Segment::delete_files(dir, old)?;
        }
        // The replaced segment at the same base, or its stale index files if only they were
        // left behind.
        Segment::delete_log_and_indexes(dir, base)?;
        let log_path = segment_file_path(dir, base, LOG_SUFFIX);
        fs::rename(&swap_path, &log_path).map_err(LogError::io("rename", &swap_path))?;
        tracing::warn!(path = %log_path.display(), "completed an interrupted compaction swap");
    }
    sync_dir(dir)?;
    Ok(swaps)
}

/// The offset after the last whole batch of a swap file (its base when it holds none). The
/// swap was fsynced before it got its name; the scan after this one checks CRCs.
fn swap_next_offset(path: &Path, base: i64) -> Result<i64, LogError> {
    use runnel_protocol::record_batch::{BatchHeader, BATCH_HEADER_SIZE};
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(path).map_err(LogError::io("open", path))?;
    let len = file.metadata().map_err(LogError::io("stat", path))?.len();
    let mut position = 0u64;
    let mut next_offset = base;
    let mut bytes = [0u8; BATCH_HEADER_SIZE];
    while position + BATCH_HEADER_SIZE as u64 <= len {
        file.read_exact_at(&mut bytes, position)
            .map_err(LogError::io("read", path))?;
        let Ok(header) = BatchHeader::parse(&bytes) else {
            break;
        };
        if position + header.size_bytes() as u64 > len {
            break;
        }
        next_offset = next_offset.max(header.last_offset() + 1);
        position += header.size_bytes() as u64;
    }
    Ok(next_offset)
}

/// Lists segment base offsets, removing temp files and orphan index files.
fn scan_directory(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(LogError::io("list", dir))? {
        let entry = entry.map_err(LogError::io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if [TEMP_SUFFIX, ".deleted", ".cleaned"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
        {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing leftover temporary file");
            fs::remove_file(&path).map_err(LogError::io("remove", &path))?;
            continue;
        }
        if let Some(base) = name.strip_suffix(LOG_SUFFIX).and_then(parse_base_offset) {
            logs.push(base);
        } else if let Some(base) = name
            .strip_suffix(INDEX_SUFFIX)
            .or_else(|| name.strip_suffix(TIME_INDEX_SUFFIX))
            .or_else(|| name.strip_suffix(TXN_INDEX_SUFFIX))
            .and_then(parse_base_offset)
        {
            indexes.push((base, entry.path()));
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            fs::remove_file(&path).map_err(LogError::io("remove", &path))?;
        }
    }
    Ok(logs)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
