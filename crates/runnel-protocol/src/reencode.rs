//! Writing records again as one new batch: what compaction does with the records it keeps.
//! (A topic's `compression.type` is applied by [`crate::record_validation`], in the pass that
//! validates the produced batch.)
//!
//! The new batch keeps what the original says about its records: producer id and epoch, the
//! transactional flag and the timestamp type (all carried on each decoded record, which the
//! encoder takes from the first), and, for LogAppendTime, the original's max timestamp. Its
//! base offset is the first record's offset and its base sequence moves with it, so each record
//! keeps its offset and sequence.

use bytes::BytesMut;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};

use crate::record_batch::{set_log_append_time, BatchHeader};

/// The codec of a batch's attributes (bits 0-2), as the encoder names it.
pub fn compression_of(codec: i16) -> Result<Compression, String> {
    match codec {
        0 => Ok(Compression::None),
        1 => Ok(Compression::Gzip),
        2 => Ok(Compression::Snappy),
        3 => Ok(Compression::Lz4),
        4 => Ok(Compression::Zstd),
        other => Err(format!("unknown compression codec {other}")),
    }
}

/// The attributes' codec bits for `compression`.
pub fn codec_of(compression: Compression) -> i16 {
    match compression {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

/// One batch holding `records` (non-empty, taken from the batch `original`), compressed
/// with `compression`.
pub fn encode_like(
    original: &BatchHeader,
    mut records: Vec<Record>,
    compression: Compression,
) -> Result<Vec<u8>, String> {
    let Some(first_offset) = records.first().map(|r| r.offset) else {
        return Err("no records".to_string());
    };
    let base_sequence = if original.base_sequence < 0 {
        -1
    } else {
        sequence_after(original.base_sequence, first_offset - original.base_offset)
    };
    // The encoder keeps records in one batch only while offset - sequence is constant, and
    // takes the base sequence from the first record.
    for record in &mut records {
        record.sequence = base_sequence.wrapping_add((record.offset - first_offset) as i32);
    }
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
        .map_err(|error| error.to_string())?;
    let mut bytes = buf.to_vec();
    let header = BatchHeader::parse(&bytes).map_err(|error| error.to_string())?;
    if header.size_bytes() != bytes.len() || header.records_count as usize != records.len() {
        return Err("the records did not encode as one batch".to_string());
    }
    if original.is_log_append_time() {
        set_log_append_time(&mut bytes, original.max_timestamp);
    }
    Ok(bytes)
}

/// Kafka's sequence arithmetic: `base + delta`, wrapping from `i32::MAX` to 0.
pub fn sequence_after(base_sequence: i32, delta: i64) -> i32 {
    ((i64::from(base_sequence) + delta) % (i64::from(i32::MAX) + 1)) as i32
}
