//! At most one leader per term (Raft's Election Safety), as the nodes' metrics show it, across
//! restarts; and the property Election Safety rests on, that no node's vote ever goes back.
//!
//! # Two rules, and why
//! Runnel uses the Raft term as Kafka's leader epoch (DescribeQuorum, the metadata log's
//! batches and leader-epoch checkpoint), so the property it needs is one leader per term
//! ([`LeaderRule::OnePerTerm`]). openraft 0.9 as `runnel-controller` builds it (without its
//! `single-term-leader` feature) does not promise that: its leader id is (term, node id), a
//! voter that granted (t, 3) may grant (t, 5) later, and both candidates can be elected in
//! term t, in either order (a grant can arrive late). Its log ids carry the node id, so the
//! log stays safe; the simulation finds such terms (`runnel-sim` seed 3, 5 voters, was one).
//! Until the controller runs single-term leaders, runs use [`LeaderRule::OpenraftLeaderIds`]:
//! such terms are counted ([`several_leaders`]), not failed.
//!
//! Under either rule every node's vote must only grow, in openraft's order ((term, voted for)
//! then committed), whenever it is seen, restarts included: a vote that went back (one lost
//! from `quorum-state`, say) lets a node vote twice for one leader id, and two leaders with
//! one leader id would be two leaders of one log position.

use std::collections::BTreeMap;
use std::time::Duration;

use runnel_controller::NodeId;
use thiserror::Error;

use crate::history::History;

/// Which leaders a term may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderRule {
    /// One leader per term: Kafka's leader epoch, standard Raft.
    OnePerTerm,
    /// openraft's (term, node id) leader ids: a term may have several leaders.
    OpenraftLeaderIds,
}

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
    #[error("node {node}'s vote went back from {before:?} to {after:?} at {at:?}")]
    VoteWentBack {
        node: NodeId,
        before: Vote,
        after: Vote,
        at: Duration,
    },
}

pub fn check(history: &History, rule: LeaderRule) -> Result<(), TwoLeaders> {
    let mut leaders: BTreeMap<u64, (NodeId, Duration)> = BTreeMap::new();
    let mut votes: BTreeMap<NodeId, Vote> = BTreeMap::new();
    for role in history.roles() {
        let before = *votes.entry(role.node).or_insert(role.vote);
        if role.vote < before {
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
        if first != role.node && rule == LeaderRule::OnePerTerm {
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

/// Terms in which more than one node was seen leading.
pub fn several_leaders(history: &History) -> usize {
    let mut leaders: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
    for role in history.roles().filter(|role| role.leading) {
        let term = leaders.entry(role.term).or_default();
        if !term.contains(&role.node) {
            term.push(role.node);
        }
    }
    leaders.values().filter(|nodes| nodes.len() > 1).count()
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
    fn one_leader_per_term_passes_both_rules() {
        let ok = history(vec![
            role(10, 1, 1, true),
            role(11, 2, 1, false),
            role(20, 1, 1, true),
            role(500, 2, 2, true),
            role(501, 1, 2, false),
        ]);
        assert_eq!(check(&ok, LeaderRule::OnePerTerm), Ok(()));
        assert_eq!(check(&ok, LeaderRule::OpenraftLeaderIds), Ok(()));
        assert_eq!(several_leaders(&ok), 0);
    }

    #[test]
    fn two_leaders_in_one_term_are_caught_even_far_apart() {
        let bad = history(vec![
            role(10, 1, 3, true),
            role(20, 2, 4, true),
            role(9000, 3, 3, true),
        ]);
        assert_eq!(
            check(&bad, LeaderRule::OnePerTerm),
            Err(TwoLeaders::OneTerm {
                term: 3,
                first: 1,
                first_at: ms(10),
                second: 3,
                second_at: ms(9000),
            })
        );
        // openraft's leader ids allow it, and the term is counted.
        assert_eq!(check(&bad, LeaderRule::OpenraftLeaderIds), Ok(()));
        assert_eq!(several_leaders(&bad), 1);
    }

    #[test]
    fn a_vote_that_goes_back_is_caught_under_both_rules() {
        // Node 2 voted for (7, 5), then for (7, 3): it voted twice in term 7.
        let bad = history(vec![
            voted(10, 2, (7, Some(5), false)),
            voted(30, 2, (7, Some(3), false)),
        ]);
        for rule in [LeaderRule::OnePerTerm, LeaderRule::OpenraftLeaderIds] {
            assert_eq!(
                check(&bad, rule),
                Err(TwoLeaders::VoteWentBack {
                    node: 2,
                    before: (7, Some(5), false),
                    after: (7, Some(3), false),
                    at: ms(30),
                })
            );
        }
        // A committed vote seen uncommitted again (after a restart that lost it).
        let lost = history(vec![
            voted(10, 1, (4, Some(2), true)),
            voted(20, 1, (4, Some(2), false)),
        ]);
        assert!(matches!(
            check(&lost, LeaderRule::OpenraftLeaderIds),
            Err(TwoLeaders::VoteWentBack { node: 1, .. })
        ));
        // Growing votes pass.
        let ok = history(vec![
            voted(10, 1, (4, Some(2), false)),
            voted(20, 1, (4, Some(2), true)),
            voted(30, 1, (4, Some(3), false)),
            voted(40, 1, (5, Some(1), false)),
        ]);
        assert_eq!(check(&ok, LeaderRule::OpenraftLeaderIds), Ok(()));
    }
}
