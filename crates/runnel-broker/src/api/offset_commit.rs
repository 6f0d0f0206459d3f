//! OffsetCommit (key 8): stores a group's consumed positions in `__consumer_offsets`; the
//! answer waits until the commit's records are durable.
//!
//! Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION here; the rest go to the
//! coordinator, which checks generation and membership (a simple consumer commits with
//! generation -1 and no member id). The leader epoch exists from v6, the group instance id
//! from v7; v2–4's retention time is ignored, as by Kafka since 2.1 (KIP-211).

use std::sync::Arc;

use runnel_coordinator::request::{
    CommitPartition, CommitRequest, Request as GroupRequest, Response,
};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use runnel_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use runnel_protocol::ErrorCode;

use super::{topic_name, Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::GroupCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: OffsetCommitRequest = request.decode()?;
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
                leader_epoch: if version >= 6 {
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
    let commit = CommitRequest {
        group_id: body.group_id.to_string(),
        generation_id: body.generation_id_or_member_epoch,
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
        let group_id = commit.group_id.clone();
        let sent = commit.partitions.len();
        let mut outcomes = if sent == 0 {
            Vec::new()
        } else {
            match GroupCoordinator::call(&broker, &group_id, GroupRequest::Commit(commit)).await {
                Ok(Response::Commit(results)) => results.into_iter().map(|(_, _, e)| e).collect(),
                Ok(_) => vec![ErrorCode::UnknownServerError; sent],
                Err(code) => vec![code; sent],
            }
        }
        .into_iter();
        let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
        for (partition, error) in partitions {
            let error = error
                .or_else(|| outcomes.next())
                .unwrap_or(ErrorCode::UnknownServerError);
            let result = OffsetCommitResponsePartition::default()
                .with_partition_index(partition.partition)
                .with_error_code(error.code());
            match topics.last_mut() {
                Some(topic) if topic.name.as_str() == partition.topic => {
                    topic.partitions.push(result)
                }
                _ => topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(topic_name(&partition.topic))
                        .with_partitions(vec![result]),
                ),
            }
        }
        request.respond(&OffsetCommitResponse::default().with_topics(topics))
    })))
}
