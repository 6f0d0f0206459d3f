//! Consumer groups (`/groups`, `/groups/{id}` and `/api/groups[/{id}]`): each group's state,
//! protocol, members with their assignments, and per-partition lag, computed with
//! [`runnel_coordinator::consumer_lag`] (the same definition as `runnel group describe` and
//! `/metrics`). An unknown group is a 404; viewing never creates `__consumer_offsets`.

use std::fmt::Write;
use std::sync::Arc;

use serde::Serialize;

use super::{blocking, dash, escape, url_segment, ConsoleError};
use crate::broker::Broker;
use crate::group_offsets::{self, GroupOffsets};

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// (topic, partition) pairs.
    pub assignment: Vec<(String, i32)>,
}

#[derive(Debug, Serialize)]
pub struct PartitionLagView {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: Option<i64>,
    /// The high watermark (Kafka's tool calls it LOG-END-OFFSET).
    pub end_offset: Option<i64>,
    /// `None` without a commit (Kafka's `-`).
    pub lag: Option<i64>,
    /// The member assigned the partition, if any.
    pub member_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct GroupView {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
    pub partitions: Vec<PartitionLagView>,
    /// The sum of the known lags.
    pub total_lag: i64,
}

/// Every group, sorted by id.
pub async fn list(broker: &Arc<Broker>) -> Result<Vec<GroupView>, ConsoleError> {
    let groups = group_offsets::read(broker)
        .await
        .map_err(ConsoleError::Unavailable)?;
    let broker = Arc::clone(broker);
    blocking(move || Ok(groups.iter().map(|g| view(&broker, g)).collect())).await
}

/// One group, or [`ConsoleError::NotFound`].
pub async fn one(broker: &Arc<Broker>, group_id: &str) -> Result<GroupView, ConsoleError> {
    let group = group_offsets::read_one(broker, group_id)
        .await
        .map_err(ConsoleError::Unavailable)?
        .ok_or_else(|| ConsoleError::NotFound(format!("Group '{group_id}' does not exist.")))?;
    let broker = Arc::clone(broker);
    blocking(move || Ok(view(&broker, &group))).await
}

fn view(broker: &Broker, group: &GroupOffsets) -> GroupView {
    let lag = group.lag(broker);
    let owner = |topic: &str, partition: i32| {
        group
            .members
            .iter()
            .find(|m| {
                m.assignment
                    .iter()
                    .any(|(t, p)| t == topic && *p == partition)
            })
            .map(|m| m.member_id.clone())
    };
    GroupView {
        group_id: group.group_id.clone(),
        state: group.state,
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol.clone(),
        members: group
            .members
            .iter()
            .map(|m| MemberView {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                assignment: m.assignment.clone(),
            })
            .collect(),
        total_lag: lag.total(),
        partitions: lag
            .partitions
            .iter()
            .map(|p| PartitionLagView {
                member_id: owner(&p.topic, p.partition),
                topic: p.topic.clone(),
                partition: p.partition,
                committed_offset: p.committed,
                end_offset: p.end_offset,
                lag: p.lag(),
            })
            .collect(),
    }
}

pub fn list_html(groups: &[GroupView]) -> String {
    if groups.is_empty() {
        return "<p>No groups.</p>\n".to_string();
    }
    let mut out = String::from(
        "<table id=\"groups\"><tr><th>Group</th><th>State</th><th>Protocol type</th>\
         <th>Assignor</th><th>Members</th><th>Partitions</th><th>Lag</th></tr>\n",
    );
    for group in groups {
        let _ = writeln!(
            out,
            "<tr data-group=\"{id}\"><td><a href=\"/groups/{link}\">{id}</a></td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n lag\">{}</td></tr>",
            group.state,
            escape(&group.protocol_type),
            escape(&group.protocol),
            group.members.len(),
            group.partitions.len(),
            group.total_lag,
            id = escape(&group.group_id),
            link = url_segment(&group.group_id),
        );
    }
    out.push_str("</table>\n");
    out
}

pub fn one_html(group: &GroupView) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "<p>State <strong id=\"state\">{}</strong>, protocol type <code>{}</code>, assignor \
         <code>{}</code>, {} member(s), total lag <strong id=\"total-lag\">{}</strong>.</p>\n\
         <h2>Members</h2>",
        group.state,
        escape(&group.protocol_type),
        escape(&group.protocol),
        group.members.len(),
        group.total_lag,
    );
    if group.members.is_empty() {
        out.push_str("<p>No members.</p>\n");
    } else {
        out.push_str(
            "<table id=\"members\"><tr><th>Member</th><th>Instance</th><th>Client</th>\
             <th>Host</th><th>Assignment</th></tr>\n",
        );
        for m in &group.members {
            let assignment: Vec<String> = m
                .assignment
                .iter()
                .map(|(t, p)| format!("{}-{p}", escape(t)))
                .collect();
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&m.member_id),
                escape(m.group_instance_id.as_deref().unwrap_or("-")),
                escape(&m.client_id),
                escape(&m.client_host),
                assignment.join(", "),
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str(
        "<h2>Lag</h2>\n<table id=\"lag\"><tr><th>Topic</th><th>Partition</th>\
         <th>Committed</th><th>End offset</th><th>Lag</th><th>Member</th></tr>\n",
    );
    for p in &group.partitions {
        let _ = writeln!(
            out,
            "<tr data-topic=\"{topic}\" data-partition=\"{}\"><td>{topic}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n lag\">{}</td><td>{}</td></tr>",
            p.partition,
            p.partition,
            dash(p.committed_offset),
            dash(p.end_offset),
            dash(p.lag),
            escape(p.member_id.as_deref().unwrap_or("-")),
            topic = escape(&p.topic),
        );
    }
    out.push_str("</table>\n");
    out
}
