//! ListOffsets (key 2): offsets by special timestamp or by time.
//!
//! Timestamps: -2 earliest (log start offset), -4 earliest local (the same, no tiering), -1
//! latest (high watermark; read_committed: the last stable offset, Kafka's
//! `fetchOffsetForTimestamp` with `IsolationLevel.READ_COMMITTED`), -3
//! max timestamp (v7+: the first record with the largest timestamp), ≥ 0: the first record
//! whose timestamp is at or after it, or offset -1 when there is none.

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::list_offsets_request::ListOffsetsPartition;
use runnel_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use runnel_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use runnel_protocol::ErrorCode;

use super::{Reply, Request};
use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: ListOffsetsRequest = request.decode()?;
    // Kafka's IsolationLevel.READ_COMMITTED (v2+).
    let read_committed = body.isolation_level == 1;
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|requested| {
                    let index = requested.partition_index;
                    let repeated = topic
                        .partitions
                        .iter()
                        .filter(|p| p.partition_index == index)
                        .count()
                        > 1;
                    if repeated {
                        // Kafka refuses a partition named twice in one request.
                        return empty(index).with_error_code(ErrorCode::InvalidRequest.code());
                    }
                    lookup(
                        broker,
                        topic.name.as_str(),
                        requested,
                        request.version,
                        read_committed,
                    )
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    Ok(Reply::Ready(request.respond(
        &ListOffsetsResponse::default().with_topics(topics),
    )?))
}

fn lookup(
    broker: &Broker,
    topic: &str,
    requested: &ListOffsetsPartition,
    version: i16,
    read_committed: bool,
) -> ListOffsetsPartitionResponse {
    let index = requested.partition_index;
    let response = empty(index);
    let Some(partition) = broker.replicas.partition(topic, index) else {
        return response.with_error_code(broker.not_hosted_error(topic, index).code());
    };
    if partition.is_offline() {
        return response.with_error_code(ErrorCode::KafkaStorageError.code());
    }
    if requested.current_leader_epoch > partition.leader_epoch() {
        return response.with_error_code(ErrorCode::UnknownLeaderEpoch.code());
    }
    if requested.current_leader_epoch >= 0
        && requested.current_leader_epoch < partition.leader_epoch()
    {
        return response.with_error_code(ErrorCode::FencedLeaderEpoch.code());
    }
    // The leader epoch field exists from v4.
    let response = if version >= 4 {
        response.with_leader_epoch(partition.leader_epoch())
    } else {
        response
    };
    let offsets = partition.offsets();
    let found = match requested.timestamp {
        EARLIEST | EARLIEST_LOCAL => Ok(Some((offsets.log_start_offset, -1))),
        LATEST if read_committed => Ok(Some((offsets.last_stable_offset, -1))),
        LATEST => Ok(Some((offsets.high_watermark, -1))),
        MAX_TIMESTAMP => partition.with_log(|log| log.max_timestamp()),
        timestamp if timestamp >= 0 => {
            partition.with_log(|log| log.offset_for_timestamp(timestamp))
        }
        _ => return response.with_error_code(ErrorCode::InvalidRequest.code()),
    };
    match found {
        Ok(Some((offset, timestamp))) => response.with_offset(offset).with_timestamp(timestamp),
        Ok(None) => response,
        Err(error) => {
            tracing::error!(topic, partition = index, %error, "offset lookup failed");
            response.with_error_code(ErrorCode::KafkaStorageError.code())
        }
    }
}

/// A partition's response with no offset found.
fn empty(index: i32) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1)
}
