//! OffsetDelete (key 47): deletes a group's committed offsets for some partitions. Refused
//! per partition with GROUP_SUBSCRIBED_TO_TOPIC while a member subscribes to the topic;
//! an unknown group gets GROUP_ID_NOT_FOUND.

use std::sync::Arc;

use runnel_coordinator::request::{
    OffsetDeleteRequest as GroupOffsetDelete, Request as GroupRequest, Response,
};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use runnel_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use runnel_protocol::ErrorCode;

use super::{topic_name, Reply, Request};
use crate::broker::Broker;
use crate::group_coordinator::GroupCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: OffsetDeleteRequest = request.decode()?;
    let delete = GroupOffsetDelete {
        group_id: body.group_id.to_string(),
        partitions: body
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.to_string(), p.partition_index))
            })
            .collect(),
    };
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let group_id = delete.group_id.clone();
        let ask = GroupRequest::OffsetDelete(delete);
        let (error, partitions) = match GroupCoordinator::call(&broker, &group_id, ask).await {
            Ok(Response::OffsetDelete(result)) => (result.error, result.partitions),
            Ok(_) => (ErrorCode::UnknownServerError, Vec::new()),
            Err(code) => (code, Vec::new()),
        };
        let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
        for (topic, partition, error) in partitions {
            let result = OffsetDeleteResponsePartition::default()
                .with_partition_index(partition)
                .with_error_code(error.code());
            match topics.last_mut() {
                Some(last) if last.name.as_str() == topic => last.partitions.push(result),
                _ => topics.push(
                    OffsetDeleteResponseTopic::default()
                        .with_name(topic_name(&topic))
                        .with_partitions(vec![result]),
                ),
            }
        }
        let response = OffsetDeleteResponse::default()
            .with_error_code(error.code())
            .with_topics(topics);
        request.respond(&response)
    })))
}
