//! The snapshot format: a `MetadataImage` serialized with the Raft position it reflects. The
//! same bytes are sent to a lagging follower (openraft's chunked InstallSnapshot) and kept on
//! disk as `__cluster_metadata-0/<index>-<term>.checkpoint` (Kafka's KRaft snapshot name:
//! 20-digit offset, 10-digit epoch).
//!
//! # Format (all integers big-endian)
//! ```text
//! offset  size  field
//! 0       4     magic "RNSN"
//! 4       2     version: 1
//! 6       8     body length N, at most SNAPSHOT_BYTES_MAX
//! 14      4     CRC-32C (Castagnoli) of the body
//! 18      N     body: JSON SnapshotBody (below)
//! ```
//! Body, version 1: `{"meta": {"last_log_id", "last_membership", "snapshot_id"}` (openraft's
//! `SnapshotMeta` serde form), `"image": {"topics": [{"name", "topic_id", "configs",
//! "partitions": [{"partition", "leader", "leader_epoch", "replicas", "isr",
//! "partition_epoch"}]}],
//! "next_producer_id", "broker_configs": {resource name: {key: value}}, "removed_topics":
//! [{"name", "topic_id", "partitions"}], "brokers": [{"node_id", "host", "port", "rack", "fenced"}],
//! "cluster_id"}}` (`removed_topics`, the image's most recent removals, `brokers`, the
//! registered brokers, and `cluster_id`, the quorum's cluster id, may be absent: an older
//! version-1 snapshot, read as none).
//! The image is written field by field from its accessors (not a derive on the image), so
//! that the format changes only when this module says so, with a new version.
//!
//! A snapshot that fails any check is refused whole ([`SnapshotError`]): from a peer, the
//! install fails and the leader sends it again; on disk, the node does not start (its log was
//! purged up to that snapshot, so nothing else can rebuild the image).

use std::collections::BTreeMap;

use runnel_metadata::{
    BrokerRegistration, MetadataImage, PartitionImage, RemovedTopic, TopicImage,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::types::SnapshotMeta;

const MAGIC: &[u8; 4] = b"RNSN";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 18;
/// The largest snapshot encoded or accepted.
pub const SNAPSHOT_BYTES_MAX: usize = 256 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot is damaged: {0}")]
    Corrupt(String),
    #[error("snapshot of {bytes} bytes is above {SNAPSHOT_BYTES_MAX}")]
    TooLarge { bytes: usize },
}

/// A decoded snapshot.
#[derive(Debug, Clone)]
pub struct DecodedSnapshot {
    pub meta: SnapshotMeta,
    pub image: MetadataImage,
}

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    meta: SnapshotMeta,
    image: ImageV1,
}

#[derive(Serialize, Deserialize)]
struct ImageV1 {
    topics: Vec<TopicV1>,
    next_producer_id: i64,
    broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    removed_topics: Vec<RemovedTopicV1>,
    /// Absent in snapshots written before brokers registered.
    #[serde(default)]
    brokers: Vec<BrokerV1>,
    /// Absent in snapshots written before the quorum recorded the cluster id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct BrokerV1 {
    node_id: i32,
    host: String,
    port: i32,
    #[serde(default)]
    rack: Option<String>,
    /// Absent in snapshots written before fencing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fenced: bool,
}

#[derive(Serialize, Deserialize)]
struct RemovedTopicV1 {
    name: String,
    topic_id: Uuid,
    partitions: i32,
}

#[derive(Serialize, Deserialize)]
struct TopicV1 {
    name: String,
    topic_id: Uuid,
    configs: BTreeMap<String, String>,
    partitions: Vec<PartitionV1>,
}

#[derive(Serialize, Deserialize)]
struct PartitionV1 {
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    /// Absent in snapshots written before partition epochs: 0.
    #[serde(default)]
    partition_epoch: i32,
}

/// The snapshot bytes of `image` at `meta`.
pub fn encode(meta: &SnapshotMeta, image: &MetadataImage) -> Result<Vec<u8>, SnapshotError> {
    let body = SnapshotBody {
        meta: meta.clone(),
        image: ImageV1 {
            topics: image.topics().map(|t| topic_v1(t)).collect(),
            next_producer_id: image.next_producer_id(),
            broker_configs: image
                .broker_config_resources()
                .map(|(name, configs)| (name.to_string(), (**configs).clone()))
                .collect(),
            removed_topics: image
                .removed_topics()
                .map(|removed| RemovedTopicV1 {
                    name: removed.name.clone(),
                    topic_id: removed.topic_id,
                    partitions: removed.partitions,
                })
                .collect(),
            brokers: image
                .brokers()
                .map(|b| BrokerV1 {
                    node_id: b.node_id,
                    host: b.host.clone(),
                    port: b.port,
                    rack: b.rack.clone(),
                    fenced: b.fenced,
                })
                .collect(),
            cluster_id: image.cluster_id().map(str::to_string),
        },
    };
    // Plain data: serialising cannot fail.
    let body = serde_json::to_vec(&body).expect("snapshot serialises");
    if HEADER_BYTES + body.len() > SNAPSHOT_BYTES_MAX {
        return Err(SnapshotError::TooLarge {
            bytes: HEADER_BYTES + body.len(),
        });
    }
    let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_be_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Decodes and checks snapshot bytes (see the module doc).
pub fn decode(bytes: &[u8]) -> Result<DecodedSnapshot, SnapshotError> {
    let corrupt = |reason: String| SnapshotError::Corrupt(reason);
    if bytes.len() < HEADER_BYTES {
        return Err(corrupt(format!(
            "{} bytes, shorter than its header",
            bytes.len()
        )));
    }
    if &bytes[..4] != MAGIC {
        return Err(corrupt("bad magic".into()));
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(corrupt(format!("unknown version {version}")));
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&bytes[6..14]);
    let length = u64::from_be_bytes(length);
    if length > SNAPSHOT_BYTES_MAX as u64 || HEADER_BYTES as u64 + length != bytes.len() as u64 {
        return Err(corrupt(format!(
            "body length {length} does not match the snapshot's {} bytes",
            bytes.len()
        )));
    }
    let crc = u32::from_be_bytes([bytes[14], bytes[15], bytes[16], bytes[17]]);
    let body = &bytes[HEADER_BYTES..];
    if crc32c::crc32c(body) != crc {
        return Err(corrupt("CRC mismatch".into()));
    }
    let body: SnapshotBody = crate::openraft_json::decode(body)
        .map_err(|error| corrupt(format!("body does not decode: {error}")))?;
    let topics = body.image.topics.into_iter().map(topic_image).collect();
    let brokers = body
        .image
        .brokers
        .into_iter()
        .map(|b| BrokerRegistration {
            node_id: b.node_id,
            host: b.host,
            port: b.port,
            rack: b.rack,
            fenced: b.fenced,
        })
        .collect();
    let removed = body
        .image
        .removed_topics
        .into_iter()
        .map(|removed| RemovedTopic {
            name: removed.name,
            topic_id: removed.topic_id,
            partitions: removed.partitions,
        })
        .collect();
    let image = MetadataImage::from_parts(
        topics,
        body.image.next_producer_id,
        body.image.broker_configs,
        removed,
    )
    .map_err(|error| corrupt(error.to_string()))?
    .with_brokers(brokers)
    .with_cluster_id(body.image.cluster_id);
    Ok(DecodedSnapshot {
        meta: body.meta,
        image,
    })
}

fn topic_v1(topic: &TopicImage) -> TopicV1 {
    TopicV1 {
        name: topic.name.clone(),
        topic_id: topic.topic_id,
        configs: topic.configs.clone(),
        partitions: topic
            .partitions
            .iter()
            .map(|p| PartitionV1 {
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                partition_epoch: p.partition_epoch,
            })
            .collect(),
    }
}

fn topic_image(topic: TopicV1) -> TopicImage {
    TopicImage {
        name: topic.name,
        topic_id: topic.topic_id,
        configs: topic.configs,
        partitions: topic
            .partitions
            .into_iter()
            .map(|p| PartitionImage {
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas,
                isr: p.isr,
                partition_epoch: p.partition_epoch,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId};
    use runnel_metadata::MetadataRecord;

    const GONE: Uuid = Uuid::from_u128(7);

    fn sample() -> (SnapshotMeta, MetadataImage) {
        let image = MetadataImage::default()
            .apply(&MetadataRecord::Topic {
                name: "orders".into(),
                topic_id: Uuid::new_v4(),
                partitions: 3,
                leader: 2,
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
                replicas: Vec::new(),
            })
            .apply(&MetadataRecord::ProducerIds {
                next_producer_id: 5000,
            })
            .apply(&MetadataRecord::Topic {
                name: "gone".into(),
                topic_id: GONE,
                partitions: 2,
                leader: 2,
                configs: BTreeMap::new(),
                replicas: Vec::new(),
            })
            .apply(&MetadataRecord::RemoveTopic { topic_id: GONE })
            .apply(&MetadataRecord::RegisterBroker {
                node_id: 2,
                host: "10.0.0.2".into(),
                port: 9092,
                rack: Some("rack-b".into()),
            });
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(4, 2), 41)),
            last_membership: Default::default(),
            snapshot_id: "41-4".into(),
        };
        (meta, image)
    }

    #[test]
    fn snapshots_round_trip() {
        let (meta, image) = sample();
        let bytes = encode(&meta, &image).expect("encode");
        let decoded = decode(&bytes).expect("decode");
        assert_eq!(decoded.meta, meta);
        assert_eq!(decoded.image.topic("orders"), image.topic("orders"));
        assert_eq!(decoded.image.next_producer_id(), 5000);
        let removed: Vec<&RemovedTopic> = decoded.image.removed_topics().collect();
        assert_eq!(
            removed,
            vec![&RemovedTopic {
                name: "gone".into(),
                topic_id: GONE,
                partitions: 2
            }]
        );
        let brokers: Vec<_> = decoded.image.brokers().collect();
        assert_eq!(brokers, image.brokers().collect::<Vec<_>>());
        assert_eq!(brokers[0].rack.as_deref(), Some("rack-b"));
    }

    #[test]
    fn damaged_snapshots_are_refused() {
        let (meta, image) = sample();
        let bytes = encode(&meta, &image).expect("encode");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        assert!(matches!(decode(&flipped), Err(SnapshotError::Corrupt(r)) if r.contains("CRC")));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&bytes[..10]).is_err());
        let mut long = bytes.clone();
        long[6..14].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(decode(&long).is_err());
    }
}
