//! AlterConfigs (key 33, the legacy API): replaces a topic's config overrides with exactly the
//! ones given; every other override returns to the broker default. Validated whole
//! (`INVALID_CONFIG` names the key), recorded in the metadata log and applied to the live
//! partitions without a restart. Broker resources are refused: dynamic broker configs are not
//! supported.

use std::collections::BTreeMap;
use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use runnel_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::describe_configs::RESOURCE_TOPIC;
use super::incremental_alter_configs::apply;
use super::{Reply, Request};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: AlterConfigsRequest = request.decode()?;
    let responses = body
        .resources
        .iter()
        .map(|resource| {
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let outcome = if resource.resource_type == RESOURCE_TOPIC {
                let configs: BTreeMap<String, String> = resource
                    .configs
                    .iter()
                    .filter_map(|c| {
                        c.value
                            .as_ref()
                            .map(|v| (c.name.to_string(), v.to_string()))
                    })
                    .collect();
                apply(
                    broker,
                    resource.resource_name.as_str(),
                    configs,
                    body.validate_only,
                )
            } else {
                Err((
                    ErrorCode::InvalidRequest,
                    "only topic configs can be altered; broker configs are static".to_string(),
                ))
            };
            match outcome {
                Ok(()) => response,
                Err((code, message)) => response
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    let response = AlterConfigsResponse::default().with_responses(responses);
    Ok(Reply::Ready(request.respond(&response)?))
}
