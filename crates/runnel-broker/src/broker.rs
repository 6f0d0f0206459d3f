//! The state every request handler shares: configuration, the controller (metadata), the
//! replica manager (partitions) and the group and transaction coordinators. Topic creation and deletion live here because they span
//! both: the metadata record first, then the partitions' logs.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use runnel_metadata::TopicImage;
use uuid::Uuid;

use crate::config::{AdvertisedListener, BrokerConfig, ConfigError, TopicSettings};
use crate::controller::{Controller, ControllerError};
use crate::dynamic_config::{self, DynamicBrokerConfig};
use crate::group_coordinator::GroupCoordinator;
use crate::replica_manager::{OpenTopicError, PreparedPartitions, ReplicaManager};
use crate::transaction_coordinator::TransactionCoordinator;

/// Why a topic could not be created or deleted.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    #[error("{0}")]
    Controller(#[from] ControllerError),
    #[error("{0}")]
    Open(#[from] OpenTopicError),
    #[error("{0}")]
    Delete(#[from] runnel_log::LogError),
    /// The creation's task ended without an answer (the runtime shutting down).
    #[error("the creation was interrupted: {0}")]
    Interrupted(String),
    /// The node would host more than `max.broker.partitions` partitions.
    #[error("creating {requested} partition(s) would take this node past max.broker.partitions={max}: it hosts {hosted}")]
    PartitionLimit {
        requested: usize,
        hosted: usize,
        max: usize,
    },
}

/// Runs a creation's steps in a task of their own and waits for it (see
/// [`Broker::create_topic`]): the task goes on when the caller is dropped.
async fn run_whole<T: Send + 'static>(
    steps: impl std::future::Future<Output = Result<T, CreateTopicError>> + Send + 'static,
) -> Result<T, CreateTopicError> {
    match tokio::spawn(steps).await {
        Ok(outcome) => outcome,
        // Cancelled only when the runtime shuts down; a panic is a bug, reported as such.
        Err(error) => Err(CreateTopicError::Interrupted(error.to_string())),
    }
}

/// Whether a creation failed only because the topic was created meanwhile (through another
/// node, or another request here): the client asks again and finds it.
pub(crate) fn created_meanwhile(error: &CreateTopicError) -> bool {
    matches!(
        error,
        CreateTopicError::Controller(ControllerError::TopicAlreadyExists { .. })
    )
}

/// Why a topic's configs were not changed.
#[derive(Debug, thiserror::Error)]
pub enum AlterConfigsError {
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    #[error("{0}")]
    Controller(#[from] ControllerError),
}

/// Why a broker resource's dynamic configs were not changed.
#[derive(Debug, thiserror::Error)]
pub enum AlterBrokerConfigsError {
    #[error("{}", .0.message)]
    Refused(crate::dynamic_config::ChangeRefused),
    #[error("{0}")]
    Controller(#[from] ControllerError),
}

pub struct Broker {
    /// The static configuration (`server.properties` and `--override`); the live one, with
    /// the dynamic broker configs, is [`Broker::dynamic`]'s.
    pub config: Arc<BrokerConfig>,
    /// The live configuration and the dynamic broker configs (KIP-226).
    pub dynamic: DynamicBrokerConfig,
    pub cluster_id: String,
    pub controller: Controller,
    /// Producer ids from the controller's blocks.
    pub producer_ids: crate::producer_ids::ProducerIds,
    pub replicas: ReplicaManager,
    /// The fetchers that copy the partitions this broker follows from their leaders.
    pub fetchers: crate::replication::ReplicaFetchers,
    /// The group coordinator's tasks (started with `__consumer_offsets`).
    pub groups: GroupCoordinator,
    /// The transaction coordinator's tasks (started with `__transaction_state`).
    pub txns: TransactionCoordinator,
    /// Request, connection and partition figures for `GET /metrics`.
    pub metrics: crate::metrics::BrokerMetrics,
    /// Per-topic rates for the console, sampled while the HTTP port serves.
    pub console_rates: crate::console::rates::TopicRates,
    /// `queued.max.request.bytes`: memory for request frames, shared by every connection.
    pub request_memory: Arc<crate::request_memory::RequestMemoryPool>,
    /// Idle buffers that request frames are read into, reused by every connection.
    pub receive_buffers: Arc<crate::receive_buffers::ReceiveBufferPool>,
    /// `max.connections.per.ip` and its overrides.
    pub connection_quotas: Arc<crate::connection_quotas::ConnectionQuotas>,
    /// Raised once at shutdown, so that parked requests (long-poll fetches) answer at once.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Set once the listener is bound (the port may have been 0).
    advertised: OnceLock<AdvertisedListener>,
    /// Serialises topic and partition creations: plan, open, record, host.
    creations: tokio::sync::Mutex<()>,
}

impl Broker {
    pub fn new(
        config: Arc<BrokerConfig>,
        cluster_id: String,
        controller: Controller,
        replicas: ReplicaManager,
        dynamic: DynamicBrokerConfig,
    ) -> Broker {
        let request_memory =
            crate::request_memory::RequestMemoryPool::new(config.queued_max_request_bytes);
        let live = dynamic.current();
        let connection_quotas = crate::connection_quotas::ConnectionQuotas::new(
            live.connections_max_per_ip,
            live.connections_max_per_ip_overrides.clone(),
        );
        Broker {
            config,
            dynamic,
            cluster_id,
            controller,
            producer_ids: Default::default(),
            replicas,
            fetchers: Default::default(),
            groups: GroupCoordinator::default(),
            txns: TransactionCoordinator::default(),
            metrics: Default::default(),
            console_rates: Default::default(),
            request_memory,
            receive_buffers: crate::receive_buffers::ReceiveBufferPool::new(
                crate::receive_buffers::CACHED_BYTES_MAX,
            ),
            connection_quotas,
            stopping: tokio::sync::watch::channel(false).0,
            advertised: OnceLock::new(),
            creations: tokio::sync::Mutex::new(()),
        }
    }

    /// Marks the broker as shutting down (see [`Broker::stopping`]).
    pub(crate) fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
        self.fetchers.stop();
    }

    /// A receiver whose value turns `true` when shutdown begins.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    pub(crate) fn set_advertised_listener(&self, listener: AdvertisedListener) {
        let _ = self.advertised.set(listener);
    }

    /// What Metadata tells clients to connect to.
    pub fn advertised_listener(&self) -> AdvertisedListener {
        self.advertised
            .get()
            .cloned()
            .unwrap_or_else(|| AdvertisedListener {
                host: self.config.listen.ip().to_string(),
                port: self.config.listen.port(),
            })
    }

    /// The brokers Metadata and DescribeCluster list: the registered ones that are not fenced
    /// (with `include_fenced`, DescribeCluster v2's, the fenced ones too), in node id order,
    /// with this broker as it advertises itself now (also before its registration lands).
    pub fn live_brokers(&self, include_fenced: bool) -> Vec<runnel_metadata::BrokerRegistration> {
        let image = self.controller.image();
        let node_id = self.config.node_id;
        let advertised = self.advertised_listener();
        let this = runnel_metadata::BrokerRegistration {
            node_id,
            host: advertised.host,
            port: i32::from(advertised.port),
            rack: image.broker(node_id).and_then(|b| b.rack.clone()),
            fenced: false,
        };
        let mut brokers: Vec<_> = image
            .brokers()
            .filter(|b| b.node_id != node_id && (include_fenced || !b.fenced))
            .cloned()
            .collect();
        let at = brokers.partition_point(|b| b.node_id < node_id);
        brokers.insert(at, this);
        brokers
    }

    /// The `controller_id` Metadata and DescribeCluster tell clients: this node. Kafka's KRaft
    /// broker answers a random alive broker there, not the quorum's leader
    /// (`KafkaApis.handleTopicMetadataRequest`, `getRandomAliveBrokerId`; KIP-590): clients
    /// send admin requests to that broker, which forwards them to the active controller.
    /// This node is alive by construction and reachable by the client asking, so it is the
    /// one named; naming the Raft leader would send clients to a dead node after it dies
    /// (librdkafka keeps a controller until its next metadata refresh, 5 minutes).
    pub fn controller_id_for_clients(&self) -> i32 {
        self.config.node_id
    }

    /// Why `topic`-`index` is not hosted here, as Kafka answers a request for it: its log
    /// directory is offline (`KAFKA_STORAGE_ERROR`); the image names it but another broker
    /// holds it (`NOT_LEADER_OR_FOLLOWER`: the client refreshes its metadata and goes to the
    /// leader); or it does not exist (`UNKNOWN_TOPIC_OR_PARTITION`).
    pub fn not_hosted_error(&self, topic: &str, index: i32) -> runnel_protocol::ErrorCode {
        use runnel_protocol::ErrorCode;
        if self.replicas.is_offline(topic, index) {
            return ErrorCode::KafkaStorageError;
        }
        match self.partition_leader(topic, index) {
            Some(_) => ErrorCode::NotLeaderOrFollower,
            None => ErrorCode::UnknownTopicOrPartition,
        }
    }

    /// The leader and leader epoch the image names for `topic`-`index`, with the leader's
    /// registration when it is known (KIP-951's hint to a client that asked the wrong
    /// broker).
    pub fn partition_leader(
        &self,
        topic: &str,
        index: i32,
    ) -> Option<(i32, i32, Option<runnel_metadata::BrokerRegistration>)> {
        let image = self.controller.image();
        let partitions = &image.topic(topic)?.partitions;
        let partition = partitions.get(usize::try_from(index).ok()?)?;
        let registration = image.broker(partition.leader).cloned();
        Some((partition.leader, partition.leader_epoch, registration))
    }

    /// The leader of `key`'s partition of internal topic `topic` (the group coordinator's or
    /// the transaction coordinator's), the partition `partition_of` picks over the topic's
    /// count, with the leader's registration; `None` before the topic exists.
    pub fn coordinator_leader(
        &self,
        topic: &str,
        key: &str,
        partition_of: fn(&str, i32) -> i32,
    ) -> Option<(i32, Option<runnel_metadata::BrokerRegistration>)> {
        let count = self.controller.image().topic(topic)?.partitions.len() as i32;
        let (leader, _, registration) = self.partition_leader(topic, partition_of(key, count))?;
        Some((leader, registration))
    }

    /// The replication factor of an internal topic created now (`__consumer_offsets`,
    /// `__transaction_state`): `configured`, but at most the cluster's size, so that one node
    /// with no configuration still gets its coordinators where Kafka, with its default of 3,
    /// would refuse. The size is the registered brokers, or, on a combined node, the quorum's
    /// voters when more (combined voters are brokers too, and may not have registered yet).
    /// `Err(needed)` while fewer brokers than that are unfenced: Kafka's
    /// COORDINATOR_NOT_AVAILABLE until they are, so the topic never starts under-replicated.
    pub(crate) fn internal_topic_factor(&self, configured: i16) -> Result<usize, usize> {
        let image = self.controller.image();
        let combined_voters = match self.config.role {
            crate::config::kraft::ProcessRole::Combined => self.config.quorum_voters.len(),
            _ => 0,
        };
        let cluster = combined_voters.max(image.brokers().count()).max(1);
        let factor = usize::try_from(configured).unwrap_or(1).clamp(1, cluster);
        if image.unfenced_brokers().count() < factor {
            return Err(factor);
        }
        Ok(factor)
    }

    /// Held while partitions are created, deleted or opened for a new image, so that those
    /// steps never interleave ([`crate::image_applier`]).
    pub(crate) async fn lock_creations(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.creations.lock().await
    }

    /// Re-applies the dynamic configs of broker resource `resource_name` as the image now
    /// holds them (written through another node).
    pub(crate) fn apply_broker_configs(
        &self,
        resource_name: &str,
        configs: BTreeMap<String, String>,
    ) {
        match self.dynamic.replace(resource_name, configs) {
            Ok(live) => self.apply_live(&live),
            Err(error) => {
                tracing::error!(%error, resource_name, "a recorded dynamic broker config does not apply")
            }
        }
    }

    /// Creates a topic, all or nothing: checks `max.broker.partitions`, refuses a name whose
    /// partition directories are already on disk (data the metadata does not name, which a
    /// new partition must never adopt: checked before anything is opened), opens every
    /// partition (creating its directory), then records the topic in the metadata log and
    /// hosts the partitions. A refusal at any step (a partition directory that cannot be
    /// created, the controller's no) removes what was created and returns the error: no
    /// partial topic is left in the metadata or on disk.
    ///
    /// When the record's outcome is unknown (proposed, then the quorum stopped or the active
    /// controller's answer was lost: [`ControllerError::outcome_unknown`]) the new, empty
    /// directories stay: the record may commit, and then they are the topic's. If it never
    /// does they are stray directories without records, reported at the next start
    /// (`data_dir.rs`) and removed by the next creation of the name (see
    /// [`ReplicaManager::check_no_directory`]). A crash before the record is written leaves the
    /// same.
    ///
    /// The steps run in a task of their own, so that a caller that goes away (its connection
    /// closed, the request cut by shutdown) never stops a creation between opening the
    /// directories and learning the record's fate: that released the creation lock while the
    /// record could still commit, and a second creation of the name then replaced the first's
    /// directories with its own topic id.
    pub async fn create_topic(
        self: &Arc<Self>,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, CreateTopicError> {
        self.create_topic_on(name, partitions, None, 1, configs)
            .await
    }

    /// [`Broker::create_topic`] with each partition's replicas given (CreateTopics' manual
    /// assignment) rather than placed by the controller, or placed `factor` replicas each.
    pub async fn create_topic_on(
        self: &Arc<Self>,
        name: &str,
        partitions: i32,
        assignment: Option<Vec<Vec<i32>>>,
        factor: usize,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicImage>, CreateTopicError> {
        let broker = Arc::clone(self);
        let name = name.to_string();
        run_whole(async move {
            let _creating = broker.creations.lock().await;
            broker.check_partition_limit(usize::try_from(partitions).unwrap_or(0))?;
            let (record, topic) = broker
                .controller
                .plan_topic_on(&name, partitions, assignment, factor, configs)?;
            broker.replicas.check_no_directory(&name, 0..partitions)?;
            let prepared = broker.replicas.prepare_partitions(&topic, 0)?;
            let recorded = broker.controller.create_topic(&record).await;
            broker.settle_creation(prepared, recorded)?;
            Ok(topic)
        })
        .await
    }

    /// Grows a topic to `partitions` partitions, all or nothing, as [`Broker::create_topic`]:
    /// new partitions whose directories are already on disk are refused, the new partitions
    /// are opened, then the count is recorded.
    pub async fn create_partitions(
        self: &Arc<Self>,
        topic_id: Uuid,
        partitions: i32,
    ) -> Result<Arc<TopicImage>, CreateTopicError> {
        self.create_partitions_on(topic_id, partitions, None).await
    }

    /// [`Broker::create_partitions`] with each new partition's replicas given
    /// (CreatePartitions' manual assignment, checked by the caller) rather than placed.
    pub async fn create_partitions_on(
        self: &Arc<Self>,
        topic_id: Uuid,
        partitions: i32,
        assignment: Option<Vec<Vec<i32>>>,
    ) -> Result<Arc<TopicImage>, CreateTopicError> {
        let broker = Arc::clone(self);
        run_whole(async move {
            let _creating = broker.creations.lock().await;
            let current = broker
                .controller
                .image()
                .topic_by_id(&topic_id)
                .map_or(0, |topic| topic.partitions.len());
            let added = usize::try_from(partitions)
                .unwrap_or(0)
                .saturating_sub(current);
            broker.check_partition_limit(added)?;
            let (record, topic) = broker
                .controller
                .plan_partitions_on(topic_id, partitions, assignment)?;
            let first_new = i32::try_from(current).unwrap_or(i32::MAX);
            broker
                .replicas
                .check_no_directory(&topic.name, first_new..partitions)?;
            let prepared = broker.replicas.prepare_partitions(&topic, current)?;
            let recorded = broker.controller.create_partitions(&record, current).await;
            broker.settle_creation(prepared, recorded)?;
            Ok(topic)
        })
        .await
    }

    /// The last step of a creation, once the controller answered: hosts the prepared
    /// partitions when the record is written, removes their new directories when it was
    /// refused, and closes them but keeps the directories when its fate is unknown (see
    /// [`Broker::create_topic`]).
    fn settle_creation(
        &self,
        prepared: PreparedPartitions,
        recorded: Result<(), ControllerError>,
    ) -> Result<(), CreateTopicError> {
        match recorded {
            Ok(()) => {
                self.replicas.install(prepared);
                Ok(())
            }
            Err(error) if error.outcome_unknown() => {
                tracing::warn!(
                    topic = %prepared.topic(),
                    %error,
                    "a creation's record may still commit: its new partition directories are kept"
                );
                drop(prepared);
                Err(error.into())
            }
            Err(error) => {
                self.replicas.discard(prepared);
                Err(error.into())
            }
        }
    }

    /// Refuses `requested` more partitions when the node would host more than
    /// `max.broker.partitions`.
    fn check_partition_limit(&self, requested: usize) -> Result<(), CreateTopicError> {
        let hosted = self.replicas.partition_count();
        let max = self.config.broker_partitions_max;
        if hosted.saturating_add(requested) > max {
            return Err(CreateTopicError::PartitionLimit {
                requested,
                hosted,
                max,
            });
        }
        Ok(())
    }

    /// Replaces topic `name`'s config overrides with `configs`: validated against the broker's
    /// defaults, recorded in the metadata log, then applied to the live partitions. With
    /// `validate_only`, nothing is recorded.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), AlterConfigsError> {
        let topic = self
            .controller
            .image()
            .topic(name)
            .cloned()
            .ok_or_else(|| AlterConfigsError::UnknownTopic(name.to_string()))?;
        let settings = TopicSettings::resolve(&self.dynamic.current(), &configs)?;
        if validate_only {
            return Ok(());
        }
        self.controller
            .alter_topic_configs(topic.topic_id, configs)
            .await?;
        self.replicas.update_topic_settings(name, &settings);
        Ok(())
    }

    /// Replaces the dynamic configs of broker resource `resource_name` ("" for the cluster
    /// default, else this node's id, already checked) with what `change` makes of the
    /// current ones: checked as Kafka checks them
    /// ([`dynamic_config::validate_change`]), recorded in the metadata log, then applied to
    /// what runs (see [`crate::dynamic_config`] for which configs apply live). With
    /// `validate_only`, nothing is recorded.
    pub async fn alter_broker_configs(
        &self,
        resource_name: &str,
        change: impl FnOnce(
            &BTreeMap<String, String>,
        ) -> Result<BTreeMap<String, String>, dynamic_config::ChangeRefused>,
        validate_only: bool,
    ) -> Result<(), AlterBrokerConfigsError> {
        // Serialised with topic creations (so that a topic created meanwhile does not miss
        // the new defaults) and with other alterations (each starts from the last one's).
        let _altering = self.creations.lock().await;
        let view = self.dynamic.view();
        let configs =
            change(view.layers.of(resource_name)).map_err(AlterBrokerConfigsError::Refused)?;
        dynamic_config::validate_change(&view, resource_name, &configs)
            .map_err(AlterBrokerConfigsError::Refused)?;
        if validate_only {
            return Ok(());
        }
        self.controller
            .alter_broker_configs(resource_name, configs.clone())
            .await?;
        match self.dynamic.replace(resource_name, configs) {
            Ok(live) => self.apply_live(&live),
            // Validated against the same layers above; only a bug gets here.
            Err(error) => {
                tracing::error!(%error, "a recorded dynamic broker config does not apply")
            }
        }
        Ok(())
    }

    /// Applies a new live configuration: every hosted topic's settings (the broker-level log
    /// defaults) and the connection limits.
    fn apply_live(&self, live: &Arc<BrokerConfig>) {
        self.replicas.set_live_config(Arc::clone(live));
        for topic in self.controller.image().topics() {
            match TopicSettings::resolve(live, &topic.configs) {
                Ok(settings) => self.replicas.update_topic_settings(&topic.name, &settings),
                Err(error) => tracing::error!(
                    topic = %topic.name, %error,
                    "the topic's configs do not resolve over the new broker defaults; kept as they were"
                ),
            }
        }
        self.connection_quotas.set_limits(
            live.connections_max_per_ip,
            live.connections_max_per_ip_overrides.clone(),
        );
    }

    /// Records a topic's removal, then deletes its partitions.
    pub async fn delete_topic(&self, topic_id: Uuid) -> Result<(), CreateTopicError> {
        let _deleting = self.creations.lock().await;
        let topic = self.controller.delete_topic(topic_id).await?;
        self.replicas.delete_topic(&topic.name)?;
        Ok(())
    }
}
