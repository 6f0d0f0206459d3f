//! EndTxn (transactions v1 and v2), the coordinator's own aborts (fencing a producer, a
//! transaction past its timeout), and completion once the markers are written.
//!
//! Transactions v2 (KIP-890 part 2, EndTxn v5+) bump the epoch at every EndTxn, so a retried
//! EndTxn is told apart from the next transaction's by its epoch: Kafka's table, which
//! [`TxnCoordinator::end_txn_v2`] follows (PF = PRODUCER_FENCED, ITS = INVALID_TXN_STATE;
//! "retry" = the epoch just before the stored one):
//!
//! ```text
//!                  Abort            Commit
//!                  retry  current   retry  current
//! Empty            PF     bump      PF     ITS
//! CompleteAbort    NONE   bump      ITS    ITS
//! CompleteCommit   ITS    bump      NONE   ITS
//! ```
//!
//! While a transaction's markers are written (PrepareCommit/PrepareAbort: Kafka's pending
//! transition to Complete*), InitProducerId, AddPartitionsToTxn and an EndTxn that passes the
//! producer checks get CONCURRENT_TRANSACTIONS, whatever the result asked, as in Kafka.

use super::*;

impl TxnCoordinator {
    /// Kafka's `handleEndTransaction`.
    pub(super) fn end_txn<T>(
        &mut self,
        end: EndTxnRequest,
        now_ms: i64,
        out: &mut TxnOutput<T>,
    ) -> Result<EndTxnResult, TxnErrorCode> {
        let id = end.transactional_id.as_str();
        if id.is_empty() {
            return Err(TxnErrorCode::InvalidRequest);
        }
        self.check_owner(id)?;
        if !self.txns.contains_key(id) {
            return Err(TxnErrorCode::InvalidProducerIdMapping);
        }
        if end.client_version.bumps_epoch() {
            self.end_txn_v2(&end, now_ms, out)
        } else {
            self.end_txn_v1(&end, now_ms, out)
        }
    }

    /// Kafka's `endTransactionWithTV1`: the epoch must be the current one.
    fn end_txn_v1<T>(
        &mut self,
        end: &EndTxnRequest,
        now_ms: i64,
        out: &mut TxnOutput<T>,
    ) -> Result<EndTxnResult, TxnErrorCode> {
        let id = end.transactional_id.as_str();
        let txn = &self.txns[id];
        if txn.producer_id != end.producer_id {
            return Err(TxnErrorCode::InvalidProducerIdMapping);
        }
        if txn.producer_epoch != end.producer_epoch || end.producer_epoch == i16::MAX {
            return Err(TxnErrorCode::ProducerFenced);
        }
        if txn.state.is_prepared() {
            // Markers are being written (Kafka's pending transition to Complete*): retry.
            return Err(TxnErrorCode::ConcurrentTransactions);
        }
        let done = EndTxnResult::error(TxnErrorCode::None);
        match (txn.state, end.result) {
            (TxnState::Ongoing, result) => {
                let next = txn.prepare_abort_or_commit(
                    prepare_state(result),
                    TxnVersion::V0,
                    NO_PRODUCER_ID,
                    now_ms,
                    false,
                );
                self.apply(id, next, out);
                self.send_markers(id, now_ms, out);
                Ok(done)
            }
            (TxnState::CompleteCommit, TxnResult::Commit)
            | (TxnState::CompleteAbort, TxnResult::Abort) => Ok(done),
            (
                TxnState::PrepareCommit
                | TxnState::PrepareAbort
                | TxnState::Dead
                | TxnState::PrepareEpochFence,
                _,
            ) => {
                unreachable!("a held transaction is never {}", txn.state.name())
            }
            (state, result) => Err(invalid_state(id, state, result)),
        }
    }

    /// Kafka's `endTransaction` for transactions v2: the epoch is bumped by every EndTxn and
    /// the reply carries the producer id and epoch of the next transaction.
    fn end_txn_v2<T>(
        &mut self,
        end: &EndTxnRequest,
        now_ms: i64,
        out: &mut TxnOutput<T>,
    ) -> Result<EndTxnResult, TxnErrorCode> {
        let id = end.transactional_id.as_str();
        let txn = &self.txns[id];
        let epoch = i32::from(end.producer_epoch);
        let stored = i32::from(txn.producer_epoch);
        // A retry of an EndTxn whose bump overflowed into a new producer id.
        let retry_on_overflow = txn.previous_producer_id == end.producer_id
            && end.producer_epoch == i16::MAX - 1
            && txn.producer_epoch == 0;
        let retry_on_bump = stored == epoch + 1;
        let valid_epoch = match txn.state {
            TxnState::Ongoing | TxnState::Empty => epoch == stored,
            TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                retry_on_bump || retry_on_overflow || epoch == stored
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                unreachable!("a held transaction is never {}", txn.state.name())
            }
        };
        let retry = retry_on_bump || retry_on_overflow;
        if txn.producer_id != end.producer_id && !retry_on_overflow {
            return Err(TxnErrorCode::InvalidProducerIdMapping);
        }
        // i16::MAX is only ever a fencing epoch: no producer holds it.
        if !valid_epoch || end.producer_epoch == i16::MAX {
            return Err(TxnErrorCode::ProducerFenced);
        }
        if txn.state.is_prepared() {
            // A retry while the markers are written (Kafka's pending transition): retry.
            return Err(TxnErrorCode::ConcurrentTransactions);
        }
        let current = EndTxnResult {
            error: TxnErrorCode::None,
            producer_id: txn.producer_id,
            producer_epoch: txn.producer_epoch,
        };
        use TxnResult::{Abort, Commit};
        match (txn.state, end.result) {
            (TxnState::Ongoing, result) => self.prepare_v2(
                id,
                prepare_state(result),
                end.client_version,
                false,
                now_ms,
                out,
            ),
            (TxnState::CompleteCommit, Commit) | (TxnState::CompleteAbort, Abort) if retry => {
                Ok(current)
            }
            (TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Empty, Abort)
                if !retry =>
            {
                // v2 lets a client abort when unsure whether a transaction is open.
                let (version, state) = (end.client_version, TxnState::PrepareAbort);
                self.prepare_v2(id, state, version, true, now_ms, out)
            }
            (state, result) => Err(invalid_state(id, state, result)),
        }
    }

    /// PrepareCommit or PrepareAbort under transactions v2, with a new producer id ready when
    /// the bump takes the last epoch.
    fn prepare_v2<T>(
        &mut self,
        id: &str,
        state: TxnState,
        client_version: TxnVersion,
        no_partition_added: bool,
        now_ms: i64,
        out: &mut TxnOutput<T>,
    ) -> Result<EndTxnResult, TxnErrorCode> {
        let next_producer_id = if epoch_exhausted(self.txns[id].producer_epoch) {
            self.producer_ids.allocate()?
        } else {
            NO_PRODUCER_ID
        };
        let next = self.txns[id].prepare_abort_or_commit(
            state,
            client_version,
            next_producer_id,
            now_ms,
            no_partition_added,
        );
        self.apply(id, next, out);
        let (producer_id, producer_epoch) = self.txns[id].completed_producer();
        self.send_markers(id, now_ms, out);
        Ok(EndTxnResult {
            error: TxnErrorCode::None,
            producer_id,
            producer_epoch,
        })
    }

    /// Kafka's `prepareFenceProducerEpoch` followed by its internal abort: the ongoing
    /// transaction is aborted under a bumped epoch, so the old producer's next request, and
    /// its batches at every partition (the markers carry the new epoch), are fenced. The fence
    /// is never written alone: it travels in the PrepareAbort record.
    pub(super) fn fence_and_abort<T>(&mut self, id: &str, now_ms: i64, out: &mut TxnOutput<T>) {
        let txn = &self.txns[id];
        assert_eq!(
            txn.state,
            TxnState::Ongoing,
            "only an ongoing transaction is fenced"
        );
        if txn.producer_epoch == i16::MAX {
            tracing::error!(
                transactional_id = id,
                producer_id = txn.producer_id,
                "fencing a producer at epoch i16::MAX; this is a bug"
            );
        }
        let mut fenced = txn.clone();
        fenced.producer_epoch = txn.producer_epoch.saturating_add(1);
        fenced.last_producer_epoch = NO_PRODUCER_EPOCH;
        // The coordinator's own abort uses the cluster's transaction version (Kafka's
        // `transactionVersionLevel`), v1 semantics below v2.
        let version = match self.config.transaction_version {
            v if v.bumps_epoch() => v,
            _ => TxnVersion::V0,
        };
        let next = fenced.prepare_abort_or_commit(
            TxnState::PrepareAbort,
            version,
            NO_PRODUCER_ID,
            now_ms,
            false,
        );
        self.apply(id, next, out);
        self.send_markers(id, now_ms, out);
    }

    /// Kafka's `abortTimedOutTransactions`: every transaction open longer than its timeout is
    /// aborted and its producer fenced, at most [`TIMER_PASS_IDS_MAX`] per pass; `true` when
    /// more are left.
    pub(super) fn abort_timed_out<T>(&mut self, now_ms: i64, out: &mut TxnOutput<T>) -> bool {
        let mut timed_out: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, txn)| txn.state == TxnState::Ongoing)
            .filter(|(_, txn)| {
                txn.start_timestamp_ms
                    .saturating_add(i64::from(txn.timeout_ms))
                    < now_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        timed_out.sort();
        let more = timed_out.len() > TIMER_PASS_IDS_MAX;
        for id in timed_out.into_iter().take(TIMER_PASS_IDS_MAX) {
            tracing::info!(transactional_id = %id, "aborting a transaction past its timeout");
            self.fence_and_abort(&id, now_ms, out);
        }
        more
    }

    /// Asks for the markers of a prepared transaction, or completes it at once when it has no
    /// partitions (Kafka's marker channel completes such a transaction without sending).
    pub(super) fn send_markers<T>(&mut self, id: &str, now_ms: i64, out: &mut TxnOutput<T>) {
        let txn = &self.txns[id];
        let result = match txn.state {
            TxnState::PrepareCommit => TxnResult::Commit,
            TxnState::PrepareAbort => TxnResult::Abort,
            other => panic!("markers for a transaction in state {}", other.name()),
        };
        if txn.partitions.is_empty() {
            let next = txn.prepare_complete(now_ms);
            self.apply(id, next, out);
            return;
        }
        out.markers.push(WriteMarkers {
            transactional_id: id.to_string(),
            producer_id: txn.producer_id,
            producer_epoch: txn.producer_epoch,
            result,
            coordinator_epoch: self.coordinator_epoch,
            partitions: txn.partitions.iter().cloned().collect(),
        });
    }

    /// The driver reports `markers` written to all their partitions: the transaction completes
    /// (CompleteCommit or CompleteAbort). A report that no longer matches the transaction (a
    /// reload, another coordinator epoch) is ignored.
    pub fn markers_written<T>(&mut self, markers: &WriteMarkers, now_ms: i64) -> TxnOutput<T> {
        let mut out = TxnOutput::default();
        let id = markers.transactional_id.as_str();
        let Some(txn) = self.txns.get(id) else {
            return out;
        };
        let expected = prepare_state(markers.result);
        if txn.state != expected
            || txn.producer_id != markers.producer_id
            || txn.producer_epoch != markers.producer_epoch
            || markers.coordinator_epoch != self.coordinator_epoch
        {
            tracing::debug!(
                transactional_id = id,
                state = txn.state.name(),
                "ignoring markers that no longer match the transaction"
            );
            return out;
        }
        let next = txn.prepare_complete(now_ms);
        self.apply(id, next, &mut out);
        out
    }
}

fn prepare_state(result: TxnResult) -> TxnState {
    match result {
        TxnResult::Commit => TxnState::PrepareCommit,
        TxnResult::Abort => TxnState::PrepareAbort,
    }
}

fn invalid_state(id: &str, state: TxnState, result: TxnResult) -> TxnErrorCode {
    tracing::warn!(
        transactional_id = id,
        state = state.name(),
        ?result,
        "EndTxn does not fit the transaction's state"
    );
    TxnErrorCode::InvalidTxnState
}
