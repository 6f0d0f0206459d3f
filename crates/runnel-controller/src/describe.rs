//! The quorum as the leader sees it, for DescribeQuorum (KIP-595, KIP-836): the leader and
//! its epoch (the Raft term), the high watermark, and each voter's log end offset with when
//! the leader last heard it fetch and when it was last caught up.
//!
//! Offsets are the metadata log's: an entry's Raft index is its offset (`log_store.rs`), so a
//! log end offset is the last index + 1 and the high watermark the committed index + 1.
//! openraft reports each follower's matched entry; the times are kept here, from the
//! leader's metrics: a follower's fetch time moves when its matched entry does, and its
//! caught-up time is when its matched entry last reached the leader's last entry. A follower
//! that matches the leader's last entry is caught up as of the leader's last quorum
//! acknowledgement (openraft's `millis_since_quorum_ack`), as heartbeats carry no entries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::metrics::RaftMetrics;
use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// DescribeQuorum's answer for `__cluster_metadata-0`, from the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumDescription {
    pub leader_id: NodeId,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<ReplicaDescription>,
    /// Non-voting members: broker-only nodes, the quorum's learners.
    pub observers: Vec<ReplicaDescription>,
}

/// One replica of the metadata log, as the leader knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDescription {
    pub replica_id: NodeId,
    /// Its controller listener, `host:port`.
    pub address: String,
    /// -1 when unknown.
    pub log_end_offset: i64,
    /// Milliseconds since the epoch; -1 when unknown.
    pub last_fetch_timestamp: i64,
    /// Milliseconds since the epoch; -1 when unknown.
    pub last_caught_up_timestamp: i64,
}

/// What the leader has seen of one follower.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    matched: Option<u64>,
    last_fetch_ms: Option<i64>,
    last_caught_up_ms: Option<i64>,
}

/// Followers' progress, kept from the leader's metrics (see the module doc).
#[derive(Debug, Default, Clone)]
pub(crate) struct ReplicaTimes(Arc<Mutex<BTreeMap<NodeId, Progress>>>);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl ReplicaTimes {
    /// Notes what `metrics` shows of each follower (only a leader's metrics have any).
    pub(crate) fn observe(&self, metrics: &RaftMetrics<NodeId, BasicNode>) {
        let Some(replication) = &metrics.replication else {
            return;
        };
        let now = now_ms();
        let last = metrics.last_log_index;
        let mut times = self.0.lock().expect("replica times lock poisoned");
        for (id, matched) in replication {
            let matched = matched.map(|log_id| log_id.index);
            let progress = times.entry(*id).or_default();
            if matched != progress.matched {
                progress.matched = matched;
                progress.last_fetch_ms = Some(now);
            }
            if matched.is_some() && matched == last {
                progress.last_caught_up_ms = Some(now);
            }
        }
    }

    /// The quorum as `metrics` (this node's, as the leader) shows it, with `addresses` for
    /// each voter; `None` unless this node leads.
    pub(crate) fn describe(
        &self,
        metrics: &RaftMetrics<NodeId, BasicNode>,
        addresses: &BTreeMap<NodeId, String>,
    ) -> Option<QuorumDescription> {
        if metrics.current_leader != Some(metrics.id) {
            return None;
        }
        let now = now_ms();
        let acked_at = metrics
            .millis_since_quorum_ack
            .map(|since| now - since as i64);
        let last = metrics.last_log_index;
        let end = |index: Option<u64>| index.map_or(-1, |i| i as i64 + 1);
        let times = self.0.lock().expect("replica times lock poisoned");
        let replication = metrics.replication.clone().unwrap_or_default();
        let membership = metrics.membership_config.membership();
        let mut voters: Vec<NodeId> = membership.voter_ids().collect();
        voters.sort_unstable();
        let mut learners: Vec<NodeId> = membership.learner_ids().collect();
        learners.sort_unstable();
        // The configured voters are the membership's (`check_membership` in node.rs); a
        // learner is reached where it joined from.
        let address = |id: NodeId| {
            addresses
                .get(&id)
                .cloned()
                .or_else(|| membership.get_node(&id).map(|node| node.addr.clone()))
                .unwrap_or_default()
        };
        let describe = |id: NodeId| {
            if id == metrics.id {
                // The leader: its own log end, caught up now (Kafka reports the leader's
                // caught-up time as the current time).
                return ReplicaDescription {
                    replica_id: id,
                    address: address(id),
                    log_end_offset: end(last),
                    last_fetch_timestamp: now,
                    last_caught_up_timestamp: now,
                };
            }
            let matched = replication
                .get(&id)
                .copied()
                .flatten()
                .map(|log_id| log_id.index);
            let progress = times.get(&id).copied().unwrap_or_default();
            let caught_up_now = matched.is_some() && matched == last;
            let at = |recorded: Option<i64>| {
                let heard = if caught_up_now {
                    acked_at.max(recorded)
                } else {
                    recorded
                };
                heard.unwrap_or(-1)
            };
            ReplicaDescription {
                replica_id: id,
                address: address(id),
                log_end_offset: end(matched),
                last_fetch_timestamp: at(progress.last_fetch_ms),
                last_caught_up_timestamp: at(progress.last_caught_up_ms),
            }
        };
        Some(QuorumDescription {
            leader_id: metrics.id,
            leader_epoch: i32::try_from(metrics.current_term).unwrap_or(i32::MAX),
            high_watermark: end(metrics.last_applied.map(|log_id| log_id.index)),
            voters: voters.into_iter().map(describe).collect(),
            observers: learners.into_iter().map(describe).collect(),
        })
    }
}
