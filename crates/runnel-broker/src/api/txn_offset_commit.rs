//! TxnOffsetCommit (key 28): a transactional producer commits a group's offsets inside its
//! transaction (`sendOffsetsToTransaction`).
//!
//! The offsets are pending in the group coordinator until the transaction's marker reaches
//! the group's `__consumer_offsets` partition: OffsetFetch does not show them before a
//! COMMIT, and an ABORT drops them (`runnel-coordinator`'s `txn_offsets`). First, as Kafka's
//! KIP-890 part 1 verification does, the group's partition must be in the producer's ongoing
//! transaction (AddOffsetsToTxn before): otherwise INVALID_TXN_STATE (TRANSACTION_ABORTABLE
//! from v4, whose clients handle it), PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH, and
//! coordinator errors are answered as they are (clients retry them). v5 is transactions v2
//! (KIP-890 part 2): the client sends no AddOffsetsToTxn and the partition is added here. Partitions of unknown topics get
//! UNKNOWN_TOPIC_OR_PARTITION. v3+ carry the member, generation and instance id, checked as an
//! OffsetCommit's are, except that a rebalance in progress does not refuse the commit.

use std::sync::Arc;

use runnel_coordinator::request::{
    CommitPartition, Request as GroupRequest, Response, TxnCommitRequest,
};
use runnel_coordinator::transaction::TxnErrorCode;
use runnel_coordinator::{partition_for, transaction::CONSUMER_OFFSETS_TOPIC};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use runnel_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use runnel_protocol::ErrorCode;

use super::{topic_name, Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::GroupCoordinator;
use crate::transaction_coordinator::TransactionCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: TxnOffsetCommitRequest = request.decode()?;
    let version = request.version;
    let image = broker.controller.image();
    // Every partition in request order, with an error when it is refused before the group.
    let mut partitions: Vec<(CommitPartition, Option<ErrorCode>)> = Vec::new();
    for topic in &body.topics {
        let known = image.topic(topic.name.as_str());
        for partition in &topic.partitions {
            let exists = known.is_some_and(|t| {
                partition.partition_index >= 0
                    && (partition.partition_index as usize) < t.partitions.len()
            });
            let commit = CommitPartition {
                topic: topic.name.to_string(),
                partition: partition.partition_index,
                offset: partition.committed_offset,
                leader_epoch: if version >= 2 {
                    partition.committed_leader_epoch
                } else {
                    -1
                },
                metadata: partition.committed_metadata.as_ref().map(|s| s.to_string()),
            };
            partitions.push((
                commit,
                (!exists).then_some(ErrorCode::UnknownTopicOrPartition),
            ));
        }
    }
    let group_id = body.group_id.to_string();
    let producer = Producer {
        transactional_id: body.transactional_id.to_string(),
        producer_id: body.producer_id.0,
        producer_epoch: body.producer_epoch,
    };
    let commit = TxnCommitRequest {
        group_id: group_id.clone(),
        producer_id: body.producer_id.0,
        producer_epoch: body.producer_epoch,
        generation_id: body.generation_id,
        member_id: body.member_id.to_string(),
        group_instance_id: body.group_instance_id.as_ref().map(|s| s.to_string()),
        partitions: partitions
            .iter()
            .filter(|(_, error)| error.is_none())
            .map(|(p, _)| p.clone())
            .collect(),
    };
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let sent = commit.partitions.len();
        let in_transaction = if sent == 0 {
            Ok(())
        } else {
            join_transaction(&broker, &producer, &group_id, version).await
        };
        let mut outcomes = match in_transaction {
            _ if sent == 0 => Vec::new(),
            Err(code) => vec![code; sent],
            Ok(()) => {
                let request = GroupRequest::TxnCommit(commit);
                match GroupCoordinator::call(&broker, &group_id, request).await {
                    Ok(Response::TxnCommit(results)) => {
                        results.into_iter().map(|(_, _, e)| e.code()).collect()
                    }
                    Ok(_) => vec![ErrorCode::UnknownServerError.code(); sent],
                    Err(code) => vec![code.code(); sent],
                }
            }
        }
        .into_iter();
        let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
        for (partition, error) in partitions {
            let error = error
                .map(ErrorCode::code)
                .or_else(|| outcomes.next())
                .unwrap_or(ErrorCode::UnknownServerError.code());
            let result = TxnOffsetCommitResponsePartition::default()
                .with_partition_index(partition.partition)
                .with_error_code(error);
            match topics.last_mut() {
                Some(topic) if topic.name.as_str() == partition.topic => {
                    topic.partitions.push(result)
                }
                _ => topics.push(
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(topic_name(&partition.topic))
                        .with_partitions(vec![result]),
                ),
            }
        }
        request.respond(&TxnOffsetCommitResponse::default().with_topics(topics))
    })))
}

/// Who commits: the transactional producer of the request.
struct Producer {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
}

/// The group's `__consumer_offsets` partition must be in the producer's ongoing transaction.
/// Below v5 (transactions v1) it is verified (KIP-890 part 1: AddOffsetsToTxn must have added
/// it); v5 is transactions v2, where it is added here, as Kafka's group coordinator does through
/// `AddPartitionsToTxnManager` with `ADD_PARTITION` (the client sends no AddOffsetsToTxn).
/// `Err` is the code every partition gets, converted as Kafka converts the coordinator's
/// answer (`AddPartitionsToTxnManager`): PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH,
/// TRANSACTION_ABORTABLE is INVALID_TXN_STATE for clients below v4.
async fn join_transaction(
    broker: &Arc<Broker>,
    producer: &Producer,
    group_id: &str,
    version: i16,
) -> Result<(), i16> {
    let offsets_partitions = broker
        .controller
        .image()
        .topic(CONSUMER_OFFSETS_TOPIC)
        .map_or(broker.config.offsets_topic_num_partitions, |t| {
            t.partitions.len() as i32
        });
    let partition = (
        CONSUMER_OFFSETS_TOPIC.to_string(),
        partition_for(group_id, offsets_partitions),
    );
    let error = if version >= 5 {
        let verdicts = TransactionCoordinator::add_partitions_v2(
            broker,
            &producer.transactional_id,
            producer.producer_id,
            producer.producer_epoch,
            vec![partition],
        )
        .await;
        verdicts
            .into_iter()
            .map(|(_, error)| error)
            .next()
            .unwrap_or(TxnErrorCode::UnknownServerError)
    } else {
        TransactionCoordinator::verify_anywhere(
            broker,
            &producer.transactional_id,
            producer.producer_id,
            producer.producer_epoch,
            partition,
        )
        .await
    };
    match error {
        TxnErrorCode::None => Ok(()),
        TxnErrorCode::ProducerFenced => Err(ErrorCode::InvalidProducerEpoch.code()),
        TxnErrorCode::TransactionAbortable if version < 4 => Err(ErrorCode::InvalidTxnState.code()),
        other => Err(other.code()),
    }
}
