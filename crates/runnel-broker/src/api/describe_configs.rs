//! DescribeConfigs (key 32): a topic's effective configuration, or this broker's.
//!
//! Topics: every config of [`crate::topic_config::TOPIC_CONFIGS`] (or the requested keys) with
//! its effective value and source, synonyms when asked (v1+), types and documentation (v3+).
//! Brokers: the static configuration this broker runs with, read-only (dynamic broker configs
//! are not supported).

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::describe_configs_request::DescribeConfigsResource;
use runnel_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use runnel_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::Broker;
use crate::topic_config::{self, source};

/// Kafka's resource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: DescribeConfigsRequest = request.decode()?;
    let version = request.version;
    let synonyms = body.include_synonyms;
    let documentation = body.include_documentation && version >= 3;
    let results = body
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let keys: Option<Vec<String>> = resource
                .configuration_keys
                .as_ref()
                .map(|keys| keys.iter().map(ToString::to_string).collect());
            let configs = match resource.resource_type {
                RESOURCE_TOPIC => topic(broker, resource, keys.as_deref(), synonyms, documentation),
                RESOURCE_BROKER => broker_configs(broker, resource, keys.as_deref()),
                other => Err((
                    ErrorCode::InvalidRequest,
                    format!("resource type {other} is not supported"),
                )),
            };
            match configs {
                Ok(configs) => result.with_configs(
                    configs
                        .into_iter()
                        .map(|config| for_version(config, version))
                        .collect(),
                ),
                Err((code, message)) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    let response = DescribeConfigsResponse::default().with_results(results);
    Ok(Reply::Ready(request.respond(&response)?))
}

type Described = Result<Vec<DescribeConfigsResourceResult>, (ErrorCode, String)>;

fn topic(
    broker: &Broker,
    resource: &DescribeConfigsResource,
    keys: Option<&[String]>,
    include_synonyms: bool,
    include_documentation: bool,
) -> Described {
    let name = resource.resource_name.as_str();
    let image = broker.controller.image();
    let Some(topic) = image.topic(name) else {
        return Err((
            ErrorCode::UnknownTopicOrPartition,
            format!("Topic '{name}' does not exist."),
        ));
    };
    let described = topic_config::describe(&topic.configs, &broker.config, keys);
    Ok(described
        .into_iter()
        .map(|config| {
            let synonyms = if include_synonyms {
                config
                    .synonyms
                    .iter()
                    .map(|(name, value, source)| {
                        DescribeConfigsSynonym::default()
                            .with_name(StrBytes::from_static_str(name))
                            .with_value(Some(StrBytes::from_string(value.clone())))
                            .with_source(*source)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(config.def.name))
                .with_value(Some(StrBytes::from_string(config.value)))
                .with_config_source(config.source)
                .with_synonyms(synonyms)
                .with_config_type(config.def.kind as i8)
                .with_documentation(
                    include_documentation
                        .then(|| StrBytes::from_static_str(config.def.documentation)),
                )
        })
        .collect())
}

/// The broker's own configuration: what it was started with, plus the effective values of
/// the keys Runnel reads.
fn broker_configs(
    broker: &Broker,
    resource: &DescribeConfigsResource,
    keys: Option<&[String]>,
) -> Described {
    let name = resource.resource_name.as_str();
    let node_id = broker.config.node_id.to_string();
    if !name.is_empty() && name != node_id {
        return Err((
            ErrorCode::InvalidRequest,
            format!("this is broker {node_id}, not {name}"),
        ));
    }
    let config = &broker.config;
    let mut entries: std::collections::BTreeMap<String, (String, i8)> = [
        ("node.id", config.node_id.to_string()),
        ("num.partitions", config.num_partitions.to_string()),
        (
            "auto.create.topics.enable",
            config.auto_create_topics_enable.to_string(),
        ),
        ("message.max.bytes", config.message_max_bytes.to_string()),
        (
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
        ),
        ("log.segment.bytes", config.log.segment_bytes.to_string()),
        ("log.roll.ms", config.log.segment_ms.to_string()),
        (
            "log.retention.ms",
            config.retention.retention_ms.to_string(),
        ),
        (
            "log.retention.bytes",
            config.retention.retention_bytes.to_string(),
        ),
        (
            "log.flush.interval.messages",
            config.flush.interval_messages.to_string(),
        ),
        (
            "log.flush.interval.ms",
            config.flush.interval_ms.to_string(),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), (value, source::DEFAULT_CONFIG)))
    .collect();
    for (key, value) in &config.properties {
        let effective = entries
            .get(key)
            .map_or_else(|| value.clone(), |(v, _)| v.clone());
        entries.insert(key.clone(), (effective, source::STATIC_BROKER_CONFIG));
    }
    Ok(entries
        .into_iter()
        .filter(|(key, _)| keys.is_none_or(|keys| keys.contains(key)))
        .map(|(key, (value, source))| {
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_string(key))
                .with_value(Some(StrBytes::from_string(value)))
                .with_read_only(true)
                .with_config_source(source)
        })
        .collect())
}

/// Clears what the request's version does not have: type and documentation (v3+).
fn for_version(
    mut config: DescribeConfigsResourceResult,
    version: i16,
) -> DescribeConfigsResourceResult {
    if version < 3 {
        config.config_type = 0;
        config.documentation = None;
    }
    config
}
