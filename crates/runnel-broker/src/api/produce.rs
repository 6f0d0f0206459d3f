//! Produce (key 0): appends each partition's record batch, then answers once durable.
//!
//! The appends happen here, in the connection's request order, so pipelined batches of one
//! idempotent producer reach the log in sequence order. With acks=1 or acks=all in durable
//! mode the reply waits until every appended partition's high watermark (its fsync'd offset)
//! passes the batch, bounded by the request's `timeout_ms` (`REQUEST_TIMED_OUT` past it).
//! acks=0 gets no response at all, as in Kafka. A batch refused because of some of its records
//! names them in `record_errors` (KIP-467, [`crate::record_errors`]).

use std::sync::Arc;
use std::time::Duration;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use runnel_protocol::messages::{ProduceRequest, ProduceResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::Broker;
use crate::partition::Partition;
use crate::replica_manager::{AppendFailure, Appended};

/// The wait used when a request carries no positive timeout.
const DURABLE_WAIT_DEFAULT: Duration = Duration::from_secs(30);

/// One partition's outcome, waiting or final.
struct PartitionOutcome {
    response: PartitionProduceResponse,
    /// The partition and the last offset that must become durable before answering.
    wait: Option<(Arc<Partition>, i64)>,
}

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: ProduceRequest = request.decode()?;
    let acks = body.acks;
    let valid_acks = matches!(acks, -1..=1);
    let mut topics = Vec::with_capacity(body.topic_data.len());
    for topic in &body.topic_data {
        let outcomes: Vec<PartitionOutcome> = topic
            .partition_data
            .iter()
            .map(|data| {
                if !valid_acks {
                    return failed(data.index, ErrorCode::InvalidRequiredAcks, None);
                }
                append(
                    broker,
                    topic.name.as_str(),
                    data.index,
                    data.records.as_deref(),
                    acks == -1,
                )
            })
            .map(|outcome| outcome.for_version(request.version))
            .collect();
        topics.push((topic.name.clone(), outcomes));
    }
    if acks == 0 {
        return Ok(Reply::None);
    }
    let timeout = match body.timeout_ms {
        ms if ms > 0 => Duration::from_millis(ms as u64),
        _ => DURABLE_WAIT_DEFAULT,
    };
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
                let Some((partition, last_offset)) = outcome.wait.take() else {
                    continue;
                };
                let durable = partition.wait_for_high_watermark_above(last_offset);
                if tokio::time::timeout_at(deadline, durable).await.is_err() {
                    outcome.response.error_code = ErrorCode::RequestTimedOut.code();
                    outcome.response.base_offset = -1;
                }
            }
        }
        request.respond(&response(topics))
    })))
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

fn append(
    broker: &Broker,
    topic: &str,
    index: i32,
    records: Option<&[u8]>,
    acks_all: bool,
) -> PartitionOutcome {
    let Some(partition) = broker.replicas.partition(topic, index) else {
        if broker.replicas.is_offline(topic, index) {
            let message = "the partition's log directory is offline".to_string();
            return failed(index, ErrorCode::KafkaStorageError, Some(message));
        }
        return failed(index, ErrorCode::UnknownTopicOrPartition, None);
    };
    match broker
        .replicas
        .append(&partition, records.unwrap_or_default(), acks_all)
    {
        Ok(Appended {
            base_offset,
            last_offset,
            log_start_offset,
            log_append_time_ms,
        }) => {
            let wait = broker
                .replicas
                .is_durable()
                .then(|| (Arc::clone(&partition), last_offset));
            PartitionOutcome {
                response: PartitionProduceResponse::default()
                    .with_index(index)
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(log_append_time_ms)
                    .with_log_start_offset(log_start_offset),
                wait,
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
    }
}

fn response(
    topics: Vec<(runnel_protocol::messages::TopicName, Vec<PartitionOutcome>)>,
) -> ProduceResponse {
    let responses = topics
        .into_iter()
        .map(|(name, outcomes)| {
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(outcomes.into_iter().map(|o| o.response).collect())
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
