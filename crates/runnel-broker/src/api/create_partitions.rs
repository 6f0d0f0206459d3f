//! CreatePartitions (key 37): grows topics to a new partition count.
//!
//! Per topic, in Kafka's order: named once in the request (`INVALID_REQUEST`), known
//! (`UNKNOWN_TOPIC_OR_PARTITION`), not `__consumer_offsets` (groups are mapped to its
//! partitions by count, so growing it would move every group: `INVALID_REQUEST`), a count above
//! the current one (`INVALID_PARTITIONS`), and manual assignments, if any, one per new
//! partition, each one registered, unfenced broker as the topic has one replica per partition
//! (`INVALID_REPLICA_ASSIGNMENT`, Kafka's messages); each new partition then goes to the broker
//! its assignment names, else where the controller places it. `validate_only` checks
//! without changing anything. Limits as CreateTopics (`POLICY_VIOLATION`): at most
//! `PARTITIONS_PER_REQUEST_MAX` new partitions per request, and never past
//! `max.broker.partitions`. All or nothing (`Broker::create_partitions`): the new partitions
//! are opened first and the count is recorded after, so a failure in between leaves the topic
//! as it was. Errors are per topic, with a message.

use std::collections::HashSet;
use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use runnel_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use runnel_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::{Broker, CreateTopicError};
use crate::group_coordinator::OFFSETS_TOPIC;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: CreatePartitionsRequest = request.decode()?;
    let mut seen = HashSet::new();
    let duplicated: HashSet<String> = body
        .topics
        .iter()
        .filter(|topic| !seen.insert(topic.name.as_str()))
        .map(|topic| topic.name.to_string())
        .collect();
    let image = broker.controller.image();
    let added: i64 = body
        .topics
        .iter()
        .map(|topic| {
            let current = image
                .topic(topic.name.as_str())
                .map_or(0, |t| t.partitions.len());
            (i64::from(topic.count) - current as i64).max(0)
        })
        .sum();
    let too_many = added > super::create_topics::PARTITIONS_PER_REQUEST_MAX;
    let broker = Arc::clone(broker);
    // In request order, and the connection's next request only after (see CreateTopics).
    Ok(Reply::Ordered(Box::pin(async move {
        let mut results = Vec::with_capacity(body.topics.len());
        for topic in &body.topics {
            let name = topic.name.as_str();
            let outcome = if too_many {
                Err((
                    ErrorCode::PolicyViolation,
                    "Excessively large number of partitions per request.".to_string(),
                ))
            } else if duplicated.contains(name) {
                Err((
                    ErrorCode::InvalidRequest,
                    "Duplicate topic name.".to_string(),
                ))
            } else {
                create(&broker, topic, body.validate_only).await
            };
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            results.push(match outcome {
                Ok(()) => result,
                Err((code, message)) => {
                    tracing::info!(topic = name, error = %code, %message, "partitions not created");
                    result
                        .with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(message)))
                }
            });
        }
        let response = CreatePartitionsResponse::default().with_results(results);
        Ok(Reply::Ready(request.respond(&response)?))
    })))
}

async fn create(
    broker: &Arc<Broker>,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    let name = topic.name.as_str();
    let Some(image) = broker.controller.image().topic(name).cloned() else {
        return Err((
            ErrorCode::UnknownTopicOrPartition,
            format!("The topic '{name}' does not exist."),
        ));
    };
    if name == OFFSETS_TOPIC {
        return Err((
            ErrorCode::InvalidRequest,
            format!("Partitions cannot be added to {OFFSETS_TOPIC}: groups are mapped to its partitions by their count."),
        ));
    }
    let current = image.partitions.len() as i32;
    if topic.count < current {
        return Err((
            ErrorCode::InvalidPartitions,
            format!(
                "The topic {name} currently has {current} partition(s); {} would not be an increase.",
                topic.count
            ),
        ));
    }
    if topic.count == current {
        return Err((
            ErrorCode::InvalidPartitions,
            format!("Topic already has {current} partition(s)."),
        ));
    }
    if let Some(assignments) = &topic.assignments {
        let added = topic.count - current;
        if assignments.len() as i32 != added {
            return Err((
                ErrorCode::InvalidReplicaAssignment,
                format!(
                    "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                    assignments.len()
                ),
            ));
        }
    }
    let cluster = broker.controller.image();
    let assignment = match &topic.assignments {
        None => None,
        Some(assignments) => {
            let mut replicas = Vec::with_capacity(assignments.len());
            for assignment in assignments {
                let ids: Vec<i32> = assignment.broker_ids.iter().map(|id| id.0).collect();
                super::create_topics::check_assigned_brokers(&cluster, &ids)
                    .map_err(|message| (ErrorCode::InvalidReplicaAssignment, message))?;
                // Kafka's message: every partition of a topic has as many replicas.
                let factor = image.partitions.first().map_or(1, |p| p.replicas.len());
                if ids.len() != factor {
                    return Err((
                        ErrorCode::InvalidReplicaAssignment,
                        format!(
                            "The manual partition assignment includes a partition with {} \
                             replica(s), but this is not consistent with previous partitions, \
                             which have {factor} replica(s).",
                            ids.len()
                        ),
                    ));
                }
                replicas.push(ids);
            }
            Some(replicas)
        }
    };
    if validate_only {
        return Ok(());
    }
    broker
        .create_partitions_on(image.topic_id, topic.count, assignment)
        .await
        .map(|_| ())
        .map_err(|error| match error {
            CreateTopicError::PartitionLimit { .. } => {
                (ErrorCode::PolicyViolation, error.to_string())
            }
            error => {
                tracing::error!(topic = name, %error, "adding partitions failed");
                (ErrorCode::KafkaStorageError, error.to_string())
            }
        })
}
