//! Broker-only nodes (`process.roles=broker`): they follow the metadata log as non-voting
//! Raft learners, so every node holds the log and its image, and they never vote or lead.
//!
//! Joining: a learner does not initialize a membership of its own. At start it asks the
//! voters, one after another, to add it ([`crate::frame::Kind::Join`] on a voter's controller
//! listener, body the JSON of [`JoinRequest`]); a voter that does not lead answers "not the
//! leader" with the leader it knows and its address ([`LeaderHint`]), which is asked next
//! (even when it is not among the configured voters, after a change of voters). The leader adds the node with
//! openraft's `add_learner` (a membership entry in the log) unless the membership already
//! names it at the same address, and answers once that is committed. From then on the leader
//! replicates to the learner like to any follower, at the address it joined with (a learner
//! is not in `controller.quorum.voters`, so the membership's address is the one used, see
//! `network.rs`). A learner restarted on another address joins again and the membership is
//! updated.
//!
//! Kafka's broker-only nodes fetch the metadata log from the controllers; openraft pushes it,
//! so a learner listens for the leader's AppendEntries on a listener of its own (the broker's
//! host, a port the OS picks unless configured).

use std::time::Duration;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::frame::{self, Kind, STATUS_NOT_LEADER, STATUS_OK};
use crate::transport::Transport;
use crate::types::{NodeId, Raft};

/// Pause between rounds over the voters when none accepted.
const JOIN_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How long one voter may take to answer a join (connect, commit the membership, answer).
/// Short: a leader that cannot commit (cut off from its majority) holds the join unanswered,
/// and the learner must move on to the other voters, one of which may lead by then (the
/// simulation's sweep found learners that waited out a whole 30 s on such a leader).
const JOIN_ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// A learner waiting for the voters logs at WARN this often.
const JOIN_WARN_EVERY: Duration = Duration::from_secs(30);

/// Who leads, as a voter that does not answers a join: the body of its "not the leader"
/// frame. The address is the membership's, so that a learner whose configured voters are no
/// longer the quorum's (voters changed since) still reaches the leader.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    pub leader: Option<NodeId>,
    pub address: Option<String>,
}

/// A learner's request to be added to the quorum's membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: NodeId,
    /// `host:port` where the learner serves the leader's RPCs.
    pub address: String,
}

/// Asks the voters to add this node as a learner until one leader has, logging at WARN
/// while none answers (a learner waits for the controllers for as long as they take, as a
/// Kafka broker does).
pub(crate) async fn join<T: Transport>(
    transport: &T,
    voters: &[(NodeId, String)],
    request: &JoinRequest,
) {
    let body = serde_json::to_vec(request).expect("a join request serialises");
    let mut warn_at = Instant::now() + JOIN_WARN_EVERY;
    let mut hint: Option<(NodeId, String)> = None;
    loop {
        // The leader a voter named is asked first, then every configured voter in turn.
        let named = hint.take();
        for (voter, addr) in named.iter().chain(voters.iter()) {
            match ask(transport, addr, &body).await {
                Asked::Added => {
                    tracing::info!(
                        node_id = request.node_id,
                        address = %request.address,
                        by = voter,
                        "joined the metadata quorum as a learner (non-voter)"
                    );
                    return;
                }
                Asked::NotLeader(LeaderHint {
                    leader: Some(leader),
                    address,
                }) if leader != *voter => {
                    let address = address.or_else(|| {
                        voters
                            .iter()
                            .find(|(id, _)| *id == leader)
                            .map(|(_, addr)| addr.clone())
                    });
                    if let Some(address) = address {
                        hint = Some((leader, address));
                        break;
                    }
                }
                Asked::NotLeader(_) => {}
                Asked::Failed(reason) => {
                    tracing::debug!(voter, addr, reason, "join: voter did not add this node");
                }
            }
        }
        if Instant::now() >= warn_at {
            tracing::warn!(
                voters = voters.len(),
                "no active controller added this node as a learner yet: waiting for the controllers"
            );
            warn_at = Instant::now() + JOIN_WARN_EVERY;
        }
        tokio::time::sleep(JOIN_RETRY_PAUSE).await;
    }
}

enum Asked {
    Added,
    NotLeader(LeaderHint),
    Failed(String),
}

async fn ask<T: Transport>(transport: &T, addr: &str, body: &[u8]) -> Asked {
    let exchange = async {
        let mut stream =
            tokio::time::timeout(crate::network::CONNECT_TIMEOUT, transport.connect(addr))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|error| error.to_string())?;
        frame::write_frame(&mut stream, Kind::Join as u8, body)
            .await
            .map_err(|error| error.to_string())?;
        frame::read_frame(&mut stream)
            .await
            .map_err(|error| error.to_string())
    };
    match tokio::time::timeout(JOIN_ANSWER_TIMEOUT, exchange).await {
        Err(_) => Asked::Failed(format!("no answer within {JOIN_ANSWER_TIMEOUT:?}")),
        Ok(Err(reason)) => Asked::Failed(reason),
        Ok(Ok((STATUS_OK, _))) => Asked::Added,
        Ok(Ok((STATUS_NOT_LEADER, hint))) => {
            Asked::NotLeader(serde_json::from_slice(&hint).unwrap_or_default())
        }
        Ok(Ok((_, reason))) => Asked::Failed(String::from_utf8_lossy(&reason).into_owned()),
    }
}

/// Answers a [`JoinRequest`] on the controller listener: the status and body of the
/// response frame. Only the leader adds learners; a voter id is refused (voters are the
/// configured ones, never added by a join).
pub(crate) async fn serve(raft: &Raft, body: &[u8]) -> (u8, Vec<u8>) {
    let refused = |reason: String| (frame::STATUS_RAFT_ERROR, reason.into_bytes());
    let request: JoinRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => return refused(format!("a join request does not decode: {error}")),
    };
    let (leading, hint, known) = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let hint = LeaderHint {
            leader: m.current_leader,
            address: m
                .current_leader
                .and_then(|id| membership.get_node(&id))
                .map(|node| node.addr.clone()),
        };
        let known = membership
            .nodes()
            .find(|(id, _)| **id == request.node_id)
            .map(|(_, node)| {
                (
                    node.addr.clone(),
                    membership.voter_ids().any(|v| v == request.node_id),
                )
            });
        (m.current_leader == Some(m.id), hint, known)
    };
    if !leading {
        let body = serde_json::to_vec(&hint).expect("a hint serialises");
        return (STATUS_NOT_LEADER, body);
    }
    match known {
        Some((_, true)) => {
            return refused(format!(
                "node {} is a voter of the metadata quorum, not a learner",
                request.node_id
            ))
        }
        Some((addr, false)) if addr == request.address => return (STATUS_OK, Vec::new()),
        // Known at another address: removed first, so that the leader's replication to it
        // starts afresh at the new address (openraft keeps a learner's stream, and the
        // address it was opened with, across a change of its node info).
        Some((_, false)) => {
            let removed = raft
                .change_membership(
                    openraft::ChangeMembers::RemoveNodes(std::collections::BTreeSet::from([
                        request.node_id,
                    ])),
                    false,
                )
                .await;
            if let Err(error) = removed {
                return not_added(error);
            }
        }
        None => {}
    }
    let node = BasicNode {
        addr: request.address.clone(),
    };
    match raft.add_learner(request.node_id, node, false).await {
        Ok(_) => {
            tracing::info!(
                node_id = request.node_id,
                address = %request.address,
                "added a learner (broker-only node) to the metadata quorum"
            );
            (STATUS_OK, Vec::new())
        }
        Err(error) => not_added(error),
    }
}

/// The answer to a join the leader could not make: "not the leader" with the leader it names
/// when it lost the lead, else the refusal as text.
fn not_added(
    error: openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, BasicNode>>,
) -> (u8, Vec<u8>) {
    match error {
        openraft::error::RaftError::APIError(
            openraft::error::ClientWriteError::ForwardToLeader(forward),
        ) => {
            let hint = LeaderHint {
                leader: forward.leader_id,
                address: forward.leader_node.map(|node| node.addr),
            };
            let body = serde_json::to_vec(&hint).expect("a hint serialises");
            (STATUS_NOT_LEADER, body)
        }
        error => (frame::STATUS_RAFT_ERROR, error.to_string().into_bytes()),
    }
}
