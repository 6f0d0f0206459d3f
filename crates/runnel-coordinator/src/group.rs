//! One consumer group's state: what Kafka's `GroupMetadata` holds for the classic protocol.
//!
//! Invariants:
//! - `members` is in join order; the leader, when set, is one of them.
//! - A member holds a parked JoinGroup reply only while the group is PreparingRebalance, and a
//!   parked SyncGroup reply only while it is CompletingRebalance (the coordinator answers or
//!   drops them on every transition out of those states).
//! - At most one member has a given group instance id.
//! - `pending_sync` names only members, and only while the group is CompletingRebalance or
//!   Stable; `sync_deadline_ms` is set exactly when it is not empty.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;

use crate::record::{GroupValue, MemberValue, OffsetValue};

/// Kafka's classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's name for the state, as DescribeGroups and ListGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One member of a group. `T` is the driver's reply handle.
#[derive(Debug)]
pub struct Member<T> {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub awaiting_join: Option<T>,
    pub awaiting_sync: Option<T>,
    /// The member is removed when this passes without a heartbeat (unless it is parked).
    pub heartbeat_deadline_ms: i64,
}

impl<T> Member<T> {
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    pub fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

/// One group: membership, generation, and committed offsets.
#[derive(Debug)]
pub struct Group<T> {
    pub group_id: String,
    pub state: GroupState,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub members: Vec<Member<T>>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, with the time they lapse.
    pub pending_members: HashMap<String, i64>,
    /// PreparingRebalance: the join completes at this time even if members are missing.
    pub rebalance_deadline_ms: Option<i64>,
    /// PreparingRebalance from Empty: the join does not complete before this time.
    pub initial_delay_until_ms: Option<i64>,
    /// Members of the current generation that have not sent their SyncGroup yet (Kafka's
    /// pending-sync members). Those still missing at `sync_deadline_ms` are removed.
    pub pending_sync: HashSet<String>,
    /// When the members in `pending_sync` lapse: the rebalance timeout after the join.
    pub sync_deadline_ms: Option<i64>,
    pub state_timestamp_ms: i64,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
}

impl<T> Group<T> {
    pub fn new(group_id: &str, now_ms: i64) -> Group<T> {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: Vec::new(),
            pending_members: HashMap::new(),
            rebalance_deadline_ms: None,
            initial_delay_until_ms: None,
            pending_sync: HashSet::new(),
            sync_deadline_ms: None,
            state_timestamp_ms: now_ms,
            offsets: BTreeMap::new(),
        }
    }

    pub fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    pub fn member(&self, member_id: &str) -> Option<&Member<T>> {
        self.members.iter().find(|m| m.member_id == member_id)
    }

    pub fn member_mut(&mut self, member_id: &str) -> Option<&mut Member<T>> {
        self.members.iter_mut().find(|m| m.member_id == member_id)
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.member(member_id).is_some()
    }

    pub fn static_member(&self, instance_id: &str) -> Option<&Member<T>> {
        self.members
            .iter()
            .find(|m| m.group_instance_id.as_deref() == Some(instance_id))
    }

    /// Whether `instance_id` belongs to a member other than `member_id` (KIP-345 fencing).
    pub fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|instance| self.static_member(instance))
            .is_some_and(|member| member.member_id != member_id)
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Removes a member and returns it; the leader is cleared if it was the one.
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member<T>> {
        let index = self.members.iter().position(|m| m.member_id == member_id)?;
        let member = self.members.remove(index);
        self.synced(member_id);
        if self.is_leader(member_id) {
            self.leader_id = self.members.first().map(|m| m.member_id.clone());
        }
        Some(member)
    }

    /// Starts waiting for every member's SyncGroup, until the rebalance timeout from now.
    pub fn await_syncs(&mut self, now_ms: i64) {
        self.pending_sync = self.members.iter().map(|m| m.member_id.clone()).collect();
        self.sync_deadline_ms =
            (!self.pending_sync.is_empty()).then(|| now_ms + self.max_rebalance_timeout_ms());
    }

    /// `member_id` sent its SyncGroup (or is gone): it no longer holds the generation up.
    pub fn synced(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline_ms = None;
        }
    }

    /// Stops waiting for SyncGroups (a new rebalance began, or the group emptied).
    pub fn clear_pending_syncs(&mut self) {
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
    }

    /// The protocols every member supports, in the first member's order of preference.
    fn candidate_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.first() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| self.members.iter().all(|m| m.supports(name)))
            .collect()
    }

    /// Whether a member with `protocol_type` and `protocols` could join (Kafka's
    /// `supportsProtocols`).
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidate_protocols()
                .iter()
                .any(|name| protocols.iter().any(|(p, _)| p == name))
    }

    /// Kafka's `selectProtocol`: every member votes for its most preferred candidate; the most
    /// votes win (ties: the earliest candidate).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes = vec![0usize; candidates.len()];
        for member in &self.members {
            if let Some(index) = member
                .protocols
                .iter()
                .find_map(|(name, _)| candidates.iter().position(|c| c == name))
            {
                votes[index] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        candidates
            .into_iter()
            .zip(votes)
            .find(|(_, count)| *count == best)
            .map(|(name, _)| name)
    }

    pub fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .iter()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Topics the members subscribe to, when the group runs the consumer protocol and the
    /// subscriptions decode; `None` when that cannot be known.
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = Vec::new();
        for member in &self.members {
            topics.extend(consumer_subscription_topics(&member.metadata(protocol))?);
        }
        Some(topics)
    }

    /// The record that stores this group's membership.
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol_name.clone();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: protocol.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .iter()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .map(|p| m.metadata(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Applies a stored membership record (during load).
    pub fn apply_value(&mut self, value: GroupValue, now_ms: i64) {
        self.protocol_type = Some(value.protocol_type.clone()).filter(|t| !t.is_empty());
        self.generation_id = value.generation;
        self.protocol_name = value.protocol.clone();
        self.leader_id = value.leader;
        self.state_timestamp_ms = if value.current_state_timestamp_ms >= 0 {
            value.current_state_timestamp_ms
        } else {
            now_ms
        };
        self.members = value
            .members
            .into_iter()
            .map(|m| Member {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocol_type: value.protocol_type.clone(),
                protocols: value
                    .protocol
                    .clone()
                    .map(|p| vec![(p, m.subscription)])
                    .unwrap_or_default(),
                assignment: m.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                heartbeat_deadline_ms: now_ms + i64::from(m.session_timeout_ms),
            })
            .collect();
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }
}

/// The topics of a consumer protocol subscription (`ConsumerProtocolSubscription`: version
/// i16, then an array of i16-length strings), or `None` if it does not decode.
fn consumer_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata;
    let take = |buf: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        if buf.len() < n {
            return None;
        }
        let (head, tail) = buf.split_at(n);
        *buf = tail;
        Some(head.to_vec())
    };
    take(&mut buf, 2)?;
    let count = i32::from_be_bytes(take(&mut buf, 4)?.try_into().ok()?);
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let length = i16::from_be_bytes(take(&mut buf, 2)?.try_into().ok()?);
        let name = take(&mut buf, usize::try_from(length).ok()?)?;
        topics.push(String::from_utf8(name).ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::consumer_subscription_topics;

    #[test]
    fn consumer_subscriptions_decode() {
        let metadata = [0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c', 0, 0, 0, 0];
        assert_eq!(
            consumer_subscription_topics(&metadata),
            Some(vec!["a".to_string(), "bc".to_string()])
        );
        assert_eq!(consumer_subscription_topics(&[0, 1, 0]), None);
    }
}
