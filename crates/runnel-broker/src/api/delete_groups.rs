//! DeleteGroups (key 42): removes empty groups and their offsets (tombstones in
//! `__consumer_offsets`). A group with members gets NON_EMPTY_GROUP, an unknown one
//! GROUP_ID_NOT_FOUND.

use std::sync::Arc;

use runnel_coordinator::request::{Request as GroupRequest, Response};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::delete_groups_response::DeletableGroupResult;
use runnel_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::GroupCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: DeleteGroupsRequest = request.decode()?;
    let group_ids: Vec<String> = body.groups_names.iter().map(|g| g.to_string()).collect();
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let mut results = Vec::with_capacity(group_ids.len());
        for group_id in group_ids {
            let ask = GroupRequest::Delete(vec![group_id.clone()]);
            let error = match GroupCoordinator::call(&broker, &group_id, ask).await {
                Ok(Response::Delete(deleted)) => deleted
                    .first()
                    .map_or(ErrorCode::UnknownServerError, |(_, e)| *e),
                Ok(_) => ErrorCode::UnknownServerError,
                Err(code) => code,
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(GroupId(StrBytes::from_string(group_id)))
                    .with_error_code(error.code()),
            );
        }
        request.respond(&DeleteGroupsResponse::default().with_results(results))
    })))
}
