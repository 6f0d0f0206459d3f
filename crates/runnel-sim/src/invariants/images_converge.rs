//! Every node's image converges to the leader's: after faults stop (every node running,
//! every link healed), within a simulated deadline, the last image each node applied has the
//! leader's applied log id and the same fingerprint.
//!
//! [`check`] judges the end of a history: the scenario runner calls it as simulated time
//! passes after the heal, stops the run as soon as it passes, and reports its error if the
//! deadline comes first. The leader is the node last seen leading in the highest term any
//! node's last role shows.

use std::collections::BTreeMap;
use std::time::Duration;

use runnel_controller::types::LogId;
use runnel_controller::NodeId;
use thiserror::Error;

use crate::history::{AppliedSeen, Event, History, RoleSeen};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NotConverged {
    #[error("faults never stopped")]
    NotHealed,
    #[error("no leader after the heal at {healed_at:?}")]
    NoLeader { healed_at: Duration },
    #[error("node {node} never applied anything")]
    NothingApplied { node: NodeId },
    #[error(
        "node {node} applied up to {log_id:?} (image {fingerprint:#x}) but the leader {leader} \
         up to {leader_log_id:?} (image {leader_fingerprint:#x}), {since:?} after the heal"
    )]
    Differs {
        node: NodeId,
        log_id: Option<LogId>,
        fingerprint: u64,
        leader: NodeId,
        leader_log_id: Option<LogId>,
        leader_fingerprint: u64,
        since: Duration,
    },
}

/// Whether every node of `nodes` holds the leader's image now (at the history's end).
pub fn check(history: &History, nodes: &[NodeId]) -> Result<(), NotConverged> {
    let mut healed_at = None;
    let mut roles: BTreeMap<NodeId, &RoleSeen> = BTreeMap::new();
    let mut applied: BTreeMap<NodeId, &AppliedSeen> = BTreeMap::new();
    let mut end = Duration::ZERO;
    for event in &history.events {
        end = end.max(event.at());
        match event {
            Event::Healed { at } => healed_at = Some(*at),
            // A fault after a heal: the faults did not stop.
            Event::Fault { .. } => healed_at = None,
            Event::Role(role) => {
                roles.insert(role.node, role);
            }
            Event::Applied(seen) => {
                applied.insert(seen.node, seen);
            }
            Event::Acked { .. } | Event::Note { .. } => {}
        }
    }
    let healed_at = healed_at.ok_or(NotConverged::NotHealed)?;
    let leader = roles
        .values()
        .filter(|role| role.leading)
        .max_by_key(|role| role.term)
        .filter(|leading| roles.values().all(|role| role.term <= leading.term))
        .map(|role| role.node)
        .ok_or(NotConverged::NoLeader { healed_at })?;
    let leader_seen = applied
        .get(&leader)
        .ok_or(NotConverged::NothingApplied { node: leader })?;
    for node in nodes {
        let seen = applied
            .get(node)
            .ok_or(NotConverged::NothingApplied { node: *node })?;
        if seen.log_id != leader_seen.log_id || seen.fingerprint != leader_seen.fingerprint {
            return Err(NotConverged::Differs {
                node: *node,
                log_id: seen.log_id,
                fingerprint: seen.fingerprint,
                leader,
                leader_log_id: leader_seen.log_id,
                leader_fingerprint: leader_seen.fingerprint,
                since: end.saturating_sub(healed_at),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::fabricate::{applied, ms, role};

    fn history(events: Vec<Event>) -> History {
        History {
            events,
            ..History::default()
        }
    }

    #[test]
    fn equal_images_after_the_heal_pass() {
        let ok = history(vec![
            Event::Healed { at: ms(5) },
            role(6, 1, 2, true),
            role(6, 2, 2, false),
            applied(7, 1, 2, 4, &[1, 2]),
            applied(8, 2, 2, 4, &[1, 2]),
        ]);
        assert_eq!(check(&ok, &[1, 2]), Ok(()));
    }

    #[test]
    fn a_node_left_behind_is_caught() {
        let bad = history(vec![
            Event::Healed { at: ms(5) },
            role(6, 1, 2, true),
            applied(7, 1, 2, 4, &[1, 2]),
            applied(8, 2, 2, 3, &[1]),
        ]);
        assert!(
            matches!(
                check(&bad, &[1, 2]),
                Err(NotConverged::Differs { node: 2, .. })
            ),
            "{:?}",
            check(&bad, &[1, 2])
        );
    }

    #[test]
    fn a_different_image_at_the_same_index_is_caught() {
        let bad = history(vec![
            Event::Healed { at: ms(5) },
            role(6, 1, 2, true),
            applied(7, 1, 2, 4, &[1, 2]),
            applied(8, 2, 2, 4, &[2, 1, 3]),
        ]);
        assert!(matches!(
            check(&bad, &[1, 2]),
            Err(NotConverged::Differs { node: 2, .. })
        ));
    }

    #[test]
    fn no_heal_no_leader_and_silent_nodes_are_caught() {
        let unhealed = history(vec![role(6, 1, 2, true), applied(7, 1, 2, 4, &[1])]);
        assert_eq!(check(&unhealed, &[1]), Err(NotConverged::NotHealed));
        let leaderless = history(vec![Event::Healed { at: ms(5) }, role(6, 1, 2, false)]);
        assert_eq!(
            check(&leaderless, &[1]),
            Err(NotConverged::NoLeader { healed_at: ms(5) })
        );
        let silent = history(vec![
            Event::Healed { at: ms(5) },
            role(6, 1, 2, true),
            applied(7, 1, 2, 4, &[1]),
        ]);
        assert_eq!(
            check(&silent, &[1, 3]),
            Err(NotConverged::NothingApplied { node: 3 })
        );
    }
}
