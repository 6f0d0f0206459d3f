//! Record batch v2 headers: parsing, validation and the two fields the broker patches.
//!
//! A Kafka record batch (magic 2) starts with a fixed 61-byte header, big-endian:
//!
//! | offset | size | field                  | notes                                            |
//! |-------:|-----:|------------------------|--------------------------------------------------|
//! |      0 |    8 | base offset            | set by the broker on append                      |
//! |      8 |    4 | batch length           | bytes after this field; total = 12 + length      |
//! |     12 |    4 | partition leader epoch | set by the broker on append                      |
//! |     16 |    1 | magic                  | must be 2                                        |
//! |     17 |    4 | crc                    | CRC-32C of bytes 21..end (attributes onward)     |
//! |     21 |    2 | attributes             | bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control, 6 delete horizon |
//! |     23 |    4 | last offset delta      |                                                  |
//! |     27 |    8 | base timestamp         | the delete horizon when bit 6 is set (KIP-534)   |
//! |     35 |    8 | max timestamp          |                                                  |
//! |     43 |    8 | producer id            | -1 when not idempotent                           |
//! |     51 |    2 | producer epoch         |                                                  |
//! |     53 |    4 | base sequence          |                                                  |
//! |     57 |    4 | records count          |                                                  |
//! |     61 |    … | records                | possibly compressed                              |
//!
//! The CRC covers neither the base offset nor the leader epoch, so the broker can patch both
//! without recomputing it: batches are stored exactly as received otherwise.

use thiserror::Error;

/// Size of the fixed record batch v2 header, in bytes.
pub const BATCH_HEADER_SIZE: usize = 61;
/// Bytes before the batch length field ends: base offset (8) + batch length (4).
pub const BATCH_LOG_OVERHEAD: usize = 12;
/// The only record batch format Runnel stores.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET_AT: usize = 0;
const LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORDS_COUNT_AT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
/// Attribute bit 6 (KIP-534, Kafka's `DELETE_HORIZON_FLAG_MASK`): the base timestamp is the
/// batch's delete horizon, set by the log cleaner, and record timestamp deltas are relative
/// to it.
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Why a record batch was refused. Each maps to one Kafka error code in the broker.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a header, or fewer than the batch length says.
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    /// The batch length field is smaller than a header allows.
    #[error("record batch length {length} is invalid")]
    InvalidLength { length: i32 },
    /// The magic byte is not 2.
    #[error("record batch magic {magic} is not supported (only magic 2)")]
    UnsupportedMagic { magic: i8 },
    /// The stored CRC does not match the bytes.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// A header field is inconsistent (negative count, delta not matching the count, ...).
    #[error("record batch is invalid: {reason}")]
    Invalid { reason: &'static str },
}

/// The parsed fixed header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// The batch length field: bytes after it. The batch occupies `12 + length` bytes.
    pub length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `bytes` without checking the CRC.
    ///
    /// Checks only what is needed to know the batch's extent: enough bytes for a header, a
    /// sane length, and magic 2. `bytes` may hold more than this batch.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_HEADER_SIZE {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_SIZE,
                available: bytes.len(),
            });
        }
        let length = read_i32(bytes, LENGTH_AT);
        if length < (BATCH_HEADER_SIZE - BATCH_LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength { length });
        }
        let magic = bytes[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        let base_offset = read_i64(bytes, BASE_OFFSET_AT);
        let last_offset_delta = read_i32(bytes, LAST_OFFSET_DELTA_AT);
        // The last offset and the one after it must exist: callers compute both.
        if base_offset
            .checked_add(i64::from(last_offset_delta) + 1)
            .is_none()
        {
            return Err(BatchError::Invalid {
                reason: "base offset + last offset delta overflows",
            });
        }
        Ok(BatchHeader {
            base_offset,
            length,
            partition_leader_epoch: read_i32(bytes, LEADER_EPOCH_AT),
            magic,
            crc: read_i32(bytes, CRC_AT) as u32,
            attributes: read_i16(bytes, ATTRIBUTES_AT),
            last_offset_delta,
            base_timestamp: read_i64(bytes, BASE_TIMESTAMP_AT),
            max_timestamp: read_i64(bytes, MAX_TIMESTAMP_AT),
            producer_id: read_i64(bytes, PRODUCER_ID_AT),
            producer_epoch: read_i16(bytes, PRODUCER_EPOCH_AT),
            base_sequence: read_i32(bytes, BASE_SEQUENCE_AT),
            records_count: read_i32(bytes, RECORDS_COUNT_AT),
        })
    }

    /// Total bytes this batch occupies, header included.
    pub fn size_bytes(&self) -> usize {
        BATCH_LOG_OVERHEAD + self.length as usize
    }

    /// Offset of the last record: base offset + last offset delta.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Kafka's `RecordBatch.deleteHorizonMs`: the time from which the log cleaner may remove
    /// the batch's tombstones, or the batch itself when it is a transaction marker (the base
    /// timestamp, when attribute bit 6 is set).
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & ATTR_DELETE_HORIZON != 0).then_some(self.base_timestamp)
    }

    /// Whether the batch carries an idempotent producer's id.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record, wrapping as Kafka does at `i32::MAX`.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// Checks one whole batch, exactly `bytes.len()` long: header, extent, CRC and field sanity.
///
/// This is what a producer's batch must pass before it is appended, and what recovery checks
/// for every batch after the recovery point.
pub fn validate_batch(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    let size = header.size_bytes();
    if bytes.len() < size {
        return Err(BatchError::Truncated {
            needed: size,
            available: bytes.len(),
        });
    }
    if bytes.len() > size {
        return Err(BatchError::Invalid {
            reason: "trailing bytes after the batch",
        });
    }
    let computed = crc32c::crc32c(&bytes[ATTRIBUTES_AT..size]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    if header.records_count < 0 {
        return Err(BatchError::Invalid {
            reason: "negative records count",
        });
    }
    if header.last_offset_delta < 0 {
        return Err(BatchError::Invalid {
            reason: "negative last offset delta",
        });
    }
    if header.records_count == 0 && !header.is_control() {
        return Err(BatchError::Invalid {
            reason: "empty record batch",
        });
    }
    if header.records_count > 0 && header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::Invalid {
            reason: "last offset delta does not match the records count",
        });
    }
    Ok(header)
}

/// Iterates over the batches in a buffer holding zero or more whole batches back to back,
/// yielding each header with its byte range. Stops at the first batch that does not parse or
/// is not whole, reporting it as the final item.
pub fn batches(bytes: &[u8]) -> BatchIter<'_> {
    BatchIter {
        bytes,
        position: 0,
        failed: false,
    }
}

/// See [`batches`].
pub struct BatchIter<'a> {
    bytes: &'a [u8],
    position: usize,
    failed: bool,
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, std::ops::Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.position..];
        let header = match BatchHeader::parse(rest) {
            Ok(header) => header,
            Err(error) => {
                self.failed = true;
                return Some(Err(error));
            }
        };
        let size = header.size_bytes();
        if rest.len() < size {
            self.failed = true;
            return Some(Err(BatchError::Truncated {
                needed: size,
                available: rest.len(),
            }));
        }
        let range = self.position..self.position + size;
        self.position += size;
        Some(Ok((header, range)))
    }
}

/// Writes the base offset into a batch's header.
///
/// # Panics
/// If `batch` is shorter than a batch header: callers patch only batches that parsed.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch into a batch's header.
///
/// # Panics
/// If `batch` is shorter than a batch header.
pub fn set_partition_leader_epoch(batch: &mut [u8], leader_epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Stamps a batch with LogAppendTime: sets the timestamp-type bit and max timestamp, and
/// recomputes the CRC (which covers both).
///
/// # Panics
/// If `batch` is shorter than its header says; callers stamp only validated batches.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let attributes = read_i16(batch, ATTRIBUTES_AT) | ATTR_LOG_APPEND_TIME;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Finishes a batch whose records were recompressed: `batch` holds the original header and
/// the new records; sets the length, the codec bits of the attributes and the CRC.
///
/// # Panics
/// If `batch` is shorter than a batch header or longer than `i32::MAX`: callers build it
/// from a validated header and bound its size.
pub(crate) fn seal_recompressed(batch: &mut [u8], codec: i16) {
    let length = i32::try_from(batch.len() - BATCH_LOG_OVERHEAD).expect("bounded batch size");
    batch[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let attributes = (read_i16(batch, ATTRIBUTES_AT) & !ATTR_COMPRESSION_MASK) | codec;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The offset and timestamp of every record in one whole batch, decompressing if needed.
///
/// Used where Kafka needs record precision inside a batch: ListOffsets by timestamp and
/// max-timestamp lookups. With LogAppendTime every record carries the batch's max timestamp.
pub fn record_timestamps(batch: &[u8]) -> Result<Vec<(i64, i64)>, BatchError> {
    let header = validate_batch(batch)?;
    timestamps_of_validated(&header, batch)
}

/// [`record_timestamps`] for a batch its caller has already checked with its own rules (the
/// log accepts compacted batches, whose offsets have gaps, which [`validate_batch`] refuses).
pub fn timestamps_of_validated(
    header: &BatchHeader,
    batch: &[u8],
) -> Result<Vec<(i64, i64)>, BatchError> {
    let mut buf = bytes::Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).map_err(|_| {
        BatchError::Invalid {
            reason: "records do not decode",
        }
    })?;
    // With LogAppendTime every record carries the batch's max timestamp.
    Ok(set
        .records
        .iter()
        .map(|record| {
            let timestamp = if header.is_log_append_time() {
                header.max_timestamp
            } else {
                record.timestamp
            };
            (record.offset, timestamp)
        })
        .collect())
}

/// One uncompressed batch of records the broker writes itself (metadata, group coordinator):
/// each entry is a key and a value, stamped with `timestamp`. The base offset and leader epoch
/// are set on append, like any batch's.
pub fn encode_internal_batch(
    entries: impl IntoIterator<Item = (Option<bytes::Bytes>, Option<bytes::Bytes>)>,
    timestamp: i64,
) -> Vec<u8> {
    encode_producer_batch(entries, None, timestamp)
}

/// The producer fields of a batch a coordinator writes for a producer (TxnOffsetCommit's
/// transactional offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
}

/// [`encode_internal_batch`] with `producer`'s id, epoch and sequences (base sequence, then
/// one per record) when given.
pub fn encode_producer_batch(
    entries: impl IntoIterator<Item = (Option<bytes::Bytes>, Option<bytes::Bytes>)>,
    producer: Option<BatchProducer>,
    timestamp: i64,
) -> Vec<u8> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let producer = producer.unwrap_or(BatchProducer {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: 0,
        transactional: false,
    });
    let records: Vec<Record> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: producer.transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // offset - sequence constant keeps every record in one batch.
            sequence: producer.base_sequence.wrapping_add(i as i32),
            timestamp,
            key,
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
        .expect("encoding uncompressed records into memory cannot fail");
    buf.to_vec()
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    pub(crate) fn encode_batch(count: usize, compression: Compression) -> Vec<u8> {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(bytes::Bytes::from(format!("key-{i}"))),
                value: Some(bytes::Bytes::from(format!("value-{i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
        buf.to_vec()
    }

    #[test]
    fn parses_and_validates_an_encoded_batch() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let batch = encode_batch(5, compression);
            let header = validate_batch(&batch).expect("valid");
            assert_eq!(header.records_count, 5);
            assert_eq!(header.last_offset_delta, 4);
            assert_eq!(header.size_bytes(), batch.len());
        }
    }

    #[test]
    fn patching_offset_and_epoch_keeps_the_crc_valid() {
        let mut batch = encode_batch(3, Compression::None);
        set_base_offset(&mut batch, 42);
        set_partition_leader_epoch(&mut batch, 7);
        let header = validate_batch(&batch).expect("still valid");
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.last_offset(), 44);
    }

    #[test]
    fn log_append_time_restamps_and_keeps_the_crc_valid() {
        let mut batch = encode_batch(2, Compression::None);
        set_log_append_time(&mut batch, 123);
        let header = validate_batch(&batch).expect("valid");
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 123);
    }

    #[test]
    fn flipped_byte_is_a_crc_mismatch() {
        let mut batch = encode_batch(3, Compression::None);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        assert!(matches!(
            validate_batch(&batch),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn wrong_magic_and_truncation_are_refused() {
        let mut batch = encode_batch(1, Compression::None);
        assert!(matches!(
            validate_batch(&batch[..batch.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        batch[MAGIC_AT] = 1;
        assert_eq!(
            validate_batch(&batch),
            Err(BatchError::UnsupportedMagic { magic: 1 })
        );
    }

    #[test]
    fn iterates_back_to_back_batches_and_stops_at_a_torn_tail() {
        let mut buf = encode_batch(2, Compression::None);
        buf.extend(encode_batch(3, Compression::None));
        let whole = buf.len();
        buf.extend_from_slice(&[0, 0, 0]);
        let items: Vec<_> = batches(&buf).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        assert!(items[2].is_err());
        assert_eq!(items[1].as_ref().map(|(_, r)| r.end).ok(), Some(whole));
    }

    #[test]
    fn internal_batches_hold_every_entry_in_one_valid_batch() {
        let entries = (0..3).map(|i| {
            (
                Some(bytes::Bytes::from(format!("k{i}"))),
                Some(bytes::Bytes::from("v")),
            )
        });
        let batch = encode_internal_batch(entries, 7);
        let header = validate_batch(&batch).expect("one valid batch");
        assert_eq!((header.records_count, header.max_timestamp), (3, 7));
        let policy = crate::record_validation::RecordPolicy {
            key_required: true,
            create_time: None,
        };
        let checked =
            crate::record_validation::validate_records(&batch, &header, &policy, usize::MAX)
                .expect("records decode");
        assert!(checked.faults.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = validate_batch(&bytes);
            let _ = batches(&bytes).count();
        }
    }

    #[test]
    fn offsets_that_overflow_are_refused_not_computed() {
        let mut batch = encode_batch(3, Compression::None);
        batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&(i64::MAX - 2).to_be_bytes());
        assert_eq!(
            BatchHeader::parse(&batch),
            Err(BatchError::Invalid {
                reason: "base offset + last offset delta overflows"
            })
        );
        batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&(i64::MAX - 3).to_be_bytes());
        let header = BatchHeader::parse(&batch).expect("the last offset fits");
        assert_eq!(header.last_offset(), i64::MAX - 1);
    }
}
