//! The catalog of broker configs: every config a Kafka 4.1 broker lists in DescribeConfigs,
//! with Kafka's name, type, default, dynamic update mode and a short description, plus
//! Runnel's own keys. It is data ([`entries`]); this module looks entries up, validates values
//! as Kafka's `ConfigDef` parses them (same error texts), and names the synonyms Kafka
//! reports together.
//!
//! Where the catalog comes from (apache/kafka 4.1): the definitions of `ServerConfigs`,
//! `KRaftConfigs`, `QuorumConfig`, `MetadataLogConfig`, `SocketServerConfigs`,
//! `ReplicationConfigs`, `GroupCoordinatorConfig`, `ShareGroupConfig`,
//! `ShareCoordinatorConfig`, `CleanerConfig`, `ServerLogConfigs`, `TransactionLogConfig`,
//! `TransactionStateManagerConfig`, `MetricConfigs`, `QuotaConfig`, `BrokerSecurityConfigs`,
//! `DelegationTokenManagerConfigs` and `RemoteLogManagerConfig` (merged in
//! `AbstractKafkaConfig.CONFIG_DEF`); the dynamic modes from `DynamicBrokerConfig`
//! (`ALL_DYNAMIC_CONFIGS`, and `PER_BROKER_CONFIGS`: the listener and SSL/SASL configs,
//! all other dynamic ones are cluster-wide). Internal configs (Kafka's `defineInternal`) are
//! left out, as Kafka's DescribeConfigs leaves them out.
//!
//! Defaults: Kafka's, except where Runnel's differ (documented in [`crate::config`]):
//! `log.flush.interval.messages` (1), `queued.max.request.bytes` (256 MiB), `max.connections`
//! (10,000), `listeners` (`PLAINTEXT://127.0.0.1:9092`), `log.dir` (`./data`),
//! `process.roles` and `node.id` (a combined node 1), and `log.segment.bytes`' minimum (14
//! bytes, Kafka 4's is 1 MiB). Invariant (tested): names are unique, and every default
//! passes its own validation.

mod entries;

use crate::topic_config::ConfigType;

pub use entries::ENTRIES;

/// Whether, and at which level, a config may be changed while the broker runs (Kafka's
/// `DynamicBrokerConfig.dynamicConfigUpdateModes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamicMode {
    /// Read at start only: IncrementalAlterConfigs refuses it.
    ReadOnly,
    /// Dynamic for one broker only (`listeners`, SSL and SASL): refused on the cluster default.
    PerBroker,
    /// Dynamic for one broker or for the cluster default.
    ClusterWide,
}

/// A value check beyond the type (Kafka's `ConfigDef.Validator`s).
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// Any value of the type.
    Any,
    /// `Range.atLeast`.
    AtLeast(i64),
    /// `Range.between`.
    Between(i64, i64),
    /// `Range.between` over doubles.
    BetweenF(f64, f64),
    /// `ValidString.in`.
    OneOf(&'static [&'static str]),
    /// `ValidList.in`: every item one of these.
    ListOf(&'static [&'static str]),
}

/// One broker config.
#[derive(Debug)]
pub struct BrokerConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    /// The default Runnel runs with (Kafka's, except where noted in the module doc); `None`
    /// for Kafka's `null` default.
    pub default: Option<&'static str>,
    pub mode: DynamicMode,
    pub check: Check,
    pub documentation: &'static str,
}

impl BrokerConfigDef {
    /// Kafka's `maybeSensitive`: passwords are never shown.
    pub fn is_sensitive(&self) -> bool {
        self.kind == ConfigType::Password
    }

    pub fn is_dynamic(&self) -> bool {
        self.mode != DynamicMode::ReadOnly
    }
}

/// The definition of broker config `name`.
pub fn definition(name: &str) -> Option<&'static BrokerConfigDef> {
    // About 230 entries, looked up a few hundred times per DescribeConfigs: a scan is enough.
    ENTRIES.iter().find(|def| def.name == name)
}

/// The names Kafka reports as synonyms of `name`, highest precedence first
/// (`DynamicBrokerConfig.brokerConfigSynonyms`): `log.roll.ms`/`log.roll.hours`,
/// `log.roll.jitter.*`, `log.retention.ms`/`.minutes`/`.hours`, `log.flush.interval.ms`
/// over `log.flush.scheduler.interval.ms`, and a listener override over its base config.
pub fn synonyms(name: &str) -> Vec<String> {
    const ROLL: &[&str] = &["log.roll.ms", "log.roll.hours"];
    const JITTER: &[&str] = &["log.roll.jitter.ms", "log.roll.jitter.hours"];
    const RETENTION: &[&str] = &[
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
    ];
    const FLUSH: &[&str] = &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"];
    for group in [ROLL, JITTER, RETENTION] {
        if group.contains(&name) {
            return group.iter().map(ToString::to_string).collect();
        }
    }
    if name == FLUSH[0] {
        return FLUSH.iter().map(ToString::to_string).collect();
    }
    if let Some(base) = listener_base_name(name) {
        return vec![name.to_string(), base.to_string()];
    }
    vec![name.to_string()]
}

/// The base config of a listener override `listener.name.<listener>.<config>` (for SASL
/// mechanism configs, `listener.name.<listener>.<mechanism>.<config>`), as Kafka's
/// `ListenerConfigRegex` reads it.
pub fn listener_base_name(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("listener.name.")?;
    let (_listener, base) = rest.split_once('.')?;
    const MECHANISM_CONFIGS: &[&str] = &[
        "sasl.jaas.config",
        "sasl.login.callback.handler.class",
        "sasl.login.class",
        "sasl.server.callback.handler.class",
        "connections.max.reauth.ms",
    ];
    Some(
        MECHANISM_CONFIGS
            .iter()
            .find(|config| base.ends_with(*config))
            .copied()
            .unwrap_or(base),
    )
}

/// Checks `value` for `def` as Kafka's `ConfigDef.parse` would, with Kafka's message
/// ("Invalid value x for configuration y: Not a number of type INT").
pub fn validate(def: &BrokerConfigDef, value: &str) -> Result<(), String> {
    let invalid = |reason: &str| {
        format!(
            "Invalid value {value} for configuration {}: {reason}",
            def.name
        )
    };
    let trimmed = value.trim();
    let number = match def.kind {
        ConfigType::Boolean => {
            if !trimmed.eq_ignore_ascii_case("true") && !trimmed.eq_ignore_ascii_case("false") {
                return Err(invalid("Expected value to be either true or false"));
            }
            None
        }
        ConfigType::Int => Some(
            trimmed
                .parse::<i32>()
                .map(f64::from)
                .map_err(|_| invalid("Not a number of type INT"))?,
        ),
        ConfigType::Short => Some(
            trimmed
                .parse::<i16>()
                .map(f64::from)
                .map_err(|_| invalid("Not a number of type SHORT"))?,
        ),
        ConfigType::Long => Some(
            trimmed
                .parse::<i64>()
                .map(|n| n as f64)
                .map_err(|_| invalid("Not a number of type LONG"))?,
        ),
        ConfigType::Double => Some(
            trimmed
                .parse::<f64>()
                .map_err(|_| invalid("Not a number of type DOUBLE"))?,
        ),
        ConfigType::String | ConfigType::List | ConfigType::Class | ConfigType::Password => None,
    };
    match (def.check, number) {
        (Check::AtLeast(min), Some(n)) if n < min as f64 => {
            Err(invalid(&format!("Value must be at least {min}")))
        }
        (Check::Between(min, _), Some(n)) if n < min as f64 => {
            Err(invalid(&format!("Value must be at least {min}")))
        }
        (Check::Between(_, max), Some(n)) if n > max as f64 => {
            Err(invalid(&format!("Value must be no more than {max}")))
        }
        (Check::BetweenF(min, _), Some(n)) if n < min => {
            Err(invalid(&format!("Value must be at least {min:?}")))
        }
        (Check::BetweenF(_, max), Some(n)) if n > max => {
            Err(invalid(&format!("Value must be no more than {max:?}")))
        }
        (Check::OneOf(allowed), _) if !allowed.contains(&trimmed) => Err(invalid(&format!(
            "String must be one of: {}",
            allowed.join(", ")
        ))),
        (Check::ListOf(allowed), _) => {
            match list_items(trimmed).find(|item| !allowed.contains(item)) {
                Some(_) => Err(invalid(&format!(
                    "String must be one of: {}",
                    allowed.join(", ")
                ))),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// The items of a LIST value: comma-separated, trimmed, empty ones dropped.
pub fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_defaults_are_valid() {
        let mut names: Vec<&str> = ENTRIES.iter().map(|def| def.name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name appears twice");
        assert!(count >= 200, "the catalog has {count} entries");
        for def in ENTRIES {
            if let Some(default) = def.default {
                assert_eq!(validate(def, default), Ok(()), "{}", def.name);
            }
            assert!(!def.documentation.is_empty(), "{}", def.name);
        }
    }

    #[test]
    fn kafka_modes_are_kept() {
        let mode = |name: &str| definition(name).map(|def| def.mode);
        assert_eq!(mode("log.retention.ms"), Some(DynamicMode::ClusterWide));
        // Only the first synonym of a topic config is dynamic (ServerTopicConfigSynonyms).
        assert_eq!(mode("log.retention.hours"), Some(DynamicMode::ReadOnly));
        assert_eq!(mode("log.roll.hours"), Some(DynamicMode::ReadOnly));
        assert_eq!(
            mode("max.connections.per.ip"),
            Some(DynamicMode::ClusterWide)
        );
        assert_eq!(mode("listeners"), Some(DynamicMode::PerBroker));
        assert_eq!(mode("ssl.keystore.location"), Some(DynamicMode::PerBroker));
        assert_eq!(mode("log.dirs"), Some(DynamicMode::ReadOnly));
        assert_eq!(mode("node.id"), Some(DynamicMode::ReadOnly));
        assert!(definition("ssl.key.password").is_some_and(BrokerConfigDef::is_sensitive));
    }

    #[test]
    fn values_are_checked_with_kafkas_messages() {
        let def = |name| definition(name).expect("listed");
        assert_eq!(
            validate(def("log.retention.ms"), "soon"),
            Err(
                "Invalid value soon for configuration log.retention.ms: Not a number of type LONG"
                    .into()
            )
        );
        assert_eq!(
            validate(def("message.max.bytes"), "-1"),
            Err(
                "Invalid value -1 for configuration message.max.bytes: Value must be at least 0"
                    .into()
            )
        );
        assert!(validate(def("message.max.bytes"), "3000000000").is_err());
        assert!(validate(def("log.cleanup.policy"), "compact, delete").is_ok());
        assert!(validate(def("log.cleanup.policy"), "shred").is_err());
        assert!(validate(def("compression.type"), "brotli").is_err());
        assert!(validate(def("log.cleaner.min.cleanable.ratio"), "1.5").is_err());
        assert!(validate(def("auto.create.topics.enable"), "TRUE").is_ok());
        assert!(validate(def("auto.create.topics.enable"), "yes").is_err());
    }

    #[test]
    fn synonyms_follow_kafkas_order() {
        assert_eq!(
            synonyms("log.retention.hours"),
            [
                "log.retention.ms",
                "log.retention.minutes",
                "log.retention.hours"
            ]
        );
        assert_eq!(synonyms("log.roll.ms"), ["log.roll.ms", "log.roll.hours"]);
        assert_eq!(synonyms("message.max.bytes"), ["message.max.bytes"]);
        assert_eq!(
            synonyms("listener.name.external.ssl.keystore.type"),
            [
                "listener.name.external.ssl.keystore.type",
                "ssl.keystore.type"
            ]
        );
        assert_eq!(
            listener_base_name("listener.name.sasl_plaintext.plain.sasl.jaas.config"),
            Some("sasl.jaas.config")
        );
    }
}
