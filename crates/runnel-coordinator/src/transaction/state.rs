//! One transactional id's state: what Kafka's `TransactionMetadata` holds, and the transitions
//! between Kafka's transaction states.
//!
//! Invariants (checked by [`TxnMetadata::transition`], which every change goes through):
//! - A state is entered only from one of Kafka's valid previous states
//!   ([`TxnState::valid_previous`]).
//! - `partitions` is empty in Empty, CompleteCommit and CompleteAbort; `start_timestamp_ms` is -1
//!   in Empty.
//! - `previous_producer_id` is the producer id before the last transition (Kafka's
//!   `prevProducerId`), so a rotation to a new producer id remembers the old one.
//! - `next_producer_id` is set only in PrepareCommit/PrepareAbort of a transactions-v2 EndTxn
//!   that exhausted the epoch: completion moves to it at epoch 0.
//!
//! Dead and PrepareEpochFence exist for the record format and for names only: an expired id is
//! removed (a tombstone), and the epoch fence is applied together with its abort, so neither is
//! ever the state of a [`TxnMetadata`].

use std::collections::BTreeSet;

use super::record::{TxnRecord, TxnValue};
use super::request::TxnErrorCode;

/// Kafka's `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;
/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Kafka's transaction states, with their ids in `__transaction_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    /// The status byte of `TransactionLogValue`.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's name, as DescribeTransactions and ListTransactions report it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Kafka's `TransactionState.validPreviousStates`.
    pub fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[
                Ongoing,
                PrepareEpochFence,
                Empty,
                CompleteCommit,
                CompleteAbort,
            ],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// Kafka's `isExpirationAllowed`: the transactional id may be forgotten in this state.
    pub fn expiration_allowed(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }

    /// PrepareCommit or PrepareAbort: markers are being written.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// Kafka's `transaction.version` feature levels as a client uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxnVersion {
    /// TV0: the original protocol.
    V0,
    /// TV1: the flexible `__transaction_state` value (v1) with tagged fields.
    V1,
    /// TV2 (KIP-890 part 2): an epoch bump on every EndTxn, partitions added by the produce path.
    V2,
}

impl TxnVersion {
    pub fn level(self) -> i16 {
        match self {
            TxnVersion::V0 => 0,
            TxnVersion::V1 => 1,
            TxnVersion::V2 => 2,
        }
    }

    /// Kafka's `TransactionVersion.fromFeatureLevel`, with unknown (future) levels read as V2.
    pub fn from_level(level: i16) -> TxnVersion {
        match level {
            i16::MIN..=0 => TxnVersion::V0,
            1 => TxnVersion::V1,
            _ => TxnVersion::V2,
        }
    }

    /// Kafka's `supportsEpochBump`.
    pub fn bumps_epoch(self) -> bool {
        self >= TxnVersion::V2
    }

    /// Kafka's `transactionLogValueVersion`: TV0 writes value v0, TV1 and later v1.
    pub fn log_value_version(self) -> i16 {
        if self >= TxnVersion::V1 {
            1
        } else {
            0
        }
    }
}

/// Kafka's `TransactionMetadata.isEpochExhausted`: the last two epochs are kept back so the
/// coordinator can always fence (one bump) and, in transactions v2, abort (another).
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// One transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so a retried InitProducerId (KIP-360) or EndTxn
    /// (transactions v2) is recognised. Not stored in the log, as in Kafka: -1 after a load.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// When the first partition was added; -1 when no transaction is open.
    pub start_timestamp_ms: i64,
    pub last_update_timestamp_ms: i64,
    pub client_version: TxnVersion,
}

impl TxnMetadata {
    /// A transactional id seen for the first time: Empty, with no epoch yet.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            last_update_timestamp_ms: now_ms,
            client_version: TxnVersion::V0,
        }
    }

    /// The state a loaded record describes.
    pub fn from_value(value: &TxnValue) -> TxnMetadata {
        TxnMetadata {
            producer_id: value.producer_id,
            previous_producer_id: value.previous_producer_id,
            next_producer_id: value.next_producer_id,
            producer_epoch: value.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: value.transaction_timeout_ms,
            state: value.state,
            partitions: value.partitions.clone(),
            start_timestamp_ms: value.start_timestamp_ms,
            last_update_timestamp_ms: value.last_update_timestamp_ms,
            client_version: TxnVersion::from_level(value.client_transaction_version),
        }
    }

    /// The record that stores this state, at the value version the cluster's
    /// `transaction.version` writes.
    pub fn to_record(&self, transactional_id: &str, value_version: i16) -> TxnRecord {
        TxnRecord {
            transactional_id: transactional_id.to_string(),
            value: Some(TxnValue {
                version: value_version,
                producer_id: self.producer_id,
                previous_producer_id: self.previous_producer_id,
                next_producer_id: self.next_producer_id,
                next_producer_epoch: NO_PRODUCER_EPOCH,
                producer_epoch: self.producer_epoch,
                transaction_timeout_ms: self.timeout_ms,
                state: self.state,
                partitions: self.partitions.clone(),
                last_update_timestamp_ms: self.last_update_timestamp_ms,
                start_timestamp_ms: self.start_timestamp_ms,
                client_transaction_version: self.client_version.level(),
            }),
        }
    }

    /// Moves to `next`, which a `prepare_*` function built from `self`. Panics on a transition
    /// Kafka forbids: that is a bug in this coordinator, never a client's doing.
    pub fn transition(&mut self, mut next: TxnMetadata) {
        assert!(
            next.state.valid_previous().contains(&self.state),
            "transaction state {} may not follow {}",
            next.state.name(),
            self.state.name()
        );
        assert!(
            next.producer_id >= 0,
            "illegal producer id {}",
            next.producer_id
        );
        assert!(
            next.producer_epoch >= 0,
            "illegal producer epoch {}",
            next.producer_epoch
        );
        next.previous_producer_id = self.producer_id;
        *self = next;
    }

    /// Kafka's `prepareIncrementProducerEpoch` (InitProducerId): Empty at the next epoch, or
    /// at the current one when `expected_epoch` is a retry of a bump that succeeded. `Err` is
    /// a fenced producer.
    pub fn prepare_increment_epoch(
        &self,
        timeout_ms: i32,
        expected_epoch: Option<i16>,
        now_ms: i64,
    ) -> Result<TxnMetadata, FencedError> {
        // The caller rotates to a new producer id instead of bumping an exhausted epoch.
        let bumped = || {
            assert!(
                !epoch_exhausted(self.producer_epoch),
                "no epochs left for producer id {}",
                self.producer_id
            );
            self.producer_epoch + 1
        };
        let (producer_epoch, last_producer_epoch) = match expected_epoch {
            None => (bumped(), NO_PRODUCER_EPOCH),
            Some(expected)
                if self.producer_epoch == NO_PRODUCER_EPOCH || expected == self.producer_epoch =>
            {
                (bumped(), self.producer_epoch)
            }
            Some(expected) if expected == self.last_producer_epoch => {
                (self.producer_epoch, self.last_producer_epoch)
            }
            Some(_) => return Err(FencedError),
        };
        Ok(TxnMetadata {
            producer_epoch,
            last_producer_epoch,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            last_update_timestamp_ms: now_ms,
            ..self.clone()
        })
    }

    /// Kafka's `prepareProducerIdRotation`: a new producer id at epoch 0, for when the epoch
    /// ran out. `record_last_epoch` (a KIP-360 request) keeps the old epoch for its retry.
    pub fn prepare_rotation(
        &self,
        producer_id: i64,
        timeout_ms: i32,
        now_ms: i64,
        record_last_epoch: bool,
    ) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: if record_last_epoch {
                self.producer_epoch
            } else {
                NO_PRODUCER_EPOCH
            },
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            last_update_timestamp_ms: now_ms,
            ..self.clone()
        }
    }

    /// Kafka's `prepareAddPartitions`: Ongoing with `added` joined; a transaction starts now
    /// if none was open.
    pub fn prepare_add_partitions(
        &self,
        added: &[(String, i32)],
        now_ms: i64,
        client_version: TxnVersion,
    ) -> TxnMetadata {
        let starts_now = matches!(
            self.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        );
        let mut partitions = self.partitions.clone();
        partitions.extend(added.iter().cloned());
        TxnMetadata {
            state: TxnState::Ongoing,
            partitions,
            start_timestamp_ms: if starts_now {
                now_ms
            } else {
                self.start_timestamp_ms
            },
            last_update_timestamp_ms: now_ms,
            client_version,
            ..self.clone()
        }
    }

    /// Kafka's `prepareAbortOrCommit`: PrepareCommit or PrepareAbort. Transactions v2 bump
    /// the epoch here (except an abort already at `i16::MAX`, which must still go through).
    pub fn prepare_abort_or_commit(
        &self,
        state: TxnState,
        client_version: TxnVersion,
        next_producer_id: i64,
        now_ms: i64,
        no_partition_added: bool,
    ) -> TxnMetadata {
        let (producer_epoch, last_producer_epoch) = if client_version.bumps_epoch() {
            if self.producer_epoch == i16::MAX && state == TxnState::PrepareAbort {
                tracing::error!(
                    producer_id = self.producer_id,
                    "aborting a transaction at epoch i16::MAX; this is a bug"
                );
                (self.producer_epoch, self.producer_epoch)
            } else {
                // The callers refuse requests at i16::MAX, an epoch no producer is given.
                (self.producer_epoch.saturating_add(1), self.producer_epoch)
            }
        } else {
            (self.producer_epoch, self.last_producer_epoch)
        };
        TxnMetadata {
            producer_epoch,
            last_producer_epoch,
            state,
            next_producer_id,
            start_timestamp_ms: if no_partition_added {
                now_ms
            } else {
                self.start_timestamp_ms
            },
            last_update_timestamp_ms: now_ms,
            client_version,
            ..self.clone()
        }
    }

    /// Kafka's `prepareComplete`: CompleteCommit or CompleteAbort once the markers are written;
    /// a transactions-v2 rotation moves to the next producer id at epoch 0.
    pub fn prepare_complete(&self, now_ms: i64) -> TxnMetadata {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => panic!("completing a transaction in state {}", other.name()),
        };
        let rotate = self.client_version.bumps_epoch() && self.next_producer_id != NO_PRODUCER_ID;
        TxnMetadata {
            producer_id: if rotate {
                self.next_producer_id
            } else {
                self.producer_id
            },
            producer_epoch: if rotate { 0 } else { self.producer_epoch },
            next_producer_id: NO_PRODUCER_ID,
            state,
            partitions: BTreeSet::new(),
            last_update_timestamp_ms: now_ms,
            ..self.clone()
        }
    }

    /// Kafka's `handleVerifyPartitionsInTransaction` for one partition of this id (KIP-890
    /// part 1): whether a transactional batch of (producer id, epoch) may be appended to
    /// `partition`. TRANSACTION_ABORTABLE when the partition was never added.
    pub fn verify_partition(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        partition: &(String, i32),
    ) -> TxnErrorCode {
        if self.producer_id != producer_id {
            return TxnErrorCode::InvalidProducerIdMapping;
        }
        if self.producer_epoch != producer_epoch {
            return TxnErrorCode::ProducerFenced;
        }
        if self.state.is_prepared() {
            return TxnErrorCode::ConcurrentTransactions;
        }
        if self.partitions.contains(partition) {
            TxnErrorCode::None
        } else {
            TxnErrorCode::TransactionAbortable
        }
    }

    /// The producer id and epoch the client uses once this transaction completes.
    pub fn completed_producer(&self) -> (i64, i16) {
        if self.client_version.bumps_epoch() && self.next_producer_id != NO_PRODUCER_ID {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        }
    }
}

/// A producer whose epoch is neither the current one nor the one just before a bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FencedError;
