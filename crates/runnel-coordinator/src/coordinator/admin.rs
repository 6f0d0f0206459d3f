//! The admin requests on the coordinator's groups: DescribeGroups (metadata and assignments
//! only while Stable; an unknown group is described as Dead, as Kafka does), ListGroups with
//! its state filter, and DeleteGroups (empty groups only; the offsets and the group are
//! tombstoned).

use bytes::Bytes;
use runnel_protocol::ErrorCode;

use super::{Coordinator, Output};
use crate::group::GroupState;
use crate::record::CoordinatorRecord;
use crate::request::*;

impl<T> Coordinator<T> {
    pub(super) fn describe(&self, group_id: &str) -> GroupDescription {
        let Some(group) = self.groups.get(group_id) else {
            return GroupDescription {
                group_id: group_id.to_string(),
                error: ErrorCode::None,
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            };
        };
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        GroupDescription {
            group_id: group_id.to_string(),
            error: ErrorCode::None,
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: group
                .members
                .iter()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    pub(super) fn list(&self, states: &[String]) -> Vec<ListedGroup> {
        let mut listed: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .filter(|g| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| ListedGroup {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
            })
            .collect();
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listed
    }

    pub(super) fn delete(&mut self, group_id: &str, out: &mut Output<T>) -> ErrorCode {
        let Some(group) = self.groups.get(group_id) else {
            return ErrorCode::GroupIdNotFound;
        };
        match group.state {
            GroupState::Dead => return ErrorCode::GroupIdNotFound,
            GroupState::Empty => {}
            _ => return ErrorCode::NonEmptyGroup,
        }
        let group = self.groups.remove(group_id).expect("the group was found");
        for (topic, partition) in group.offsets.into_keys() {
            out.records.push(CoordinatorRecord::Offset {
                group: group_id.to_string(),
                topic,
                partition,
                value: None,
            });
        }
        out.records.push(CoordinatorRecord::Group {
            group: group_id.to_string(),
            value: None,
        });
        ErrorCode::None
    }
}
