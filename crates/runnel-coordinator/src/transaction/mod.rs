//! Runnel's transaction coordinator: Kafka's exactly-once transactions (including transactions
//! v2, KIP-890) as an I/O-free state machine over `__transaction_state` (DESIGN.md §1, Kafka's
//! `CoordinatorRuntime` shape, like the group coordinator beside it).
//!
//! It owns, per transactional id: the producer id and epoch (and the ones before, for fencing
//! and KIP-360 recovery), the transaction's state, partitions, timeout and timestamps, and the
//! client's transaction version. It does not own the markers' bytes, the partitions' producer
//! state, or the offsets a transaction commits: it asks the driver to write markers and hears
//! when they are written.
//!
//! - [`record`]: the `__transaction_state` records, byte by byte (Kafka's schemas).
//! - [`state`]: one transactional id ([`TxnMetadata`]) and Kafka's state transitions.
//! - [`request`]: the requests and answers in protocol-neutral terms, and the error codes.
//! - [`config`]: Kafka's transaction settings and defaults.
//! - [`coordinator`]: [`TxnCoordinator`], one partition's transactional ids: requests, marker
//!   completions and timer ticks in, [`TxnOutput`] (records, replies, markers to write) out.

pub mod config;
pub mod coordinator;
pub mod record;
pub mod request;
pub mod state;

#[cfg(test)]
mod tests;

pub use config::TxnConfig;
pub use coordinator::{ProducerIdAllocator, TxnCoordinator, TxnOutput, WriteMarkers};
pub use record::{TxnRecord, TxnRecordError, TxnValue};
pub use request::{TxnErrorCode, TxnRequest, TxnResponse, TxnResult};
pub use state::{TxnMetadata, TxnState, TxnVersion};

/// Kafka's internal topic of transaction records.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Kafka's internal topic of group records, whose partitions join transactions that commit
/// offsets (AddOffsetsToTxn).
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The `__transaction_state` partition that owns `transactional_id`: Kafka's
/// `Utils.abs(transactionalId.hashCode) % transaction.state.log.num.partitions`, the same hash
/// as [`crate::partition_for`] for groups.
pub fn partition_for_transactional_id(transactional_id: &str, partitions: i32) -> i32 {
    crate::partition_for(transactional_id, partitions)
}
