//! One node of the metadata quorum on one turmoil host, a voter (a controller) or a learner
//! (a broker-only node, `QuorumConfig::learner`): start a `MetadataQuorum` on its data dir and
//! the simulated network, make it reachable to the driver, and record what its metrics and image
//! show ([`crate::history`]) until the host is crashed.
//!
//! The host's software is run again from the start at every restart (turmoil's bounce), on
//! the same data dir: what the node wrote before the crash is what it reopens. The data dir
//! is a real directory (under `/dev/shm` where it exists), so a crash loses no written byte:
//! the simulation does not model lost unsynced writes.
//!
//! Voters at start: a node is configured with the voters its log's membership holds, as an
//! operator would after a change of voters (start refuses others). The host uses the
//! membership it last saw in its own metrics, and if its log holds another (a membership
//! entry appended just before a crash, unseen), the one the refusal names. A node whose log
//! says it is no voter (it heard of its removal, not yet of its re-addition) starts with every
//! node as voters, as a learner. Should a start ever be refused as not a voter, the node stays
//! down, and the run reports that it did not converge.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use openraft::ServerState;
use runnel_controller::{MetadataQuorum, NodeId, QuorumConfig, StartError, Voter};
use turmoil::net::TcpListener;

use crate::history::{self, Event, History, RoleSeen};
use crate::transport::SimTransport;

/// The controller listener's port on every host.
pub const CONTROLLER_PORT: u16 = 9093;

/// How long a host waits before binding again after a refused start (the refused node's
/// listener and Raft tasks go away when the runtime next runs them).
const RESTART_PAUSE: Duration = Duration::from_millis(200);

/// turmoil's name of node `id`'s host.
pub fn host_name(id: NodeId) -> String {
    format!("n{id}")
}

/// The voter entry of node `id`: its host name and the controller port.
pub fn voter(id: NodeId) -> Voter {
    Voter {
        id,
        address: format!("{}:{CONTROLLER_PORT}", host_name(id)),
    }
}

/// Timeouts and log sizes every node runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub snapshot_interval_entries: u64,
    pub log_entries_kept_after_snapshot: u64,
    pub log_segment_bytes: u64,
}

impl Tuning {
    fn config(
        &self,
        id: NodeId,
        voters: Vec<Voter>,
        dir: PathBuf,
        addr: SocketAddr,
    ) -> QuorumConfig {
        let mut config = QuorumConfig::new(id, voters, dir, addr);
        config.election_timeout_ms = self.election_timeout_ms;
        config.heartbeat_interval_ms = self.heartbeat_interval_ms;
        config.snapshot_interval_entries = self.snapshot_interval_entries;
        config.log_entries_kept_after_snapshot = self.log_entries_kept_after_snapshot;
        config.log_segment_bytes = self.log_segment_bytes;
        config
    }
}

/// What the hosts, the driver and the scenario share (all on turmoil's one thread).
#[derive(Default)]
pub struct Shared {
    pub history: History,
    /// Nodes whose quorum has started and whose host has not been crashed since.
    pub running: BTreeMap<NodeId, Rc<MetadataQuorum>>,
    /// The voters each node's metrics last showed (the union, in a joint membership).
    pub membership_seen: BTreeMap<NodeId, BTreeSet<NodeId>>,
    /// Nodes whose start was refused because their log says they are not voters.
    pub refused: BTreeSet<NodeId>,
    /// The run's change of voters, if it has one ([`crate::driver`] carries it out).
    pub membership: Option<crate::driver::Membership>,
    /// Set at the heal: the driver makes no more proposals.
    pub stop_proposing: bool,
}

pub type SharedRef = Rc<RefCell<Shared>>;

/// Simulated time since the run started, as the current host's clock says.
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// The software of node `id`'s host: start, then observe until crashed.
pub async fn run_node(
    id: NodeId,
    all: Vec<NodeId>,
    learner: bool,
    tuning: Tuning,
    dir: PathBuf,
    shared: SharedRef,
    seed: u64,
) -> turmoil::Result {
    // The voters last seen, if this voter is among them (a learner never is); else every
    // voter (a voter its log does not list starts with voters that include it).
    let seen = shared.borrow().membership_seen.get(&id).cloned();
    let mut voters: Vec<NodeId> = match seen {
        Some(seen) if seen.contains(&id) || (learner && !seen.is_empty()) => {
            seen.into_iter().collect()
        }
        _ => all,
    };
    let mut attempts = 0;
    let quorum = loop {
        attempts += 1;
        let listener = bind().await?;
        let addr = SocketAddr::new(turmoil::lookup(host_name(id)), CONTROLLER_PORT);
        let mut config = tuning.config(
            id,
            voters.iter().map(|v| voter(*v)).collect(),
            dir.clone(),
            addr,
        );
        config.learner = learner;
        // Repeatable, and different for each node and each start.
        config.election_seed =
            Some(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ now().as_millis() as u64);
        match MetadataQuorum::start_on(config, SimTransport, listener, addr).await {
            Ok(quorum) => break quorum,
            Err(StartError::VotersDiffer { recorded, .. }) if attempts == 1 => {
                tracing::info!(id, ?recorded, "starting with the voters the log holds");
                voters = recorded;
                tokio::time::sleep(RESTART_PAUSE).await;
            }
            Err(StartError::NotAVoter { .. }) => {
                // Refused as no voter: it stays down (see the module doc).
                let mut shared = shared.borrow_mut();
                shared.refused.insert(id);
                shared.history.record(Event::Note {
                    at: now(),
                    what: format!("node {id} refused to start: its log says it is not a voter"),
                });
                return Ok(());
            }
            Err(error) => return Err(format!("node {id} failed to start: {error}").into()),
        }
    };
    let quorum = Rc::new(quorum);
    {
        let mut shared = shared.borrow_mut();
        shared.refused.remove(&id);
        shared.running.insert(id, Rc::clone(&quorum));
    }
    observe(id, &quorum, &shared).await;
    // The watches closed: the Raft node stopped with no crash of its host.
    shared.borrow_mut().running.remove(&id);
    Err(format!("node {id}: the metadata quorum stopped by itself").into())
}

async fn bind() -> std::io::Result<TcpListener> {
    loop {
        match TcpListener::bind(("0.0.0.0", CONTROLLER_PORT)).await {
            Ok(listener) => return Ok(listener),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                tokio::time::sleep(RESTART_PAUSE).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A node's role as recorded: term, leading, leader, vote.
type Role = (u64, bool, Option<NodeId>, (u64, Option<NodeId>, bool));

/// Records every change of the node's role and applied image until its watches close.
async fn observe(id: NodeId, quorum: &MetadataQuorum, shared: &SharedRef) {
    let mut metrics = quorum.metrics();
    let mut image = quorum.image();
    let mut last_role: Option<Role> = None;
    let mut last_applied = None;
    let mut first = true;
    loop {
        {
            let m = metrics.borrow_and_update();
            let vote = (
                m.vote.leader_id().get_term(),
                m.vote.leader_id().voted_for(),
                m.vote.is_committed(),
            );
            let leading = m.state == ServerState::Leader;
            let role: Role = (m.current_term, leading, m.current_leader, vote);
            let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
            let mut shared = shared.borrow_mut();
            if !voters.is_empty() {
                shared.membership_seen.insert(id, voters);
            }
            if last_role != Some(role) {
                last_role = Some(role);
                shared.history.record(Event::Role(RoleSeen {
                    at: now(),
                    node: id,
                    term: role.0,
                    leading: role.1,
                    leader: role.2,
                    vote: role.3,
                }));
            }
        }
        {
            let applied = image.borrow_and_update();
            if first || last_applied != applied.last_applied {
                first = false;
                last_applied = applied.last_applied;
                let seen = history::seen(now(), id, applied.last_applied, &applied.image);
                shared.borrow_mut().history.record(Event::Applied(seen));
            }
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            changed = image.changed() => if changed.is_err() { return },
        }
    }
}
