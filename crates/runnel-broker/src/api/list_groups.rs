//! ListGroups (key 16): every group this broker coordinates, with its protocol type, its
//! state (v4+, filterable by state) and its type (v5+, always "classic").

use std::sync::Arc;

use runnel_coordinator::request::{Request as GroupRequest, Response};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::list_groups_response::ListedGroup;
use runnel_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use runnel_protocol::StrBytes;

use super::{Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::{GroupCoordinator, OFFSETS_TOPIC};

/// The only group type served: the classic protocol.
const GROUP_TYPE_CLASSIC: &str = "classic";

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: ListGroupsRequest = request.decode()?;
    let version = request.version;
    let states: Vec<String> = body.states_filter.iter().map(|s| s.to_string()).collect();
    let classic_wanted = body.types_filter.is_empty()
        || body
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE_CLASSIC));
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let exists = broker.controller.image().topic(OFFSETS_TOPIC).is_some();
        let mut response = ListGroupsResponse::default();
        if exists && classic_wanted {
            match GroupCoordinator::call_all(&broker, || GroupRequest::List(states.clone())).await {
                Ok(responses) => {
                    let groups = responses
                        .into_iter()
                        .flat_map(|r| match r {
                            Response::List(groups) => groups,
                            _ => Vec::new(),
                        })
                        .map(|g| {
                            let listed = ListedGroup::default()
                                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                                .with_protocol_type(StrBytes::from_string(g.protocol_type));
                            let listed = if version >= 4 {
                                listed.with_group_state(StrBytes::from_static_str(g.state))
                            } else {
                                listed
                            };
                            if version >= 5 {
                                listed
                                    .with_group_type(StrBytes::from_static_str(GROUP_TYPE_CLASSIC))
                            } else {
                                listed
                            }
                        })
                        .collect();
                    response = response.with_groups(groups);
                }
                Err(code) => response = response.with_error_code(code.code()),
            }
        }
        request.respond(&response)
    })))
}
