//! DescribeProducers (key 61, KIP-664): the active producers of each requested partition,
//! from its log's producer state, as `kafka-transactions describe-producers` and the admin
//! clients' `describeProducers` ask for them.
//!
//! As Kafka's `ReplicaManager.activeProducerState` / `Partition.activeProducerState`: a
//! partition this node hosts answers its producers (producer id, epoch, last sequence and the
//! last batch's max timestamp, -1 for both when no batch is retained; the coordinator epoch of
//! its last transaction marker, -1 before any; the first offset of its ongoing transaction,
//! -1 when none is open); a topic or partition
//! the metadata does not name is `UNKNOWN_TOPIC_OR_PARTITION`; one the metadata names but this
//! node does not host is `NOT_LEADER_OR_FOLLOWER`. The answer holds at most as many
//! partitions as the request, which the frame size bounds.

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use runnel_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
use runnel_protocol::ErrorCode;

use super::{Reply, Request};
use crate::broker::Broker;

/// Kafka's `RecordBatch.NO_SEQUENCE` and `RecordBatch.NO_TIMESTAMP`, and no open transaction.
const NONE_I32: i32 = -1;
const NONE_I64: i64 = -1;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: DescribeProducersRequest = request.decode()?;
    let image = broker.controller.image();
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.as_str();
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let named = image
                        .topic(name)
                        .is_some_and(|t| t.partitions.iter().any(|p| p.partition == index));
                    match broker.replicas.partition(name, index) {
                        Some(partition) if named => partition.with_log(|log| {
                            PartitionResponse::default()
                                .with_partition_index(index)
                                .with_active_producers(active_producers(log.producer_state()))
                        }),
                        _ => PartitionResponse::default()
                            .with_partition_index(index)
                            .with_error_code(
                                if named {
                                    ErrorCode::NotLeaderOrFollower
                                } else {
                                    ErrorCode::UnknownTopicOrPartition
                                }
                                .code(),
                            ),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let response = DescribeProducersResponse::default().with_topics(topics);
    Ok(Reply::Ready(request.respond(&response)?))
}

fn active_producers(state: &runnel_log::ProducerStateManager) -> Vec<ProducerState> {
    state
        .producers()
        .into_iter()
        .map(|(producer_id, entry)| {
            let last = entry.batches.back();
            ProducerState::default()
                .with_producer_id(producer_id.into())
                .with_producer_epoch(i32::from(entry.epoch))
                .with_last_sequence(last.map_or(NONE_I32, |batch| batch.last_sequence))
                .with_last_timestamp(last.map_or(NONE_I64, |batch| batch.max_timestamp))
                .with_coordinator_epoch(entry.coordinator_epoch)
                .with_current_txn_start_offset(entry.current_txn_first_offset.unwrap_or(NONE_I64))
        })
        .collect()
}
