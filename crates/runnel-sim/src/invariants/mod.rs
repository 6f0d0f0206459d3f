//! The invariants a run must keep, one per file, each a pure check of a [`History`]
//! ([`crate::history`]) with a unit test that feeds it a fabricated bad history:
//! - [`one_leader_per_term`]: at most one node leads in any Raft term (strict), and no node's
//!   vote ever goes back (always).
//! - [`committed_never_lost`]: an acknowledged proposal is applied at its index, with its
//!   records, on every node forever after; every node applies the same entries in the same
//!   order.
//! - [`images_converge`]: once faults stop, every node's applied image and index become the
//!   leader's.

pub mod committed_never_lost;
pub mod images_converge;
pub mod one_leader_per_term;

pub use committed_never_lost::CommittedLost;
pub use images_converge::NotConverged;
pub use one_leader_per_term::TwoLeaders;

#[cfg(test)]
pub(crate) mod fabricate {
    //! Small histories for the checkers' tests.

    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use openraft::{CommittedLeaderId, LogId};
    use runnel_controller::NodeId;
    use uuid::Uuid;

    use crate::history::{AppliedSeen, Event, RoleSeen};

    pub fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Node `node` in `term`, leading it or not; a leader voted for itself.
    pub fn role(at: u64, node: NodeId, term: u64, leading: bool) -> Event {
        Event::Role(RoleSeen {
            at: ms(at),
            node,
            term,
            leading,
            leader: leading.then_some(node),
            vote: (term, Some(node), leading),
        })
    }

    /// Node `node` holding `vote`.
    pub fn voted(at: u64, node: NodeId, vote: (u64, Option<NodeId>, bool)) -> Event {
        Event::Role(RoleSeen {
            at: ms(at),
            node,
            term: vote.0,
            leading: false,
            leader: None,
            vote,
        })
    }

    /// Node `node` applied up to (`term`, `index`), its image holding proposals `seqs`.
    pub fn applied(at: u64, node: NodeId, term: u64, index: u64, seqs: &[u64]) -> Event {
        let proposals: BTreeMap<u64, (Uuid, i32)> = seqs
            .iter()
            .map(|seq| (*seq, (Uuid::from_u64_pair(0, *seq), 1)))
            .collect();
        // The fingerprint of the fabricated image: the proposals in order.
        let fingerprint = seqs.iter().fold(index, |acc, seq| acc * 31 + seq);
        Event::Applied(AppliedSeen {
            at: ms(at),
            node,
            log_id: Some(LogId::new(CommittedLeaderId::new(term, 1), index)),
            fingerprint,
            proposals: Arc::new(proposals),
        })
    }
}
