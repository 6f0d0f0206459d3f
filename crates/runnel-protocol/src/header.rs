//! Request and response headers.
//!
//! Every request starts with `api_key: i16, api_version: i16, correlation_id: i32`, whatever
//! its header version; [`RawRequestHeader`] reads just those, so the broker can answer an
//! unknown key or version with the right correlation id before deciding how to decode the
//! rest. The full header (client id, tagged fields when flexible) is then decoded with the
//! header version the API and version call for.
//!
//! Responses: a 4-byte size, the response header (v0: correlation id; v1 adds tagged fields;
//! ApiVersions always uses v0, even for flexible versions), then the body.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

use crate::error_code::ErrorCode;
use crate::frame::SIZE_PREFIX_BYTES;

/// Bytes of api key, api version and correlation id.
pub const RAW_HEADER_BYTES: usize = 8;

/// Failures decoding or encoding headers and bodies.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("request shorter than a header ({length} bytes)")]
    ShortHeader { length: usize },
    #[error("malformed request header for api key {api_key} v{api_version}: {reason}")]
    MalformedHeader {
        api_key: i16,
        api_version: i16,
        reason: String,
    },
    #[error("malformed {api:?} v{version} request body: {reason}")]
    MalformedBody {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// The three fields every request header starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RawRequestHeader {
    /// Reads the fixed prefix of a request without consuming it.
    pub fn peek(frame: &[u8]) -> Result<Self, CodecError> {
        if frame.len() < RAW_HEADER_BYTES {
            return Err(CodecError::ShortHeader {
                length: frame.len(),
            });
        }
        Ok(RawRequestHeader {
            api_key: i16::from_be_bytes([frame[0], frame[1]]),
            api_version: i16::from_be_bytes([frame[2], frame[3]]),
            correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
        })
    }
}

/// Decodes the full request header of a known API, consuming it from `frame`.
pub fn decode_request_header(
    api: ApiKey,
    api_version: i16,
    frame: &mut Bytes,
) -> Result<RequestHeader, CodecError> {
    let header_version = api.request_header_version(api_version);
    RequestHeader::decode(frame, header_version).map_err(|error| CodecError::MalformedHeader {
        api_key: api as i16,
        api_version,
        reason: error.to_string(),
    })
}

/// Decodes a request body.
///
/// Bytes left after the body are ignored, as Kafka's own parser does: librdkafka 2.12 sends
/// Metadata v12 with three extra bytes, and a stricter broker would drop its connections.
pub fn decode_body<T: Decodable>(
    api: ApiKey,
    version: i16,
    body: &mut Bytes,
) -> Result<T, CodecError> {
    T::decode(body, version).map_err(|error| CodecError::MalformedBody {
        api,
        version,
        reason: error.to_string(),
    })
}

/// Encodes a whole response frame: size prefix, response header and body.
pub fn encode_response<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, CodecError> {
    let encode_error = |error| encode_failed(api, version, error);
    let header_version = api.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version).map_err(encode_error)?
        + body.compute_size(version).map_err(encode_error)?;
    let mut buf = BytesMut::with_capacity(SIZE_PREFIX_BYTES + size);
    buf.put_i32(size as i32);
    header
        .encode(&mut buf, header_version)
        .map_err(encode_error)?;
    body.encode(&mut buf, version).map_err(encode_error)?;
    Ok(buf.freeze())
}

/// A response for a request whose API or version has no schema here: the correlation id
/// followed by the `UNSUPPORTED_VERSION` error code. Every Kafka response to an API without a
/// leading throttle time starts with its error code, and clients never send versions we did
/// not advertise, so this is what a misbehaving peer gets instead of silence.
pub fn encode_unsupported_version(correlation_id: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(SIZE_PREFIX_BYTES + 6);
    buf.put_i32(6);
    buf.put_i32(correlation_id);
    buf.put_i16(ErrorCode::UnsupportedVersion.code());
    buf.freeze()
}

/// kafka-protocol reports errors as `anyhow::Error`; converting through `Display` keeps that
/// crate's error type out of our signatures.
fn encode_failed<E: std::fmt::Display>(api: ApiKey, version: i16, error: E) -> CodecError {
    CodecError::Encode {
        api,
        version,
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest};

    #[test]
    fn peeks_the_fixed_prefix() {
        let frame = [0, 3, 0, 9, 0, 0, 1, 0, 0xff];
        let raw = RawRequestHeader::peek(&frame).expect("peek");
        assert_eq!(
            raw,
            RawRequestHeader {
                api_key: 3,
                api_version: 9,
                correlation_id: 256
            }
        );
        assert!(RawRequestHeader::peek(&frame[..5]).is_err());
    }

    #[test]
    fn api_versions_response_header_is_v0_even_when_flexible() {
        let frame = encode_response(ApiKey::ApiVersions, 3, 7, &ApiVersionsResponse::default())
            .expect("encode");
        // size(4) + correlation id(4), then the body starts with error_code 0 (no tag byte).
        assert_eq!(&frame[4..8], &7i32.to_be_bytes());
        assert_eq!(&frame[8..10], &0i16.to_be_bytes());
    }

    #[test]
    fn trailing_bytes_after_a_body_are_ignored_but_short_bodies_are_malformed() {
        let mut body = BytesMut::new();
        MetadataRequest::default()
            .encode(&mut body, 12)
            .expect("encode");
        body.put_slice(&[0, 0, 0]);
        let mut whole = body.clone().freeze();
        assert!(decode_body::<MetadataRequest>(ApiKey::Metadata, 12, &mut whole).is_ok());
        let mut short = body.freeze().slice(..1);
        let result = decode_body::<MetadataRequest>(ApiKey::Metadata, 12, &mut short);
        assert!(matches!(result, Err(CodecError::MalformedBody { .. })));
    }
}
