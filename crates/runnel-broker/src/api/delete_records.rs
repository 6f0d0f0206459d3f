//! DeleteRecords (key 21): moves partitions' log start offsets forward.
//!
//! Per partition: offset -1 means the high watermark; an offset above the high watermark (or
//! negative otherwise) is `OFFSET_OUT_OF_RANGE`. Segments wholly below the new log start offset
//! are deleted, and the log start offsets are written to `log-start-offset-checkpoint` before
//! the response, so the new low watermark survives a restart.

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use runnel_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use runnel_protocol::ErrorCode;

use super::{Reply, Request};
use crate::broker::Broker;

/// Kafka's "delete everything below the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: DeleteRecordsRequest = request.decode()?;
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let worker = Arc::clone(&broker);
        // Segment deletion and the checkpoint's fsync are blocking file work.
        let topics = tokio::task::spawn_blocking(move || delete(&worker, &body))
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "DeleteRecords task failed");
                Vec::new()
            });
        request.respond(&DeleteRecordsResponse::default().with_topics(topics))
    })))
}

fn delete(broker: &Broker, body: &DeleteRecordsRequest) -> Vec<DeleteRecordsTopicResult> {
    let mut moved = false;
    let mut topics: Vec<DeleteRecordsTopicResult> = body
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|requested| {
                    let index = requested.partition_index;
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(index)
                        .with_low_watermark(-1);
                    let Some(partition) = broker.replicas.partition(topic.name.as_str(), index)
                    else {
                        let code = broker.not_hosted_error(topic.name.as_str(), index);
                        return result.with_error_code(code.code());
                    };
                    let high_watermark = partition.offsets().high_watermark;
                    let offset = match requested.offset {
                        HIGH_WATERMARK => high_watermark,
                        offset if (0..=high_watermark).contains(&offset) => offset,
                        _ => return result.with_error_code(ErrorCode::OffsetOutOfRange.code()),
                    };
                    match partition.advance_log_start_offset(offset) {
                        Ok(log_start_offset) => {
                            moved = true;
                            result.with_low_watermark(log_start_offset)
                        }
                        Err(error) => {
                            tracing::error!(topic = %topic.name.as_str(), partition = index, %error, "DeleteRecords failed");
                            result.with_error_code(ErrorCode::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    if moved {
        if let Err(error) = broker.replicas.write_checkpoints() {
            tracing::error!(%error, "could not checkpoint log start offsets after DeleteRecords");
            for partition in topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                if partition.error_code == 0 {
                    partition.error_code = ErrorCode::KafkaStorageError.code();
                }
            }
        }
    }
    topics
}
