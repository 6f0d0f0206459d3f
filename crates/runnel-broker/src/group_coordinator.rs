//! The group coordinator's driver: the I/O around `runnel-coordinator`'s state machine.
//!
//! `__consumer_offsets` (internal, `offsets.topic.num.partitions` partitions, created at the
//! first group request) holds every group's records. Each of its partitions gets one task that
//! owns that partition's groups (DESIGN.md §3): it first replays the partition's records to
//! rebuild the groups (requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS), then takes
//! requests from a bounded queue, each with a oneshot reply, and sleeps until the state
//! machine's next deadline (session, rebalance and retention timers) when idle: no polling.
//!
//! A request's records are appended as one record batch through [`ReplicaManager::append`],
//! the produce path, and its replies are sent only once that batch is below the high
//! watermark (fsync'd in durable mode), so an acknowledged commit survives a crash. Parked
//! JoinGroup/SyncGroup replies live inside the state machine until their rebalance completes.
//!
//! Transactions (TxnOffsetCommit): a transactional commit's records are one transactional
//! batch of its producer, sequenced after the producer's last batch in this partition, so the
//! log's producer checks hold; the transaction coordinator's COMMIT or ABORT for this partition
//! comes in as a request ([`GroupCoordinator::complete_txn`]) so that the marker is appended by
//! this task, in order with its other records. Both the transactional offsets and the marker
//! apply only once they are in the log (replayed, as a load replays them). A load replays transactional batches as pending and markers as their end.
//!
//! Group → partition is Kafka's hash ([`runnel_coordinator::partition_for`]) over the topic's
//! actual partition count, so a data directory keeps its layout if the setting changes.
//!
//! [`ReplicaManager::append`]: crate::replica_manager::ReplicaManager::append

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use runnel_coordinator::request::{
    JoinResult, LeaveResult, OffsetDeleteResult, Request, Response, SyncResult,
};
use runnel_coordinator::{partition_for, Coordinator, CoordinatorRecord, Output, OutputBatch};
use runnel_protocol::control_record::ControlRecord;
use runnel_protocol::record_batch::{self, BatchProducer};
use runnel_protocol::records::RecordBatchDecoder;
use runnel_protocol::ErrorCode;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::coordinator_shards::HostedShards;
use crate::partition::Partition;

/// Kafka's internal topic of group records.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Requests queued per `__consumer_offsets` partition before senders wait.
const SHARD_QUEUE_REQUESTS_MAX: usize = 1024;
/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1024 * 1024;

type Responder = oneshot::Sender<Response>;

struct Command {
    request: Request,
    reply: Responder,
}

struct Shard {
    commands: mpsc::Sender<Command>,
    loaded: Arc<AtomicBool>,
}

type Shards = HostedShards<Shard>;

/// The config overrides `__consumer_offsets` is created with (Kafka's: compacted).
pub(crate) fn offsets_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([("cleanup.policy".into(), "compact".into())])
}

/// The broker's handle on the coordinator tasks.
#[derive(Default)]
pub struct GroupCoordinator {
    shards: OnceLock<Shards>,
    starting: tokio::sync::Mutex<()>,
}

impl GroupCoordinator {
    /// Starts the tasks of the `__consumer_offsets` partitions this broker leads, if the
    /// topic exists (at broker start).
    pub async fn start_if_present(broker: &Arc<Broker>) {
        if broker.controller.image().topic(OFFSETS_TOPIC).is_some() {
            if let Err(error) = Self::shards(broker).await {
                tracing::error!(%error, "could not start the group coordinator");
            }
        }
    }

    /// The partition tasks, creating `__consumer_offsets` on first use: those of the partitions
    /// this broker leads start with it, one led here later at its first request
    /// ([`HostedShards`]).
    async fn shards(broker: &Arc<Broker>) -> Result<&Shards, ErrorCode> {
        let this = &broker.groups;
        if let Some(shards) = this.shards.get() {
            return Ok(shards);
        }
        let _starting = this.starting.lock().await;
        if let Some(shards) = this.shards.get() {
            return Ok(shards);
        }
        let topic = match broker.controller.image().topic(OFFSETS_TOPIC) {
            Some(topic) => Arc::clone(topic),
            None => {
                let configs = offsets_topic_configs();
                let partitions = broker.config.offsets_topic_num_partitions;
                let factor = broker
                    .internal_topic_factor(broker.config.offsets_topic_replication_factor)
                    .map_err(|needed| {
                        tracing::info!(needed, "{OFFSETS_TOPIC} waits for enough unfenced brokers");
                        ErrorCode::CoordinatorNotAvailable
                    })?;
                tracing::info!(partitions, factor, "creating {OFFSETS_TOPIC}");
                broker
                    .create_topic_on(OFFSETS_TOPIC, partitions, None, factor, configs)
                    .await
                    .map_err(|error| {
                        if crate::broker::created_meanwhile(&error) {
                            tracing::info!(
                                "{OFFSETS_TOPIC} was created meanwhile through another node"
                            );
                        } else {
                            tracing::error!(%error, "creating {OFFSETS_TOPIC} failed");
                        }
                        ErrorCode::CoordinatorNotAvailable
                    })?
            }
        };
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        let _ = this.shards.set(Shards::new(OFFSETS_TOPIC, count));
        let shards = this.shards.get().expect("just set");
        // Every partition led here loads now, not at its first request.
        shards.start_led(broker, |partition| start_shard(broker, partition));
        Ok(shards)
    }

    /// The task of `__consumer_offsets` partition `partition`, started if this broker leads
    /// it; NOT_COORDINATOR when another broker does.
    fn shard(
        broker: &Arc<Broker>,
        shards: &Shards,
        partition: i32,
    ) -> Result<Arc<Shard>, ErrorCode> {
        shards
            .get_or_start(broker, partition, |hosted| start_shard(broker, hosted))
            .ok_or(ErrorCode::NotCoordinator)
    }

    /// Makes sure the coordinator runs (FindCoordinator's job); `Err` is the error to answer.
    pub async fn ensure_started(broker: &Arc<Broker>) -> Result<(), ErrorCode> {
        Self::shards(broker).await.map(|_| ())
    }

    /// Sends `request` to the task owning `group_id` and waits for its answer.
    pub async fn call(
        broker: &Arc<Broker>,
        group_id: &str,
        request: Request,
    ) -> Result<Response, ErrorCode> {
        let shards = Self::shards(broker).await?;
        let shard = Self::shard(broker, shards, partition_for(group_id, shards.count()))?;
        call_shard(&shard, request).await
    }

    /// Asks the task of `__consumer_offsets` partition `partition` to write a transaction
    /// marker and apply it to the producer's pending offsets; `Ok` once the marker is durable.
    pub async fn complete_txn(
        broker: &Arc<Broker>,
        partition: i32,
        request: runnel_coordinator::request::CompleteTxnRequest,
    ) -> Result<(), ErrorCode> {
        let shards = Self::shards(broker).await?;
        if !(0..shards.count()).contains(&partition) {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        let shard = shards
            .get_or_start(broker, partition, |hosted| start_shard(broker, hosted))
            .ok_or_else(|| broker.not_hosted_error(OFFSETS_TOPIC, partition))?;
        match call_shard(&shard, Request::CompleteTxn(request)).await? {
            Response::CompleteTxn(ErrorCode::None) => Ok(()),
            Response::CompleteTxn(error) => Err(error),
            _ => Err(ErrorCode::UnknownServerError),
        }
    }

    /// Sends a request to the task of every partition this broker leads (ListGroups: the
    /// groups this broker coordinates, as in Kafka) and collects the answers.
    pub async fn call_all(
        broker: &Arc<Broker>,
        request: impl Fn() -> Request,
    ) -> Result<Vec<Response>, ErrorCode> {
        let shards = Self::shards(broker).await?;
        shards.start_led(broker, |partition| start_shard(broker, partition));
        let running = shards.all_running();
        let mut responses = Vec::with_capacity(running.len());
        for shard in &running {
            responses.push(call_shard(shard, request()).await?);
        }
        Ok(responses)
    }

    /// Follows the leadership of `__consumer_offsets` in the image just applied: loads the
    /// partitions this broker now leads, stops the shards of those it no longer does (see
    /// `coordinator_shards.rs`). Nothing happens before the coordinator started.
    pub fn follow_leadership(broker: &Arc<Broker>) {
        if let Some(shards) = broker.groups.shards.get() {
            shards.start_led(broker, |partition| start_shard(broker, partition));
        }
    }

    /// Stops the tasks (at broker shutdown): queues close, tasks finish what they hold.
    pub async fn shutdown(&self) {
        if let Some(shards) = self.shards.get() {
            shards.shutdown().await;
        }
    }
}

/// Starts the task of `__consumer_offsets` partition `partition` (it loads the partition
/// first).
fn start_shard(broker: &Arc<Broker>, partition: Arc<Partition>) -> (Shard, JoinHandle<()>) {
    let (commands, receiver) = mpsc::channel(SHARD_QUEUE_REQUESTS_MAX);
    let loaded = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(run_shard(
        Arc::clone(broker),
        partition,
        receiver,
        Arc::clone(&loaded),
    ));
    (Shard { commands, loaded }, task)
}

async fn call_shard(shard: &Shard, request: Request) -> Result<Response, ErrorCode> {
    if !shard.loaded.load(Ordering::Acquire) {
        return Err(ErrorCode::CoordinatorLoadInProgress);
    }
    let (reply, answer) = oneshot::channel();
    shard
        .commands
        .send(Command { request, reply })
        .await
        .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
    answer.await.map_err(|_| ErrorCode::CoordinatorNotAvailable)
}

async fn run_shard(
    broker: Arc<Broker>,
    partition: Arc<Partition>,
    mut commands: mpsc::Receiver<Command>,
    loaded: Arc<AtomicBool>,
) {
    let mut coordinator = Coordinator::new(broker.config.groups.clone(), crate::now_ms());
    let reading = Arc::clone(&partition);
    match tokio::task::spawn_blocking(move || load(&reading)).await {
        Ok(records) => {
            let now = crate::now_ms();
            for loaded in records {
                match loaded {
                    Loaded::Record(record) => coordinator.replay(record, now),
                    Loaded::Transactional(producer_id, record) => {
                        coordinator.replay_transactional(producer_id, record, now)
                    }
                    Loaded::Marker(producer_id, commit) => {
                        coordinator.replay_marker(producer_id, commit, now)
                    }
                }
            }
            coordinator.finish_load();
        }
        Err(error) => tracing::error!(%error, "loading {OFFSETS_TOPIC} failed"),
    }
    if coordinator.group_count() > 0 {
        tracing::info!(
            partition = partition.index,
            groups = coordinator.group_count(),
            "loaded groups"
        );
    }
    loaded.store(true, Ordering::Release);
    loop {
        let wait_ms = (coordinator.next_deadline_ms() - crate::now_ms()).max(0) as u64;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        let output = tokio::select! {
            command = commands.recv() => match command {
                Some(Command { request, reply }) => {
                    tracing::debug!(partition = partition.index, ?request, "group request");
                    coordinator.handle(request, reply, crate::now_ms())
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => coordinator.expire(crate::now_ms()),
        };
        apply(&broker, &partition, &mut coordinator, output);
    }
}

/// Appends the output's records (or marker) and sends its replies once they are durable.
fn apply(
    broker: &Broker,
    partition: &Arc<Partition>,
    coordinator: &mut Coordinator<Responder>,
    output: Output<Responder>,
) {
    let Output {
        records,
        batch,
        replies,
    } = output;
    let now = crate::now_ms();
    // Read before the append: a leadership that changes after it fails the wait.
    let leader_epoch = partition.leader_epoch();
    let appended = match batch {
        OutputBatch::Plain if records.is_empty() => {
            send_all(replies);
            return;
        }
        OutputBatch::Plain => {
            let mut batch = encode_batch(&records, None, now);
            broker.replicas.append(partition, &mut batch, false)
        }
        OutputBatch::Transactional {
            producer_id,
            producer_epoch,
        } => {
            let producer = BatchProducer {
                producer_id,
                producer_epoch,
                base_sequence: next_sequence(partition, producer_id, producer_epoch),
                transactional: true,
            };
            let mut batch = encode_batch(&records, Some(producer), now);
            let appended = broker
                .replicas
                .append_coordinator_batch(partition, &mut batch);
            if appended.is_ok() {
                for record in records {
                    coordinator.replay_transactional(producer_id, record, now);
                }
            }
            appended
        }
        OutputBatch::Marker {
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
        } => {
            let marker = ControlRecord::marker(commit, coordinator_epoch);
            let mut batch = marker.encode_batch(producer_id, producer_epoch, now);
            let appended = broker
                .replicas
                .append_coordinator_batch(partition, &mut batch);
            if appended.is_ok() {
                coordinator.replay_marker(producer_id, commit, now);
            }
            appended
        }
    };
    match appended {
        // Kafka's group coordinator appends with acks=all: answered once the in-sync
        // replicas hold the records (and, in durable mode, once they are fsync'd here).
        Ok(appended) if broker.replicas.is_durable() || partition.has_followers() => {
            let partition = Arc::clone(partition);
            tokio::spawn(async move {
                let kept = partition
                    .wait_for_high_watermark_above_while_leading(appended.last_offset, leader_epoch)
                    .await;
                if kept {
                    send_all(replies);
                } else {
                    // The leadership moved while the records waited (Kafka's DelayedProduce
                    // answers NOT_LEADER_OR_FOLLOWER, which its group coordinator turns into
                    // NOT_COORDINATOR): the new leader may not hold them, and the client
                    // finds the new coordinator and sends them again.
                    send_all(
                        replies
                            .into_iter()
                            .map(|(to, response)| (to, failed(response, ErrorCode::NotCoordinator)))
                            .collect(),
                    );
                }
            });
        }
        Ok(_) => send_all(replies),
        Err(error) => {
            let code = match batch {
                // The producer's own error (a fenced epoch) is the answer.
                OutputBatch::Transactional { .. } | OutputBatch::Marker { .. } => {
                    tracing::warn!(partition = partition.index, %error,
                        "appending a transactional group batch failed");
                    match error.error_code() {
                        ErrorCode::KafkaStorageError => ErrorCode::CoordinatorNotAvailable,
                        code => code,
                    }
                }
                OutputBatch::Plain => {
                    tracing::error!(partition = partition.index, %error,
                        "appending group records failed");
                    ErrorCode::CoordinatorNotAvailable
                }
            };
            send_all(
                replies
                    .into_iter()
                    .map(|(to, response)| (to, failed(response, code)))
                    .collect(),
            );
        }
    }
}

/// The base sequence of `producer_id`'s next batch in this partition: after its last one at
/// the same epoch, 0 at a new epoch (the log's idempotent-producer rules, which a
/// coordinator's transactional batch must also satisfy).
fn next_sequence(partition: &Partition, producer_id: i64, producer_epoch: i16) -> i32 {
    partition.with_log(|log| match log.producer_state().entry(producer_id) {
        Some(entry) if entry.epoch == producer_epoch => {
            entry
                .batches
                .back()
                .map_or(0, |last| match last.last_sequence {
                    i32::MAX => 0,
                    sequence => sequence + 1,
                })
        }
        _ => 0,
    })
}

fn send_all(replies: Vec<(Responder, Response)>) {
    for (to, response) in replies {
        tracing::debug!(?response, "group response");
        // The requester may have gone (connection closed); nothing to do then.
        let _ = to.send(response);
    }
}

/// A response whose records could not be written: every success becomes `error`.
fn failed(response: Response, error: ErrorCode) -> Response {
    match response {
        Response::Join(result) => Response::Join(JoinResult::error(error, &result.member_id)),
        Response::Sync(_) => Response::Sync(SyncResult::error(error)),
        Response::Heartbeat(_) => Response::Heartbeat(error),
        Response::Leave(result) => Response::Leave(LeaveResult {
            error,
            members: result.members,
        }),
        Response::Commit(partitions) => Response::Commit(
            partitions
                .into_iter()
                .map(|(topic, partition, _)| (topic, partition, error))
                .collect(),
        ),
        Response::TxnCommit(partitions) => Response::TxnCommit(
            partitions
                .into_iter()
                .map(|(topic, partition, _)| (topic, partition, error))
                .collect(),
        ),
        Response::CompleteTxn(_) => Response::CompleteTxn(error),
        Response::Delete(groups) => {
            Response::Delete(groups.into_iter().map(|(id, _)| (id, error)).collect())
        }
        Response::OffsetDelete(_) => Response::OffsetDelete(OffsetDeleteResult {
            error,
            partitions: Vec::new(),
        }),
        other => other,
    }
}

/// One uncompressed record batch holding `records` (keys and values per `record.rs`), of
/// `producer` when given.
fn encode_batch(
    records: &[CoordinatorRecord],
    producer: Option<BatchProducer>,
    timestamp: i64,
) -> Vec<u8> {
    let entries = records.iter().map(|record| {
        let (key, value) = record.encode();
        (Some(key), value)
    });
    record_batch::encode_producer_batch(entries, producer, timestamp)
}

/// What a load reads from `__consumer_offsets`, in offset order.
enum Loaded {
    Record(CoordinatorRecord),
    /// A record of a transactional batch of this producer (TxnOffsetCommit).
    Transactional(i64, CoordinatorRecord),
    /// This producer's marker: COMMIT (true) or ABORT.
    Marker(i64, bool),
}

/// Reads every record of one `__consumer_offsets` partition, in offset order. A batch or
/// record that does not decode is logged and skipped: the rest still loads.
fn load(partition: &Partition) -> Vec<Loaded> {
    let mut loaded = Vec::new();
    scan_batches(partition, OFFSETS_TOPIC, |header, bytes| {
        if header.is_control() {
            match ControlRecord::decode_batch(bytes) {
                Ok(marker) if marker.coordinator_epoch.is_some() => {
                    loaded.push(Loaded::Marker(header.producer_id, marker.is_commit()))
                }
                Ok(_) => {}
                Err(error) => tracing::error!(
                    %error, offset = header.base_offset,
                    "skipping an unreadable {OFFSETS_TOPIC} control batch"
                ),
            }
            return;
        }
        let transactional = header.is_transactional().then_some(header.producer_id);
        for (key, value) in batch_records(header, bytes, OFFSETS_TOPIC) {
            match CoordinatorRecord::decode(key.as_deref(), value.as_deref()) {
                Ok(decoded) => loaded.push(match transactional {
                    Some(producer_id) => Loaded::Transactional(producer_id, decoded),
                    None => Loaded::Record(decoded),
                }),
                Err(error) => tracing::error!(
                    %error, batch = header.base_offset,
                    "skipping an unreadable {OFFSETS_TOPIC} record"
                ),
            }
        }
    });
    loaded
}

/// Calls `visit` with every batch of an internal topic's partition (`topic` names it in log
/// lines), in offset order, reading at most [`LOAD_READ_BYTES`] at a time under the log's
/// lock. A read error or an unreadable batch ends the scan there (logged): what came before
/// still loads. Shared by the group and transaction coordinators' loads.
pub(crate) fn scan_batches(
    partition: &Partition,
    topic: &str,
    mut visit: impl FnMut(&record_batch::BatchHeader, &[u8]),
) {
    partition.with_log(|log| {
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        while offset < end {
            let bytes = match log
                .read(offset, LOAD_READ_BYTES, end, true)
                .and_then(|slice| {
                    slice
                        .read_bytes()
                        .map_err(|source| runnel_log::ReadError::Io {
                            op: "read",
                            path: log.dir().to_path_buf(),
                            source,
                        })
                }) {
                Ok(bytes) if !bytes.is_empty() => bytes,
                Ok(_) => break,
                Err(error) => {
                    tracing::error!(%error, offset, "reading {topic} failed");
                    break;
                }
            };
            let before = offset;
            for item in record_batch::batches(&bytes) {
                let Ok((header, range)) = item else {
                    tracing::error!(offset, "unreadable batch in {topic}");
                    break;
                };
                offset = header.last_offset() + 1;
                visit(&header, &bytes[range]);
            }
            if offset == before {
                break;
            }
        }
    })
}

/// The keys and values of one batch's records; none (logged) when it does not decode.
pub(crate) fn batch_records(
    header: &record_batch::BatchHeader,
    bytes: &[u8],
    topic: &str,
) -> Vec<(Option<Bytes>, Option<Bytes>)> {
    let mut batch = Bytes::copy_from_slice(bytes);
    match RecordBatchDecoder::decode(&mut batch) {
        Ok(set) => set
            .records
            .into_iter()
            .map(|record| (record.key, record.value))
            .collect(),
        Err(error) => {
            tracing::error!(%error, offset = header.base_offset,
                "skipping an unreadable {topic} batch");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition whose groups are still being read from `__consumer_offsets` answers
    /// COORDINATOR_LOAD_IN_PROGRESS, which clients retry; nothing reaches the coordinator.
    #[tokio::test]
    async fn requests_to_a_loading_partition_are_coordinator_load_in_progress() {
        let (commands, mut received) = mpsc::channel(1);
        let shard = Shard {
            commands,
            loaded: Arc::new(AtomicBool::new(false)),
        };
        let request = Request::List(Vec::new());
        assert_eq!(
            call_shard(&shard, request).await.err(),
            Some(ErrorCode::CoordinatorLoadInProgress)
        );
        assert!(received.try_recv().is_err());
    }
}
