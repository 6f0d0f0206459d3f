//! Fetch (key 1): whole record batches below the high watermark, with long-polling.
//!
//! Limits as in Kafka: each partition returns at most `partition_max_bytes` and the response
//! at most `max_bytes`, except that the first partition with data returns its first batch whole
//! even when larger (KIP-74), so consumers always progress. If fewer than `min_bytes` are
//! ready, the request parks on the broker's data-changed signal until enough arrive,
//! `max_wait_ms` passes, or the broker begins to shut down: no polling loop. Fetch sessions
//! (KIP-227) are answered sessionless (session id 0), which every client accepts. v13+ names
//! topics by id. A partition whose fetch offset lies in a damaged range of its log answers
//! `CORRUPT_MESSAGE` (Kafka's answer when a read meets corrupt bytes); see `runnel_log`'s
//! `damage.rs`.
//! `isolation_level` read_committed (v4+) reads below the last stable offset only and gets the
//! aborted transactions its records overlap (`aborted_transactions`), which the consumer skips
//! (Kafka's `FetchIsolation.TXN_COMMITTED`); every answer reports the last stable offset.
//!
//! A fetch with a replica id (a follower, `replication/fetcher.rs`; v15+ carries it in
//! `replica_state`) is served by the partition's leader only: it reads past the high
//! watermark, up to what the log file holds, reports the follower's fetch offset as its log
//! end offset (which may move the high watermark), and parks on the broker's appended signal
//! rather than on high watermark changes. A replica id of a broker that holds no replica of
//! the partition is refused with NOT_LEADER_OR_FOLLOWER. Its bytes are not counted as
//! consumed.
//!
//! Fetch from follower (KIP-392): a consumer's fetch (v11+) is served by any replica, a follower
//! reading up to its own high watermark (the leader's, as far as it holds the log). With
//! `replica.selector.class` set to Kafka's `RackAwareReplicaSelector`, a leader asked by a
//! consumer that names its rack (`rack_id`, v11+, the consumer's `client.rack`) answers with
//! no records and `preferred_read_replica` set to an in-sync replica on that rack that holds
//! the fetch offset, when there is one other than itself; the consumer then fetches there.
//!
//! Records are not read here: each partition's answer carries the range of its segment file,
//! and the response is encoded around the ranges and sent with `sendfile` ([`crate::zero_copy`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runnel_log::ReadError;
use runnel_protocol::fetch_response::{
    self, AbortedTransaction, FetchResponse, PartitionResponse, RecordsLength, TopicResponse,
};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use runnel_protocol::messages::FetchRequest;
use runnel_protocol::ErrorCode;

use super::{Reply, Request};
use crate::broker::Broker;
use crate::zero_copy::FileRange;

type PartitionData = PartitionResponse<FileRange>;

/// The longest a fetch may park, whatever `max_wait_ms` says.
const FETCH_WAIT_MS_MAX: u64 = 60_000;
/// Kafka's isolation level for read_committed.
const READ_COMMITTED: i8 = 1;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: FetchRequest = request.decode()?;
    let broker = Arc::clone(broker);
    Ok(Reply::PendingPieces(Box::pin(async move {
        let response = fetch(&broker, &body, request.version).await;
        if let Some(figures) = &request.figures {
            // As Kafka's FetchResponse.errorCounts: the top-level code and each partition's.
            figures.count_error(response.error_code, 1);
            for topic in &response.topics {
                topic
                    .partitions
                    .iter()
                    .for_each(|p| figures.count_error(p.error_code, 1));
            }
        }
        fetch_response::encode(request.version, request.header.correlation_id, response)
    })))
}

fn response(
    error_code: ErrorCode,
    topics: Vec<TopicResponse<FileRange>>,
) -> FetchResponse<FileRange> {
    FetchResponse {
        throttle_time_ms: 0,
        error_code: error_code.code(),
        session_id: 0,
        topics,
    }
}

async fn fetch(broker: &Broker, body: &FetchRequest, version: i16) -> FetchResponse<FileRange> {
    if body.session_id != 0 {
        return response(ErrorCode::FetchSessionIdNotFound, Vec::new());
    }
    let wait = Duration::from_millis((body.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MS_MAX));
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = body.min_bytes.max(0) as usize;
    let replica = replica_id(body, version);
    let mut data_changed = match replica {
        Some(_) => broker.replicas.appended(),
        None => broker.replicas.data_changed(),
    };
    let mut stopping = broker.stopping();
    let mut parked = None;
    loop {
        // Mark the current version seen before reading, so a change during the read wakes us.
        data_changed.borrow_and_update();
        let (topics, bytes, errors) = read_all(broker, body, version, replica);
        let expired = tokio::time::Instant::now() >= deadline || *stopping.borrow();
        if bytes >= min_bytes || errors || expired {
            return answered(broker, topics, replica);
        }
        parked.get_or_insert_with(|| Parked::new(&broker.metrics.fetch_purgatory_size));
        let woken = tokio::select! {
            changed = tokio::time::timeout_at(deadline, data_changed.changed()) => changed.is_ok(),
            // Shutdown answers at once rather than holding the broker's stop up to the wait.
            _ = stopping.wait_for(|stopping| *stopping) => false,
        };
        if !woken {
            // Timed out or shutting down: one last read, answered whatever it holds.
            let (topics, _, _) = read_all(broker, body, version, replica);
            return answered(broker, topics, replica);
        }
    }
}

/// The broker id of a follower's fetch; `None` for a consumer's (replica id -1).
fn replica_id(body: &FetchRequest, version: i16) -> Option<i32> {
    let id = if version >= 15 {
        body.replica_state.replica_id.0
    } else {
        body.replica_id.0
    };
    (id >= 0).then_some(id)
}

/// A fetch parked waiting for data, counted in `runnel_fetch_purgatory_size` until dropped.
struct Parked<'a>(&'a AtomicU64);

impl<'a> Parked<'a> {
    fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Parked(gauge)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The response for `topics`, each partition's bytes counted as fetched from it (only the
/// reads that are answered: a long-poll's earlier reads are not; a follower's are not).
fn answered(
    broker: &Broker,
    topics: Vec<TopicResponse<FileRange>>,
    replica: Option<i32>,
) -> FetchResponse<FileRange> {
    let counted = if replica.is_some() {
        &[][..]
    } else {
        &topics[..]
    };
    for topic in counted {
        for data in &topic.partitions {
            let length = data.records.as_ref().map_or(0, RecordsLength::records_len);
            if length == 0 {
                continue;
            }
            let records = data.records.as_ref().map_or(0, |range| range.offsets);
            if let Some(partition) = broker.replicas.replica(&topic.name, data.partition_index) {
                let metrics = &partition.metrics;
                metrics
                    .bytes_out
                    .fetch_add(length as u64, Ordering::Relaxed);
                metrics.records_out.fetch_add(records, Ordering::Relaxed);
            }
        }
    }
    response(ErrorCode::None, topics)
}

/// Reads every requested partition once. Returns the topics, the record bytes read, and
/// whether any partition failed (which answers at once, as Kafka does).
fn read_all(
    broker: &Broker,
    body: &FetchRequest,
    version: i16,
    replica: Option<i32>,
) -> (Vec<TopicResponse<FileRange>>, usize, bool) {
    let mut bytes_left = match body.max_bytes {
        max if max > 0 => max as usize,
        _ => usize::MAX,
    };
    let mut bytes_read = 0;
    let mut errors = false;
    let image = broker.controller.image();
    let read_committed = body.isolation_level == READ_COMMITTED;
    // The client metadata of v11+ (KIP-392); `None` before.
    let rack_id = (version >= 11).then(|| body.rack_id.as_str());
    let topics = body
        .topics
        .iter()
        .map(|topic: &FetchTopic| {
            let name = if version >= 13 {
                image.topic_by_id(&topic.topic_id).map(|t| t.name.clone())
            } else {
                Some(topic.topic.to_string())
            };
            let partitions = topic
                .partitions
                .iter()
                .map(|requested| {
                    let data = match &name {
                        None => error(requested.partition, ErrorCode::UnknownTopicId),
                        Some(name) => read_partition(
                            broker,
                            name,
                            requested,
                            &mut bytes_left,
                            bytes_read == 0,
                            Asker {
                                read_committed,
                                replica,
                                rack_id,
                            },
                        ),
                    };
                    let mut data = data;
                    bytes_read += data.records.as_ref().map_or(0, RecordsLength::records_len);
                    errors |= data.error_code != 0;
                    if read_committed && data.aborted_transactions.is_none() {
                        data.aborted_transactions = Some(Vec::new());
                    }
                    data
                })
                .collect();
            TopicResponse {
                name: name.unwrap_or_default(),
                topic_id: topic.topic_id,
                partitions,
            }
        })
        .collect();
    (topics, bytes_read, errors)
}

/// Who asks, as one fetch request says it for all its partitions.
#[derive(Clone, Copy)]
struct Asker<'a> {
    read_committed: bool,
    /// A follower's broker id; `None` for a consumer.
    replica: Option<i32>,
    /// A consumer's client metadata (v11+): its rack, maybe empty.
    rack_id: Option<&'a str>,
}

fn read_partition(
    broker: &Broker,
    topic: &str,
    requested: &FetchPartition,
    bytes_left: &mut usize,
    first_with_data: bool,
    asker: Asker<'_>,
) -> PartitionData {
    let Asker {
        read_committed,
        replica,
        rack_id,
    } = asker;
    let index = requested.partition;
    // A follower's fetch goes to the leader; a consumer's v11+ to any replica (KIP-392: as
    // Kafka's `fetchOnlyFromLeader`, a consumer without client metadata reads the leader).
    let hosted = match (replica, rack_id) {
        (None, Some(_)) => broker.replicas.replica(topic, index),
        _ => broker.replicas.partition(topic, index),
    };
    let Some(partition) = hosted else {
        return error(index, broker.not_hosted_error(topic, index));
    };
    // Kafka's `HostedPartition.Offline`: a partition of a failed log directory.
    if partition.is_offline() {
        return error(index, ErrorCode::KafkaStorageError);
    }
    if requested.current_leader_epoch > partition.leader_epoch() {
        return error(index, ErrorCode::UnknownLeaderEpoch);
    }
    if requested.current_leader_epoch >= 0
        && requested.current_leader_epoch < partition.leader_epoch()
    {
        return error(index, ErrorCode::FencedLeaderEpoch);
    }
    let max_bytes = (requested.partition_max_bytes.max(0) as usize).min(*bytes_left);
    let fetch_offset = requested.fetch_offset;
    let read = match replica {
        Some(node_id) => {
            if broker
                .replicas
                .follower_fetched(&partition, node_id, fetch_offset)
                .is_err()
            {
                return error(index, ErrorCode::NotLeaderOrFollower);
            }
            partition.read_for_follower(fetch_offset, max_bytes)
        }
        None => {
            let rack = rack_id.unwrap_or_default();
            if let Some(preferred) = preferred_read_replica(broker, &partition, rack, fetch_offset)
            {
                let offsets = partition.offsets();
                return PartitionData {
                    high_watermark: offsets.high_watermark,
                    last_stable_offset: offsets.last_stable_offset,
                    log_start_offset: offsets.log_start_offset,
                    preferred_read_replica: preferred,
                    ..error(index, ErrorCode::None)
                };
            }
            partition.read(fetch_offset, max_bytes, first_with_data, read_committed)
        }
    };
    match read {
        Ok(read) => {
            *bytes_left = bytes_left.saturating_sub(read.records.length);
            let aborted_transactions = read.aborted_transactions.map(|aborted| {
                aborted
                    .into_iter()
                    .map(|(producer_id, first_offset)| AbortedTransaction {
                        producer_id,
                        first_offset,
                    })
                    .collect()
            });
            PartitionData {
                high_watermark: read.high_watermark,
                last_stable_offset: read.last_stable_offset,
                log_start_offset: read.log_start_offset,
                aborted_transactions,
                records: Some(read.records),
                ..error(index, ErrorCode::None)
            }
        }
        // A damaged range: Kafka answers a read that meets corrupt bytes
        // (CorruptRecordException) with CORRUPT_MESSAGE for the partition; it was reported at
        // ERROR when it was found (not again for each fetch).
        Err(read @ (ReadError::OffsetOutOfRange { .. } | ReadError::Damaged { .. })) => {
            let code = match read {
                ReadError::Damaged { .. } => ErrorCode::CorruptMessage,
                _ => ErrorCode::OffsetOutOfRange,
            };
            let offsets = partition.offsets();
            PartitionData {
                high_watermark: offsets.high_watermark,
                last_stable_offset: offsets.last_stable_offset,
                log_start_offset: offsets.log_start_offset,
                ..error(index, code)
            }
        }
        Err(failure) => {
            tracing::error!(topic, partition = index, error = %failure, "read failed");
            if matches!(failure, ReadError::Io { .. }) {
                broker.replicas.fail_partition_dir(&partition, &failure);
            }
            error(index, ErrorCode::KafkaStorageError)
        }
    }
}

/// The replica a consumer on rack `rack_id` should read `partition` from instead of this
/// leader (Kafka's `RackAwareReplicaSelector`): an unfenced in-sync follower on that rack
/// that holds `fetch_offset`; `None` to read here (no selector configured, no rack named,
/// this broker on the rack, or no such follower).
fn preferred_read_replica(
    broker: &Broker,
    partition: &crate::partition::Partition,
    rack_id: &str,
    fetch_offset: i64,
) -> Option<i32> {
    if !broker.config.rack_aware_replica_selector
        || rack_id.is_empty()
        || !partition.is_led_here()
        || !partition.has_followers()
        || broker.config.rack.as_deref() == Some(rack_id)
    {
        return None;
    }
    let image = broker.controller.image();
    let set = partition.replica_set_view();
    set.isr().iter().copied().find(|&id| {
        id != broker.config.node_id
            && image
                .broker(id)
                .is_some_and(|b| !b.fenced && b.rack.as_deref() == Some(rack_id))
            && set
                .follower(id)
                .is_some_and(|f| f.log_end_offset >= fetch_offset)
    })
}

/// A partition answer with `code`, no offsets and no records.
fn error(index: i32, code: ErrorCode) -> PartitionData {
    PartitionResponse {
        partition_index: index,
        error_code: code.code(),
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        aborted_transactions: None,
        preferred_read_replica: -1,
        records: None,
    }
}
