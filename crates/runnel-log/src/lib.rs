//! Runnel's storage engine: Kafka's on-disk layout for partition logs.
//!
//! # What it owns
//! - [`PartitionLog`]: the segments of one partition directory, with log start offset, log end
//!   offset, high watermark and recovery point; append, read, roll, truncate, recover, flush,
//!   retention and compaction (`partition_log/compaction.rs`: `.cleaned` / `.swap` files).
//! - [`Segment`]: `<base>.log` + `<base>.index` + `<base>.timeindex` (see `segment.rs`).
//! - Direct appends (`direct_io.rs`): the active segment's new bytes gathered in pooled,
//!   block-aligned buffers and written with `O_DIRECT`, when every append is fsync'd anyway.
//! - The process-wide bound on open segment files (`open_files.rs`): segments hold no file
//!   descriptor of their own, so the partition count never decides how many are open.
//! - Idempotent and transactional producer state and its snapshots (`producer_state.rs`):
//!   ongoing transactions, the first unstable and last stable offsets; the per-segment
//!   transaction index of aborted transactions (`segment/txn_index.rs`). The leader-epoch
//!   cache (`leader_epoch.rs`), Kafka's offset checkpoint files (`checkpoint.rs`), a log
//!   directory's clean-shutdown marker (`clean_shutdown.rs`).
//! - The recovery rule of single-writer logs (the metadata logs, `strict_scan.rs`): reading one
//!   before it is opened and telling the torn tail of an unfinished write from damage.
//!
//! It knows nothing of the network, groups or the cluster.
//!
//! # Layout of a partition directory `<topic>-<partition>/`
//! ```text
//! 00000000000000000000.log        record batches v2, exactly as on the wire     (segment.rs)
//! 00000000000000000000.index      8-byte entries: relative offset, position      (segment.rs)
//! 00000000000000000000.timeindex  12-byte entries: timestamp, relative offset    (segment.rs)
//! 00000000000000000000.txnindex   34-byte aborted transactions, if any (segment/txn_index.rs)
//! 00000000000000001234.snapshot   producer state at offset 1234 (last 2 kept)    (producer_state.rs)
//! leader-epoch-checkpoint         text: 0, count, "epoch startOffset" lines      (leader_epoch.rs)
//! ```
//! The data directory also holds `recovery-point-offset-checkpoint` and
//! `log-start-offset-checkpoint` (text: 0, count, "topic partition offset" lines;
//! `checkpoint.rs`), written by the broker, and after an orderly shutdown
//! `.kafka_cleanshutdown` (`clean_shutdown.rs`).
//!
//! # Crash policy
//! Appends go to the page cache, or in direct mode to the active segment's tail, written out
//! with `O_DIRECT` when the flusher prepares its fsync; the broker's flusher fsyncs ([`PartitionLog::flush_target`],
//! [`FlushTarget::sync`], [`PartitionLog::mark_flushed`]) and records the recovery point. On
//! open, everything at or above the recovery point (and always the active segment) is scanned
//! with CRC and continuity checks and truncated at the first bad batch; later segments are
//! deleted. The scan starts at the last index entry below the recovery point (after a clean
//! shutdown: the active segment's last index entry), so its work is bounded by what was
//! appended since (`segment/resume.rs`). Damage below the recovery point is not a crash: it
//! is kept on disk, reported and refused to readers as a damaged range (`partition_log/damage.rs`); [`scrub`] re-verifies
//! sealed segments in the background. Indexes, producer snapshots and the leader-epoch checkpoint are caches of what the
//! batches say: checked on load and rebuilt from the log when in doubt (a transaction index
//! is trusted below the recovery point like the log, and rebuilt above it;
//! `segment/txn_index.rs`). Checkpoints and
//! snapshots are written atomically (temp file, fsync, rename, fsync directory; the snapshot a
//! close writes leaves out the directory fsync: a name lost in a crash leaves the older
//! snapshots, which replay to the same state).

pub mod checkpoint;
pub mod clean_shutdown;
pub mod config;
pub mod direct_io;
pub mod error;
pub mod leader_epoch;
pub mod open_files;
pub mod partition_log;
pub mod producer_state;
pub mod scrub;
pub mod segment;
pub mod strict_scan;

pub use checkpoint::{read_offset_checkpoint, write_offset_checkpoint};
pub use clean_shutdown::{LastShutdown, CLEAN_SHUTDOWN_FILE};
pub use config::LogConfig;
pub use error::{AppendError, LogError, ReadError};
pub use leader_epoch::LeaderEpochCache;
pub use open_files::{OpenFiles, OpenFilesStats, SegmentFile};
pub use partition_log::{
    AppendOutcome, CompactedSegments, CompactionOutcome, CompactionPlan, CompactionPolicy,
    DamagedRange, FlushTarget, PartitionLog, ReadSlice, RetentionPolicy, DAMAGED_SEGMENTS_FILE,
    LEGACY_TRANSACTION_VERSION,
};
pub use producer_state::{CompletedTxn, OngoingTxn, ProducerStateManager, TxnMarker};
pub use segment::{AbortedTxn, Segment};

/// File name of the recovery point checkpoint in a data directory.
pub const RECOVERY_POINT_CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";
/// File name of the log start offset checkpoint in a data directory.
pub const LOG_START_OFFSET_CHECKPOINT_FILE: &str = "log-start-offset-checkpoint";
/// File name of the cleaner offset checkpoint in a data directory (Kafka's name).
pub const CLEANER_OFFSET_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// Splits a partition directory name `<topic>-<partition>` at the last '-'.
/// `None` when there is no '-', the topic is empty or the partition is not a non-negative i32.
pub fn parse_partition_dir_name(name: &str) -> Option<(String, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    if topic.is_empty() || partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((topic.to_string(), partition.parse().ok()?))
}

/// The directory name of a partition: `<topic>-<partition>`.
pub fn partition_dir_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dir_names_round_trip_and_split_at_the_last_dash() {
        assert_eq!(partition_dir_name("my-topic", 3), "my-topic-3");
        assert_eq!(
            parse_partition_dir_name("my-topic-3"),
            Some(("my-topic".to_string(), 3))
        );
        assert_eq!(
            parse_partition_dir_name("__consumer_offsets-49"),
            Some(("__consumer_offsets".to_string(), 49))
        );
        for bad in ["topic", "-3", "topic-", "topic-x", "topic-99999999999"] {
            assert_eq!(parse_partition_dir_name(bad), None, "{bad}");
        }
    }
}
