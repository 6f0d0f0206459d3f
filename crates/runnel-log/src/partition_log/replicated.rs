//! Appends on a follower: batches copied from the partition's leader, kept as the leader wrote
//! them (Kafka's `appendAsFollower`, `AppendOrigin.REPLICATION`).
//!
//! A replicated batch keeps its base offset and partition leader epoch: the follower's log is
//! then the leader's, byte for byte, which is what lets the leader's high watermark stand for
//! every in-sync replica. The leader checked the producer's sequence, the transaction rules
//! and the records; the follower checks only what protects its own log: one whole batch, a
//! valid CRC, a base offset at its log end offset and a leader epoch not below the last it
//! holds. The producer state and the leader-epoch cache are updated as the leader's were, so
//! a follower that becomes leader deduplicates and ends transactions as the old leader would.

use runnel_protocol::record_batch::{validate_batch, BatchError};

use super::{read_marker, AppendOutcome, PartitionLog};
use crate::error::AppendError;

impl PartitionLog {
    /// Appends one batch copied from the leader (see the module doc). `batch` must start at
    /// the log end offset; its leader epoch starts a new epoch in the cache when it is the
    /// first batch of that epoch here.
    pub fn append_replicated(
        &mut self,
        batch: &[u8],
        now_ms: i64,
    ) -> Result<AppendOutcome, AppendError> {
        let header = validate_batch(batch)?;
        if header.size_bytes() != batch.len() {
            return Err(AppendError::InvalidBatch(BatchError::Invalid {
                reason: "not exactly one batch",
            }));
        }
        let log_end_offset = self.log_end_offset();
        if header.base_offset != log_end_offset {
            return Err(AppendError::NotAtLogEnd {
                base_offset: header.base_offset,
                log_end_offset,
            });
        }
        if batch.len() as u64 > self.config.segment_bytes_max() {
            return Err(AppendError::RecordTooLarge {
                size_bytes: batch.len(),
                segment_bytes: self.config.segment_bytes_max(),
            });
        }
        let epoch = header.partition_leader_epoch;
        if let Some(&(latest, _)) = self.epochs.entries().last() {
            if epoch < latest {
                return Err(AppendError::InvalidBatch(BatchError::Invalid {
                    reason: "a replicated batch carries a leader epoch older than the log's",
                }));
            }
        }
        let marker = if header.is_control() && header.has_producer_id() {
            read_marker(batch, &header)?
        } else {
            None
        };
        self.write_at_log_end(batch, &header, marker.as_ref(), now_ms)
    }
}
