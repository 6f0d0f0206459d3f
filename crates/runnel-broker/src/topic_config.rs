//! Topic configs with Kafka's names: their types, validation, broker-level synonyms, and how a
//! topic's effective configuration is described.
//!
//! One table, [`TOPIC_CONFIGS`], drives everything: CreateTopics and the alter APIs validate
//! overrides against it (`INVALID_CONFIG` naming the key), and DescribeConfigs lists every
//! entry with its effective value and where it came from: the topic's override
//! (`DYNAMIC_TOPIC_CONFIG`), the broker's dynamic configs (`DYNAMIC_BROKER_CONFIG`,
//! `DYNAMIC_DEFAULT_BROKER_CONFIG`), its `server.properties` or `--override`
//! (`STATIC_BROKER_CONFIG`), or the default (`DEFAULT_CONFIG`), with those synonyms in
//! precedence order when asked.

use std::collections::BTreeMap;

use crate::config::{BrokerConfig, ConfigError};
use crate::dynamic_config::ConfigView;

/// DescribeConfigs `config_source` values (Kafka's `ConfigSource`).
pub mod source {
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const DYNAMIC_BROKER_CONFIG: i8 = 2;
    pub const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
}

/// DescribeConfigs v3+ `config_type` values (Kafka's `ConfigType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// One topic config.
pub struct TopicConfigDef {
    pub name: &'static str,
    /// The broker config that supplies the default (`log.retention.ms` for `retention.ms`).
    pub broker_synonym: &'static str,
    pub kind: ConfigType,
    /// Kafka's default, used when the broker config is not set either.
    pub kafka_default: &'static str,
    /// Extra validation beyond the type, e.g. a minimum or a set of values.
    pub check: fn(&str) -> Result<(), String>,
    pub documentation: &'static str,
}

fn at_least(value: &str, min: i64) -> Result<(), String> {
    match value.parse::<i64>() {
        Ok(number) if number >= min => Ok(()),
        Ok(_) => Err(format!("must be at least {min}")),
        Err(_) => Err("not a number".into()),
    }
}

fn not_negative_one_or_more(value: &str) -> Result<(), String> {
    at_least(value, -1)
}

fn non_negative(value: &str) -> Result<(), String> {
    at_least(value, 0)
}

fn positive(value: &str) -> Result<(), String> {
    at_least(value, 1)
}

fn segment_bytes(value: &str) -> Result<(), String> {
    at_least(value, 14)
}

fn index_bytes(value: &str) -> Result<(), String> {
    at_least(value, 4)
}

fn ratio(value: &str) -> Result<(), String> {
    match value.parse::<f64>() {
        Ok(number) if (0.0..=1.0).contains(&number) => Ok(()),
        Ok(_) => Err("must be between 0 and 1".into()),
        Err(_) => Err("not a number".into()),
    }
}

fn boolean(value: &str) -> Result<(), String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => Err("expected true or false".into()),
    }
}

fn cleanup_policy(value: &str) -> Result<(), String> {
    let policies: Vec<&str> = value.split(',').map(str::trim).collect();
    if value.trim().is_empty() || policies.iter().any(|p| !matches!(*p, "delete" | "compact")) {
        return Err("expected a list of delete and compact".into());
    }
    Ok(())
}

fn compression_type(value: &str) -> Result<(), String> {
    match value {
        "uncompressed" | "zstd" | "lz4" | "snappy" | "gzip" | "producer" => Ok(()),
        _ => Err("expected uncompressed, zstd, lz4, snappy, gzip or producer".into()),
    }
}

fn timestamp_type(value: &str) -> Result<(), String> {
    match value {
        "CreateTime" | "LogAppendTime" => Ok(()),
        _ => Err("expected CreateTime or LogAppendTime".into()),
    }
}

const fn def(
    name: &'static str,
    broker_synonym: &'static str,
    kind: ConfigType,
    kafka_default: &'static str,
    check: fn(&str) -> Result<(), String>,
    documentation: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_synonym,
        kind,
        kafka_default,
        check,
        documentation,
    }
}

/// Every topic config Runnel accepts, in name order.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def("cleanup.policy", "log.cleanup.policy", ConfigType::List, "delete", cleanup_policy,
        "delete: old segments are removed by retention; compact: the latest record per key is kept."),
    def("compression.type", "compression.type", ConfigType::String, "producer", compression_type,
        "The codec batches are stored in: producer keeps each batch's own; uncompressed, gzip, snappy, lz4 or zstd recompress batches that come in another."),
    def("delete.retention.ms", "log.cleaner.delete.retention.ms", ConfigType::Long, "86400000",
        non_negative, "How long tombstones are kept in compacted topics."),
    def("file.delete.delay.ms", "log.segment.delete.delay.ms", ConfigType::Long, "60000",
        non_negative, "Accepted for compatibility; Runnel deletes segment files at once."),
    def("flush.messages", "log.flush.interval.messages", ConfigType::Long, "1", positive,
        "Accepted for compatibility; flushing follows the broker's log.flush.interval.messages."),
    def("flush.ms", "log.flush.interval.ms", ConfigType::Long, "1000", non_negative,
        "Accepted for compatibility; flushing follows the broker's log.flush.interval.ms."),
    def("index.interval.bytes", "log.index.interval.bytes", ConfigType::Int, "4096", non_negative,
        "Bytes of log between offset index entries."),
    def("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", ConfigType::Long,
        "9223372036854775807", positive, "The longest a record stays uncompacted."),
    def("max.message.bytes", "message.max.bytes", ConfigType::Int, "1048588", non_negative,
        "The largest record batch accepted."),
    def("message.timestamp.after.max.ms", "log.message.timestamp.after.max.ms", ConfigType::Long,
        "3600000", non_negative, "How far after the broker's clock a record's create time may lie; later records are refused (INVALID_TIMESTAMP). Ignored with LogAppendTime."),
    def("message.timestamp.before.max.ms", "log.message.timestamp.before.max.ms", ConfigType::Long,
        "9223372036854775807", non_negative, "How far before the broker's clock a record's create time may lie; earlier records are refused (INVALID_TIMESTAMP). Ignored with LogAppendTime."),
    def("message.timestamp.type", "log.message.timestamp.type", ConfigType::String, "CreateTime",
        timestamp_type, "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's time."),
    def("min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", ConfigType::Double, "0.5",
        ratio, "The share of the log not yet compacted at which compaction runs."),
    def("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", ConfigType::Long, "0",
        non_negative, "The shortest a record stays uncompacted."),
    def("min.insync.replicas", "min.insync.replicas", ConfigType::Int, "1", positive,
        "The fewest in-sync replicas an acks=all produce needs (NOT_ENOUGH_REPLICAS below it); a single node is a one-replica ISR."),
    def("retention.bytes", "log.retention.bytes", ConfigType::Long, "-1", not_negative_one_or_more,
        "The size a partition keeps before old segments are deleted; -1 for no limit."),
    def("retention.ms", "log.retention.ms", ConfigType::Long, "604800000", not_negative_one_or_more,
        "How long records are kept before their segment is deleted; -1 for ever."),
    def("segment.bytes", "log.segment.bytes", ConfigType::Int, "1073741824", segment_bytes,
        "Segment size at which a new segment is rolled."),
    def("segment.index.bytes", "log.index.size.max.bytes", ConfigType::Int, "10485760",
        index_bytes, "Offset index size at which a new segment is rolled."),
    def("segment.ms", "log.roll.ms", ConfigType::Long, "604800000", positive,
        "Segment age at which a new segment is rolled."),
    def("unclean.leader.election.enable", "unclean.leader.election.enable", ConfigType::Boolean,
        "false", boolean, "Accepted for compatibility; a single node has no other replica."),
];

/// The definition of a topic config, by name.
pub fn definition(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// Checks that `value` is legal for `name`, as Kafka's type and validator would.
pub fn validate(name: &str, value: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError {
        key: name.to_string(),
        value: value.to_string(),
        reason,
    };
    let def = definition(name).ok_or_else(|| invalid("unknown topic configuration".into()))?;
    (def.check)(value.trim()).map_err(invalid)
}

/// The broker's value for topic config `name` (its synonym's value, or Kafka's default).
pub fn broker_default(name: &str, broker: &BrokerConfig) -> String {
    definition(name).map_or_else(String::new, |def| broker_value(def, broker).0)
}

/// Checks a broker-level default (`log.cleanup.policy`, ...) as its topic config would be.
pub fn validate_broker_default(key: &str, value: &str) -> Result<(), ConfigError> {
    let Some(def) = TOPIC_CONFIGS.iter().find(|def| def.broker_synonym == key) else {
        return Err(ConfigError {
            key: key.into(),
            value: value.into(),
            reason: "unknown".into(),
        });
    };
    (def.check)(value.trim()).map_err(|reason| ConfigError {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    })
}

/// The value a topic gets from the broker when it has no override, and its source.
pub fn broker_value(def: &'static TopicConfigDef, broker: &BrokerConfig) -> (String, i8) {
    let effective = match def.name {
        "max.message.bytes" => Some(broker.message_max_bytes.to_string()),
        "segment.bytes" => Some(broker.log.segment_bytes.to_string()),
        "segment.ms" => Some(broker.log.segment_ms.to_string()),
        "segment.index.bytes" => Some(broker.log.segment_index_bytes.to_string()),
        "index.interval.bytes" => Some(broker.log.index_interval_bytes.to_string()),
        "retention.ms" => Some(broker.retention.retention_ms.to_string()),
        "retention.bytes" => Some(broker.retention.retention_bytes.to_string()),
        "flush.messages" => Some(broker.flush.interval_messages.to_string()),
        "flush.ms" => Some(broker.flush.interval_ms.to_string()),
        _ => None,
    };
    let set_explicitly = broker_keys(def)
        .iter()
        .any(|key| broker.properties.contains_key(*key));
    let value = effective
        .or_else(|| broker.properties.get(def.broker_synonym).cloned())
        .unwrap_or_else(|| def.kafka_default.to_string());
    let source = if set_explicitly {
        source::STATIC_BROKER_CONFIG
    } else {
        source::DEFAULT_CONFIG
    };
    (value, source)
}

/// Broker keys that feed a topic config (Kafka has several for some).
fn broker_keys(def: &'static TopicConfigDef) -> &'static [&'static str] {
    match def.name {
        "retention.ms" => &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        "segment.ms" => &["log.roll.ms", "log.roll.hours"],
        _ => std::slice::from_ref(&def.broker_synonym),
    }
}

/// One described config: its effective value, source and synonyms (most specific first).
pub struct DescribedConfig {
    pub def: &'static TopicConfigDef,
    pub value: String,
    pub source: i8,
    /// (name, value, source), the topic's own first.
    pub synonyms: Vec<(&'static str, String, i8)>,
}

/// Describes every topic config for a topic with `overrides`, or only `keys` when given.
/// Synonyms: the topic's override, the broker's dynamic configs (this broker's, then the
/// cluster default, each of the broker keys that feed the config), then the static or
/// default broker value.
pub fn describe(
    overrides: &BTreeMap<String, String>,
    broker: &ConfigView,
    keys: Option<&[String]>,
) -> Vec<DescribedConfig> {
    TOPIC_CONFIGS
        .iter()
        .filter(|def| keys.is_none_or(|keys| keys.iter().any(|key| key == def.name)))
        .map(|def| {
            let (static_value, static_source) = broker_value(def, &broker.static_config);
            let mut synonyms = Vec::new();
            if let Some(value) = overrides.get(def.name) {
                synonyms.push((def.name, value.clone(), source::DYNAMIC_TOPIC_CONFIG));
            }
            for (layer, layer_source) in [
                (&broker.layers.per_broker, source::DYNAMIC_BROKER_CONFIG),
                (
                    &broker.layers.cluster_default,
                    source::DYNAMIC_DEFAULT_BROKER_CONFIG,
                ),
            ] {
                for key in broker_keys(def) {
                    if let Some(value) = layer.get(*key) {
                        synonyms.push((*key, value.clone(), layer_source));
                    }
                }
            }
            synonyms.push((def.broker_synonym, static_value, static_source));
            let (_, mut value, source) = synonyms[0].clone();
            if source != source::DYNAMIC_TOPIC_CONFIG {
                // What the topic runs with, in the topic config's unit.
                value = broker_value(def, &broker.current).0;
            }
            DescribedConfig {
                def,
                value,
                source,
                synonyms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_every_default_is_valid() {
        let names: Vec<&str> = TOPIC_CONFIGS.iter().map(|def| def.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        for def in TOPIC_CONFIGS {
            assert!(
                validate(def.name, def.kafka_default).is_ok(),
                "{}",
                def.name
            );
        }
    }

    #[test]
    fn values_are_checked_by_type() {
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert_eq!(
            validate("no.such", "1").map_err(|e| e.key),
            Err("no.such".to_string())
        );
    }

    #[test]
    fn overrides_come_first_then_the_broker() {
        let mut broker = BrokerConfig::default();
        broker
            .properties
            .insert("log.retention.hours".into(), "1".into());
        broker.retention.retention_ms = 3_600_000;
        let overrides = BTreeMap::from([("segment.bytes".to_string(), "2048".to_string())]);
        let broker = std::sync::Arc::new(broker);
        let view = ConfigView {
            static_config: std::sync::Arc::clone(&broker),
            current: std::sync::Arc::clone(&broker),
            layers: Default::default(),
        };
        let described = describe(&overrides, &view, None);
        let segment = described
            .iter()
            .find(|d| d.def.name == "segment.bytes")
            .expect("listed");
        assert_eq!(
            (segment.value.as_str(), segment.source),
            ("2048", source::DYNAMIC_TOPIC_CONFIG)
        );
        assert_eq!(segment.synonyms.len(), 2);
        let retention = described
            .iter()
            .find(|d| d.def.name == "retention.ms")
            .expect("listed");
        assert_eq!(
            (retention.value.as_str(), retention.source),
            ("3600000", source::STATIC_BROKER_CONFIG)
        );
        let policy = described
            .iter()
            .find(|d| d.def.name == "cleanup.policy")
            .expect("listed");
        assert_eq!(
            (policy.value.as_str(), policy.source),
            ("delete", source::DEFAULT_CONFIG)
        );
        let only = describe(&overrides, &view, Some(&["segment.ms".to_string()]));
        assert_eq!(only.len(), 1);
    }
}
