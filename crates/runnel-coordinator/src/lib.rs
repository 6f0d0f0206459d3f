//! Runnel's group and transaction coordinators: Kafka's classic consumer-group protocol and
//! Kafka's transactions as I/O-free state machines (DESIGN.md §1, Kafka's `CoordinatorRuntime`
//! shape).
//!
//! # Layout
//! - [`record`]: the `__consumer_offsets` records (Kafka's on-disk schemas), byte by byte.
//! - [`request`]: the events the coordinator takes and the results it gives, in protocol-neutral
//!   terms (the broker's API handlers translate to and from the wire, per version).
//! - [`group`]: one group: its state (Empty, PreparingRebalance, CompletingRebalance, Stable,
//!   Dead), members, generation, leader and committed offsets.
//! - [`coordinator`]: [`Coordinator`], the groups of one `__consumer_offsets` partition: it takes
//!   a request (with an opaque reply handle) or a timer tick at an explicit `now_ms`, and returns
//!   [`Output`]: the records to append and the replies to send once they are durable. JoinGroup
//!   and SyncGroup replies are held inside until their rebalance completes.
//!
//! - [`transaction`]: the transaction coordinator over `__transaction_state`: its records
//!   (Kafka's schemas), one transactional id's state and transitions, and
//!   [`transaction::TxnCoordinator`], which takes InitProducerId, AddPartitionsToTxn (and its
//!   KIP-890 verification), AddOffsetsToTxn, EndTxn (v1 and v2), marker completions and timer
//!   ticks, and returns records, replies and the transaction markers for the driver to write.
//!
//! - [`consumer_lag`]: the one definition of a group's lag, shared by the broker (console,
//!   `/metrics`) and `runnel group describe`; [`assignment`] decodes the consumer protocol's
//!   member assignments both read.
//!
//! Nothing here sleeps, reads a clock or does I/O: the broker's driver owns the task, the timer
//! (it sleeps until [`Coordinator::next_deadline_ms`]) and the log. Unit tests drive time by hand.

pub mod assignment;
pub mod config;
pub mod consumer_lag;
pub mod coordinator;
pub mod group;
pub mod record;
pub mod request;
pub mod transaction;

pub use config::GroupConfig;
pub use coordinator::{Coordinator, Output, OutputBatch};
pub use record::{CoordinatorRecord, RecordError};

/// The `__consumer_offsets` partition that owns `group_id`: Kafka's
/// `Utils.abs(groupId.hashCode) % offsets.topic.num.partitions`, with Java's `String.hashCode`
/// over UTF-16 code units and `Utils.abs(n) = n & 0x7fffffff`.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(
        partitions > 0,
        "offsets.topic.num.partitions must be positive"
    );
    let hash = group_id.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(unit as i32)
    });
    (hash & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    #[test]
    fn partitions_match_kafkas_hash() {
        // Java: "my-group".hashCode() == -1_906_497_762; & 0x7fffffff == 240_985_886.
        assert_eq!(partition_for("my-group", 50), 36);
        // Java: "".hashCode() == 0.
        assert_eq!(partition_for("", 50), 0);
        // A negative Java hash: "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        for partitions in 1..60 {
            assert!((0..partitions).contains(&partition_for("x-y-z", partitions)));
        }
    }
}
