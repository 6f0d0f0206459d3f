//! Reading openraft's types in JSON, as this crate stores them (log entries, `quorum-state`,
//! snapshots) and sends them (the controllers' RPCs), including what builds from before one
//! leader per term wrote and sent.
//!
//! The stored forms are openraft's serde forms of its types. With the `single-term-leader`
//! feature (see the crate doc) two of them changed:
//! - a log id's leader is its term alone: `{"leader_id": 4, "index": 41}`, where it was
//!   `{"leader_id": {"term": 4, "node_id": 2}, "index": 41}`;
//! - a vote names the node voted for as `voted_for`: `{"leader_id": {"term": 4,
//!   "voted_for": 2}, "committed": true}`, where it was `"node_id": 2`.
//!
//! [`decode`] rewrites the old forms into the new ones before it deserializes, so that a data
//! dir written before the change (a quorum of one, or a cluster stopped and started again on
//! the new build) opens with its log, vote and snapshots as they were. The rewrite of a vote
//! matters most: serde would read an old vote into the new type without error, as a vote for
//! nobody (`voted_for` absent), and a node that forgets whom it voted for may vote twice in a
//! term. A vote of term 0 (openraft's initial vote, node 0) becomes a vote for nobody.
//!
//! What the rewrite cannot check: the old leader ids let two nodes lead one term, and their
//! entries were then told apart by node id, which the new log ids drop. A node whose log holds
//! entries of such a term from the leader that lost would compare them equal to the winner's.
//! A quorum of one never has such a term; a cluster upgraded from those builds should be
//! upgraded while its nodes agree on the log (stopped together after a quiet moment).
//!
//! Nodes of the two builds do not form one quorum, and fail safely when they meet: a new node
//! reads an old node's RPCs through the same rewrite (an old vote read as a vote for nobody
//! would be a vote it never cast), and an old node refuses a new node's (a log id's term where
//! it expects an object, a vote without `node_id`) as a message that does not decode.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Deserializes stored JSON, rewriting the forms from before one leader per term first.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    let mut value: Value = serde_json::from_slice(bytes)?;
    upgrade(&mut value);
    serde_json::from_value(value)
}

/// Rewrites every old log id and vote inside `value`, at any depth, in place; the new forms
/// are left as they are.
fn upgrade(value: &mut Value) {
    match value {
        Value::Object(object) => {
            upgrade_leader_id(object);
            for child in object.values_mut() {
                upgrade(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(upgrade),
        _ => {}
    }
}

fn upgrade_leader_id(object: &mut Map<String, Value>) {
    let Some(Value::Object(leader)) = object.get("leader_id") else {
        return;
    };
    let (Some(term), Some(node_id)) = (leader.get("term").cloned(), leader.get("node_id").cloned())
    else {
        return;
    };
    let upgraded = if object.contains_key("index") {
        // A log id: its leader is its term.
        term
    } else {
        // A vote.
        let voted_for = if term.as_u64() == Some(0) {
            Value::Null
        } else {
            node_id
        };
        let mut leader = Map::new();
        leader.insert("term".into(), term);
        leader.insert("voted_for".into(), voted_for);
        Value::Object(leader)
    };
    object.insert("leader_id".into(), upgraded);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum_state::QuorumState;
    use crate::types::{Entry, LogId, Vote};
    use openraft::CommittedLeaderId;

    #[test]
    fn an_old_quorum_state_keeps_its_vote_and_log_ids() {
        let old = br#"{"vote":{"leader_id":{"term":7,"node_id":3},"committed":true},
            "committed":{"leader_id":{"term":7,"node_id":3},"index":41},
            "last_purged":{"leader_id":{"term":2,"node_id":1},"index":9}}"#;
        let state: QuorumState = decode(old).expect("decodes");
        let mut vote = Vote::new(7, 3);
        vote.commit();
        assert_eq!(state.vote, Some(vote));
        assert_eq!(
            state.committed,
            Some(LogId::new(CommittedLeaderId::new(7, 0), 41))
        );
        assert_eq!(
            state.last_purged,
            Some(LogId::new(CommittedLeaderId::new(2, 0), 9))
        );
    }

    #[test]
    fn an_old_initial_vote_is_a_vote_for_nobody() {
        let old = br#"{"vote":{"leader_id":{"term":0,"node_id":0},"committed":false},
            "committed":null,"last_purged":null}"#;
        let state: QuorumState = decode(old).expect("decodes");
        let vote = state.vote.expect("a vote");
        assert_eq!(vote.leader_id().get_term(), 0);
        assert_eq!(vote.leader_id().voted_for(), None);
    }

    #[test]
    fn an_old_entry_decodes_and_the_new_form_round_trips() {
        let old =
            br#"{"log_id":{"leader_id":{"term":4,"node_id":2},"index":12},"payload":"Blank"}"#;
        let entry: Entry = decode(old).expect("decodes");
        assert_eq!(entry.log_id, LogId::new(CommittedLeaderId::new(4, 0), 12));
        let new = serde_json::to_vec(&entry).expect("encodes");
        let again: Entry = decode(&new).expect("decodes");
        assert_eq!(again.log_id, entry.log_id);
    }

    #[test]
    fn an_old_snapshot_meta_keeps_its_log_ids_and_membership() {
        let old = br#"{"last_log_id":{"leader_id":{"term":4,"node_id":2},"index":41},
            "last_membership":{"log_id":{"leader_id":{"term":1,"node_id":1},"index":0},
              "membership":{"configs":[[1,2,3]],"nodes":{"1":{"addr":"a:1"},"2":{"addr":"b:2"},
              "3":{"addr":"c:3"}}}},
            "snapshot_id":"41-4"}"#;
        let meta: crate::types::SnapshotMeta = decode(old).expect("decodes");
        assert_eq!(
            meta.last_log_id,
            Some(LogId::new(CommittedLeaderId::new(4, 0), 41))
        );
        assert_eq!(
            meta.last_membership.log_id(),
            &Some(LogId::new(CommittedLeaderId::new(1, 0), 0))
        );
        let voters: Vec<_> = meta.last_membership.membership().voter_ids().collect();
        assert_eq!(voters, vec![1, 2, 3]);
    }

    #[test]
    fn a_new_vote_is_left_as_it_is() {
        let mut vote = Vote::new(5, 2);
        vote.commit();
        let state = QuorumState {
            vote: Some(vote),
            committed: None,
            last_purged: None,
        };
        let bytes = serde_json::to_vec(&state).expect("encodes");
        let again: QuorumState = decode(&bytes).expect("decodes");
        assert_eq!(again.vote, Some(vote));
    }
}
