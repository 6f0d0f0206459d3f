//! DescribeTransactions and ListTransactions: read-only views of this partition's
//! transactional ids (Kafka's `handleDescribeTransactions`, `listTransactionStates`).

use super::*;

impl TxnCoordinator {
    pub(super) fn describe(&self, ids: Vec<String>) -> Vec<TxnDescription> {
        ids.into_iter().map(|id| self.describe_one(id)).collect()
    }

    fn describe_one(&self, transactional_id: String) -> TxnDescription {
        let mut description = TxnDescription::empty(transactional_id, TxnErrorCode::None);
        let id = description.transactional_id.as_str();
        if id.is_empty() {
            description.error = TxnErrorCode::InvalidRequest;
            return description;
        }
        if let Err(error) = self.check_owner(id) {
            description.error = error;
            return description;
        }
        let Some(txn) = self.txns.get(id) else {
            description.error = TxnErrorCode::TransactionalIdNotFound;
            return description;
        };
        description.state = txn.state.name();
        description.producer_id = txn.producer_id;
        description.producer_epoch = txn.producer_epoch;
        description.transaction_timeout_ms = txn.timeout_ms;
        description.transaction_start_time_ms = txn.start_timestamp_ms;
        description.partitions = txn.partitions.iter().cloned().collect();
        description
    }

    pub(super) fn list(
        &self,
        filter: &ListTxnFilter,
        now_ms: i64,
    ) -> Result<Vec<ListedTxn>, TxnErrorCode> {
        if self.loading {
            return Err(TxnErrorCode::CoordinatorLoadInProgress);
        }
        let mut listed: Vec<ListedTxn> = self
            .txns
            .iter()
            // Dead is the moment between expiry and removal: Kafka never lists it.
            .filter(|(_, txn)| txn.state != TxnState::Dead)
            .filter(|(_, txn)| {
                filter.states.is_empty() || filter.states.iter().any(|s| s == txn.state.name())
            })
            .filter(|(_, txn)| {
                filter.producer_ids.is_empty() || filter.producer_ids.contains(&txn.producer_id)
            })
            .filter(|(_, txn)| {
                filter.duration_ms_min < 0
                    || now_ms.saturating_sub(txn.start_timestamp_ms) > filter.duration_ms_min
            })
            .map(|(id, txn)| ListedTxn {
                transactional_id: id.clone(),
                producer_id: txn.producer_id,
                state: txn.state.name(),
            })
            .collect();
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(listed)
    }
}
