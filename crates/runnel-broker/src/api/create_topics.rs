//! CreateTopics (key 19): validates and creates topics.
//!
//! Per topic: a legal name, not taken; `num_partitions` ≥ 1 or -1 for `num.partitions`;
//! `replication_factor` -1 (`default.replication.factor`) or within the number of unfenced
//! brokers; manual assignments of partitions `0..n`, the same number of distinct replicas
//! each, onto registered unfenced brokers; configs with Kafka's names and valid values. `validate_only`
//! checks without creating. Errors are per topic, with a message (Kafka's where it has one).

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
                        .with_replication_factor(created.factor as i16)
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
    factor: usize,
    topic_id: uuid::Uuid,
}

async fn create(
    broker: &Arc<Broker>,
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
    let (partitions, assignment, factor) = partition_count(broker, topic)?;
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
            factor,
            topic_id: uuid::Uuid::nil(),
        });
    }
    match broker
        .create_topic_on(name, partitions, assignment, factor, configs)
        .await
    {
        Ok(created) => Ok(Created {
            partitions,
            factor,
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

/// The partition count, and the replicas of each partition when the request assigns them.
/// The partition count, the manual assignment if any, and the replication factor.
type Planned = (i32, Option<Vec<Vec<i32>>>, usize);

fn partition_count(
    broker: &Broker,
    topic: &CreatableTopic,
) -> Result<Planned, (ErrorCode, String)> {
    if !topic.assignments.is_empty() {
        return manual_assignment(broker, topic);
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
    let factor = replication_factor as usize;
    match topic.num_partitions {
        -1 => Ok((broker.config.num_partitions, None, factor)),
        count if count >= 1 => Ok((count, None, factor)),
        count => Err((
            ErrorCode::InvalidPartitions,
            format!("Number of partitions was set to an invalid non-positive value: {count}."),
        )),
    }
}

/// One partition's replicas in a manual assignment (CreateTopics or CreatePartitions), checked
/// as Kafka's `ReplicationControlManager.validateManualPartitionAssignment` checks them, with
/// its messages: some replicas, none twice, each a registered broker that is not fenced.
pub(super) fn check_assigned_brokers(
    image: &runnel_metadata::MetadataImage,
    ids: &[i32],
) -> Result<(), String> {
    if ids.is_empty() {
        return Err("The manual partition assignment includes an empty replica list.".into());
    }
    if let Some(twice) = ids
        .iter()
        .enumerate()
        .find(|(at, id)| ids[..*at].contains(id))
    {
        return Err(format!(
            "The manual partition assignment includes the broker {} more than once.",
            twice.1
        ));
    }
    for id in ids {
        match image.broker(*id) {
            None => {
                return Err(format!(
                    "The manual partition assignment includes broker {id}, but no such broker is \
                     registered."
                ))
            }
            Some(registered) if registered.fenced => {
                return Err(format!(
                    "The manual partition assignment includes broker {id}, which is fenced."
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A manual assignment, checked as Kafka's `ReplicationControlManager` checks one (its
/// messages): partitions `0..n` in order, each with the same number of distinct registered
/// brokers.
fn manual_assignment(
    broker: &Broker,
    topic: &CreatableTopic,
) -> Result<Planned, (ErrorCode, String)> {
    let invalid = |message: String| Err((ErrorCode::InvalidReplicaAssignment, message));
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err((
            ErrorCode::InvalidRequest,
            "Both numPartitions or replicationFactor and replicasAssignments were set.".into(),
        ));
    }
    let image = broker.controller.image();
    let mut replicas = Vec::with_capacity(topic.assignments.len());
    for (expected, assignment) in topic.assignments.iter().enumerate() {
        if assignment.partition_index != expected as i32 {
            return invalid("partitions should be a consecutive 0-based integer sequence".into());
        }
        let ids: Vec<i32> = assignment.broker_ids.iter().map(|id| id.0).collect();
        if let Err(message) = check_assigned_brokers(&image, &ids) {
            return invalid(message);
        }
        if replicas
            .first()
            .is_some_and(|first: &Vec<i32>| first.len() != ids.len())
        {
            return invalid(
                "All partitions in the manual partition assignment must have the same number of \
                 replicas."
                    .into(),
            );
        }
        replicas.push(ids);
    }
    let factor = replicas.first().map_or(1, Vec::len);
    Ok((replicas.len() as i32, Some(replicas), factor))
}
