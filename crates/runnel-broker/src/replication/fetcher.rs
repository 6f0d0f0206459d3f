//! A follower's fetcher: one task per source broker, copying every partition this broker
//! follows from it (Kafka's `ReplicaFetcherThread`).
//!
//! Each round:
//! 1. Partitions not yet checked against this leadership (new to the fetcher, or at a new
//!    leader epoch, or whose log no longer lines up with the leader's) first find where
//!    their log and the leader's agree: OffsetForLeaderEpoch (v4, replica id set) for the
//!    last epoch this log holds, then truncation to the end offset the leader gives for it,
//!    or to this log's own end of the epoch the leader answered if that is earlier (KIP-101,
//!    KIP-279). A leader that knows no epoch at all (UNDEFINED: its log is empty) leaves
//!    the high watermark as the fallback, as Kafka's follower does. Never the high
//!    watermark alone otherwise.
//! 2. One Fetch (v12, by topic name, replica id = this node) for every checked partition
//!    whose local end has reached its log end (in durable mode: everything below its fetch
//!    offset is fsync'd here, so the offset the leader counts for the ISR is durable). The
//!    leader parks it up to `replica.fetch.wait.max.ms` for new appends.
//! 3. Each partition's batches are appended as the leader wrote them
//!    ([`crate::replica_manager::ReplicaManager::append_replicated`]) and queued for the
//!    group commit; the follower's high watermark becomes the leader's, as far as its log
//!    reaches. A trailing partial batch is left for the next round.
//!
//! The leader's log start offset is followed too (as far as the follower's high watermark),
//! so records deleted on the leader (retention, DeleteRecords) are not served by a follower.
//!
//! A partition whose answer is an error (not the leader, a fenced or unknown leader epoch, an
//! unknown partition, a storage error) is left out of fetches for [`PARTITION_BACKOFF`]: the
//! next image usually settles it. A fetch offset before the leader's log start empties the
//! log and restarts it there; one past the leader's end checks for divergence again. A failed
//! connection or exchange is dropped and retried after [`CONNECT_BACKOFF`], logged once per
//! outage. Responses are bounded by `socket.request.max.bytes` before they are read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use runnel_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use runnel_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use runnel_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    TopicName,
};
use runnel_protocol::record_batch::batches;
use runnel_protocol::{ErrorCode, StrBytes};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Followed;
use crate::broker::Broker;
use crate::inter_broker::BrokerConnection;
use crate::partition::Partition;

/// The Fetch version a follower sends (topics by name, replica id in the body).
const FETCH_VERSION: i16 = 12;
/// The OffsetForLeaderEpoch version a follower sends.
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
/// Kafka's `replica.fetch.wait.max.ms` default: how long the leader parks a fetch.
pub const FETCH_WAIT_MS: i32 = 500;
/// Kafka's `replica.fetch.max.bytes` default: per partition.
const PARTITION_MAX_BYTES: i32 = 1024 * 1024;
/// Kafka's `replica.fetch.response.max.bytes` default.
const RESPONSE_MAX_BYTES: i32 = 10 * 1024 * 1024;
/// How long a partition whose answer was an error stays out of fetches (Kafka's
/// `replica.fetch.backoff.ms`).
pub const PARTITION_BACKOFF: Duration = Duration::from_millis(1000);
/// How long after a failed connection or exchange the fetcher tries again.
pub const CONNECT_BACKOFF: Duration = Duration::from_millis(500);
/// The longest an exchange may take beyond the leader's parking time.
const EXCHANGE_SLACK: Duration = Duration::from_secs(10);
/// The longest a round waits for its appends to become durable here.
const DURABLE_WAIT: Duration = Duration::from_secs(5);

/// A followed partition's identity in one leadership: topic, index, leader epoch.
type Key = (Arc<str>, i32, i32);

fn key(partition: &Partition) -> Key {
    (
        Arc::clone(&partition.topic),
        partition.index,
        partition.leader_epoch(),
    )
}

/// The fetcher of broker `source`'s partitions, until `followed` is dropped or the broker
/// stops.
pub async fn run(broker: Arc<Broker>, source: i32, mut followed: watch::Receiver<Followed>) {
    let mut fetcher = Fetcher {
        broker: Arc::clone(&broker),
        source,
        connection: None,
        checked: HashSet::new(),
        delayed: HashMap::new(),
        failing: false,
    };
    let mut stopping = broker.stopping();
    loop {
        if *stopping.borrow() {
            return;
        }
        let partitions = Arc::clone(&followed.borrow_and_update());
        let pause = fetcher.round(&partitions).await;
        if let Some(pause) = pause {
            tokio::select! {
                changed = followed.changed() => if changed.is_err() { return },
                _ = stopping.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(pause) => {}
            }
        } else if followed.has_changed().is_err() {
            return;
        }
    }
}

struct Fetcher {
    broker: Arc<Broker>,
    source: i32,
    connection: Option<BrokerConnection>,
    /// Partitions whose log was checked against this leadership (step 1).
    checked: HashSet<Key>,
    /// Partitions left out of fetches until then.
    delayed: HashMap<(Arc<str>, i32), Instant>,
    /// Whether the last connection attempt or exchange failed (logged once per outage).
    failing: bool,
}

impl Fetcher {
    /// One round (see the module doc). Returns how long to pause before the next, if at all.
    async fn round(&mut self, followed: &[Arc<Partition>]) -> Option<Duration> {
        let now = Instant::now();
        self.delayed.retain(|_, until| *until > now);
        let live: HashSet<Key> = followed.iter().map(|p| key(p)).collect();
        self.checked.retain(|key| live.contains(key));
        let active: Vec<&Arc<Partition>> = followed
            .iter()
            .filter(|p| !p.is_led_here() && !p.is_offline())
            .filter(|p| !self.delayed.contains_key(&(Arc::clone(&p.topic), p.index)))
            .collect();
        if active.is_empty() {
            let next = self.delayed.values().min().copied();
            return Some(next.map_or(PARTITION_BACKOFF, |until| {
                until.saturating_duration_since(now)
            }));
        }
        if self.connection.is_none() {
            match self.connect().await {
                Ok(connection) => self.connection = Some(connection),
                Err(reason) => return Some(self.failed(&reason)),
            }
        }
        let unchecked: Vec<&Arc<Partition>> = active
            .iter()
            .copied()
            .filter(|p| !self.checked.contains(&key(p)))
            .collect();
        if !unchecked.is_empty() {
            if let Err(reason) = self.truncate_divergent(&unchecked).await {
                return Some(self.failed(&reason));
            }
        }
        let ready: Vec<&Arc<Partition>> = active
            .into_iter()
            .filter(|p| self.checked.contains(&key(p)))
            .filter(|p| p.local_end() >= p.log_end_offset())
            .collect();
        if ready.is_empty() {
            return Some(Duration::from_millis(50));
        }
        match self.fetch(&ready).await {
            Ok(()) => {
                if self.failing {
                    tracing::info!(source = self.source, "fetching from the leader again");
                }
                self.failing = false;
                None
            }
            Err(reason) => Some(self.failed(&reason)),
        }
    }

    fn failed(&mut self, reason: &str) -> Duration {
        self.connection = None;
        if !self.failing {
            tracing::warn!(
                source = self.source,
                reason,
                "replica fetcher: the leader cannot be reached; retrying"
            );
        }
        self.failing = true;
        CONNECT_BACKOFF
    }

    async fn connect(&self) -> Result<BrokerConnection, String> {
        let image = self.broker.controller.image();
        let Some(registration) = image.broker(self.source) else {
            return Err(format!("broker {} is not registered", self.source));
        };
        let address = format!("{}:{}", registration.host, registration.port);
        match tokio::time::timeout(EXCHANGE_SLACK, BrokerConnection::connect(&address)).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(format!("connect to {address}: {error}")),
            Err(_) => Err(format!("connect to {address}: timed out")),
        }
    }

    fn response_bytes_max(&self) -> usize {
        self.broker.config.socket_request_max_bytes
    }

    /// Step 1 of the module doc for `partitions`; marks the ones settled as checked.
    async fn truncate_divergent(&mut self, partitions: &[&Arc<Partition>]) -> Result<(), String> {
        let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
        let mut asked: Vec<(&Arc<Partition>, i32)> = Vec::new();
        for partition in partitions {
            let latest = partition.with_log(|log| log.leader_epochs().last().map(|&(e, _)| e));
            let Some(latest) = latest else {
                // An empty log (or one written before leader epochs): nothing can diverge.
                self.checked.insert(key(partition));
                continue;
            };
            asked.push((partition, latest));
            let entry = OffsetForLeaderPartition::default()
                .with_partition(partition.index)
                .with_current_leader_epoch(partition.leader_epoch())
                .with_leader_epoch(latest);
            push_partition(
                &mut topics,
                &partition.topic,
                entry,
                |t| &mut t.partitions,
                |name| OffsetForLeaderTopic::default().with_topic(name),
                |t| &t.topic,
            );
        }
        if asked.is_empty() {
            return Ok(());
        }
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(self.broker.config.node_id.into())
            .with_topics(topics);
        let max = self.response_bytes_max();
        let connection = self.connection.as_mut().ok_or("no connection")?;
        let call = connection.call::<_, OffsetForLeaderEpochResponse>(
            ApiKey::OffsetForLeaderEpoch,
            OFFSET_FOR_LEADER_EPOCH_VERSION,
            &request,
            max,
        );
        let response = tokio::time::timeout(EXCHANGE_SLACK, call)
            .await
            .map_err(|_| "OffsetForLeaderEpoch: no answer".to_string())??;
        for (partition, latest) in asked {
            let answer = response
                .topics
                .iter()
                .filter(|t| t.topic.as_str() == &*partition.topic)
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition == partition.index);
            let Some(answer) = answer else {
                self.delay(partition);
                continue;
            };
            if answer.error_code != ErrorCode::None.code() {
                tracing::debug!(topic = %partition.topic, partition = partition.index,
                    error_code = answer.error_code, "OffsetForLeaderEpoch refused; retrying later");
                self.delay(partition);
                continue;
            }
            match truncation_point(partition, latest, answer.leader_epoch, answer.end_offset) {
                Some(offset) if offset < partition.log_end_offset() => {
                    tracing::info!(topic = %partition.topic, partition = partition.index,
                        from = partition.log_end_offset(), to = offset, leader_epoch = answer.leader_epoch,
                        "truncating the follower's log to where it agrees with the leader's");
                    if let Err(error) = partition.truncate_to(offset) {
                        tracing::error!(topic = %partition.topic, partition = partition.index, %error,
                            "truncating a follower's log failed");
                        self.delay(partition);
                        continue;
                    }
                }
                _ => {}
            }
            self.checked.insert(key(partition));
        }
        Ok(())
    }

    fn delay(&mut self, partition: &Partition) {
        self.delayed.insert(
            (Arc::clone(&partition.topic), partition.index),
            Instant::now() + PARTITION_BACKOFF,
        );
    }

    /// Steps 2 and 3 of the module doc for `partitions`.
    async fn fetch(&mut self, partitions: &[&Arc<Partition>]) -> Result<(), String> {
        let mut topics: Vec<FetchTopic> = Vec::new();
        let mut sent_epochs: HashMap<(&str, i32), i32> = HashMap::new();
        for partition in partitions {
            let offsets = partition.offsets();
            let epoch = partition.leader_epoch();
            sent_epochs.insert((&*partition.topic, partition.index), epoch);
            let entry = FetchPartition::default()
                .with_partition(partition.index)
                .with_current_leader_epoch(epoch)
                .with_fetch_offset(offsets.log_end_offset)
                .with_log_start_offset(offsets.log_start_offset)
                .with_partition_max_bytes(PARTITION_MAX_BYTES);
            push_partition(
                &mut topics,
                &partition.topic,
                entry,
                |t| &mut t.partitions,
                |name| FetchTopic::default().with_topic(name),
                |t| &t.topic,
            );
        }
        let request = FetchRequest::default()
            .with_replica_id(self.broker.config.node_id.into())
            .with_max_wait_ms(FETCH_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(RESPONSE_MAX_BYTES)
            .with_session_epoch(-1)
            .with_topics(topics);
        let max = self.response_bytes_max();
        let connection = self.connection.as_mut().ok_or("no connection")?;
        let call = connection.call::<_, FetchResponse>(ApiKey::Fetch, FETCH_VERSION, &request, max);
        let wait = Duration::from_millis(FETCH_WAIT_MS as u64) + EXCHANGE_SLACK;
        let response = tokio::time::timeout(wait, call)
            .await
            .map_err(|_| "Fetch: no answer".to_string())??;
        if response.error_code != ErrorCode::None.code() {
            return Err(format!("Fetch answered error code {}", response.error_code));
        }
        let by_name: HashMap<(&str, i32), (&Arc<Partition>, i32)> = partitions
            .iter()
            .map(|p| {
                (
                    (&*p.topic, p.index),
                    (*p, sent_epochs[&(&*p.topic, p.index)]),
                )
            })
            .collect();
        let mut appended: Vec<(&Arc<Partition>, i64)> = Vec::new();
        for topic in &response.responses {
            for data in &topic.partitions {
                let Some(&(partition, sent_epoch)) =
                    by_name.get(&(topic.topic.as_str(), data.partition_index))
                else {
                    continue;
                };
                // The image moved on while the fetch was out (a new leader, or this broker
                // leads now): the answer is from a leadership that is over.
                if partition.leader_epoch() != sent_epoch || partition.is_led_here() {
                    continue;
                }
                match self.take_answer(partition, data) {
                    Some(end) => appended.push((partition, end)),
                    None => continue,
                }
            }
        }
        // The next fetch reports these offsets to the leader: they must be durable first.
        for (partition, end) in appended {
            let durable = partition.wait_for_local_end_at_least(end);
            if tokio::time::timeout(DURABLE_WAIT, durable).await.is_err() {
                tracing::warn!(topic = %partition.topic, partition = partition.index,
                    "a follower's appends are not durable yet; fetching it later");
            }
        }
        Ok(())
    }

    /// Applies one partition's answer; returns the log end offset after its appends when it
    /// took any.
    fn take_answer(
        &mut self,
        partition: &Arc<Partition>,
        data: &runnel_protocol::messages::fetch_response::PartitionData,
    ) -> Option<i64> {
        let code = ErrorCode::from_code(data.error_code).unwrap_or(ErrorCode::UnknownServerError);
        match code {
            ErrorCode::None => {}
            ErrorCode::OffsetOutOfRange => {
                let end = partition.log_end_offset();
                if end < data.log_start_offset {
                    tracing::info!(topic = %partition.topic, partition = partition.index,
                        log_end_offset = end, leader_log_start_offset = data.log_start_offset,
                        "the leader's log starts past this follower's end; restarting the log there");
                    if let Err(error) = partition.truncate_fully_and_start_at(data.log_start_offset)
                    {
                        tracing::error!(topic = %partition.topic, partition = partition.index, %error,
                            "restarting a follower's log failed");
                        self.delay(partition);
                    }
                } else {
                    self.checked.remove(&key(partition));
                }
                return None;
            }
            other => {
                tracing::debug!(topic = %partition.topic, partition = partition.index,
                    error = ?other, "the leader refused a follower fetch; retrying later");
                self.delay(partition);
                return None;
            }
        }
        let records = data.records.as_deref().unwrap_or_default();
        let mut took = false;
        for batch in batches(records) {
            // A trailing partial batch ends the answer: the next fetch starts there.
            let Ok((_, range)) = batch else { break };
            match self
                .broker
                .replicas
                .append_replicated(partition, &records[range])
            {
                Ok(_) => took = true,
                Err(runnel_log::AppendError::NotAtLogEnd { .. }) => {
                    // The answer does not line up with this log: check it against the
                    // leader's again before fetching more.
                    self.checked.remove(&key(partition));
                    break;
                }
                Err(error) => {
                    tracing::error!(topic = %partition.topic, partition = partition.index, %error,
                        "appending the leader's batch on this follower failed");
                    self.delay(partition);
                    break;
                }
            }
        }
        partition.follow_high_watermark(data.high_watermark);
        // The leader's log start offset moved (retention, DeleteRecords): so does this one's,
        // as far as this log reaches (Kafka's `maybeIncrementLogStartOffset` on followers).
        let offsets = partition.offsets();
        let start = data.log_start_offset.min(offsets.high_watermark);
        if start > offsets.log_start_offset {
            if let Err(error) = partition.advance_log_start_offset(start) {
                tracing::warn!(topic = %partition.topic, partition = partition.index, %error,
                    "moving a follower's log start offset to the leader's failed");
            }
        }
        took.then(|| partition.log_end_offset())
    }
}

/// Where a follower whose last epoch is `latest` truncates, given the leader's answer
/// `(leader_epoch, end_offset)` for it (KIP-279): the leader's end offset of the epoch, or
/// this log's own end of the epoch the leader answered when that comes first. `None`: keep
/// the log (nothing diverges), except that an UNDEFINED answer falls back to the high
/// watermark, as Kafka's follower does.
fn truncation_point(
    partition: &Partition,
    latest: i32,
    leader_epoch: i32,
    end_offset: i64,
) -> Option<i64> {
    if end_offset < 0 || leader_epoch < 0 {
        return Some(partition.offsets().high_watermark);
    }
    if leader_epoch == latest {
        return Some(end_offset);
    }
    let own_end = partition
        .with_log(|log| log.end_offset_for_epoch(leader_epoch))
        .map(|(_, end)| end);
    Some(own_end.map_or(end_offset, |own| own.min(end_offset)))
}

/// Adds `entry` to the topic named `name` in `topics`, creating it when missing.
fn push_partition<T, P>(
    topics: &mut Vec<T>,
    name: &str,
    entry: P,
    partitions: impl Fn(&mut T) -> &mut Vec<P>,
    new_topic: impl Fn(TopicName) -> T,
    topic_name: impl Fn(&T) -> &TopicName,
) {
    match topics.iter_mut().find(|t| topic_name(t).as_str() == name) {
        Some(topic) => partitions(topic).push(entry),
        None => {
            let mut topic = new_topic(TopicName(StrBytes::from_string(name.to_string())));
            partitions(&mut topic).push(entry);
            topics.push(topic);
        }
    }
}
