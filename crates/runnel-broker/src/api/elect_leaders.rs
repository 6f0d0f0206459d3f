//! ElectLeaders (key 43): preferred (0) or unclean (1) leader election, as
//! `kafka-leader-election` and the admin clients' `electLeaders` ask for it.
//!
//! On a single node every partition is led by its preferred replica, this broker, so every
//! known partition answers `ELECTION_NOT_NEEDED` and nothing changes, exactly what Kafka's
//! controller answers for a partition already led by its preferred (or any live) replica. An
//! unknown topic or partition is `UNKNOWN_TOPIC_OR_PARTITION`; an unknown election type is
//! `INVALID_REQUEST` for the whole request. With null partitions (elect everywhere) the
//! partitions that need no election are left out of the answer, as Kafka does.

use std::sync::Arc;

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
    let image = broker.controller.image();
    let results = match &body.topic_partitions {
        // Every partition needs no election: every topic, none of its partitions.
        None => image
            .topics()
            .map(|topic| ReplicaElectionResult::default().with_topic(topic_name(&topic.name)))
            .collect(),
        Some(requested) => requested
            .iter()
            .map(|topic| {
                let name = topic.topic.as_str();
                let known = image.topic(name);
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|&partition| {
                        let exists = known
                            .is_some_and(|t| t.partitions.iter().any(|p| p.partition == partition));
                        let (code, message) = match (known, exists) {
                            (None, _) => (
                                ErrorCode::UnknownTopicOrPartition,
                                Some(format!("No such topic as {name}")),
                            ),
                            (Some(_), false) => (
                                ErrorCode::UnknownTopicOrPartition,
                                Some(format!("No such partition as {name}-{partition}")),
                            ),
                            (Some(_), true) => (ErrorCode::ElectionNotNeeded, None),
                        };
                        PartitionResult::default()
                            .with_partition_id(partition)
                            .with_error_code(code.code())
                            .with_error_message(message.map(StrBytes::from_string))
                    })
                    .collect();
                ReplicaElectionResult::default()
                    .with_topic(topic.topic.clone())
                    .with_partition_result(partitions)
            })
            .collect(),
    };
    let response = ElectLeadersResponse::default().with_replica_election_results(results);
    Ok(Reply::Ready(request.respond(&response)?))
}
