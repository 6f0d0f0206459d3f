//! The controller: validates each metadata change against the current image and writes it.
//!
//! It runs on the metadata quorum (`runnel-controller`, openraft): the Raft log in
//! `__cluster_metadata-0`, the image as its state machine. `runnel server` is a quorum of one
//! (this node its only voter) or one voter of several (`controller.quorum.voters`), on the
//! same code path: a change is proposed and answered once committed and applied here. At
//! start the quorum replays its snapshot and log (its own scan refuses damage other than the
//! torn tail of an unfinished write); one voter of several waits for a majority to elect a
//! leader, for as long as that takes.
//!
//! Where a new topic's partitions go is planned here, on the node the request reached, from
//! its image's registered brokers ([`crate::placement`]), so that this node can open its own
//! partitions before the record is proposed (all or nothing); the active controller checks
//! that every broker the plan names is registered. Departure from DESIGN.md §8 (the
//! controller places replicas): the plan is the controller's rule run one hop earlier, and
//! the check keeps the leader the judge of what is committed.
//!
//! The cluster id is recorded by the quorum once, by the first node to start
//! ([`Controller::settle_cluster_id`]).
//!
//! A data directory written before the quorum (one metadata record per batch, appended and
//! fsync'd by a single writer, no `quorum-state`) is migrated at start: its records are
//! proposed, in order, to a quorum of one in a staging directory, and the staged Raft log is
//! swapped in with the old log kept beside it ([`crate::metadata_staging`]).
//!
//! The topics RemoveTopic records deleted are known at start (the image remembers
//! them), so the start can finish their deletion ([`crate::data_dir::settle_stray`]).
//!
//! Departure from DESIGN.md §3 (a single-task event loop): metadata changes are rare and
//! small, so a lock around check-then-write gives the same serialisation with less
//! machinery.
//!
//! Writes are `async`: callers await a change until it is durable (the proposal's commit).
//! Each write is a [`Change`] ([`crate::controller_change`]) that only the active controller
//! (the Raft leader) checks against its image and proposes: run here while this node leads,
//! carried to the leader otherwise, and answered once this node's image holds it. The admin handlers that change metadata return
//! [`crate::api::Reply::Ordered`], so a connection's next request is read only after the change
//! (Kafka handles a connection's requests one at a time).
//!
//! Producer ids are recorded in blocks ([`Controller::allocate_producer_id_block`]); a block is
//! durable before any id in it is used ([`crate::producer_ids`] hands them out), and a restart
//! starts from the next unrecorded block, so an id is never handed out twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use runnel_controller::{
    AppliedMetadata, ForwardError, Forwarded, MetadataQuorum, ProposeError, QuorumConfig,
    StartError, Voter, PROPOSAL_BYTES_MAX,
};
use runnel_metadata::{MetadataImage, MetadataRecord, RemovedTopic, TopicImage};
use thiserror::Error;
use tokio::sync::watch;
use uuid::Uuid;

use crate::controller_change::{Change, Done, Refusal};
/// The metadata log's directory name, as in KRaft.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
/// How long a start waits for the quorum to lead with its log applied.
const QUORUM_START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a change deposed before it was proposed waits before it tries again.
const LEADER_CHANGE_PAUSE: Duration = Duration::from_millis(50);
/// How long a change waits for an active controller, and then for this node to apply it.
const CHANGE_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("metadata quorum I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("a metadata record of {bytes} bytes is above {max}, the most one write takes")]
    RecordTooLarge { bytes: usize, max: usize },
    #[error("metadata quorum: {0}")]
    Quorum(ProposeError),
    #[error("metadata quorum: {0}")]
    Start(#[from] StartError),
    #[error("the metadata quorum has stopped")]
    Stopped,
    #[error("the active controller changed before the change was committed (it may still be)")]
    LeaderChanged,
    #[error("the active controller: {0}")]
    ActiveController(String),
    #[error("{0}")]
    Forward(#[from] ForwardError),
    #[error(
        "the change was committed at index {index} but not applied here within {CHANGE_DEADLINE:?}"
    )]
    NotApplied { index: u64 },
    #[error("nothing to record")]
    NothingToRecord,
    #[error("the quorum has recorded the cluster id {cluster_id} already")]
    ClusterIdRecorded { cluster_id: String },
    #[error("placing the partitions: {0}")]
    Placement(String),
    /// An ISR change refused: based on an older partition state (Kafka's
    /// `INVALID_UPDATE_VERSION`, `FENCED_LEADER_EPOCH`) or naming replicas it may not hold.
    #[error("ISR change refused: {0}")]
    InvalidPartitionChange(String),
    #[error("{partition}: its preferred leader {preferred} is not in the ISR or is fenced")]
    PreferredLeaderNotAvailable { partition: String, preferred: i32 },
    #[error(
        "partition {partition} is placed on broker {broker}, which is not registered or is fenced"
    )]
    UnknownBroker { partition: i32, broker: i32 },
    #[error("topic {name} already exists")]
    TopicAlreadyExists { name: String },
    #[error("topic {name} does not exist")]
    UnknownTopic { name: String },
    #[error("topic {name} has {current} partitions: {requested} is not more")]
    PartitionCountNotIncreased {
        name: String,
        current: i32,
        requested: i32,
    },
}

impl ControllerError {
    /// Whether the change may have been committed although this call failed: its record was
    /// (or may have been) proposed, then the quorum stopped, the active controller changed or
    /// its answer was lost, or the local apply lagged. Every other error is a refusal: nothing
    /// was recorded. A caller that prepared state for the change keeps it on `true`
    /// ([`crate::broker::Broker::create_topic`]).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ControllerError::Io(_)
                | ControllerError::Quorum(ProposeError::Stopped(_))
                | ControllerError::Stopped
                | ControllerError::LeaderChanged
                | ControllerError::ActiveController(_)
                | ControllerError::Forward(ForwardError::Uncertain { .. })
                | ControllerError::NotApplied { .. }
        )
    }
}

/// The metadata writer and the published image.
pub struct Controller {
    /// Topics the log's RemoveTopic records deleted, as they were (read at open).
    removed_at_open: Vec<RemovedTopic>,
    active: Arc<Active>,
}

/// What runs changes on this node while it leads; shared with the quorum's forward handler,
/// which runs the changes other nodes carry here.
struct Active {
    node_id: i32,
    /// The metadata quorum (`runnel-controller`); `None` once shut down.
    quorum: tokio::sync::RwLock<Option<MetadataQuorum>>,
    applied: watch::Receiver<AppliedMetadata>,
    /// The quorum's state: who leads.
    metrics: watch::Receiver<runnel_controller::QuorumMetrics>,
    /// Serialises each check-then-propose: the image a change was checked against is the one
    /// it applies to (the leader is the only proposer).
    writing: tokio::sync::Mutex<()>,
    /// When the active controller last heard from each broker (only while this node leads).
    liveness: std::sync::Mutex<Liveness>,
    /// Set by a controlled shutdown: this node sends no more heartbeats (one would unfence it).
    heartbeats_stopped: std::sync::atomic::AtomicBool,
}

/// The active controller's view of which brokers heartbeat (Kafka's
/// `BrokerHeartbeatManager`): kept in memory only, started afresh in each term this node
/// leads, every registered broker counted as heard at that start (a new leader gives every
/// broker a whole session before it fences one).
#[derive(Default)]
struct Liveness {
    term: u64,
    last_heard: std::collections::HashMap<i32, std::time::Instant>,
}

impl Controller {
    /// Starts the metadata quorum on the Raft log under `data_dir` as a quorum of one (this
    /// node its only voter) and waits until it leads with everything committed applied
    /// (a quorum of one leads at once: openraft restores a sole voter's leadership at start).
    /// Its controller listener is bound on a loopback port no peer uses.
    pub async fn start_quorum(
        data_dir: &Path,
        node_id: i32,
    ) -> Result<Controller, ControllerError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let voters = vec![Voter {
            id: node_id,
            address: addr.to_string(),
        }];
        let config = QuorumConfig::new(node_id, voters, data_dir.to_path_buf(), addr);
        let controller = Controller::start(config, listener).await?;
        tracing::info!(
            topics = controller.image().topics().count(),
            applied_index = ?controller.active.applied.borrow().applied_index(),
            "metadata quorum of one started"
        );
        Ok(controller)
    }

    /// Starts this node's controller of the quorum `config` describes, serving its peers on
    /// `listener`, and waits until some node leads and this one has applied what it
    /// committed.
    pub async fn start(
        config: QuorumConfig,
        listener: tokio::net::TcpListener,
    ) -> Result<Controller, ControllerError> {
        let node_id = config.node_id;
        let voters = config.voters.len();
        let learner = config.learner;
        let quorum = MetadataQuorum::start_with_listener(config, listener).await?;
        if voters == 1 && !learner {
            wait_for_leader(&quorum, QUORUM_START_DEADLINE).await?;
        } else {
            // As a Kafka controller does, wait for as long as a majority takes to come up.
            while let Err(ControllerError::Quorum(ProposeError::NotLeader { .. })) =
                wait_for_leader(&quorum, QUORUM_START_DEADLINE).await
            {
                tracing::warn!(
                    voters,
                    "no active controller after {QUORUM_START_DEADLINE:?}: waiting for a majority of the voters to start"
                );
            }
        }
        let applied = quorum.image();
        let active = Arc::new(Active {
            node_id,
            quorum: tokio::sync::RwLock::new(None),
            applied,
            metrics: quorum.metrics(),
            writing: tokio::sync::Mutex::new(()),
            liveness: Default::default(),
            heartbeats_stopped: Default::default(),
        });
        let handler_target: Weak<Active> = Arc::downgrade(&active);
        quorum.set_forward_handler(Arc::new(move |body| {
            let target = handler_target.clone();
            Box::pin(async move {
                match target.upgrade() {
                    Some(active) => active.run_forwarded(body).await,
                    None => Forwarded::NotLeader,
                }
            })
        }));
        *active.quorum.write().await = Some(quorum);
        let removed_at_open = active.image().removed_topics().cloned().collect();
        Ok(Controller {
            removed_at_open,
            active,
        })
    }

    /// The topics the metadata log's RemoveTopic records deleted, as they were before.
    pub fn removed_topics(&self) -> &[RemovedTopic] {
        &self.removed_at_open
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.active.image()
    }

    /// Records `cluster_id` as the cluster's if the quorum has none yet, and returns the one
    /// the quorum holds once this node's image has it: the first node to ask chooses it.
    pub async fn settle_cluster_id(&self, cluster_id: &str) -> Result<String, ControllerError> {
        if let Some(recorded) = self.image().cluster_id() {
            return Ok(recorded.to_string());
        }
        let change = Change::RecordClusterId {
            cluster_id: cluster_id.to_string(),
        };
        match self.active.run(change).await {
            Ok(_) | Err(ControllerError::ClusterIdRecorded { .. }) => {}
            Err(error) => return Err(error),
        }
        let mut applied = self.active.applied.clone();
        let recorded = applied.wait_for(|applied| applied.image.cluster_id().is_some());
        let outcome = match tokio::time::timeout(CHANGE_DEADLINE, recorded).await {
            Ok(Ok(applied)) => Ok(applied.image.cluster_id().unwrap_or_default().to_string()),
            Ok(Err(_)) => Err(ControllerError::Stopped),
            Err(_) => Err(ControllerError::ActiveController(format!(
                "the quorum's cluster id did not reach this node within {CHANGE_DEADLINE:?}"
            ))),
        };
        outcome
    }

    /// Starts this node's heartbeats to the active controller, every `interval` (Kafka's
    /// `broker.heartbeat.interval.ms`), and, while this node is the active controller, the
    /// fencing of brokers not heard from for `session` (`broker.session.timeout.ms`): each is
    /// recorded fenced ([`MetadataRecord::BrokerFencing`]), and unfenced by its next heartbeat.
    /// Both tasks end when the controller shuts down.
    pub fn start_liveness(&self, session: Duration, interval: Duration) {
        let active = Arc::downgrade(&self.active);
        tokio::spawn(heartbeat_loop(active.clone(), interval, session));
        tokio::spawn(fencing_loop(active, session, interval));
    }

    /// The fencing of [`Controller::start_liveness`] without heartbeats of this node: a
    /// controller-only node is no broker.
    pub fn start_fencing(&self, session: Duration, interval: Duration) {
        tokio::spawn(fencing_loop(
            Arc::downgrade(&self.active),
            session,
            interval,
        ));
    }

    /// Starts the automatic preferred-leader balancing (`auto.leader.rebalance.enable`), a
    /// pass every `interval` while this node is the active controller; it ends when the
    /// controller shuts down.
    pub fn start_leader_balancing(&self, interval: Duration) {
        tokio::spawn(leader_balance_loop(Arc::downgrade(&self.active), interval));
    }

    /// The metadata quorum as the active controller sees it (DescribeQuorum), asked of it
    /// wherever it runs.
    pub async fn describe_quorum(
        &self,
    ) -> Result<runnel_controller::QuorumDescription, ControllerError> {
        let done = self.active.run(Change::DescribeQuorum).await?;
        done.quorum.ok_or(ControllerError::LeaderChanged)
    }

    /// Every image this node applies from now on (the current one first).
    pub fn images(&self) -> watch::Receiver<AppliedMetadata> {
        self.active.applied.clone()
    }

    /// The active controller's node id, if one is known.
    pub fn active_controller(&self) -> Option<i32> {
        self.active.metrics.borrow().current_leader
    }

    /// Registers this broker at `host:port` (Kafka's BrokerRegistration at start); nothing
    /// is written when the image already holds exactly this registration.
    pub async fn register_broker(
        &self,
        host: &str,
        port: i32,
        rack: Option<String>,
    ) -> Result<(), ControllerError> {
        let node_id = self.active.node_id;
        let registration = runnel_metadata::BrokerRegistration {
            node_id,
            host: host.to_string(),
            port,
            rack: rack.clone(),
            fenced: false,
        };
        // A fenced registration is recorded again: registering unfences.
        if self.image().broker(node_id) == Some(&registration) {
            return Ok(());
        }
        let record = MetadataRecord::RegisterBroker {
            node_id,
            host: host.to_string(),
            port,
            rack,
        };
        self.active.run(Change::RegisterBroker { record }).await?;
        Ok(())
    }

    /// The record that creates topic `name` led by this node (a new topic id), and the topic
    /// as the image will hold it once the record is written: the broker opens the partitions
    /// from it before [`Controller::create_topic`] records them (all or nothing).
    pub fn plan_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<(MetadataRecord, Arc<TopicImage>), ControllerError> {
        self.plan_topic_on(name, partitions, None, 1, configs)
    }

    /// [`Controller::plan_topic`] with the replicas of each partition given (CreateTopics'
    /// manual assignment, checked by the caller against the registered brokers) instead of
    /// placed, or placed with `factor` replicas each.
    pub fn plan_topic_on(
        &self,
        name: &str,
        partitions: i32,
        assignment: Option<Vec<Vec<i32>>>,
        factor: usize,
        configs: BTreeMap<String, String>,
    ) -> Result<(MetadataRecord, Arc<TopicImage>), ControllerError> {
        let image = self.image();
        if image.topic(name).is_some() {
            return Err(ControllerError::TopicAlreadyExists {
                name: name.to_string(),
            });
        }
        let topic_id = Uuid::new_v4();
        let node_id = self.active.node_id;
        let replicas = match assignment {
            // All on this node: the record's `leader` says so (as `place` leaves it).
            Some(given) if given.iter().all(|replicas| replicas == &[node_id]) => Vec::new(),
            Some(given) => given,
            None => self.place(&image, topic_id, 0, partitions, factor)?,
        };
        let record = MetadataRecord::Topic {
            name: name.to_string(),
            topic_id,
            partitions,
            leader: self.active.node_id,
            configs,
            replicas,
        };
        let topic = image.apply(&record).topic(name).cloned().ok_or_else(|| {
            ControllerError::UnknownTopic {
                name: name.to_string(),
            }
        })?;
        Ok((record, topic))
    }

    /// Where partitions `first..first + count` of a new or growing topic go, `factor`
    /// replicas each ([`crate::placement`]): round robin over the unfenced registered brokers, from a start the
    /// topic id picks. Empty (every partition led by this node alone, the record's `leader`)
    /// when that is where they all go, or when no broker has registered yet. The internal
    /// topics are placed like any other: a coordinator's shard runs on the leader of its
    /// partition ([`crate::coordinator_shards`]).
    fn place(
        &self,
        image: &MetadataImage,
        topic_id: Uuid,
        first: i32,
        count: i32,
        factor: usize,
    ) -> Result<Vec<Vec<i32>>, ControllerError> {
        let brokers: Vec<_> = image.unfenced_brokers().cloned().collect();
        if brokers.is_empty() && factor <= 1 {
            return Ok(Vec::new());
        }
        let start = (topic_id.as_u128() % brokers.len().max(1) as u128) as usize;
        let placed = crate::placement::place(&brokers, first, count, factor, start)
            .map_err(|error| ControllerError::Placement(error.to_string()))?;
        let node_id = self.active.node_id;
        if placed.iter().all(|replicas| replicas == &[node_id]) {
            return Ok(Vec::new());
        }
        Ok(placed)
    }

    /// Writes a record from [`Controller::plan_topic`]; fails if the name was taken since.
    pub async fn create_topic(&self, record: &MetadataRecord) -> Result<(), ControllerError> {
        self.active
            .run(Change::CreateTopic {
                record: record.clone(),
            })
            .await?;
        Ok(())
    }

    /// Deletes a topic by id, returning what it was.
    pub async fn delete_topic(&self, topic_id: Uuid) -> Result<Arc<TopicImage>, ControllerError> {
        let Some(topic) = self.image().topic_by_id(&topic_id).cloned() else {
            return Err(ControllerError::UnknownTopic {
                name: topic_id.to_string(),
            });
        };
        self.active.run(Change::DeleteTopic { topic_id }).await?;
        Ok(topic)
    }

    /// The record that grows a topic to `partitions` partitions led by this node, and the
    /// topic as the image will hold it once written (see [`Controller::plan_topic`]). The
    /// count only grows: records are routed by partition count, so a shrink would move keys
    /// and strand data.
    pub fn plan_partitions(
        &self,
        topic_id: Uuid,
        partitions: i32,
    ) -> Result<(MetadataRecord, Arc<TopicImage>), ControllerError> {
        self.plan_partitions_on(topic_id, partitions, None)
    }

    /// [`Controller::plan_partitions`] with the replicas of each new partition given
    /// (CreatePartitions' manual assignment, one per new partition, checked by the caller
    /// against the registered brokers) instead of placed.
    pub fn plan_partitions_on(
        &self,
        topic_id: Uuid,
        partitions: i32,
        assignment: Option<Vec<Vec<i32>>>,
    ) -> Result<(MetadataRecord, Arc<TopicImage>), ControllerError> {
        let image = self.image();
        let Some(topic) = image.topic_by_id(&topic_id).cloned() else {
            return Err(ControllerError::UnknownTopic {
                name: topic_id.to_string(),
            });
        };
        let current = topic.partitions.len() as i32;
        if partitions <= current {
            return Err(ControllerError::PartitionCountNotIncreased {
                name: topic.name.clone(),
                current,
                requested: partitions,
            });
        }
        let node_id = self.active.node_id;
        let replicas = match assignment {
            // All on this node: the record's `leader` says so (as `place` leaves it).
            Some(given) if given.iter().all(|replicas| replicas == &[node_id]) => Vec::new(),
            Some(given) => given,
            None => {
                // New partitions get as many replicas as the topic's first one has.
                let factor = topic
                    .partitions
                    .first()
                    .map_or(1, |p| p.replicas.len().max(1));
                self.place(&image, topic_id, current, partitions - current, factor)?
            }
        };
        let record = MetadataRecord::PartitionCount {
            topic_id,
            partitions,
            leader: self.active.node_id,
            replicas,
        };
        let grown = image
            .apply(&record)
            .topic_by_id(&topic_id)
            .cloned()
            .ok_or_else(|| ControllerError::UnknownTopic {
                name: topic.name.clone(),
            })?;
        Ok((record, grown))
    }

    /// Writes a record from [`Controller::plan_partitions`] if the topic still has the count
    /// `current` it was planned from.
    pub async fn create_partitions(
        &self,
        record: &MetadataRecord,
        current: usize,
    ) -> Result<(), ControllerError> {
        self.active
            .run(Change::CreatePartitions {
                record: record.clone(),
                current,
            })
            .await?;
        Ok(())
    }

    /// Replaces a topic's config overrides (already validated), returning the topic after.
    pub async fn alter_topic_configs(
        &self,
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, ControllerError> {
        self.active
            .run(Change::AlterTopicConfigs { topic_id, configs })
            .await?;
        self.image()
            .topic_by_id(&topic_id)
            .cloned()
            .ok_or_else(|| ControllerError::UnknownTopic {
                name: topic_id.to_string(),
            })
    }

    /// Replaces the dynamic configs of broker resource `resource_name` (a node id, or "" for
    /// the cluster default; already validated), returning the image after.
    pub async fn alter_broker_configs(
        &self,
        resource_name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<MetadataImage>, ControllerError> {
        self.active
            .run(Change::AlterBrokerConfigs {
                resource_name: resource_name.to_string(),
                configs,
            })
            .await?;
        Ok(self.image())
    }

    /// Moves the lead of `topic_id`-`partition` back to its preferred (first) replica
    /// ([`Change::ElectPreferred`]). `Ok(false)`: it leads already.
    pub async fn elect_preferred(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<bool, ControllerError> {
        match self
            .active
            .run(Change::ElectPreferred {
                topic_id,
                partition,
            })
            .await
        {
            // Nothing to record answers index 0.
            Ok(done) => Ok(done.index != 0),
            Err(ControllerError::NothingToRecord) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Controlled shutdown (Kafka's, through BrokerHeartbeat's `wantShutDown`): stops this
    /// node's heartbeats and has the active controller fence it now, which moves every
    /// partition it leads to an in-sync replica (`runnel_metadata`'s fencing rule). Returns
    /// once the fencing is applied here; the next start's registration unfences it.
    pub async fn controlled_shutdown(&self) -> Result<(), ControllerError> {
        self.active
            .heartbeats_stopped
            .store(true, std::sync::atomic::Ordering::Release);
        let node_id = self.active.node_id;
        match self.active.run(Change::FenceBroker { node_id }).await {
            Ok(_) | Err(ControllerError::NothingToRecord) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Asks the active controller to make `change` (a [`Change::AlterIsr`], Kafka's
    /// AlterPartition) and returns once it is applied here.
    pub async fn alter_isr(&self, change: Change) -> Result<(), ControllerError> {
        self.active.run(change).await?;
        Ok(())
    }

    /// Records the next block of `size` producer ids, from the first id no block holds yet,
    /// and returns it once durable ([`crate::producer_ids`] hands the ids out).
    pub async fn allocate_producer_id_block(
        &self,
        size: i64,
    ) -> Result<std::ops::Range<i64>, ControllerError> {
        let done = self
            .active
            .run(Change::AllocateProducerIds { size })
            .await?;
        done.producer_ids.ok_or_else(|| {
            ControllerError::ActiveController("no producer id block in the answer".into())
        })
    }

    /// Stops the quorum (its log and snapshots stay as they are on disk).
    pub async fn shutdown(&self) {
        if let Some(quorum) = self.active.quorum.write().await.take() {
            if let Err(error) = quorum.shutdown().await {
                tracing::warn!(%error, "the metadata quorum did not stop cleanly");
            }
        }
    }
}

impl Active {
    fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.applied.borrow().image)
    }

    /// Runs `change` on the active controller, here or carried there, and returns once this
    /// node's image holds it.
    async fn run(&self, change: Change) -> Result<Done, ControllerError> {
        let until = tokio::time::Instant::now() + CHANGE_DEADLINE;
        loop {
            let guard = self.quorum.read().await;
            let Some(quorum) = guard.as_ref() else {
                return Err(ControllerError::Stopped);
            };
            if quorum.is_leader() {
                drop(guard);
                match self.run_here(&change).await {
                    // Deposed (see `Refusal::NotLeader`): carried to the new leader instead.
                    Err(ControllerError::Quorum(ProposeError::NotLeader { .. }))
                        if tokio::time::Instant::now() < until =>
                    {
                        tokio::time::sleep(LEADER_CHANGE_PAUSE).await;
                        continue;
                    }
                    outcome => return outcome,
                }
            }
            // Serialising a change of plain data cannot fail.
            let body = serde_json::to_vec(&change).expect("a change serialises");
            match quorum.forward(body, CHANGE_DEADLINE).await {
                Ok(answer) => {
                    drop(guard);
                    let answer: Result<Done, Refusal> = serde_json::from_slice(&answer)
                        .map_err(|error| ControllerError::ActiveController(error.to_string()))?;
                    let done = match answer {
                        // The node it reached lost the lead (see `Refusal::NotLeader`):
                        // carried again, to the leader the quorum elects next.
                        Err(Refusal::NotLeader) if tokio::time::Instant::now() < until => {
                            tokio::time::sleep(LEADER_CHANGE_PAUSE).await;
                            continue;
                        }
                        answer => answer.map_err(ControllerError::from)?,
                    };
                    self.wait_applied(done.index).await?;
                    return Ok(done);
                }
                Err(ForwardError::Leading(_)) => continue,
                // The controller reached died or lost the lead after the change was sent.
                Err(ForwardError::Uncertain { leader, reason, .. })
                    if change.safe_to_repeat() && tokio::time::Instant::now() < until =>
                {
                    drop(guard);
                    tracing::info!(
                        leader,
                        reason,
                        "the active controller's answer was lost; the change is carried again"
                    );
                    tokio::time::sleep(LEADER_CHANGE_PAUSE).await;
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Checks `change` against the image and proposes its record, as the active controller.
    async fn run_here(&self, change: &Change) -> Result<Done, ControllerError> {
        let _writing = self.writing.lock().await;
        let guard = self.quorum.read().await;
        let Some(quorum) = guard.as_ref() else {
            return Err(ControllerError::Stopped);
        };
        // A new leader may not have applied what earlier terms committed: check against an
        // image that holds it (openraft's linearizable read point).
        quorum
            .wait_until_leading(CHANGE_DEADLINE)
            .await
            .map_err(ControllerError::Quorum)?;
        if let Change::Heartbeat { node_id } = change {
            self.heard(*node_id, quorum.term());
        }
        let (record, producer_ids) = match change.check(&self.image()) {
            Ok(checked) => checked,
            // A heartbeat of an unfenced broker: heard, nothing to record.
            Err(ControllerError::NothingToRecord) => {
                let quorum = matches!(change, Change::DescribeQuorum)
                    .then(|| quorum.describe())
                    .flatten();
                return Ok(Done {
                    index: 0,
                    producer_ids: None,
                    quorum,
                });
            }
            Err(error) => return Err(error),
        };
        let index = quorum
            .propose(vec![record])
            .await
            .map_err(|error| match error {
                ProposeError::TooLarge { bytes } => ControllerError::RecordTooLarge {
                    bytes,
                    max: PROPOSAL_BYTES_MAX,
                },
                error => ControllerError::Quorum(error),
            })?;
        Ok(Done {
            index,
            producer_ids,
            quorum: None,
        })
    }

    /// Notes a heartbeat from `node_id` in `term`, starting the term's view afresh.
    fn heard(&self, node_id: i32, term: u64) {
        let image = self.image();
        let mut liveness = self.liveness.lock().expect("liveness lock poisoned");
        liveness.start_term(term, &image);
        liveness
            .last_heard
            .insert(node_id, std::time::Instant::now());
    }

    /// The unfenced brokers other than this one not heard from for `session` in this node's
    /// current term.
    /// Whether this node is the active controller now.
    async fn leading_term(&self) -> Leading {
        let guard = self.quorum.read().await;
        match guard.as_ref() {
            None => Leading::Gone,
            Some(quorum) if quorum.is_leader() => Leading::Yes(quorum.term()),
            Some(_) => Leading::No,
        }
    }

    fn silent_brokers(&self, term: u64, session: Duration) -> Vec<(i32, Duration)> {
        let image = self.image();
        let mut liveness = self.liveness.lock().expect("liveness lock poisoned");
        liveness.start_term(term, &image);
        let now = std::time::Instant::now();
        // Never this node: it is running this check, so it is alive.
        image
            .unfenced_brokers()
            .filter(|broker| broker.node_id != self.node_id)
            .filter_map(|broker| {
                let heard = liveness.last_heard.get(&broker.node_id)?;
                let silent = now.saturating_duration_since(*heard);
                (silent > session).then_some((broker.node_id, silent))
            })
            .collect()
    }

    /// Runs a change another node carried here (see [`crate::controller_change`]).
    async fn run_forwarded(&self, body: Vec<u8>) -> Forwarded {
        let leading = self
            .quorum
            .read()
            .await
            .as_ref()
            .is_some_and(MetadataQuorum::is_leader);
        if !leading {
            return Forwarded::NotLeader;
        }
        let answer: Result<Done, Refusal> = match serde_json::from_slice::<Change>(&body) {
            Ok(change) => self.run_here(&change).await.map_err(Refusal::from),
            Err(error) => Err(Refusal::Failed {
                message: format!("a forwarded change does not decode: {error}"),
            }),
        };
        Forwarded::Answer(serde_json::to_vec(&answer).expect("an answer serialises"))
    }

    /// Waits until this node has applied log index `index`.
    async fn wait_applied(&self, index: u64) -> Result<(), ControllerError> {
        let mut applied = self.applied.clone();
        let reached = applied.wait_for(|a| a.applied_index().is_some_and(|i| i >= index));
        let outcome = match tokio::time::timeout(CHANGE_DEADLINE, reached).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ControllerError::Stopped),
            Err(_) => Err(ControllerError::NotApplied { index }),
        };
        outcome
    }
}

impl Liveness {
    /// Begins `term`'s view, once: every registered broker heard now.
    fn start_term(&mut self, term: u64, image: &MetadataImage) {
        if self.term == term {
            return;
        }
        let now = std::time::Instant::now();
        self.term = term;
        self.last_heard = image.brokers().map(|b| (b.node_id, now)).collect();
    }
}

/// Sends this node's heartbeat to the active controller every `interval`, until the
/// controller stops. A run of failures is logged once it has lasted a session.
async fn heartbeat_loop(active: Weak<Active>, interval: Duration, session: Duration) {
    let mut failing_since: Option<tokio::time::Instant> = None;
    let mut warned = false;
    loop {
        tokio::time::sleep(interval).await;
        let Some(target) = active.upgrade() else {
            return;
        };
        if target
            .heartbeats_stopped
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let node_id = target.node_id;
        let sent = tokio::time::timeout(session, target.run(Change::Heartbeat { node_id })).await;
        drop(target);
        match sent {
            Ok(Ok(_)) => {
                if warned {
                    tracing::info!("heartbeats reach the active controller again");
                }
                failing_since = None;
                warned = false;
            }
            Ok(Err(ControllerError::Stopped)) => return,
            Ok(Err(error)) => {
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                if !warned && since.elapsed() >= session {
                    tracing::warn!(%error, "heartbeats have not reached the active controller for a session; it will fence this broker");
                    warned = true;
                }
            }
            Err(_) => {
                failing_since.get_or_insert_with(tokio::time::Instant::now);
            }
        }
    }
}

/// While this node is the active controller, fences each broker not heard from for
/// `session`, checking twice per heartbeat interval.
async fn fencing_loop(active: Weak<Active>, session: Duration, interval: Duration) {
    loop {
        tokio::time::sleep(interval / 2).await;
        let Some(target) = active.upgrade() else {
            return;
        };
        let term = match target.leading_term().await {
            Leading::Gone => return,
            Leading::No => continue,
            Leading::Yes(term) => term,
        };
        for (node_id, silent) in target.silent_brokers(term, session) {
            tracing::warn!(
                node_id,
                silent_ms = silent.as_millis() as u64,
                "fencing broker {node_id}: no heartbeat for broker.session.timeout.ms"
            );
            if let Err(error) = target.run_here(&Change::FenceBroker { node_id }).await {
                tracing::warn!(node_id, %error, "fencing a broker failed; tried again");
            }
        }
    }
}

/// Whether this node is the active controller, as [`Active::leading_term`] finds it.
enum Leading {
    /// The quorum has shut down: the periodic tasks end.
    Gone,
    No,
    /// The active controller, in this Raft term.
    Yes(u64),
}

/// The most preferred-leader elections one balancing pass proposes (Kafka's
/// `MAX_ELECTIONS_PER_IMBALANCE`); the next pass takes the rest.
const ELECTIONS_PER_BALANCE_MAX: usize = 1_000;

/// While this node is the active controller, every `interval` (Kafka's
/// `leader.imbalance.check.interval.seconds`, with `auto.leader.rebalance.enable`) moves the
/// lead of each partition not led by its preferred (first) replica back to it when that
/// replica is unfenced and in the ISR: Kafka's KRaft `maybeBalancePartitionLeaders`, which, as
/// here, balances every imbalanced partition (`leader.imbalance.per.broker.percentage` is a
/// ZooKeeper-mode setting).
async fn leader_balance_loop(active: Weak<Active>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(target) = active.upgrade() else {
            return;
        };
        match target.leading_term().await {
            Leading::Gone => return,
            Leading::No => continue,
            Leading::Yes(_) => {}
        }
        let image = target.image();
        let imbalanced: Vec<(Uuid, i32)> = image
            .topics()
            .flat_map(|topic| {
                topic.partitions.iter().filter_map(|p| {
                    let preferred = *p.replicas.first()?;
                    let movable = preferred != p.leader
                        && p.isr.contains(&preferred)
                        && !image.is_fenced(preferred);
                    movable.then_some((topic.topic_id, p.partition))
                })
            })
            .take(ELECTIONS_PER_BALANCE_MAX)
            .collect();
        let mut moved = 0usize;
        for (topic_id, partition) in imbalanced {
            let change = Change::ElectPreferred {
                topic_id,
                partition,
            };
            match target.run_here(&change).await {
                Ok(_) => moved += 1,
                Err(ControllerError::NothingToRecord)
                | Err(ControllerError::PreferredLeaderNotAvailable { .. }) => {}
                Err(error) => {
                    tracing::warn!(%error, "a preferred-leader election failed; the next pass tries again");
                    break;
                }
            }
        }
        if moved > 0 {
            tracing::info!(
                partitions = moved,
                "auto leader rebalance: preferred replicas lead again"
            );
        }
    }
}

/// Waits until `quorum` knows a leader and, when it is that leader, has applied everything
/// committed; a follower's image catches up as the leader replicates to it.
async fn wait_for_leader(
    quorum: &MetadataQuorum,
    deadline: Duration,
) -> Result<(), ControllerError> {
    let mut metrics = quorum.metrics();
    let known = metrics.wait_for(|m| m.current_leader.is_some());
    match tokio::time::timeout(deadline, known).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return Err(ControllerError::Stopped),
        Err(_) => {
            return Err(ControllerError::Quorum(ProposeError::NotLeader {
                node_id: quorum.node_id(),
                leader: None,
            }))
        }
    }
    if quorum.is_leader() {
        match quorum.wait_until_leading(deadline).await {
            // Deposed while confirming: another node leads, or will.
            Ok(()) | Err(ProposeError::NotLeader { .. }) => {}
            Err(error) => return Err(ControllerError::Quorum(error)),
        }
    }
    Ok(())
}

/// The image after `records`, and the topics their RemoveTopic records deleted (the most
/// recent [`runnel_metadata::REMOVED_TOPICS_KEPT`], as the image remembers them).
pub(crate) fn fold<'a>(
    records: impl IntoIterator<Item = &'a MetadataRecord>,
) -> (MetadataImage, Vec<RemovedTopic>) {
    let image = records
        .into_iter()
        .fold(MetadataImage::default(), |image, record| {
            image.apply(record)
        });
    let removed = image.removed_topics().cloned().collect();
    (image, removed)
}
