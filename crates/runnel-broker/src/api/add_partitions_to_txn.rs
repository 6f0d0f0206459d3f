//! AddPartitionsToTxn (key 24): partitions join a producer's transaction before it writes to
//! them (transactions v1).
//!
//! v0–3 carry one transaction (a client's); v4+ a batch (`transactions`), each with its own
//! result, and `verify_only` (KIP-890 part 1: a partition leader asks whether the partitions
//! are already in the transaction; nothing is written). v5 without `verify_only` is the
//! partition leader's implicit add under transactions v2. Partitions of unknown topics get
//! UNKNOWN_TOPIC_OR_PARTITION and the others of that transaction OPERATION_NOT_ATTEMPTED,
//! without asking the coordinator, as Kafka's `KafkaApis.handleAddPartitionsToTxnRequest`
//! does. PRODUCER_FENCED exists from v2; older versions get INVALID_PRODUCER_EPOCH.

use std::sync::Arc;

use runnel_coordinator::transaction::request::{
    AddPartitionsRequest, TxnApi, VerifyPartitionsRequest,
};
use runnel_coordinator::transaction::{TxnErrorCode, TxnRequest, TxnResponse, TxnVersion};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use runnel_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use runnel_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TransactionalId,
};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{topic_name, Reply, Request};
use crate::broker::Broker;
use crate::transaction_coordinator::TransactionCoordinator;

/// One transaction of the request, as the coordinator is asked.
struct Transaction {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    partitions: Vec<(String, i32)>,
}

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: AddPartitionsToTxnRequest = request.decode()?;
    let version = request.version;
    let transactions: Vec<Transaction> = if version >= 4 {
        body.transactions
            .iter()
            .map(|txn| Transaction {
                transactional_id: txn.transactional_id.to_string(),
                producer_id: txn.producer_id.0,
                producer_epoch: txn.producer_epoch,
                verify_only: txn.verify_only,
                partitions: partitions(&txn.topics),
            })
            .collect()
    } else {
        vec![Transaction {
            transactional_id: body.v3_and_below_transactional_id.to_string(),
            producer_id: body.v3_and_below_producer_id.0,
            producer_epoch: body.v3_and_below_producer_epoch,
            verify_only: false,
            partitions: partitions(&body.v3_and_below_topics),
        }]
    };
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let mut results = Vec::with_capacity(transactions.len());
        for txn in transactions {
            let transactional_id = txn.transactional_id.clone();
            let outcome = add(&broker, txn, version).await;
            results.push((transactional_id, outcome));
        }
        let response = if version >= 4 {
            AddPartitionsToTxnResponse::default().with_results_by_transaction(
                results
                    .into_iter()
                    .map(|(id, outcome)| {
                        AddPartitionsToTxnResult::default()
                            .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                            .with_topic_results(topic_results(outcome))
                    })
                    .collect(),
            )
        } else {
            let (_, outcome) = results.pop().expect("a v0-3 request has one transaction");
            AddPartitionsToTxnResponse::default()
                .with_results_by_topic_v3_and_below(topic_results(outcome))
        };
        request.respond(&response)
    })))
}

fn partitions(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.name.to_string(), *partition))
        })
        .collect()
}

/// One transaction's per-partition outcome, in request order.
async fn add(broker: &Arc<Broker>, txn: Transaction, version: i16) -> Vec<((String, i32), i16)> {
    let image = broker.controller.image();
    let unknown: Vec<bool> = txn
        .partitions
        .iter()
        .map(|(topic, partition)| {
            image
                .topic(topic)
                .is_none_or(|t| *partition < 0 || *partition as usize >= t.partitions.len())
        })
        .collect();
    if unknown.iter().any(|&u| u) {
        return txn
            .partitions
            .into_iter()
            .zip(unknown)
            .map(|(partition, unknown)| {
                let error = if unknown {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    ErrorCode::OperationNotAttempted
                };
                (partition, error.code())
            })
            .collect();
    }
    let request = if txn.verify_only {
        TxnRequest::VerifyPartitions(VerifyPartitionsRequest {
            transactional_id: txn.transactional_id.clone(),
            producer_id: txn.producer_id,
            producer_epoch: txn.producer_epoch,
            partitions: txn.partitions.clone(),
        })
    } else {
        TxnRequest::AddPartitions(AddPartitionsRequest {
            transactional_id: txn.transactional_id.clone(),
            producer_id: txn.producer_id,
            producer_epoch: txn.producer_epoch,
            partitions: txn.partitions.clone(),
            client_version: if version >= 5 {
                TxnVersion::V2
            } else {
                TxnVersion::V0
            },
        })
    };
    let results = match TransactionCoordinator::call(broker, &txn.transactional_id, request).await {
        TxnResponse::AddPartitions(results) | TxnResponse::VerifyPartitions(results) => results,
        _ => txn
            .partitions
            .iter()
            .map(|p| (p.clone(), TxnErrorCode::UnknownServerError))
            .collect(),
    };
    results
        .into_iter()
        .map(|(partition, error)| {
            let error = error.for_version(TxnApi::AddPartitionsToTxn, version);
            (partition, error.code())
        })
        .collect()
}

/// Per topic, in request order.
fn topic_results(outcome: Vec<((String, i32), i16)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), error) in outcome {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(error);
        match topics.last_mut() {
            Some(last) if last.name.as_str() == topic => last.results_by_partition.push(result),
            _ => topics.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(topic_name(&topic))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    topics
}
