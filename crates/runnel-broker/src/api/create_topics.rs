//! CreateTopics (key 19): validates and creates topics.
//!
//! Per topic: a legal name, not taken; `num_partitions` ≥ 1 or -1 for `num.partitions`;
//! `replication_factor` -1 or within the number of brokers (one); manual assignments only onto
//! this broker; configs with Kafka's names and valid values. `validate_only` checks without
//! creating. Errors are per topic, with a message.

use std::collections::BTreeMap;
use std::sync::Arc;

use runnel_metadata::validate_topic_name;
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::create_topics_request::CreatableTopic;
use runnel_protocol::messages::create_topics_response::CreatableTopicResult;
use runnel_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::{Broker, CreateTopicError};
use crate::config::TopicSettings;

/// Most partitions one CreateTopics or CreatePartitions request may create: Kafka's
/// `ReplicationControlManager.MAX_PARTITIONS_PER_BATCH`.
pub const PARTITIONS_PER_REQUEST_MAX: i64 = 10_000;

/// Topics are created one after the other, each answered once its record is durable; the
/// connection reads its next request only after (Kafka handles a connection's requests one at
/// a time), so a Metadata request sent behind a CreateTopics sees the new topics.
pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: CreateTopicsRequest = request.decode()?;
    let broker = Arc::clone(broker);
    Ok(Reply::Ordered(Box::pin(async move {
        let too_many = requested_partitions(&broker, &body) > PARTITIONS_PER_REQUEST_MAX;
        let mut results = Vec::with_capacity(body.topics.len());
        for topic in &body.topics {
            let result = if too_many {
                Err((
                    ErrorCode::PolicyViolation,
                    "Excessively large number of partitions per request.".to_string(),
                ))
            } else {
                create(&broker, topic, body.validate_only).await
            };
            let mut response = CreatableTopicResult::default().with_name(topic.name.clone());
            match result {
                Ok(created) => {
                    response = response
                        .with_num_partitions(created.partitions)
                        .with_replication_factor(1)
                        .with_topic_id(created.topic_id);
                }
                Err((code, message)) => {
                    tracing::info!(topic = %topic.name.as_str(), error = %code, %message, "topic not created");
                    response = response
                        .with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(message)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1);
                }
            }
            results.push(for_version(response, request.version));
        }
        let response = CreateTopicsResponse::default().with_topics(results);
        Ok(Reply::Ready(request.respond(&response)?))
    })))
}

/// The partitions the request asks for, counted as Kafka does: `num.partitions` for -1, the
/// assignments when given, nothing for an invalid count.
fn requested_partitions(broker: &Broker, body: &CreateTopicsRequest) -> i64 {
    body.topics
        .iter()
        .map(
            |topic| match (topic.assignments.len(), topic.num_partitions) {
                (0, -1) => i64::from(broker.config.num_partitions),
                (0, count) => i64::from(count.max(0)),
                (assigned, _) => assigned as i64,
            },
        )
        .sum()
}

/// Clears the fields the request's version does not have: partition count and replication
/// factor (v5+), topic id (v7+).
fn for_version(mut result: CreatableTopicResult, version: i16) -> CreatableTopicResult {
    if version < 5 {
        result.num_partitions = -1;
        result.replication_factor = -1;
    }
    if version < 7 {
        result.topic_id = uuid::Uuid::nil();
    }
    result
}

struct Created {
    partitions: i32,
    topic_id: uuid::Uuid,
}

async fn create(
    broker: &Broker,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<Created, (ErrorCode, String)> {
    let name = topic.name.as_str();
    validate_topic_name(name)
        .map_err(|error| (ErrorCode::InvalidTopicException, error.to_string()))?;
    if broker.controller.image().topic(name).is_some() {
        return Err((
            ErrorCode::TopicAlreadyExists,
            format!("Topic '{name}' already exists."),
        ));
    }
    let partitions = partition_count(broker, topic)?;
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = &config.value else { continue };
        configs.insert(config.name.to_string(), value.to_string());
    }
    TopicSettings::resolve(&broker.dynamic.current(), &configs)
        .map_err(|error| (ErrorCode::InvalidConfig, error.to_string()))?;
    if validate_only {
        return Ok(Created {
            partitions,
            topic_id: uuid::Uuid::nil(),
        });
    }
    match broker.create_topic(name, partitions, configs).await {
        Ok(created) => Ok(Created {
            partitions,
            topic_id: created.topic_id,
        }),
        Err(CreateTopicError::Controller(
            crate::controller::ControllerError::TopicAlreadyExists { .. },
        )) => Err((
            ErrorCode::TopicAlreadyExists,
            format!("Topic '{name}' already exists."),
        )),
        Err(error @ CreateTopicError::PartitionLimit { .. }) => {
            Err((ErrorCode::PolicyViolation, error.to_string()))
        }
        Err(error) => {
            tracing::error!(topic = name, %error, "creating a topic failed");
            Err((ErrorCode::KafkaStorageError, error.to_string()))
        }
    }
}

fn partition_count(broker: &Broker, topic: &CreatableTopic) -> Result<i32, (ErrorCode, String)> {
    let node_id = broker.config.node_id;
    if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err((
                ErrorCode::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set.".into(),
            ));
        }
        for (expected, assignment) in topic.assignments.iter().enumerate() {
            let onto_us = assignment.broker_ids.len() == 1 && assignment.broker_ids[0] == node_id;
            if assignment.partition_index != expected as i32 || !onto_us {
                return Err((
                    ErrorCode::InvalidReplicaAssignment,
                    format!("replica assignments must place partitions 0..n on broker {node_id}"),
                ));
            }
        }
        return Ok(topic.assignments.len() as i32);
    }
    let replication_factor = match topic.replication_factor {
        -1 => broker.config.default_replication_factor,
        factor => factor,
    };
    if replication_factor < 1 {
        return Err((
            ErrorCode::InvalidReplicationFactor,
            "Replication factor must be larger than 0, or -1 to use the default value.".into(),
        ));
    }
    let live = broker.controller.image().unfenced_brokers().count().max(1);
    if replication_factor as usize > live {
        // Kafka's own message (`ReplicationControlManager`).
        return Err((
            ErrorCode::InvalidReplicationFactor,
            format!(
                "Replication factor: {replication_factor} larger than available brokers: {live}."
            ),
        ));
    }
    if replication_factor > 1 {
        return Err((
            ErrorCode::InvalidReplicationFactor,
            format!(
                "Replication factor {replication_factor} is not supported yet: every partition \
                 has one replica until partition replication lands."
            ),
        ));
    }
    match topic.num_partitions {
        -1 => Ok(broker.config.num_partitions),
        count if count >= 1 => Ok(count),
        count => Err((
            ErrorCode::InvalidPartitions,
            format!("Number of partitions was set to an invalid non-positive value: {count}."),
        )),
    }
}
