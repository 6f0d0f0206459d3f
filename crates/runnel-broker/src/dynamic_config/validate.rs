//! The checks a change of dynamic broker configs passes, in Kafka's order and with Kafka's
//! error codes and messages (`ConfigAdminManager.preprocess` and `validateBrokerConfigChange`,
//! `DynamicBrokerConfig.validateConfigs`): the resource name, duplicate keys and null values,
//! the operations, then the whole new set: configs that are not dynamic, SSL configs without
//! a listener prefix, values (type and range), per-broker configs on the cluster default,
//! and finally the live configuration the change would give. Kafka answers all of these
//! with `INVALID_REQUEST` (KAFKA-13609 keeps it so), except APPEND/SUBTRACT on a config that
//! is not a list (`INVALID_CONFIG`). Kafka 4.1 formats name sets as Scala does, `Set(a, b)`.

use std::collections::BTreeMap;

use runnel_protocol::ErrorCode;

use super::{overlay, ConfigView};
use crate::broker_config_catalog::{self, list_items, DynamicMode};
use crate::topic_config::ConfigType;

/// A change refused, with the code and message Kafka answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRefused {
    pub code: ErrorCode,
    pub message: String,
}

impl ChangeRefused {
    fn invalid_request(message: impl Into<String>) -> ChangeRefused {
        ChangeRefused {
            code: ErrorCode::InvalidRequest,
            message: message.into(),
        }
    }
}

/// IncrementalAlterConfigs' operations (Kafka's `AlterConfigOp.OpType`).
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// SSL configs that may change dynamically only with a listener prefix
/// (`SslConfigs.RECONFIGURABLE_CONFIGS`).
const LISTENER_ONLY_SECURITY_CONFIGS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.truststore.certificates",
];

/// Listener configs Kafka allows on the cluster default (`ClusterLevelListenerConfigs`).
const CLUSTER_LEVEL_LISTENER_CONFIGS: &[&str] = &[
    "max.connections",
    "max.connection.creation.rate",
    "num.network.threads",
];

/// Checks an alteration's resource name: empty (the cluster default) or this node's id.
pub fn check_resource_name(name: &str, node_id: i32) -> Result<(), ChangeRefused> {
    if name.is_empty() {
        return Ok(());
    }
    let id: i32 = name.parse().map_err(|_| {
        ChangeRefused::invalid_request(format!("Node id must be an integer, but it is: {name}"))
    })?;
    if id != node_id {
        return Err(ChangeRefused::invalid_request(format!(
            "Unexpected broker id, expected {node_id}, but received {name}"
        )));
    }
    Ok(())
}

/// The configs of a resource after IncrementalAlterConfigs' `operations` (name, operation,
/// value) over `current`, as Kafka's `prepareIncrementalConfigs`.
pub fn incremental_configs<'a>(
    current: &BTreeMap<String, String>,
    operations: impl IntoIterator<Item = (&'a str, i8, Option<&'a str>)> + Clone,
) -> Result<BTreeMap<String, String>, ChangeRefused> {
    check_keys_and_values(
        operations
            .clone()
            .into_iter()
            .map(|(name, op, value)| (name, op == DELETE || value.is_some())),
    )?;
    let mut configs = current.clone();
    for (name, op, value) in operations {
        let value = value.unwrap_or_default();
        match op {
            SET => {
                configs.insert(name.to_string(), value.to_string());
            }
            DELETE => {
                configs.remove(name);
            }
            APPEND | SUBTRACT => {
                let is_list = broker_config_catalog::definition(name)
                    .is_some_and(|def| def.kind == ConfigType::List);
                if !is_list {
                    let verb = if op == APPEND { "append" } else { "subtract" };
                    return Err(ChangeRefused {
                        code: ErrorCode::InvalidConfig,
                        message: format!(
                            "Config value {verb} is not allowed for config key: {name}"
                        ),
                    });
                }
                let old = configs.get(name).cloned().or_else(|| {
                    (op == APPEND)
                        .then(|| broker_config_catalog::definition(name)?.default)
                        .flatten()
                        .map(str::to_string)
                });
                let mut items: Vec<String> = old
                    .as_deref()
                    .map(|old| list_items(old).map(str::to_string).collect())
                    .unwrap_or_default();
                for item in list_items(value) {
                    if op == APPEND {
                        if !items.iter().any(|existing| existing == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|existing| existing != item);
                    }
                }
                configs.insert(name.to_string(), items.join(","));
            }
            other => {
                return Err(ChangeRefused::invalid_request(format!(
                    "Unknown operations type {other}"
                )))
            }
        }
    }
    Ok(configs)
}

/// The configs of a resource replaced whole by AlterConfigs' `entries` (name, value).
pub fn legacy_configs<'a>(
    entries: impl IntoIterator<Item = (&'a str, Option<&'a str>)> + Clone,
) -> Result<BTreeMap<String, String>, ChangeRefused> {
    check_keys_and_values(
        entries
            .clone()
            .into_iter()
            .map(|(name, value)| (name, value.is_some())),
    )?;
    Ok(entries
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_string(), value?.to_string())))
        .collect())
}

/// Duplicate keys, then values missing where one is needed (`(name, has a value or needs
/// none)`).
fn check_keys_and_values<'a>(
    entries: impl IntoIterator<Item = (&'a str, bool)>,
) -> Result<(), ChangeRefused> {
    let entries: Vec<(&str, bool)> = entries.into_iter().collect();
    let mut names: Vec<&str> = entries.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(ChangeRefused::invalid_request(
            "Error due to duplicate config keys",
        ));
    }
    let nulls: Vec<&str> = entries
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| *name)
        .collect();
    if !nulls.is_empty() {
        return Err(ChangeRefused::invalid_request(format!(
            "Null value not supported for : {}",
            nulls.join(", ")
        )));
    }
    Ok(())
}

/// Checks `configs`, the whole new dynamic set of resource `resource_name` ("" for the
/// cluster default, else this node's id, already checked), as Kafka's
/// `DynamicBrokerConfig.validate`.
pub fn validate_change(
    view: &ConfigView,
    resource_name: &str,
    configs: &BTreeMap<String, String>,
) -> Result<(), ChangeRefused> {
    let names = |test: &dyn Fn(&str) -> bool| -> Vec<&str> {
        configs
            .keys()
            .map(String::as_str)
            .filter(|name| test(name))
            .collect()
    };
    let refuse_names = |what: &str, names: Vec<&str>| -> Result<(), ChangeRefused> {
        if names.is_empty() {
            return Ok(());
        }
        Err(ChangeRefused::invalid_request(format!(
            "{what}: Set({})",
            names.join(", ")
        )))
    };
    let read_only =
        |name: &str| broker_config_catalog::definition(name).is_some_and(|def| !def.is_dynamic());
    refuse_names("Cannot update these configs dynamically", names(&read_only))?;
    refuse_names(
        "These security configs can be dynamically updated only per-listener using the \
         listener prefix",
        names(&|name| LISTENER_ONLY_SECURITY_CONFIGS.contains(&name)),
    )?;
    for (name, value) in configs {
        let base = broker_config_catalog::listener_base_name(name).unwrap_or(name);
        if let Some(def) = broker_config_catalog::definition(base).filter(|def| def.is_dynamic()) {
            broker_config_catalog::validate(def, value).map_err(ChangeRefused::invalid_request)?;
        }
    }
    if resource_name.is_empty() {
        refuse_names(
            "Cannot update these configs at default cluster level, broker id must be specified",
            names(&per_broker_only),
        )?;
    }
    let layers = view.layers.with(resource_name, configs.clone());
    overlay(&view.static_config, &layers)
        .map(drop)
        .map_err(|error| ChangeRefused::invalid_request(error.to_string()))
}

/// A config that may be set for one broker only (Kafka's `perBrokerConfigs`).
fn per_broker_only(name: &str) -> bool {
    if let Some(base) = broker_config_catalog::listener_base_name(name) {
        return !CLUSTER_LEVEL_LISTENER_CONFIGS.contains(&base);
    }
    broker_config_catalog::definition(name).is_some_and(|def| def.mode == DynamicMode::PerBroker)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::dynamic_config::ConfigLayers;

    use crate::dynamic_config::test_properties as map;

    fn view() -> ConfigView {
        let config = Arc::new(BrokerConfig::default());
        ConfigView {
            static_config: Arc::clone(&config),
            current: config,
            layers: ConfigLayers::default(),
        }
    }

    fn refused(resource: &str, pairs: &[(&str, &str)]) -> ChangeRefused {
        validate_change(&view(), resource, &map(pairs)).expect_err("refused")
    }

    #[test]
    fn resource_names_are_checked_as_kafka_does() {
        assert!(check_resource_name("", 1).is_ok());
        assert!(check_resource_name("1", 1).is_ok());
        let error = check_resource_name("2", 1).expect_err("another node");
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert_eq!(
            error.message,
            "Unexpected broker id, expected 1, but received 2"
        );
        assert_eq!(
            check_resource_name("one", 1).map_err(|e| e.message),
            Err("Node id must be an integer, but it is: one".to_string())
        );
    }

    #[test]
    fn read_only_configs_are_refused_with_kafkas_message() {
        let error = refused(
            "1",
            &[
                ("log.dirs", "/x"),
                ("node.id", "3"),
                ("log.retention.ms", "1"),
            ],
        );
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert_eq!(
            error.message,
            "Cannot update these configs dynamically: Set(log.dirs, node.id)"
        );
        let error = refused("1", &[("ssl.keystore.location", "/k")]);
        assert!(
            error.message.starts_with("These security configs"),
            "{}",
            error.message
        );
        let error = refused("", &[("listeners", "PLAINTEXT://:9093")]);
        assert_eq!(
            error.message,
            "Cannot update these configs at default cluster level, broker id must be \
             specified: Set(listeners)"
        );
        assert!(validate_change(&view(), "1", &map(&[("listeners", "PLAINTEXT://:9093")])).is_ok());
    }

    #[test]
    fn values_are_validated() {
        let error = refused("", &[("log.retention.ms", "soon")]);
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert_eq!(
            error.message,
            "Invalid value soon for configuration log.retention.ms: Not a number of type LONG"
        );
        assert!(refused("", &[("max.connections.per.ip", "0")])
            .message
            .contains("max.connections.per.ip"));
        // Custom configs are kept, as Kafka keeps them.
        assert!(validate_change(&view(), "", &map(&[("my.custom", "x")])).is_ok());
    }

    #[test]
    fn incremental_operations_follow_kafka() {
        let current = map(&[("log.cleanup.policy", "delete"), ("num.io.threads", "9")]);
        let next = incremental_configs(
            &current,
            [
                ("log.cleanup.policy", APPEND, Some("compact")),
                ("num.io.threads", DELETE, None),
                ("metric.reporters", APPEND, Some("a,b")),
            ],
        )
        .expect("valid");
        assert_eq!(
            next,
            map(&[
                ("log.cleanup.policy", "delete,compact"),
                ("metric.reporters", "a,b")
            ])
        );
        let next = incremental_configs(&next, [("log.cleanup.policy", SUBTRACT, Some("delete"))])
            .expect("valid");
        assert_eq!(next["log.cleanup.policy"], "compact");
        let error = incremental_configs(&current, [("num.io.threads", APPEND, Some("1"))])
            .expect_err("not a list");
        assert_eq!(error.code, ErrorCode::InvalidConfig);
        let error = incremental_configs(&current, [("a", SET, Some("1")), ("a", SET, Some("2"))])
            .expect_err("duplicate");
        assert_eq!(error.message, "Error due to duplicate config keys");
        let error = incremental_configs(&current, [("a", SET, None)]).expect_err("null");
        assert_eq!(error.message, "Null value not supported for : a");
        assert_eq!(
            legacy_configs([("a", Some("1")), ("b", Some("2"))]).expect("valid"),
            map(&[("a", "1"), ("b", "2")])
        );
    }
}
