//! ApiVersions (key 18): the served table, the features (v3+: `transaction.version`), and
//! the v0 fallback for versions above ours.
//!
//! Its response header is always v0 (kafka-protocol encodes it so). A client asking for a
//! version above our max gets a v0 body with `UNSUPPORTED_VERSION` and our table, and retries
//! with the highest version we listed, as with Kafka.

use bytes::Bytes;
use runnel_protocol::api_versions::SERVED_APIS;
use runnel_protocol::header::{self, CodecError};
use runnel_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use runnel_protocol::messages::{ApiKey, ApiVersionsResponse};
use runnel_protocol::{ErrorCode, StrBytes};

use super::{Reply, Request};
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: Request) -> Result<Reply, CodecError> {
    // The v3+ body (client software name and version) is informational; Kafka checks its
    // characters, clients never get it wrong, and there is nothing to act on, so it is not
    // decoded.
    let level = broker.config.transactions.transaction_version.level();
    let response = response(ErrorCode::None)
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
            .with_min_version(0)
            .with_max_version(TRANSACTION_VERSION_MAX)])
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
            .with_min_version_level(level)
            .with_max_version_level(level)]);
    Ok(Reply::Ready(request.respond(&response)?))
}

/// Kafka's feature (KIP-584, KIP-1022) that tells clients which transaction protocol the
/// cluster runs: at level 2, transactions v2 (KIP-890 part 2), which Kafka 4.x clients then use
/// (Produce v12 and TxnOffsetCommit v5 add partitions implicitly, EndTxn v5 bumps the epoch).
const TRANSACTION_VERSION: &str = "transaction.version";
const TRANSACTION_VERSION_MAX: i16 = 2;

/// The epoch of the finalized features. Kafka uses the metadata offset of the last feature
/// change; a client only replaces what it knows with a higher epoch. The level is fixed for
/// a node's life, so one epoch serves.
const FINALIZED_FEATURES_EPOCH: i64 = 1;

fn response(error: ErrorCode) -> ApiVersionsResponse {
    let api_keys = SERVED_APIS
        .iter()
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.min_version)
                .with_max_version(api.max_version)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error.code())
        .with_api_keys(api_keys)
}

/// The v0 response to an ApiVersions request above our max version.
pub fn unsupported_api_versions_response(correlation_id: i32) -> Result<Bytes, CodecError> {
    header::encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &response(ErrorCode::UnsupportedVersion),
    )
}
