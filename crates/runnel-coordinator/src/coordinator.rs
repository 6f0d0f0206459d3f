//! [`Coordinator`]: the groups of one `__consumer_offsets` partition, as Kafka's classic
//! `GroupCoordinator` runs them, minus the I/O.
//!
//! The driver calls [`Coordinator::handle`] with a request and an opaque reply handle `T`, and
//! [`Coordinator::expire`] when [`Coordinator::next_deadline_ms`] passes; both return an
//! [`Output`]: records to append to the partition and replies to send once those records are
//! durable (at once when there are none). A JoinGroup reply is held until its rebalance's join
//! phase completes; a SyncGroup reply until the leader's assignment arrives. State changes
//! apply at once, as in Kafka's coordinator runtime; only the answers wait for the log.
//!
//! Rebalance flow (Kafka's, unchanged): a join, leave or expiry moves the group to
//! PreparingRebalance; members learn of it from heartbeats (REBALANCE_IN_PROGRESS) and rejoin;
//! once every member has rejoined (or the rebalance timeout passes, dropping the missing ones)
//! the generation is bumped, a protocol selected, the leader is sent every member's metadata,
//! and the group is CompletingRebalance until the leader's SyncGroup brings the assignments
//! (Stable). An empty group's first rebalance waits `group.initial.rebalance.delay.ms`.
//!
//! Layout: this file holds the membership requests (join, sync, heartbeat, leave) and the
//! timers; `rebalance` the steps they share; `offsets` commits, fetches, OffsetDelete and
//! offset expiry; `txn_offsets` TxnOffsetCommit's pending offsets and the transaction markers
//! that end them; `admin` DescribeGroups, ListGroups and DeleteGroups.

mod admin;
mod offsets;
mod rebalance;
mod txn_offsets;

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use runnel_protocol::ErrorCode;

use crate::config::GroupConfig;
use crate::group::{Group, GroupState};
use crate::record::{CoordinatorRecord, OffsetValue};
use crate::request::*;
use rebalance::{
    add_member_and_rebalance, new_member_id, prepare_rebalance, rejoin_known_member,
    replace_static_member, try_complete_join, Replacement,
};

/// How the driver writes an [`Output`]'s records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputBatch {
    /// One plain batch of the records (nothing when there are none).
    #[default]
    Plain,
    /// The records as one transactional batch of this producer (TxnOffsetCommit).
    Transactional {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// No records: one control batch, this producer's transaction marker. Once it is
    /// appended the driver applies it with [`Coordinator::replay_marker`], as a load does.
    Marker {
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    },
}

/// What the driver must do after an event.
#[derive(Debug)]
pub struct Output<T> {
    /// Records to append to this partition of `__consumer_offsets`, in order.
    pub records: Vec<CoordinatorRecord>,
    /// How they are written.
    pub batch: OutputBatch,
    /// Replies to send once `records` (or the marker) are durable.
    pub replies: Vec<(T, Response)>,
}

impl<T> Default for Output<T> {
    fn default() -> Self {
        Output {
            records: Vec::new(),
            batch: OutputBatch::Plain,
            replies: Vec::new(),
        }
    }
}

impl<T> Output<T> {
    fn reply(&mut self, to: T, response: Response) {
        self.replies.push((to, response));
    }
}

/// The groups of one `__consumer_offsets` partition.
#[derive(Debug)]
pub struct Coordinator<T> {
    config: GroupConfig,
    groups: HashMap<String, Group<T>>,
    /// TxnOffsetCommit's offsets per producer id, by (group, topic, partition), until the
    /// producer's marker (`txn_offsets`).
    pending_txn_offsets: HashMap<i64, BTreeMap<(String, String, i32), OffsetValue>>,
    next_retention_check_ms: i64,
}

impl<T> Coordinator<T> {
    pub fn new(config: GroupConfig, now_ms: i64) -> Coordinator<T> {
        let next_retention_check_ms = now_ms + config.offsets_retention_check_interval_ms;
        Coordinator {
            config,
            groups: HashMap::new(),
            pending_txn_offsets: HashMap::new(),
            next_retention_check_ms,
        }
    }

    /// Applies one record read back from the log (at load). Order matters: later records win.
    pub fn replay(&mut self, record: CoordinatorRecord, now_ms: i64) {
        match record {
            CoordinatorRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => match value {
                Some(value) => {
                    self.groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now_ms))
                        .offsets
                        .insert((topic, partition), value);
                }
                None => {
                    if let Some(group) = self.groups.get_mut(&group) {
                        group.offsets.remove(&(topic, partition));
                    }
                }
            },
            CoordinatorRecord::Group { group, value } => match value {
                Some(value) => self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now_ms))
                    .apply_value(value, now_ms),
                None => {
                    if let Some(existing) = self.groups.get_mut(&group) {
                        let offsets = std::mem::take(&mut existing.offsets);
                        *existing = Group::new(&group, now_ms);
                        existing.offsets = offsets;
                    }
                }
            },
        }
    }

    /// Drops groups left with neither members nor offsets after a load.
    pub fn finish_load(&mut self) {
        self.groups
            .retain(|_, group| !group.members.is_empty() || !group.offsets.is_empty());
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The earliest time [`Coordinator::expire`] has work to do.
    pub fn next_deadline_ms(&self) -> i64 {
        let mut next = self.next_retention_check_ms;
        for group in self.groups.values() {
            for deadline in group.pending_members.values() {
                next = next.min(*deadline);
            }
            for member in &group.members {
                if member.awaiting_join.is_none() && member.awaiting_sync.is_none() {
                    next = next.min(member.heartbeat_deadline_ms);
                }
            }
            if let Some(deadline) = group.sync_deadline_ms {
                next = next.min(deadline);
            }
            if group.state == GroupState::PreparingRebalance {
                if let Some(deadline) = group.rebalance_deadline_ms {
                    next = next.min(deadline);
                }
                if let Some(until) = group.initial_delay_until_ms {
                    next = next.min(until);
                }
            }
        }
        next
    }

    /// Handles one request; `reply` is answered now or later through an [`Output`].
    pub fn handle(&mut self, request: Request, reply: T, now_ms: i64) -> Output<T> {
        let mut out = Output::default();
        match request {
            Request::Join(join) => self.join(join, reply, now_ms, &mut out),
            Request::Sync(sync) => self.sync(sync, reply, now_ms, &mut out),
            Request::Heartbeat(heartbeat) => {
                let error = self.heartbeat(&heartbeat, now_ms);
                out.reply(reply, Response::Heartbeat(error));
            }
            Request::Leave { group_id, members } => {
                let result = self.leave(&group_id, members, now_ms, &mut out);
                out.reply(reply, Response::Leave(result));
            }
            Request::Commit(commit) => {
                let result = self.commit(commit, now_ms, &mut out);
                out.reply(reply, Response::Commit(result));
            }
            Request::TxnCommit(commit) => {
                let result = self.txn_commit(commit, now_ms, &mut out);
                out.reply(reply, Response::TxnCommit(result));
            }
            Request::CompleteTxn(complete) => {
                self.complete_txn(complete, &mut out);
                out.reply(reply, Response::CompleteTxn(ErrorCode::None));
            }
            Request::Fetch(fetch) => out.reply(reply, Response::Fetch(self.fetch(fetch))),
            Request::Describe(groups) => {
                let described = groups.iter().map(|id| self.describe(id)).collect();
                out.reply(reply, Response::Describe(described));
            }
            Request::List(states) => out.reply(reply, Response::List(self.list(&states))),
            Request::Delete(groups) => {
                let results = groups
                    .into_iter()
                    .map(|id| {
                        let error = self.delete(&id, &mut out);
                        (id, error)
                    })
                    .collect();
                out.reply(reply, Response::Delete(results));
            }
            Request::OffsetDelete(request) => {
                let result = self.delete_offsets(request, &mut out);
                out.reply(reply, Response::OffsetDelete(result));
            }
        }
        out
    }

    /// Acts on every deadline that has passed by `now_ms`: lapsed pending members, session
    /// timeouts, rebalance delays and timeouts, offset retention.
    pub fn expire(&mut self, now_ms: i64) -> Output<T> {
        let mut out = Output::default();
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            group
                .pending_members
                .retain(|_, deadline| *deadline > now_ms);
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
                .filter(|m| m.heartbeat_deadline_ms <= now_ms)
                .map(|m| m.member_id.clone())
                .collect();
            for member_id in expired {
                self.remove_member_and_rebalance(
                    &id,
                    &member_id,
                    now_ms,
                    "its session timed out",
                    &mut out,
                );
            }
            self.expire_pending_syncs(&id, now_ms, &mut out);
            if let Some(group) = self.groups.get_mut(&id) {
                let forced = group.rebalance_deadline_ms.is_some_and(|d| d <= now_ms);
                try_complete_join(group, now_ms, forced, &mut out);
            }
        }
        if now_ms >= self.next_retention_check_ms {
            self.expire_offsets(now_ms, &mut out);
            self.next_retention_check_ms = now_ms + self.config.offsets_retention_check_interval_ms;
        }
        out
    }

    /// Kafka's pending-sync expiry: members that have not sent SyncGroup within the rebalance
    /// timeout after the join are removed and the group rebalances without them. Heartbeats
    /// alone do not keep such a member: a leader that never assigns would otherwise hold
    /// every member in CompletingRebalance for as long as it lives.
    fn expire_pending_syncs(&mut self, group_id: &str, now_ms: i64, out: &mut Output<T>) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.sync_deadline_ms.is_none_or(|d| d > now_ms) {
            return;
        }
        let lapsed: Vec<String> = group.pending_sync.iter().cloned().collect();
        tracing::info!(
            group = %group_id,
            members = ?lapsed,
            "removing members that did not sync within the rebalance timeout"
        );
        for member_id in &lapsed {
            // Such members park no request: they sent no SyncGroup, and a JoinGroup would
            // have started a new rebalance (which clears the pending syncs).
            group.remove_member(member_id);
        }
        group.clear_pending_syncs();
        prepare_rebalance(
            group,
            now_ms,
            &self.config,
            "members did not sync in time",
            out,
        );
    }

    fn join(&mut self, join: JoinRequest, reply: T, now_ms: i64, out: &mut Output<T>) {
        let fail = |out: &mut Output<T>, reply: T, error: ErrorCode, member_id: &str| {
            out.reply(reply, Response::Join(JoinResult::error(error, member_id)));
        };
        if join.group_id.is_empty() {
            return fail(out, reply, ErrorCode::InvalidGroupId, &join.member_id);
        }
        if join.session_timeout_ms < self.config.session_timeout_ms_min
            || join.session_timeout_ms > self.config.session_timeout_ms_max
        {
            return fail(
                out,
                reply,
                ErrorCode::InvalidSessionTimeout,
                &join.member_id,
            );
        }
        if !join.member_id.is_empty() && !self.groups.contains_key(&join.group_id) {
            return fail(out, reply, ErrorCode::UnknownMemberId, &join.member_id);
        }
        let group_size_max = self.config.group_size_max;
        let group = self
            .groups
            .entry(join.group_id.clone())
            .or_insert_with(|| Group::new(&join.group_id, now_ms));
        if group.state == GroupState::Dead {
            return fail(
                out,
                reply,
                ErrorCode::CoordinatorNotAvailable,
                &join.member_id,
            );
        }
        if !group.supports_protocols(&join.protocol_type, &join.protocols) {
            return fail(
                out,
                reply,
                ErrorCode::InconsistentGroupProtocol,
                &join.member_id,
            );
        }
        if join.member_id.is_empty() {
            self.join_new_member(join, reply, now_ms, out);
            return;
        }
        let group = self
            .groups
            .get_mut(&join.group_id)
            .expect("the group was just found");
        if group.pending_members.remove(&join.member_id).is_some() {
            if group.members.len() >= group_size_max {
                return fail(out, reply, ErrorCode::GroupMaxSizeReached, &join.member_id);
            }
            let member_id = join.member_id.clone();
            add_member_and_rebalance(group, join, member_id, reply, now_ms, &self.config, out);
            return;
        }
        if group.is_fenced(join.group_instance_id.as_deref(), &join.member_id) {
            return fail(out, reply, ErrorCode::FencedInstanceId, &join.member_id);
        }
        if !group.has_member(&join.member_id) {
            return fail(out, reply, ErrorCode::UnknownMemberId, &join.member_id);
        }
        rejoin_known_member(group, join, reply, now_ms, &self.config, out);
    }

    fn join_new_member(&mut self, join: JoinRequest, reply: T, now_ms: i64, out: &mut Output<T>) {
        let config = self.config.clone();
        let group = self
            .groups
            .get_mut(&join.group_id)
            .expect("the caller found the group");
        let instance_member = join
            .group_instance_id
            .as_deref()
            .and_then(|instance| group.static_member(instance))
            .map(|m| m.member_id.clone());
        if let Some(old_member_id) = instance_member {
            let new_member_id = new_member_id(join.group_instance_id.as_deref().unwrap_or(""));
            let replacement = Replacement {
                old_member_id,
                new_member_id,
                join,
            };
            replace_static_member(group, replacement, reply, now_ms, &config, out);
            return;
        }
        if group.members.len() + group.pending_members.len() >= config.group_size_max {
            out.reply(
                reply,
                Response::Join(JoinResult::error(ErrorCode::GroupMaxSizeReached, "")),
            );
            return;
        }
        let member_id = new_member_id(&join.client_id);
        if join.require_known_member_id && join.group_instance_id.is_none() {
            group.pending_members.insert(
                member_id.clone(),
                now_ms + i64::from(join.session_timeout_ms),
            );
            out.reply(
                reply,
                Response::Join(JoinResult::error(ErrorCode::MemberIdRequired, &member_id)),
            );
            return;
        }
        add_member_and_rebalance(group, join, member_id, reply, now_ms, &config, out);
    }

    fn sync(&mut self, sync: SyncRequest, reply: T, now_ms: i64, out: &mut Output<T>) {
        let error = |out: &mut Output<T>, reply: T, error: ErrorCode| {
            out.reply(reply, Response::Sync(SyncResult::error(error)));
        };
        let Some(group) = self.groups.get_mut(&sync.group_id) else {
            return error(out, reply, ErrorCode::UnknownMemberId);
        };
        if group.state == GroupState::Dead {
            return error(out, reply, ErrorCode::CoordinatorNotAvailable);
        }
        if group.is_fenced(sync.group_instance_id.as_deref(), &sync.member_id) {
            return error(out, reply, ErrorCode::FencedInstanceId);
        }
        if !group.has_member(&sync.member_id) {
            return error(out, reply, ErrorCode::UnknownMemberId);
        }
        if sync.generation_id != group.generation_id {
            return error(out, reply, ErrorCode::IllegalGeneration);
        }
        let type_differs = sync
            .protocol_type
            .as_ref()
            .is_some_and(|t| group.protocol_type.as_ref() != Some(t));
        let name_differs = sync
            .protocol_name
            .as_ref()
            .is_some_and(|n| group.protocol_name.as_ref() != Some(n));
        if type_differs || name_differs {
            return error(out, reply, ErrorCode::InconsistentGroupProtocol);
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => error(out, reply, ErrorCode::UnknownMemberId),
            GroupState::PreparingRebalance => error(out, reply, ErrorCode::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                group.synced(&sync.member_id);
                let is_leader = group.is_leader(&sync.member_id);
                if let Some(member) = group.member_mut(&sync.member_id) {
                    member.awaiting_sync = Some(reply);
                    member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                }
                if is_leader {
                    let mut assignments: HashMap<String, Bytes> =
                        sync.assignments.into_iter().collect();
                    for member in &mut group.members {
                        member.assignment =
                            assignments.remove(&member.member_id).unwrap_or_default();
                    }
                    group.transition(GroupState::Stable, now_ms);
                    tracing::info!(
                        group = %group.group_id,
                        generation = group.generation_id,
                        leader = %sync.member_id,
                        "assignment received from the leader"
                    );
                    out.records.push(CoordinatorRecord::Group {
                        group: group.group_id.clone(),
                        value: Some(group.to_value()),
                    });
                    let (protocol_type, protocol_name) =
                        (group.protocol_type.clone(), group.protocol_name.clone());
                    for member in &mut group.members {
                        if let Some(waiting) = member.awaiting_sync.take() {
                            out.reply(
                                waiting,
                                Response::Sync(SyncResult {
                                    error: ErrorCode::None,
                                    protocol_type: protocol_type.clone(),
                                    protocol_name: protocol_name.clone(),
                                    assignment: member.assignment.clone(),
                                }),
                            );
                        }
                    }
                }
            }
            GroupState::Stable => {
                group.synced(&sync.member_id);
                let (protocol_type, protocol_name) =
                    (group.protocol_type.clone(), group.protocol_name.clone());
                let member = group
                    .member_mut(&sync.member_id)
                    .expect("membership was checked");
                member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                out.reply(
                    reply,
                    Response::Sync(SyncResult {
                        error: ErrorCode::None,
                        protocol_type,
                        protocol_name,
                        assignment: member.assignment.clone(),
                    }),
                );
            }
        }
    }

    fn heartbeat(&mut self, heartbeat: &HeartbeatRequest, now_ms: i64) -> ErrorCode {
        let Some(group) = self.groups.get_mut(&heartbeat.group_id) else {
            return ErrorCode::UnknownMemberId;
        };
        match group.state {
            GroupState::Dead => return ErrorCode::CoordinatorNotAvailable,
            GroupState::Empty => return ErrorCode::UnknownMemberId,
            _ => {}
        }
        if group.is_fenced(heartbeat.group_instance_id.as_deref(), &heartbeat.member_id) {
            return ErrorCode::FencedInstanceId;
        }
        if !group.has_member(&heartbeat.member_id) {
            return ErrorCode::UnknownMemberId;
        }
        if heartbeat.generation_id != group.generation_id {
            return ErrorCode::IllegalGeneration;
        }
        let state = group.state;
        let member = group
            .member_mut(&heartbeat.member_id)
            .expect("membership was checked");
        member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
        if state == GroupState::PreparingRebalance {
            ErrorCode::RebalanceInProgress
        } else {
            ErrorCode::None
        }
    }

    fn leave(
        &mut self,
        group_id: &str,
        members: Vec<LeavingMember>,
        now_ms: i64,
        out: &mut Output<T>,
    ) -> LeaveResult {
        let mut results = Vec::with_capacity(members.len());
        for leaving in members {
            let error = self.leave_one(group_id, &leaving, now_ms, out);
            results.push((leaving.member_id, leaving.group_instance_id, error));
        }
        LeaveResult {
            error: ErrorCode::None,
            members: results,
        }
    }

    fn leave_one(
        &mut self,
        group_id: &str,
        leaving: &LeavingMember,
        now_ms: i64,
        out: &mut Output<T>,
    ) -> ErrorCode {
        let Some(group) = self.groups.get_mut(group_id) else {
            return ErrorCode::UnknownMemberId;
        };
        if group.state == GroupState::Dead {
            return ErrorCode::CoordinatorNotAvailable;
        }
        let member_id = match leaving.group_instance_id.as_deref() {
            Some(instance) => match group.static_member(instance) {
                None => return ErrorCode::UnknownMemberId,
                Some(m) if !leaving.member_id.is_empty() && m.member_id != leaving.member_id => {
                    return ErrorCode::FencedInstanceId
                }
                Some(m) => m.member_id.clone(),
            },
            None => {
                if group.pending_members.remove(&leaving.member_id).is_some() {
                    try_complete_join(group, now_ms, false, out);
                    return ErrorCode::None;
                }
                if !group.has_member(&leaving.member_id) {
                    return ErrorCode::UnknownMemberId;
                }
                leaving.member_id.clone()
            }
        };
        self.remove_member_and_rebalance(group_id, &member_id, now_ms, "it left the group", out);
        ErrorCode::None
    }

    fn remove_member_and_rebalance(
        &mut self,
        group_id: &str,
        member_id: &str,
        now_ms: i64,
        reason: &str,
        out: &mut Output<T>,
    ) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let Some(mut member) = group.remove_member(member_id) else {
            return;
        };
        tracing::info!(group = %group_id, member = %member_id, reason, "removing member");
        if let Some(waiting) = member.awaiting_join.take() {
            out.reply(
                waiting,
                Response::Join(JoinResult::error(ErrorCode::UnknownMemberId, member_id)),
            );
        }
        if let Some(waiting) = member.awaiting_sync.take() {
            out.reply(
                waiting,
                Response::Sync(SyncResult::error(ErrorCode::UnknownMemberId)),
            );
        }
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                prepare_rebalance(group, now_ms, &self.config, "a member was removed", out);
            }
            GroupState::PreparingRebalance => try_complete_join(group, now_ms, false, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
