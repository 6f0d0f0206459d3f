//! DescribeConfigs (key 32): a topic's effective configuration, or this broker's.
//!
//! Topics: every config of [`crate::topic_config::TOPIC_CONFIGS`] (or the requested keys) with
//! its effective value and source, synonyms when asked (v1+), types and documentation (v3+).
//! Brokers: every broker config Kafka lists, with the dynamic layers (this node's id), or the
//! configs set on the cluster default (an empty name): see [`crate::dynamic_config`].

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
use crate::dynamic_config;
use crate::topic_config;

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
                RESOURCE_BROKER => {
                    broker_configs(broker, resource, keys.as_deref(), synonyms, documentation)
                }
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
    let described = topic_config::describe(&topic.configs, &broker.dynamic.view(), keys);
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

/// A broker resource: this node (every broker config, see
/// [`crate::dynamic_config::describe_broker`]) or the cluster default (the configs set on it).
fn broker_configs(
    broker: &Broker,
    resource: &DescribeConfigsResource,
    keys: Option<&[String]>,
    include_synonyms: bool,
    include_documentation: bool,
) -> Described {
    let name = resource.resource_name.as_str();
    dynamic_config::check_describe_name(name, broker.config.node_id)
        .map_err(|refused| (refused.code, refused.message))?;
    let view = broker.dynamic.view();
    let described = if name.is_empty() {
        dynamic_config::describe_cluster_default(&view, keys)
    } else {
        dynamic_config::describe_broker(&view, keys)
    };
    let text = |value: Option<String>| value.map(StrBytes::from_string);
    Ok(described
        .into_iter()
        .map(|config| {
            let synonyms = if include_synonyms {
                config
                    .synonyms
                    .into_iter()
                    .map(|(name, value, source)| {
                        DescribeConfigsSynonym::default()
                            .with_name(StrBytes::from_string(name))
                            .with_value(text(value))
                            .with_source(source)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_string(config.name))
                .with_value(text(config.value))
                .with_read_only(config.read_only)
                .with_config_source(config.source)
                .with_is_sensitive(config.sensitive)
                .with_synonyms(synonyms)
                .with_config_type(config.config_type)
                .with_documentation(
                    config
                        .documentation
                        .filter(|_| include_documentation)
                        .map(StrBytes::from_static_str),
                )
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
