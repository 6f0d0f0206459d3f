//! One metadata change as the active controller runs it: what it is ([`Change`]), the check
//! against the image each makes before its record is proposed ([`Change::check`]), and what
//! it answers ([`Done`], or a [`Refusal`]).
//!
//! The active controller (the Raft leader) is the only proposer. Every node's
//! [`crate::controller::Controller`] turns a write into a [`Change`]: run here when this node
//! leads, else carried to the leader (`runnel_controller::forward`) as JSON and its answer
//! carried back, also as JSON. Running a change takes the leader's write lock, checks it
//! against the leader's image (which holds everything committed: the leader applied it
//! before it was elected, openraft's linearizable read point), proposes its record and
//! answers once the record is committed and applied on the leader. The follower then waits
//! until its own image holds the change before it answers its client, so that a client that
//! created a topic through one node finds it there at once.
//!
//! # Departure from DESIGN.md §8 (Kafka's own RPCs)
//! Kafka forwards an admin request whole, in an Envelope (key 58), and brokers register and
//! heartbeat with BrokerRegistration and BrokerHeartbeat (keys 62, 63) on the controller
//! listener. Here a change travels as a [`Change`] in the controller listener's own Forward
//! frame (`runnel_controller::forward`), and a broker's registration and heartbeats are such
//! changes, broker-only nodes' too. Why:
//! - Runnel's controller listener does not speak Kafka's KRaft protocol at all: it carries
//!   openraft's RPCs in Runnel's frames (`runnel_controller::frame`; openraft pushes the log
//!   to followers and learners, where KRaft's followers fetch it). No Kafka node or tool can
//!   join a Runnel quorum, so Kafka-format requests there would add a second wire format on
//!   one port and serve no client.
//! - The broker has already done the work Kafka's controller would redo on an enveloped
//!   request (config resolution, the partition limit, opening the partition directories a
//!   topic record names), leaving the leader only the check against the committed image.
//!
//! What Kafka's RPCs carry is kept: a registration names the node, its client endpoint and
//! rack; a heartbeat its node id; the active controller fences a broker silent for
//! `broker.session.timeout.ms` and a heartbeat or registration unfences it.

use std::collections::BTreeMap;
use std::ops::Range;

use runnel_metadata::{MetadataImage, MetadataRecord, PartitionImage, TopicImage};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::controller::ControllerError;

/// A change to the metadata, as it travels to the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "change")]
pub enum Change {
    /// A topic record planned by some node; refused if its name or id is taken.
    CreateTopic {
        record: MetadataRecord,
    },
    DeleteTopic {
        topic_id: Uuid,
    },
    /// A PartitionCount record, proposed only if the topic still has `current` partitions.
    CreatePartitions {
        record: MetadataRecord,
        current: usize,
    },
    AlterTopicConfigs {
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    AlterBrokerConfigs {
        resource_name: String,
        configs: BTreeMap<String, String>,
    },
    /// The next block of `size` producer ids, from the first id no block holds.
    AllocateProducerIds {
        size: i64,
    },
    /// A RegisterBroker record: a broker's address, recorded at each start.
    RegisterBroker {
        record: MetadataRecord,
    },
    /// A broker's heartbeat (Kafka's BrokerHeartbeat): the active controller notes it, and
    /// records nothing unless the broker is fenced, which it unfences.
    Heartbeat {
        node_id: i32,
    },
    /// Not a change: the active controller's view of the quorum (DescribeQuorum), which
    /// only it has; records nothing.
    DescribeQuorum,
    /// Fences a registered broker the active controller has not heard from for a session.
    FenceBroker {
        node_id: i32,
    },
    /// The cluster id, recorded by the first node to start; refused once one is recorded.
    RecordClusterId {
        cluster_id: String,
    },
    /// A preferred-leader election (ElectLeaders type 0): the partition's first replica takes
    /// the lead if it is in the ISR and unfenced; nothing to record when it leads already.
    ElectPreferred {
        topic_id: Uuid,
        partition: i32,
    },
    /// A partition leader's ISR change (Kafka's AlterPartition): proposed only if `leader`
    /// still leads at `leader_epoch` and the partition is still at `partition_epoch`; the new
    /// ISR must hold the leader, only replicas, each once, and no fenced broker it adds.
    AlterIsr {
        topic_id: Uuid,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
}

/// What a change answers once committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The Raft log index that holds the change.
    pub index: u64,
    /// The block an [`Change::AllocateProducerIds`] recorded.
    pub producer_ids: Option<Range<i64>>,
    /// The quorum as the active controller sees it ([`Change::DescribeQuorum`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<runnel_controller::QuorumDescription>,
}

/// Why the active controller did not commit a change, as it travels back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "refusal")]
pub enum Refusal {
    TopicAlreadyExists {
        name: String,
    },
    UnknownTopic {
        name: String,
    },
    PartitionCountNotIncreased {
        name: String,
        current: i32,
        requested: i32,
    },
    RecordTooLarge {
        bytes: usize,
        max: usize,
    },
    ClusterIdRecorded {
        cluster_id: String,
    },
    /// The node asked was not leading when it came to propose, or lost the lead before its
    /// entry committed (openraft's ForwardToLeader). Mostly nothing was appended; an entry it
    /// did append may still be committed by a later leader (Raft's usual ambiguity). Carrying
    /// the change again is safe either way: it is checked against the image again, so one
    /// that did commit is refused as already made (a registration or cluster id already
    /// recorded is answered as done).
    NotLeader,
    /// Anything else, as its message.
    Failed {
        message: String,
    },
}

impl From<ControllerError> for Refusal {
    fn from(error: ControllerError) -> Refusal {
        match error {
            ControllerError::TopicAlreadyExists { name } => Refusal::TopicAlreadyExists { name },
            ControllerError::UnknownTopic { name } => Refusal::UnknownTopic { name },
            ControllerError::PartitionCountNotIncreased {
                name,
                current,
                requested,
            } => Refusal::PartitionCountNotIncreased {
                name,
                current,
                requested,
            },
            ControllerError::RecordTooLarge { bytes, max } => {
                Refusal::RecordTooLarge { bytes, max }
            }
            ControllerError::ClusterIdRecorded { cluster_id } => {
                Refusal::ClusterIdRecorded { cluster_id }
            }
            ControllerError::Quorum(runnel_controller::ProposeError::NotLeader { .. }) => {
                Refusal::NotLeader
            }
            error => Refusal::Failed {
                message: error.to_string(),
            },
        }
    }
}

impl From<Refusal> for ControllerError {
    fn from(refusal: Refusal) -> ControllerError {
        match refusal {
            Refusal::TopicAlreadyExists { name } => ControllerError::TopicAlreadyExists { name },
            Refusal::UnknownTopic { name } => ControllerError::UnknownTopic { name },
            Refusal::PartitionCountNotIncreased {
                name,
                current,
                requested,
            } => ControllerError::PartitionCountNotIncreased {
                name,
                current,
                requested,
            },
            Refusal::RecordTooLarge { bytes, max } => {
                ControllerError::RecordTooLarge { bytes, max }
            }
            Refusal::ClusterIdRecorded { cluster_id } => {
                ControllerError::ClusterIdRecorded { cluster_id }
            }
            Refusal::NotLeader => ControllerError::LeaderChanged,
            Refusal::Failed { message } => ControllerError::ActiveController(message),
        }
    }
}

impl Change {
    /// Whether running this change twice does what running it once does, so that a change
    /// whose answer was lost (the active controller died after it was sent, openraft's
    /// outcome unknown) may simply be carried again: a registration records the same address
    /// again, a heartbeat or a fencing that was already applied is nothing to record, the
    /// cluster id is refused once recorded (which the caller accepts), and a second producer
    /// id block only leaves the first unused. A node's start makes only such changes, so it
    /// does not fail when the controller it reached dies meanwhile. Admin changes are not
    /// repeated: a client whose topic was created by the lost attempt would be told it
    /// already exists, so it gets the uncertain error and decides itself, as with Kafka.
    pub fn safe_to_repeat(&self) -> bool {
        matches!(
            self,
            Change::RegisterBroker { .. }
                | Change::Heartbeat { .. }
                | Change::DescribeQuorum
                | Change::FenceBroker { .. }
                | Change::RecordClusterId { .. }
                | Change::AllocateProducerIds { .. }
        )
    }

    /// The record this change proposes, checked against `image` (the active controller's,
    /// under its write lock), with the producer id block it allocates, if any.
    pub fn check(
        &self,
        image: &MetadataImage,
    ) -> Result<(MetadataRecord, Option<Range<i64>>), ControllerError> {
        let unknown = |topic_id: &Uuid| ControllerError::UnknownTopic {
            name: topic_id.to_string(),
        };
        match self {
            Change::CreateTopic { record } => {
                if let MetadataRecord::Topic {
                    name,
                    topic_id,
                    replicas,
                    ..
                } = record
                {
                    if image.topic(name).is_some() || image.topic_by_id(topic_id).is_some() {
                        return Err(ControllerError::TopicAlreadyExists { name: name.clone() });
                    }
                    check_placed(image, 0, replicas)?;
                }
                Ok((record.clone(), None))
            }
            Change::DeleteTopic { topic_id } => {
                image
                    .topic_by_id(topic_id)
                    .ok_or_else(|| unknown(topic_id))?;
                Ok((
                    MetadataRecord::RemoveTopic {
                        topic_id: *topic_id,
                    },
                    None,
                ))
            }
            Change::CreatePartitions { record, current } => {
                if let MetadataRecord::PartitionCount {
                    topic_id,
                    partitions,
                    replicas,
                    ..
                } = record
                {
                    check_placed(image, *current as i32, replicas)?;
                    let topic = image
                        .topic_by_id(topic_id)
                        .ok_or_else(|| unknown(topic_id))?;
                    if topic.partitions.len() != *current {
                        return Err(ControllerError::PartitionCountNotIncreased {
                            name: topic.name.clone(),
                            current: topic.partitions.len() as i32,
                            requested: *partitions,
                        });
                    }
                }
                Ok((record.clone(), None))
            }
            Change::AlterTopicConfigs { topic_id, configs } => {
                image
                    .topic_by_id(topic_id)
                    .ok_or_else(|| unknown(topic_id))?;
                Ok((
                    MetadataRecord::TopicConfigs {
                        topic_id: *topic_id,
                        configs: configs.clone(),
                    },
                    None,
                ))
            }
            Change::AlterBrokerConfigs {
                resource_name,
                configs,
            } => Ok((
                MetadataRecord::BrokerConfigs {
                    resource_name: resource_name.clone(),
                    configs: configs.clone(),
                },
                None,
            )),
            Change::RegisterBroker { record } => Ok((record.clone(), None)),
            Change::Heartbeat { node_id } if image.is_fenced(*node_id) => Ok((
                MetadataRecord::BrokerFencing {
                    node_id: *node_id,
                    fenced: false,
                },
                None,
            )),
            Change::Heartbeat { .. } | Change::DescribeQuorum => {
                Err(ControllerError::NothingToRecord)
            }
            Change::FenceBroker { node_id } => match image.broker(*node_id) {
                Some(broker) if !broker.fenced => Ok((
                    MetadataRecord::BrokerFencing {
                        node_id: *node_id,
                        fenced: true,
                    },
                    None,
                )),
                _ => Err(ControllerError::NothingToRecord),
            },
            Change::RecordClusterId { cluster_id } => match image.cluster_id() {
                Some(recorded) => Err(ControllerError::ClusterIdRecorded {
                    cluster_id: recorded.to_string(),
                }),
                None => Ok((
                    MetadataRecord::ClusterId {
                        cluster_id: cluster_id.clone(),
                    },
                    None,
                )),
            },
            Change::ElectPreferred {
                topic_id,
                partition,
            } => {
                let (topic, current) = topic_and_partition(image, topic_id, *partition)?;
                let current = current.ok_or_else(|| unknown(topic_id))?;
                let preferred = current.replicas.first().copied().unwrap_or(current.leader);
                if preferred == current.leader && !image.is_fenced(preferred) {
                    return Err(ControllerError::NothingToRecord);
                }
                if !current.isr.contains(&preferred) || image.is_fenced(preferred) {
                    return Err(ControllerError::PreferredLeaderNotAvailable {
                        partition: format!("{}-{partition}", topic.name),
                        preferred,
                    });
                }
                Ok((
                    MetadataRecord::PartitionChange {
                        topic_id: *topic_id,
                        partition: *partition,
                        leader: Some(preferred),
                        isr: None,
                    },
                    None,
                ))
            }
            Change::AlterIsr {
                topic_id,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let (topic, current) = topic_and_partition(image, topic_id, *partition)?;
                let invalid = |why: String| ControllerError::InvalidPartitionChange(why);
                let current = current
                    .ok_or_else(|| invalid(format!("{}-{partition} does not exist", topic.name)))?;
                if current.leader != *leader || current.leader_epoch != *leader_epoch {
                    return Err(invalid(format!(
                        "{}-{partition} is led by {} at epoch {}, not by {leader} at {leader_epoch}",
                        topic.name, current.leader, current.leader_epoch
                    )));
                }
                if current.partition_epoch != *partition_epoch {
                    return Err(invalid(format!(
                        "{}-{partition} is at partition epoch {}, not {partition_epoch}",
                        topic.name, current.partition_epoch
                    )));
                }
                let twice = isr
                    .iter()
                    .enumerate()
                    .any(|(at, id)| isr[..at].contains(id));
                if !isr.contains(leader) || twice || isr.iter().any(|id| !current.is_replica(*id)) {
                    return Err(invalid(format!(
                        "{isr:?} is not an ISR of {}-{partition} (replicas {:?}, leader {leader})",
                        topic.name, current.replicas
                    )));
                }
                if let Some(fenced) = isr
                    .iter()
                    .find(|id| !current.isr.contains(id) && image.is_fenced(**id))
                {
                    return Err(invalid(format!("broker {fenced} is fenced")));
                }
                if *isr == current.isr {
                    return Err(ControllerError::NothingToRecord);
                }
                Ok((
                    MetadataRecord::PartitionChange {
                        topic_id: *topic_id,
                        partition: *partition,
                        leader: None,
                        isr: Some(isr.clone()),
                    },
                    None,
                ))
            }
            Change::AllocateProducerIds { size } => {
                let start = image.next_producer_id();
                let end = start.saturating_add(*size);
                Ok((
                    MetadataRecord::ProducerIds {
                        next_producer_id: end,
                    },
                    Some(start..end),
                ))
            }
        }
    }
}

/// The topic with id `topic_id` (`UNKNOWN_TOPIC_OR_PARTITION` when there is none) and its
/// partition `partition`, if it has one.
fn topic_and_partition<'a>(
    image: &'a MetadataImage,
    topic_id: &Uuid,
    partition: i32,
) -> Result<(&'a TopicImage, Option<&'a PartitionImage>), ControllerError> {
    let topic = image
        .topic_by_id(topic_id)
        .ok_or_else(|| ControllerError::UnknownTopic {
            name: topic_id.to_string(),
        })?;
    let current = usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i));
    Ok((topic, current))
}

/// Refuses a placement (partitions from `first` on) naming a broker that is not registered,
/// or is fenced: a partition there would have no one to serve it.
fn check_placed(
    image: &MetadataImage,
    first: i32,
    replicas: &[Vec<i32>],
) -> Result<(), ControllerError> {
    for (at, placed) in replicas.iter().enumerate() {
        if let Some(&broker) = placed
            .iter()
            .find(|id| image.broker(**id).is_none_or(|b| b.fenced))
        {
            return Err(ControllerError::UnknownBroker {
                partition: first.saturating_add(at as i32),
                broker,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_and_its_answers_travel_as_json() {
        let change = Change::AllocateProducerIds { size: 1000 };
        let bytes = serde_json::to_vec(&change).expect("encodes");
        let back: Change = serde_json::from_slice(&bytes).expect("decodes");
        assert!(matches!(back, Change::AllocateProducerIds { size: 1000 }));
        let answer: Result<Done, Refusal> = Err(Refusal::TopicAlreadyExists {
            name: "orders".into(),
        });
        let bytes = serde_json::to_vec(&answer).expect("encodes");
        let back: Result<Done, Refusal> = serde_json::from_slice(&bytes).expect("decodes");
        assert_eq!(back, answer);
    }

    #[test]
    fn checks_refuse_what_the_image_no_longer_allows() {
        let record = MetadataRecord::Topic {
            name: "orders".into(),
            topic_id: Uuid::new_v4(),
            partitions: 2,
            leader: 1,
            configs: BTreeMap::new(),
            replicas: Vec::new(),
        };
        let image = MetadataImage::default().apply(&record);
        let again = Change::CreateTopic {
            record: record.clone(),
        };
        assert!(matches!(
            again.check(&image),
            Err(ControllerError::TopicAlreadyExists { .. })
        ));
        let MetadataRecord::Topic { topic_id, .. } = record else {
            unreachable!()
        };
        let grow = Change::CreatePartitions {
            record: MetadataRecord::PartitionCount {
                topic_id,
                partitions: 4,
                leader: 1,
                replicas: Vec::new(),
            },
            current: 1,
        };
        assert!(matches!(
            grow.check(&image),
            Err(ControllerError::PartitionCountNotIncreased { current: 2, .. })
        ));
        let (_, block) = Change::AllocateProducerIds { size: 1000 }
            .check(&image)
            .expect("allocates");
        assert_eq!(block, Some(0..1000));
    }
}
