//! AlterConfigs (key 33, the legacy API): replaces a topic's config overrides with exactly the
//! ones given; every other override returns to the broker default. Validated whole
//! (`INVALID_CONFIG` names the key), recorded in the metadata log and applied to the live
//! partitions without a restart. A broker resource (this node's id, or "" for the cluster
//! default) gets exactly the dynamic configs given, checked and applied as with
//! IncrementalAlterConfigs (see [`crate::dynamic_config`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use runnel_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::incremental_alter_configs::{alter_broker, apply};
use super::{Reply, Request};
use crate::broker::Broker;
use crate::dynamic_config;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: AlterConfigsRequest = request.decode()?;
    let broker = Arc::clone(broker);
    // In request order, and the connection's next request only after (see CreateTopics).
    Ok(Reply::Ordered(Box::pin(async move {
        let mut responses = Vec::with_capacity(body.resources.len());
        for resource in &body.resources {
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let name = resource.resource_name.as_str();
            let outcome = match resource.resource_type {
                RESOURCE_TOPIC => {
                    let configs: BTreeMap<String, String> = resource
                        .configs
                        .iter()
                        .filter_map(|c| {
                            c.value
                                .as_ref()
                                .map(|v| (c.name.to_string(), v.to_string()))
                        })
                        .collect();
                    apply(&broker, name, configs, body.validate_only).await
                }
                RESOURCE_BROKER => {
                    let entries = resource.configs.iter().map(|config| {
                        (
                            config.name.as_str(),
                            config.value.as_ref().map(|value| value.as_str()),
                        )
                    });
                    let change = |_: &_| dynamic_config::legacy_configs(entries);
                    alter_broker(&broker, name, change, body.validate_only).await
                }
                other => Err((
                    ErrorCode::InvalidRequest,
                    format!("Unknown resource type {other}"),
                )),
            };
            responses.push(match outcome {
                Ok(()) => response,
                Err((code, message)) => response
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            });
        }
        let response = AlterConfigsResponse::default().with_responses(responses);
        Ok(Reply::Ready(request.respond(&response)?))
    })))
}
