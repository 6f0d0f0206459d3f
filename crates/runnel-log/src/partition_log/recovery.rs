//! Opening a partition directory: loading segments, recovery after a crash, and rebuilding the
//! producer state and leader-epoch cache.
//!
//! Crash policy: data below the recovery point was fsynced and is trusted (its indexes are
//! checked and rebuilt when in doubt). Every segment holding offsets at or above the recovery
//! point, and always the active segment, is scanned batch by batch (`validate_stored_batch`: extent,
//! magic, CRC; plus offset continuity). At the first torn, corrupt or non-contiguous batch the
//! segment is truncated there (set_len + fsync), every later segment is deleted, and a WARN says
//! what was dropped. The recovered data is then fsynced, so the recovery point and the high
//! watermark start at the log end offset. An active segment that scans clean and lies wholly
//! below the recovery point (a clean shutdown) was already fsynced: nothing is rewritten.
//! Leftover temp files (`*.tmp`, `*.deleted`, `*.cleaned`) and index files without a `.log` are
//! removed. A compaction interrupted after its `<base>.log.swap` was complete is finished first:
//! the `.log` files whose base offset lies in `[swap base, swap next offset)` (the segment it
//! replaces) are deleted with their indexes and the swap is renamed to `<base>.log`; its
//! indexes are then rebuilt by the scan (see `compaction.rs`).

use std::fs;
use std::path::Path;

use super::PartitionLog;
use crate::checkpoint::{sync_dir, TEMP_SUFFIX};
use crate::config::LogConfig;
use crate::error::LogError;
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{delete_snapshots_after, load_newest_snapshot, ProducerStateManager};
use crate::segment::{
    parse_base_offset, segment_file_path, Segment, INDEX_SUFFIX, LOG_SUFFIX, SWAP_SUFFIX,
    TIME_INDEX_SUFFIX,
};

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
        fs::create_dir_all(dir).map_err(LogError::io("create directory", dir))?;
        complete_swaps(dir)?;
        let bases = scan_directory(dir)?;
        let mut epochs = LeaderEpochCache::load(dir)?;
        let mut segments: Vec<Segment> = Vec::new();
        let mut recovered_any = false;
        let mut removed_any = false;
        for (i, &base_offset) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let holds_unflushed = is_last || bases[i + 1] > recovery_point;
            let previous_next = segments.last().map(Segment::next_offset);
            let mut loaded = None;
            if !holds_unflushed {
                loaded = Segment::load(dir, base_offset, config.index_interval_bytes)?
                    .filter(|s| previous_next.is_none_or(|next| s.base_offset() >= next));
                if loaded.is_none() {
                    tracing::warn!(dir = %dir.display(), base_offset, "segment indexes missing or inconsistent; rebuilding by scanning the log");
                }
            }
            let segment = match loaded {
                Some(segment) => segment,
                None => {
                    let previous_last = previous_next.map(|next| next - 1);
                    let (mut segment, truncation) = Segment::recover(
                        dir,
                        base_offset,
                        previous_last,
                        config.index_interval_bytes,
                        |header| {
                            epochs.assign(header.partition_leader_epoch, header.base_offset);
                        },
                    )?;
                    let stop = truncation.is_some();
                    // The active segment is scanned even after a clean shutdown; finding it
                    // intact and wholly below the recovery point changes nothing on disk, so
                    // it needs no fsync and no rewritten checkpoints.
                    let verified_clean =
                        is_last && !stop && segment.next_offset() <= recovery_point;
                    recovered_any |= !verified_clean;
                    if let Some(cut) = truncation {
                        tracing::warn!(
                            path = %segment.log_path().display(),
                            position = cut.position,
                            bytes_dropped = cut.bytes_dropped,
                            reason = %cut.reason,
                            later_segments_deleted = bases.len() - i - 1,
                            "truncated log at the first invalid batch"
                        );
                    }
                    if !is_last && !stop {
                        segment.seal()?;
                    }
                    if stop {
                        for &later in &bases[i + 1..] {
                            Segment::delete_files(dir, later)?;
                            removed_any = true;
                        }
                        segments.push(segment);
                        break;
                    }
                    segment
                }
            };
            segments.push(segment);
        }
        // An empty directory (a new partition) gets its first segment without a directory
        // fsync: an empty log lost in a crash is recreated the same by the next open, and the
        // first flush with data fsyncs the directory (`dir_entry_synced` stays false).
        let created_empty = segments.is_empty();
        if created_empty {
            segments.push(Segment::create(dir, log_start_offset.max(0))?);
        }
        // A last segment left empty by recovery and overlapping its predecessor is dropped so the
        // log end offset stays the predecessor's.
        while segments.len() > 1
            && segments[segments.len() - 1].is_empty()
            && segments[segments.len() - 1].base_offset()
                < segments[segments.len() - 2].next_offset()
        {
            if let Some(segment) = segments.pop() {
                segment.retire();
                Segment::delete_files(dir, segment.base_offset())?;
                removed_any = true;
            }
        }
        let log_end_offset = segments.last().map_or(0, Segment::next_offset);
        if recovered_any {
            for segment in segments
                .iter()
                .filter(|s| s.next_offset() > recovery_point && !s.is_empty())
            {
                segment
                    .file()?
                    .sync_data()
                    .map_err(LogError::io("fsync", segment.log_path()))?;
            }
        }
        if removed_any {
            sync_dir(dir)?;
        }
        for segment in &mut segments {
            segment.dir_entry_synced = !created_empty;
        }
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
            tombstone_horizon_ms: None,
            snapshot_offset: None,
        };
        delete_snapshots_after(dir, log_end_offset)?;
        log.rebuild_producer_state()?;
        Ok(log)
    }

    /// Loads the newest valid producer snapshot at or below the log end offset and replays the
    /// batch headers after it (from the log start when there is none).
    pub(super) fn rebuild_producer_state(&mut self) -> Result<(), LogError> {
        let log_end_offset = self.log_end_offset();
        let loaded = load_newest_snapshot(&self.dir, 0, log_end_offset)?;
        self.snapshot_offset = loaded.as_ref().map(|(offset, _)| *offset);
        let (from, state) = loaded.unwrap_or_else(|| (i64::MIN, ProducerStateManager::new()));
        self.producers = state;
        for segment in self.segments.iter().filter(|s| s.next_offset() > from) {
            let producers = &mut self.producers;
            segment.for_each_header_from(from.max(segment.base_offset()), |header| {
                producers.update(header)
            })?;
        }
        Ok(())
    }
}

/// Finishes every interrupted segment swap of a compaction: deletes the segments a
/// `<base>.log.swap` replaces and renames it to `<base>.log`.
fn complete_swaps(dir: &Path) -> Result<(), LogError> {
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
        return Ok(());
    }
    for base in swaps {
        let swap_path = segment_file_path(dir, base, SWAP_SUFFIX);
        let next_offset = swap_next_offset(&swap_path, base)?;
        for &old in logs
            .iter()
            .filter(|&&old| old >= base && old < next_offset.max(base + 1))
        {
            Segment::delete_files(dir, old)?;
        }
        // The swap's own stale index files, if the old segment's were left behind.
        Segment::delete_files(dir, base)?;
        let log_path = segment_file_path(dir, base, LOG_SUFFIX);
        fs::rename(&swap_path, &log_path).map_err(LogError::io("rename", &swap_path))?;
        tracing::warn!(path = %log_path.display(), "completed an interrupted compaction swap");
    }
    sync_dir(dir)
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
