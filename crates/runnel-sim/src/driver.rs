//! The driver: a turmoil client that proposes to whichever node leads, as the broker's
//! controller does, and carries out the run's planned change of voters.
//!
//! Proposals ([`crate::history::Proposal`]) go out at a seeded pace, each in its own task so
//! that several are in flight at once; each is answered within a timeout or counted as
//! unanswered (it may still commit: only `Ok(index)` answers are checked). The change of
//! voters ([`Membership`]) removes the lagging node while it is down and adds it back later,
//! through `MetadataQuorum::change_voters` on the leader, each step asked until it is
//! answered (not judged from a leader's metrics: a node restarted with its old committed vote
//! shows itself as leader, with an old membership, until it hears of the real leader).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use openraft::ServerState;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use runnel_controller::{MetadataQuorum, NodeId};
use uuid::Uuid;

use crate::history::{Event, Proposal};
use crate::host::{now, voter, SharedRef};

/// How the driver proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Mean pause between proposals (each pause is 0.5 to 1.5 times it).
    pub interval: Duration,
    /// How long a proposal, or one try at a change of voters, may wait for its answer.
    pub answer_timeout: Duration,
}

/// Where the planned change of voters is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipStep {
    /// Not yet made: the lagging node is removed at `remove_at`.
    Planned,
    /// The removal was asked and is asked again until it is answered.
    Removing,
    /// The voters are all but the lagging node; it is added back at `readd_at` (asked again
    /// until answered).
    Removed,
    /// Every node is a voter again.
    Readded,
    /// The lagging node was up when it was to be removed: no change was made.
    Skipped,
}

/// The run's change of voters: remove the lagging node while it is down, add it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub lagging: NodeId,
    pub remove_at: Duration,
    pub readd_at: Duration,
    pub step: MembershipStep,
}

impl Membership {
    /// Whether nothing is left to do.
    pub fn done(&self) -> bool {
        matches!(self.step, MembershipStep::Readded | MembershipStep::Skipped)
    }
}

/// The node in the Leader state with the highest term, among those running.
pub fn leader_of(shared: &SharedRef) -> Option<Rc<MetadataQuorum>> {
    let shared = shared.borrow();
    shared
        .running
        .values()
        .filter_map(|quorum| {
            let metrics = quorum.metrics();
            let metrics = metrics.borrow();
            (metrics.state == ServerState::Leader).then_some((metrics.current_term, quorum))
        })
        .max_by_key(|(term, _)| *term)
        .map(|(_, quorum)| Rc::clone(quorum))
}

/// The driver client's software: runs until the simulation is dropped.
pub async fn drive(seed: u64, all: Vec<NodeId>, pace: Pace, shared: SharedRef) -> turmoil::Result {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6472_6976_6572);
    let changing = Rc::new(Cell::new(false));
    let mut seq = 0u64;
    loop {
        tokio::time::sleep(pace.interval.mul_f64(rng.random_range(0.5..1.5))).await;
        let Some(leader) = leader_of(&shared) else {
            continue;
        };
        if !changing.get() {
            change_voters(&all, pace, &shared, &leader, &changing);
        }
        if shared.borrow().stop_proposing {
            continue;
        }
        seq += 1;
        let proposal = Proposal {
            seq,
            topic_id: Uuid::from_u64_pair(seed, seq),
            partitions: rng.random_range(1..=4),
        };
        shared.borrow_mut().history.proposals.insert(seq, proposal);
        let shared = Rc::clone(&shared);
        tokio::task::spawn_local(async move {
            let answer =
                tokio::time::timeout(pace.answer_timeout, leader.propose(proposal.records()));
            if let Ok(Ok(index)) = answer.await {
                let at = now();
                shared
                    .borrow_mut()
                    .history
                    .record(Event::Acked { at, seq, index });
            }
        });
    }
}

/// Starts the next step of the planned change of voters on `leader`, if one is due.
///
/// Each step is asked again until it is answered `Ok`: a change whose answer was lost may
/// still have been committed, and asking for the voters the quorum already has is answered
/// at once.
fn change_voters(
    all: &[NodeId],
    pace: Pace,
    shared: &SharedRef,
    leader: &Rc<MetadataQuorum>,
    changing: &Rc<Cell<bool>>,
) {
    let at = now();
    let (voters, next) = {
        let mut shared = shared.borrow_mut();
        let lagging_up = shared
            .membership
            .is_some_and(|m| shared.running.contains_key(&m.lagging));
        let Some(membership) = shared.membership.as_mut() else {
            return;
        };
        let lagging = membership.lagging;
        match membership.step {
            MembershipStep::Planned if at >= membership.remove_at && lagging_up => {
                membership.step = MembershipStep::Skipped;
                return;
            }
            MembershipStep::Planned if at >= membership.remove_at => {
                membership.step = MembershipStep::Removing;
                let voters = all.iter().copied().filter(|id| *id != lagging).collect();
                (voters, MembershipStep::Removed)
            }
            MembershipStep::Removing => {
                let voters = all.iter().copied().filter(|id| *id != lagging).collect();
                (voters, MembershipStep::Removed)
            }
            MembershipStep::Removed if at >= membership.readd_at => {
                (all.to_vec(), MembershipStep::Readded)
            }
            _ => return,
        }
    };
    changing.set(true);
    let shared = Rc::clone(shared);
    let leader = Rc::clone(leader);
    let changing = Rc::clone(changing);
    tokio::task::spawn_local(async move {
        let entries: Vec<_> = voters.iter().map(|id| voter(*id)).collect();
        let answer = tokio::time::timeout(pace.answer_timeout, leader.change_voters(&entries));
        let outcome = answer.await;
        let mut shared = shared.borrow_mut();
        match outcome {
            Ok(Ok(index)) => {
                if let Some(membership) = shared.membership.as_mut() {
                    membership.step = next;
                }
                let what = format!("voters changed to {voters:?} (membership at index {index})");
                shared.history.record(Event::Note { at: now(), what });
            }
            Ok(Err(error)) => tracing::debug!(%error, "change of voters refused; retrying"),
            Err(_) => tracing::debug!("change of voters unanswered; retrying"),
        }
        changing.set(false);
    });
}
