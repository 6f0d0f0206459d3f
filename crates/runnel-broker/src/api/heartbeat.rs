//! Heartbeat (key 12): keeps a member's session alive and tells it of a rebalance
//! (REBALANCE_IN_PROGRESS).

use std::sync::Arc;

use runnel_coordinator::request::{
    HeartbeatRequest as GroupHeartbeat, Request as GroupRequest, Response,
};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use runnel_protocol::ErrorCode;

use super::{Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::GroupCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: HeartbeatRequest = request.decode()?;
    let heartbeat = GroupHeartbeat {
        group_id: body.group_id.to_string(),
        generation_id: body.generation_id,
        member_id: body.member_id.to_string(),
        group_instance_id: body.group_instance_id.as_ref().map(|s| s.to_string()),
    };
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let group_id = heartbeat.group_id.clone();
        let error =
            match GroupCoordinator::call(&broker, &group_id, GroupRequest::Heartbeat(heartbeat))
                .await
            {
                Ok(Response::Heartbeat(error)) => error,
                Ok(_) => ErrorCode::UnknownServerError,
                Err(code) => code,
            };
        request.respond(&HeartbeatResponse::default().with_error_code(error.code()))
    })))
}
