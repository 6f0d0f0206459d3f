//! InitProducerId (key 22): hands idempotent producers a producer id and epoch.
//!
//! Ids come from the controller's durable blocks, so they never repeat across restarts. A
//! non-transactional producer always gets a fresh id at epoch 0, also when it passes its old
//! id and epoch (KIP-360), as Kafka does. Transactional ids need the transaction coordinator,
//! which does not exist yet: they are refused with `INVALID_REQUEST` rather than left to retry.

use std::sync::Arc;

use runnel_protocol::header::CodecError;
use runnel_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use runnel_protocol::ErrorCode;

use super::{Reply, Request};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: InitProducerIdRequest = request.decode()?;
    let response = if body.transactional_id.is_some() {
        tracing::warn!("refusing InitProducerId with a transactional id: not supported yet");
        failed(ErrorCode::InvalidRequest)
    } else {
        match broker.controller.allocate_producer_id() {
            Ok(id) => InitProducerIdResponse::default()
                .with_producer_id(id.into())
                .with_producer_epoch(0),
            Err(error) => {
                tracing::error!(%error, "could not allocate a producer id");
                failed(ErrorCode::KafkaStorageError)
            }
        }
    };
    Ok(Reply::Ready(request.respond(&response)?))
}

fn failed(error: ErrorCode) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id((-1).into())
        .with_producer_epoch(-1)
}
