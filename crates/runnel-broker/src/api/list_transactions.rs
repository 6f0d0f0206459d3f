//! ListTransactions (key 66, KIP-664; v1 adds the duration filter, KIP-994): the transactional
//! ids this node coordinates, filtered by state, producer id and how long the transaction has
//! been open, as `kafka-transactions list` and the admin clients' `listTransactions` ask.
//!
//! As Kafka's `KafkaApis.handleListTransactionsRequest` / `TransactionStateManager
//! .listTransactionStates`: a state filter that names no state Kafka knows is returned in
//! `unknown_state_filters` (and filters nothing out by itself: the known ones still apply);
//! when only unknown states were asked for, nothing matches. A partition still loading answers
//! COORDINATOR_LOAD_IN_PROGRESS for the whole request. The answer holds each transactional id
//! once; their number is bounded by the coordinator's state, not by the request.

use std::sync::Arc;

use runnel_coordinator::transaction::request::ListTxnFilter;
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::list_transactions_response::TransactionState;
use runnel_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};
use runnel_protocol::StrBytes;

use super::{Reply, Request};
use crate::broker::Broker;
use crate::transaction_coordinator::TransactionCoordinator;

/// Kafka's `TransactionState` names, the only ones a state filter can match.
const STATE_NAMES: [&str; 8] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: ListTransactionsRequest = request.decode()?;
    let (known, unknown): (Vec<String>, Vec<String>) = body
        .state_filters
        .iter()
        .map(|state| state.to_string())
        .partition(|state| STATE_NAMES.contains(&state.as_str()));
    let nothing_can_match = known.is_empty() && !unknown.is_empty();
    let filter = ListTxnFilter {
        states: known,
        producer_ids: body.producer_id_filters.iter().map(|id| id.0).collect(),
        // v0 has no duration filter: its default, -1, means any.
        duration_ms_min: if request.version >= 1 {
            body.duration_filter
        } else {
            -1
        },
    };
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let unknown_state_filters: Vec<StrBytes> =
            unknown.into_iter().map(StrBytes::from_string).collect();
        let response = match TransactionCoordinator::list(&broker, filter).await {
            Ok(listed) => {
                let states = if nothing_can_match {
                    Vec::new()
                } else {
                    listed
                        .into_iter()
                        .map(|txn| {
                            TransactionState::default()
                                .with_transactional_id(
                                    StrBytes::from_string(txn.transactional_id).into(),
                                )
                                .with_producer_id(txn.producer_id.into())
                                .with_transaction_state(StrBytes::from_static_str(txn.state))
                        })
                        .collect()
                };
                ListTransactionsResponse::default()
                    .with_unknown_state_filters(unknown_state_filters)
                    .with_transaction_states(states)
            }
            Err(error) => ListTransactionsResponse::default()
                .with_error_code(error.code())
                .with_unknown_state_filters(unknown_state_filters),
        };
        request.respond(&response)
    })))
}
