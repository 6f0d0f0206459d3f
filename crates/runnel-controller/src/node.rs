//! [`MetadataQuorum`]: one controller of the metadata quorum, as the broker will drive it.
//!
//! Start: the Raft log and the newest snapshot are opened from the data dir, the controller
//! listener serves peers' Raft RPCs, and a node whose log is empty initializes the quorum with
//! the configured voters. Every voter does that with the same voters (openraft: initializing
//! several nodes with one membership is safe), so fresh data dirs form a cluster with no
//! format step and no chosen first node. Then openraft elects a leader.
//!
//! Proposals go to the leader only: elsewhere they are refused with [`ProposeError::NotLeader`]
//! naming the leader if one is known, so the caller can forward. A proposal is answered with
//! its Raft log index once it is committed (on a majority of voters' disks) and applied here.
//! A follower carries a change to the leader with [`MetadataQuorum::forward`]
//! ([`crate::forward`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::metrics::RaftMetrics;
use openraft::{BasicNode, Config, SnapshotPolicy};
use runnel_log::LogConfig;
use runnel_metadata::MetadataRecord;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::election_timer::{self, ElectionClock, Timing};
use crate::forward::{self, Attempt, ForwardError, ForwardHandler, HandlerSlot};
use crate::log_store::{LogStore, LogStoreError, METADATA_LOG_DIR};
pub use crate::state_machine::AppliedMetadata;
use crate::state_machine::{StateMachineError, StateMachineStore};
use crate::transport::{Tcp, Transport};
use crate::types::{MetadataRecords, NodeId, Raft};

/// How long a forward waits before trying an unreachable or refusing leader again.
const FORWARD_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The largest proposal (its records' encoded bytes together).
pub const PROPOSAL_BYTES_MAX: usize = 1024 * 1024;
/// Entries sent in one AppendEntries (openraft's `max_payload_entries`): with
/// [`PROPOSAL_BYTES_MAX`] each, a request stays below [`crate::frame::FRAME_BYTES_MAX`].
pub const ENTRIES_PER_APPEND_MAX: u64 = 16;
/// Bytes of snapshot per InstallSnapshot chunk (JSON-encoded on the wire: about 4× as many).
const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;

/// One voter of `controller.quorum.voters`: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: NodeId,
    /// `host:port` of its controller listener.
    pub address: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("controller.quorum.voters entry {entry:?} is not id@host:port: {reason}")]
pub struct VoterParseError {
    pub entry: String,
    pub reason: &'static str,
}

impl FromStr for Voter {
    type Err = VoterParseError;

    fn from_str(entry: &str) -> Result<Voter, VoterParseError> {
        let error = |reason| VoterParseError {
            entry: entry.to_string(),
            reason,
        };
        let (id, address) = entry.trim().split_once('@').ok_or(error("no '@'"))?;
        let id: NodeId = id.parse().map_err(|_| error("the id is not an integer"))?;
        if id < 0 {
            return Err(error("the id is negative"));
        }
        let (host, port) = address.rsplit_once(':').ok_or(error("no ':port'"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(error("the host is empty or the port is not a port number"));
        }
        Ok(Voter {
            id,
            address: address.to_string(),
        })
    }
}

impl Voter {
    /// Parses Kafka's `controller.quorum.voters`: `1@host:port,2@host:port,…`.
    pub fn parse_list(voters: &str) -> Result<Vec<Voter>, VoterParseError> {
        voters.split(',').map(str::parse).collect()
    }
}

/// How to run one controller. Kafka's names where Kafka has the setting.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// `node.id`.
    pub node_id: NodeId,
    /// `controller.quorum.voters`.
    pub voters: Vec<Voter>,
    /// `log.dirs` (the first): the Raft log is in `__cluster_metadata-0/` under it.
    pub data_dir: PathBuf,
    /// The controller listener's address (`listeners`, its CONTROLLER entry).
    pub listen_addr: SocketAddr,
    /// `controller.quorum.election.timeout.ms`. Kafka's default 1000, and Kafka's meaning: how
    /// long a voter goes without hearing from the leader before it campaigns. openraft's timers
    /// are derived from it: the leader's lease (openraft's maximum election timeout) is half of
    /// this and the election timeout is drawn once per start between a quarter and half of
    /// this, so a follower campaigns 0.75 to 1 times this after the last heartbeat (750 ms to
    /// 1 s with the default). A candidate that lost to a longer log waits a further openraft
    /// `smaller_log_timeout` (twice the lease, this) before it campaigns again, which lets the
    /// up-to-date node win. Kill -9 of the active controller on three loopback nodes: topic
    /// creation works again through a survivor 0.9 to 1 s after the kill in most rounds, under
    /// 3 s in the worst of 20 (`scripts/measure-controller-failover.py`).
    pub election_timeout_ms: u64,
    /// How often the leader sends heartbeats (well below the election timeout).
    pub heartbeat_interval_ms: u64,
    /// A snapshot is taken after this many entries since the last one.
    pub snapshot_interval_entries: u64,
    /// Entries kept in the log below the newest snapshot (openraft's
    /// `max_in_snapshot_log_to_keep`): a follower that far behind catches up from the log,
    /// one further behind by snapshot.
    pub log_entries_kept_after_snapshot: u64,
    /// `metadata.log.segment.bytes`. Kafka's default 1 GiB.
    pub log_segment_bytes: u64,
    /// Seeds the election timer's random timeouts, so that a simulation repeats; `None` (the
    /// product): from the OS's randomness.
    pub election_seed: Option<u64>,
    /// A broker-only node (`process.roles=broker`): a learner that is not among `voters`,
    /// joins through them at start and never votes ([`crate::learner`]).
    pub learner: bool,
}

impl QuorumConfig {
    /// Kafka's defaults for everything but identity, voters, data dir and listener.
    pub fn new(
        node_id: NodeId,
        voters: Vec<Voter>,
        data_dir: PathBuf,
        listen_addr: SocketAddr,
    ) -> QuorumConfig {
        QuorumConfig {
            node_id,
            voters,
            data_dir,
            listen_addr,
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            snapshot_interval_entries: 10_000,
            log_entries_kept_after_snapshot: 1000,
            log_segment_bytes: 1024 * 1024 * 1024,
            learner: false,
            election_seed: None,
        }
    }

    fn raft_config(&self) -> Result<Config, StartError> {
        let config = Config {
            cluster_name: "runnel".to_string(),
            // openraft's timer only sets the leader's lease here (its maximum election
            // timeout); elections are `election_timer`'s.
            election_timeout_min: self.election_timeout_ms / 4,
            election_timeout_max: self.election_timeout_ms / 2,
            enable_elect: false,
            heartbeat_interval: self.heartbeat_interval_ms,
            max_payload_entries: ENTRIES_PER_APPEND_MAX,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_interval_entries),
            max_in_snapshot_log_to_keep: self.log_entries_kept_after_snapshot,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|error| StartError::Config(error.to_string()))
    }
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error("node.id {node_id} is not one of controller.quorum.voters ({voters})")]
    NotAVoter { node_id: NodeId, voters: String },
    #[error("controller.quorum.voters names node {0} twice")]
    DuplicateVoter(NodeId),
    #[error(
        "controller.quorum.voters names the voters {configured:?}, but this node's metadata log \
         formed a quorum of {recorded:?}: changing a quorum's voters is not supported; start \
         it with the voters it was formed with"
    )]
    VotersDiffer {
        configured: Vec<NodeId>,
        recorded: Vec<NodeId>,
    },
    #[error("quorum configuration: {0}")]
    Config(String),
    #[error("bind the controller listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] LogStoreError),
    #[error(transparent)]
    StateMachine(#[from] StateMachineError),
    #[error("raft: {0}")]
    Raft(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProposeError {
    #[error("node {node_id} is not the active controller; the leader is {}", leader.map_or("unknown".to_string(), |id| id.to_string()))]
    NotLeader {
        node_id: NodeId,
        leader: Option<NodeId>,
    },
    #[error("a proposal of {bytes} bytes is above {PROPOSAL_BYTES_MAX}")]
    TooLarge { bytes: usize },
    #[error("the metadata quorum on this node has stopped: {0}")]
    Stopped(String),
}

/// Why a change of voters ([`MetadataQuorum::change_voters`]) was not made.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChangeVotersError {
    #[error("node {node_id} is not the active controller; the leader is {}", leader.map_or("unknown".to_string(), |id| id.to_string()))]
    NotLeader {
        node_id: NodeId,
        leader: Option<NodeId>,
    },
    #[error("the new voters name node {0} twice")]
    DuplicateVoter(NodeId),
    #[error("a quorum needs at least one voter")]
    NoVoters,
    /// openraft refused the change (another change is still being committed, for one).
    #[error("the change of voters was refused: {0}")]
    Refused(String),
    #[error("the metadata quorum on this node has stopped: {0}")]
    Stopped(String),
}

/// Sends one forwarded change to a leader at an address, on the node's transport.
type ForwardSender = Arc<
    dyn Fn(
            NodeId,
            String,
            Vec<u8>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Attempt> + Send>>
        + Send
        + Sync,
>;

/// One running controller.
pub struct MetadataQuorum {
    node_id: NodeId,
    raft: Raft,
    handler: HandlerSlot,
    sender: ForwardSender,
    applied: watch::Receiver<AppliedMetadata>,
    local_addr: SocketAddr,
    /// Each voter's configured address (see [`crate::network::NetworkFactory`]).
    addresses: Arc<BTreeMap<NodeId, String>>,
    /// Followers' fetch and caught-up times, for DescribeQuorum ([`crate::describe`]).
    replica_times: crate::describe::ReplicaTimes,
    /// The controller listener's task; `None` once shut down.
    server: Option<JoinHandle<()>>,
    /// This node's election timer (`election_timer`); `None` once shut down.
    timer: Option<JoinHandle<()>>,
}

impl MetadataQuorum {
    /// Binds `config.listen_addr` and starts the node (see the module doc).
    pub async fn start(config: QuorumConfig) -> Result<MetadataQuorum, StartError> {
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen_addr,
                source,
            })?;
        MetadataQuorum::start_with_listener(config, listener).await
    }

    /// Starts the node on a listener already bound (its address is what peers were told);
    /// `config.listen_addr` is not used.
    pub async fn start_with_listener(
        config: QuorumConfig,
        listener: TcpListener,
    ) -> Result<MetadataQuorum, StartError> {
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen_addr,
            source,
        })?;
        MetadataQuorum::start_on(config, Tcp, listener, local_addr).await
    }

    /// Starts the node on `transport`, serving peers on `listener`, which peers reach at
    /// `local_addr` (a simulated network's, in a simulation).
    pub async fn start_on<T: Transport>(
        config: QuorumConfig,
        transport: T,
        listener: T::Listener,
        local_addr: SocketAddr,
    ) -> Result<MetadataQuorum, StartError> {
        let members = members(&config)?;
        let addresses: Arc<BTreeMap<NodeId, String>> = Arc::new(
            members
                .iter()
                .map(|(id, node)| (*id, node.addr.clone()))
                .collect(),
        );
        let raft_config = Arc::new(config.raft_config()?);
        let clock = ElectionClock::new();
        let log_config = LogConfig {
            segment_bytes: config.log_segment_bytes,
            ..LogConfig::default()
        };
        let log_store = LogStore::open(&config.data_dir, log_config)?;
        let state_machine = StateMachineStore::open(&config.data_dir.join(METADATA_LOG_DIR))?;
        let applied = state_machine.subscribe();
        let raft = Raft::new(
            config.node_id,
            raft_config,
            crate::network::NetworkFactory {
                transport: transport.clone(),
                addresses: Arc::clone(&addresses),
                clock: Arc::clone(&clock),
            },
            log_store,
            state_machine,
        )
        .await
        .map_err(|error| StartError::Raft(error.to_string()))?;
        let handler = HandlerSlot::default();
        let server = tokio::spawn(crate::rpc_server::serve::<T>(
            listener,
            raft.clone(),
            Arc::clone(&handler),
            Arc::clone(&clock),
        ));
        let timer = tokio::spawn(election_timer::run(
            raft.clone(),
            config.node_id,
            clock,
            Timing::from_election_timeout(config.election_timeout_ms),
            config.election_seed,
        ));
        let joining = transport.clone();
        let sender: ForwardSender = Arc::new(move |leader, addr, body| {
            let transport = transport.clone();
            Box::pin(async move { forward::send_once(&transport, leader, &addr, &body).await })
        });
        let quorum = MetadataQuorum {
            node_id: config.node_id,
            raft,
            handler,
            sender,
            applied,
            local_addr,
            addresses,
            replica_times: Default::default(),
            server: Some(server),
            timer: Some(timer),
        };
        let initialized = quorum
            .raft
            .is_initialized()
            .await
            .map_err(|error| StartError::Raft(error.to_string()))?;
        if initialized {
            check_membership(&quorum.raft, config.node_id, &members).await?;
        } else if !config.learner {
            match quorum.raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(error) => return Err(StartError::Raft(error.to_string())),
            }
        }
        if config.learner {
            // Asked again at every start: the address may have changed.
            let voters: Vec<(NodeId, String)> = config
                .voters
                .iter()
                .map(|voter| (voter.id, voter.address.clone()))
                .collect();
            let request = crate::learner::JoinRequest {
                node_id: config.node_id,
                address: local_addr.to_string(),
            };
            crate::learner::join(&joining, &voters, &request).await;
        }
        tracing::info!(
            node_id = config.node_id,
            %local_addr,
            learner = config.learner,
            "metadata quorum node started"
        );
        tokio::spawn(watch_metrics(
            quorum.raft.metrics(),
            config.node_id,
            quorum.replica_times.clone(),
        ));
        Ok(quorum)
    }

    /// Appends `records` as one entry and answers its Raft log index once it is committed and
    /// applied on this node; only the leader accepts proposals.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the proposal: it may still commit.
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, ProposeError> {
        let bytes: usize = records.iter().map(|record| record.encode().len()).sum();
        if bytes > PROPOSAL_BYTES_MAX {
            return Err(ProposeError::TooLarge { bytes });
        }
        match self.raft.client_write(MetadataRecords(records)).await {
            Ok(response) => Ok(response.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(ProposeError::NotLeader {
                    node_id: self.node_id,
                    leader: forward.leader_id,
                })
            }
            Err(error) => Err(ProposeError::Stopped(error.to_string())),
        }
    }

    /// Makes `voters` the quorum's voters, on the leader only, and answers the log index of
    /// the membership that names exactly them once it is committed.
    ///
    /// Voters not in the membership now are first added as learners (without waiting for them
    /// to catch up: a far-behind one is sent a snapshot), then openraft's joint consensus moves
    /// to `voters`; voters left out are removed, not kept as learners. One change at a time: a
    /// change asked while another is being committed is [`ChangeVotersError::Refused`].
    ///
    /// What the caller must know:
    /// - A node (re)started afterwards is configured with the voters its own log holds, or its
    ///   start is refused ([`StartError::VotersDiffer`] names them); a node its log does not
    ///   list as a voter (removed, perhaps added back since) starts with the voters that
    ///   include it, as a learner until its log names it a voter again.
    /// - A node is reached at the address given here only if its own configuration does not
    ///   name it (`controller.quorum.voters` wins, see `network.rs`).
    /// - Only a node that already has this quorum's metadata log may be added: a node started
    ///   with an empty data dir initializes a quorum of its own at start.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the change: it may still commit.
    pub async fn change_voters(&self, voters: &[Voter]) -> Result<u64, ChangeVotersError> {
        let mut wanted = BTreeMap::new();
        for voter in voters {
            let node = BasicNode {
                addr: voter.address.clone(),
            };
            if wanted.insert(voter.id, node).is_some() {
                return Err(ChangeVotersError::DuplicateVoter(voter.id));
            }
        }
        if wanted.is_empty() {
            return Err(ChangeVotersError::NoVoters);
        }
        // openraft may answer a follower's change with "a change is in progress" (its view of
        // the membership lags) before it looks at who leads: refuse as a proposal would.
        if !self.is_leader() {
            return Err(ChangeVotersError::NotLeader {
                node_id: self.node_id,
                leader: self.leader(),
            });
        }
        let known: Vec<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        for (id, node) in &wanted {
            if !known.contains(id) {
                self.raft
                    .add_learner(*id, node.clone(), false)
                    .await
                    .map_err(|error| self.change_voters_error(error))?;
            }
        }
        let ids: std::collections::BTreeSet<NodeId> = wanted.keys().copied().collect();
        let response = self
            .raft
            .change_membership(ids, false)
            .await
            .map_err(|error| self.change_voters_error(error))?;
        Ok(response.log_id.index)
    }

    fn change_voters_error(
        &self,
        error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    ) -> ChangeVotersError {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                ChangeVotersError::NotLeader {
                    node_id: self.node_id,
                    leader: forward.leader_id,
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
                ChangeVotersError::Refused(error.to_string())
            }
            error => ChangeVotersError::Stopped(error.to_string()),
        }
    }

    /// Waits until this node leads and its image holds everything committed (openraft's
    /// linearizable read point), at most `deadline`; a quorum of one leads at once.
    pub async fn wait_until_leading(&self, deadline: Duration) -> Result<(), ProposeError> {
        let node_id = self.node_id;
        let leading = async {
            let mut metrics = self.raft.metrics();
            metrics
                .wait_for(|m| m.current_leader == Some(node_id))
                .await
                .map_err(|error| ProposeError::Stopped(error.to_string()))?;
            match self.raft.ensure_linearizable().await {
                Ok(_) => Ok(()),
                // Deposed meanwhile (a higher vote), or no quorum answered: not leading.
                Err(RaftError::APIError(
                    CheckIsLeaderError::ForwardToLeader(_) | CheckIsLeaderError::QuorumNotEnough(_),
                )) => Err(ProposeError::NotLeader {
                    node_id,
                    leader: self.leader().filter(|&leader| leader != node_id),
                }),
                Err(error) => Err(ProposeError::Stopped(error.to_string())),
            }
        };
        match tokio::time::timeout(deadline, leading).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ProposeError::NotLeader {
                node_id,
                leader: self.leader(),
            }),
        }
    }

    /// Installs what runs changes forwarded to this node while it leads (once; later calls
    /// are ignored). Until then forwarded changes are answered "not the leader".
    pub fn set_forward_handler(&self, handler: ForwardHandler) {
        let _ = self.handler.set(handler);
    }

    /// Carries `body` to the leader's forward handler and returns its answer, waiting up to
    /// `deadline` for a leader to be known and reachable; [`ForwardError::Leading`] as soon as
    /// this node leads (the caller runs the change itself). See [`crate::forward`] for when a
    /// change is sent again.
    pub async fn forward(
        &self,
        body: Vec<u8>,
        deadline: Duration,
    ) -> Result<Vec<u8>, ForwardError> {
        let until = tokio::time::Instant::now() + deadline;
        let mut metrics = self.raft.metrics();
        loop {
            let (leader, addr) = {
                let m = metrics.borrow_and_update();
                let leader = m.current_leader;
                // The configured voters are the membership's (`check_membership`).
                let addr = leader.and_then(|id| self.addresses.get(&id).cloned());
                (leader, addr)
            };
            match (leader, addr) {
                (Some(leader), _) if leader == self.node_id => {
                    return Err(ForwardError::Leading(leader))
                }
                (Some(leader), Some(addr)) => {
                    match (self.sender)(leader, addr, body.clone()).await {
                        Attempt::Answer(answer) => return Ok(answer),
                        Attempt::Failed(error) => return Err(error),
                        Attempt::Retry => {}
                    }
                }
                _ => {}
            }
            // Wait for news of the leader, or retry an unreachable one after a pause.
            let Some(left) = forward::remaining(until) else {
                return Err(ForwardError::NoLeader(deadline));
            };
            let pause = left.min(FORWARD_RETRY_PAUSE);
            let _ = tokio::time::timeout(pause, metrics.changed()).await;
        }
    }

    /// The quorum as this node sees it while it leads (DescribeQuorum); `None` elsewhere.
    pub fn describe(&self) -> Option<crate::describe::QuorumDescription> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        self.replica_times.describe(&metrics, &self.addresses)
    }

    /// Whether this node leads the quorum now.
    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.node_id)
    }

    /// The latest applied image, and every later one.
    pub fn image(&self) -> watch::Receiver<AppliedMetadata> {
        self.applied.clone()
    }

    /// The current leader as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The current Raft term as this node knows it.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// openraft's metrics (state, leader, term, log indexes, replication), for waiting on a
    /// change and for DescribeQuorum later.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The controller listener's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving peers and stops the Raft node; the log and snapshots stay as they are on
    /// disk for the next start.
    pub async fn shutdown(mut self) -> Result<(), ProposeError> {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
        if let Some(timer) = self.timer.take() {
            timer.abort();
            let _ = timer.await;
        }
        self.raft
            .shutdown()
            .await
            .map_err(|error| ProposeError::Stopped(error.to_string()))
    }
}

impl Drop for MetadataQuorum {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
        // The timer holds a handle of the Raft node, which would keep it running.
        if let Some(timer) = &self.timer {
            timer.abort();
        }
    }
}

/// Refuses a start whose configured voters are not the ones the log's membership holds (a
/// log formed as a quorum of one, started as one voter of three, would otherwise elect
/// itself alone).
///
/// A configured voter its own log does not list as a voter (it was removed,
/// [`MetadataQuorum::change_voters`], and may have been added back since) starts whatever
/// the other configured voters: openraft runs it as a learner, which neither campaigns nor
/// counts towards a quorum, until its log, sent by the leader, names it a voter again.
/// Refusing it would leave a voter that heard of its removal but not of its re-addition (a
/// crash between the two) unable ever to catch up.
async fn check_membership(
    raft: &Raft,
    node_id: NodeId,
    members: &BTreeMap<NodeId, BasicNode>,
) -> Result<(), StartError> {
    let configured: Vec<NodeId> = members.keys().copied().collect();
    let mut recorded: Vec<NodeId> = raft
        .with_raft_state(|state| {
            state
                .membership_state
                .effective()
                .membership()
                .voter_ids()
                .collect::<Vec<NodeId>>()
        })
        .await
        .map_err(|error| StartError::Raft(error.to_string()))?;
    recorded.sort_unstable();
    // No membership yet: a fresh node that voted before it initialized; the leader sends it
    // the membership every voter initialized with. `removed`: a configured voter its log does
    // not list (a broker-only node is never a configured voter: its check is unchanged).
    let removed = members.contains_key(&node_id) && !recorded.contains(&node_id);
    if recorded.is_empty() || configured == recorded || removed {
        Ok(())
    } else {
        Err(StartError::VotersDiffer {
            configured,
            recorded,
        })
    }
}

/// Logs each change of the quorum's leader as this node sees it (one line per change), and
/// keeps the followers' times DescribeQuorum reports, until the node stops.
async fn watch_metrics(
    mut metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    node_id: NodeId,
    replica_times: crate::describe::ReplicaTimes,
) {
    let mut known: Option<(Option<NodeId>, u64)> = None;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            replica_times.observe(&m);
            (m.current_leader, m.current_term)
        };
        if known.map(|(leader, _)| leader) != Some(now.0) {
            match now.0 {
                Some(leader) if leader == node_id => tracing::info!(
                    term = now.1,
                    "this node is the active controller (the metadata quorum's leader)"
                ),
                Some(leader) => tracing::info!(
                    leader,
                    term = now.1,
                    "the metadata quorum's leader is node {leader}"
                ),
                None => tracing::info!(term = now.1, "the metadata quorum has no leader"),
            }
            known = Some(now);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

fn members(config: &QuorumConfig) -> Result<BTreeMap<NodeId, BasicNode>, StartError> {
    let mut members = BTreeMap::new();
    for voter in &config.voters {
        let node = BasicNode {
            addr: voter.address.clone(),
        };
        if members.insert(voter.id, node).is_some() {
            return Err(StartError::DuplicateVoter(voter.id));
        }
    }
    if config.learner {
        if members.contains_key(&config.node_id) {
            return Err(StartError::Config(format!(
                "node {} is among controller.quorum.voters, so it cannot be a broker-only node",
                config.node_id
            )));
        }
        return Ok(members);
    }
    if !members.contains_key(&config.node_id) {
        let voters = config
            .voters
            .iter()
            .map(|v| format!("{}@{}", v.id, v.address))
            .collect::<Vec<_>>()
            .join(",");
        return Err(StartError::NotAVoter {
            node_id: config.node_id,
            voters,
        });
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_as_kafka_writes_them() {
        let voters = Voter::parse_list("1@localhost:9093,2@10.0.0.2:9093,3@[::1]:9094")
            .expect("valid voters");
        assert_eq!(voters.len(), 3);
        assert_eq!(voters[2].address, "[::1]:9094");
        for bad in [
            "1localhost:9093",
            "x@h:1",
            "-1@h:1",
            "1@h",
            "1@:9093",
            "1@h:99999",
        ] {
            assert!(Voter::parse_list(bad).is_err(), "{bad}");
        }
    }
}
