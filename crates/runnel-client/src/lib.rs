//! How Runnel's own tools talk to a cluster: producer, consumer and admin clients configured
//! from typed options, over librdkafka (the `rdkafka` crate, bundled build).
//!
//! A well-kept client rather than a home-made one (DESIGN.md §1): the benchmark then measures
//! the broker as real applications see it, and the CLI behaves like every other Kafka tool.
//! This crate owns the mapping from Runnel's options to librdkafka's configuration names and
//! the admin calls the tools need ([`admin`]); it knows nothing of broker internals.

pub mod admin;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

pub use rdkafka;

/// Failures of the tools' client calls.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("group {group}: {code}")]
    Group {
        group: String,
        code: RDKafkaErrorCode,
    },
    #[error("starting a runtime for admin calls: {0}")]
    Runtime(std::io::Error),
}

/// Compression codecs, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "snappy" => Ok(Compression::Snappy),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "unknown compression {other:?}: none, gzip, snappy, lz4, zstd"
            )),
        }
    }
}

/// What a producer is asked to do, in Kafka's terms.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// `acks`: 0, 1 or -1 (all).
    pub acks: i16,
    pub compression: Compression,
    /// `linger.ms`.
    pub linger_ms: u64,
    /// `batch.size` in bytes.
    pub batch_size_bytes: usize,
    /// `enable.idempotence`.
    pub idempotence: bool,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            acks: -1,
            compression: Compression::None,
            linger_ms: 5,
            batch_size_bytes: 1 << 20,
            idempotence: false,
        }
    }
}

/// librdkafka configuration for a producer.
pub fn producer_config(bootstrap: &str, options: &ProducerOptions) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", options.acks.to_string())
        .set("compression.codec", options.compression.name())
        .set("linger.ms", options.linger_ms.to_string())
        .set("batch.size", options.batch_size_bytes.to_string())
        .set("enable.idempotence", options.idempotence.to_string())
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000");
    config
}

/// librdkafka configuration for a consumer that reads by assignment.
pub fn assigned_consumer_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        // librdkafka wants a group id even when no group protocol is used.
        .set("group.id", "runnel-assigned")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Fetch sizes stay at librdkafka's defaults: what real consumers ask for.
        .set("auto.offset.reset", "earliest");
    config
}

/// Creates `topic` with `partitions` partitions; an existing topic is not an error.
pub fn ensure_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), ClientError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    match admin::Admin::connect(&config, timeout)?.create_topic(topic, partitions, 1, &[]) {
        Err(ClientError::Topic {
            code: RDKafkaErrorCode::TopicAlreadyExists,
            ..
        }) => Ok(()),
        other => other,
    }
}
