//! Per-partition log configuration, with Kafka's names and defaults.
//!
//! Invariant kept by users of this struct: values are positive. [`LogConfig::segment_bytes_max`]
//! clamps `segment_bytes` so that every position fits the 4-byte index field.

/// Configuration of one partition log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.segment.bytes`: a segment rolls before it would exceed this size. Default 1 GiB.
    pub segment_bytes: u64,
    /// `segment.ms` / `log.roll.ms`: a non-empty segment rolls this long after its first
    /// append. Default 7 days.
    pub segment_ms: u64,
    /// `log.index.interval.bytes`: bytes of log between two sparse index entries. Default 4096.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: a segment rolls when its offset index would exceed this size.
    /// Default 10 MiB.
    pub segment_index_bytes: u64,
    /// `cleanup.policy` includes `compact`: the cleaner may leave offset gaps between segments
    /// (it drops emptied segments and the last records of others), so a gap between one
    /// segment's next offset and the next one's base offset is not damage. Default false:
    /// in a log that is never compacted every roll starts the next segment at the previous
    /// one's next offset, and a gap below the recovery point is damage (see
    /// `partition_log/damage.rs`).
    pub compacted: bool,
    /// Direct appends (`direct_io.rs`): the active segment gathers appends in an aligned
    /// buffer written with `O_DIRECT` when a flush is prepared. For logs whose every append is
    /// fsync'd before it is acknowledged (the broker's durable mode), whose readers stay below
    /// the fsync'd offset. Default false: appends go to the page cache.
    pub direct_appends: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            compacted: false,
            direct_appends: false,
        }
    }
}

impl LogConfig {
    /// `segment_bytes`, clamped so that positions fit the 4-byte index position field.
    pub fn segment_bytes_max(&self) -> u64 {
        self.segment_bytes.clamp(1, i32::MAX as u64)
    }

    /// Most entries an offset index may hold before the segment rolls.
    pub fn offset_index_entries_max(&self) -> usize {
        (self.segment_index_bytes / crate::segment::OFFSET_INDEX_ENTRY_SIZE as u64).max(1) as usize
    }
}
