//! LeaveGroup (key 13): members leave at once instead of waiting out their session. v0–2
//! name one member (its error is the response's); v3+ a batch, by member id or group
//! instance id (KIP-345), with an error per member.

use std::sync::Arc;

use runnel_coordinator::request::{LeaveResult, LeavingMember, Request as GroupRequest, Response};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::leave_group_response::MemberResponse;
use runnel_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::GroupCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: LeaveGroupRequest = request.decode()?;
    let version = request.version;
    let members: Vec<LeavingMember> = if version >= 3 {
        body.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: body.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let group_id = body.group_id.to_string();
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let leaving = GroupRequest::Leave {
            group_id: group_id.clone(),
            members: members.clone(),
        };
        let result = match GroupCoordinator::call(&broker, &group_id, leaving).await {
            Ok(Response::Leave(result)) => result,
            Ok(_) => whole_failure(ErrorCode::UnknownServerError),
            Err(code) => whole_failure(code),
        };
        request.respond(&response(result, version))
    })))
}

fn whole_failure(error: ErrorCode) -> LeaveResult {
    LeaveResult {
        error,
        members: Vec::new(),
    }
}

fn response(result: LeaveResult, version: i16) -> LeaveGroupResponse {
    if version < 3 {
        let error = result
            .members
            .first()
            .map(|(_, _, e)| *e)
            .filter(|_| result.error == ErrorCode::None)
            .unwrap_or(result.error);
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    let members = result
        .members
        .into_iter()
        .map(|(member_id, instance_id, error)| {
            MemberResponse::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_group_instance_id(instance_id.map(StrBytes::from_string))
                .with_error_code(error.code())
        })
        .collect();
    LeaveGroupResponse::default()
        .with_error_code(result.error.code())
        .with_members(members)
}
