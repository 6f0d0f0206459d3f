//! DescribeCluster (key 60): the cluster id, the controller and the brokers, as admin clients'
//! `describeCluster` asks for them (KIP-700), with the cluster's authorized operations when
//! asked (KIP-430, [`crate::authorized_operations`]).
//!
//! Answered as Kafka's `AuthHelper.computeDescribeClusterResponse` answers on a broker
//! listener: the listener is of endpoint type BROKER (1); a request for an unknown endpoint
//! type gets `UNSUPPORTED_ENDPOINT_TYPE` (v1+) and one for CONTROLLER (2)
//! `MISMATCHED_ENDPOINT_TYPE` (v1+), both `INVALID_REQUEST` at v0, with Kafka's messages. The
//! controller id is this node (a KRaft broker names a random alive broker there, KIP-590,
//! which forwards admin requests to the active controller; see
//! [`Broker::controller_id_for_clients`]); the cluster id is the quorum's. v1 adds
//! `endpoint_type` to the response; v2 (KIP-1073) asks for fenced brokers too (a broker
//! whose heartbeats stopped), listed with `is_fenced`.

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use runnel_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::authorized_operations;
use crate::broker::Broker;

/// Kafka's `EndpointType` ids.
const ENDPOINT_BROKER: i8 = 1;
const ENDPOINT_CONTROLLER: i8 = 2;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: DescribeClusterRequest = request.decode()?;
    let version = request.version;
    let response = match endpoint_error(body.endpoint_type, version) {
        Some((code, message)) => DescribeClusterResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message))),
        None => {
            // v2 (KIP-1073) may ask for the fenced brokers too, flagged.
            let brokers = broker
                .live_brokers(version >= 2 && body.include_fenced_brokers)
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(b.node_id.into())
                        .with_host(StrBytes::from_string(b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.map(StrBytes::from_string))
                        .with_is_fenced(b.fenced)
                })
                .collect();
            DescribeClusterResponse::default()
                .with_endpoint_type(ENDPOINT_BROKER)
                .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
                .with_controller_id(broker.controller_id_for_clients().into())
                .with_brokers(brokers)
                .with_cluster_authorized_operations(authorized_operations::cluster(
                    body.include_cluster_authorized_operations,
                ))
        }
    };
    Ok(Reply::Ready(request.respond(&response)?))
}

/// Kafka's answer to a request for an endpoint type other than this listener's.
fn endpoint_error(endpoint_type: i8, version: i16) -> Option<(ErrorCode, String)> {
    let (code_v1, message) = match endpoint_type {
        ENDPOINT_BROKER => return None,
        ENDPOINT_CONTROLLER => (
            ErrorCode::MismatchedEndpointType,
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of \
             type CONTROLLER"
                .to_string(),
        ),
        other => (
            ErrorCode::UnsupportedEndpointType,
            format!("Unsupported endpoint type {other}"),
        ),
    };
    let code = if version == 0 {
        ErrorCode::InvalidRequest
    } else {
        code_v1
    };
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_types_are_answered_as_kafka() {
        assert!(endpoint_error(ENDPOINT_BROKER, 1).is_none());
        let (code, _) = endpoint_error(ENDPOINT_CONTROLLER, 1).expect("error");
        assert_eq!(code, ErrorCode::MismatchedEndpointType);
        let (code, message) = endpoint_error(7, 1).expect("error");
        assert_eq!(code, ErrorCode::UnsupportedEndpointType);
        assert_eq!(message, "Unsupported endpoint type 7");
        let (code, _) = endpoint_error(0, 0).expect("error");
        assert_eq!(code, ErrorCode::InvalidRequest);
    }
}
