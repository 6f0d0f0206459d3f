//! The rebalance steps shared by the coordinator's requests and timers: adding a member,
//! a known member's rejoin, a static member's replacement (KIP-345), preparing a rebalance and
//! completing its join phase (generation bump, protocol selection, the leader's view of every
//! member). Each works on one [`Group`] and writes its records and replies into an [`Output`].

use bytes::Bytes;
use runnel_protocol::ErrorCode;

use super::Output;
use crate::config::GroupConfig;
use crate::group::{Group, GroupState, Member};
use crate::record::CoordinatorRecord;
use crate::request::*;

pub(super) fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

pub(super) fn add_member_and_rebalance<T>(
    group: &mut Group<T>,
    join: JoinRequest,
    member_id: String,
    reply: T,
    now_ms: i64,
    config: &GroupConfig,
    out: &mut Output<T>,
) {
    if group.members.is_empty() {
        group.protocol_type = Some(join.protocol_type.clone());
    }
    if group.leader_id.is_none() {
        group.leader_id = Some(member_id.clone());
    }
    group.members.push(Member {
        member_id,
        group_instance_id: join.group_instance_id,
        client_id: join.client_id,
        client_host: join.client_host,
        rebalance_timeout_ms: join.rebalance_timeout_ms,
        session_timeout_ms: join.session_timeout_ms,
        protocol_type: join.protocol_type,
        protocols: join.protocols,
        assignment: Bytes::new(),
        awaiting_join: Some(reply),
        awaiting_sync: None,
        heartbeat_deadline_ms: now_ms + i64::from(join.session_timeout_ms),
    });
    match group.state {
        GroupState::PreparingRebalance => {
            if let Some(until) = group.initial_delay_until_ms {
                // Kafka's InitialDelayedJoin: each new member extends the wait by the delay,
                // within the rebalance timeout.
                let bound = group.rebalance_deadline_ms.unwrap_or(until);
                group.initial_delay_until_ms = Some(
                    (now_ms + config.initial_rebalance_delay_ms)
                        .min(bound)
                        .max(until),
                );
            }
            try_complete_join(group, now_ms, false, out);
        }
        _ => prepare_rebalance(group, now_ms, config, "a new member joined", out),
    }
}

pub(super) fn rejoin_known_member<T>(
    group: &mut Group<T>,
    join: JoinRequest,
    reply: T,
    now_ms: i64,
    config: &GroupConfig,
    out: &mut Output<T>,
) {
    let state = group.state;
    let is_leader = group.is_leader(&join.member_id);
    let member = group
        .member_mut(&join.member_id)
        .expect("the caller checked membership");
    let unchanged = member.same_protocols(&join.protocols);
    member.heartbeat_deadline_ms = now_ms + i64::from(join.session_timeout_ms);
    member.session_timeout_ms = join.session_timeout_ms;
    member.rebalance_timeout_ms = join.rebalance_timeout_ms;
    member.client_id = join.client_id;
    member.client_host = join.client_host;
    match state {
        GroupState::PreparingRebalance => {
            member.protocols = join.protocols;
            if let Some(previous) = member.awaiting_join.replace(reply) {
                out.reply(
                    previous,
                    Response::Join(JoinResult::error(
                        ErrorCode::RebalanceInProgress,
                        &join.member_id,
                    )),
                );
            }
            try_complete_join(group, now_ms, false, out);
        }
        GroupState::CompletingRebalance | GroupState::Stable
            if unchanged && (state == GroupState::CompletingRebalance || !is_leader) =>
        {
            // Kafka answers a repeated join of an unchanged member with the current
            // generation (the leader gets the members again while assignments are pending).
            let result = join_result(group, &join.member_id, is_leader);
            out.reply(reply, Response::Join(result));
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            member.protocols = join.protocols;
            member.awaiting_join = Some(reply);
            let reason = if unchanged {
                "the leader rejoined"
            } else {
                "a member rejoined with new metadata"
            };
            prepare_rebalance(group, now_ms, config, reason, out);
        }
        GroupState::Empty | GroupState::Dead => out.reply(
            reply,
            Response::Join(JoinResult::error(
                ErrorCode::UnknownMemberId,
                &join.member_id,
            )),
        ),
    }
}

/// KIP-345: a static member rejoining without its member id takes over its instance's place
/// under a new member id; the old id is fenced. A stable group keeps its assignment.
pub(super) struct Replacement {
    pub(super) old_member_id: String,
    pub(super) new_member_id: String,
    pub(super) join: JoinRequest,
}

pub(super) fn replace_static_member<T>(
    group: &mut Group<T>,
    replacement: Replacement,
    reply: T,
    now_ms: i64,
    config: &GroupConfig,
    out: &mut Output<T>,
) {
    let Replacement {
        old_member_id,
        new_member_id,
        join,
    } = replacement;
    let old_member_id = old_member_id.as_str();
    let previous_leader = group.leader_id.clone().unwrap_or_default();
    let member = group
        .member_mut(old_member_id)
        .expect("the caller found the static member");
    if let Some(waiting) = member.awaiting_join.take() {
        out.reply(
            waiting,
            Response::Join(JoinResult::error(
                ErrorCode::FencedInstanceId,
                old_member_id,
            )),
        );
    }
    if let Some(waiting) = member.awaiting_sync.take() {
        out.reply(
            waiting,
            Response::Sync(SyncResult::error(ErrorCode::FencedInstanceId)),
        );
    }
    let unchanged = member.same_protocols(&join.protocols);
    member.member_id = new_member_id.clone();
    member.client_id = join.client_id;
    member.client_host = join.client_host;
    member.session_timeout_ms = join.session_timeout_ms;
    member.rebalance_timeout_ms = join.rebalance_timeout_ms;
    member.protocols = join.protocols;
    member.heartbeat_deadline_ms = now_ms + i64::from(join.session_timeout_ms);
    if group.leader_id.as_deref() == Some(old_member_id) {
        group.leader_id = Some(new_member_id.clone());
    }
    if group.pending_sync.remove(old_member_id) {
        group.pending_sync.insert(new_member_id.clone());
    }
    match group.state {
        GroupState::Stable if unchanged => {
            out.records.push(CoordinatorRecord::Group {
                group: group.group_id.clone(),
                value: Some(group.to_value()),
            });
            // The old leader id is returned so that the member does not take itself for the
            // leader and assign again in a stable group (as Kafka does).
            let mut result = join_result(group, &new_member_id, false);
            result.leader = previous_leader;
            out.reply(reply, Response::Join(result));
        }
        GroupState::PreparingRebalance => {
            let member = group
                .member_mut(&new_member_id)
                .expect("the member was just renamed");
            member.awaiting_join = Some(reply);
            try_complete_join(group, now_ms, false, out);
        }
        _ => {
            let member = group
                .member_mut(&new_member_id)
                .expect("the member was just renamed");
            member.awaiting_join = Some(reply);
            prepare_rebalance(group, now_ms, config, "a static member was replaced", out);
        }
    }
}

fn join_result<T>(group: &Group<T>, member_id: &str, with_members: bool) -> JoinResult {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    JoinResult {
        error: ErrorCode::None,
        generation_id: group.generation_id,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: group.leader_id.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members: if with_members {
            group
                .members
                .iter()
                .map(|m| JoinedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// Moves the group to PreparingRebalance; `reason` is logged, as Kafka logs each rebalance.
pub(super) fn prepare_rebalance<T>(
    group: &mut Group<T>,
    now_ms: i64,
    config: &GroupConfig,
    reason: &str,
    out: &mut Output<T>,
) {
    tracing::info!(
        group = %group.group_id,
        state = ?group.state,
        generation = group.generation_id,
        members = group.members.len(),
        reason,
        "preparing to rebalance"
    );
    if group.state == GroupState::CompletingRebalance {
        for member in &mut group.members {
            member.assignment = Bytes::new();
            if let Some(waiting) = member.awaiting_sync.take() {
                out.reply(
                    waiting,
                    Response::Sync(SyncResult::error(ErrorCode::RebalanceInProgress)),
                );
            }
        }
    }
    group.clear_pending_syncs();
    let rebalance_timeout_ms = group.max_rebalance_timeout_ms();
    if group.state == GroupState::Empty && config.initial_rebalance_delay_ms > 0 {
        let bound = rebalance_timeout_ms.max(config.initial_rebalance_delay_ms);
        group.initial_delay_until_ms = Some(now_ms + config.initial_rebalance_delay_ms);
        group.rebalance_deadline_ms = Some(now_ms + bound);
    } else {
        group.initial_delay_until_ms = None;
        group.rebalance_deadline_ms = Some(now_ms + rebalance_timeout_ms);
    }
    group.transition(GroupState::PreparingRebalance, now_ms);
    try_complete_join(group, now_ms, false, out);
}

/// Completes the join phase if it may: every member (and no pending one) has rejoined, or
/// `forced` (the rebalance timeout passed). Members that did not rejoin are removed.
pub(super) fn try_complete_join<T>(
    group: &mut Group<T>,
    now_ms: i64,
    forced: bool,
    out: &mut Output<T>,
) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    if group
        .initial_delay_until_ms
        .is_some_and(|until| now_ms < until)
        && !forced
    {
        return;
    }
    let all_joined =
        group.members.iter().all(|m| m.awaiting_join.is_some()) && group.pending_members.is_empty();
    if !all_joined && !forced {
        return;
    }
    let missing: Vec<String> = group
        .members
        .iter()
        .filter(|m| m.awaiting_join.is_none())
        .map(|m| m.member_id.clone())
        .collect();
    if !missing.is_empty() {
        tracing::info!(
            group = %group.group_id,
            members = ?missing,
            "removing members that did not rejoin within the rebalance timeout"
        );
    }
    for member_id in missing {
        group.remove_member(&member_id);
    }
    group.initial_delay_until_ms = None;
    group.rebalance_deadline_ms = None;
    group.generation_id += 1;
    if group.members.is_empty() {
        group.protocol_name = None;
        group.leader_id = None;
        group.transition(GroupState::Empty, now_ms);
        out.records.push(CoordinatorRecord::Group {
            group: group.group_id.clone(),
            value: Some(group.to_value()),
        });
        return;
    }
    group.protocol_name = group.select_protocol();
    if !group
        .leader_id
        .as_deref()
        .is_some_and(|leader| group.has_member(leader))
    {
        group.leader_id = group.members.first().map(|m| m.member_id.clone());
    }
    group.transition(GroupState::CompletingRebalance, now_ms);
    group.await_syncs(now_ms);
    let leader = group.leader_id.clone().unwrap_or_default();
    tracing::info!(
        group = %group.group_id,
        generation = group.generation_id,
        members = group.members.len(),
        leader = %leader,
        protocol = group.protocol_name.as_deref().unwrap_or(""),
        "stabilized group"
    );
    let leader_view = join_result(group, &leader, true);
    for member in &mut group.members {
        member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
        if let Some(waiting) = member.awaiting_join.take() {
            let mut result = leader_view.clone();
            result.member_id = member.member_id.clone();
            if member.member_id != leader {
                result.members = Vec::new();
            }
            out.reply(waiting, Response::Join(result));
        }
    }
}
