//! Committed metadata is never lost or reordered (Raft's Leader Completeness and State
//! Machine Safety, as the image shows them):
//! - a proposal answered `Ok(index)` is in every image applied at `index` or later, on every
//!   node, with the topic id and partitions it was proposed with, forever after the answer
//!   (and before it: the check covers every image seen in the run);
//! - it is in no image applied below `index` (it did not apply early, out of order);
//! - no two proposals were answered with the same index;
//! - the image is a function of the applied position: every image seen at one index, on any
//!   node at any time, has the same log id and the same fingerprint (two nodes that applied
//!   different entries, or the same entries in another order, differ at some index).

use std::collections::BTreeMap;
use std::time::Duration;

use runnel_controller::types::LogId;
use runnel_controller::NodeId;
use thiserror::Error;
use uuid::Uuid;

use crate::history::History;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CommittedLost {
    #[error("proposals {first} and {second} were both answered with index {index}")]
    TwoAtOneIndex { index: u64, first: u64, second: u64 },
    #[error(
        "proposal {seq} was answered with index {index}, but node {node} applied up to \
         {applied} at {at:?} without it"
    )]
    Lost {
        seq: u64,
        index: u64,
        node: NodeId,
        applied: u64,
        at: Duration,
    },
    #[error(
        "proposal {seq} (index {index}) is in node {node}'s image at {applied} (at {at:?}) \
         with other records: {seen:?}, proposed {proposed:?}"
    )]
    Changed {
        seq: u64,
        index: u64,
        node: NodeId,
        applied: u64,
        at: Duration,
        seen: (Uuid, i32),
        proposed: (Uuid, i32),
    },
    #[error(
        "proposal {seq} was answered with index {index}, but node {node} held it at index \
         {applied} (at {at:?}): applied out of order"
    )]
    Early {
        seq: u64,
        index: u64,
        node: NodeId,
        applied: u64,
        at: Duration,
    },
    #[error(
        "at index {index} node {first_node} applied {first_log_id:?} \
         (image {first_fingerprint:#x}) but node {node} applied {log_id:?} \
         (image {fingerprint:#x}) at {at:?}"
    )]
    Diverged {
        index: u64,
        first_node: NodeId,
        first_log_id: Option<LogId>,
        first_fingerprint: u64,
        node: NodeId,
        log_id: Option<LogId>,
        fingerprint: u64,
        at: Duration,
    },
}

pub fn check(history: &History) -> Result<(), CommittedLost> {
    // Acknowledged proposals by index.
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    for (seq, index) in history.acked() {
        if let Some(&first) = acked.get(&index) {
            if first != seq {
                return Err(CommittedLost::TwoAtOneIndex {
                    index,
                    first,
                    second: seq,
                });
            }
        }
        acked.insert(index, seq);
    }
    let proposed = |seq: u64| {
        history
            .proposals
            .get(&seq)
            .map(|p| (p.topic_id, p.partitions))
    };
    // The first image seen at each index: (node, log id, fingerprint).
    let mut at_index: BTreeMap<u64, (NodeId, Option<LogId>, u64)> = BTreeMap::new();
    for seen in history.applied() {
        let applied = seen.index();
        if let Some(index) = applied {
            let (first_node, first_log_id, first_fingerprint) =
                *at_index
                    .entry(index)
                    .or_insert((seen.node, seen.log_id, seen.fingerprint));
            if first_log_id != seen.log_id || first_fingerprint != seen.fingerprint {
                return Err(CommittedLost::Diverged {
                    index,
                    first_node,
                    first_log_id,
                    first_fingerprint,
                    node: seen.node,
                    log_id: seen.log_id,
                    fingerprint: seen.fingerprint,
                    at: seen.at,
                });
            }
        }
        for (&index, &seq) in &acked {
            let reached = applied.is_some_and(|applied| applied >= index);
            match (reached, seen.proposals.get(&seq)) {
                (true, None) => {
                    return Err(CommittedLost::Lost {
                        seq,
                        index,
                        node: seen.node,
                        applied: applied.unwrap_or_default(),
                        at: seen.at,
                    })
                }
                (true, Some(&found)) => {
                    if let Some(wanted) = proposed(seq).filter(|wanted| *wanted != found) {
                        return Err(CommittedLost::Changed {
                            seq,
                            index,
                            node: seen.node,
                            applied: applied.unwrap_or_default(),
                            at: seen.at,
                            seen: found,
                            proposed: wanted,
                        });
                    }
                }
                (false, Some(_)) => {
                    return Err(CommittedLost::Early {
                        seq,
                        index,
                        node: seen.node,
                        applied: applied.unwrap_or_default(),
                        at: seen.at,
                    })
                }
                (false, None) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Event, Proposal};
    use crate::invariants::fabricate::{applied, ms};

    fn history(events: Vec<Event>) -> History {
        let proposals = (1..=3)
            .map(|seq| {
                (
                    seq,
                    Proposal {
                        seq,
                        topic_id: Uuid::from_u64_pair(0, seq),
                        partitions: 1,
                    },
                )
            })
            .collect();
        History { events, proposals }
    }

    fn ack(at: u64, seq: u64, index: u64) -> Event {
        Event::Acked {
            at: ms(at),
            seq,
            index,
        }
    }

    #[test]
    fn a_consistent_history_passes() {
        let ok = history(vec![
            applied(1, 1, 1, 1, &[]),
            applied(2, 2, 1, 2, &[1]),
            ack(3, 1, 2),
            applied(4, 3, 1, 1, &[]),
            applied(5, 1, 1, 3, &[1, 2]),
            ack(6, 2, 3),
            applied(7, 3, 1, 3, &[1, 2]),
        ]);
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn a_lost_entry_is_caught() {
        // Node 3 later applies index 3 without proposal 1 (index 2).
        let bad = history(vec![
            applied(2, 1, 1, 2, &[1]),
            ack(3, 1, 2),
            applied(9, 3, 2, 3, &[2]),
        ]);
        assert!(
            matches!(
                check(&bad),
                Err(CommittedLost::Lost {
                    seq: 1,
                    index: 2,
                    node: 3,
                    ..
                })
            ),
            "{:?}",
            check(&bad)
        );
    }

    #[test]
    fn an_entry_applied_out_of_order_is_caught() {
        // Proposal 2 was committed at index 3, but node 2 holds it at index 2.
        let bad = history(vec![
            applied(2, 1, 1, 3, &[1, 2]),
            ack(3, 2, 3),
            applied(4, 2, 1, 2, &[2]),
        ]);
        assert!(
            matches!(
                check(&bad),
                Err(CommittedLost::Early {
                    seq: 2,
                    index: 3,
                    node: 2,
                    ..
                })
            ),
            "{:?}",
            check(&bad)
        );
    }

    #[test]
    fn two_images_at_one_index_are_caught() {
        // Same index, entries of different terms: the logs diverged.
        let bad = history(vec![applied(2, 1, 1, 2, &[1]), applied(3, 2, 2, 2, &[2])]);
        assert!(
            matches!(check(&bad), Err(CommittedLost::Diverged { index: 2, .. })),
            "{:?}",
            check(&bad)
        );
    }

    #[test]
    fn two_answers_at_one_index_are_caught() {
        let bad = history(vec![ack(3, 1, 2), ack(4, 2, 2)]);
        assert_eq!(
            check(&bad),
            Err(CommittedLost::TwoAtOneIndex {
                index: 2,
                first: 1,
                second: 2
            })
        );
    }

    #[test]
    fn other_records_at_the_index_are_caught() {
        let mut bad = history(vec![applied(2, 1, 1, 2, &[1]), ack(3, 1, 2)]);
        bad.proposals.get_mut(&1).expect("proposal 1").partitions = 7;
        assert!(
            matches!(check(&bad), Err(CommittedLost::Changed { seq: 1, .. })),
            "{:?}",
            check(&bad)
        );
    }
}
