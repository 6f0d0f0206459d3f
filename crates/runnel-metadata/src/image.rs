//! The metadata image: an immutable snapshot of the cluster's metadata.
//!
//! Readers hold an `Arc<MetadataImage>` for as long as they like; a change builds a new image
//! with [`MetadataImage::apply`] and the writer publishes it. Applying a record that does not
//! fit the image (a topic that already exists, removing an unknown id) leaves the image as it
//! was: the writer validates before it appends, so such a record only appears when replaying a
//! log written by a buggy version, and skipping it is the safe reading.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use uuid::Uuid;

use crate::record::MetadataRecord;

/// Two topics of one name or one topic id, in parts given to [`MetadataImage::from_parts`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("topic {name} (id {topic_id}) appears twice")]
pub struct DuplicateTopic {
    pub name: String,
    pub topic_id: Uuid,
}

/// One partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub partition: i32,
    pub leader: i32,
    /// Bumped on every change of leader, and when the leader is fenced or returns.
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Bumped on every change of the partition's leader or ISR (Kafka's partition epoch):
    /// a leader's ISR change names the epoch it was based on, and a stale one is refused.
    pub partition_epoch: i32,
}

impl PartitionImage {
    /// A new partition: `leader` its only replica, at leader epoch 0.
    pub fn led_by(partition: i32, leader: i32) -> PartitionImage {
        PartitionImage {
            partition,
            leader,
            leader_epoch: 0,
            replicas: vec![leader],
            isr: vec![leader],
            partition_epoch: 0,
        }
    }

    /// A new partition on `replicas` (all in sync), the first its leader, at leader epoch 0;
    /// led by `fallback` alone when `replicas` is empty.
    pub fn placed(partition: i32, replicas: Option<&Vec<i32>>, fallback: i32) -> PartitionImage {
        match replicas.filter(|replicas| !replicas.is_empty()) {
            Some(replicas) => PartitionImage {
                partition,
                leader: replicas[0],
                leader_epoch: 0,
                replicas: replicas.clone(),
                isr: replicas.clone(),
                partition_epoch: 0,
            },
            None => PartitionImage::led_by(partition, fallback),
        }
    }

    /// Whether `node_id` holds a replica of this partition.
    pub fn is_replica(&self, node_id: i32) -> bool {
        self.replicas.contains(&node_id)
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionImage>,
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }
}

/// The most recent topic removals an image remembers ([`MetadataImage::removed_topics`]).
pub const REMOVED_TOPICS_KEPT: usize = 10_000;

/// A topic a RemoveTopic record deleted, as it was: what lets a start tell the directories of
/// a deletion it did not finish (removed) from data the metadata lost (kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedTopic {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: i32,
}

/// A registered broker: where clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Fenced by the active controller: its heartbeats stopped ([`MetadataRecord::BrokerFencing`]).
    pub fenced: bool,
}

/// The cluster's metadata at one point of the metadata log.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    topics_by_name: BTreeMap<String, Arc<TopicImage>>,
    names_by_id: HashMap<Uuid, String>,
    next_producer_id: i64,
    /// Dynamic broker configs by resource name: a node id, or "" for the cluster default.
    broker_configs: BTreeMap<String, Arc<BTreeMap<String, String>>>,
    /// The last [`REMOVED_TOPICS_KEPT`] topics removed, oldest first. A directory of an older
    /// removal is no longer recognised and is kept as a stray one: the bound only ever errs
    /// on the side of keeping data.
    removed_topics: Arc<VecDeque<RemovedTopic>>,
    /// Registered brokers by node id.
    brokers: Arc<BTreeMap<i32, BrokerRegistration>>,
    /// The cluster id the quorum recorded (`None` before the first [`MetadataRecord::ClusterId`]).
    cluster_id: Option<Arc<str>>,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics_by_name.get(name)
    }

    pub fn topic_by_id(&self, topic_id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.names_by_id
            .get(topic_id)
            .and_then(|name| self.topics_by_name.get(name))
    }

    /// Topics in name order.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.topics_by_name.values()
    }

    /// The first producer id not yet allocated to any block.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// The dynamic configs of broker resource `resource_name` (a node id, or "" for the
    /// cluster default); empty when none were set.
    pub fn broker_configs(&self, resource_name: &str) -> Arc<BTreeMap<String, String>> {
        self.broker_configs
            .get(resource_name)
            .cloned()
            .unwrap_or_default()
    }

    /// Every broker resource that has dynamic configs, in name order (a snapshot of the image
    /// writes them all).
    pub fn broker_config_resources(
        &self,
    ) -> impl Iterator<Item = (&str, &Arc<BTreeMap<String, String>>)> {
        self.broker_configs
            .iter()
            .map(|(name, configs)| (name.as_str(), configs))
    }

    /// Registered brokers in node id order.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values()
    }

    pub fn broker(&self, node_id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&node_id)
    }

    /// Registered brokers that are not fenced, in node id order.
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|broker| !broker.fenced)
    }

    /// Whether `node_id` is registered and fenced.
    pub fn is_fenced(&self, node_id: i32) -> bool {
        self.brokers
            .get(&node_id)
            .is_some_and(|broker| broker.fenced)
    }

    /// The cluster id the quorum recorded, if it has one yet.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// This image with `cluster_id` (how a snapshot reads it back).
    pub fn with_cluster_id(mut self, cluster_id: Option<String>) -> MetadataImage {
        self.cluster_id = cluster_id.map(Arc::from);
        self
    }

    /// This image with exactly `brokers` registered (how a snapshot reads them back).
    pub fn with_brokers(mut self, brokers: Vec<BrokerRegistration>) -> MetadataImage {
        self.brokers = Arc::new(brokers.into_iter().map(|b| (b.node_id, b)).collect());
        self
    }

    /// The topics removed most recently (at most [`REMOVED_TOPICS_KEPT`]), oldest first.
    pub fn removed_topics(&self) -> impl Iterator<Item = &RemovedTopic> {
        self.removed_topics.iter()
    }

    /// The image holding exactly these parts: how a snapshot of the metadata log (written from
    /// [`MetadataImage::topics`], [`MetadataImage::next_producer_id`],
    /// [`MetadataImage::broker_config_resources`] and [`MetadataImage::removed_topics`]) is
    /// read back. Two topics with one name or
    /// one topic id break the image's invariants and are refused.
    pub fn from_parts(
        topics: Vec<TopicImage>,
        next_producer_id: i64,
        broker_configs: BTreeMap<String, BTreeMap<String, String>>,
        removed_topics: Vec<RemovedTopic>,
    ) -> Result<MetadataImage, DuplicateTopic> {
        let skip = removed_topics.len().saturating_sub(REMOVED_TOPICS_KEPT);
        let mut image = MetadataImage {
            next_producer_id,
            removed_topics: Arc::new(removed_topics.into_iter().skip(skip).collect()),
            ..MetadataImage::default()
        };
        for topic in topics {
            if image.topics_by_name.contains_key(&topic.name)
                || image.names_by_id.contains_key(&topic.topic_id)
            {
                return Err(DuplicateTopic {
                    name: topic.name,
                    topic_id: topic.topic_id,
                });
            }
            image.names_by_id.insert(topic.topic_id, topic.name.clone());
            image
                .topics_by_name
                .insert(topic.name.clone(), Arc::new(topic));
        }
        image.broker_configs = broker_configs
            .into_iter()
            .filter(|(_, configs)| !configs.is_empty())
            .map(|(name, configs)| (name, Arc::new(configs)))
            .collect();
        Ok(image)
    }

    /// The image after `record`.
    pub fn apply(&self, record: &MetadataRecord) -> MetadataImage {
        let mut next = self.clone();
        match record {
            MetadataRecord::Topic {
                name,
                topic_id,
                partitions,
                leader,
                configs,
                replicas,
            } => {
                if next.topics_by_name.contains_key(name) || next.names_by_id.contains_key(topic_id)
                {
                    return next;
                }
                let partitions = (0..*partitions)
                    .map(|partition| {
                        let placed = usize::try_from(partition)
                            .ok()
                            .and_then(|p| replicas.get(p));
                        PartitionImage::placed(partition, placed, *leader)
                    })
                    .collect();
                let topic = TopicImage {
                    name: name.clone(),
                    topic_id: *topic_id,
                    partitions,
                    configs: configs.clone(),
                };
                next.names_by_id.insert(*topic_id, name.clone());
                next.topics_by_name.insert(name.clone(), Arc::new(topic));
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = next.names_by_id.remove(topic_id) {
                    if let Some(topic) = next.topics_by_name.remove(&name) {
                        let removed = Arc::make_mut(&mut next.removed_topics);
                        if removed.len() == REMOVED_TOPICS_KEPT {
                            removed.pop_front();
                        }
                        removed.push_back(RemovedTopic {
                            name,
                            topic_id: *topic_id,
                            partitions: topic.partitions.len() as i32,
                        });
                    }
                }
            }
            MetadataRecord::PartitionCount {
                topic_id,
                partitions,
                leader,
                replicas,
            } => {
                let Some(name) = next.names_by_id.get(topic_id) else {
                    return next;
                };
                if let Some(topic) = next.topics_by_name.get_mut(name) {
                    let topic = Arc::make_mut(topic);
                    let first_new = topic.partitions.len() as i32;
                    topic.partitions.extend((first_new..*partitions).map(|p| {
                        let placed = usize::try_from(p - first_new)
                            .ok()
                            .and_then(|j| replicas.get(j));
                        PartitionImage::placed(p, placed, *leader)
                    }));
                }
            }
            MetadataRecord::TopicConfigs { topic_id, configs } => {
                let Some(name) = next.names_by_id.get(topic_id) else {
                    return next;
                };
                if let Some(topic) = next.topics_by_name.get_mut(name) {
                    Arc::make_mut(topic).configs = configs.clone();
                }
                next.elect_unclean_where_allowed();
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                next.next_producer_id = next.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::BrokerConfigs {
                resource_name,
                configs,
            } => {
                if configs.is_empty() {
                    next.broker_configs.remove(resource_name);
                } else {
                    next.broker_configs
                        .insert(resource_name.clone(), Arc::new(configs.clone()));
                }
                if resource_name.is_empty() {
                    next.elect_unclean_where_allowed();
                }
            }
            MetadataRecord::RegisterBroker {
                node_id,
                host,
                port,
                rack,
            } => {
                let registration = BrokerRegistration {
                    node_id: *node_id,
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                    fenced: false,
                };
                let was_fenced = next.is_fenced(*node_id);
                Arc::make_mut(&mut next.brokers).insert(*node_id, registration);
                // A registration unfences: its partitions have a leader again.
                if was_fenced {
                    next.bump_leader_epochs_of(*node_id);
                }
            }
            MetadataRecord::BrokerFencing { node_id, fenced } => {
                let changed = next
                    .brokers
                    .get(node_id)
                    .is_some_and(|broker| broker.fenced != *fenced);
                if let Some(broker) = Arc::make_mut(&mut next.brokers).get_mut(node_id) {
                    broker.fenced = *fenced;
                }
                if changed && *fenced {
                    next.fail_over_from(*node_id);
                } else if changed {
                    // The partitions it leads get their leader back: a new leader epoch, as
                    // Kafka's controller bumps it on every leader change, so clients tell
                    // the metadata before from the metadata after (KIP-320).
                    next.bump_leader_epochs_of(*node_id);
                }
                if changed {
                    next.elect_unclean_where_allowed();
                }
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
            } => {
                let Some(name) = next.names_by_id.get(topic_id) else {
                    return next;
                };
                let Some(topic) = next.topics_by_name.get_mut(name) else {
                    return next;
                };
                let Some(index) = usize::try_from(*partition)
                    .ok()
                    .filter(|&i| i < topic.partitions.len())
                else {
                    return next;
                };
                let image = &mut Arc::make_mut(topic).partitions[index];
                if let Some(leader) = leader {
                    if *leader != image.leader {
                        image.leader = *leader;
                        image.leader_epoch = image.leader_epoch.saturating_add(1);
                    }
                }
                if let Some(isr) = isr {
                    image.isr = isr.clone();
                }
                image.partition_epoch = image.partition_epoch.saturating_add(1);
            }
            MetadataRecord::ClusterId { cluster_id } => {
                if next.cluster_id.is_none() {
                    next.cluster_id = Some(Arc::from(cluster_id.as_str()));
                }
            }
        }
        next
    }

    /// What fencing `node_id` does to the partitions (Kafka's `ReplicationControlManager.
    /// handleBrokerFenced`, derived here from the fencing record rather than written as
    /// partition change records, so one record stays one change however many partitions
    /// the broker holds): it leaves every ISR it is in, unless it is the last member there;
    /// a partition it led is taken over by the first of its replicas still in the ISR and
    /// unfenced, at a new leader epoch. A partition where no other in-sync replica is left
    /// keeps it as leader, at a new leader epoch, and has no leader to clients
    /// (`LEADER_NOT_AVAILABLE`) until it returns: an out-of-sync replica never leads here.
    fn fail_over_from(&mut self, node_id: i32) {
        let fenced = self.fenced_ids();
        let touched = |p: &PartitionImage| {
            p.leader == node_id || (p.isr.contains(&node_id) && p.isr.len() > 1)
        };
        for topic in self.topics_by_name.values_mut() {
            change_partitions_where(topic, touched, |partition| {
                if partition.isr.contains(&node_id) && partition.isr.len() > 1 {
                    partition.isr.retain(|&id| id != node_id);
                    partition.partition_epoch = partition.partition_epoch.saturating_add(1);
                }
                if partition.leader != node_id {
                    return;
                }
                let successor = partition.replicas.iter().copied().find(|id| {
                    *id != node_id && partition.isr.contains(id) && !fenced.contains(id)
                });
                if let Some(successor) = successor {
                    partition.leader = successor;
                    partition.partition_epoch = partition.partition_epoch.saturating_add(1);
                }
                partition.leader_epoch = partition.leader_epoch.saturating_add(1);
            });
        }
    }

    /// The node ids of the registered brokers that are fenced.
    fn fenced_ids(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| b.fenced)
            .map(|b| b.node_id)
            .collect()
    }

    /// Whether `topic` allows an out-of-sync replica to lead (`unclean.leader.election.enable`:
    /// the topic's override, else the cluster-wide dynamic default; a broker's static
    /// `server.properties` is not in the metadata, so it cannot decide this for the cluster).
    pub fn unclean_election_enabled(&self, topic: &TopicImage) -> bool {
        const KEY: &str = "unclean.leader.election.enable";
        let value = topic
            .configs
            .get(KEY)
            .cloned()
            .or_else(|| self.broker_configs("").get(KEY).cloned());
        value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// Unclean leader election (Kafka's `unclean.leader.election.enable`): a partition whose
    /// in-sync replicas are all fenced, in a topic that allows it, is taken over by the first
    /// unfenced replica, which becomes the whole ISR, at a new leader epoch. Whatever only the
    /// fenced replicas held is lost; the broker that takes over logs it at WARN.
    fn elect_unclean_where_allowed(&mut self) {
        let allowed: Vec<String> = self
            .topics_by_name
            .values()
            .filter(|topic| self.unclean_election_enabled(topic))
            .map(|topic| topic.name.clone())
            .collect();
        let fenced = self.fenced_ids();
        let electable =
            |p: &PartitionImage| p.replicas.iter().copied().find(|id| !fenced.contains(id));
        let offline_and_electable = |p: &PartitionImage| {
            !p.isr.is_empty()
                && p.isr.iter().all(|id| fenced.contains(id))
                && electable(p).is_some()
        };
        for name in allowed {
            let Some(topic) = self.topics_by_name.get_mut(&name) else {
                continue;
            };
            change_partitions_where(topic, offline_and_electable, |partition| {
                if let Some(successor) = electable(partition) {
                    partition.leader = successor;
                    partition.isr = vec![successor];
                    partition.leader_epoch = partition.leader_epoch.saturating_add(1);
                    partition.partition_epoch = partition.partition_epoch.saturating_add(1);
                }
            });
        }
    }

    /// One more leader epoch for every partition `node_id` leads.
    fn bump_leader_epochs_of(&mut self, node_id: i32) {
        for topic in self.topics_by_name.values_mut() {
            change_partitions_where(
                topic,
                |p| p.leader == node_id,
                |partition| partition.leader_epoch = partition.leader_epoch.saturating_add(1),
            );
        }
    }
}

/// Applies `change` to the partitions of `topic` that `touched` selects, copying the topic
/// (shared with older images) only when one is.
fn change_partitions_where(
    topic: &mut Arc<TopicImage>,
    touched: impl Fn(&PartitionImage) -> bool,
    mut change: impl FnMut(&mut PartitionImage),
) {
    if !topic.partitions.iter().any(&touched) {
        return;
    }
    for partition in &mut Arc::make_mut(topic).partitions {
        if touched(partition) {
            change(partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(node_id: i32) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            node_id,
            host: "h".into(),
            port: 9092,
            rack: None,
        }
    }

    fn fence(node_id: i32, fenced: bool) -> MetadataRecord {
        MetadataRecord::BrokerFencing { node_id, fenced }
    }

    #[test]
    fn fencing_and_return_each_bump_the_leader_epochs_of_the_brokers_partitions() {
        let placed = MetadataRecord::Topic {
            name: "t".into(),
            topic_id: Uuid::new_v4(),
            partitions: 2,
            leader: 1,
            configs: BTreeMap::new(),
            replicas: vec![vec![1], vec![2]],
        };
        let epochs = |image: &MetadataImage| -> Vec<i32> {
            let topic = image.topic("t").expect("topic");
            topic.partitions.iter().map(|p| p.leader_epoch).collect()
        };
        let image = MetadataImage::default()
            .apply(&register(1))
            .apply(&register(2))
            .apply(&placed);
        let start = epochs(&image);
        let fenced = image.apply(&fence(2, true));
        assert_eq!(
            epochs(&fenced),
            vec![start[0], start[1] + 1],
            "only broker 2's partition"
        );
        let again = fenced.apply(&fence(2, true));
        assert_eq!(epochs(&again), epochs(&fenced), "no change, no bump");
        let back = again.apply(&fence(2, false));
        assert_eq!(epochs(&back), vec![start[0], start[1] + 2]);
        // A registration of a fenced broker unfences it: a bump too.
        let refenced = back.apply(&fence(2, true)).apply(&register(2));
        assert!(!refenced.is_fenced(2));
        assert_eq!(epochs(&refenced), vec![start[0], start[1] + 4]);
    }

    #[test]
    fn fencing_moves_leadership_to_an_in_sync_replica_and_shrinks_the_isr() {
        let id = Uuid::new_v4();
        let placed = MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
            partitions: 3,
            leader: 1,
            configs: BTreeMap::new(),
            replicas: vec![vec![1, 2, 3], vec![2, 3, 1], vec![1]],
        };
        let part =
            |image: &MetadataImage, p: usize| image.topic("t").expect("t").partitions[p].clone();
        let image = [register(1), register(2), register(3), placed]
            .iter()
            .fold(MetadataImage::default(), |image, record| {
                image.apply(record)
            });
        let fenced = image.apply(&fence(1, true));
        // Led by 1: 2 takes over at a new leader epoch; 1 leaves the ISR.
        let p0 = part(&fenced, 0);
        assert_eq!(
            (p0.leader, p0.leader_epoch, p0.isr.clone()),
            (2, 1, vec![2, 3])
        );
        assert!(p0.partition_epoch > 0);
        // Followed by 1: it leaves the ISR, the leader stays.
        let p1 = part(&fenced, 1);
        assert_eq!(
            (p1.leader, p1.leader_epoch, p1.isr.clone()),
            (2, 0, vec![2, 3])
        );
        // 1 alone: it stays leader and ISR, at a new epoch, with no leader to clients.
        let p2 = part(&fenced, 2);
        assert_eq!(
            (p2.leader, p2.leader_epoch, p2.isr.clone()),
            (1, 1, vec![1])
        );
        // 2 fenced too: 3 is the last in-sync replica of both.
        let both = fenced.apply(&fence(2, true));
        let p0 = part(&both, 0);
        assert_eq!(
            (p0.leader, p0.leader_epoch, p0.isr.clone()),
            (3, 2, vec![3])
        );
        // 3 fenced as well: the last in-sync replica keeps the lead, offline.
        let all = both.apply(&fence(3, true));
        assert_eq!(
            (part(&all, 0).leader, part(&all, 0).isr.clone()),
            (3, vec![3])
        );
        // A return does not put 1 back in the ISR: its leader does, once it caught up.
        let back = both.apply(&fence(1, false));
        assert_eq!(part(&back, 0).isr, vec![3]);
        let grown = back.apply(&MetadataRecord::PartitionChange {
            topic_id: id,
            partition: 0,
            leader: None,
            isr: Some(vec![3, 1]),
        });
        let p0 = part(&grown, 0);
        assert_eq!((p0.leader, p0.isr.clone()), (3, vec![3, 1]));
        assert_eq!(p0.partition_epoch, part(&back, 0).partition_epoch + 1);
        assert_eq!(
            p0.leader_epoch,
            part(&back, 0).leader_epoch,
            "same leader, same epoch"
        );
        let moved = grown.apply(&MetadataRecord::PartitionChange {
            topic_id: id,
            partition: 0,
            leader: Some(1),
            isr: None,
        });
        assert_eq!(part(&moved, 0).leader_epoch, p0.leader_epoch + 1);
        // Unknown partitions change nothing.
        let same = moved.apply(&MetadataRecord::PartitionChange {
            topic_id: id,
            partition: 9,
            leader: Some(2),
            isr: None,
        });
        assert_eq!(same.topic("t"), moved.topic("t"));
    }

    #[test]
    fn unclean_election_lets_an_out_of_sync_replica_lead_only_where_the_topic_allows_it() {
        let id = Uuid::new_v4();
        let placed = MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
            partitions: 1,
            leader: 1,
            configs: BTreeMap::new(),
            replicas: vec![vec![1, 2]],
        };
        let part = |image: &MetadataImage| image.topic("t").expect("t").partitions[0].clone();
        let image = [register(1), register(2), placed]
            .iter()
            .fold(MetadataImage::default(), |image, record| {
                image.apply(record)
            });
        // 2 falls out of the ISR, then 1 (the last in-sync replica) is fenced: offline.
        let shrunk = image.apply(&MetadataRecord::PartitionChange {
            topic_id: id,
            partition: 0,
            leader: None,
            isr: Some(vec![1]),
        });
        let offline = shrunk.apply(&fence(1, true));
        assert_eq!((part(&offline).leader, part(&offline).isr), (1, vec![1]));
        // Allowed for the topic: 2 takes over, alone in the ISR.
        let allowed = offline.apply(&MetadataRecord::TopicConfigs {
            topic_id: id,
            configs: BTreeMap::from([("unclean.leader.election.enable".into(), "true".into())]),
        });
        let p = part(&allowed);
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        assert_eq!(p.leader_epoch, part(&offline).leader_epoch + 1);
        // The cluster-wide default decides when the topic does not.
        let by_default = offline.apply(&MetadataRecord::BrokerConfigs {
            resource_name: String::new(),
            configs: BTreeMap::from([("unclean.leader.election.enable".into(), "true".into())]),
        });
        assert_eq!(part(&by_default).leader, 2);
        // Allowed before the fencing: the fencing itself elects.
        let early = shrunk
            .apply(&MetadataRecord::TopicConfigs {
                topic_id: id,
                configs: BTreeMap::from([("unclean.leader.election.enable".into(), "true".into())]),
            })
            .apply(&fence(1, true));
        assert_eq!(part(&early).leader, 2);
    }

    fn topic(name: &str, id: Uuid) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: id,
            partitions: 2,
            leader: 1,
            configs: BTreeMap::new(),
            replicas: Vec::new(),
        }
    }

    #[test]
    fn a_registration_replaces_the_nodes_earlier_one() {
        let register = |port| MetadataRecord::RegisterBroker {
            node_id: 2,
            host: "127.0.0.1".into(),
            port,
            rack: None,
        };
        let image = MetadataImage::default()
            .apply(&register(9092))
            .apply(&register(9093));
        let brokers: Vec<_> = image.brokers().collect();
        assert_eq!(brokers.len(), 1);
        assert_eq!((brokers[0].node_id, brokers[0].port), (2, 9093));
        assert!(image.broker(1).is_none());
    }

    #[test]
    fn topics_are_added_and_removed() {
        let id = Uuid::new_v4();
        let image = MetadataImage::default().apply(&topic("a", id));
        let a = image.topic("a").expect("a exists");
        assert_eq!(a.partitions.len(), 2);
        assert_eq!(a.partitions[1].leader, 1);
        assert_eq!(image.topic_by_id(&id).map(|t| t.name.as_str()), Some("a"));
        // A duplicate name is ignored.
        let again = image.apply(&topic("a", Uuid::new_v4()));
        assert_eq!(again.topics().count(), 1);
        let removed = again.apply(&MetadataRecord::RemoveTopic { topic_id: id });
        assert!(removed.topic("a").is_none());
        assert!(removed.topic_by_id(&id).is_none());
        let remembered: Vec<&RemovedTopic> = removed.removed_topics().collect();
        assert_eq!(remembered.len(), 1);
        assert_eq!(
            (remembered[0].name.as_str(), remembered[0].topic_id),
            ("a", id)
        );
    }

    #[test]
    fn partitions_are_added_never_removed() {
        let id = Uuid::new_v4();
        let image = MetadataImage::default().apply(&topic("a", id));
        let grown = image.apply(&MetadataRecord::PartitionCount {
            topic_id: id,
            partitions: 5,
            leader: 1,
            replicas: Vec::new(),
        });
        let a = grown.topic("a").expect("a exists");
        let indexes: Vec<i32> = a.partitions.iter().map(|p| p.partition).collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4]);
        assert_eq!(a.partitions[4], PartitionImage::led_by(4, 1));
        assert_eq!(grown.topic_by_id(&id).map(|t| t.partitions.len()), Some(5));
        let shrunk = grown.apply(&MetadataRecord::PartitionCount {
            topic_id: id,
            partitions: 2,
            leader: 1,
            replicas: Vec::new(),
        });
        assert_eq!(shrunk.topic("a").map(|t| t.partitions.len()), Some(5));
        let unknown = grown.apply(&MetadataRecord::PartitionCount {
            topic_id: Uuid::new_v4(),
            partitions: 9,
            leader: 1,
            replicas: Vec::new(),
        });
        assert_eq!(unknown.topics().count(), 1);
    }

    #[test]
    fn topic_configs_are_replaced_whole() {
        let id = Uuid::new_v4();
        let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let image =
            MetadataImage::default()
                .apply(&topic("a", id))
                .apply(&MetadataRecord::TopicConfigs {
                    topic_id: id,
                    configs: configs.clone(),
                });
        assert_eq!(image.topic("a").map(|t| t.configs.clone()), Some(configs));
        let cleared = image.apply(&MetadataRecord::TopicConfigs {
            topic_id: id,
            configs: BTreeMap::new(),
        });
        assert!(cleared.topic("a").is_some_and(|t| t.configs.is_empty()));
        // An unknown topic id changes nothing.
        let same = cleared.apply(&MetadataRecord::TopicConfigs {
            topic_id: Uuid::new_v4(),
            configs: BTreeMap::new(),
        });
        assert_eq!(same.topics().count(), 1);
    }

    #[test]
    fn broker_configs_are_replaced_whole_per_resource() {
        let configs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let image = MetadataImage::default()
            .apply(&MetadataRecord::BrokerConfigs {
                resource_name: "1".into(),
                configs: configs(&[("log.retention.ms", "1000")]),
            })
            .apply(&MetadataRecord::BrokerConfigs {
                resource_name: String::new(),
                configs: configs(&[("log.retention.ms", "2000"), ("max.connections", "5")]),
            });
        assert_eq!(
            *image.broker_configs("1"),
            configs(&[("log.retention.ms", "1000")])
        );
        assert_eq!(image.broker_configs("").len(), 2);
        assert!(image.broker_configs("2").is_empty());
        let cleared = image.apply(&MetadataRecord::BrokerConfigs {
            resource_name: "1".into(),
            configs: BTreeMap::new(),
        });
        assert!(cleared.broker_configs("1").is_empty());
        assert_eq!(cleared.broker_configs("").len(), 2);
    }

    #[test]
    fn an_image_rebuilt_from_its_parts_is_the_same() {
        let id = Uuid::new_v4();
        let image = MetadataImage::default()
            .apply(&topic("a", id))
            .apply(&MetadataRecord::ProducerIds {
                next_producer_id: 3000,
            })
            .apply(&MetadataRecord::BrokerConfigs {
                resource_name: "1".into(),
                configs: BTreeMap::from([("log.retention.ms".into(), "5".into())]),
            });
        let topics = image.topics().map(|t| (**t).clone()).collect::<Vec<_>>();
        let configs = image
            .broker_config_resources()
            .map(|(name, configs)| (name.to_string(), (**configs).clone()))
            .collect();
        let rebuilt = MetadataImage::from_parts(topics.clone(), 3000, configs, Vec::new())
            .expect("valid parts");
        assert_eq!(rebuilt.topic_by_id(&id), image.topic_by_id(&id));
        assert_eq!(rebuilt.next_producer_id(), 3000);
        assert_eq!(rebuilt.broker_configs("1"), image.broker_configs("1"));
        let twice = [topics.clone(), topics].concat();
        assert!(MetadataImage::from_parts(twice, 0, BTreeMap::new(), Vec::new()).is_err());
    }

    #[test]
    fn producer_id_blocks_never_go_backwards() {
        let image = MetadataImage::default()
            .apply(&MetadataRecord::ProducerIds {
                next_producer_id: 2000,
            })
            .apply(&MetadataRecord::ProducerIds {
                next_producer_id: 1000,
            });
        assert_eq!(image.next_producer_id(), 2000);
    }
}
