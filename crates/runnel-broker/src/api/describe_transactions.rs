//! DescribeTransactions (key 65, KIP-664): each asked transactional id's state, producer id and
//! epoch, timeout, start time and partitions, from the coordinator that owns it, as
//! `kafka-transactions describe` and the admin clients' `describeTransactions` ask.
//!
//! As Kafka's `KafkaApis.handleDescribeTransactionsRequest`: an id is answered with its own
//! error: TRANSACTIONAL_ID_NOT_FOUND for one the coordinator does not hold (also before any
//! transactional request created `__transaction_state`), COORDINATOR_LOAD_IN_PROGRESS while its
//! partition loads, INVALID_REQUEST for an empty id. The answer holds one entry per asked id,
//! so the frame size bounds it.

use std::collections::BTreeMap;
use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use runnel_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse};
use runnel_protocol::StrBytes;

use super::{Reply, Request};
use crate::broker::Broker;
use crate::transaction_coordinator::TransactionCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: DescribeTransactionsRequest = request.decode()?;
    let ids: Vec<String> = body
        .transactional_ids
        .iter()
        .map(|id| id.to_string())
        .collect();
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let mut states = Vec::with_capacity(ids.len());
        for id in ids {
            let description = TransactionCoordinator::describe(&broker, id).await;
            let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in description.partitions {
                topics.entry(topic).or_default().push(partition);
            }
            let topics = topics
                .into_iter()
                .map(|(topic, mut partitions)| {
                    partitions.sort_unstable();
                    TopicData::default()
                        .with_topic(StrBytes::from_string(topic).into())
                        .with_partitions(partitions)
                })
                .collect();
            states.push(
                TransactionState::default()
                    .with_error_code(description.error.code())
                    .with_transactional_id(
                        StrBytes::from_string(description.transactional_id).into(),
                    )
                    .with_transaction_state(StrBytes::from_static_str(description.state))
                    .with_transaction_timeout_ms(description.transaction_timeout_ms)
                    .with_transaction_start_time_ms(description.transaction_start_time_ms)
                    .with_producer_id(description.producer_id.into())
                    .with_producer_epoch(description.producer_epoch)
                    .with_topics(topics),
            );
        }
        let response = DescribeTransactionsResponse::default().with_transaction_states(states);
        request.respond(&response)
    })))
}
