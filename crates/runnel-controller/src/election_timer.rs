//! When a voter campaigns: Raft's election timer, run here in place of openraft's.
//!
//! # Why not openraft's own
//! openraft 0.9 draws a node's election timeout once, when the node starts, and uses it for
//! every election until the next start. With one leader per term (`single-term-leader`, see
//! the crate doc) two voters whose timeouts lie within a message's latency of each other then
//! split the vote in every round, not once: each votes for itself, and the voters that grant
//! one of them restart their timers at the same moment, so the same two time out first again.
//! The simulation found runs of five voters with no leader 30 s after the last fault. Raft's
//! timer draws a new timeout for every wait, which is what this module does. Two smaller
//! departures from openraft's timer: its penalty for a candidate that lost to a longer log
//! (below) lasted until the node's next campaign, however much later (a voter that once lost
//! such an election campaigned a further 2 s late when the next leader died, seen in
//! `scripts/measure-controller-failover.py`); here it ends when a leader is heard.
//!
//! # The rules
//! With `E` = [`crate::QuorumConfig::election_timeout_ms`] (Kafka's
//! `controller.quorum.election.timeout.ms`):
//! - openraft never campaigns on its own (`Config::enable_elect` is off); a voter that is not
//!   leading campaigns through [`openraft::raft::trigger::Trigger::elect`] when it has heard
//!   nothing for its timeout. openraft still checks on the receiving side that a vote is
//!   granted only to a log at least as long, and only once the leader's lease has expired.
//! - The timer restarts when this node's vote changes (it granted a vote, campaigned, or
//!   learned of a leader) and whenever a leader's AppendEntries (heartbeats included) or
//!   InstallSnapshot is accepted ([`ElectionClock::heard`], called by the controller listener).
//! - The timeout, drawn anew each time the timer restarts: a random time between `E/4` and
//!   `E/2`; plus the leader's lease, `E/2`, while this node follows an elected leader (its vote
//!   is committed: the other voters refuse votes until the lease has passed); plus `E` after
//!   this node's last campaign was refused by a voter with a longer log
//!   ([`ElectionClock::saw_longer_log`], noted by the RPC client), so that the up-to-date
//!   voters campaign first (openraft's `smaller_log_timeout`). The penalty is paid once: the
//!   next campaign clears it, as does a leader heard. A voter that follows a leader
//!   therefore campaigns 0.75 to 1 times `E` after the last heartbeat.
//! - The only voter of a quorum of one campaigns at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::types::{NodeId, Raft, Vote};

/// What restarts the timer, shared by the timer's task, the controller listener and the RPC
/// client.
#[derive(Debug)]
pub(crate) struct ElectionClock {
    state: Mutex<ClockState>,
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
struct ClockState {
    /// When the timer last restarted.
    since: Instant,
    /// This node's last campaign was refused by a longer log, and no leader was heard since.
    behind: bool,
}

impl ElectionClock {
    pub(crate) fn new() -> Arc<ElectionClock> {
        Arc::new(ElectionClock {
            state: Mutex::new(ClockState {
                since: Instant::now(),
                behind: false,
            }),
            changed: Notify::new(),
        })
    }

    /// A leader's AppendEntries or InstallSnapshot was accepted: restart the timer.
    pub(crate) fn heard(&self) {
        self.update(|state| {
            state.since = Instant::now();
            state.behind = false;
        });
    }

    /// A voter refused this node's vote request and holds a longer log.
    pub(crate) fn saw_longer_log(&self) {
        self.update(|state| state.behind = true);
    }

    fn restart(&self) {
        self.update(|state| state.since = Instant::now());
    }

    /// This node campaigned: the timer restarts, and the penalty of its previous campaign is
    /// paid (a refusal of this one sets it again).
    fn campaigned(&self) {
        self.update(|state| {
            state.since = Instant::now();
            state.behind = false;
        });
    }

    fn update(&self, change: impl FnOnce(&mut ClockState)) {
        // A poisoned lock only means a panic elsewhere while holding it: the state is two
        // plain fields, still usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut state);
        drop(state);
        self.changed.notify_one();
    }

    fn read(&self) -> ClockState {
        *self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The timer's durations, from `E` (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub timeout_min: Duration,
    pub timeout_max: Duration,
    pub lease: Duration,
    pub behind_penalty: Duration,
}

impl Timing {
    pub(crate) fn from_election_timeout(election_timeout_ms: u64) -> Timing {
        Timing {
            timeout_min: Duration::from_millis(election_timeout_ms / 4),
            timeout_max: Duration::from_millis(election_timeout_ms / 2),
            lease: Duration::from_millis(election_timeout_ms / 2),
            behind_penalty: Duration::from_millis(election_timeout_ms),
        }
    }

    fn draw(&self, rng: &mut SmallRng) -> Duration {
        let (min, max) = (self.timeout_min, self.timeout_max.max(self.timeout_min));
        if min == max {
            return min;
        }
        rng.random_range(min..max)
    }
}

/// What the timer needs to know of the node, from openraft's metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    vote: Vote,
    leading: bool,
    voter: bool,
    only_voter: bool,
}

fn seen(raft: &Raft, node_id: NodeId) -> Seen {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let membership = m.membership_config.membership();
    let voters = membership.voter_ids().count();
    let voter = membership.voter_ids().any(|id| id == node_id);
    Seen {
        vote: m.vote,
        leading: m.state == ServerState::Leader,
        voter,
        only_voter: voter && voters == 1,
    }
}

/// Runs the timer of `node_id` until the node stops (its metrics channel closes). `seed`
/// makes its timeouts repeatable (a simulation's); without one they come from the OS.
pub(crate) async fn run(
    raft: Raft,
    node_id: NodeId,
    clock: Arc<ElectionClock>,
    timing: Timing,
    seed: Option<u64>,
) {
    let mut rng = match seed {
        Some(seed) => SmallRng::seed_from_u64(seed),
        None => SmallRng::from_rng(&mut rand::rng()),
    };
    let mut metrics = raft.metrics();
    let mut last_vote = seen(&raft, node_id).vote;
    // The timeout drawn for the timer's current start (`since`).
    let mut drawn: Option<(Instant, Duration)> = None;
    loop {
        let now_seen = seen(&raft, node_id);
        if now_seen.vote != last_vote {
            last_vote = now_seen.vote;
            clock.restart();
        }
        let state = clock.read();
        let waiting = now_seen.voter && !now_seen.leading;
        let deadline = if !waiting {
            None
        } else if now_seen.only_voter {
            Some(Instant::now())
        } else {
            let timeout = match drawn {
                Some((since, timeout)) if since == state.since => timeout,
                _ => {
                    let timeout = timing.draw(&mut rng);
                    drawn = Some((state.since, timeout));
                    timeout
                }
            };
            let lease = if now_seen.vote.is_committed() {
                timing.lease
            } else {
                Duration::ZERO
            };
            let penalty = if state.behind {
                timing.behind_penalty
            } else {
                Duration::ZERO
            };
            Some(state.since + timeout + lease + penalty)
        };
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        // Biased: the branches in order, not tokio's random order, so that a seeded
        // simulation repeats.
        tokio::select! {
            biased;
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = clock.changed.notified() => {}
            _ = expired => {
                // Nothing restarted the timer meanwhile (that would have woken the select).
                tracing::info!(
                    node_id,
                    vote = %now_seen.vote,
                    behind = state.behind,
                    silent_ms = state.since.elapsed().as_millis() as u64,
                    "election timeout: campaigning"
                );
                if raft.trigger().elect().await.is_err() {
                    return;
                }
                clock.campaigned();
                if now_seen.only_voter {
                    // Give the campaign a moment to change the vote before looking again.
                    let _ = tokio::time::timeout(timing.timeout_max, metrics.changed()).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_default_gives_a_follower_750_ms_to_1_s() {
        let timing = Timing::from_election_timeout(1000);
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..1000 {
            let drawn = timing.draw(&mut rng) + timing.lease;
            assert!(drawn >= Duration::from_millis(750), "{drawn:?}");
            assert!(drawn < Duration::from_millis(1000), "{drawn:?}");
        }
        assert_eq!(timing.behind_penalty, Duration::from_secs(1));
    }

    #[test]
    fn each_draw_is_new() {
        let timing = Timing::from_election_timeout(1000);
        let mut rng = SmallRng::seed_from_u64(7);
        let draws: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| timing.draw(&mut rng)).collect();
        assert!(draws.len() > 10, "{draws:?}");
    }
}
