//! DeleteTopics (key 20): deletes topics by name (v1–5) or by name or id (v6).
//!
//! The removal is recorded in the metadata log first, then the partitions' directories are
//! deleted; a crash in between leaves directories that the next start removes.

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::delete_topics_response::DeletableTopicResult;
use runnel_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use runnel_protocol::{ErrorCode, StrBytes};
use uuid::Uuid;

use super::{topic_name, Reply, Request};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: DeleteTopicsRequest = request.decode()?;
    let targets: Vec<(Option<String>, Uuid)> = if request.version >= 6 {
        body.topics
            .iter()
            .map(|topic| {
                (
                    topic.name.as_ref().map(|name| name.to_string()),
                    topic.topic_id,
                )
            })
            .collect()
    } else {
        body.topic_names
            .iter()
            .map(|name| (Some(name.to_string()), Uuid::nil()))
            .collect()
    };
    let broker = Arc::clone(broker);
    // In request order, and the connection's next request only after (see CreateTopics).
    Ok(Reply::Ordered(Box::pin(async move {
        let mut responses = Vec::with_capacity(targets.len());
        for (name, topic_id) in targets {
            let mut result = delete(&broker, name, topic_id).await;
            if request.version < 6 {
                result.topic_id = Uuid::nil();
            }
            if request.version < 5 {
                result.error_message = None;
            }
            responses.push(result);
        }
        let response = DeleteTopicsResponse::default().with_responses(responses);
        Ok(Reply::Ready(request.respond(&response)?))
    })))
}

async fn delete(broker: &Broker, name: Option<String>, topic_id: Uuid) -> DeletableTopicResult {
    let image = broker.controller.image();
    let topic = match &name {
        Some(name) => image.topic(name),
        None => image.topic_by_id(&topic_id),
    };
    let result = DeletableTopicResult::default()
        .with_name(name.as_deref().map(topic_name))
        .with_topic_id(topic_id);
    let Some(topic) = topic else {
        let code = if name.is_some() {
            ErrorCode::UnknownTopicOrPartition
        } else {
            ErrorCode::UnknownTopicId
        };
        return result.with_error_code(code.code());
    };
    let result = result
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.topic_id);
    match broker.delete_topic(topic.topic_id).await {
        Ok(()) => {
            tracing::info!(topic = %topic.name, "deleted topic");
            result
        }
        Err(error) => {
            tracing::error!(topic = %topic.name, %error, "deleting a topic failed");
            result
                .with_error_code(ErrorCode::KafkaStorageError.code())
                .with_error_message(Some(StrBytes::from_string(error.to_string())))
        }
    }
}
