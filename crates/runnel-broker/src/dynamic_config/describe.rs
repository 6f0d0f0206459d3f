//! DescribeConfigs' entries for a broker resource, as Kafka's `ConfigHelper` builds them.
//!
//! A broker (resource name = its node id) lists every config of the catalog, and every other
//! key set statically or dynamically; each with its synonyms in precedence order (per-broker
//! dynamic, cluster default, static, default; for each layer in
//! [`broker_config_catalog::synonyms`] order), cut before the first synonym that is not the
//! config itself (Kafka's `dropWhile`, so `log.retention.hours` does not report a
//! `log.retention.ms` above it). The source is the first synonym's. The value is the first
//! synonym's, except for `log.retention.ms` and `log.roll.ms`, which report the effective
//! milliseconds when only a coarser synonym is set (Kafka reports null there). Sensitive
//! configs (passwords, and keys of no known type) have null values, synonyms included.
//!
//! The cluster default (empty resource name) lists only the configs set on it, with the
//! `DYNAMIC_DEFAULT_BROKER_CONFIG` synonyms alone.

use std::collections::BTreeSet;

use runnel_protocol::ErrorCode;

use super::{ChangeRefused, ConfigView};
use crate::broker_config_catalog::{self, BrokerConfigDef, ENTRIES};
use crate::topic_config::source;

/// One described broker config.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribedBrokerConfig {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
    /// Kafka's `ConfigType` (0 when unknown).
    pub config_type: i8,
    pub documentation: Option<&'static str>,
    /// (name, value, source), highest precedence first.
    pub synonyms: Vec<(String, Option<String>, i8)>,
}

/// Checks a DescribeConfigs resource name of a broker: empty or this node's id (Kafka's
/// `ConfigHelper` messages).
pub fn check_describe_name(name: &str, node_id: i32) -> Result<(), ChangeRefused> {
    if name.is_empty() {
        return Ok(());
    }
    let invalid = |message: String| ChangeRefused {
        code: ErrorCode::InvalidRequest,
        message,
    };
    let id: i32 = name
        .parse()
        .map_err(|_| invalid(format!("Broker id must be an integer, but it is: {name}")))?;
    if id != node_id {
        return Err(invalid(format!(
            "Unexpected broker id, expected {node_id} or empty string, but received {name}"
        )));
    }
    Ok(())
}

/// The catalog entry of `name`, or of the base config of a listener override.
fn definition_of(name: &str) -> Option<&'static BrokerConfigDef> {
    broker_config_catalog::definition(name).or_else(|| {
        broker_config_catalog::listener_base_name(name).and_then(broker_config_catalog::definition)
    })
}

/// This broker's configs (all, or `keys`).
pub fn describe_broker(view: &ConfigView, keys: Option<&[String]>) -> Vec<DescribedBrokerConfig> {
    let mut names: BTreeSet<String> = ENTRIES.iter().map(|def| def.name.to_string()).collect();
    names.extend(view.static_config.properties.keys().cloned());
    names.extend(view.layers.per_broker.keys().cloned());
    names.extend(view.layers.cluster_default.keys().cloned());
    names
        .into_iter()
        .filter(|name| keys.is_none_or(|keys| keys.contains(name)))
        .map(|name| broker_entry(view, name))
        .collect()
}

fn broker_entry(view: &ConfigView, name: String) -> DescribedBrokerConfig {
    let def = definition_of(&name);
    let sensitive = def.is_none_or(BrokerConfigDef::is_sensitive);
    let all_names = broker_config_catalog::synonyms(&name);
    let mut synonyms = Vec::new();
    for (layer, layer_source) in [
        (&*view.layers.per_broker, source::DYNAMIC_BROKER_CONFIG),
        (
            &*view.layers.cluster_default,
            source::DYNAMIC_DEFAULT_BROKER_CONFIG,
        ),
        (&view.static_config.properties, source::STATIC_BROKER_CONFIG),
    ] {
        for synonym in &all_names {
            if let Some(value) = layer.get(synonym) {
                synonyms.push((synonym.clone(), Some(value.clone()), layer_source));
            }
        }
    }
    for synonym in &all_names {
        if let Some(def) = broker_config_catalog::definition(synonym) {
            let value = def.default.map(str::to_string);
            synonyms.push((synonym.clone(), value, source::DEFAULT_CONFIG));
        }
    }
    let first = synonyms.iter().position(|(synonym, ..)| *synonym == name);
    let synonyms: Vec<_> = synonyms.split_off(first.unwrap_or(synonyms.len()));
    let config_source = synonyms
        .first()
        .map_or(source::DEFAULT_CONFIG, |(_, _, source)| *source);
    let mut value = synonyms.first().and_then(|(_, value, _)| value.clone());
    if config_source == source::DEFAULT_CONFIG {
        value = effective_value(&name, view).or(value);
    }
    let hide = |value: Option<String>| if sensitive { None } else { value };
    DescribedBrokerConfig {
        value: hide(value),
        source: config_source,
        read_only: !broker_config_catalog::definition(&name)
            .is_some_and(BrokerConfigDef::is_dynamic),
        sensitive,
        config_type: def.map_or(0, |def| def.kind as i8),
        documentation: def.map(|def| def.documentation),
        synonyms: synonyms
            .into_iter()
            .map(|(name, value, source)| (name, hide(value), source))
            .collect(),
        name,
    }
}

/// The value Runnel runs with where it derives one from a coarser synonym.
fn effective_value(name: &str, view: &ConfigView) -> Option<String> {
    let current = &view.current;
    match name {
        "log.retention.ms" => Some(current.retention.retention_ms.to_string()),
        "log.roll.ms" => Some(current.log.segment_ms.to_string()),
        "broker.id" | "node.id" => Some(current.node_id.to_string()),
        _ => None,
    }
}

/// The cluster default's configs (all set, or `keys` of them).
pub fn describe_cluster_default(
    view: &ConfigView,
    keys: Option<&[String]>,
) -> Vec<DescribedBrokerConfig> {
    let layer = &view.layers.cluster_default;
    layer
        .iter()
        .filter(|(name, _)| keys.is_none_or(|keys| keys.contains(name)))
        .map(|(name, value)| {
            let def = definition_of(name);
            let sensitive = def.is_none_or(BrokerConfigDef::is_sensitive);
            let hide = |value: &str| (!sensitive).then(|| value.to_string());
            let synonyms: Vec<_> = broker_config_catalog::synonyms(name)
                .into_iter()
                .filter_map(|synonym| {
                    let value = layer.get(&synonym)?;
                    Some((synonym, value.clone()))
                })
                .skip_while(|(synonym, _)| synonym != name)
                .map(|(synonym, value)| {
                    let value = hide(&value);
                    (synonym, value, source::DYNAMIC_DEFAULT_BROKER_CONFIG)
                })
                .collect();
            DescribedBrokerConfig {
                name: name.clone(),
                value: hide(value),
                source: source::DYNAMIC_DEFAULT_BROKER_CONFIG,
                read_only: !broker_config_catalog::definition(name)
                    .is_some_and(BrokerConfigDef::is_dynamic),
                sensitive,
                config_type: def.map_or(0, |def| def.kind as i8),
                documentation: def.map(|def| def.documentation),
                synonyms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::dynamic_config::{overlay, ConfigLayers};

    use crate::dynamic_config::test_properties as map;

    fn view(static_pairs: &[(&str, &str)], layers: ConfigLayers) -> ConfigView {
        let static_config =
            Arc::new(BrokerConfig::from_properties(&map(static_pairs)).expect("valid"));
        let current = Arc::new(overlay(&static_config, &layers).expect("valid"));
        ConfigView {
            static_config,
            current,
            layers,
        }
    }

    fn entry<'a>(entries: &'a [DescribedBrokerConfig], name: &str) -> &'a DescribedBrokerConfig {
        entries.iter().find(|e| e.name == name).expect("listed")
    }

    #[test]
    fn sources_and_synonyms_follow_precedence() {
        let layers = ConfigLayers {
            per_broker: Arc::new(map(&[("log.retention.ms", "1000")])),
            cluster_default: Arc::new(map(&[("log.retention.ms", "2000")])),
        };
        let view = view(
            &[("log.retention.hours", "5"), ("num.partitions", "3")],
            layers,
        );
        let entries = describe_broker(&view, None);
        assert!(entries.len() >= 200, "{}", entries.len());
        let retention = entry(&entries, "log.retention.ms");
        assert_eq!(retention.value.as_deref(), Some("1000"));
        assert_eq!(retention.source, source::DYNAMIC_BROKER_CONFIG);
        assert!(!retention.read_only);
        let sources: Vec<(&str, i8)> = retention
            .synonyms
            .iter()
            .map(|(name, _, source)| (name.as_str(), *source))
            .collect();
        assert_eq!(
            sources,
            [
                ("log.retention.ms", 2),
                ("log.retention.ms", 3),
                ("log.retention.hours", 4),
                ("log.retention.ms", 5),
                ("log.retention.minutes", 5),
                ("log.retention.hours", 5),
            ]
        );
        let hours = entry(&entries, "log.retention.hours");
        assert_eq!((hours.value.as_deref(), hours.source), (Some("5"), 4));
        assert!(hours.read_only);
        let partitions = entry(&entries, "num.partitions");
        assert_eq!(
            (partitions.value.as_deref(), partitions.source),
            (Some("3"), 4)
        );
        let flush = entry(&entries, "log.flush.interval.messages");
        assert_eq!((flush.value.as_deref(), flush.source), (Some("1"), 5));
        let password = entry(&entries, "ssl.key.password");
        assert!(password.sensitive && password.value.is_none());

        let defaults = describe_cluster_default(&view, None);
        assert_eq!(defaults.len(), 1);
        assert_eq!(defaults[0].source, source::DYNAMIC_DEFAULT_BROKER_CONFIG);
        assert_eq!(defaults[0].synonyms.len(), 1);
    }

    #[test]
    fn derived_values_show_what_runnel_runs_with() {
        let view = view(&[("log.retention.hours", "2")], ConfigLayers::default());
        let entries = describe_broker(&view, Some(&["log.retention.ms".to_string()]));
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].value.as_deref(), Some("7200000"));
        assert_eq!(entries[0].source, source::DEFAULT_CONFIG);
        assert_eq!(
            check_describe_name("2", 1).map_err(|e| e.message),
            Err("Unexpected broker id, expected 1 or empty string, but received 2".into())
        );
    }
}
