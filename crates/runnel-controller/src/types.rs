//! The Raft type configuration: what the metadata quorum replicates and between whom.
//!
//! - Node ids are Kafka's `node.id` values (`i32`), so that a Raft leader id *is* the active
//!   controller's broker id, with no mapping table to keep in step.
//! - A node is reached at the `host:port` of its controller listener ([`BasicNode::addr`]).
//! - The application data of one Raft entry is [`MetadataRecords`]: the records of one proposal,
//!   applied together (Kafka's atomic record batches: a topic and its partitions appear in the
//!   image at once or not at all).
//! - The state machine answers nothing but "applied": the committed log index is the answer
//!   ([`crate::MetadataQuorum::propose`]).
//! - Snapshots travel and rest as one byte buffer in [`crate::snapshot`]'s format.

use std::io::Cursor;

use openraft::{BasicNode, TokioRuntime};
use runnel_metadata::MetadataRecord;
use serde::{Deserialize, Serialize};

/// Kafka's `node.id`.
pub type NodeId = i32;

openraft::declare_raft_types!(
    /// The metadata quorum's Raft types.
    pub TypeConfig:
        D = MetadataRecords,
        R = (),
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = TokioRuntime,
);

/// The records of one proposal: one Raft entry, applied to the image in order, together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataRecords(pub Vec<MetadataRecord>);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
