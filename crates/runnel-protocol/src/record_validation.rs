//! The records inside a produced batch, checked before the batch is acknowledged: what Kafka's
//! `LogValidator` checks by iterating a batch's records (`DefaultRecordBatch`'s record
//! iterators over `DefaultRecord.readFrom`), done in one streaming pass. A batch whose CRC holds
//! can still carry records that do not decode; stored, it would stop every consumer at its
//! offset.
//!
//! # The records of a v2 batch
//!
//! After the 61-byte batch header ([`crate::record_batch`]) come `records count` records, as one
//! compressed stream when the attributes name a codec. Each record is:
//!
//! | field               | encoding                     | checked here                                   |
//! |---------------------|------------------------------|------------------------------------------------|
//! | length              | varint (zigzag i32)          | ≥ 0; the fields below take exactly this many bytes |
//! | attributes          | int8                         | unused by Kafka: any value                     |
//! | timestamp delta     | varlong (zigzag i64)         |                                                |
//! | offset delta        | varint                       | equals the record's index in the batch (0, 1, …) |
//! | key length, key     | varint (-1 = null), bytes    | ≥ -1                                           |
//! | value length, value | varint (-1 = null), bytes    | ≥ -1                                           |
//! | headers count       | varint                       | ≥ 0 and ≤ the record's bytes left (Kafka's check) |
//! | each header         | key length varint (≥ 0), key, value length varint (-1 = null), value | |
//!
//! Varints take at most 5 bytes, varlongs 10 (Kafka's `ByteUtils`). No field may run past its
//! record's length, and the batch holds exactly `records count` records: fewer, or any byte
//! after the last (inflated, or after the end of the compressed stream), is refused.
//!
//! # Error codes
//!
//! [`RecordValidationError::error_code`] is the one mapping. Records that do not decode are
//! `INVALID_RECORD`: Kafka's `InvalidRecordException` ("Found invalid record structure",
//! "Incorrect declared batch size, premature EOF reached", "… records still remaining",
//! "Found invalid number of record headers", "Invalid record size"). Two departures, both
//! stricter than Kafka and both about bytes Kafka would store and its consumers then fail on:
//! - An offset delta other than the record's index is `INVALID_RECORD` (the code of Kafka's
//!   "Inconsistent batch offset range"). Kafka rewrites such a compressed batch and stores an
//!   uncompressed one as it is; Runnel stores batches as received, so offsets that lie would
//!   be served as lies. Every v2 producer writes deltas 0..n-1.
//! - A payload that does not decompress is `CORRUPT_MESSAGE` ("otherwise corrupt"). Kafka
//!   answers `UNKNOWN_SERVER_ERROR` here (its `KafkaException("Failed to decompress record
//!   stream")` reaches `Errors.forException` unmapped), which no client can act on.
//!
//! Key and value lengths below -1 are refused, as the `kafka-protocol` decoder does (Kafka
//! reads them as null).
//!
//! # The topic's policy
//!
//! Well-formed records can still be refused by the topic: [`RecordPolicy`] says whether a key
//! is required (compacted topics) and which create times are acceptable. The walk collects
//! every record that breaks it as a [`RecordFault`] (at most one per record, the key checked
//! first, as Kafka's `validateRecord` does) instead of stopping at the first, because Kafka's
//! Produce response names each of them (KIP-467); the broker turns them into the response.
//!
//! # Bounds
//!
//! - Inflated bytes per batch are at most `inflated_bytes_max`; the broker passes
//!   `socket.request.max.bytes` (Kafka's default 100 MiB): a batch may not carry more record
//!   bytes compressed than the largest request the broker takes uncompressed. Past it the batch
//!   is `MESSAGE_TOO_LARGE`, Kafka's code for a batch that grows past its limit when the broker
//!   recompresses it. Kafka has no such bound: it streams a compressed batch through its
//!   iterator without one, and when it must recompress it holds every record in memory.
//! - Compressed payloads stream through one [`SCRATCH_BYTES`] buffer; the decoders' own state
//!   is bounded by their formats (gzip: a 32 KiB window; lz4: blocks of at most 4 MiB) or by us
//!   (zstd: the window a frame declares, at most 2^[`ZSTD_WINDOW_LOG_MAX`] bytes; Kafka allows
//!   2^27, a departure explained at the constant). Raw snappy (no Xerial framing, as librdkafka
//!   writes) has no streaming form: its one block is inflated whole, after its declared size is
//!   checked against `inflated_bytes_max` and against what snappy can encode
//!   ([`SNAPPY_INFLATION_MAX`] × its compressed size).
//! - A recompressed batch ([`validate_and_recompress`]) may not exceed `batch_bytes_max`
//!   (`max.message.bytes`), as Kafka checks after recompressing (`RecordTooLargeException`).
//!
//! # Invariants
//!
//! - One pass, front to back: each inflated byte is read once, so work is linear in the
//!   (bounded) inflated size. Uncompressed records are walked in place, without a copy.
//! - A recompressed batch is built in the same pass (the inflated records go straight into the
//!   target encoder), byte for byte the same records: the record format does not depend on the
//!   codec. Its header is the original's but for the codec bits, the length and the CRC.

mod codecs;

use kafka_protocol::records::Compression;

use crate::record_batch::{self, BatchHeader, BATCH_HEADER_SIZE};
use crate::ErrorCode;

use codecs::inflater;
pub(crate) use codecs::Recompressor;
pub use codecs::{SNAPPY_INFLATION_MAX, ZSTD_WINDOW_LOG_MAX};

/// Bytes of the buffer a compressed payload is inflated through.
pub const SCRATCH_BYTES: usize = 32 * 1024;

/// Why a batch's records were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordValidationError {
    /// One record does not decode; `index` is its place in the batch (KIP-467's batch index).
    #[error("record {index} is invalid: {reason}")]
    InvalidRecord { index: i32, reason: &'static str },
    /// The records end before the header's records count.
    #[error("the batch declares {declared} records but holds {found}")]
    TooFewRecords { declared: i32, found: i32 },
    /// Bytes follow the last declared record.
    #[error("bytes remain after the batch's {declared} declared records")]
    TrailingBytes { declared: i32 },
    /// The compressed payload is not a valid stream of its codec.
    #[error("the {codec} payload does not decompress: {reason}")]
    Decompression { codec: &'static str, reason: String },
    /// The payload inflates past the bound (a decompression bomb, or a batch too big).
    #[error("the records inflate to more than {bytes_max} bytes (socket.request.max.bytes)")]
    InflatedTooLarge { bytes_max: usize },
    /// Recompressed for the topic's `compression.type`, the batch is too large.
    #[error("the batch recompressed for the topic's compression.type exceeds max.message.bytes {bytes_max}")]
    RecompressedTooLarge { bytes_max: usize },
    /// The attributes name a codec Kafka does not define.
    #[error("compression codec {codec} is unknown")]
    UnknownCodec { codec: i16 },
    /// The target encoder failed (in memory: not the client's fault).
    #[error("compressing the records with {codec} failed: {reason}")]
    Compression { codec: &'static str, reason: String },
}

impl RecordValidationError {
    /// The Kafka error code a producer gets for this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            RecordValidationError::InvalidRecord { .. }
            | RecordValidationError::TooFewRecords { .. }
            | RecordValidationError::TrailingBytes { .. } => ErrorCode::InvalidRecord,
            RecordValidationError::Decompression { .. } => ErrorCode::CorruptMessage,
            RecordValidationError::InflatedTooLarge { .. }
            | RecordValidationError::RecompressedTooLarge { .. } => ErrorCode::MessageTooLarge,
            RecordValidationError::UnknownCodec { .. } => ErrorCode::UnsupportedCompressionType,
            RecordValidationError::Compression { .. } => ErrorCode::UnknownServerError,
        }
    }

    /// The index in the batch of the first record found bad, where one record is to blame.
    pub fn record_index(&self) -> Option<i32> {
        match self {
            RecordValidationError::InvalidRecord { index, .. } => Some(*index),
            RecordValidationError::TooFewRecords { found, .. } => Some(*found),
            _ => None,
        }
    }
}

/// What the broker requires of each record beyond its structure (Kafka's `LogValidator`
/// `validateKey` and `validateTimestamp`). A record that breaks one is a [`RecordFault`]: the
/// batch is refused and the Produce response names every such record (KIP-467).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordPolicy {
    /// The topic is compacted: every record needs a key.
    pub key_required: bool,
    /// The topic keeps producers' timestamps (`message.timestamp.type=CreateTime`): each
    /// record's timestamp must lie within these bounds.
    pub create_time: Option<TimestampBounds>,
}

/// `message.timestamp.before.max.ms` and `message.timestamp.after.max.ms` around the broker's
/// clock: a record stamped more than `before_max_ms` before `now_ms` or more than
/// `after_max_ms` after it is refused, as Kafka's `recordHasInvalidTimestamp` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampBounds {
    pub now_ms: i64,
    pub before_max_ms: i64,
    pub after_max_ms: i64,
}

impl TimestampBounds {
    /// Whether `timestamp` is outside the bounds (Kafka's arithmetic, saturating instead of
    /// wrapping at the extremes of `i64`).
    pub fn refuses(&self, timestamp: i64) -> bool {
        let difference = self.now_ms.saturating_sub(timestamp);
        difference > self.before_max_ms || difference.saturating_neg() > self.after_max_ms
    }
}

/// Kafka's `RecordBatch.NO_TIMESTAMP`: a record that carries no create time.
const NO_TIMESTAMP: i64 = -1;

/// One well-formed record that the [`RecordPolicy`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFault {
    /// The record's place in its batch (KIP-467's `batch_index`).
    pub index: i32,
    pub kind: RecordFaultKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFaultKind {
    /// No key, on a compacted topic (`INVALID_RECORD`).
    KeyMissing,
    /// A create time outside the bounds (`INVALID_TIMESTAMP`).
    TimestampOutOfRange { timestamp: i64 },
    /// The batch claims `LogAppendTime`, which only a broker may set (`INVALID_TIMESTAMP`).
    LogAppendTimeFromProducer,
}

/// What the walk learnt about a batch's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRecords {
    /// Every record the policy refuses, in batch order. At most one per record, so bounded
    /// by the records the batch really holds.
    pub faults: Vec<RecordFault>,
    /// The records' bytes once inflated (the records section itself when uncompressed).
    pub inflated_bytes: usize,
}

/// Walks every record of `batch`, a whole batch whose header [`record_batch::validate_batch`]
/// accepted as `header`.
pub fn validate_records(
    batch: &[u8],
    header: &BatchHeader,
    policy: &RecordPolicy,
    inflated_bytes_max: usize,
) -> Result<CheckedRecords, RecordValidationError> {
    let records = records_section(batch);
    match header.compression() {
        0 => walk(&mut SliceBytes::new(records), header, policy),
        codec => {
            let (name, reader) = inflater(codec, records, inflated_bytes_max)?;
            let mut bytes = StreamBytes::new(reader, name, inflated_bytes_max, None);
            walk(&mut bytes, header, policy)
        }
    }
}

/// [`validate_records`], and the same batch with its records compressed with `target`
/// instead, built in the same pass. The result is at most `batch_bytes_max` bytes.
pub fn validate_and_recompress(
    batch: &[u8],
    header: &BatchHeader,
    policy: &RecordPolicy,
    target: Compression,
    inflated_bytes_max: usize,
    batch_bytes_max: usize,
) -> Result<(CheckedRecords, Vec<u8>), RecordValidationError> {
    let mut recompressor = Recompressor::new(target, &batch[..BATCH_HEADER_SIZE], batch_bytes_max)?;
    let records = records_section(batch);
    let checked = match header.compression() {
        0 => {
            let checked = walk(&mut SliceBytes::new(records), header, policy)?;
            recompressor.write(records)?;
            checked
        }
        codec => {
            let (name, reader) = inflater(codec, records, inflated_bytes_max)?;
            let mut bytes =
                StreamBytes::new(reader, name, inflated_bytes_max, Some(&mut recompressor));
            walk(&mut bytes, header, policy)?
        }
    };
    let mut recompressed = recompressor.finish()?;
    record_batch::seal_recompressed(&mut recompressed, crate::reencode::codec_of(target));
    Ok((checked, recompressed))
}

/// The records section of a whole batch (after the fixed header).
fn records_section(batch: &[u8]) -> &[u8] {
    batch.get(BATCH_HEADER_SIZE..).unwrap_or_default()
}

/// The inflated records, read front to back.
trait RecordBytes {
    /// The next byte, or `None` at the end of the records.
    fn next_byte(&mut self) -> Result<Option<u8>, RecordValidationError>;
    /// Skips `count` bytes; false when the records end first.
    fn skip(&mut self, count: usize) -> Result<bool, RecordValidationError>;
    /// Whether the records end here (for a stream: its decoder reached the end of the
    /// compressed stream and checked its trailer).
    fn at_end(&mut self) -> Result<bool, RecordValidationError>;
    /// Bytes read or skipped so far.
    fn consumed_bytes(&self) -> usize;
}

/// Uncompressed records, walked in place.
struct SliceBytes<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> SliceBytes<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        SliceBytes { bytes, position: 0 }
    }
}

impl RecordBytes for SliceBytes<'_> {
    #[inline]
    fn next_byte(&mut self) -> Result<Option<u8>, RecordValidationError> {
        let byte = self.bytes.get(self.position).copied();
        self.position += usize::from(byte.is_some());
        Ok(byte)
    }

    #[inline]
    fn skip(&mut self, count: usize) -> Result<bool, RecordValidationError> {
        let left = self.bytes.len() - self.position;
        if count > left {
            self.position = self.bytes.len();
            return Ok(false);
        }
        self.position += count;
        Ok(true)
    }

    fn at_end(&mut self) -> Result<bool, RecordValidationError> {
        Ok(self.position == self.bytes.len())
    }

    fn consumed_bytes(&self) -> usize {
        self.position
    }
}

/// Compressed records, inflated through a fixed scratch buffer and counted against the bound;
/// each inflated chunk also goes to the recompressor, when there is one.
struct StreamBytes<'r, R> {
    reader: R,
    codec: &'static str,
    scratch: Box<[u8]>,
    position: usize,
    filled: usize,
    /// Bytes inflated so far, including the scratch buffer's current contents.
    inflated_bytes: usize,
    inflated_bytes_max: usize,
    ended: bool,
    recompressor: Option<&'r mut Recompressor>,
}

impl<'r, R: std::io::Read> StreamBytes<'r, R> {
    fn new(
        reader: R,
        codec: &'static str,
        inflated_bytes_max: usize,
        recompressor: Option<&'r mut Recompressor>,
    ) -> Self {
        StreamBytes {
            reader,
            codec,
            scratch: vec![0u8; SCRATCH_BYTES].into_boxed_slice(),
            position: 0,
            filled: 0,
            inflated_bytes: 0,
            inflated_bytes_max,
            ended: false,
            recompressor,
        }
    }

    /// Reads the next chunk into the scratch buffer; false at the end of the stream.
    fn refill(&mut self) -> Result<bool, RecordValidationError> {
        if self.ended {
            return Ok(false);
        }
        loop {
            match self.reader.read(&mut self.scratch) {
                Ok(0) => {
                    self.ended = true;
                    return Ok(false);
                }
                Ok(count) => {
                    self.inflated_bytes += count;
                    if self.inflated_bytes > self.inflated_bytes_max {
                        return Err(RecordValidationError::InflatedTooLarge {
                            bytes_max: self.inflated_bytes_max,
                        });
                    }
                    if let Some(recompressor) = self.recompressor.as_deref_mut() {
                        recompressor.write(&self.scratch[..count])?;
                    }
                    self.position = 0;
                    self.filled = count;
                    return Ok(true);
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    return Err(codecs::read_error(
                        self.codec,
                        error,
                        self.inflated_bytes_max,
                    ))
                }
            }
        }
    }
}

impl<R: std::io::Read> RecordBytes for StreamBytes<'_, R> {
    #[inline]
    fn next_byte(&mut self) -> Result<Option<u8>, RecordValidationError> {
        if self.position == self.filled && !self.refill()? {
            return Ok(None);
        }
        let byte = self.scratch[self.position];
        self.position += 1;
        Ok(Some(byte))
    }

    fn skip(&mut self, mut count: usize) -> Result<bool, RecordValidationError> {
        loop {
            let left = self.filled - self.position;
            if count <= left {
                self.position += count;
                return Ok(true);
            }
            count -= left;
            self.position = self.filled;
            if !self.refill()? {
                return Ok(false);
            }
        }
    }

    fn at_end(&mut self) -> Result<bool, RecordValidationError> {
        Ok(self.position == self.filled && !self.refill()?)
    }

    fn consumed_bytes(&self) -> usize {
        self.inflated_bytes - (self.filled - self.position)
    }
}

/// Reads the header's `records count` records, checks nothing follows them, and applies
/// `policy` to each (Kafka's `validateRecord`: the key first, then the timestamp, one fault per
/// record at most).
fn walk(
    bytes: &mut impl RecordBytes,
    header: &BatchHeader,
    policy: &RecordPolicy,
) -> Result<CheckedRecords, RecordValidationError> {
    let declared = header.records_count;
    let mut faults = Vec::new();
    for index in 0..declared {
        if bytes.at_end()? {
            return Err(RecordValidationError::TooFewRecords {
                declared,
                found: index,
            });
        }
        let record = read_record(bytes, index)?;
        if let Some(kind) = policy.fault(header, &record) {
            faults.push(RecordFault { index, kind });
        }
    }
    if !bytes.at_end()? {
        return Err(RecordValidationError::TrailingBytes { declared });
    }
    Ok(CheckedRecords {
        faults,
        inflated_bytes: bytes.consumed_bytes(),
    })
}

/// What the policy looks at in one record.
struct RecordSummary {
    has_key: bool,
    timestamp_delta: i64,
}

impl RecordPolicy {
    fn fault(&self, header: &BatchHeader, record: &RecordSummary) -> Option<RecordFaultKind> {
        if self.key_required && !record.has_key {
            return Some(RecordFaultKind::KeyMissing);
        }
        // A log-append-time batch's records all read as its max timestamp (Kafka's
        // `DefaultRecordBatch`), which is what a create-time topic then checks.
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(record.timestamp_delta)
        };
        match self.create_time {
            Some(bounds) if timestamp != NO_TIMESTAMP => bounds
                .refuses(timestamp)
                .then_some(RecordFaultKind::TimestampOutOfRange { timestamp }),
            _ if header.is_log_append_time() => Some(RecordFaultKind::LogAppendTimeFromProducer),
            _ => None,
        }
    }
}

const RECORDS_END_INSIDE: &str = "the records end inside it (premature EOF)";
const FIELD_PAST_LENGTH: &str = "a field runs past the record's length";

/// Reads record `index` (the table in the module doc).
fn read_record(
    bytes: &mut impl RecordBytes,
    index: i32,
) -> Result<RecordSummary, RecordValidationError> {
    // The length field itself is not inside the record's length.
    let mut record = RecordReader {
        bytes,
        index,
        left: usize::MAX,
    };
    let length = record.varint()?;
    if length < 0 {
        return Err(record.invalid("negative record length"));
    }
    record.left = length as usize;
    record.byte()?; // attributes
    let timestamp_delta = record.varlong()?;
    if record.varint()? != index {
        return Err(record.invalid("its offset delta is not its index in the batch"));
    }
    let has_key = record.bytes_field()?;
    record.bytes_field()?; // value
    let headers = record.varint()?;
    if headers < 0 {
        return Err(record.invalid("negative number of record headers"));
    }
    if headers as usize > record.left {
        return Err(record.invalid("more record headers than bytes left in the record"));
    }
    for _ in 0..headers {
        let key_length = record.varint()?;
        if key_length < 0 {
            return Err(record.invalid("negative header key length"));
        }
        record.skip(key_length as usize)?;
        record.bytes_field()?; // header value
    }
    if record.left != 0 {
        return Err(record.invalid("its length is larger than its fields"));
    }
    Ok(RecordSummary {
        has_key,
        timestamp_delta,
    })
}

/// One record's fields, each bounded by the bytes its length leaves.
struct RecordReader<'a, B> {
    bytes: &'a mut B,
    index: i32,
    left: usize,
}

impl<B: RecordBytes> RecordReader<'_, B> {
    fn invalid(&self, reason: &'static str) -> RecordValidationError {
        RecordValidationError::InvalidRecord {
            index: self.index,
            reason,
        }
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, RecordValidationError> {
        if self.left == 0 {
            return Err(self.invalid(FIELD_PAST_LENGTH));
        }
        self.left -= 1;
        self.bytes
            .next_byte()?
            .ok_or_else(|| self.invalid(RECORDS_END_INSIDE))
    }

    /// A zigzag varint of at most 5 bytes, as Kafka's `ByteUtils.readVarint`.
    fn varint(&mut self) -> Result<i32, RecordValidationError> {
        let mut raw: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.byte()?;
            raw |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i32 ^ -((raw & 1) as i32));
            }
        }
        Err(self.invalid("a varint is longer than 5 bytes"))
    }

    /// A zigzag varlong of at most 10 bytes, as Kafka's `ByteUtils.readVarlong`.
    fn varlong(&mut self) -> Result<i64, RecordValidationError> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(self.invalid("a varlong is longer than 10 bytes"))
    }

    fn skip(&mut self, count: usize) -> Result<(), RecordValidationError> {
        if count > self.left {
            return Err(self.invalid(FIELD_PAST_LENGTH));
        }
        self.left -= count;
        if !self.bytes.skip(count)? {
            return Err(self.invalid(RECORDS_END_INSIDE));
        }
        Ok(())
    }

    /// A varint length (-1 = null) and that many bytes; returns whether it was not null.
    fn bytes_field(&mut self) -> Result<bool, RecordValidationError> {
        match self.varint()? {
            -1 => Ok(false),
            length if length < -1 => Err(self.invalid("a key or value length below -1")),
            length => self.skip(length as usize).map(|()| true),
        }
    }
}

#[cfg(test)]
mod tests;
