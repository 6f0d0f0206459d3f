//! Dynamic broker configs (KIP-226): the live configuration, the static one overlaid by the
//! configs set through AlterConfigs / IncrementalAlterConfigs, and the checks a change must
//! pass. [`DynamicBrokerConfig`] owns the live view; the [`crate::broker::Broker`] owns it
//! and is the only writer (after the change is recorded in the metadata log).
//!
//! Layers, highest precedence first, as Kafka's `DynamicBrokerConfig`: the configs of this
//! broker (resource name = its node id; source `DYNAMIC_BROKER_CONFIG`), the cluster default
//! (empty resource name; `DYNAMIC_DEFAULT_BROKER_CONFIG`), the static configuration
//! (`server.properties` and `--override`; `STATIC_BROKER_CONFIG`), and the default
//! (`DEFAULT_CONFIG`). Setting a key removes its synonyms of lower layers, so a dynamic
//! `log.retention.ms` wins over a static `log.retention.hours` (Kafka's `overrideProps`).
//! Both dynamic layers are `BrokerConfigs` records of the metadata log: the image holds
//! them, and a restart replays them, so the live view at start already includes them.
//!
//! What a dynamic config does here ([`APPLIED`]):
//! - at once: the log defaults topics inherit (`message.max.bytes`, `log.segment.bytes`,
//!   `log.roll.ms`, `log.index.*`, `log.retention.ms`/`.bytes`, `log.cleanup.policy`,
//!   `log.cleaner.{delete.retention,min.compaction.lag,max.compaction.lag}.ms`,
//!   `log.cleaner.min.cleanable.ratio`, `log.message.timestamp.type`, `min.insync.replicas`,
//!   `compression.type`): every partition's settings are recomputed; the cleaner's
//!   `log.cleaner.backoff.ms` and `log.cleaner.dedupe.buffer.size` (its next pass); and the
//!   connection limits `max.connections`, `max.connections.per.ip` and
//!   `max.connections.per.ip.overrides` (new connections);
//! - at the next start: `log.flush.interval.messages` and `log.flush.interval.ms` (the
//!   flusher's policy, and with it whether acks wait for fsync, is fixed while it runs);
//! - recorded only: every other config Kafka marks dynamic (thread pools, SSL and SASL,
//!   `listeners`, remote storage, quotas, ...). They are accepted, validated, kept across
//!   restarts and described as Kafka would, but change nothing: Runnel has no such pool or
//!   feature, or (`listeners`) rebinding is not done. Configs that are not Kafka's are
//!   accepted and kept as Kafka keeps them (custom configs).

mod describe;
mod validate;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use runnel_metadata::MetadataImage;

use crate::broker_config_catalog;
use crate::config::{BrokerConfig, ConfigError};

pub use describe::{
    check_describe_name, describe_broker, describe_cluster_default, DescribedBrokerConfig,
};
pub use validate::{
    check_resource_name, incremental_configs, legacy_configs, validate_change, ChangeRefused,
};

/// Dynamic configs that change what Runnel does; see the module doc for when.
pub const APPLIED: &[&str] = &[
    "compression.type",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleanup.policy",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.message.timestamp.type",
    "log.retention.bytes",
    "log.retention.ms",
    "log.roll.ms",
    "log.segment.bytes",
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "message.max.bytes",
    "min.insync.replicas",
];

/// The two dynamic layers: this broker's configs and the cluster default.
#[derive(Debug, Clone, Default)]
pub struct ConfigLayers {
    pub per_broker: Arc<BTreeMap<String, String>>,
    pub cluster_default: Arc<BTreeMap<String, String>>,
}

impl ConfigLayers {
    /// This node's layers in `image`.
    pub fn from_image(image: &MetadataImage, node_id: i32) -> ConfigLayers {
        ConfigLayers {
            per_broker: image.broker_configs(&node_id.to_string()),
            cluster_default: image.broker_configs(""),
        }
    }

    /// The layers with resource `resource_name` ("" or this node's id) replaced.
    pub fn with(&self, resource_name: &str, configs: BTreeMap<String, String>) -> ConfigLayers {
        let mut layers = self.clone();
        if resource_name.is_empty() {
            layers.cluster_default = Arc::new(configs);
        } else {
            layers.per_broker = Arc::new(configs);
        }
        layers
    }

    /// The configs of resource `resource_name` ("" or this node's id).
    pub fn of(&self, resource_name: &str) -> &Arc<BTreeMap<String, String>> {
        if resource_name.is_empty() {
            &self.cluster_default
        } else {
            &self.per_broker
        }
    }
}

/// A consistent snapshot of the configuration: what a describe or a change works from.
#[derive(Debug, Clone)]
pub struct ConfigView {
    /// What the broker was started with (its `properties` are the static ones).
    pub static_config: Arc<BrokerConfig>,
    /// The live configuration: the static one overlaid by the [`APPLIED`] dynamic configs;
    /// its `properties` are the static properties overlaid by them.
    pub current: Arc<BrokerConfig>,
    pub layers: ConfigLayers,
}

/// The live configuration and the dynamic layers it was built from.
pub struct DynamicBrokerConfig {
    static_config: Arc<BrokerConfig>,
    view: RwLock<ConfigView>,
}

impl DynamicBrokerConfig {
    /// The live configuration at start: `static_config` overlaid by the dynamic configs
    /// `image` holds for this node. Dynamic configs that no longer fit (the static file
    /// changed under them) are logged and ignored as a whole, as Kafka ignores invalid
    /// dynamic configs at start.
    pub fn open(static_config: Arc<BrokerConfig>, image: &MetadataImage) -> DynamicBrokerConfig {
        let layers = ConfigLayers::from_image(image, static_config.node_id);
        let current = match overlay(&static_config, &layers) {
            Ok(current) => Arc::new(current),
            Err(error) => {
                tracing::error!(
                    %error,
                    "the dynamic broker configs do not apply over the static configuration; \
                     running with the static one"
                );
                Arc::clone(&static_config)
            }
        };
        if !layers.per_broker.is_empty() || !layers.cluster_default.is_empty() {
            tracing::info!(
                per_broker = ?layers.per_broker.keys().collect::<Vec<_>>(),
                cluster_default = ?layers.cluster_default.keys().collect::<Vec<_>>(),
                "dynamic broker configs replayed"
            );
        }
        DynamicBrokerConfig {
            view: RwLock::new(ConfigView {
                static_config: Arc::clone(&static_config),
                current,
                layers,
            }),
            static_config,
        }
    }

    /// The configuration the broker was started with.
    pub fn static_config(&self) -> &Arc<BrokerConfig> {
        &self.static_config
    }

    /// The live configuration.
    pub fn current(&self) -> Arc<BrokerConfig> {
        Arc::clone(&self.read().current)
    }

    /// A snapshot of the static, live and dynamic configuration.
    pub fn view(&self) -> ConfigView {
        self.read().clone()
    }

    /// Replaces resource `resource_name`'s layer once its record is written, returning the
    /// new live configuration (the change was validated against [`overlay`] before).
    pub(crate) fn replace(
        &self,
        resource_name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<BrokerConfig>, ConfigError> {
        let mut view = self.view.write().expect("dynamic config lock poisoned");
        let layers = view.layers.with(resource_name, configs);
        let current = Arc::new(overlay(&self.static_config, &layers)?);
        view.layers = layers;
        view.current = Arc::clone(&current);
        Ok(current)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ConfigView> {
        self.view.read().expect("dynamic config lock poisoned")
    }
}

/// The static configuration overlaid by the [`APPLIED`] configs of `layers`: the cluster
/// default first, then this broker's, each removing the synonyms it overrides.
pub fn overlay(
    static_config: &BrokerConfig,
    layers: &ConfigLayers,
) -> Result<BrokerConfig, ConfigError> {
    let mut properties = static_config.properties.clone();
    for layer in [&layers.cluster_default, &layers.per_broker] {
        for (name, value) in layer.iter() {
            if !APPLIED.contains(&name.as_str()) {
                continue;
            }
            for synonym in broker_config_catalog::synonyms(name) {
                properties.remove(&synonym);
            }
            properties.insert(name.clone(), value.clone());
        }
    }
    if properties == static_config.properties {
        return Ok(static_config.clone());
    }
    // Parsed for the typed values and Kafka's cross-checks; only the fields the applied
    // configs feed are taken from it, because the static configuration also holds what came
    // from command-line flags (`--listen`, `--data-dir`, ...), which no property names.
    let parsed = BrokerConfig::from_properties(&properties)?;
    let mut current = static_config.clone();
    current.message_max_bytes = parsed.message_max_bytes;
    current.log.segment_bytes = parsed.log.segment_bytes;
    current.log.segment_ms = parsed.log.segment_ms;
    current.log.segment_index_bytes = parsed.log.segment_index_bytes;
    current.log.index_interval_bytes = parsed.log.index_interval_bytes;
    current.retention = parsed.retention;
    current.flush = parsed.flush;
    current.cleaner.backoff_ms = parsed.cleaner.backoff_ms;
    current.cleaner.dedupe_buffer_bytes = parsed.cleaner.dedupe_buffer_bytes;
    current.connections_max = parsed.connections_max;
    current.connections_max_per_ip = parsed.connections_max_per_ip;
    current.connections_max_per_ip_overrides = parsed.connections_max_per_ip_overrides;
    // The topic defaults read through `topic_config` (cleanup policy, compression, ...).
    current.properties = properties;
    Ok(current)
}

/// `key=value` pairs as a properties map, for the tests of this module and its children.
#[cfg(test)]
pub(crate) fn test_properties(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker_config_catalog::{definition, DynamicMode};

    use super::test_properties as map;

    #[test]
    fn every_applied_config_is_dynamic_in_kafka() {
        for name in APPLIED {
            let def = definition(name).unwrap_or_else(|| panic!("{name} is not in the catalog"));
            assert_eq!(def.mode, DynamicMode::ClusterWide, "{name}");
        }
    }

    #[test]
    fn per_broker_wins_over_default_over_static() {
        let static_config = BrokerConfig::from_properties(&map(&[
            ("log.retention.hours", "5"),
            ("message.max.bytes", "5000"),
        ]))
        .expect("valid");
        let layers = ConfigLayers {
            per_broker: Arc::new(map(&[("log.retention.ms", "1000")])),
            cluster_default: Arc::new(map(&[
                ("log.retention.ms", "2000"),
                ("message.max.bytes", "7000"),
                ("num.io.threads", "16"),
            ])),
        };
        let mut static_config = static_config;
        static_config.data_dir = "/flag/data".into();
        let current = overlay(&static_config, &layers).expect("valid");
        // What came from command-line flags stays.
        assert_eq!(current.data_dir, static_config.data_dir);
        assert_eq!(current.retention.retention_ms, 1000);
        assert_eq!(current.message_max_bytes, 7000);
        assert!(!current.properties.contains_key("log.retention.hours"));
        // Recorded-only configs do not reach the live configuration.
        assert!(!current.properties.contains_key("num.io.threads"));
        assert_eq!(static_config.retention.retention_ms, 5 * 3_600_000);

        let without_broker = overlay(&static_config, &layers.with("1", BTreeMap::new()));
        assert_eq!(without_broker.expect("valid").retention.retention_ms, 2000);
    }
}
