//! ApiVersions (key 18): the served table, and the v0 fallback for versions above ours.
//!
//! Its response header is always v0 (kafka-protocol encodes it so). A client asking for a
//! version above our max gets a v0 body with `UNSUPPORTED_VERSION` and our table, and retries
//! with the highest version we listed, as with Kafka.

use bytes::Bytes;
use runnel_protocol::api_versions::SERVED_APIS;
use runnel_protocol::header::{self, CodecError};
use runnel_protocol::messages::api_versions_response::ApiVersion;
use runnel_protocol::messages::{ApiKey, ApiVersionsResponse};
use runnel_protocol::ErrorCode;

use super::{Reply, Request};

pub fn handle(request: Request) -> Result<Reply, CodecError> {
    // The v3+ body (client software name and version) is informational; Kafka checks its
    // characters, clients never get it wrong, and there is nothing to act on, so it is not
    // decoded.
    Ok(Reply::Ready(request.respond(&response(ErrorCode::None))?))
}

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
