//! The transaction coordinator's driver: the I/O around `runnel-coordinator`'s
//! [`TxnCoordinator`] (Kafka's `TransactionCoordinator`, `TransactionStateManager` and
//! `TransactionMarkerChannelManager` on one node).
//!
//! `__transaction_state` (internal, compacted, `transaction.state.log.num.partitions`
//! partitions, created at the first transactional request like `__consumer_offsets`) holds
//! every transactional id's state. Each of its partitions gets one task that owns that
//! partition's ids (DESIGN.md §3): it replays the partition's records first (requests
//! meanwhile get COORDINATOR_LOAD_IN_PROGRESS), then takes requests from a bounded queue, each
//! with a oneshot reply, hears back from its marker writers on a second bounded queue, and
//! sleeps until the state machine's next deadline (timed-out transactions, expired ids).
//!
//! Order of effects, as the state machine asks (its module doc):
//! - an output's records are appended as one batch through [`ReplicaManager::append`], the
//!   produce path; its replies leave only once everything appended so far is below the high
//!   watermark (fsync'd in durable mode), so an acknowledged EndTxn survives a crash;
//! - then its markers are written: a control batch (COMMIT or ABORT, the coordinator epoch =
//!   this partition's leader epoch) appended to every partition of the transaction with
//!   [`ReplicaManager::append_coordinator_batch`] and waited on until durable; a
//!   `__consumer_offsets` partition's marker is written by the group coordinator's task, which
//!   applies it to the pending transactional offsets ([`GroupCoordinator::complete_txn`]). A
//!   partition that fails is retried with a backoff until it succeeds, no longer exists, or
//!   refuses the marker for good (a newer producer or coordinator epoch); then
//!   [`TxnCoordinator::markers_written`] completes the transaction;
//! - an append that fails fails its output's replies (NOT_COORDINATOR, which clients answer by
//!   finding the coordinator again), drops its markers and rebuilds the state machine from the
//!   log, which is the truth. A transaction found prepared at load gets its markers again.
//!
//! KIP-890 part 1: the produce path verifies a transactional batch against the coordinator
//! without a round trip, through each partition's [`TxnView`]: the state of each transactional
//! id as of its last transition, published by the task before any reply that reveals it.
//!
//! [`ReplicaManager::append`]: crate::replica_manager::ReplicaManager::append
//! [`ReplicaManager::append_coordinator_batch`]: crate::replica_manager::ReplicaManager::append_coordinator_batch

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use runnel_coordinator::request::CompleteTxnRequest;
use runnel_coordinator::transaction::request::{
    AddPartitionsRequest, ListTxnFilter, ListedTxn, TxnDescription,
};
use runnel_coordinator::transaction::{
    partition_for_transactional_id, ProducerIdAllocator, TxnConfig, TxnCoordinator, TxnErrorCode,
    TxnMetadata, TxnOutput, TxnRecord, TxnRequest, TxnResponse, TxnResult, TxnState, TxnVersion,
    WriteMarkers, TRANSACTION_STATE_TOPIC,
};
use runnel_protocol::control_record::ControlRecord;
use runnel_protocol::record_batch;
use runnel_protocol::ErrorCode;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::coordinator_shards::HostedShards;
use crate::group_coordinator::{self, GroupCoordinator, OFFSETS_TOPIC};
use crate::inter_broker::MarkerRequest;
use crate::partition::Partition;
use crate::producer_ids::ProducerIds;

/// Requests queued per `__transaction_state` partition before senders wait.
const SHARD_QUEUE_REQUESTS_MAX: usize = 1024;
/// Marker completions queued back to a partition's task before marker writers wait.
const MARKER_COMPLETIONS_MAX: usize = 1024;
/// The first and the longest pause before a failed marker append (or a failed state append's
/// reload) is retried.
const RETRY_BACKOFF_MS: u64 = 100;
const RETRY_BACKOFF_MAX_MS: u64 = 5_000;
/// How long a marker sent to another broker may take (connect, write, durable, answer).
const MARKER_SEND_DEADLINE: Duration = Duration::from_secs(10);

type Responder = oneshot::Sender<TxnResponse>;

struct Command {
    request: TxnRequest,
    reply: Responder,
}

/// One `__transaction_state` partition's transactional ids as of their last transition, for
/// the produce path's verification (KIP-890 part 1). Written only by the partition's task.
type TxnView = Arc<RwLock<HashMap<String, TxnMetadata>>>;

struct Shard {
    commands: mpsc::Sender<Command>,
    loaded: Arc<AtomicBool>,
    view: TxnView,
}

type Shards = HostedShards<Shard>;

/// The config overrides `__transaction_state` is created with (Kafka's: compacted).
fn transaction_state_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([("cleanup.policy".into(), "compact".into())])
}

/// The broker's handle on the transaction coordinator's tasks.
#[derive(Default)]
pub struct TransactionCoordinator {
    shards: OnceLock<Shards>,
    starting: tokio::sync::Mutex<()>,
}

impl TransactionCoordinator {
    /// Starts the tasks of the `__transaction_state` partitions this broker leads if the
    /// topic exists (at broker start), so that transactions left open or prepared by the last
    /// run are timed out or completed.
    pub async fn start_if_present(broker: &Arc<Broker>) {
        if broker
            .controller
            .image()
            .topic(TRANSACTION_STATE_TOPIC)
            .is_some()
        {
            if let Err(error) = Self::shards(broker).await {
                tracing::error!(%error, "could not start the transaction coordinator");
            }
        }
    }

    /// The partition tasks, creating `__transaction_state` on first use: those of the partitions
    /// this broker leads start with it, one led here later at its first request
    /// ([`HostedShards`]).
    async fn shards(broker: &Arc<Broker>) -> Result<&Shards, TxnErrorCode> {
        let this = &broker.txns;
        if let Some(shards) = this.shards.get() {
            return Ok(shards);
        }
        let _starting = this.starting.lock().await;
        if let Some(shards) = this.shards.get() {
            return Ok(shards);
        }
        let topic = match broker.controller.image().topic(TRANSACTION_STATE_TOPIC) {
            Some(topic) => Arc::clone(topic),
            None => {
                let partitions = broker.config.transaction_state_log_num_partitions;
                let factor = broker
                    .internal_topic_factor(broker.config.transaction_state_log_replication_factor)
                    .map_err(|needed| {
                        tracing::info!(
                            needed,
                            "{TRANSACTION_STATE_TOPIC} waits for enough unfenced brokers"
                        );
                        TxnErrorCode::CoordinatorNotAvailable
                    })?;
                tracing::info!(partitions, factor, "creating {TRANSACTION_STATE_TOPIC}");
                broker
                    .create_topic_on(
                        TRANSACTION_STATE_TOPIC,
                        partitions,
                        None,
                        factor,
                        transaction_state_topic_configs(),
                    )
                    .await
                    .map_err(|error| {
                        if crate::broker::created_meanwhile(&error) {
                            tracing::info!(
                                "{TRANSACTION_STATE_TOPIC} was created meanwhile through another node"
                            );
                        } else {
                            tracing::error!(%error, "creating {TRANSACTION_STATE_TOPIC} failed");
                        }
                        TxnErrorCode::CoordinatorNotAvailable
                    })?
            }
        };
        // The coordinator's state machine takes producer ids without waiting: one block at
        // hand before it starts (`producer_ids.rs`).
        ProducerIds::ensure_block(broker).await.map_err(|error| {
            tracing::error!(%error, "could not record a producer id block");
            TxnErrorCode::CoordinatorNotAvailable
        })?;
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        let _ = this.shards.set(Shards::new(TRANSACTION_STATE_TOPIC, count));
        let shards = this.shards.get().expect("just set");
        // Every partition led here loads now, not at its first request.
        shards.start_led(broker, |p| start_shard(broker, count, p));
        Ok(shards)
    }

    /// The task owning `transactional_id`, started if this broker leads its partition;
    /// NOT_COORDINATOR when another broker does.
    fn shard(
        broker: &Arc<Broker>,
        shards: &Shards,
        transactional_id: &str,
    ) -> Result<Arc<Shard>, TxnErrorCode> {
        let index = partition_for_transactional_id(transactional_id, shards.count());
        shards
            .get_or_start(broker, index, |p| start_shard(broker, shards.count(), p))
            .ok_or(TxnErrorCode::NotCoordinator)
    }

    /// Makes sure the coordinator runs (FindCoordinator's job); `Err` is the error to answer.
    pub async fn ensure_started(broker: &Arc<Broker>) -> Result<(), TxnErrorCode> {
        Self::shards(broker).await.map(|_| ())
    }

    /// Sends `request` to the task owning `transactional_id` and waits for its answer (a
    /// failure answer when the coordinator cannot be reached).
    pub async fn call(
        broker: &Arc<Broker>,
        transactional_id: &str,
        request: TxnRequest,
    ) -> TxnResponse {
        let shard = match Self::shards(broker).await {
            Ok(shards) => Self::shard(broker, shards, transactional_id),
            Err(error) => Err(error),
        };
        match shard {
            Ok(shard) => call_shard(&shard, request).await,
            Err(error) => TxnResponse::failed(&request, error),
        }
    }

    /// Transactions v2 (KIP-890 part 2): adds `partitions` to the producer's ongoing
    /// transaction on the broker's behalf, as Kafka's partition leaders (for Produce) and group
    /// coordinator (for TxnOffsetCommit) do through `AddPartitionsToTxnManager` with
    /// `ADD_PARTITION`. One verdict per partition, in request order.
    pub async fn add_partitions_v2(
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Vec<((String, i32), TxnErrorCode)> {
        // In a cluster the transactional id's coordinator may be another broker: asked there.
        if let Some(elsewhere) = Self::coordinator_elsewhere(broker, transactional_id) {
            return Self::ask_elsewhere(
                elsewhere,
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                false,
            )
            .await;
        }
        let request = TxnRequest::AddPartitions(AddPartitionsRequest {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch,
            partitions: partitions.clone(),
            client_version: TxnVersion::V2,
        });
        match Self::call(broker, transactional_id, request).await {
            TxnResponse::AddPartitions(results) if results.len() == partitions.len() => results,
            _ => partitions
                .into_iter()
                .map(|p| (p, TxnErrorCode::UnknownServerError))
                .collect(),
        }
    }

    /// AddPartitionsToTxn v5 at `transactional_id`'s coordinator, another broker: adds the
    /// partitions (KIP-890 part 2), or with `verify_only` asks whether the transaction holds
    /// them (part 1). One verdict per partition, in request order; NETWORK_EXCEPTION for each
    /// when the coordinator could not be asked.
    pub(crate) async fn ask_elsewhere(
        (leader, at): (i32, runnel_metadata::BrokerRegistration),
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
        verify_only: bool,
    ) -> Vec<((String, i32), TxnErrorCode)> {
        let asked = crate::inter_broker::add_partitions_to_txn(
            leader,
            &at.host,
            at.port,
            transactional_id,
            producer_id,
            producer_epoch,
            &partitions,
            verify_only,
            MARKER_SEND_DEADLINE,
        )
        .await;
        match asked {
            Ok(codes) => partitions
                .into_iter()
                .zip(codes)
                .map(|(p, code)| (p, txn_error_of(code)))
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "asking the transaction coordinator");
                partitions
                    .into_iter()
                    .map(|p| (p, TxnErrorCode::NetworkException))
                    .collect()
            }
        }
    }

    /// KIP-890 part 1 for one partition, wherever `transactional_id`'s coordinator runs: this
    /// broker's view ([`TransactionCoordinator::verify`]), or AddPartitionsToTxn v5 with
    /// `verify_only` at the coordinator on another broker.
    pub async fn verify_anywhere(
        broker: &Broker,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partition: (String, i32),
    ) -> TxnErrorCode {
        let Some(elsewhere) = Self::coordinator_elsewhere(broker, transactional_id) else {
            return Self::verify(
                broker,
                transactional_id,
                producer_id,
                producer_epoch,
                &partition,
            );
        };
        Self::ask_elsewhere(
            elsewhere,
            transactional_id,
            producer_id,
            producer_epoch,
            vec![partition],
            true,
        )
        .await
        .into_iter()
        .map(|(_, error)| error)
        .next()
        .unwrap_or(TxnErrorCode::UnknownServerError)
    }

    /// The broker that coordinates `transactional_id` when it is another one: the leader of
    /// its `__transaction_state` partition, with its registration.
    pub(crate) fn coordinator_elsewhere(
        broker: &Broker,
        transactional_id: &str,
    ) -> Option<(i32, runnel_metadata::BrokerRegistration)> {
        match broker.coordinator_leader(
            TRANSACTION_STATE_TOPIC,
            transactional_id,
            partition_for_transactional_id,
        )? {
            (leader, Some(at)) if leader != broker.config.node_id => Some((leader, at)),
            _ => None,
        }
    }

    /// KIP-890 part 1, answered from the owning partition's view: whether a transactional
    /// batch of (producer id, epoch) for `partition` belongs to `transactional_id`'s ongoing
    /// transaction (Kafka's `handleVerifyPartitionsInTransaction`, without the round trip).
    /// COORDINATOR_NOT_AVAILABLE before any transactional request created the topic.
    pub fn verify(
        broker: &Broker,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partition: &(String, i32),
    ) -> TxnErrorCode {
        if transactional_id.is_empty() {
            return TxnErrorCode::InvalidRequest;
        }
        let Some(shards) = broker.txns.shards.get() else {
            return TxnErrorCode::CoordinatorNotAvailable;
        };
        let index = partition_for_transactional_id(transactional_id, shards.count());
        let Some(shard) = shards.running(broker, index) else {
            return TxnErrorCode::NotCoordinator;
        };
        if !shard.loaded.load(Ordering::Acquire) {
            return TxnErrorCode::CoordinatorLoadInProgress;
        }
        let view = shard.view.read().expect("transaction view lock poisoned");
        match view.get(transactional_id) {
            Some(txn) => txn.verify_partition(producer_id, producer_epoch, partition),
            None => TxnErrorCode::InvalidProducerIdMapping,
        }
    }

    /// ListTransactions: every partition's transactional ids that pass `filter`, sorted by id
    /// (Kafka's `TransactionStateManager.listTransactionStates` over the partitions this node
    /// leads). Before any transactional request created `__transaction_state` there is
    /// nothing to list, and nothing is created for the question. A partition still loading
    /// fails the whole answer with COORDINATOR_LOAD_IN_PROGRESS, as in Kafka.
    pub async fn list(
        broker: &Arc<Broker>,
        filter: ListTxnFilter,
    ) -> Result<Vec<ListedTxn>, TxnErrorCode> {
        let Some(shards) = broker.txns.shards.get() else {
            return Ok(Vec::new());
        };
        shards.start_led(broker, |p| start_shard(broker, shards.count(), p));
        let mut listed = Vec::new();
        for shard in &shards.all_running() {
            match call_shard(shard, TxnRequest::List(filter.clone())).await {
                TxnResponse::List(Ok(mut part)) => listed.append(&mut part),
                TxnResponse::List(Err(error)) => return Err(error),
                _ => return Err(TxnErrorCode::UnknownServerError),
            }
        }
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(listed)
    }

    /// DescribeTransactions of one id: asked of its partition's task. An id asked before
    /// `__transaction_state` exists is TRANSACTIONAL_ID_NOT_FOUND (Kafka answers so for an
    /// id its loaded partition does not hold); nothing is created for the question.
    pub async fn describe(broker: &Arc<Broker>, transactional_id: String) -> TxnDescription {
        if broker.txns.shards.get().is_none() {
            let error = if transactional_id.is_empty() {
                TxnErrorCode::InvalidRequest
            } else {
                TxnErrorCode::TransactionalIdNotFound
            };
            return TxnDescription::empty(transactional_id, error);
        }
        let id = transactional_id.clone();
        match Self::call(broker, &id, TxnRequest::Describe(vec![transactional_id])).await {
            // A partition that cannot answer describes the id with its error.
            TxnResponse::Describe(mut descriptions) if descriptions.len() == 1 => {
                descriptions.remove(0)
            }
            _ => TxnDescription::empty(id, TxnErrorCode::UnknownServerError),
        }
    }

    /// Follows the leadership of `__transaction_state` in the image just applied: loads the
    /// partitions this broker now leads, stops the shards of those it no longer does (see
    /// `coordinator_shards.rs`). Nothing happens before the coordinator started.
    pub fn follow_leadership(broker: &Arc<Broker>) {
        if let Some(shards) = broker.txns.shards.get() {
            shards.start_led(broker, |p| start_shard(broker, shards.count(), p));
        }
    }

    /// Transactions open or being completed (Ongoing, PrepareCommit, PrepareAbort), for
    /// `/metrics`.
    pub fn ongoing_transactions(&self) -> usize {
        let Some(shards) = self.shards.get() else {
            return 0;
        };
        shards
            .all_running()
            .iter()
            .map(|shard| {
                let view = shard.view.read().expect("transaction view lock poisoned");
                view.values()
                    .filter(|txn| txn.state == TxnState::Ongoing || txn.state.is_prepared())
                    .count()
            })
            .sum()
    }

    /// Stops the tasks (at broker shutdown). Durable state is in the log: a transaction left
    /// prepared is completed at the next start.
    pub async fn shutdown(&self) {
        if let Some(shards) = self.shards.get() {
            shards.shutdown().await;
        }
    }
}

/// Starts the task of `__transaction_state` partition `partition` (it loads the partition
/// first); the topic has `count` partitions.
fn start_shard(
    broker: &Arc<Broker>,
    count: i32,
    partition: Arc<Partition>,
) -> (Shard, JoinHandle<()>) {
    let config = txn_config(broker, usize::try_from(count).unwrap_or(0));
    let (commands, receiver) = mpsc::channel(SHARD_QUEUE_REQUESTS_MAX);
    let loaded = Arc::new(AtomicBool::new(false));
    let view = TxnView::default();
    let task = ShardTask::new(Arc::clone(broker), partition, config, Arc::clone(&view));
    let task = tokio::spawn(task.run(receiver, Arc::clone(&loaded)));
    let shard = Shard {
        commands,
        loaded,
        view,
    };
    (shard, task)
}

/// The coordinator's settings: the broker's, with the partition counts the topics have (so a
/// data directory keeps its layout if the settings change).
fn txn_config(broker: &Broker, transaction_state_partitions: usize) -> TxnConfig {
    let offsets_topic_partitions = broker
        .controller
        .image()
        .topic(OFFSETS_TOPIC)
        .map_or(broker.config.offsets_topic_num_partitions, |topic| {
            topic.partitions.len() as i32
        });
    TxnConfig {
        transaction_state_partitions: transaction_state_partitions as i32,
        offsets_topic_partitions,
        ..broker.config.transactions.clone()
    }
}

async fn call_shard(shard: &Shard, request: TxnRequest) -> TxnResponse {
    if !shard.loaded.load(Ordering::Acquire) {
        return TxnResponse::failed(&request, TxnErrorCode::CoordinatorLoadInProgress);
    }
    let unavailable = TxnResponse::failed(&request, TxnErrorCode::CoordinatorNotAvailable);
    let (reply, answer) = oneshot::channel();
    if shard
        .commands
        .send(Command { request, reply })
        .await
        .is_err()
    {
        return unavailable;
    }
    answer.await.unwrap_or(unavailable)
}

/// Producer ids from the controller's durable blocks (the same as idempotent producers').
struct ControllerProducerIds(Arc<Broker>);

impl ProducerIdAllocator for ControllerProducerIds {
    /// Never waits: with no block at hand the client is told to retry
    /// (COORDINATOR_LOAD_IN_PROGRESS, as Kafka's `RPCProducerIdManager` answers).
    fn allocate(&mut self) -> Result<i64, TxnErrorCode> {
        ProducerIds::allocate(&self.0).map_err(|error| {
            tracing::info!(%error, "a transactional producer is asked to retry InitProducerId");
            TxnErrorCode::CoordinatorLoadInProgress
        })
    }
}

/// One `__transaction_state` partition's task.
struct ShardTask {
    broker: Arc<Broker>,
    partition: Arc<Partition>,
    config: TxnConfig,
    view: TxnView,
    completions: mpsc::Sender<WriteMarkers>,
    completed: Option<mpsc::Receiver<WriteMarkers>>,
    /// The last offset this task appended, with the leader epoch it was appended at: replies
    /// wait until the in-sync replicas hold it, while this broker still leads at that epoch.
    last_appended: Option<(i64, i32)>,
}

impl ShardTask {
    fn new(
        broker: Arc<Broker>,
        partition: Arc<Partition>,
        config: TxnConfig,
        view: TxnView,
    ) -> ShardTask {
        let (completions, completed) = mpsc::channel(MARKER_COMPLETIONS_MAX);
        ShardTask {
            broker,
            partition,
            config,
            view,
            completions,
            completed: Some(completed),
            last_appended: None,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, loaded: Arc<AtomicBool>) {
        let mut completed = self.completed.take().expect("a task runs once");
        let (mut coordinator, output) = self.load().await;
        loaded.store(true, Ordering::Release);
        self.apply(&mut coordinator, output).await;
        loop {
            let wait_ms = (coordinator.next_deadline_ms() - crate::now_ms()).max(0) as u64;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
            let output = tokio::select! {
                command = commands.recv() => match command {
                    Some(Command { request, reply }) => {
                        tracing::debug!(partition = self.partition.index, ?request,
                            "transaction request");
                        coordinator.handle(request, reply, crate::now_ms())
                    }
                    None => break,
                },
                Some(markers) = completed.recv() => {
                    coordinator.markers_written(&markers, crate::now_ms())
                }
                () = tokio::time::sleep_until(deadline) => coordinator.expire(crate::now_ms()),
            };
            self.apply(&mut coordinator, output).await;
        }
    }

    /// Rebuilds the state machine from the partition's records; returns it with what its
    /// `finish_load` asks (markers of transactions found prepared).
    async fn load(&mut self) -> (TxnCoordinator, TxnOutput<Responder>) {
        let partition = Arc::clone(&self.partition);
        let records = tokio::task::spawn_blocking(move || read_records(&partition))
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "loading {TRANSACTION_STATE_TOPIC} failed");
                Vec::new()
            });
        let now = crate::now_ms();
        let mut coordinator = TxnCoordinator::new(
            self.config.clone(),
            self.partition.index,
            self.partition.leader_epoch(),
            Box::new(ControllerProducerIds(Arc::clone(&self.broker))),
            now,
        );
        let ids: Vec<String> = records
            .iter()
            .map(|record| record.transactional_id.clone())
            .collect();
        for record in records {
            coordinator.replay(record);
        }
        let output = coordinator.finish_load(now);
        self.view
            .write()
            .expect("transaction view lock poisoned")
            .clear();
        self.publish(&coordinator, ids.iter().map(String::as_str));
        if coordinator.transaction_count() > 0 {
            tracing::info!(
                partition = self.partition.index,
                transactional_ids = coordinator.transaction_count(),
                "loaded transactional ids"
            );
        }
        (coordinator, output)
    }

    /// Copies the named ids' state into the view (removing the forgotten ones).
    fn publish<'a>(&self, coordinator: &TxnCoordinator, ids: impl Iterator<Item = &'a str>) {
        let mut view = self.view.write().expect("transaction view lock poisoned");
        for id in ids {
            match coordinator.transaction(id) {
                Some(txn) => {
                    view.insert(id.to_string(), txn.clone());
                }
                None => {
                    view.remove(id);
                }
            }
        }
    }

    /// Does what an output asks (module doc): append, then replies once durable, then markers.
    /// A failed append rebuilds the state machine from the log and applies what the reload
    /// asks, retrying with a backoff while appends keep failing.
    async fn apply(&mut self, coordinator: &mut TxnCoordinator, output: TxnOutput<Responder>) {
        let mut output = output;
        let mut backoff_ms = RETRY_BACKOFF_MS;
        while let Err(failed) = self.append_and_send(coordinator, output) {
            for (to, response) in failed {
                let _ = to.send(response.with_failure(TxnErrorCode::NotCoordinator));
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MAX_MS);
            let (reloaded, reload_output) = self.load().await;
            *coordinator = reloaded;
            output = reload_output;
        }
    }

    /// Appends the output's records; on success hands its replies and markers to a task that
    /// waits for durability. `Err` gives back the replies of a failed append.
    fn append_and_send(
        &mut self,
        coordinator: &TxnCoordinator,
        output: TxnOutput<Responder>,
    ) -> Result<(), Vec<(Responder, TxnResponse)>> {
        let TxnOutput {
            records,
            replies,
            markers,
        } = output;
        if !records.is_empty() {
            let entries = records.iter().map(|record| {
                let (key, value) = record.encode();
                (Some(key), value)
            });
            let mut batch = record_batch::encode_internal_batch(entries, crate::now_ms());
            // Read before the append: a leadership that changes after it fails the wait.
            let leader_epoch = self.partition.leader_epoch();
            match self
                .broker
                .replicas
                .append(&self.partition, &mut batch, false)
            {
                Ok(appended) => self.last_appended = Some((appended.last_offset, leader_epoch)),
                Err(error) => {
                    tracing::error!(partition = self.partition.index, %error,
                        "appending transaction records failed; reloading from the log");
                    return Err(replies);
                }
            }
            let ids = records
                .iter()
                .map(|record| record.transactional_id.as_str());
            self.publish(coordinator, ids);
        }
        if replies.is_empty() && markers.is_empty() {
            return Ok(());
        }
        let wait_for = self.last_appended;
        let partition = Arc::clone(&self.partition);
        let broker = Arc::clone(&self.broker);
        let completions = self.completions.clone();
        tokio::spawn(async move {
            if let Some((offset, leader_epoch)) = wait_for {
                let kept = partition
                    .wait_for_high_watermark_above_while_leading(offset, leader_epoch)
                    .await;
                if !kept {
                    // The leadership moved while the records waited (Kafka's DelayedProduce,
                    // which its transaction coordinator answers NOT_COORDINATOR): the new
                    // leader may not hold them. Its coordinator loads what it holds and
                    // completes the transactions there, markers included.
                    for (to, response) in replies {
                        let _ = to.send(response.with_failure(TxnErrorCode::NotCoordinator));
                    }
                    return;
                }
            }
            for (to, response) in replies {
                tracing::debug!(?response, "transaction response");
                // The requester may have gone (connection closed); nothing to do then.
                let _ = to.send(response);
            }
            for markers in markers {
                write_markers(&broker, &markers).await;
                // The task has stopped (shutdown): the next load completes the transaction.
                let _ = completions.send(markers).await;
            }
        });
        Ok(())
    }
}

/// Reads every record of one `__transaction_state` partition, in offset order; unreadable
/// ones are logged and skipped.
fn read_records(partition: &Partition) -> Vec<TxnRecord> {
    let mut records = Vec::new();
    group_coordinator::scan_batches(partition, TRANSACTION_STATE_TOPIC, |header, bytes| {
        if header.is_control() {
            return;
        }
        for (key, value) in group_coordinator::batch_records(header, bytes, TRANSACTION_STATE_TOPIC)
        {
            match TxnRecord::decode(key.as_deref(), value.as_deref()) {
                Ok(record) => records.push(record),
                Err(error) => tracing::error!(
                    %error, batch = header.base_offset,
                    "skipping an unreadable {TRANSACTION_STATE_TOPIC} record"
                ),
            }
        }
    });
    records
}

/// Why one partition's marker was not written.
enum MarkerFailure {
    /// The partition no longer exists: its marker is not needed (Kafka drops it too).
    Gone,
    /// The partition's log refuses the marker for good: its producer holds a newer epoch, or
    /// a newer coordinator epoch wrote its last marker (Kafka's marker channel stops sending
    /// on INVALID_PRODUCER_EPOCH and TRANSACTION_COORDINATOR_FENCED). Skipped, so that the
    /// transactional id is not held in its prepared state forever.
    Refused(String),
    /// Try again later.
    Retry(String),
}

/// Writes one transaction's marker to each of its partitions, one after the other, each
/// retried with a backoff until it is durable or its partition is gone.
async fn write_markers(broker: &Arc<Broker>, markers: &WriteMarkers) {
    for (topic, index) in &markers.partitions {
        let mut backoff_ms = RETRY_BACKOFF_MS;
        loop {
            match write_marker(broker, markers, topic, *index).await {
                Ok(()) => break,
                Err(MarkerFailure::Gone) => {
                    tracing::info!(transactional_id = %markers.transactional_id, topic,
                        partition = index, "skipping the marker of a partition that is gone");
                    break;
                }
                Err(MarkerFailure::Refused(error)) => {
                    tracing::warn!(transactional_id = %markers.transactional_id, topic,
                        partition = index, %error, "the partition refuses the marker; skipped");
                    break;
                }
                Err(MarkerFailure::Retry(error)) => {
                    tracing::warn!(transactional_id = %markers.transactional_id, topic,
                        partition = index, %error, retry_ms = backoff_ms,
                        "writing a transaction marker failed");
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                    backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MAX_MS);
                }
            }
        }
    }
    tracing::debug!(transactional_id = %markers.transactional_id, result = ?markers.result,
        "transaction markers written");
}

async fn write_marker(
    broker: &Arc<Broker>,
    markers: &WriteMarkers,
    topic: &str,
    index: i32,
) -> Result<(), MarkerFailure> {
    let marker = MarkerRequest {
        producer_id: markers.producer_id,
        producer_epoch: markers.producer_epoch,
        commit: markers.result == TxnResult::Commit,
        coordinator_epoch: markers.coordinator_epoch,
        topic,
        partition: index,
    };
    let code = match write_marker_here(broker, &marker).await {
        // Another broker leads it: sent there (Kafka's WriteTxnMarkers between brokers).
        Err(ErrorCode::NotLeaderOrFollower) => match broker.partition_leader(topic, index) {
            Some((leader, _, Some(at))) if leader != broker.config.node_id => {
                crate::inter_broker::write_txn_marker(
                    leader,
                    &at.host,
                    at.port,
                    &marker,
                    MARKER_SEND_DEADLINE,
                )
                .await
                .map_err(|error| MarkerFailure::Retry(error.to_string()))?
            }
            _ => ErrorCode::NotLeaderOrFollower,
        },
        Err(code) => code,
        Ok(()) => ErrorCode::None,
    };
    match code {
        ErrorCode::None => Ok(()),
        ErrorCode::UnknownTopicOrPartition => Err(MarkerFailure::Gone),
        ErrorCode::InvalidProducerEpoch | ErrorCode::TransactionCoordinatorFenced => {
            Err(MarkerFailure::Refused(code.to_string()))
        }
        code => Err(MarkerFailure::Retry(code.to_string())),
    }
}

/// Writes `marker` to its partition on this broker and waits until it is durable; the
/// partition's error code otherwise: `UNKNOWN_TOPIC_OR_PARTITION` when the partition is gone,
/// `NOT_LEADER_OR_FOLLOWER` when another broker holds it, `INVALID_PRODUCER_EPOCH` or
/// `TRANSACTION_COORDINATOR_FENCED` when its log refuses the marker for good. Used by this
/// broker's transaction coordinator and by WriteTxnMarkers from another broker's.
pub(crate) async fn write_marker_here(
    broker: &Arc<Broker>,
    marker: &MarkerRequest<'_>,
) -> Result<(), ErrorCode> {
    let (topic, index) = (marker.topic, marker.partition);
    if topic == OFFSETS_TOPIC && broker.replicas.partition(topic, index).is_some() {
        let request = CompleteTxnRequest {
            producer_id: marker.producer_id,
            producer_epoch: marker.producer_epoch,
            commit: marker.commit,
            coordinator_epoch: marker.coordinator_epoch,
        };
        return GroupCoordinator::complete_txn(broker, index, request).await;
    }
    let Some(partition) = broker.replicas.partition(topic, index) else {
        return Err(broker.not_hosted_error(topic, index));
    };
    let control = ControlRecord::marker(marker.commit, marker.coordinator_epoch);
    let mut batch =
        control.encode_batch(marker.producer_id, marker.producer_epoch, crate::now_ms());
    // Read before the append: a leadership that changes after it fails the wait.
    let leader_epoch = partition.leader_epoch();
    match broker
        .replicas
        .append_coordinator_batch(&partition, &mut batch)
    {
        Ok(appended) => {
            let kept = partition
                .wait_for_high_watermark_above_while_leading(appended.last_offset, leader_epoch)
                .await;
            if !kept {
                // The new leader may not hold the marker: written again there.
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            Ok(())
        }
        Err(error) => {
            let code = error.error_code();
            tracing::warn!(topic, partition = index, %error, "appending a transaction marker failed");
            Err(code)
        }
    }
}

/// The transaction error of Kafka code `code` (another broker's answer).
fn txn_error_of(code: i16) -> TxnErrorCode {
    [
        TxnErrorCode::None,
        TxnErrorCode::CoordinatorLoadInProgress,
        TxnErrorCode::CoordinatorNotAvailable,
        TxnErrorCode::NotCoordinator,
        TxnErrorCode::InvalidRequest,
        TxnErrorCode::InvalidProducerEpoch,
        TxnErrorCode::InvalidTxnState,
        TxnErrorCode::InvalidProducerIdMapping,
        TxnErrorCode::InvalidTransactionTimeout,
        TxnErrorCode::ConcurrentTransactions,
        TxnErrorCode::ProducerFenced,
        TxnErrorCode::TransactionalIdNotFound,
        TxnErrorCode::TransactionAbortable,
        TxnErrorCode::NetworkException,
    ]
    .into_iter()
    .find(|error| error.code() == code)
    .unwrap_or(TxnErrorCode::UnknownServerError)
}
