//! InitProducerId (key 22): hands producers a producer id and epoch.
//!
//! Without a transactional id (an idempotent producer) the id comes straight from the
//! controller's durable blocks, so ids never repeat across restarts, and it is always a fresh
//! id at epoch 0, also when the producer passes its old id and epoch (KIP-360), as Kafka does.
//! With one, the transaction coordinator answers (`transaction_coordinator.rs`): the id is kept
//! per transactional id and its epoch bumped, which fences the previous producer; an ongoing
//! transaction of that producer is aborted first (CONCURRENT_TRANSACTIONS until it is, which
//! clients retry); a timeout above `transaction.max.timeout.ms` is INVALID_TRANSACTION_TIMEOUT;
//! v3+ may name the id and epoch a recovering producer holds (KIP-360), and naming only one
//! of them is INVALID_REQUEST, as in Kafka's `KafkaApis`. PRODUCER_FENCED exists from v4;
//! older versions get INVALID_PRODUCER_EPOCH.

use std::sync::Arc;

use runnel_coordinator::transaction::request::{InitProducerIdRequest as TxnInit, TxnApi};
use runnel_coordinator::transaction::{TxnErrorCode, TxnRequest, TxnResponse};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use runnel_protocol::ErrorCode;

use super::{Reply, Request};
use crate::broker::Broker;
use crate::producer_ids::ProducerIds;
use crate::transaction_coordinator::TransactionCoordinator;

/// Kafka's `RecordBatch.NO_PRODUCER_ID` and `NO_PRODUCER_EPOCH`.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: InitProducerIdRequest = request.decode()?;
    let version = request.version;
    let Some(transactional_id) = body.transactional_id.as_ref().map(|id| id.to_string()) else {
        if let Ok(id) = ProducerIds::allocate(broker) {
            return Ok(Reply::Ready(request.respond(&idempotent(id))?));
        }
        // No id at hand: wait for the next block to be recorded.
        let broker = Arc::clone(broker);
        return Ok(Reply::Pending(Box::pin(async move {
            let response = match ProducerIds::allocate_waiting(&broker).await {
                Ok(id) => idempotent(id),
                Err(error) => {
                    tracing::error!(%error, "could not allocate a producer id");
                    failed(ErrorCode::KafkaStorageError.code())
                }
            };
            request.respond(&response)
        })));
    };
    let producer_id_and_epoch = match (body.producer_id.0, body.producer_epoch) {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => Ok(None),
        (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => Err(TxnErrorCode::InvalidRequest),
        (producer_id, epoch) => Ok(Some((producer_id, epoch))),
    };
    let init = match producer_id_and_epoch {
        Ok(producer_id_and_epoch) => TxnInit {
            transactional_id: transactional_id.clone(),
            transaction_timeout_ms: body.transaction_timeout_ms,
            producer_id_and_epoch,
        },
        Err(error) => {
            return Ok(Reply::Ready(request.respond(&failed(error.code()))?));
        }
    };
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let answer = TransactionCoordinator::call(
            &broker,
            &transactional_id,
            TxnRequest::InitProducerId(init),
        )
        .await;
        let response = match answer {
            TxnResponse::InitProducerId(result) if result.error == TxnErrorCode::None => {
                InitProducerIdResponse::default()
                    .with_producer_id(result.producer_id.into())
                    .with_producer_epoch(result.producer_epoch)
            }
            TxnResponse::InitProducerId(result) => failed(
                result
                    .error
                    .for_version(TxnApi::InitProducerId, version)
                    .code(),
            ),
            _ => failed(TxnErrorCode::UnknownServerError.code()),
        };
        request.respond(&response)
    })))
}

/// An idempotent producer's id, at epoch 0.
fn idempotent(producer_id: i64) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_producer_id(producer_id.into())
        .with_producer_epoch(0)
}

fn failed(error: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1)
}
