//! OffsetFetch (key 9): a group's committed offsets (-1 where nothing is committed).
//!
//! v1–7 ask for one group (null topics = every committed partition, v2+); v8+ for several
//! groups at once, each with its own error. Group errors (COORDINATOR_LOAD_IN_PROGRESS, ...)
//! go per partition in v1, top-level in v2–7, per group in v8+. The committed leader epoch
//! is reported from v5. With `require_stable` (v7+, KIP-447) a partition whose group has
//! transactional offsets still pending (TxnOffsetCommit before its transaction's marker)
//! answers UNSTABLE_OFFSET_COMMIT, which clients retry; without it the committed offset shows
//! and pending ones never do, as Kafka's `OffsetMetadataManager.fetchOffsets` answers.

use std::sync::Arc;

use runnel_coordinator::request::{FetchRequest, FetchResult, Request as GroupRequest, Response};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use runnel_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{topic_name, Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::GroupCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: OffsetFetchRequest = request.decode()?;
    let version = request.version;
    let require_stable = version >= 7 && body.require_stable;
    let fetches: Vec<FetchRequest> = if version >= 8 {
        body.groups
            .iter()
            .map(|group| FetchRequest {
                group_id: group.group_id.to_string(),
                partitions: group.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
                        .collect()
                }),
                require_stable,
            })
            .collect()
    } else {
        vec![FetchRequest {
            group_id: body.group_id.to_string(),
            partitions: body.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
                    .collect()
            }),
            require_stable,
        }]
    };
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let mut results = Vec::with_capacity(fetches.len());
        for fetch in fetches {
            let group_id = fetch.group_id.clone();
            let requested = fetch.partitions.clone();
            let result = match GroupCoordinator::call(
                &broker,
                &group_id,
                GroupRequest::Fetch(fetch),
            )
            .await
            {
                Ok(Response::Fetch(result)) => result,
                Ok(_) => failed(ErrorCode::UnknownServerError, requested),
                Err(code) => failed(code, requested),
            };
            results.push((group_id, result));
        }
        let response = if version >= 8 {
            OffsetFetchResponse::default().with_groups(
                results
                    .into_iter()
                    .map(|(group_id, result)| group_response(group_id, result))
                    .collect(),
            )
        } else {
            let (_, result) = results
                .into_iter()
                .next()
                .expect("a v1-7 request names one group");
            single_group_response(result, version)
        };
        request.respond(&response)
    })))
}

/// A whole-group failure, with every requested partition carrying it (for v1).
fn failed(error: ErrorCode, requested: Option<Vec<(String, i32)>>) -> FetchResult {
    FetchResult {
        error,
        offsets: requested
            .unwrap_or_default()
            .into_iter()
            .map(
                |(topic, partition)| runnel_coordinator::request::FetchedOffset {
                    topic,
                    partition,
                    error: ErrorCode::None,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                },
            )
            .collect(),
    }
}

fn single_group_response(result: FetchResult, version: i16) -> OffsetFetchResponse {
    let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
    for offset in result.offsets {
        let partition = OffsetFetchResponsePartition::default()
            .with_partition_index(offset.partition)
            .with_committed_offset(offset.offset)
            .with_committed_leader_epoch(if version >= 5 {
                offset.leader_epoch
            } else {
                -1
            })
            .with_metadata(Some(StrBytes::from_string(offset.metadata)))
            .with_error_code(if version < 2 {
                result.error.code()
            } else {
                offset.error.code()
            });
        match topics.last_mut() {
            Some(topic) if topic.name.as_str() == offset.topic => topic.partitions.push(partition),
            _ => topics.push(
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&offset.topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response.with_error_code(result.error.code())
    } else {
        response
    }
}

fn group_response(group_id: String, result: FetchResult) -> OffsetFetchResponseGroup {
    let mut topics: Vec<OffsetFetchResponseTopics> = Vec::new();
    for offset in result.offsets {
        let partition = OffsetFetchResponsePartitions::default()
            .with_partition_index(offset.partition)
            .with_committed_offset(offset.offset)
            .with_committed_leader_epoch(offset.leader_epoch)
            .with_metadata(Some(StrBytes::from_string(offset.metadata)))
            .with_error_code(offset.error.code());
        match topics.last_mut() {
            Some(topic) if topic.name.as_str() == offset.topic => topic.partitions.push(partition),
            _ => topics.push(
                OffsetFetchResponseTopics::default()
                    .with_name(topic_name(&offset.topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    OffsetFetchResponseGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(group_id)))
        .with_topics(topics)
        .with_error_code(result.error.code())
}
