//! Produce (key 0): appends each partition's record batch, then answers once durable.
//!
//! The appends happen here, in the connection's request order, so pipelined batches of one
//! idempotent producer reach the log in sequence order. With acks=1 in durable mode the reply
//! waits until every appended partition's local end (its fsync'd offset here) passes the
//! batch; with acks=all until its high watermark does (in durable mode, or when the partition
//! has followers): every in-sync replica holds the batch, fsync'd in durable mode
//! (`replication/replica_set.rs`). Both are bounded by the request's `timeout_ms`
//! (`REQUEST_TIMED_OUT` past it). An acks=all batch whose ISR shrank below
//! `min.insync.replicas` while it waited gets `NOT_ENOUGH_REPLICAS_AFTER_APPEND`, as in Kafka.
//! acks=0 gets no response at all, as in Kafka. Each batch is appended from the request's
//! frame itself, not a copy: the decoded request is taken apart first (names copied, each
//! batch kept as its place in the frame) so that nothing else refers to the frame's bytes. A
//! batch refused because of some of its records names them in `record_errors` (KIP-467,
//! [`crate::record_errors`]).
//!
//! A transactional batch is appended only if its partition is in its producer's ongoing
//! transaction (KIP-890 part 1, Kafka's `ReplicaManager.appendRecords` with verification),
//! checked with the transaction coordinator ([`TransactionCoordinator::verify`]), so that a
//! late batch cannot start a transaction the coordinator does not know (a hanging one). The
//! coordinator's answers become what Kafka answers producers ([`refusal`]): INVALID_TXN_STATE
//! (TRANSACTION_ABORTABLE from v11) for a partition not added, INVALID_PRODUCER_EPOCH for a
//! fenced producer, NOT_ENOUGH_REPLICAS (retried by every client) while the coordinator loads,
//! moves or completes the transaction. A transactional batch in a request without a
//! transactional id is TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka answers it.
//!
//! Produce v12 is transactions v2 (KIP-890 part 2; the client saw `transaction.version` 2
//! finalized in ApiVersions and sends no AddPartitionsToTxn): a transactional batch for a
//! partition its transaction does not hold adds it, as Kafka's partition leader does with
//! `ADD_PARTITION`. The add is durable in `__transaction_state` before the batch is appended (a
//! crash between them must not leave data in a partition the coordinator would never write a
//! marker to), so such a request's appends wait for it: the handler returns
//! [`Reply::Ordered`] and the connection reads its next request only after these appends,
//! which keeps a pipelining producer's batches in sequence order. Once its partitions are in,
//! a transaction's later batches are verified from the coordinator's view and appended at
//! once. A delayed batch of an earlier transaction carries the epoch EndTxn v5 bumped past,
//! so it is fenced (INVALID_PRODUCER_EPOCH) instead of joining the current transaction: the
//! hole KIP-890 closes.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use runnel_coordinator::transaction::TxnErrorCode;
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use runnel_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use runnel_protocol::record_batch::BatchHeader;
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::Broker;
use crate::partition::Partition;
use crate::receive_buffers::FrameBuffer;
use crate::replica_manager::{AppendFailure, Appended};
use crate::transaction_coordinator::TransactionCoordinator;

/// The wait used when a request carries no positive timeout.
const DURABLE_WAIT_DEFAULT: Duration = Duration::from_secs(30);

/// The first Produce version of transactions v2 (KIP-890 part 2), Kafka's
/// `LAST_STABLE_VERSION_BEFORE_TRANSACTION_V2` + 1.
const TRANSACTIONS_V2_VERSION: i16 = 12;

/// The longest a transactions-v2 produce waits for its partitions' add, whatever its own
/// timeout: Kafka's partition leader sends the add with the broker's `request.timeout.ms`
/// (30 s by default). The connection reads nothing else meanwhile.
const ADD_PARTITIONS_WAIT_MAX: Duration = Duration::from_secs(30);

/// One partition's outcome, waiting or final.
struct PartitionOutcome {
    response: PartitionProduceResponse,
    /// The partition and the last offset that must become durable before answering.
    /// The partition, the batch's last offset, whether the acks are all (the high
    /// watermark) rather than 1 (the local end), and the leader epoch it was appended at.
    wait: Option<(Arc<Partition>, i64, bool, i32)>,
    /// The leader a `NOT_LEADER_OR_FOLLOWER` names (KIP-951): listed in `node_endpoints`.
    leader_hint: Option<runnel_metadata::BrokerRegistration>,
}

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: ProduceRequest = request.decode()?;
    let acks = body.acks;
    let timeout_ms = body.timeout_ms;
    let transactional_id = body.transactional_id.as_ref().map(|id| id.to_string());
    let (names, batches) = batches_in_frame(&mut request, body);
    // Every `Bytes` of the frame is gone: its batches are appended where they lie.
    let frame = request.frame.take();
    let mut produce = Produce {
        acks,
        timeout: match timeout_ms {
            ms if ms > 0 => Duration::from_millis(ms as u64),
            _ => DURABLE_WAIT_DEFAULT,
        },
        transactional_id,
        names,
        batches,
        frame,
        refused: HashMap::new(),
        verified: false,
    };
    if request.version >= TRANSACTIONS_V2_VERSION {
        if let Some(add) = partitions_to_add(broker, &mut produce) {
            let broker = Arc::clone(broker);
            return Ok(Reply::Ordered(Box::pin(async move {
                let version = request.version;
                add_to_transaction(&broker, add, &mut produce, version).await;
                append_all(&broker, request, produce)
            })));
        }
    } else if let Some(elsewhere) = produce
        .transactional_id
        .as_deref()
        .and_then(|id| TransactionCoordinator::coordinator_elsewhere(broker, id))
    {
        // Below v12 in a cluster whose coordinator for this transactional id is another
        // broker: KIP-890 part 1's verification asked there (AddPartitionsToTxn v5,
        // verify_only), as Kafka's partition leader asks through `AddPartitionsToTxnManager`.
        if let Some(verify) = partitions_to_add(broker, &mut produce) {
            let broker = Arc::clone(broker);
            return Ok(Reply::Ordered(Box::pin(async move {
                let version = request.version;
                verify_elsewhere(elsewhere, verify, &mut produce, version).await;
                produce.verified = true;
                append_all(&broker, request, produce)
            })));
        }
    }
    append_all(broker, request, produce)
}

/// A produce request taken apart (see [`batches_in_frame`]).
struct Produce {
    acks: i16,
    /// How long the answer may wait for durability (the request's `timeout_ms`).
    timeout: Duration,
    transactional_id: Option<String>,
    names: Vec<TopicName>,
    batches: Vec<Vec<(i32, Batch)>>,
    frame: Option<FrameBuffer>,
    /// Partitions refused before their append: the transaction could not take them.
    refused: HashMap<(String, i32), (ErrorCode, String)>,
    /// Its transactional batches were verified with a coordinator on another broker (the
    /// refused ones are in `refused`): not verified again here.
    verified: bool,
}

/// Appends each partition's batch in request order and returns the reply, which waits for
/// durability when the acks ask for it.
fn append_all(
    broker: &Arc<Broker>,
    request: Request,
    produce: Produce,
) -> Result<Reply, CodecError> {
    let Produce {
        acks,
        timeout,
        transactional_id,
        names,
        mut batches,
        mut frame,
        refused,
        verified,
    } = produce;
    let valid_acks = matches!(acks, -1..=1);
    let mut topics = Vec::with_capacity(names.len());
    for (name, partitions) in names.into_iter().zip(batches.iter_mut()) {
        let outcomes: Vec<PartitionOutcome> = partitions
            .iter_mut()
            .map(|(index, batch)| {
                if !valid_acks {
                    return failed(*index, ErrorCode::InvalidRequiredAcks, None);
                }
                if let Some((code, message)) = refused.get(&(name.to_string(), *index)) {
                    return failed(*index, *code, Some(message.clone()));
                }
                let records = batch.records(frame.as_mut());
                if verified {
                    return append(broker, name.as_str(), *index, records, acks == -1);
                }
                if let Err((code, message)) = verify_transactional(
                    broker,
                    transactional_id.as_deref(),
                    &name,
                    *index,
                    records,
                    request.version,
                ) {
                    return failed(*index, code, Some(message));
                }
                append(broker, name.as_str(), *index, records, acks == -1)
            })
            .map(|outcome| outcome.for_version(request.version))
            .collect();
        topics.push((name, outcomes));
    }
    drop(frame);
    if acks == 0 {
        return Ok(Reply::None);
    }
    let waits = topics
        .iter()
        .flat_map(|(_, outcomes)| outcomes)
        .any(|o| o.wait.is_some());
    if !waits {
        return Ok(Reply::Ready(request.respond(&response(topics))?));
    }
    Ok(Reply::Pending(Box::pin(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        for (_, outcomes) in topics.iter_mut() {
            for outcome in outcomes.iter_mut() {
                let Some((partition, last_offset, acks_all, epoch)) = outcome.wait.take() else {
                    continue;
                };
                let answered = if acks_all {
                    tokio::time::timeout_at(
                        deadline,
                        partition.wait_for_high_watermark_above_while_leading(last_offset, epoch),
                    )
                    .await
                } else {
                    tokio::time::timeout_at(
                        deadline,
                        partition.wait_for_local_end_while_leading(last_offset + 1, epoch),
                    )
                    .await
                };
                if answered.is_err() {
                    outcome.response.error_code = ErrorCode::RequestTimedOut.code();
                    outcome.response.base_offset = -1;
                } else if answered == Ok(false) {
                    // Kafka's DelayedProduce: the leadership moved while the batch waited; a
                    // new leader may not hold it. The (idempotent) producer sends it again.
                    outcome.response.error_code = ErrorCode::NotLeaderOrFollower.code();
                    outcome.response.base_offset = -1;
                } else if acks_all && partition.isr_len() < partition.settings().min_insync_replicas
                {
                    // Kafka's DelayedProduce: the ISR shrank below min.insync.replicas while
                    // the batch waited; it is in the log, but not as replicated as asked.
                    outcome.response.error_code = ErrorCode::NotEnoughReplicasAfterAppend.code();
                }
            }
        }
        request.respond(&response(topics))
    })))
}

/// The partitions a transactions-v2 request's batches need added to their transaction.
struct PartitionsToAdd {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<(String, i32)>,
}

/// Produce v12+ is transactions v2 (KIP-890 part 2): a transactional batch for a partition
/// its transaction does not hold yet adds it, where below v12 it is refused. Which ones need
/// it is read from the coordinator's view; `None` when none do. Batches of more than one
/// producer in one request are refused with INVALID_PRODUCER_ID_MAPPING, as Kafka's
/// `ReplicaManager` refuses them ("more than one producer ID").
fn partitions_to_add(broker: &Broker, produce: &mut Produce) -> Option<PartitionsToAdd> {
    let transactional_id = produce.transactional_id.clone()?;
    let mut add: Option<PartitionsToAdd> = None;
    let mut producers = 0;
    for (name, partitions) in produce.names.iter().zip(produce.batches.iter_mut()) {
        for (index, batch) in partitions.iter_mut() {
            let Ok(header) = BatchHeader::parse(batch.records(produce.frame.as_mut())) else {
                continue;
            };
            if !header.is_transactional() || header.is_control() {
                continue;
            }
            let partition = (name.to_string(), *index);
            let this = (header.producer_id, header.producer_epoch);
            let add = add.get_or_insert_with(|| {
                producers = 1;
                PartitionsToAdd {
                    transactional_id: transactional_id.clone(),
                    producer_id: this.0,
                    producer_epoch: this.1,
                    partitions: Vec::new(),
                }
            });
            if (add.producer_id, add.producer_epoch) != this {
                producers += 1;
            }
            let verdict = TransactionCoordinator::verify(
                broker,
                &transactional_id,
                this.0,
                this.1,
                &partition,
            );
            if verdict != TxnErrorCode::None {
                add.partitions.push(partition);
            }
        }
    }
    if producers > 1 {
        let message = "transactional records of more than one producer id".to_string();
        for (name, partitions) in produce.names.iter().zip(produce.batches.iter()) {
            for (index, _) in partitions {
                produce.refused.insert(
                    (name.to_string(), *index),
                    (ErrorCode::InvalidProducerIdMapping, message.clone()),
                );
            }
        }
        return None;
    }
    add.filter(|add| !add.partitions.is_empty())
}

/// Asks the coordinator on another broker whether `verify`'s partitions are in their
/// transaction (KIP-890 part 1), bounded by the request's timeout and
/// [`ADD_PARTITIONS_WAIT_MAX`]; those it does not confirm go into `produce.refused` with
/// Produce's codes.
async fn verify_elsewhere(
    elsewhere: (i32, runnel_metadata::BrokerRegistration),
    verify: PartitionsToAdd,
    produce: &mut Produce,
    version: i16,
) {
    let call = TransactionCoordinator::ask_elsewhere(
        elsewhere,
        &verify.transactional_id,
        verify.producer_id,
        verify.producer_epoch,
        verify.partitions.clone(),
        true,
    );
    refuse_unconfirmed(call, &verify, produce, version).await;
}

/// Adds `add`'s partitions to their transaction through the coordinator (Kafka's partition
/// leader sends AddPartitionsToTxn v5 without `verify_only`), bounded by the request's
/// timeout and [`ADD_PARTITIONS_WAIT_MAX`]; the partitions it refuses go into
/// `produce.refused` with Produce's codes.
async fn add_to_transaction(
    broker: &Arc<Broker>,
    add: PartitionsToAdd,
    produce: &mut Produce,
    version: i16,
) {
    let call = TransactionCoordinator::add_partitions_v2(
        broker,
        &add.transactional_id,
        add.producer_id,
        add.producer_epoch,
        add.partitions.clone(),
    );
    refuse_unconfirmed(call, &add, produce, version).await;
}

/// Awaits the coordinator's verdicts on `asked`'s partitions, bounded by the request's
/// timeout and [`ADD_PARTITIONS_WAIT_MAX`], and puts each partition it did not confirm into
/// `produce.refused` with Produce's code.
async fn refuse_unconfirmed(
    call: impl std::future::Future<Output = Vec<((String, i32), TxnErrorCode)>>,
    asked: &PartitionsToAdd,
    produce: &mut Produce,
    version: i16,
) {
    let wait = produce.timeout.min(ADD_PARTITIONS_WAIT_MAX);
    let results = match tokio::time::timeout(wait, call).await {
        Ok(results) => results,
        // Kafka's `AddPartitionsToTxnManager` answers a request that timed out with
        // NETWORK_EXCEPTION, which the produce path makes retriable.
        Err(_) => asked
            .partitions
            .iter()
            .map(|p| (p.clone(), TxnErrorCode::NetworkException))
            .collect(),
    };
    for (partition, verdict) in results {
        if verdict != TxnErrorCode::None {
            tracing::debug!(topic = %partition.0, partition = partition.1,
                transactional_id = %asked.transactional_id, %verdict,
                "transactional batch refused: the transaction does not hold the partition");
            produce.refused.insert(partition, refusal(verdict, version));
        }
    }
}

impl PartitionOutcome {
    /// Clears the fields the request's version does not have: log start offset (v5+), record
    /// errors and error message (v8+).
    fn for_version(mut self, version: i16) -> Self {
        if version < 5 {
            self.response.log_start_offset = -1;
        }
        if version < 8 {
            self.response.error_message = None;
            self.response.record_errors.clear();
        }
        self
    }
}

/// Where one partition's batch is: in the frame, or (not expected) copied out of it.
enum Batch {
    None,
    InFrame(Range<usize>),
    Copied(Vec<u8>),
}

impl Batch {
    /// The batch's bytes to append: in the frame when nothing else refers to it, else a copy.
    fn records<'a>(&'a mut self, frame: Option<&'a mut FrameBuffer>) -> &'a mut [u8] {
        if let (Batch::InFrame(range), Some(frame)) = (&*self, frame) {
            let range = range.clone();
            if frame.is_writable() {
                return frame
                    .bytes_mut()
                    .map(|bytes| &mut bytes[range])
                    .unwrap_or_default();
            }
            *self = Batch::Copied(frame.as_slice()[range].to_vec());
        }
        match self {
            Batch::Copied(bytes) => bytes,
            Batch::None | Batch::InFrame(_) => &mut [],
        }
    }
}

/// The topics' names (copied) and their partitions' batches (by place in the frame), with
/// every `Bytes` of the frame in `request` and `body` dropped, so that the frame can be
/// written in place.
fn batches_in_frame(
    request: &mut Request,
    body: ProduceRequest,
) -> (Vec<TopicName>, Vec<Vec<(i32, Batch)>>) {
    let mut names = Vec::with_capacity(body.topic_data.len());
    let mut batches = Vec::with_capacity(body.topic_data.len());
    for topic in body.topic_data {
        names.push(TopicName(StrBytes::from_string(topic.name.to_string())));
        let partitions = topic
            .partition_data
            .into_iter()
            .map(|data| {
                let batch = match (&data.records, &request.frame) {
                    (None, _) => Batch::None,
                    (Some(records), Some(frame)) => match frame.range_of(records) {
                        Some(range) => Batch::InFrame(range),
                        None => Batch::Copied(records.to_vec()),
                    },
                    (Some(records), None) => Batch::Copied(records.to_vec()),
                };
                (data.index, batch)
            })
            .collect();
        batches.push(partitions);
    }
    request.body = Bytes::new();
    let header = &mut request.header;
    header.client_id = header
        .client_id
        .take()
        .map(|id| StrBytes::from_string(id.to_string()));
    for field in header.unknown_tagged_fields.values_mut() {
        *field = Bytes::copy_from_slice(field);
    }
    (names, batches)
}

fn append(
    broker: &Broker,
    topic: &str,
    index: i32,
    records: &mut [u8],
    acks_all: bool,
) -> PartitionOutcome {
    let Some(partition) = broker.replicas.partition(topic, index) else {
        let code = broker.not_hosted_error(topic, index);
        let message = (code == ErrorCode::KafkaStorageError)
            .then(|| "the partition's log directory is offline".to_string());
        let mut outcome = failed(index, code, message);
        // KIP-951: a client that asked the wrong broker is told the leader (Produce v10+).
        if code == ErrorCode::NotLeaderOrFollower {
            if let Some((leader, epoch, registration)) = broker.partition_leader(topic, index) {
                outcome.response.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(leader.into())
                    .with_leader_epoch(epoch);
                outcome.leader_hint = registration;
            }
        }
        return outcome;
    };
    // Read before the append: a leadership that changes after it fails the wait.
    let leader_epoch = partition.leader_epoch();
    match broker.replicas.append(&partition, records, acks_all) {
        Ok(Appended {
            base_offset,
            last_offset,
            log_start_offset,
            log_append_time_ms,
        }) => {
            let waits = broker.replicas.is_durable() || (acks_all && partition.has_followers());
            let wait = waits.then(|| (Arc::clone(&partition), last_offset, acks_all, leader_epoch));
            PartitionOutcome {
                response: PartitionProduceResponse::default()
                    .with_index(index)
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(log_append_time_ms)
                    .with_log_start_offset(log_start_offset),
                wait,
                leader_hint: None,
            }
        }
        Err(failure) => {
            let code = failure.error_code();
            if code == ErrorCode::KafkaStorageError {
                tracing::error!(topic, partition = index, error = %failure, "append failed");
            } else {
                tracing::debug!(topic, partition = index, error = %failure, "batch refused");
            }
            let mut outcome = failed(index, code, Some(failure.to_string()));
            if let AppendFailure::RecordsRefused(refused) = failure {
                outcome.response.record_errors = refused
                    .record_errors
                    .into_iter()
                    .map(|(batch_index, message)| {
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(batch_index)
                            .with_batch_index_error_message(Some(StrBytes::from_string(message)))
                    })
                    .collect();
            }
            outcome
        }
    }
}

/// KIP-890 part 1 for one partition's batch (module doc); `Err` is the partition's error.
/// Batches that are not transactional, or do not parse (refused by the append), pass.
fn verify_transactional(
    broker: &Broker,
    transactional_id: Option<&str>,
    topic: &str,
    index: i32,
    records: &[u8],
    version: i16,
) -> Result<(), (ErrorCode, String)> {
    let Ok(header) = BatchHeader::parse(records) else {
        return Ok(());
    };
    if !header.is_transactional() || header.is_control() {
        return Ok(());
    }
    let Some(transactional_id) = transactional_id else {
        let message = "transactional records need the request's transactional id".to_string();
        return Err((ErrorCode::TransactionalIdAuthorizationFailed, message));
    };
    let partition = (topic.to_string(), index);
    let verdict = TransactionCoordinator::verify(
        broker,
        transactional_id,
        header.producer_id,
        header.producer_epoch,
        &partition,
    );
    if verdict == TxnErrorCode::None {
        return Ok(());
    }
    tracing::debug!(topic, partition = index, transactional_id, %verdict,
        "transactional batch refused");
    Err(refusal(verdict, version))
}

/// The coordinator's answer for a partition the transaction does not hold, as Kafka's
/// `ReplicaManager` and `AddPartitionsToTxnManager` turn it into Produce's error: a fenced
/// producer is INVALID_PRODUCER_EPOCH; TRANSACTION_ABORTABLE reaches v11+ clients (KIP-890),
/// older ones get INVALID_TXN_STATE; what the client should retry (the coordinator loading,
/// moving, unreachable, or, below v12, completing the transaction) is NOT_ENOUGH_REPLICAS,
/// which every client retries without a metadata refresh; v12 clients get
/// CONCURRENT_TRANSACTIONS as it is.
fn refusal(verdict: TxnErrorCode, version: i16) -> (ErrorCode, String) {
    match verdict {
        TxnErrorCode::InvalidTxnState => (
            ErrorCode::InvalidTxnState,
            "Partition was not added to the transaction".to_string(),
        ),
        TxnErrorCode::TransactionAbortable if version < 11 => (
            ErrorCode::InvalidTxnState,
            "Partition was not added to the transaction".to_string(),
        ),
        TxnErrorCode::ProducerFenced => (
            ErrorCode::InvalidProducerEpoch,
            "the producer's epoch is fenced".to_string(),
        ),
        TxnErrorCode::ConcurrentTransactions if version >= TRANSACTIONS_V2_VERSION => (
            ErrorCode::ConcurrentTransactions,
            "the transaction is completing".to_string(),
        ),
        TxnErrorCode::ConcurrentTransactions
        | TxnErrorCode::CoordinatorLoadInProgress
        | TxnErrorCode::CoordinatorNotAvailable
        | TxnErrorCode::NotCoordinator
        | TxnErrorCode::NetworkException => (
            ErrorCode::NotEnoughReplicas,
            format!(
                "Unable to verify the partition has been added to the transaction. \
                 Underlying error: {}",
                verdict.name()
            ),
        ),
        other => (
            other.error_code().unwrap_or(ErrorCode::UnknownServerError),
            other.name().to_string(),
        ),
    }
}

fn failed(index: i32, code: ErrorCode, message: Option<String>) -> PartitionOutcome {
    PartitionOutcome {
        response: PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(code.code())
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
            .with_error_message(message.map(StrBytes::from_string)),
        wait: None,
        leader_hint: None,
    }
}

fn response(topics: Vec<(TopicName, Vec<PartitionOutcome>)>) -> ProduceResponse {
    let mut leaders: std::collections::BTreeMap<i32, NodeEndpoint> = Default::default();
    let responses = topics
        .into_iter()
        .map(|(name, outcomes)| {
            let partitions = outcomes
                .into_iter()
                .map(|outcome| {
                    if let Some(leader) = outcome.leader_hint {
                        leaders.entry(leader.node_id).or_insert_with(|| {
                            NodeEndpoint::default()
                                .with_node_id(leader.node_id.into())
                                .with_host(StrBytes::from_string(leader.host))
                                .with_port(leader.port)
                                .with_rack(leader.rack.map(StrBytes::from_string))
                        });
                    }
                    outcome.response
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default()
        .with_responses(responses)
        .with_node_endpoints(leaders.into_values().collect())
}
