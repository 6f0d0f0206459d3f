//! DescribeGroups (key 15): each group's state, protocol and members (with metadata and
//! assignment when Stable). An unknown group is described as Dead with no error, as Kafka
//! does before v6. Member instance ids exist from v4, authorized operations from v3 (not
//! computed: Kafka's "omitted" value).

use std::sync::Arc;

use runnel_coordinator::request::{GroupDescription, Request as GroupRequest, Response};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use runnel_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::GroupCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: DescribeGroupsRequest = request.decode()?;
    let version = request.version;
    let group_ids: Vec<String> = body.groups.iter().map(|g| g.to_string()).collect();
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let mut groups = Vec::with_capacity(group_ids.len());
        for group_id in group_ids {
            let ask = GroupRequest::Describe(vec![group_id.clone()]);
            let described = match GroupCoordinator::call(&broker, &group_id, ask).await {
                Ok(Response::Describe(mut described)) if described.len() == 1 => {
                    describe(described.remove(0), version)
                }
                Ok(_) => failed(&group_id, ErrorCode::UnknownServerError),
                Err(code) => failed(&group_id, code),
            };
            groups.push(described);
        }
        request.respond(&DescribeGroupsResponse::default().with_groups(groups))
    })))
}

fn failed(group_id: &str, error: ErrorCode) -> DescribedGroup {
    DescribedGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(group_id.to_string())))
        .with_error_code(error.code())
}

fn describe(group: GroupDescription, version: i16) -> DescribedGroup {
    let members = group
        .members
        .into_iter()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(
                    m.group_instance_id
                        .filter(|_| version >= 4)
                        .map(StrBytes::from_string),
                )
                .with_client_id(StrBytes::from_string(m.client_id))
                .with_client_host(StrBytes::from_string(m.client_host))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment)
        })
        .collect();
    DescribedGroup::default()
        .with_error_code(group.error.code())
        .with_group_id(GroupId(StrBytes::from_string(group.group_id)))
        .with_group_state(StrBytes::from_static_str(group.state))
        .with_protocol_type(StrBytes::from_string(group.protocol_type))
        .with_protocol_data(StrBytes::from_string(group.protocol_name))
        .with_members(members)
}
