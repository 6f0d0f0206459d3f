//! [`TxnCoordinator`]: the transactional ids of one `__transaction_state` partition, as Kafka's
//! `TransactionCoordinator` and `TransactionStateManager` run them, minus the I/O.
//!
//! The driver calls [`TxnCoordinator::handle`] with a request and an opaque reply handle,
//! [`TxnCoordinator::markers_written`] when a transaction's markers are all written, and
//! [`TxnCoordinator::expire`] when [`TxnCoordinator::next_deadline_ms`] passes. Each returns a
//! [`TxnOutput`]:
//! - `records`: append them to this partition, in order, as one batch;
//! - `replies`: send them once everything appended so far (these records included) is durable,
//!   as Kafka's `CoordinatorRuntime` completes a write, also when this output has no records
//!   (an answer never runs ahead of the state it read);
//! - `markers`: once those records are durable, write each transaction's COMMIT or ABORT marker
//!   to every partition it names (WriteTxnMarkers, or a local append on one node), retrying each
//!   partition until it succeeds or the partition no longer exists, then report the whole set
//!   with [`TxnCoordinator::markers_written`].
//!
//! State changes apply at once, as in Kafka's coordinator runtime; only their effects wait for
//! the log. If an append fails, the log is the truth: the driver fails that output's replies
//! (NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE, with [`TxnResponse::with_failure`]), drops its
//! markers, and rebuilds the coordinator by replaying the partition (Kafka's runtime reverts to
//! its last committed snapshot; a reload is the same thing). This also covers Kafka's failed
//! epoch fence: the fence is never half-applied.
//!
//! Loading: a new coordinator answers COORDINATOR_LOAD_IN_PROGRESS until
//! [`TxnCoordinator::finish_load`]; the driver feeds it the partition's records with
//! [`TxnCoordinator::replay`] first. Transactions found in PrepareCommit or PrepareAbort yield
//! their markers again, so a crash between prepare and complete is completed on restart.
//!
//! Layout: this file holds InitProducerId, the partition adds, loading and the timers;
//! `end_txn` holds EndTxn, the coordinator's own aborts and the markers' completion; `admin`
//! DescribeTransactions and ListTransactions.

mod admin;
mod end_txn;

use std::collections::HashMap;

use super::config::TxnConfig;
use super::record::TxnRecord;
use super::request::*;
use super::state::{
    epoch_exhausted, FencedError, TxnMetadata, TxnState, TxnVersion, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
};
use super::{partition_for_transactional_id, CONSUMER_OFFSETS_TOPIC};

/// The most transactional ids one timer pass aborts or expires: a bound on the records (and
/// markers) of one output. What is left is done by the next pass, due at once.
pub const TIMER_PASS_IDS_MAX: usize = 1024;

/// Where producer ids come from: the cluster's durable producer-id blocks (Kafka's
/// `ProducerIdManager`). An error is answered to the client as is.
pub trait ProducerIdAllocator {
    fn allocate(&mut self) -> Result<i64, TxnErrorCode>;
}

/// One transaction's markers to write: WriteTxnMarkers' fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteMarkers {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub result: TxnResult,
    /// The leader epoch of this `__transaction_state` partition: partition leaders refuse
    /// markers from an older coordinator (TRANSACTION_COORDINATOR_FENCED).
    pub coordinator_epoch: i32,
    /// Every partition of the transaction, `__consumer_offsets` ones included, sorted.
    pub partitions: Vec<(String, i32)>,
}

/// What the driver must do after an event (see the module doc for the order).
#[derive(Debug)]
pub struct TxnOutput<T> {
    /// Records to append to this partition of `__transaction_state`, in order.
    pub records: Vec<TxnRecord>,
    /// Replies to send once everything appended so far is durable.
    pub replies: Vec<(T, TxnResponse)>,
    /// Markers to write once `records` are durable.
    pub markers: Vec<WriteMarkers>,
}

impl<T> Default for TxnOutput<T> {
    fn default() -> Self {
        TxnOutput {
            records: Vec::new(),
            replies: Vec::new(),
            markers: Vec::new(),
        }
    }
}

/// The transactional ids of one `__transaction_state` partition.
pub struct TxnCoordinator {
    config: TxnConfig,
    /// This partition's index in `__transaction_state`.
    partition: i32,
    coordinator_epoch: i32,
    loading: bool,
    producer_ids: Box<dyn ProducerIdAllocator + Send>,
    txns: HashMap<String, TxnMetadata>,
    next_abort_check_ms: i64,
    next_expiration_check_ms: i64,
}

impl std::fmt::Debug for TxnCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnCoordinator")
            .field("partition", &self.partition)
            .field("coordinator_epoch", &self.coordinator_epoch)
            .field("loading", &self.loading)
            .field("transactions", &self.txns.len())
            .finish()
    }
}

impl TxnCoordinator {
    /// A coordinator for `partition`, led at `coordinator_epoch`, that loads before it serves.
    pub fn new(
        config: TxnConfig,
        partition: i32,
        coordinator_epoch: i32,
        producer_ids: Box<dyn ProducerIdAllocator + Send>,
        now_ms: i64,
    ) -> TxnCoordinator {
        assert!(
            (0..config.transaction_state_partitions).contains(&partition),
            "partition {partition} is not one of {} partitions",
            config.transaction_state_partitions
        );
        let next_abort_check_ms = now_ms + config.abort_timed_out_transaction_cleanup_interval_ms;
        let next_expiration_check_ms =
            now_ms + config.remove_expired_transaction_cleanup_interval_ms;
        TxnCoordinator {
            config,
            partition,
            coordinator_epoch,
            loading: true,
            producer_ids,
            txns: HashMap::new(),
            next_abort_check_ms,
            next_expiration_check_ms,
        }
    }

    /// Applies one record read back from the log (at load). Order matters: later records win.
    pub fn replay(&mut self, record: TxnRecord) {
        match record.value {
            None => {
                self.txns.remove(&record.transactional_id);
            }
            Some(value) if matches!(value.state, TxnState::Dead | TxnState::PrepareEpochFence) => {
                tracing::warn!(
                    transactional_id = %record.transactional_id,
                    state = value.state.name(),
                    "skipping a transaction record in a state Kafka never writes"
                );
            }
            Some(value) if value.producer_id < 0 || value.producer_epoch < 0 => {
                tracing::warn!(
                    transactional_id = %record.transactional_id,
                    producer_id = value.producer_id,
                    producer_epoch = value.producer_epoch,
                    "skipping a transaction record without a producer id and epoch"
                );
            }
            Some(value) => {
                self.txns
                    .insert(record.transactional_id, TxnMetadata::from_value(&value));
            }
        }
    }

    /// Ends the load: requests are served from now on, and every transaction left between
    /// prepare and complete gets its markers written again.
    pub fn finish_load<T>(&mut self, now_ms: i64) -> TxnOutput<T> {
        self.loading = false;
        let mut out = TxnOutput::default();
        let mut prepared: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, txn)| txn.state.is_prepared())
            .map(|(id, _)| id.clone())
            .collect();
        prepared.sort();
        for id in prepared {
            tracing::info!(transactional_id = %id, "completing a transaction found prepared at load");
            self.send_markers(&id, now_ms, &mut out);
        }
        out
    }

    pub fn is_loading(&self) -> bool {
        self.loading
    }

    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    pub fn transaction_count(&self) -> usize {
        self.txns.len()
    }

    /// One transactional id's state, for tests and metrics.
    pub fn transaction(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(transactional_id)
    }

    /// The earliest time [`TxnCoordinator::expire`] has work to do (never, while loading).
    pub fn next_deadline_ms(&self) -> i64 {
        if self.loading {
            return i64::MAX;
        }
        self.next_abort_check_ms.min(self.next_expiration_check_ms)
    }

    /// Handles one request; `reply` is answered through the returned [`TxnOutput`].
    pub fn handle<T>(&mut self, request: TxnRequest, reply: T, now_ms: i64) -> TxnOutput<T> {
        let mut out = TxnOutput::default();
        let response = match request {
            TxnRequest::InitProducerId(init) => TxnResponse::InitProducerId(
                self.init_producer_id(init, now_ms, &mut out)
                    .unwrap_or_else(InitProducerIdResult::error),
            ),
            TxnRequest::AddPartitions(add) => {
                let error = self
                    .add_partitions(&add, now_ms, &mut out)
                    .err()
                    .unwrap_or(TxnErrorCode::None);
                TxnResponse::AddPartitions(add.partitions.into_iter().map(|p| (p, error)).collect())
            }
            TxnRequest::VerifyPartitions(verify) => {
                TxnResponse::VerifyPartitions(self.verify_partitions(verify))
            }
            TxnRequest::AddOffsets(add) => {
                let error = self
                    .add_offsets(add, now_ms, &mut out)
                    .err()
                    .unwrap_or(TxnErrorCode::None);
                TxnResponse::AddOffsets(error)
            }
            TxnRequest::EndTxn(end) => TxnResponse::EndTxn(
                self.end_txn(end, now_ms, &mut out)
                    .unwrap_or_else(EndTxnResult::error),
            ),
            TxnRequest::Describe(ids) => TxnResponse::Describe(self.describe(ids)),
            TxnRequest::List(filter) => TxnResponse::List(self.list(&filter, now_ms)),
        };
        out.replies.push((reply, response));
        out
    }

    /// Acts on the timers that have passed by `now_ms`: open transactions past their timeout
    /// are aborted (and their producer fenced), idle transactional ids are forgotten.
    pub fn expire<T>(&mut self, now_ms: i64) -> TxnOutput<T> {
        let mut out = TxnOutput::default();
        if self.loading {
            return out;
        }
        // A pass that hit its bound runs again at once, so each output stays one modest batch.
        if now_ms >= self.next_abort_check_ms {
            let more = self.abort_timed_out(now_ms, &mut out);
            self.next_abort_check_ms = if more {
                now_ms
            } else {
                now_ms + self.config.abort_timed_out_transaction_cleanup_interval_ms
            };
        }
        if now_ms >= self.next_expiration_check_ms {
            let more = self.remove_expired(now_ms, &mut out);
            self.next_expiration_check_ms = if more {
                now_ms
            } else {
                now_ms + self.config.remove_expired_transaction_cleanup_interval_ms
            };
        }
        out
    }

    /// Kafka's `transactionalIdExpiration`: ids idle (Empty or complete) for
    /// `transactional.id.expiration.ms` get a tombstone and are forgotten, at most
    /// [`TIMER_PASS_IDS_MAX`] per pass; `true` when more are left.
    fn remove_expired<T>(&mut self, now_ms: i64, out: &mut TxnOutput<T>) -> bool {
        let expiration_ms = self.config.transactional_id_expiration_ms;
        let mut expired: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, txn)| txn.state.expiration_allowed())
            .filter(|(_, txn)| txn.last_update_timestamp_ms <= now_ms.saturating_sub(expiration_ms))
            .map(|(id, _)| id.clone())
            .collect();
        expired.sort();
        let more = expired.len() > TIMER_PASS_IDS_MAX;
        for id in expired.into_iter().take(TIMER_PASS_IDS_MAX) {
            tracing::info!(transactional_id = %id, "transactional id expired");
            self.txns.remove(&id);
            out.records.push(TxnRecord {
                transactional_id: id,
                value: None,
            });
        }
        more
    }

    /// COORDINATOR_LOAD_IN_PROGRESS while loading, NOT_COORDINATOR for another partition's id.
    fn check_owner(&self, transactional_id: &str) -> Result<(), TxnErrorCode> {
        if self.loading {
            return Err(TxnErrorCode::CoordinatorLoadInProgress);
        }
        let partition = partition_for_transactional_id(
            transactional_id,
            self.config.transaction_state_partitions,
        );
        if partition != self.partition {
            return Err(TxnErrorCode::NotCoordinator);
        }
        Ok(())
    }

    /// Moves `transactional_id` to `next` and records it.
    fn apply<T>(&mut self, transactional_id: &str, next: TxnMetadata, out: &mut TxnOutput<T>) {
        let version = self.config.transaction_version.log_value_version();
        let txn = self
            .txns
            .get_mut(transactional_id)
            .expect("only held transactional ids transition");
        tracing::debug!(
            transactional_id,
            from = txn.state.name(),
            to = next.state.name(),
            producer_id = next.producer_id,
            producer_epoch = next.producer_epoch,
            "transaction transition"
        );
        txn.transition(next);
        out.records.push(txn.to_record(transactional_id, version));
    }

    /// Kafka's `handleInitProducerId` for a transactional id.
    fn init_producer_id<T>(
        &mut self,
        init: InitProducerIdRequest,
        now_ms: i64,
        out: &mut TxnOutput<T>,
    ) -> Result<InitProducerIdResult, TxnErrorCode> {
        let id = init.transactional_id.as_str();
        let timeout_ms = init.transaction_timeout_ms;
        if id.is_empty() {
            return Err(TxnErrorCode::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.config.transaction_timeout_ms_max {
            return Err(TxnErrorCode::InvalidTransactionTimeout);
        }
        self.check_owner(id)?;
        if !self.txns.contains_key(id) {
            let producer_id = self.producer_ids.allocate()?;
            self.txns.insert(
                id.to_string(),
                TxnMetadata::new(producer_id, timeout_ms, now_ms),
            );
        }
        let txn = &self.txns[id];
        if txn.state.is_prepared() {
            // Markers are being written (Kafka's pending transition to Complete*): retry.
            return Err(TxnErrorCode::ConcurrentTransactions);
        }
        let expected = init.producer_id_and_epoch;
        if let Some((producer_id, epoch)) = expected {
            // KIP-360: a recovering producer keeps its id unless another producer took over.
            let valid = txn.producer_epoch == NO_PRODUCER_EPOCH
                || producer_id == txn.producer_id
                || (producer_id == txn.previous_producer_id && epoch_exhausted(epoch));
            if !valid {
                return Err(TxnErrorCode::ProducerFenced);
            }
        }
        match txn.state {
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let rotate = epoch_exhausted(txn.producer_epoch)
                    && expected.is_none_or(|(_, epoch)| epoch == txn.producer_epoch);
                let next = if rotate {
                    let producer_id = self.producer_ids.allocate()?;
                    let txn = &self.txns[id];
                    txn.prepare_rotation(producer_id, timeout_ms, now_ms, expected.is_some())
                } else {
                    txn.prepare_increment_epoch(timeout_ms, expected.map(|(_, e)| e), now_ms)
                        .map_err(|FencedError| TxnErrorCode::ProducerFenced)?
                };
                let result = InitProducerIdResult {
                    error: TxnErrorCode::None,
                    producer_id: next.producer_id,
                    producer_epoch: next.producer_epoch,
                };
                tracing::info!(
                    transactional_id = id,
                    producer_id = result.producer_id,
                    producer_epoch = result.producer_epoch,
                    "initialized transactional id"
                );
                self.apply(id, next, out);
                Ok(result)
            }
            TxnState::Ongoing => {
                // The old producer's transaction is aborted under a bumped epoch first; the
                // client retries on CONCURRENT_TRANSACTIONS and gets an epoch past it.
                tracing::info!(
                    transactional_id = id,
                    "fencing the producer of an ongoing transaction"
                );
                self.fence_and_abort(id, now_ms, out);
                Err(TxnErrorCode::ConcurrentTransactions)
            }
            TxnState::PrepareCommit
            | TxnState::PrepareAbort
            | TxnState::Dead
            | TxnState::PrepareEpochFence => {
                unreachable!("InitProducerId in state {}", txn.state.name())
            }
        }
    }

    /// Kafka's `handleAddPartitionsToTransaction`.
    fn add_partitions<T>(
        &mut self,
        add: &AddPartitionsRequest,
        now_ms: i64,
        out: &mut TxnOutput<T>,
    ) -> Result<(), TxnErrorCode> {
        let id = add.transactional_id.as_str();
        if id.is_empty() {
            return Err(TxnErrorCode::InvalidRequest);
        }
        self.check_owner(id)?;
        let txn = self
            .txns
            .get(id)
            .ok_or(TxnErrorCode::InvalidProducerIdMapping)?;
        if txn.state.is_prepared() {
            // Markers are being written (Kafka's pending transition to Complete*): checked
            // first, as Kafka does, so a producer already on the id a v2 EndTxn rotated to
            // waits for the rotation to complete.
            return Err(TxnErrorCode::ConcurrentTransactions);
        }
        if txn.producer_id != add.producer_id {
            return Err(TxnErrorCode::InvalidProducerIdMapping);
        }
        // i16::MAX is only ever a fencing epoch: no producer holds it.
        if txn.producer_epoch != add.producer_epoch || add.producer_epoch == i16::MAX {
            return Err(TxnErrorCode::ProducerFenced);
        }
        let known = add.partitions.iter().all(|p| txn.partitions.contains(p));
        if txn.state == TxnState::Ongoing && known {
            return Ok(());
        }
        let next = txn.prepare_add_partitions(&add.partitions, now_ms, add.client_version);
        self.apply(id, next, out);
        Ok(())
    }

    /// Kafka's `handleVerifyPartitionsInTransaction` (KIP-890 part 1).
    fn verify_partitions(&self, verify: VerifyPartitionsRequest) -> PartitionsResult {
        let all = |error: TxnErrorCode| {
            verify
                .partitions
                .iter()
                .map(|p| (p.clone(), error))
                .collect()
        };
        let id = verify.transactional_id.as_str();
        if id.is_empty() {
            return all(TxnErrorCode::InvalidRequest);
        }
        if let Err(error) = self.check_owner(id) {
            return all(error);
        }
        let Some(txn) = self.txns.get(id) else {
            return all(TxnErrorCode::InvalidProducerIdMapping);
        };
        verify
            .partitions
            .iter()
            .map(|p| {
                let error = txn.verify_partition(verify.producer_id, verify.producer_epoch, p);
                (p.clone(), error)
            })
            .collect()
    }

    /// Kafka's AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the
    /// transaction, so its offsets commit or abort with the markers.
    fn add_offsets<T>(
        &mut self,
        add: AddOffsetsRequest,
        now_ms: i64,
        out: &mut TxnOutput<T>,
    ) -> Result<(), TxnErrorCode> {
        let partition = crate::partition_for(&add.group_id, self.config.offsets_topic_partitions);
        let request = AddPartitionsRequest {
            transactional_id: add.transactional_id,
            producer_id: add.producer_id,
            producer_epoch: add.producer_epoch,
            partitions: vec![(CONSUMER_OFFSETS_TOPIC.to_string(), partition)],
            client_version: add.client_version,
        };
        self.add_partitions(&request, now_ms, out)
    }
}
