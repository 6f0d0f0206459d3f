//! At most one leader per term (Raft's Election Safety), as the nodes' metrics show it, across
//! restarts; and the property Election Safety rests on, that no node votes twice in a term
//! and no node's vote ever goes back.
//!
//! Runnel uses the Raft term as Kafka's leader epoch (DescribeQuorum, the metadata log's
//! batches and leader-epoch checkpoint), so one leader per term is what it needs.
//! `runnel-controller` builds openraft with its `single-term-leader` feature for that: without
//! it openraft's leader id is (term, node id), a voter that granted (t, 3) may grant (t, 5)
//! later, and both can be elected in term t (this simulation found such terms, seeds 3 and 58
//! with 5 voters, before the feature was turned on).
//!
//! A vote is (term, voted for, committed). Over time a node's vote may only grow in openraft's
//! order: a later term; or in the same term a first choice made (`None` to a node), the same
//! choice committed, or an uncommitted choice replaced by another node's committed one (a
//! candidate that learns who won its term: it follows the winner, it did not vote for it).
//! Granting a second candidate of a term (one uncommitted choice to another), or a vote seen
//! older than before (an earlier term, a committed vote uncommitted again: lost, say from
//! `quorum-state` by a restart) would let two leaders be elected in one term.

use std::collections::BTreeMap;
use std::time::Duration;

use runnel_controller::NodeId;
use thiserror::Error;

use crate::history::History;

/// A node's vote as [`crate::history::RoleSeen`] keeps it.
type Vote = (u64, Option<NodeId>, bool);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TwoLeaders {
    #[error(
        "two leaders in term {term}: node {first} (seen at {first_at:?}) and node {second} \
         (at {second_at:?})"
    )]
    OneTerm {
        term: u64,
        first: NodeId,
        first_at: Duration,
        second: NodeId,
        second_at: Duration,
    },
    #[error("node {node}'s vote went back, or it voted twice in a term: {before:?} then {after:?} at {at:?}")]
    VoteWentBack {
        node: NodeId,
        before: Vote,
        after: Vote,
        at: Duration,
    },
}

/// Whether `after` may follow `before` as one node's vote: `after >= before` in openraft's
/// order of votes with single-term leaders (see the module doc).
fn grows(before: Vote, after: Vote) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let (term, voted_for, committed) = before;
    let leader = match after.0.cmp(&term) {
        Equal => match (voted_for, after.1) {
            (None, None) => Some(Equal),
            (None, Some(_)) => Some(Greater),
            (Some(_), None) => Some(Less),
            (Some(a), Some(b)) => (a == b).then_some(Equal),
        },
        order => Some(order),
    };
    match leader {
        Some(Greater) => true,
        Some(Less) => false,
        Some(Equal) => after.2 >= committed,
        // Two candidates of one term: only the one elected (committed) may replace the other.
        None => after.2 && !committed,
    }
}

pub fn check(history: &History) -> Result<(), TwoLeaders> {
    let mut leaders: BTreeMap<u64, (NodeId, Duration)> = BTreeMap::new();
    let mut votes: BTreeMap<NodeId, Vote> = BTreeMap::new();
    for role in history.roles() {
        let before = *votes.entry(role.node).or_insert(role.vote);
        if !grows(before, role.vote) {
            return Err(TwoLeaders::VoteWentBack {
                node: role.node,
                before,
                after: role.vote,
                at: role.at,
            });
        }
        votes.insert(role.node, role.vote);
        if !role.leading {
            continue;
        }
        let (first, first_at) = *leaders.entry(role.term).or_insert((role.node, role.at));
        if first != role.node {
            return Err(TwoLeaders::OneTerm {
                term: role.term,
                first,
                first_at,
                second: role.node,
                second_at: role.at,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::fabricate::{ms, role, voted};

    fn history(events: Vec<crate::history::Event>) -> History {
        History {
            events,
            ..History::default()
        }
    }

    #[test]
    fn one_leader_per_term_passes() {
        let ok = history(vec![
            role(10, 1, 1, true),
            role(11, 2, 1, false),
            role(20, 1, 1, true),
            role(500, 2, 2, true),
            role(501, 1, 2, false),
        ]);
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn two_leaders_in_one_term_are_caught_even_far_apart() {
        let bad = history(vec![
            role(10, 1, 3, true),
            role(20, 2, 4, true),
            role(9000, 3, 3, true),
        ]);
        assert_eq!(
            check(&bad),
            Err(TwoLeaders::OneTerm {
                term: 3,
                first: 1,
                first_at: ms(10),
                second: 3,
                second_at: ms(9000),
            })
        );
    }

    #[test]
    fn a_second_vote_in_a_term_or_a_vote_that_goes_back_is_caught() {
        // Node 2 voted for 3 in term 7, then for 5: it voted twice in term 7 (which
        // openraft's (term, node id) leader ids allowed: (7, 5) > (7, 3)).
        let twice = history(vec![
            voted(10, 2, (7, Some(3), false)),
            voted(30, 2, (7, Some(5), false)),
        ]);
        assert_eq!(
            check(&twice),
            Err(TwoLeaders::VoteWentBack {
                node: 2,
                before: (7, Some(3), false),
                after: (7, Some(5), false),
                at: ms(30),
            })
        );
        // A committed vote seen uncommitted again (after a restart that lost it).
        let lost = history(vec![
            voted(10, 1, (4, Some(2), true)),
            voted(20, 1, (4, Some(2), false)),
        ]);
        assert!(matches!(
            check(&lost),
            Err(TwoLeaders::VoteWentBack { node: 1, .. })
        ));
        // An older term.
        let older = history(vec![
            voted(10, 1, (4, None, false)),
            voted(20, 1, (3, Some(1), false)),
        ]);
        assert!(matches!(
            check(&older),
            Err(TwoLeaders::VoteWentBack { node: 1, .. })
        ));
        // Growing votes pass: a first choice, its commit, a later term, and a candidate that
        // learns who won its term.
        let ok = history(vec![
            voted(5, 1, (4, None, false)),
            voted(10, 1, (4, Some(2), false)),
            voted(20, 1, (4, Some(2), true)),
            voted(40, 1, (5, Some(1), false)),
            voted(50, 1, (5, Some(3), true)),
        ]);
        assert_eq!(check(&ok), Ok(()));
        // But not the other way round: a committed choice replaced by another.
        let replaced = history(vec![
            voted(10, 1, (5, Some(3), true)),
            voted(20, 1, (5, Some(1), true)),
        ]);
        assert!(matches!(
            check(&replaced),
            Err(TwoLeaders::VoteWentBack { node: 1, .. })
        ));
    }
}
