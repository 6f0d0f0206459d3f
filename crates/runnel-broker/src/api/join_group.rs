//! JoinGroup (key 11): a member joins or rejoins a group; the reply is parked until the
//! rebalance's join phase completes (see `runnel-coordinator`).
//!
//! v0 has no rebalance timeout (the session timeout stands in, as in Kafka); v4+ requires a
//! known member id (KIP-394: a first join gets MEMBER_ID_REQUIRED and an id); v5+ carries
//! the group instance id (KIP-345). Response fields are gated: protocol type (v7+), a
//! non-null protocol name before v7, member instance ids (v5+).

use std::sync::Arc;

use runnel_coordinator::request::{JoinRequest, JoinResult, Request as GroupRequest, Response};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::join_group_response::JoinGroupResponseMember;
use runnel_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::GroupCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: JoinGroupRequest = request.decode()?;
    let version = request.version;
    let join = JoinRequest {
        group_id: body.group_id.to_string(),
        member_id: body.member_id.to_string(),
        group_instance_id: body.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: request.client_id(),
        client_host: request.client_host(),
        session_timeout_ms: body.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            body.rebalance_timeout_ms
        } else {
            body.session_timeout_ms
        },
        protocol_type: body.protocol_type.to_string(),
        protocols: body
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let member_id = join.member_id.clone();
        let group_id = join.group_id.clone();
        let result =
            match GroupCoordinator::call(&broker, &group_id, GroupRequest::Join(join)).await {
                Ok(Response::Join(result)) => result,
                Ok(_) => JoinResult::error(ErrorCode::UnknownServerError, &member_id),
                Err(code) => JoinResult::error(code, &member_id),
            };
        request.respond(&response(result, version))
    })))
}

fn response(result: JoinResult, version: i16) -> JoinGroupResponse {
    let protocol_name = match (result.protocol_name, version >= 7) {
        (name, true) => name.map(StrBytes::from_string),
        (name, false) => Some(StrBytes::from_string(name.unwrap_or_default())),
    };
    let members = result
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(
                    m.group_instance_id
                        .filter(|_| version >= 5)
                        .map(StrBytes::from_string),
                )
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(result.error.code())
        .with_generation_id(result.generation_id)
        .with_protocol_type(
            result
                .protocol_type
                .filter(|_| version >= 7)
                .map(StrBytes::from_string),
        )
        .with_protocol_name(protocol_name)
        .with_leader(StrBytes::from_string(result.leader))
        .with_member_id(StrBytes::from_string(result.member_id))
        .with_members(members)
}
