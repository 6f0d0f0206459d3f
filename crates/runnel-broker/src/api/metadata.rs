//! Metadata (key 3): brokers, cluster id, controller, and topics with their partitions.
//!
//! Request topics: v0 empty list or v1+ null means every topic. A topic may be named or, from
//! v10, given by id. An unknown named topic is created when `auto.create.topics.enable` is on
//! and the request allows it (always below v4, `allow_auto_topic_creation` from v4), with
//! `num.partitions` partitions; the creation is awaited before the response is built, so the same response describes it.
//! A creation past `max.broker.partitions` answers `POLICY_VIOLATION` for the topic.
//!
//! Authorized operations (KIP-430, v8+): asked for, every topic named in the answer (known
//! or not, as Kafka sets them on its whole `topicMetadata`; not the unknown-id entries) and,
//! v8–v10, the cluster carry what Kafka returns without an authorizer
//! ([`crate::authorized_operations`]); not asked, Kafka's sentinel `-2147483648`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use runnel_metadata::{validate_topic_name, TopicImage};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use runnel_protocol::messages::{MetadataRequest, MetadataResponse};
use runnel_protocol::{ErrorCode, StrBytes};
use uuid::Uuid;

use super::{topic_name, Reply, Request};
use crate::broker::Broker;
use crate::controller::ControllerError;

use crate::authorized_operations::{self, AUTHORIZED_OPERATIONS_OMITTED};

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: MetadataRequest = request.decode()?;
    let to_create = topics_to_create(broker, &body, request.version);
    if to_create.is_empty() {
        let response = respond(broker, &body, request.version, &HashMap::new());
        return Ok(Reply::Ready(request.respond(&response)?));
    }
    // The creations are awaited before the connection's next request is read, and the same
    // response describes them.
    let broker = Arc::clone(broker);
    Ok(Reply::Ordered(Box::pin(async move {
        let mut not_created = HashMap::new();
        for name in to_create {
            if let Some(refused) = auto_create(&broker, &name).await {
                not_created.insert(name, refused);
            }
        }
        let response = respond(&broker, &body, request.version, &not_created);
        Ok(Reply::Ready(request.respond(&response)?))
    })))
}

/// The named topics the request auto-creates: valid names not in the image, when allowed.
fn topics_to_create(broker: &Broker, body: &MetadataRequest, version: i16) -> Vec<String> {
    let allow_auto_create =
        broker.config.auto_create_topics_enable && (version < 4 || body.allow_auto_topic_creation);
    if !allow_auto_create {
        return Vec::new();
    }
    let image = broker.controller.image();
    let mut names: Vec<String> = body
        .topics
        .iter()
        .flatten()
        .filter_map(|requested| requested.name.as_ref().map(|name| name.to_string()))
        .filter(|name| validate_topic_name(name).is_ok() && image.topic(name).is_none())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The response; `not_created` holds the answer for each topic whose auto-creation failed.
fn respond(
    broker: &Broker,
    body: &MetadataRequest,
    version: i16,
    not_created: &HashMap<String, MetadataResponseTopic>,
) -> MetadataResponse {
    let all_topics = match &body.topics {
        None => true,
        Some(topics) => version == 0 && topics.is_empty(),
    };

    let topics: Vec<MetadataResponseTopic> = if all_topics {
        let image = broker.controller.image();
        image
            .topics()
            .map(|topic| describe_topic(broker, topic))
            .collect()
    } else {
        body.topics
            .iter()
            .flatten()
            .map(|requested| match &requested.name {
                Some(name) => topic_by_name(broker, name, not_created),
                None => topic_by_id(broker, requested.topic_id),
            })
            .collect()
    };

    let topic_operations = version >= 8 && body.include_topic_authorized_operations;
    let topics = topics
        .into_iter()
        .map(|mut topic| {
            if topic_operations && topic.name.is_some() {
                topic.topic_authorized_operations = authorized_operations::topic(true);
            }
            topic_for_version(topic, version)
        })
        .collect();
    let cluster_operations =
        (8..=10).contains(&version) && body.include_cluster_authorized_operations;
    let brokers = broker
        .live_brokers(false)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(b.node_id.into())
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id((version >= 2).then(|| StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(
            if version >= 1 {
                broker.controller_id_for_clients()
            } else {
                -1
            }
            .into(),
        )
        .with_topics(topics)
        .with_cluster_authorized_operations(authorized_operations::cluster(cluster_operations))
}

/// Clears the fields the request's version does not have: is_internal (v1+), leader_epoch
/// (v7+), topic_id (v10+).
fn topic_for_version(mut topic: MetadataResponseTopic, version: i16) -> MetadataResponseTopic {
    if version < 1 {
        topic.is_internal = false;
    }
    if version < 7 {
        for partition in &mut topic.partitions {
            partition.leader_epoch = -1;
        }
    }
    if version < 10 {
        topic.topic_id = Uuid::nil();
    }
    topic
}

fn topic_by_name(
    broker: &Broker,
    name: &str,
    not_created: &HashMap<String, MetadataResponseTopic>,
) -> MetadataResponseTopic {
    if let Err(error) = validate_topic_name(name) {
        tracing::debug!(%error, "metadata for an invalid topic name");
        return topic_error(Some(name), Uuid::nil(), ErrorCode::InvalidTopicException);
    }
    if let Some(topic) = broker.controller.image().topic(name) {
        return describe_topic(broker, topic);
    }
    match not_created.get(name) {
        Some(refused) => refused.clone(),
        None => topic_error(Some(name), Uuid::nil(), ErrorCode::UnknownTopicOrPartition),
    }
}

/// Creates topic `name` with `num.partitions` partitions; `None` once it exists (created
/// here or by another request meanwhile), else the topic's answer.
async fn auto_create(broker: &Arc<Broker>, name: &str) -> Option<MetadataResponseTopic> {
    let created = broker
        .create_topic(name, broker.config.num_partitions, BTreeMap::new())
        .await;
    match created {
        Ok(_) => {
            tracing::info!(topic = name, "auto-created topic");
            None
        }
        // Another request created it between our look and our write.
        Err(crate::broker::CreateTopicError::Controller(ControllerError::TopicAlreadyExists {
            ..
        })) if broker.controller.image().topic(name).is_some() => None,
        Err(error @ crate::broker::CreateTopicError::PartitionLimit { .. }) => {
            tracing::info!(topic = name, %error, "topic not auto-created");
            Some(topic_error(
                Some(name),
                Uuid::nil(),
                ErrorCode::PolicyViolation,
            ))
        }
        Err(error) => {
            tracing::error!(topic = name, %error, "auto-creating a topic failed");
            Some(topic_error(
                Some(name),
                Uuid::nil(),
                ErrorCode::LeaderNotAvailable,
            ))
        }
    }
}

fn topic_by_id(broker: &Broker, topic_id: Uuid) -> MetadataResponseTopic {
    match broker.controller.image().topic_by_id(&topic_id) {
        Some(topic) => describe_topic(broker, topic),
        None => topic_error(None, topic_id, ErrorCode::UnknownTopicId),
    }
}

/// A topic as the image has it; a partition whose log directory failed is reported as
/// Kafka reports a partition whose only replica is offline: `LEADER_NOT_AVAILABLE`, leader
/// -1, this node in `offline_replicas` (v5+) (see [`crate::log_dirs`]).
fn describe_topic(broker: &Broker, topic: &TopicImage) -> MetadataResponseTopic {
    let image = broker.controller.image();
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            // Its only replica is on a fenced broker (heartbeats stopped): no leader until
            // that broker returns, as Kafka reports a partition with no live replica.
            let fenced_leader = image.is_fenced(partition.leader);
            if fenced_leader || broker.replicas.is_offline(&topic.name, partition.partition) {
                return MetadataResponsePartition::default()
                    .with_error_code(ErrorCode::LeaderNotAvailable.code())
                    .with_partition_index(partition.partition)
                    .with_leader_id((-1).into())
                    .with_leader_epoch(partition.leader_epoch)
                    .with_replica_nodes(partition.replicas.iter().map(|&id| id.into()).collect())
                    .with_isr_nodes(partition.isr.iter().map(|&id| id.into()).collect())
                    .with_offline_replicas(
                        partition.replicas.iter().map(|&id| id.into()).collect(),
                    );
            }
            MetadataResponsePartition::default()
                .with_partition_index(partition.partition)
                .with_leader_id(partition.leader.into())
                .with_leader_epoch(partition.leader_epoch)
                .with_replica_nodes(partition.replicas.iter().map(|&id| id.into()).collect())
                .with_isr_nodes(partition.isr.iter().map(|&id| id.into()).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn topic_error(name: Option<&str>, topic_id: Uuid, error: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(topic_name))
        .with_topic_id(topic_id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
