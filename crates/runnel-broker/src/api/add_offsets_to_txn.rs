//! AddOffsetsToTxn (key 25): the group's `__consumer_offsets` partition joins the producer's
//! transaction, so that TxnOffsetCommit's offsets commit or abort with it (its marker is
//! written by the group coordinator, `group_coordinator.rs`). PRODUCER_FENCED exists from v2;
//! older versions get INVALID_PRODUCER_EPOCH.

use std::sync::Arc;

use runnel_coordinator::transaction::request::{AddOffsetsRequest, TxnApi};
use runnel_coordinator::transaction::{TxnErrorCode, TxnRequest, TxnResponse, TxnVersion};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::{Reply, Request};
use crate::broker::Broker;
use crate::transaction_coordinator::TransactionCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: AddOffsetsToTxnRequest = request.decode()?;
    let version = request.version;
    let transactional_id = body.transactional_id.to_string();
    let add = AddOffsetsRequest {
        transactional_id: transactional_id.clone(),
        producer_id: body.producer_id.0,
        producer_epoch: body.producer_epoch,
        group_id: body.group_id.to_string(),
        client_version: TxnVersion::V0,
    };
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let answer =
            TransactionCoordinator::call(&broker, &transactional_id, TxnRequest::AddOffsets(add))
                .await;
        let error = match answer {
            TxnResponse::AddOffsets(error) => error,
            _ => TxnErrorCode::UnknownServerError,
        };
        let error = error.for_version(TxnApi::AddOffsetsToTxn, version);
        request.respond(&AddOffsetsToTxnResponse::default().with_error_code(error.code()))
    })))
}
