//! Runnel's Kafka wire protocol layer.
//!
//! Owns everything about bytes on the wire and nothing about sockets or files:
//! - [`control_record`]: control batches' one record (transaction markers' COMMIT/ABORT key and
//!   coordinator epoch), encoded and read with bounds.
//! - [`frame`]: the 4-byte size prefix and its limits.
//! - [`header`]: request header decoding (flexible and not), body decoding, and response
//!   encoding, including ApiVersions' always-v0 response header.
//! - [`api_versions`]: the table of API keys and version ranges Runnel serves.
//! - [`error_code`]: Kafka's error codes, names verbatim.
//! - [`fetch_response`]: Fetch responses encoded around their record bytes, which the caller
//!   supplies (file ranges), for zero-copy sends.
//! - [`record_batch`]: record batch v2 headers, validation (size, magic, CRC-32C, fields) and the
//!   fields the broker patches on append.
//! - [`record_validation`]: every record of a produced batch walked before it is
//!   acknowledged (streaming through the decompressor, with a bound on the inflated size), and
//!   a topic's `compression.type` applied in the same pass.
//! - [`reencode`]: records written again as one batch (compaction's survivors).
//!
//! Message bodies are the `kafka-protocol` crate's generated types, re-exported as
//! [`messages`]; this crate adds what that crate leaves to a broker.
//!
//! Invariant: no count or length read from the wire is believed before it is checked against
//! the bytes left, whoever decodes it. The published `kafka-protocol` 0.18.0 allocated for array
//! counts (and record, header and snappy lengths) as read, so a 21-byte frame could abort the
//! process; the workspace builds a patched copy instead (`vendor/kafka-protocol`, through
//! `[patch.crates-io]` in the root `Cargo.toml`), whose `RUNNEL-PATCHES.md` says what changed,
//! why, and how to re-apply it on an upgrade.

pub mod api_versions;
pub mod control_record;
pub mod error_code;
pub mod fetch_response;
pub mod frame;
pub mod header;
pub mod record_batch;
pub mod record_validation;
pub mod reencode;

pub use error_code::ErrorCode;
pub use kafka_protocol::messages;
pub use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
pub use kafka_protocol::records;
