//! How Runnel's own tools talk to a cluster: producer, consumer and admin clients configured
//! from typed options, over librdkafka (the `rdkafka` crate, bundled build).
//!
//! A well-kept client rather than a home-made one (DESIGN.md §1): the benchmark then measures
//! the broker as real applications see it, and the CLI behaves like every other Kafka tool.
//! This crate owns the mapping from Runnel's options to librdkafka's configuration names and
//! the admin calls the tools need ([`admin`]), and the three admin requests librdkafka has no
//! call for ([`wire_admin`]: transactions and producers); it knows nothing of broker internals.

pub mod admin;
pub mod reset;
pub mod wire_admin;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

pub use rdkafka;

/// Failures of the tools' client calls. Each says a Kafka error by Kafka's name and
/// librdkafka's description of it, once (`TOPIC_ALREADY_EXISTS: Topic already exists`), and
/// exposes no source: the text is already complete, so a cause chain printed with it does not
/// repeat it.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{}", describe_kafka_error(.0))]
    Kafka(KafkaError),
    #[error("topic {topic}: {}", describe_code(*.code))]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("group {group}: {}", describe_code(*.code))]
    Group {
        group: String,
        code: RDKafkaErrorCode,
    },
    /// No broker answered within the connect timeout.
    #[error(
        "no broker at {bootstrap} answered within {} ms ({}); is it running?",
        .timeout.as_millis(),
        describe_kafka_error(.error)
    )]
    Unreachable {
        bootstrap: String,
        timeout: Duration,
        error: KafkaError,
    },
    #[error("starting a runtime for admin calls: {0}")]
    Runtime(std::io::Error),
    /// A request the tool refuses before asking the cluster (a bad argument, a group state).
    #[error("{0}")]
    Refused(String),
}

impl From<KafkaError> for ClientError {
    fn from(error: KafkaError) -> Self {
        ClientError::Kafka(error)
    }
}

impl ClientError {
    /// The Kafka (or librdkafka) error code, when the failure has one.
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            ClientError::Kafka(error) | ClientError::Unreachable { error, .. } => {
                error.rdkafka_error_code()
            }
            ClientError::Topic { code, .. } | ClientError::Group { code, .. } => Some(*code),
            ClientError::Runtime(_) | ClientError::Refused(_) => None,
        }
    }
}

/// `NAME: description` for a broker error code (Kafka's name, e.g. `UNKNOWN_TOPIC_OR_PARTITION`,
/// and librdkafka's description without its `Broker: ` prefix); librdkafka's own description
/// for a local one (`Local: Broker transport failure`).
pub fn describe_code(code: RDKafkaErrorCode) -> String {
    // The rdkafka crate says a code as `Name (librdkafka's description)`.
    let said = code.to_string();
    let description = said
        .split_once(" (")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(&said);
    let wire = code as i32;
    if wire <= 0 {
        return description.to_string();
    }
    let description = description.strip_prefix("Broker: ").unwrap_or(description);
    let name = i16::try_from(wire)
        .ok()
        .and_then(runnel_protocol::ErrorCode::from_code)
        .map(|known| known.name().to_string())
        .unwrap_or_else(|| upper_snake(&format!("{code:?}")));
    format!("{name}: {description}")
}

/// A librdkafka error as [`describe_code`] says its code; errors without one (a bad
/// configuration property) as librdkafka words them.
pub fn describe_kafka_error(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, description, _, _) => description.clone(),
        other => match other.rdkafka_error_code() {
            Some(code) => describe_code(code),
            None => other.to_string(),
        },
    }
}

/// `TopicAlreadyExists` → `TOPIC_ALREADY_EXISTS`.
fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
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
pub fn ensure_topic(admin: &admin::Admin, topic: &str, partitions: i32) -> Result<(), ClientError> {
    match admin.create_topic(topic, partitions, 1, &[]) {
        Err(ClientError::Topic {
            code: RDKafkaErrorCode::TopicAlreadyExists,
            ..
        }) => Ok(()),
        other => other,
    }
}

/// Waits (at most `timeout`) for a broker of `bootstrap` to answer a Metadata request, so that
/// a tool pointed at a cluster that is not there fails within seconds with
/// [`ClientError::Unreachable`] instead of retrying for as long as librdkafka would.
pub fn probe<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    bootstrap: &str,
    timeout: Duration,
) -> Result<(), ClientError> {
    match client.fetch_metadata(None, timeout) {
        Ok(_) => Ok(()),
        Err(error) => Err(ClientError::Unreachable {
            bootstrap: bootstrap.to_string(),
            timeout,
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_said_by_kafka_name_and_description_once() {
        assert_eq!(
            describe_code(RDKafkaErrorCode::TopicAlreadyExists),
            "TOPIC_ALREADY_EXISTS: Topic already exists"
        );
        assert_eq!(
            describe_code(RDKafkaErrorCode::UnknownTopicOrPartition),
            "UNKNOWN_TOPIC_OR_PARTITION: Unknown topic or partition"
        );
        // librdkafka's own (local) errors keep its wording.
        assert_eq!(
            describe_code(RDKafkaErrorCode::BrokerTransportFailure),
            "Local: Broker transport failure"
        );
        assert_eq!(upper_snake("GroupIdNotFound"), "GROUP_ID_NOT_FOUND");
        let error = ClientError::Topic {
            topic: "orders".into(),
            code: RDKafkaErrorCode::TopicAlreadyExists,
        };
        assert_eq!(
            error.to_string(),
            "topic orders: TOPIC_ALREADY_EXISTS: Topic already exists"
        );
        assert!(std::error::Error::source(&error).is_none());
    }
}
