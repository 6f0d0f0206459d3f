//! AlterPartitionReassignments (key 45, KIP-455): move partitions' replicas to other brokers,
//! or cancel a move, as `kafka-reassign-partitions --execute/--cancel` and the admin clients'
//! `alterPartitionReassignments` ask.
//!
//! Each partition is answered as Kafka's `ReplicationControlManager.alterPartitionReassignment`
//! answers it, with its messages: an unknown topic or partition is
//! `UNKNOWN_TOPIC_OR_PARTITION`; null replicas (cancel) is `NO_REASSIGNMENT_IN_PROGRESS`,
//! since a single node never has one in progress; a target replica list is checked as
//! `validateManualPartitionAssignment` checks it (empty, a broker that is not registered, a
//! broker named twice: `INVALID_REPLICA_ASSIGNMENT`), and the only valid target on a single
//! node, this broker, is the current replica set: Kafka's controller writes no record for it
//! and answers success. Nothing is ever written, so nothing is ever in progress.

use std::sync::Arc;

use runnel_metadata::MetadataImage;
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use runnel_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: AlterPartitionReassignmentsRequest = request.decode()?;
    let image = broker.controller.image();
    let node_id = broker.config.node_id;
    let responses = body
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let outcome = alter_one(
                        &image,
                        node_id,
                        topic.name.as_str(),
                        partition.partition_index,
                        partition.replicas.as_deref(),
                    );
                    let (code, message) = match outcome {
                        Ok(()) => (ErrorCode::None, None),
                        Err((code, message)) => {
                            tracing::info!(
                                topic = topic.name.as_str(),
                                partition = partition.partition_index,
                                %message,
                                "unable to alter partition reassignment"
                            );
                            (code, Some(StrBytes::from_string(message)))
                        }
                    };
                    ReassignablePartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code.code())
                        .with_error_message(message)
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let response = AlterPartitionReassignmentsResponse::default().with_responses(responses);
    Ok(Reply::Ready(request.respond(&response)?))
}

/// One partition's outcome: `Ok` for a target equal to the current replicas (a no-op), else
/// Kafka's error and message.
fn alter_one(
    image: &MetadataImage,
    node_id: i32,
    topic: &str,
    partition: i32,
    replicas: Option<&[BrokerId]>,
) -> Result<(), (ErrorCode, String)> {
    let unknown = |message: String| (ErrorCode::UnknownTopicOrPartition, message);
    let known = image
        .topic(topic)
        .ok_or_else(|| unknown(format!("Unable to find a topic named {topic}.")))?;
    if !known.partitions.iter().any(|p| p.partition == partition) {
        return Err(unknown(format!(
            "Unable to find partition {topic}:{partition}."
        )));
    }
    let Some(replicas) = replicas else {
        return Err((
            ErrorCode::NoReassignmentInProgress,
            "No partition reassignment is in progress.".to_string(),
        ));
    };
    validate_manual_assignment(replicas, node_id)
}

/// Kafka's `validateManualPartitionAssignment` where the only registered broker is `node_id`.
fn validate_manual_assignment(
    replicas: &[BrokerId],
    node_id: i32,
) -> Result<(), (ErrorCode, String)> {
    let invalid = |message: String| (ErrorCode::InvalidReplicaAssignment, message);
    if replicas.is_empty() {
        return Err(invalid(
            "The manual partition assignment includes an empty replica list.".to_string(),
        ));
    }
    let mut sorted: Vec<i32> = replicas.iter().map(|id| id.0).collect();
    sorted.sort_unstable();
    let mut previous = None;
    for broker_id in sorted {
        if broker_id != node_id {
            return Err(invalid(format!(
                "The manual partition assignment includes broker {broker_id}, but no such \
                 broker is registered."
            )));
        }
        if previous == Some(broker_id) {
            return Err(invalid(format!(
                "The manual partition assignment includes the broker {broker_id} more than \
                 once."
            )));
        }
        previous = Some(broker_id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_assignments_are_checked_as_kafka_checks_them() {
        assert!(validate_manual_assignment(&[BrokerId(1)], 1).is_ok());
        let (code, message) = validate_manual_assignment(&[], 1).expect_err("empty");
        assert_eq!(code, ErrorCode::InvalidReplicaAssignment);
        assert!(message.contains("empty replica list"));
        let (_, message) =
            validate_manual_assignment(&[BrokerId(1), BrokerId(2)], 1).expect_err("unknown broker");
        assert!(message.contains("broker 2, but no such broker is registered"));
        let (_, message) =
            validate_manual_assignment(&[BrokerId(1), BrokerId(1)], 1).expect_err("twice");
        assert!(message.contains("broker 1 more than once"));
    }
}
