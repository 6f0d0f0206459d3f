//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch, for a consumer's
//! truncation check (KIP-320). Single node: the leader-epoch cache's answer, the log end
//! offset for the current epoch; an epoch before any we know gets itself and the start of the
//! first epoch we know, and an empty cache (or epoch -1) gets -1/-1 (UNDEFINED), as Kafka's
//! `LeaderEpochFileCache.endOffsetFor` answers. `current_leader_epoch` is fenced like Fetch's.

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use runnel_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use runnel_protocol::ErrorCode;

use super::{Reply, Request};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: OffsetForLeaderEpochRequest = request.decode()?;
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|requested| {
                    let index = requested.partition;
                    let result = EpochEndOffset::default()
                        .with_partition(index)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let Some(partition) = broker.replicas.partition(topic.topic.as_str(), index)
                    else {
                        let code = broker.not_hosted_error(topic.topic.as_str(), index);
                        return result.with_error_code(code.code());
                    };
                    let current = requested.current_leader_epoch;
                    if current > partition.leader_epoch() {
                        return result.with_error_code(ErrorCode::UnknownLeaderEpoch.code());
                    }
                    if current >= 0 && current < partition.leader_epoch() {
                        return result.with_error_code(ErrorCode::FencedLeaderEpoch.code());
                    }
                    match partition.with_log(|log| log.end_offset_for_epoch(requested.leader_epoch))
                    {
                        Some((epoch, end_offset)) => {
                            result.with_leader_epoch(epoch).with_end_offset(end_offset)
                        }
                        None => result,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetForLeaderEpochResponse::default().with_topics(topics);
    Ok(Reply::Ready(request.respond(&response)?))
}
