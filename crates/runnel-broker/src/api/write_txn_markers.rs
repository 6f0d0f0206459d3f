//! WriteTxnMarkers (key 27) v1 (Kafka 4 removed v0, KIP-896): another broker's transaction
//! coordinator asks this one to write COMMIT or ABORT markers to partitions this broker holds
//! (Kafka's `KafkaApis.handleWriteTxnMarkersRequest`). Each partition is answered once its
//! marker is durable, or with its error: `UNKNOWN_TOPIC_OR_PARTITION` for a partition that is gone,
//! `NOT_LEADER_OR_FOLLOWER` for one another broker holds, `INVALID_PRODUCER_EPOCH` or
//! `TRANSACTION_COORDINATOR_FENCED` when the log refuses the marker. A `__consumer_offsets`
//! partition's marker goes to its group coordinator task, in order with its other records.
//!
//! Runnel's brokers send it to each other only ([`crate::inter_broker`]); it is listed in
//! ApiVersions as Kafka lists it. The request is bounded by the frame limit; each marker's
//! partitions are written one after the other.

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use runnel_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use runnel_protocol::ErrorCode;

use super::{Reply, Request};
use crate::broker::Broker;
use crate::inter_broker::MarkerRequest;
use crate::transaction_coordinator::write_marker_here;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: WriteTxnMarkersRequest = request.decode()?;
    let broker = Arc::clone(broker);
    Ok(Reply::Ordered(Box::pin(async move {
        let mut markers = Vec::with_capacity(body.markers.len());
        for marker in &body.markers {
            let mut topics = Vec::with_capacity(marker.topics.len());
            for topic in &marker.topics {
                let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
                for &index in &topic.partition_indexes {
                    let request = MarkerRequest {
                        producer_id: marker.producer_id.into(),
                        producer_epoch: marker.producer_epoch,
                        commit: marker.transaction_result,
                        coordinator_epoch: marker.coordinator_epoch,
                        topic: topic.name.as_str(),
                        partition: index,
                    };
                    let code = match write_marker_here(&broker, &request).await {
                        Ok(()) => ErrorCode::None,
                        Err(code) => code,
                    };
                    partitions.push(
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(index)
                            .with_error_code(code.code()),
                    );
                }
                topics.push(
                    WritableTxnMarkerTopicResult::default()
                        .with_name(topic.name.clone())
                        .with_partitions(partitions),
                );
            }
            markers.push(
                WritableTxnMarkerResult::default()
                    .with_producer_id(marker.producer_id)
                    .with_topics(topics),
            );
        }
        let response = WriteTxnMarkersResponse::default().with_markers(markers);
        Ok(Reply::Ready(request.respond(&response)?))
    })))
}
