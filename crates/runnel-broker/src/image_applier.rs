//! Applies each new metadata image to this node, once: what DESIGN.md §8 asks of a broker
//! ("each new image is applied once").
//!
//! A change made through this node is applied here by the request that made it (the topic's
//! partitions are opened before its record is proposed, all or nothing, see
//! [`Broker::create_topic`]); a change made through another node reaches this one only as a
//! new image. For each image, against the one applied before it:
//! - a topic this node hosts that the image no longer names (or names with another topic
//!   id) is deleted here;
//! - a partition the image places on this node that is not open here is opened (its
//!   directory created); a directory already holding records that the metadata does not
//!   name is never adopted: the partition stays closed and the error is logged;
//! - a hosted partition whose leader epoch the image raised (a fencing of this broker, or
//!   its return) takes the new epoch;
//! - a topic whose config overrides changed gets its new settings;
//! - changed dynamic broker configs (the cluster default or this node's) are applied live;
//! - every partition hosted here takes the image's leader, replicas and ISR, and the replica
//!   fetchers follow, per leader, the partitions this node holds and another broker leads
//!   (a fenced leader is not fetched from: its partitions have no leader until it returns).
//!   The first image (the one the start opened partitions from) is assigned this way too.
//!
//! Each image is applied under the broker's creation lock, so that it never interleaves
//! with a creation or deletion in progress here: by the time the lock is free, that request
//! has installed (or discarded) its partitions and the image holds its record.

use std::collections::HashMap;
use std::sync::Arc;

use runnel_metadata::{MetadataImage, TopicImage};

use crate::broker::Broker;
use crate::config::TopicSettings;
use crate::partition::Partition;

/// Applies every image after `seen` (the one the start opened partitions from) until the
/// broker stops.
pub async fn run(broker: Arc<Broker>, mut seen: Arc<MetadataImage>) {
    let mut images = broker.controller.images();
    let mut stopping = broker.stopping();
    {
        let _creating = broker.lock_creations().await;
        assign_replicas(&broker, &seen);
    }
    loop {
        {
            // The image is read under the lock: one read before it could be older than what a
            // creation that held the lock installed meanwhile.
            let _creating = broker.lock_creations().await;
            let next = Arc::clone(&images.borrow_and_update().image);
            if !Arc::ptr_eq(&next, &seen) {
                apply(&broker, &seen, &next).await;
                seen = next;
            }
        }
        tokio::select! {
            changed = images.changed() => if changed.is_err() { return },
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// Applies `next` after `seen` (see the module doc), under the broker's creation lock.
async fn apply(broker: &Arc<Broker>, seen: &MetadataImage, next: &MetadataImage) {
    let node_id = broker.config.node_id;
    for (name, topic_id) in broker.replicas.hosted_topics() {
        let named = next.topic(&name).map(|topic| topic.topic_id);
        if topic_id.is_some() && named != topic_id {
            tracing::info!(topic = %name, "the metadata no longer names this topic; deleting its partitions here");
            let deleting = Arc::clone(broker);
            let outcome =
                tokio::task::spawn_blocking(move || deleting.replicas.delete_topic(&name)).await;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "deleting a removed topic's partitions"),
                Err(error) => tracing::error!(%error, "the deletion task failed"),
            }
        }
    }
    for topic in next.topics() {
        let before = seen.topic(&topic.name);
        if before.is_some_and(|before| Arc::ptr_eq(before, topic)) {
            continue;
        }
        open_placed_here(broker, topic).await;
        raise_leader_epochs(broker, topic);
        if let Some(before) = before {
            if before.topic_id == topic.topic_id && before.configs != topic.configs {
                match TopicSettings::resolve(&broker.dynamic.current(), &topic.configs) {
                    Ok(settings) => broker
                        .replicas
                        .update_topic_settings(&topic.name, &settings),
                    Err(error) => tracing::error!(
                        topic = %topic.name, %error,
                        "the topic's new configs do not resolve; kept as they were"
                    ),
                }
            }
        }
    }
    for resource in [String::new(), node_id.to_string()] {
        let configs = next.broker_configs(&resource);
        if configs != seen.broker_configs(&resource)
            && configs != *broker.dynamic.view().layers.of(&resource)
        {
            broker.apply_broker_configs(&resource, (*configs).clone());
        }
    }
    warn_of_unclean_elections(broker, seen, next);
    assign_replicas(broker, next);
    // The coordinators follow their internal topics' leadership only once the partitions
    // know their new roles.
    crate::group_coordinator::GroupCoordinator::follow_leadership(broker);
    crate::transaction_coordinator::TransactionCoordinator::follow_leadership(broker);
}

/// Logs at WARN each partition this node has just taken the lead of without being one of its
/// in-sync replicas before (an unclean leader election): what only the old ISR held is lost.
fn warn_of_unclean_elections(broker: &Broker, seen: &MetadataImage, next: &MetadataImage) {
    let node_id = broker.config.node_id;
    for topic in next.topics() {
        let Some(before) = seen
            .topic(&topic.name)
            .filter(|before| before.topic_id == topic.topic_id && !Arc::ptr_eq(before, topic))
        else {
            continue;
        };
        for (now, was) in topic.partitions.iter().zip(&before.partitions) {
            if now.leader == node_id && was.leader != node_id && !was.isr.contains(&node_id) {
                tracing::warn!(topic = %topic.name, partition = now.partition,
                    leader_epoch = now.leader_epoch, previous_isr = ?was.isr,
                    "unclean leader election: this out-of-sync replica now leads; records only \
                     the previous in-sync replicas held are lost");
            }
        }
    }
}

/// Gives every partition hosted here the image's leader, replicas and ISR, and points the
/// replica fetchers at the partitions this node follows (see the module doc).
fn assign_replicas(broker: &Arc<Broker>, image: &MetadataImage) {
    let node_id = broker.config.node_id;
    let mut by_leader: HashMap<i32, Vec<Arc<Partition>>> = HashMap::new();
    for topic in image.topics() {
        for placed in &topic.partitions {
            if !placed.is_replica(node_id) {
                continue;
            }
            let Some(partition) = broker.replicas.replica(&topic.name, placed.partition) else {
                continue;
            };
            if partition.topic_id != topic.topic_id {
                continue;
            }
            if broker.replicas.assign(&partition, placed) {
                tracing::info!(topic = %topic.name, partition = placed.partition,
                    leader_epoch = placed.leader_epoch, "leading the partition");
            }
            let leader = placed.leader;
            if leader != node_id && leader >= 0 && !image.is_fenced(leader) {
                by_leader.entry(leader).or_default().push(partition);
            }
        }
    }
    broker.fetchers.follow(broker, by_leader);
}

/// Gives the partitions of `topic` hosted here the leader epochs the image names, when higher
/// (a fencing of this broker and its return each bump them): new batches carry the epoch the
/// clients see in Metadata, and Fetch and ListOffsets check theirs against it.
fn raise_leader_epochs(broker: &Broker, topic: &TopicImage) {
    for image in &topic.partitions {
        let Some(partition) = broker.replicas.replica(&topic.name, image.partition) else {
            continue;
        };
        if partition.topic_id == topic.topic_id && partition.raise_leader_epoch(image.leader_epoch)
        {
            tracing::info!(
                topic = %topic.name,
                partition = image.partition,
                leader_epoch = image.leader_epoch,
                "new leader epoch"
            );
        }
    }
}

/// Opens the partitions of `topic` the image places on this node that are not open here.
async fn open_placed_here(broker: &Arc<Broker>, topic: &Arc<TopicImage>) {
    let missing: Vec<i32> = topic
        .partitions
        .iter()
        .filter(|p| broker.replicas.opens_here(&topic.name, p))
        .map(|p| p.partition)
        .collect();
    if missing.is_empty() {
        return;
    }
    let opening = Arc::clone(broker);
    let topic = Arc::clone(topic);
    let opened = tokio::task::spawn_blocking(move || {
        for &p in &missing {
            opening.replicas.check_no_directory(&topic.name, p..p + 1)?;
        }
        let prepared = opening.replicas.prepare_partitions(&topic, 0)?;
        opening.replicas.install(prepared);
        tracing::info!(topic = %topic.name, partitions = ?missing, "opened the partitions the metadata places here");
        Ok::<(), crate::replica_manager::OpenTopicError>(())
    })
    .await;
    match opened {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "opening partitions the metadata places here"),
        Err(error) => tracing::error!(%error, "the opening task failed"),
    }
}
