//! FindCoordinator (key 10): this broker coordinates every group (key type 0) and every
//! transactional id (key type 1).
//!
//! The first request of a type creates its internal topic (`__consumer_offsets`,
//! `__transaction_state`) and starts that coordinator's tasks (`group_coordinator.rs`,
//! `transaction_coordinator.rs`). v0–3 ask for one key, v4+ for a batch (`coordinator_keys`).
//! Share groups (key type 2, v6) are not served: INVALID_REQUEST, as for an unknown type.

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::find_coordinator_response::Coordinator;
use runnel_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::GroupCoordinator;
use crate::transaction_coordinator::TransactionCoordinator;

/// Kafka's key type for a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// Kafka's key type for a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: FindCoordinatorRequest = request.decode()?;
    let broker = Arc::clone(broker);
    // A first request may create an internal topic: awaited before the next request is read.
    Ok(Reply::Ordered(Box::pin(async move {
        let response = find(&broker, &body, request.version).await;
        Ok(Reply::Ready(request.respond(&response)?))
    })))
}

async fn find(
    broker: &Arc<Broker>,
    body: &FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if version >= 4 {
        body.coordinator_keys.clone()
    } else {
        vec![body.key.clone()]
    };
    let mut found: Vec<(StrBytes, Result<(), ErrorCode>)> = Vec::with_capacity(keys.len());
    for key in keys {
        let outcome = match body.key_type {
            KEY_TYPE_GROUP => GroupCoordinator::ensure_started(broker).await,
            KEY_TYPE_TRANSACTION => TransactionCoordinator::ensure_started(broker)
                .await
                .map_err(|error| {
                    error
                        .error_code()
                        .unwrap_or(ErrorCode::CoordinatorNotAvailable)
                }),
            _ => Err(ErrorCode::InvalidRequest),
        };
        found.push((key, outcome));
    }
    let advertised = broker.advertised_listener();
    let node_id = broker.config.node_id;
    if version >= 4 {
        let coordinators = found
            .into_iter()
            .map(|(key, outcome)| {
                let coordinator = Coordinator::default().with_key(key);
                match outcome {
                    Ok(()) => coordinator
                        .with_node_id(node_id.into())
                        .with_host(StrBytes::from_string(advertised.host.clone()))
                        .with_port(i32::from(advertised.port))
                        .with_error_message(None),
                    Err(code) => coordinator
                        .with_node_id((-1).into())
                        .with_port(-1)
                        .with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_static_str(code.name()))),
                }
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let outcome = found.into_iter().next().map_or(Ok(()), |(_, o)| o);
        let response = match outcome {
            Ok(()) => FindCoordinatorResponse::default()
                .with_node_id(node_id.into())
                .with_host(StrBytes::from_string(advertised.host.clone()))
                .with_port(i32::from(advertised.port))
                .with_error_message(None),
            Err(code) => FindCoordinatorResponse::default()
                .with_node_id((-1).into())
                .with_port(-1)
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_static_str(code.name()))),
        };
        if version == 0 {
            response.with_error_message(Some(StrBytes::default()))
        } else {
            response
        }
    }
}
