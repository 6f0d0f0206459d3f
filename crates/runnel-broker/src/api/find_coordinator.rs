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
    let version = request.version;
    let keys: Vec<StrBytes> = if version >= 4 {
        body.coordinator_keys.clone()
    } else {
        vec![body.key.clone()]
    };
    let found: Vec<(StrBytes, Result<(), ErrorCode>)> = keys
        .into_iter()
        .map(|key| {
            let outcome = match body.key_type {
                KEY_TYPE_GROUP => GroupCoordinator::ensure_started(broker),
                KEY_TYPE_TRANSACTION => {
                    TransactionCoordinator::ensure_started(broker).map_err(|error| {
                        error
                            .error_code()
                            .unwrap_or(ErrorCode::CoordinatorNotAvailable)
                    })
                }
                _ => Err(ErrorCode::InvalidRequest),
            };
            (key, outcome)
        })
        .collect();
    let advertised = broker.advertised_listener();
    let node_id = broker.config.node_id;
    let response = if version >= 4 {
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
    };
    Ok(Reply::Ready(request.respond(&response)?))
}
