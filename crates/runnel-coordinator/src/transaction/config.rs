//! The transaction coordinator's limits and timings, with Kafka's names and defaults.

use super::state::TxnVersion;

/// Kafka's transaction settings, as the broker reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask for.
    pub transaction_timeout_ms_max: i32,
    /// `transactional.id.expiration.ms`: how long an idle transactional id is kept.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often open
    /// transactions are checked against their timeout.
    pub abort_timed_out_transaction_cleanup_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`: how often idle
    /// transactional ids are checked against `transactional.id.expiration.ms`.
    pub remove_expired_transaction_cleanup_interval_ms: i64,
    /// The partition count of `__transaction_state` as it exists
    /// (`transaction.state.log.num.partitions` when it was created).
    pub transaction_state_partitions: i32,
    /// The partition count of `__consumer_offsets` as it exists (`offsets.topic.num.partitions`
    /// when it was created): AddOffsetsToTxn adds the group's partition of it.
    pub offsets_topic_partitions: i32,
    /// The cluster's finalized `transaction.version` feature: what the coordinator's own aborts
    /// (fencing, timeouts) use, and which `__transaction_state` value version it writes.
    pub transaction_version: TxnVersion,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            transaction_timeout_ms_max: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            remove_expired_transaction_cleanup_interval_ms: 3_600_000,
            transaction_state_partitions: 50,
            offsets_topic_partitions: 50,
            transaction_version: TxnVersion::V2,
        }
    }
}
