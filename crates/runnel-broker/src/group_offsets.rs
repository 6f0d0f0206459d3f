//! What the web console and `/metrics` read of the consumer groups: each group's state,
//! members with their assignments, and committed offsets, from the group coordinator, and the
//! lag those leave as [`runnel_coordinator::consumer_lag`] defines it (the definition
//! `runnel group describe` shares: assigned and committed partitions, high watermark minus
//! commit, no lag without a commit). Reading never creates `__consumer_offsets`: without it
//! there are no groups.

use std::sync::Arc;

use runnel_coordinator::assignment::decode_assignment;
use runnel_coordinator::consumer_lag::GroupLag;
use runnel_coordinator::request::{FetchRequest, GroupDescription, Request, Response};
use runnel_protocol::ErrorCode;

use crate::broker::Broker;
use crate::group_coordinator::{GroupCoordinator, OFFSETS_TOPIC};

/// One member of a group, as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// (topic, partition) assigned to it (decoded for the `consumer` protocol type only).
    pub assignment: Vec<(String, i32)>,
}

/// One group, its members and its commits.
#[derive(Debug, Clone)]
pub struct GroupOffsets {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    /// The assignor the group chose ("" before its first rebalance).
    pub protocol: String,
    pub members: Vec<GroupMember>,
    /// (topic, partition, committed offset), in topic and partition order.
    pub committed: Vec<(String, i32, i64)>,
}

impl GroupOffsets {
    /// The group's lag: each assigned or committed partition against the high watermark of
    /// this broker's partition (unknown for one it does not host).
    pub fn lag(&self, broker: &Broker) -> GroupLag {
        let assigned = self
            .members
            .iter()
            .flat_map(|m| m.assignment.iter().map(|(t, p)| (t.as_str(), *p)));
        GroupLag::compute(
            assigned,
            self.committed.iter().map(|(t, p, o)| (t.as_str(), *p, *o)),
            |topic, partition| {
                broker
                    .replicas
                    .partition(topic, partition)
                    .map(|p| p.offsets().high_watermark)
            },
        )
    }
}

/// Every group, sorted by id, with its members and commits.
pub async fn read(broker: &Arc<Broker>) -> Result<Vec<GroupOffsets>, String> {
    if broker.controller.image().topic(OFFSETS_TOPIC).is_none() {
        return Ok(Vec::new());
    }
    let listed = GroupCoordinator::call_all(broker, || Request::List(Vec::new()))
        .await
        .map_err(|code| code.to_string())?;
    let mut ids: Vec<String> = listed
        .into_iter()
        .flat_map(|response| match response {
            Response::List(groups) => groups,
            _ => Vec::new(),
        })
        .map(|group| group.group_id)
        .collect();
    ids.sort();
    let mut groups = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(group) = read_one(broker, &id).await? {
            groups.push(group);
        }
    }
    Ok(groups)
}

/// One group, or `None` when the coordinator does not know it (never created, or deleted).
pub async fn read_one(
    broker: &Arc<Broker>,
    group_id: &str,
) -> Result<Option<GroupOffsets>, String> {
    if broker.controller.image().topic(OFFSETS_TOPIC).is_none() {
        return Ok(None);
    }
    let ask = Request::Describe(vec![group_id.to_string()]);
    let description = match GroupCoordinator::call(broker, group_id, ask).await {
        Ok(Response::Describe(mut described)) if described.len() == 1 => described.remove(0),
        Ok(_) => return Err(format!("group {group_id}: no description")),
        Err(code) => return Err(format!("group {group_id}: {code}")),
    };
    if description.error != ErrorCode::None {
        return Err(format!("group {group_id}: {}", description.error.name()));
    }
    let fetch = Request::Fetch(FetchRequest {
        group_id: group_id.to_string(),
        partitions: None,
        require_stable: false,
    });
    let mut committed: Vec<(String, i32, i64)> =
        match GroupCoordinator::call(broker, group_id, fetch).await {
            Ok(Response::Fetch(result)) => result
                .offsets
                .into_iter()
                .filter(|o| o.offset >= 0)
                .map(|o| (o.topic, o.partition, o.offset))
                .collect(),
            _ => Vec::new(),
        };
    committed.sort();
    if description.state == "Dead" && committed.is_empty() {
        return Ok(None);
    }
    Ok(Some(group(description, committed)))
}

fn group(description: GroupDescription, committed: Vec<(String, i32, i64)>) -> GroupOffsets {
    let consumer = description.protocol_type == "consumer";
    GroupOffsets {
        group_id: description.group_id,
        state: description.state,
        protocol_type: description.protocol_type,
        protocol: description.protocol_name,
        members: description
            .members
            .into_iter()
            .map(|m| GroupMember {
                assignment: if consumer {
                    decode_assignment(&m.assignment)
                } else {
                    Vec::new()
                },
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
            })
            .collect(),
        committed,
    }
}
