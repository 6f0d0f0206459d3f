//! Metadata records: the unit of change, and their encoding.
//!
//! Each record is stored as the value of one Kafka record in `__cluster_metadata-0`, encoded
//! as JSON with a `"type"` tag (`{"type":"Topic",...}`). JSON keeps the log readable with
//! `kcat`-like tools; the records are small and rare, so its cost does not matter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// One change to the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A topic was created with `partitions` partitions at leader epoch 0, placed as
    /// `replicas` says: partition `i`'s replicas are `replicas[i]`, the first its leader.
    /// Partitions `replicas` does not cover (all of them in records written before
    /// placement) are led by `leader` alone.
    Topic {
        name: String,
        topic_id: Uuid,
        partitions: i32,
        leader: i32,
        /// Topic-level config overrides, with Kafka's names.
        configs: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replicas: Vec<Vec<i32>>,
    },
    /// A topic was deleted.
    RemoveTopic { topic_id: Uuid },
    /// Partitions were added to a topic (CreatePartitions): it now has `partitions`, the new
    /// ones at epoch 0, placed as `replicas` says (the `j`th new partition's replicas are
    /// `replicas[j]`, the first its leader; those it does not cover led by `leader` alone).
    /// Existing partitions are unchanged; the count never shrinks.
    PartitionCount {
        topic_id: Uuid,
        partitions: i32,
        leader: i32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replicas: Vec<Vec<i32>>,
    },
    /// A topic's config overrides were replaced by `configs` (Kafka's names), whole: an
    /// alteration is validated against the full result and recorded as one record, so it
    /// applies atomically.
    TopicConfigs {
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Producer ids below `next_producer_id` are allocated; the next block starts there.
    ProducerIds { next_producer_id: i64 },
    /// The dynamic configs of a broker resource were replaced by `configs` (Kafka's names),
    /// whole: `resource_name` is a node id for one broker's, or empty for the cluster
    /// default (Kafka's `ConfigRecord` with resource type BROKER, one record per change so
    /// that an alteration of several keys applies atomically). Empty `configs` removes
    /// them all.
    BrokerConfigs {
        resource_name: String,
        configs: BTreeMap<String, String>,
    },
    /// A broker registered, or registered again at a restart, with the address clients reach
    /// it at (Kafka's `RegisterBrokerRecord`, its client endpoint and rack). A later record
    /// for the same node replaces the earlier one.
    RegisterBroker {
        node_id: i32,
        host: String,
        port: i32,
        #[serde(default)]
        rack: Option<String>,
    },
    /// A broker was fenced (its heartbeats stopped for `broker.session.timeout.ms`) or
    /// unfenced (it heartbeats again), Kafka's `BrokerRegistrationChangeRecord`. A fenced
    /// broker is not listed to clients, gets no new partitions, and its partitions have no
    /// leader until it returns. A registration unfences.
    BrokerFencing { node_id: i32, fenced: bool },
    /// A partition's leader or in-sync replicas changed (Kafka's `PartitionChangeRecord`):
    /// `leader` (when given and different) takes the lead at a new leader epoch, `isr` (when
    /// given) replaces the ISR; the partition epoch moves up either way. Written for a
    /// leader's ISR change (AlterPartition).
    PartitionChange {
        topic_id: Uuid,
        partition: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        isr: Option<Vec<i32>>,
    },
    /// The cluster's id, recorded once when the quorum first starts (the first such record
    /// wins; a later one is ignored): every node writes it to its `meta.properties`.
    ClusterId { cluster_id: String },
}

/// A record value that does not decode.
#[derive(Debug, Error)]
#[error("metadata record does not decode: {0}")]
pub struct RecordDecodeError(#[from] serde_json::Error);

impl MetadataRecord {
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain data types cannot fail.
        serde_json::to_vec(self).expect("metadata records serialise")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = MetadataRecord::Topic {
            name: "orders".into(),
            topic_id: Uuid::new_v4(),
            partitions: 3,
            leader: 1,
            configs: BTreeMap::from([("max.message.bytes".into(), "2048".into())]),
            replicas: vec![vec![2], vec![3], vec![1]],
        };
        assert_eq!(
            MetadataRecord::decode(&record.encode()).expect("decode"),
            record
        );
        // A record written before placement has no replicas: every partition on `leader`.
        let before = br#"{"type":"Topic","name":"a","topic_id":"00000000-0000-0000-0000-000000000001","partitions":2,"leader":1,"configs":{}}"#;
        match MetadataRecord::decode(before).expect("an older record decodes") {
            MetadataRecord::Topic { replicas, .. } => assert!(replicas.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(MetadataRecord::decode(b"{\"type\":\"Nope\"}").is_err());
        let record = MetadataRecord::BrokerConfigs {
            resource_name: String::new(),
            configs: BTreeMap::from([("log.retention.ms".into(), "1000".into())]),
        };
        assert_eq!(
            MetadataRecord::decode(&record.encode()).expect("decode"),
            record
        );
    }
}
