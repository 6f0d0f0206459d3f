//! Runnel's cluster metadata: a log of [`MetadataRecord`]s folded into an immutable
//! [`MetadataImage`].
//!
//! This crate owns the meaning of metadata and nothing of its storage: the broker's
//! quorum-of-one writer appends encoded records to `__cluster_metadata-0` (a partition log like
//! any other), fsyncs them, and only then applies them here and publishes the new image.
//! Replaying the records from the start of that log rebuilds the same image, which is what a
//! Raft quorum will later do on every controller without changing this crate.
//!
//! Invariants of an image: topic names and topic ids are unique; every partition of a topic
//! has a leader and a leader epoch; `next_producer_id` only grows, so producer ids handed out
//! from blocks allocated by [`MetadataRecord::ProducerIds`] never repeat across restarts.

mod image;
mod record;
mod topic_name;

pub use image::{
    BrokerRegistration, DuplicateTopic, MetadataImage, PartitionImage, RemovedTopic, TopicImage,
    REMOVED_TOPICS_KEPT,
};
pub use record::{MetadataRecord, RecordDecodeError};
pub use topic_name::{validate_topic_name, InvalidTopicName, TOPIC_NAME_LENGTH_MAX};
