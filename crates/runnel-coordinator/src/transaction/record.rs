//! The records the transaction coordinator writes to `__transaction_state`, in Kafka's own
//! schemas (`TransactionLogKey.json`, `TransactionLogValue.json`), so the topic reads the same as
//! a Kafka broker's and a Kafka broker could load ours.
//!
//! Every record's key names one transactional id; its value is that id's whole state after a
//! transition (the topic is compacted: the last value wins). A record with a null value is a
//! tombstone: the transactional id expired and is forgotten.
//!
//! ```text
//! TransactionLogKey v0:      version i16 = 0 | transactional_id string
//!
//! TransactionLogValue v0:    version i16 = 0 | producer_id i64 | producer_epoch i16
//!                            | transaction_timeout_ms i32 | transaction_status i8
//!                            | transaction_partitions: i32 count (-1 = null), then per topic:
//!                                topic string | partition_ids: i32 count, then i32 each
//!                            | last_update_timestamp_ms i64 | start_timestamp_ms i64
//!
//! TransactionLogValue v1 (flexible, Kafka's TV1+):
//!                            version i16 = 1 | producer_id i64 | producer_epoch i16
//!                            | transaction_timeout_ms i32 | transaction_status i8
//!                            | transaction_partitions: uvarint count+1 (0 = null), then per topic:
//!                                topic compact string | partition_ids: uvarint count+1, i32 each
//!                                | tagged fields (none of ours)
//!                            | last_update_timestamp_ms i64 | start_timestamp_ms i64
//!                            | tagged fields: uvarint count, then per field uvarint tag,
//!                              uvarint size, bytes; ascending tags, written only when not the
//!                              default:
//!                                tag 0 PreviousProducerId i64 (default -1)
//!                                tag 1 NextProducerId i64 (default -1)
//!                                tag 2 ClientTransactionVersion i16 (default 0)
//!                                tag 3 NextProducerEpoch i16 (default -1): Kafka's newest
//!                                      `TransactionLog.java` writes a NextProducerEpoch
//!                                      (KIP-939) but the schema file we read predates it, so
//!                                      its tag number 3 is our assumption: read only when it
//!                                      is 2 bytes (skipped otherwise), written only if set
//! ```
//! `string` is an i16 length and UTF-8 bytes; a compact string a uvarint length+1. Statuses are
//! Kafka's `TransactionState` ids ([`TxnState::id`]). The partitions are null exactly when the
//! status is Empty (Kafka's `TransactionLog.valueToBytes`); we write topics in name order and
//! partitions ascending (Kafka's order is its hash map's, which no reader depends on). Unknown
//! tags are skipped, as Kafka's generated readers do.
//!
//! Bytes after the last field are ignored, as Kafka's readers ignore them.
//!
//! Decoding never trusts a length or count: each is checked against the bytes left before
//! anything is read or allocated, so hostile or damaged bytes give a [`TxnRecordError`], never
//! a panic or a huge allocation.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::state::TxnState;
use crate::record::put_string;

/// The only key version Kafka has written.
const KEY_VERSION: i16 = 0;
/// `PreviousProducerId`, `NextProducerId`, `ClientTransactionVersion`, `NextProducerEpoch`.
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;
const TAG_NEXT_PRODUCER_EPOCH: u32 = 3;

/// One transactional id's state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    /// The value's schema version: 0 (before transactions v1) or 1 (flexible, tagged fields).
    pub version: i16,
    pub producer_id: i64,
    /// v1 tag 0: the producer id before the last transition (-1 if unknown).
    pub previous_producer_id: i64,
    /// v1 tag 1: the producer id handed out when the epoch ran out mid-transaction (-1 if none).
    pub next_producer_id: i64,
    /// v1 tag 3 (Kafka's KIP-939 schema): -1 unless a two-phase commit set it.
    pub next_producer_epoch: i16,
    pub producer_epoch: i16,
    pub transaction_timeout_ms: i32,
    pub state: TxnState,
    /// (topic, partition), sorted.
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_timestamp_ms: i64,
    pub start_timestamp_ms: i64,
    /// v1 tag 2: the transaction version the client used (Kafka's feature level: 0, 1 or 2).
    pub client_transaction_version: i16,
}

/// One record of `__transaction_state`; a `None` value is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub value: Option<TxnValue>,
}

/// A `__transaction_state` record that does not decode.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TxnRecordError {
    #[error("transaction record has no key")]
    NoKey,
    #[error("transaction record ends early while reading {what}")]
    Truncated { what: &'static str },
    #[error("transaction record field {what} is not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("transaction record field {what} is null but may not be")]
    UnexpectedNull { what: &'static str },
    #[error("transaction record field {what} has a negative length or count {value}")]
    NegativeLength { what: &'static str, value: i64 },
    #[error("transaction record varint for {what} is longer than 5 bytes")]
    VarintTooLong { what: &'static str },
    #[error("transaction record tag {tag} has size {size}, expected {expected}")]
    TagSize {
        tag: u32,
        size: usize,
        expected: usize,
    },
    #[error("unknown transaction record key version {version}")]
    UnknownKeyVersion { version: i16 },
    #[error("unknown transaction record value version {version}")]
    UnknownValueVersion { version: i16 },
    #[error("unknown transaction status {status}")]
    UnknownStatus { status: i8 },
}

impl TxnRecord {
    /// Encodes the key and value (`None` for a tombstone).
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::with_capacity(4 + self.transactional_id.len());
        key.put_i16(KEY_VERSION);
        put_string(&mut key, &self.transactional_id);
        (key.freeze(), self.value.as_ref().map(encode_value))
    }

    /// Decodes a record's key and value.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<TxnRecord, TxnRecordError> {
        let mut key = Reader(key.ok_or(TxnRecordError::NoKey)?);
        let version = key.i16("key version")?;
        if version != KEY_VERSION {
            return Err(TxnRecordError::UnknownKeyVersion { version });
        }
        let transactional_id = key.string("transactional id")?;
        let value = value.map(decode_value).transpose()?;
        Ok(TxnRecord {
            transactional_id,
            value,
        })
    }
}

fn encode_value(value: &TxnValue) -> Bytes {
    let flexible = value.version >= 1;
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(value.version);
    buf.put_i64(value.producer_id);
    buf.put_i16(value.producer_epoch);
    buf.put_i32(value.transaction_timeout_ms);
    buf.put_i8(value.state.id());
    let topics = group_by_topic(&value.partitions);
    match (value.state, flexible) {
        (TxnState::Empty, false) => buf.put_i32(-1),
        (TxnState::Empty, true) => put_uvarint(&mut buf, 0),
        (_, false) => {
            buf.put_i32(topics.len() as i32);
            for (topic, partitions) in &topics {
                put_string(&mut buf, topic);
                buf.put_i32(partitions.len() as i32);
                partitions.iter().for_each(|p| buf.put_i32(*p));
            }
        }
        (_, true) => {
            put_uvarint(&mut buf, topics.len() as u32 + 1);
            for (topic, partitions) in &topics {
                put_uvarint(&mut buf, topic.len() as u32 + 1);
                buf.put_slice(topic.as_bytes());
                put_uvarint(&mut buf, partitions.len() as u32 + 1);
                partitions.iter().for_each(|p| buf.put_i32(*p));
                put_uvarint(&mut buf, 0);
            }
        }
    }
    buf.put_i64(value.last_update_timestamp_ms);
    buf.put_i64(value.start_timestamp_ms);
    if flexible {
        put_tagged_fields(&mut buf, value);
    }
    buf.freeze()
}

fn put_tagged_fields(buf: &mut BytesMut, value: &TxnValue) {
    let mut tags: Vec<(u32, Vec<u8>)> = Vec::with_capacity(4);
    if value.previous_producer_id != -1 {
        tags.push((
            TAG_PREVIOUS_PRODUCER_ID,
            value.previous_producer_id.to_be_bytes().to_vec(),
        ));
    }
    if value.next_producer_id != -1 {
        tags.push((
            TAG_NEXT_PRODUCER_ID,
            value.next_producer_id.to_be_bytes().to_vec(),
        ));
    }
    if value.client_transaction_version != 0 {
        tags.push((
            TAG_CLIENT_TRANSACTION_VERSION,
            value.client_transaction_version.to_be_bytes().to_vec(),
        ));
    }
    if value.next_producer_epoch != -1 {
        tags.push((
            TAG_NEXT_PRODUCER_EPOCH,
            value.next_producer_epoch.to_be_bytes().to_vec(),
        ));
    }
    put_uvarint(buf, tags.len() as u32);
    for (tag, data) in tags {
        put_uvarint(buf, tag);
        put_uvarint(buf, data.len() as u32);
        buf.put_slice(&data);
    }
}

fn decode_value(bytes: &[u8]) -> Result<TxnValue, TxnRecordError> {
    let mut buf = Reader(bytes);
    let version = buf.i16("value version")?;
    if !(0..=1).contains(&version) {
        return Err(TxnRecordError::UnknownValueVersion { version });
    }
    let flexible = version >= 1;
    let producer_id = buf.i64("producer id")?;
    let producer_epoch = buf.i16("producer epoch")?;
    let transaction_timeout_ms = buf.i32("transaction timeout")?;
    let status = buf.i8("transaction status")?;
    let state = TxnState::from_id(status).ok_or(TxnRecordError::UnknownStatus { status })?;
    let partitions = if flexible {
        decode_partitions_flexible(&mut buf)?
    } else {
        decode_partitions(&mut buf)?
    };
    let last_update_timestamp_ms = buf.i64("last update timestamp")?;
    let start_timestamp_ms = buf.i64("start timestamp")?;
    let mut value = TxnValue {
        version,
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        next_producer_epoch: -1,
        producer_epoch,
        transaction_timeout_ms,
        state,
        // Kafka ignores the partitions of an Empty transaction.
        partitions: if state == TxnState::Empty {
            BTreeSet::new()
        } else {
            partitions
        },
        last_update_timestamp_ms,
        start_timestamp_ms,
        client_transaction_version: 0,
    };
    if flexible {
        decode_tagged_fields(&mut buf, &mut value)?;
    }
    Ok(value)
}

/// v0: an i32 count of topics (-1 = null), each an i16-length name and an i32 count of i32s.
fn decode_partitions(buf: &mut Reader<'_>) -> Result<BTreeSet<(String, i32)>, TxnRecordError> {
    let mut partitions = BTreeSet::new();
    let topics = buf.i32("partition topic count")?;
    if topics < 0 {
        return Ok(partitions);
    }
    // A topic takes at least a 2-byte name length and a 4-byte partition count.
    buf.check_count(topics as usize, 6, "partition topic count")?;
    for _ in 0..topics {
        let topic = buf.string("partition topic")?;
        let count = buf.i32("partition count")?;
        if count < 0 {
            return Err(TxnRecordError::NegativeLength {
                what: "partition count",
                value: i64::from(count),
            });
        }
        buf.check_count(count as usize, 4, "partition count")?;
        for _ in 0..count {
            partitions.insert((topic.clone(), buf.i32("partition")?));
        }
    }
    Ok(partitions)
}

/// v1: a uvarint count+1 of topics (0 = null), each a compact name, a uvarint count+1 of
/// i32s and an empty tagged-field section.
fn decode_partitions_flexible(
    buf: &mut Reader<'_>,
) -> Result<BTreeSet<(String, i32)>, TxnRecordError> {
    let mut partitions = BTreeSet::new();
    let topics = buf.uvarint("partition topic count")?;
    if topics == 0 {
        return Ok(partitions);
    }
    let topics = topics as usize - 1;
    // A topic takes at least a 1-byte name length, a 1-byte count and a 1-byte tag count.
    buf.check_count(topics, 3, "partition topic count")?;
    for _ in 0..topics {
        let topic = buf.compact_string("partition topic")?;
        let count = buf.uvarint("partition count")?;
        if count == 0 {
            return Err(TxnRecordError::UnexpectedNull {
                what: "partition ids",
            });
        }
        let count = count as usize - 1;
        buf.check_count(count, 4, "partition count")?;
        for _ in 0..count {
            partitions.insert((topic.clone(), buf.i32("partition")?));
        }
        skip_tagged_fields(buf)?;
    }
    Ok(partitions)
}

fn decode_tagged_fields(buf: &mut Reader<'_>, value: &mut TxnValue) -> Result<(), TxnRecordError> {
    let count = buf.uvarint("tagged field count")?;
    // A field takes at least a 1-byte tag and a 1-byte size.
    buf.check_count(count as usize, 2, "tagged field count")?;
    for _ in 0..count {
        let tag = buf.uvarint("tag")?;
        let size = buf.uvarint("tag size")? as usize;
        let data = buf.take(size, "tagged field")?;
        let expect = |expected: usize| {
            if size == expected {
                Ok(())
            } else {
                Err(TxnRecordError::TagSize {
                    tag,
                    size,
                    expected,
                })
            }
        };
        match tag {
            TAG_PREVIOUS_PRODUCER_ID => {
                expect(8)?;
                value.previous_producer_id = Reader(data).i64("previous producer id")?;
            }
            TAG_NEXT_PRODUCER_ID => {
                expect(8)?;
                value.next_producer_id = Reader(data).i64("next producer id")?;
            }
            TAG_CLIENT_TRANSACTION_VERSION => {
                expect(2)?;
                value.client_transaction_version =
                    Reader(data).i16("client transaction version")?;
            }
            TAG_NEXT_PRODUCER_EPOCH if size == 2 => {
                value.next_producer_epoch = Reader(data).i16("next producer epoch")?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn skip_tagged_fields(buf: &mut Reader<'_>) -> Result<(), TxnRecordError> {
    let count = buf.uvarint("tagged field count")?;
    buf.check_count(count as usize, 2, "tagged field count")?;
    for _ in 0..count {
        buf.uvarint("tag")?;
        let size = buf.uvarint("tag size")? as usize;
        buf.take(size, "tagged field")?;
    }
    Ok(())
}

fn group_by_topic(partitions: &BTreeSet<(String, i32)>) -> Vec<(&str, Vec<i32>)> {
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in partitions {
        match topics.last_mut() {
            Some((last, ids)) if *last == topic.as_str() => ids.push(*partition),
            _ => topics.push((topic.as_str(), vec![*partition])),
        }
    }
    topics
}

fn put_uvarint(buf: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// A cursor over untrusted bytes: every read checks what is left first.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize, what: &'static str) -> Result<&'a [u8], TxnRecordError> {
        if self.0.len() < count {
            return Err(TxnRecordError::Truncated { what });
        }
        let (head, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], TxnRecordError> {
        let bytes = self.take(N, what)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn i8(&mut self, what: &'static str) -> Result<i8, TxnRecordError> {
        Ok(i8::from_be_bytes(self.array(what)?))
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, TxnRecordError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, TxnRecordError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, TxnRecordError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// An unsigned LEB128 varint of at most 5 bytes (Kafka's `readUnsignedVarint`).
    fn uvarint(&mut self, what: &'static str) -> Result<u32, TxnRecordError> {
        let mut value: u32 = 0;
        for index in 0..5 {
            let [byte] = self.array::<1>(what)?;
            value |= u32::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(TxnRecordError::VarintTooLong { what })
    }

    fn string(&mut self, what: &'static str) -> Result<String, TxnRecordError> {
        let length = self.i16(what)?;
        if length < 0 {
            return Err(TxnRecordError::UnexpectedNull { what });
        }
        self.utf8(length as usize, what)
    }

    fn compact_string(&mut self, what: &'static str) -> Result<String, TxnRecordError> {
        let length = self.uvarint(what)?;
        if length == 0 {
            return Err(TxnRecordError::UnexpectedNull { what });
        }
        self.utf8(length as usize - 1, what)
    }

    fn utf8(&mut self, length: usize, what: &'static str) -> Result<String, TxnRecordError> {
        let bytes = self.take(length, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| TxnRecordError::NotUtf8 { what })
    }

    /// Refuses a count whose elements, at `size_min` bytes each, cannot fit in what is left.
    fn check_count(
        &self,
        count: usize,
        size_min: usize,
        what: &'static str,
    ) -> Result<(), TxnRecordError> {
        match count.checked_mul(size_min) {
            Some(bytes) if bytes <= self.0.len() => Ok(()),
            _ => Err(TxnRecordError::Truncated { what }),
        }
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
