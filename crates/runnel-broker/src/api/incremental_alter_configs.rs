//! IncrementalAlterConfigs (key 44): changes some of a topic's config overrides, or some of
//! a broker resource's dynamic configs (this node's id, or "" for the cluster default).
//!
//! Operations, as Kafka: SET a value, DELETE an override (back to the broker default), APPEND
//! to or SUBTRACT from a list config (`cleanup.policy`). A topic's resulting overrides are
//! validated whole (`INVALID_CONFIG` names the key), recorded in the metadata log, and applied
//! to the live partitions without a restart. A broker resource's are checked as Kafka checks
//! them (`INVALID_REQUEST` for a config that is not dynamic or a bad value, see
//! [`crate::dynamic_config`]), recorded, and applied where they mean something here.

use std::collections::BTreeMap;
use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use runnel_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use runnel_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{Reply, Request};
use crate::broker::{AlterBrokerConfigsError, AlterConfigsError, Broker};
use crate::dynamic_config::{self, ChangeRefused};
use crate::topic_config::{self, ConfigType};

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: IncrementalAlterConfigsRequest = request.decode()?;
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
                RESOURCE_TOPIC => match changed_configs(&broker, name, &resource.configs) {
                    Ok(configs) => apply(&broker, name, configs, body.validate_only).await,
                    Err(error) => Err(error),
                },
                RESOURCE_BROKER => {
                    let operations = resource.configs.iter().map(|config| {
                        (
                            config.name.as_str(),
                            config.config_operation,
                            config.value.as_ref().map(|value| value.as_str()),
                        )
                    });
                    let change =
                        |current: &_| dynamic_config::incremental_configs(current, operations);
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
        let response = IncrementalAlterConfigsResponse::default().with_responses(responses);
        Ok(Reply::Ready(request.respond(&response)?))
    })))
}

type Outcome<T> = Result<T, (ErrorCode, String)>;

/// The topic's overrides after the operations.
fn changed_configs(
    broker: &Broker,
    topic: &str,
    operations: &[AlterableConfig],
) -> Outcome<BTreeMap<String, String>> {
    let image = broker.controller.image();
    let Some(current) = image.topic(topic) else {
        return Err((
            ErrorCode::UnknownTopicOrPartition,
            format!("Topic '{topic}' does not exist."),
        ));
    };
    let mut configs = current.configs.clone();
    for operation in operations {
        let name = operation.name.to_string();
        let invalid = |reason: &str| (ErrorCode::InvalidConfig, format!("{name}: {reason}"));
        let Some(def) = topic_config::definition(&name) else {
            return Err(invalid("unknown topic configuration"));
        };
        let value = operation.value.as_ref().map(ToString::to_string);
        match operation.config_operation {
            SET => {
                let value = value.ok_or_else(|| invalid("SET needs a value"))?;
                configs.insert(name, value);
            }
            DELETE => {
                configs.remove(&name);
            }
            APPEND | SUBTRACT if def.kind != ConfigType::List => {
                return Err(invalid("APPEND and SUBTRACT apply to list configs only"));
            }
            APPEND | SUBTRACT => {
                let value = value.ok_or_else(|| invalid("APPEND and SUBTRACT need a value"))?;
                let existing = configs.get(&name).cloned().unwrap_or_else(|| {
                    topic_config::broker_value(def, &broker.dynamic.current()).0
                });
                let mut items: Vec<String> = existing
                    .split(',')
                    .map(|item| item.trim().to_string())
                    .filter(|item| !item.is_empty())
                    .collect();
                for item in value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                {
                    if operation.config_operation == APPEND {
                        if !items.iter().any(|existing| existing == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|existing| existing != item);
                    }
                }
                configs.insert(name, items.join(","));
            }
            other => {
                return Err((
                    ErrorCode::InvalidRequest,
                    format!("unknown config operation {other}"),
                ))
            }
        }
    }
    Ok(configs)
}

/// Validates, records and applies a topic's new overrides; shared with AlterConfigs.
pub(super) async fn apply(
    broker: &Broker,
    topic: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Outcome<()> {
    broker
        .alter_topic_configs(topic, configs, validate_only)
        .await
        .map_err(|error| match error {
            AlterConfigsError::UnknownTopic(_) => (
                ErrorCode::UnknownTopicOrPartition,
                format!("Topic '{topic}' does not exist."),
            ),
            AlterConfigsError::Invalid(error) => (ErrorCode::InvalidConfig, error.to_string()),
            AlterConfigsError::Controller(error) => {
                tracing::error!(topic, %error, "recording a topic config change failed");
                (ErrorCode::KafkaStorageError, error.to_string())
            }
        })
}

/// Changes broker resource `name`'s dynamic configs: the name is checked (this node's id or
/// empty, Kafka's `validateResourceNameIsCurrentNodeId`), then `change` makes the new set
/// from the current one.
pub(super) async fn alter_broker(
    broker: &Broker,
    name: &str,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ChangeRefused>,
    validate_only: bool,
) -> Outcome<()> {
    let refused = |refused: ChangeRefused| (refused.code, refused.message);
    dynamic_config::check_resource_name(name, broker.config.node_id).map_err(refused)?;
    broker
        .alter_broker_configs(name, change, validate_only)
        .await
        .map_err(|error| match error {
            AlterBrokerConfigsError::Refused(refusal) => refused(refusal),
            // Values too large for one metadata record: the request's fault, not the disk's.
            AlterBrokerConfigsError::Controller(
                error @ crate::controller::ControllerError::RecordTooLarge { .. },
            ) => (ErrorCode::InvalidRequest, error.to_string()),
            AlterBrokerConfigsError::Controller(error) => {
                tracing::error!(resource = name, %error, "recording a broker config change failed");
                (ErrorCode::KafkaStorageError, error.to_string())
            }
        })
}
