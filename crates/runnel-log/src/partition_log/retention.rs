//! Retention and log start offset moves: deleting whole segments from the front of the log.
//!
//! Kafka's rules: a segment is deleted by time when its largest timestamp is older than
//! `retention.ms`, by size while removing it keeps the partition at or above
//! `retention.bytes`; only segments wholly below the high watermark are candidates, and
//! deletion stops at the first segment that is kept. An expired active segment is rolled
//! first, so an idle topic's data does expire; the log always keeps one (possibly empty)
//! segment and its offsets continue. DeleteRecords moves the log start offset to any offset up
//! to the high watermark and deletes the segments wholly below it. A segment goes with its
//! `.txnindex`. The producer state keeps its entries (Kafka's rule: producer ids outlive their
//! batches' segments) and forgets completed transactions whose markers fall below the new log
//! start offset; an ongoing transaction that began below it holds the first unstable offset at
//! the log start offset.
//!
//! Crash safety: the log start offset is persisted by the broker in
//! `log-start-offset-checkpoint`; segment files are unlinked after the in-memory log stops
//! referring to them, so a crash in between leaves extra whole segments below the checkpointed
//! log start offset, which the next retention pass deletes again. Readers holding a segment's
//! file keep reading it after the unlink (Unix semantics).

use super::PartitionLog;
use crate::checkpoint::sync_dir;
use crate::error::LogError;
use crate::segment::Segment;

/// How long and how much a partition keeps. Negative values mean unlimited, as in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// `retention.ms`.
    pub retention_ms: i64,
    /// `retention.bytes`.
    pub retention_bytes: i64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        // Kafka's defaults: 7 days, unlimited size.
        RetentionPolicy {
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
        }
    }
}

impl PartitionLog {
    /// Deletes the segments past `policy` at `now_ms`; returns how many were deleted.
    pub fn apply_retention(
        &mut self,
        policy: &RetentionPolicy,
        now_ms: i64,
    ) -> Result<usize, LogError> {
        let mut count = self.expired_by_time(policy.retention_ms, now_ms);
        count = self.beyond_size(policy.retention_bytes, count);
        if count == 0 {
            return Ok(0);
        }
        if count == self.segments.len() {
            // Everything, the active segment included, is past retention: roll so that an
            // empty active segment remains and offsets continue.
            self.roll()?;
        }
        self.delete_leading_segments(count)?;
        Ok(count)
    }

    /// Moves the log start offset to `offset` (at most the high watermark) and deletes the
    /// segments wholly below it. Returns the new log start offset.
    pub fn advance_log_start_offset(&mut self, offset: i64) -> Result<i64, LogError> {
        let offset = offset.min(self.high_watermark);
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        self.producers.on_log_start_offset_incremented(offset);
        self.forget_damage_below_log_start()?;
        if self.active().next_offset() <= offset && !self.active().is_empty() {
            self.roll()?;
        }
        let count = self
            .segments
            .iter()
            .take_while(|s| s.next_offset() <= offset)
            .count();
        self.delete_leading_segments(count.min(self.segments.len() - 1))?;
        Ok(self.log_start_offset)
    }

    /// Leading segments (below the high watermark, with data) whose largest timestamp is older
    /// than `retention_ms`.
    fn expired_by_time(&self, retention_ms: i64, now_ms: i64) -> usize {
        if retention_ms < 0 {
            return 0;
        }
        self.deletable()
            .take_while(|segment| now_ms.saturating_sub(segment.max_timestamp().0) > retention_ms)
            .count()
    }

    /// Extends `count` while deleting the next segment keeps the log at or above
    /// `retention_bytes`.
    fn beyond_size(&self, retention_bytes: i64, mut count: usize) -> usize {
        if retention_bytes < 0 {
            return count;
        }
        let deleted: u64 = self.segments[..count].iter().map(Segment::size_bytes).sum();
        let mut remaining = self.size_bytes() - deleted;
        for segment in self.deletable().skip(count) {
            let after = remaining - segment.size_bytes();
            if after < retention_bytes as u64 {
                break;
            }
            remaining = after;
            count += 1;
        }
        count
    }

    /// Segments from the front wholly below the high watermark, holding data or not active
    /// (compaction may leave the first segment empty).
    fn deletable(&self) -> impl Iterator<Item = &Segment> {
        let high_watermark = self.high_watermark;
        let active = self.segments.len() - 1;
        self.segments
            .iter()
            .enumerate()
            .take_while(move |(i, s)| {
                (*i < active || !s.is_empty()) && s.next_offset() <= high_watermark
            })
            .map(|(_, s)| s)
    }

    fn delete_leading_segments(&mut self, count: usize) -> Result<(), LogError> {
        assert!(
            count < self.segments.len(),
            "the active segment is never deleted"
        );
        if count == 0 {
            return Ok(());
        }
        let removed: Vec<Segment> = self.segments.drain(..count).collect();
        let first_base = self.segments[0].base_offset();
        self.log_start_offset = self.log_start_offset.max(first_base);
        self.high_watermark = self.high_watermark.max(self.log_start_offset);
        self.recovery_point = self.recovery_point.max(self.log_start_offset);
        self.producers
            .on_log_start_offset_incremented(self.log_start_offset);
        self.producers
            .on_high_watermark_updated(self.high_watermark);
        for segment in &removed {
            segment.retire();
            Segment::delete_files(&self.dir, segment.base_offset())?;
        }
        self.forget_damage_below_log_start()?;
        tracing::info!(
            dir = %self.dir.display(),
            segments = removed.len(),
            log_start_offset = self.log_start_offset,
            "deleted segments below the log start offset"
        );
        sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(timestamp: i64) -> Vec<u8> {
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp,
            key: None,
            value: Some(bytes::Bytes::from(vec![7u8; 100])),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, std::iter::once(&record), &options).expect("encode");
        buf.to_vec()
    }

    fn log_with(dir: &std::path::Path, timestamps: &[i64]) -> PartitionLog {
        // Small segments: about two batches each.
        let config = LogConfig {
            segment_bytes: 400,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir, config, 0).expect("open");
        for &timestamp in timestamps {
            log.append(&mut batch(timestamp), 0, timestamp)
                .expect("append");
        }
        let end = log.log_end_offset();
        log.set_high_watermark(end);
        log
    }

    fn first_offsets(log: &PartitionLog) -> Vec<i64> {
        let mut offsets = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let slice = log
                .read(offset, 1 << 20, log.high_watermark(), true)
                .expect("read");
            offsets.push(slice.base_offset);
            offset = slice.next_offset;
        }
        offsets
    }

    #[test]
    fn time_retention_deletes_old_segments_and_an_idle_active_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = log_with(dir.path(), &[1_000, 2_000, 3_000, 4_000, 5_000, 6_000]);
        assert!(log.segment_count() >= 3);
        let policy = RetentionPolicy {
            retention_ms: 2_500,
            retention_bytes: -1,
        };
        // At 6,000 the segments whose newest record is before 3,500 go.
        log.apply_retention(&policy, 6_000).expect("retention");
        assert!(log.log_start_offset() >= 2, "{}", log.log_start_offset());
        assert_eq!(log.log_end_offset(), 6);
        // Much later everything expires; the offsets continue from the old end.
        log.apply_retention(&policy, 100_000).expect("retention");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (6, 6));
        assert_eq!(log.segment_count(), 1);
        let outcome = log.append(&mut batch(100_000), 0, 100_000).expect("append");
        assert_eq!(outcome.base_offset, 6);
        // Reads below the log start are out of range.
        assert!(log.read(0, 1 << 20, 7, true).is_err());
    }

    #[test]
    fn size_retention_keeps_at_least_retention_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = log_with(dir.path(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        let before = log.size_bytes();
        let policy = RetentionPolicy {
            retention_ms: -1,
            retention_bytes: (before / 2) as i64,
        };
        let deleted = log.apply_retention(&policy, 10).expect("retention");
        assert!(deleted > 0);
        assert!(log.size_bytes() >= before / 2);
        assert_eq!(
            first_offsets(&log).first().copied(),
            Some(log.log_start_offset())
        );
    }

    #[test]
    fn nothing_above_the_high_watermark_is_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = log_with(dir.path(), &[1, 2, 3, 4]);
        log.set_high_watermark(0);
        let policy = RetentionPolicy {
            retention_ms: 0,
            retention_bytes: 0,
        };
        assert_eq!(
            log.apply_retention(&policy, 1_000_000).expect("retention"),
            0
        );
        assert_eq!(log.log_start_offset(), 0);
    }

    #[test]
    fn advancing_the_log_start_offset_deletes_segments_wholly_below_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = log_with(dir.path(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(log.advance_log_start_offset(3).expect("advance"), 3);
        assert!(log.segment_base_offsets()[0] <= 3);
        assert!(log.read(2, 1 << 20, 6, true).is_err());
        assert!(log.read(3, 1 << 20, 6, true).is_ok());
        // Never past the high watermark, never backwards.
        assert_eq!(log.advance_log_start_offset(99).expect("advance"), 6);
        assert_eq!(log.advance_log_start_offset(1).expect("advance"), 6);
        assert_eq!(log.log_end_offset(), 6);
        // Reopened with the checkpointed log start, it stays.
        drop(log);
        let config = LogConfig {
            segment_bytes: 400,
            ..LogConfig::default()
        };
        let log = PartitionLog::open_at(dir.path(), config, 0, 6).expect("reopen");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (6, 6));
    }
}
