//! Transactions during a compaction pass: which transactional batches belong to aborted
//! transactions, and which transaction-index entries the cleaned segments keep (Kafka's
//! `CleanedTransactionMetadata`).
//!
//! A pass walks the log in offset order with one [`TxnTracker`], fed with every aborted
//! transaction of the log's transaction indexes whose first offset lies below the pass's end
//! (sorted by first offset). Before a batch is judged, the aborted transactions that began at
//! or before its last offset become *ongoing aborted* for their producer. Then:
//! - a transactional data batch of a producer with an ongoing aborted transaction is aborted
//!   data: the cleaner removes its records (and the offset map ignores them, so that an
//!   aborted record never hides a committed one); the transaction is marked *observed*;
//! - any other transactional data batch marks its producer's transaction as committed;
//! - an ABORT marker ends the producer's aborted transaction: its index entry is kept in the
//!   cleaned segment when a batch of it was observed in this pass (Kafka keeps it, and the
//!   marker, until a pass finds no data of the transaction); a COMMIT marker ends the
//!   committed one.
//!
//! Markers themselves are always kept. Kafka removes a marker once no data of its transaction
//! remains and `delete.retention.ms` has passed; Runnel does not remove markers (yet): a kept
//! marker costs one small batch and keeps replays of the log exact.

use std::collections::{HashMap, HashSet};

use runnel_protocol::control_record::{ControlRecord, ControlType};
use runnel_protocol::record_batch::BatchHeader;

use crate::segment::AbortedTxn;

/// The state of one pass's walk (see the module doc).
pub(super) struct TxnTracker {
    /// Aborted transactions not yet reached, by first offset.
    pending: Vec<AbortedTxn>,
    next: usize,
    /// Producer id → its ongoing aborted transaction and whether a batch of it was seen.
    aborted: HashMap<i64, (AbortedTxn, bool)>,
    committed: HashSet<i64>,
}

impl TxnTracker {
    /// A tracker for a walk from `from_offset`: the aborted transactions whose markers lie
    /// below it are over before the walk starts (Kafka collects from the walk's start too).
    pub(super) fn new(aborted: &[AbortedTxn], from_offset: i64) -> Self {
        let mut aborted: Vec<AbortedTxn> = aborted
            .iter()
            .filter(|txn| txn.last_offset >= from_offset)
            .copied()
            .collect();
        aborted.sort_by_key(|txn| (txn.first_offset, txn.last_offset));
        TxnTracker {
            pending: aborted,
            next: 0,
            aborted: HashMap::new(),
            committed: HashSet::new(),
        }
    }

    fn reach(&mut self, offset: i64) {
        while let Some(txn) = self
            .pending
            .get(self.next)
            .filter(|t| t.first_offset <= offset)
        {
            self.aborted.entry(txn.producer_id).or_insert((*txn, false));
            self.next += 1;
        }
    }

    /// Kafka's `onBatchRead`: whether a data batch is aborted data.
    pub(super) fn on_data_batch(&mut self, header: &BatchHeader) -> bool {
        self.reach(header.last_offset());
        if !header.is_transactional() {
            return false;
        }
        match self.aborted.get_mut(&header.producer_id) {
            Some((_, observed)) => {
                *observed = true;
                true
            }
            None => {
                self.committed.insert(header.producer_id);
                false
            }
        }
    }

    /// Kafka's `onControlBatchRead` for a control batch (`marker` its record, `None` when it
    /// holds none or another type): the index entry the cleaned segment keeps, if any.
    pub(super) fn on_control_batch(
        &mut self,
        header: &BatchHeader,
        marker: Option<&ControlRecord>,
    ) -> Option<AbortedTxn> {
        self.reach(header.last_offset());
        match marker?.control_type {
            ControlType::Abort => match self.aborted.remove(&header.producer_id) {
                Some((txn, true)) => Some(txn),
                _ => None,
            },
            ControlType::Commit => {
                self.committed.remove(&header.producer_id);
                None
            }
            ControlType::Other(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(
        producer_id: i64,
        base_offset: i64,
        transactional: bool,
        control: bool,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: (if transactional { 0x10 } else { 0 }) | (if control { 0x20 } else { 0 }),
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            records_count: 1,
        }
    }

    #[test]
    fn only_the_aborted_producers_batches_are_aborted_and_observed_entries_stay() {
        // Pins CleanedTransactionMetadata: producer 1 aborts [0, 2], producer 2 commits
        // [1, 3]; producer 3 aborts [4, 5] but none of its batches is seen in the pass.
        let abort_1 = AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 2,
            last_stable_offset: 1,
        };
        let abort_3 = AbortedTxn {
            producer_id: 3,
            first_offset: 4,
            last_offset: 5,
            last_stable_offset: 6,
        };
        let mut tracker = TxnTracker::new(&[abort_3, abort_1], 0);
        let abort = ControlRecord::marker(false, 0);
        let commit = ControlRecord::marker(true, 0);
        assert!(tracker.on_data_batch(&header(1, 0, true, false)));
        assert!(!tracker.on_data_batch(&header(2, 1, true, false)));
        assert_eq!(
            tracker.on_control_batch(&header(1, 2, true, true), Some(&abort)),
            Some(abort_1)
        );
        assert_eq!(
            tracker.on_control_batch(&header(2, 3, true, true), Some(&commit)),
            None
        );
        // After its marker, producer 1's next transaction is not aborted.
        assert!(!tracker.on_data_batch(&header(1, 4, true, false)));
        assert_eq!(
            tracker.on_control_batch(&header(3, 5, true, true), Some(&abort)),
            None
        );
    }
}
