//! Transactions during a compaction pass: which transactional batches belong to aborted
//! transactions, which transaction markers no data of their transaction is left for, and which
//! transaction-index entries the cleaned segments keep (Kafka's `CleanedTransactionMetadata`).
//!
//! A pass walks the log in offset order with one [`TxnTracker`], fed with every aborted
//! transaction of the log's transaction indexes whose first offset lies below the pass's end
//! (sorted by first offset). Before a batch is judged, the aborted transactions that began at
//! or before its last offset become *ongoing aborted* for their producer. Then
//! ([`TxnTracker::on_data_batch`], Kafka's `onBatchRead`):
//! - a transactional data batch of a producer with an ongoing aborted transaction is aborted
//!   data: the cleaner removes its records (and the offset map ignores them, so that an
//!   aborted record never hides a committed one); the transaction is marked *observed*;
//! - any other transactional data batch marks its producer's transaction as committed (its
//!   records then compact like any others).
//!
//! And for a control batch ([`TxnTracker::on_control_batch`], Kafka's `onControlBatchRead`),
//! whether it is *removable* (no data of its transaction is left) and which index entry the
//! cleaned segment keeps:
//! - an ABORT marker ends the producer's aborted transaction. When a batch of it was observed
//!   in this pass, the marker is not removable and its index entry is kept; otherwise the
//!   marker is removable and the entry is dropped (Kafka appends to the cleaned index only
//!   the entries of transactions it saw data of);
//! - a COMMIT marker ends the committed transaction: removable when no batch of it was seen;
//! - an empty control batch (a marker a pass already emptied) is removable;
//! - a control batch of another type, or one whose record does not decode, is never
//!   removable.
//!
//! Besides Kafka's rule, a marker is not removable while its producer has a batch of the
//! other kind open (a committed batch before an ABORT, aborted data before a COMMIT): that
//! happens only when the log and its transaction indexes disagree, and keeping the marker
//! then keeps every replay of the log what it was. Runnel therefore never removes a marker
//! Kafka would keep.
//!
//! A removable marker is not removed at once: like a tombstone, it first gets a delete
//! horizon and goes at a later pass once the horizon has passed (`compaction.rs`).

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
    /// holds none, another type, or a record that does not decode).
    pub(super) fn on_control_batch(
        &mut self,
        header: &BatchHeader,
        marker: Option<&ControlRecord>,
    ) -> ControlBatchRead {
        self.reach(header.last_offset());
        let kept = |removable: bool| ControlBatchRead {
            removable,
            kept_entry: None,
        };
        let Some(marker) = marker else {
            return kept(header.records_count == 0);
        };
        let producer_id = header.producer_id;
        match marker.control_type {
            ControlType::Abort => match self.aborted.remove(&producer_id) {
                Some((txn, true)) => ControlBatchRead {
                    removable: false,
                    kept_entry: Some(txn),
                },
                _ => kept(!self.committed.contains(&producer_id)),
            },
            ControlType::Commit => {
                let committed = self.committed.remove(&producer_id);
                let aborted_data = self
                    .aborted
                    .get(&producer_id)
                    .is_some_and(|(_, observed)| *observed);
                kept(!committed && !aborted_data)
            }
            ControlType::Other(_) => kept(false),
        }
    }
}

/// What [`TxnTracker::on_control_batch`] decided of one control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ControlBatchRead {
    /// No data of the marker's transaction is left in the log (Kafka's "can discard").
    pub(super) removable: bool,
    /// The transaction-index entry the cleaned segment keeps for it, if any.
    pub(super) kept_entry: Option<AbortedTxn>,
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

    fn read(removable: bool, kept_entry: Option<AbortedTxn>) -> ControlBatchRead {
        ControlBatchRead {
            removable,
            kept_entry,
        }
    }

    #[test]
    fn only_the_aborted_producers_batches_are_aborted_and_observed_entries_stay() {
        // Pins CleanedTransactionMetadata: producer 1 aborts [0, 2], producer 2 commits
        // [1, 3]; producer 3 aborts [4, 5] but none of its batches is seen in the pass; the
        // markers of transactions with data seen stay, the others are removable.
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
            read(false, Some(abort_1))
        );
        assert_eq!(
            tracker.on_control_batch(&header(2, 3, true, true), Some(&commit)),
            read(false, None)
        );
        // After its marker, producer 1's next transaction is not aborted.
        assert!(!tracker.on_data_batch(&header(1, 4, true, false)));
        assert_eq!(
            tracker.on_control_batch(&header(3, 5, true, true), Some(&abort)),
            read(true, None)
        );
        // Producer 2's next COMMIT has no data before it: removable.
        assert_eq!(
            tracker.on_control_batch(&header(2, 6, true, true), Some(&commit)),
            read(true, None)
        );
    }

    #[test]
    fn empty_unknown_and_undecodable_control_batches() {
        // Kafka: an emptied control batch is removable; another type never is. Runnel keeps
        // a control batch whose record does not decode.
        let mut tracker = TxnTracker::new(&[], 0);
        let mut empty = header(1, 0, true, true);
        empty.records_count = 0;
        assert_eq!(tracker.on_control_batch(&empty, None), read(true, None));
        assert_eq!(
            tracker.on_control_batch(&header(1, 1, true, true), None),
            read(false, None)
        );
        let other = ControlRecord {
            control_type: ControlType::Other(2),
            coordinator_epoch: None,
        };
        assert_eq!(
            tracker.on_control_batch(&header(-1, 2, false, true), Some(&other)),
            read(false, None)
        );
    }

    #[test]
    fn a_marker_is_kept_while_its_producer_has_data_of_the_other_kind_open() {
        // Only when the log and its indexes disagree: producer 1's batch at 0 is not in
        // any aborted transaction, yet an ABORT follows; the ABORT stays, and so does the
        // COMMIT after it (Kafka's committed set still holds the producer).
        let mut tracker = TxnTracker::new(&[], 0);
        let abort = ControlRecord::marker(false, 0);
        let commit = ControlRecord::marker(true, 0);
        assert!(!tracker.on_data_batch(&header(1, 0, true, false)));
        assert_eq!(
            tracker.on_control_batch(&header(1, 1, true, true), Some(&abort)),
            read(false, None)
        );
        assert_eq!(
            tracker.on_control_batch(&header(1, 2, true, true), Some(&commit)),
            read(false, None)
        );
        // Aborted data seen, then a COMMIT: the COMMIT stays.
        let abort_2 = AbortedTxn {
            producer_id: 2,
            first_offset: 3,
            last_offset: 9,
            last_stable_offset: 3,
        };
        let mut tracker = TxnTracker::new(&[abort_2], 0);
        assert!(tracker.on_data_batch(&header(2, 3, true, false)));
        assert_eq!(
            tracker.on_control_batch(&header(2, 4, true, true), Some(&commit)),
            read(false, None)
        );
    }
}
