//! ElectLeaders (key 43): preferred (0) or unclean (1) leader election, as
//! `kafka-leader-election` and the admin clients' `electLeaders` ask for it.
//!
//! Preferred: a partition not led by its preferred replica (its first) is handed to it
//! through the active controller ([`crate::controller::Controller::elect_preferred`]) when
//! that replica is in the ISR and unfenced, else `PREFERRED_LEADER_NOT_AVAILABLE`; one led by
//! it already is `ELECTION_NOT_NEEDED`, as Kafka's controller answers. Unclean: a partition
//! with a live leader is `ELECTION_NOT_NEEDED`; one without (its in-sync replicas all fenced)
//! is `ELIGIBLE_LEADERS_NOT_AVAILABLE` here, because Runnel elects out-of-sync replicas only
//! where `unclean.leader.election.enable` allows it, and then at once, on the fencing
//! (`runnel_metadata`'s image). An unknown topic or partition is
//! `UNKNOWN_TOPIC_OR_PARTITION`; an unknown election type is `INVALID_REQUEST` for the whole
//! request. With null partitions (elect everywhere) the partitions that need no election are
//! left out of the answer, as Kafka does.

use std::sync::Arc;

use runnel_metadata::{MetadataImage, TopicImage};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use runnel_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{topic_name, Reply, Request};
use crate::broker::Broker;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: ElectLeadersRequest = request.decode()?;
    let election_type = if request.version >= 1 {
        body.election_type
    } else {
        PREFERRED
    };
    if !matches!(election_type, PREFERRED | UNCLEAN) {
        let response =
            ElectLeadersResponse::default().with_error_code(ErrorCode::InvalidRequest.code());
        return Ok(Reply::Ready(request.respond(&response)?));
    }
    let broker = Arc::clone(broker);
    Ok(Reply::Ordered(Box::pin(async move {
        let image = broker.controller.image();
        let mut results = Vec::new();
        match &body.topic_partitions {
            None => {
                for topic in image.topics() {
                    let mut partitions = Vec::new();
                    for partition in &topic.partitions {
                        let result =
                            elect(&broker, &image, topic, partition.partition, election_type).await;
                        if result.error_code != ErrorCode::ElectionNotNeeded.code() {
                            partitions.push(result);
                        }
                    }
                    results.push(
                        ReplicaElectionResult::default()
                            .with_topic(topic_name(&topic.name))
                            .with_partition_result(partitions),
                    );
                }
            }
            Some(requested) => {
                for topic in requested {
                    let name = topic.topic.as_str();
                    let mut partitions = Vec::new();
                    for &partition in &topic.partitions {
                        let result = match image.topic(name) {
                            None => failed(
                                partition,
                                ErrorCode::UnknownTopicOrPartition,
                                format!("No such topic as {name}"),
                            ),
                            Some(known) => {
                                elect(&broker, &image, known, partition, election_type).await
                            }
                        };
                        partitions.push(result);
                    }
                    results.push(
                        ReplicaElectionResult::default()
                            .with_topic(topic.topic.clone())
                            .with_partition_result(partitions),
                    );
                }
            }
        }
        let response = ElectLeadersResponse::default().with_replica_election_results(results);
        Ok(Reply::Ready(request.respond(&response)?))
    })))
}

fn failed(partition: i32, code: ErrorCode, message: String) -> PartitionResult {
    PartitionResult::default()
        .with_partition_id(partition)
        .with_error_code(code.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

/// One partition's election (see the module doc).
async fn elect(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
    partition: i32,
    election_type: i8,
) -> PartitionResult {
    let name = &topic.name;
    let Some(current) = usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
    else {
        return failed(
            partition,
            ErrorCode::UnknownTopicOrPartition,
            format!("No such partition as {name}-{partition}"),
        );
    };
    let not_needed = PartitionResult::default()
        .with_partition_id(partition)
        .with_error_code(ErrorCode::ElectionNotNeeded.code());
    let live_leader = !image.is_fenced(current.leader);
    if election_type == UNCLEAN {
        if live_leader {
            return not_needed;
        }
        return failed(
            partition,
            ErrorCode::EligibleLeadersNotAvailable,
            format!(
                "{name}-{partition} has no live in-sync replica; set \
                 unclean.leader.election.enable=true on the topic to let another replica lead"
            ),
        );
    }
    let preferred = current.replicas.first().copied().unwrap_or(current.leader);
    if preferred == current.leader && live_leader {
        return not_needed;
    }
    if !current.isr.contains(&preferred) || image.is_fenced(preferred) {
        return failed(
            partition,
            ErrorCode::PreferredLeaderNotAvailable,
            format!("Failed to elect leader for partition {name}-{partition} under strategy PreferredReplicaPartitionLeaderElectionStrategy"),
        );
    }
    match broker
        .controller
        .elect_preferred(topic.topic_id, partition)
        .await
    {
        Ok(true) => PartitionResult::default().with_partition_id(partition),
        Ok(false) => not_needed,
        Err(error) => failed(
            partition,
            ErrorCode::PreferredLeaderNotAvailable,
            error.to_string(),
        ),
    }
}
