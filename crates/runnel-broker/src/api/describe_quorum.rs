//! DescribeQuorum (key 55) v0–2: the metadata quorum as its leader sees it, for
//! `kafka-metadata-quorum describe --status / --replication` (KIP-595, KIP-836, KIP-853).
//!
//! As a Kafka broker forwards DescribeQuorum to the active controller
//! (`KafkaApis.handleDescribeQuorumRequest`), any node asks the active controller, which alone
//! knows each voter's progress ([`runnel_controller::describe`]). Only `__cluster_metadata`
//! partition 0 is described: any other topic or partition gets `UNKNOWN_TOPIC_OR_PARTITION`
//! for every partition asked, as Kafka's `KafkaRaftClient.handleDescribeQuorumRequest`
//! answers (`getPartitionLevelErrorResponse`). With no active controller reachable, each
//! partition gets `NOT_LEADER_OR_FOLLOWER`. v1 adds each replica's last fetch and caught-up
//! times; v2 the error messages, replica directory ids (the zero id: Runnel's metadata log
//! has no directory id of its own) and each voter's controller listener (`nodes`).

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use runnel_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{topic_name, Reply, Request};
use crate::broker::Broker;

/// The metadata log's topic name, as KRaft names it.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: DescribeQuorumRequest = request.decode()?;
    let broker = Arc::clone(broker);
    Ok(Reply::Ordered(Box::pin(async move {
        let response = describe(&broker, &body, request.version).await;
        Ok(Reply::Ready(request.respond(&response)?))
    })))
}

async fn describe(
    broker: &Broker,
    body: &DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let only_metadata = body.topics.len() == 1
        && body.topics[0].topic_name.as_str() == METADATA_TOPIC
        && body.topics[0].partitions.len() == 1
        && body.topics[0].partitions[0].partition_index == 0;
    if !only_metadata {
        return every_partition(body, ErrorCode::UnknownTopicOrPartition, version);
    }
    let quorum = match broker.controller.describe_quorum().await {
        Ok(quorum) => quorum,
        Err(error) => {
            tracing::debug!(%error, "DescribeQuorum: no answer from the active controller");
            return every_partition(body, ErrorCode::NotLeaderOrFollower, version);
        }
    };
    let replica = |replica: &runnel_controller::ReplicaDescription| {
        ReplicaState::default()
            .with_replica_id(replica.replica_id.into())
            .with_log_end_offset(replica.log_end_offset)
            .with_last_fetch_timestamp(replica.last_fetch_timestamp)
            .with_last_caught_up_timestamp(replica.last_caught_up_timestamp)
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(quorum.leader_id.into())
        .with_leader_epoch(quorum.leader_epoch)
        .with_high_watermark(quorum.high_watermark)
        .with_current_voters(quorum.voters.iter().map(replica).collect())
        .with_observers(quorum.observers.iter().map(replica).collect());
    let response = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name(METADATA_TOPIC))
        .with_partitions(vec![partition])]);
    if version < 2 {
        return response;
    }
    let nodes = quorum
        .voters
        .iter()
        .filter_map(|voter| {
            let (host, port) = voter.address.rsplit_once(':')?;
            let listener = Listener::default()
                .with_name(StrBytes::from_static_str("CONTROLLER"))
                .with_host(StrBytes::from_string(host.to_string()))
                .with_port(port.parse().ok()?);
            Some(
                Node::default()
                    .with_node_id(voter.replica_id.into())
                    .with_listeners(vec![listener]),
            )
        })
        .collect();
    response.with_nodes(nodes)
}

/// `code` for every partition the request names.
fn every_partition(
    body: &DescribeQuorumRequest,
    code: ErrorCode,
    version: i16,
) -> DescribeQuorumResponse {
    let message = (version >= 2).then(|| StrBytes::from_static_str(code.name()));
    let topics = body
        .topics
        .iter()
        .map(|topic| {
            TopicData::default()
                .with_topic_name(topic.topic_name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code.code())
                                .with_error_message(message.clone())
                                .with_leader_id((-1).into())
                                .with_leader_epoch(-1)
                                .with_high_watermark(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeQuorumResponse::default().with_topics(topics)
}
