//! What a run saw: every node's roles and applied images as they changed, every proposal and
//! its answer, and every fault, in simulated time. The invariants ([`crate::invariants`]) are
//! checked on this record alone, so that a fabricated history can show each checker catching
//! what it must.
//!
//! A node is observed through its own `MetadataQuorum::metrics()` (term, leader, state) and
//! `MetadataQuorum::image()` (the applied image and its log id), by a task on its own host,
//! at every change those watches publish. A watch keeps only its newest value, so a role or an
//! image that lasted less than one poll may be missed: the checks can then see less, never
//! something that did not happen.
//!
//! Proposals are numbered by the driver (`seq`, from 1). Proposal `seq` is one entry of two
//! records: a topic `p-<seq>` with a topic id and partition count of its own, and the broker
//! config `sim.last = <seq>` (so that the image depends on the order entries apply in).

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use runnel_controller::types::LogId;
use runnel_controller::NodeId;
use runnel_metadata::{MetadataImage, MetadataRecord};
use uuid::Uuid;

/// The broker-config resource every proposal writes.
pub const PROPOSAL_RESOURCE: &str = "sim";

/// What one proposal asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub seq: u64,
    pub topic_id: Uuid,
    pub partitions: i32,
}

impl Proposal {
    /// The topic this proposal creates.
    pub fn topic_name(&self) -> String {
        topic_name(self.seq)
    }

    /// The proposal's records, as proposed.
    pub fn records(&self) -> Vec<MetadataRecord> {
        vec![
            MetadataRecord::Topic {
                name: self.topic_name(),
                topic_id: self.topic_id,
                partitions: self.partitions,
                leader: 1,
                configs: BTreeMap::new(),
                replicas: Vec::new(),
            },
            MetadataRecord::BrokerConfigs {
                resource_name: PROPOSAL_RESOURCE.to_string(),
                configs: BTreeMap::from([("last".to_string(), self.seq.to_string())]),
            },
        ]
    }
}

/// The name of proposal `seq`'s topic.
pub fn topic_name(seq: u64) -> String {
    format!("p-{seq:08}")
}

/// A node's role as its metrics showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSeen {
    pub at: Duration,
    pub node: NodeId,
    pub term: u64,
    /// The node was in openraft's Leader state.
    pub leading: bool,
    pub leader: Option<NodeId>,
    /// The node's vote: (term, the node voted for, committed), in openraft's order.
    pub vote: (u64, Option<NodeId>, bool),
}

/// A node's applied image as its watch published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedSeen {
    pub at: Duration,
    pub node: NodeId,
    /// The last applied entry; `None` before anything was applied.
    pub log_id: Option<LogId>,
    /// [`fingerprint`] of the image.
    pub fingerprint: u64,
    /// The proposals' topics the image holds: seq -> (topic id, partitions).
    pub proposals: Arc<BTreeMap<u64, (Uuid, i32)>>,
}

impl AppliedSeen {
    /// The applied index, `None` before anything was applied.
    pub fn index(&self) -> Option<u64> {
        self.log_id.map(|id| id.index)
    }
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Role(RoleSeen),
    Applied(AppliedSeen),
    /// Proposal `seq` was answered `Ok(index)` by the leader it was sent to.
    Acked {
        at: Duration,
        seq: u64,
        index: u64,
    },
    /// A fault, or the end of one, as the scenario applied it.
    Fault {
        at: Duration,
        what: String,
    },
    /// Faults stopped: every node runs, every link is healthy.
    Healed {
        at: Duration,
    },
    /// Something else worth a line in a failure report (a change of voters, a refused start).
    Note {
        at: Duration,
        what: String,
    },
}

impl Event {
    pub fn at(&self) -> Duration {
        match self {
            Event::Role(role) => role.at,
            Event::Applied(applied) => applied.at,
            Event::Acked { at, .. }
            | Event::Fault { at, .. }
            | Event::Healed { at }
            | Event::Note { at, .. } => *at,
        }
    }
}

/// Everything a run saw, in the order it happened.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub events: Vec<Event>,
    /// Every proposal made, answered or not, by seq.
    pub proposals: BTreeMap<u64, Proposal>,
}

impl History {
    pub fn record(&mut self, event: Event) {
        self.events.push(event);
    }

    pub fn applied(&self) -> impl Iterator<Item = &AppliedSeen> {
        self.events.iter().filter_map(|event| match event {
            Event::Applied(applied) => Some(applied),
            _ => None,
        })
    }

    pub fn roles(&self) -> impl Iterator<Item = &RoleSeen> {
        self.events.iter().filter_map(|event| match event {
            Event::Role(role) => Some(role),
            _ => None,
        })
    }

    /// Proposals answered `Ok(index)`: (seq, index), in answer order.
    pub fn acked(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.events.iter().filter_map(|event| match event {
            Event::Acked { seq, index, .. } => Some((*seq, *index)),
            _ => None,
        })
    }

    /// The faults applied, one line each, for a failure report.
    pub fn fault_lines(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Fault { at, what } | Event::Note { at, what } => {
                    Some(format!("{:>8.3}s {what}", at.as_secs_f64()))
                }
                Event::Healed { at } => Some(format!("{:>8.3}s healed", at.as_secs_f64())),
                _ => None,
            })
            .collect()
    }
}

/// What [`AppliedSeen`] keeps of an image.
pub fn seen(
    at: Duration,
    node: NodeId,
    log_id: Option<LogId>,
    image: &MetadataImage,
) -> AppliedSeen {
    let proposals = image
        .topics()
        .filter_map(|topic| {
            let seq = topic.name.strip_prefix("p-")?.parse::<u64>().ok()?;
            Some((seq, (topic.topic_id, topic.partitions.len() as i32)))
        })
        .collect();
    AppliedSeen {
        at,
        node,
        log_id,
        fingerprint: fingerprint(image),
        proposals: Arc::new(proposals),
    }
}

/// A hash of everything an image holds (std's SipHash with fixed keys: the same image gives
/// the same value in every run and process).
pub fn fingerprint(image: &MetadataImage) -> u64 {
    let mut hasher = DefaultHasher::new();
    for topic in image.topics() {
        topic.name.hash(&mut hasher);
        topic.topic_id.hash(&mut hasher);
        topic.configs.hash(&mut hasher);
        for partition in &topic.partitions {
            partition.partition.hash(&mut hasher);
            partition.leader.hash(&mut hasher);
            partition.leader_epoch.hash(&mut hasher);
            partition.replicas.hash(&mut hasher);
            partition.isr.hash(&mut hasher);
        }
    }
    image.next_producer_id().hash(&mut hasher);
    for (name, configs) in image.broker_config_resources() {
        name.hash(&mut hasher);
        configs.hash(&mut hasher);
    }
    for removed in image.removed_topics() {
        removed.name.hash(&mut hasher);
        removed.topic_id.hash(&mut hasher);
        removed.partitions.hash(&mut hasher);
    }
    for broker in image.brokers() {
        broker.node_id.hash(&mut hasher);
        broker.host.hash(&mut hasher);
        broker.port.hash(&mut hasher);
        broker.rack.hash(&mut hasher);
        broker.fenced.hash(&mut hasher);
    }
    image.cluster_id().hash(&mut hasher);
    hasher.finish()
}
