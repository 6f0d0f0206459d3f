//! EndTxn (key 26): commits or aborts the producer's transaction.
//!
//! The answer leaves once PrepareCommit/PrepareAbort is durable in `__transaction_state`; the
//! markers are written after it (`transaction_coordinator.rs`), and until they are, the
//! transactional id's next requests get CONCURRENT_TRANSACTIONS, as in Kafka. v5+ is
//! transactions v2 (KIP-890 part 2): the epoch is bumped by every EndTxn and the answer
//! carries the producer id and epoch for the next transaction. PRODUCER_FENCED exists from
//! v2; older versions get INVALID_PRODUCER_EPOCH.

use std::sync::Arc;

use runnel_coordinator::transaction::request::{EndTxnRequest as TxnEnd, TxnApi};
use runnel_coordinator::transaction::{
    TxnErrorCode, TxnRequest, TxnResponse, TxnResult, TxnVersion,
};
use runnel_protocol::header::CodecError;
use runnel_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::{Reply, Request};
use crate::broker::Broker;
use crate::transaction_coordinator::TransactionCoordinator;

pub fn handle(broker: &Arc<Broker>, mut request: Request) -> Result<Reply, CodecError> {
    let body: EndTxnRequest = request.decode()?;
    let version = request.version;
    let transactional_id = body.transactional_id.to_string();
    let end = TxnEnd {
        transactional_id: transactional_id.clone(),
        producer_id: body.producer_id.0,
        producer_epoch: body.producer_epoch,
        result: if body.committed {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
        client_version: if version >= 5 {
            TxnVersion::V2
        } else {
            TxnVersion::V0
        },
    };
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let answer =
            TransactionCoordinator::call(&broker, &transactional_id, TxnRequest::EndTxn(end)).await;
        let (error, producer_id, producer_epoch) = match answer {
            TxnResponse::EndTxn(result) => {
                (result.error, result.producer_id, result.producer_epoch)
            }
            _ => (TxnErrorCode::UnknownServerError, -1, -1),
        };
        let error = error.for_version(TxnApi::EndTxn, version);
        let response = EndTxnResponse::default()
            .with_error_code(error.code())
            .with_producer_id(producer_id.into())
            .with_producer_epoch(producer_epoch);
        request.respond(&response)
    })))
}
