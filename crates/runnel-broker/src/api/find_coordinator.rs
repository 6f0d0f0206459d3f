//! FindCoordinator (key 10): the coordinator of a group (key type 0) or a transactional id
//! (key type 1) is the leader of the key's partition of `__consumer_offsets` or
//! `__transaction_state`. Until coordinators move with their partitions, the internal topics
//! are placed whole on the node that creates them (`Controller::place`), so in a cluster that
//! node coordinates every key and the others point clients to it.
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
    let mut found: Vec<(StrBytes, Result<Endpoint, ErrorCode>)> = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(elsewhere) = led_elsewhere(broker, body.key_type, key.as_str()) {
            found.push((key, elsewhere));
            continue;
        }
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
        let advertised = broker.advertised_listener();
        let here = Endpoint {
            node_id: broker.config.node_id,
            host: advertised.host,
            port: i32::from(advertised.port),
        };
        // The topic exists now; the key's partition may have been placed on another broker.
        let outcome = outcome
            .and_then(|()| led_elsewhere(broker, body.key_type, key.as_str()).unwrap_or(Ok(here)));
        found.push((key, outcome));
    }
    if version >= 4 {
        let coordinators = found
            .into_iter()
            .map(|(key, outcome)| {
                let coordinator = Coordinator::default().with_key(key);
                match outcome {
                    Ok(endpoint) => coordinator
                        .with_node_id(endpoint.node_id.into())
                        .with_host(StrBytes::from_string(endpoint.host))
                        .with_port(endpoint.port)
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
        let outcome = found
            .into_iter()
            .next()
            .map_or(Err(ErrorCode::InvalidRequest), |(_, o)| o);
        let response = match outcome {
            Ok(endpoint) => FindCoordinatorResponse::default()
                .with_node_id(endpoint.node_id.into())
                .with_host(StrBytes::from_string(endpoint.host))
                .with_port(endpoint.port)
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

/// Where a client reaches a coordinator.
struct Endpoint {
    node_id: i32,
    host: String,
    port: i32,
}

/// The coordinator of `key` when it is another broker: the leader of the key's partition of
/// the internal topic, once that topic exists (Kafka's `FindCoordinator` answers the
/// partition's leader). `None` when this node leads it, or the topic does not exist yet (the
/// first request creates it here); `COORDINATOR_NOT_AVAILABLE` while the leader is unknown.
fn led_elsewhere(broker: &Broker, key_type: i8, key: &str) -> Option<Result<Endpoint, ErrorCode>> {
    let (topic, partition_of): (&str, fn(&str, i32) -> i32) = match key_type {
        KEY_TYPE_GROUP => (
            crate::group_coordinator::OFFSETS_TOPIC,
            runnel_coordinator::partition_for,
        ),
        KEY_TYPE_TRANSACTION => (
            runnel_coordinator::transaction::TRANSACTION_STATE_TOPIC,
            runnel_coordinator::transaction::partition_for_transactional_id,
        ),
        _ => return None,
    };
    let (leader, registration) = broker.coordinator_leader(topic, key, partition_of)?;
    if leader == broker.config.node_id {
        return None;
    }
    Some(
        registration
            .map(|registration| Endpoint {
                node_id: leader,
                host: registration.host,
                port: registration.port,
            })
            .ok_or(ErrorCode::CoordinatorNotAvailable),
    )
}
