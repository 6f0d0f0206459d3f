//! SyncGroup (key 14): members fetch their assignment; the leader brings everyone's. A
//! follower's reply is parked until the leader's assignment arrives and is durable.
//! Protocol type and name are checked and returned from v5 only.

use std::sync::Arc;

use runnel_coordinator::request::{Request as GroupRequest, Response, SyncRequest, SyncResult};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::GroupCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: SyncGroupRequest = request.decode()?;
    let version = request.version;
    let sync = SyncRequest {
        group_id: body.group_id.to_string(),
        generation_id: body.generation_id,
        member_id: body.member_id.to_string(),
        group_instance_id: body.group_instance_id.as_ref().map(|s| s.to_string()),
        protocol_type: body.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: body.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: body
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let group_id = sync.group_id.clone();
        let result =
            match GroupCoordinator::call(&broker, &group_id, GroupRequest::Sync(sync)).await {
                Ok(Response::Sync(result)) => result,
                Ok(_) => SyncResult::error(ErrorCode::UnknownServerError),
                Err(code) => SyncResult::error(code),
            };
        let gated =
            |value: Option<String>| value.filter(|_| version >= 5).map(StrBytes::from_string);
        let response = SyncGroupResponse::default()
            .with_error_code(result.error.code())
            .with_protocol_type(gated(result.protocol_type))
            .with_protocol_name(gated(result.protocol_name))
            .with_assignment(result.assignment);
        request.respond(&response)
    })))
}
