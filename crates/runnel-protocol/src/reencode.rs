//! Writing records again as one new batch: what compaction does with the records it keeps.
//! (A topic's `compression.type` is applied by [`crate::record_validation`], in the pass that
//! validates the produced batch.)
//!
//! The new batch keeps what the original says about its records: producer id and epoch, the
//! transactional flag and the timestamp type (all carried on each decoded record, which the
//! encoder takes from the first), and, for LogAppendTime, the original's max timestamp. Its
//! base offset is the first record's offset and its base sequence moves with it, so each record
//! keeps its offset and sequence.
//!
//! With a delete horizon (KIP-534, set by the log cleaner on a batch holding a tombstone or a
//! removable transaction marker), the batch is written as Kafka's `MemoryRecordsBuilder` writes
//! it: attribute bit 6 set, the base timestamp holding the horizon and every record's
//! timestamp delta taken from it (so each record keeps its timestamp).

use bytes::BytesMut;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};

use crate::record_batch::{
    seal_recompressed, set_log_append_time, BatchHeader, ATTR_DELETE_HORIZON, BATCH_HEADER_SIZE,
};
use crate::record_validation::Recompressor;

const ATTRIBUTES_AT: usize = 21;
const BASE_TIMESTAMP_AT: usize = 27;

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
/// with `compression`, with `delete_horizon_ms` as its delete horizon when given (and none
/// otherwise, whatever the decoded records say).
pub fn encode_like(
    original: &BatchHeader,
    mut records: Vec<Record>,
    compression: Compression,
    delete_horizon_ms: Option<i64>,
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
        // The decoder reports a batch's horizon on its records; the encoder would set the bit
        // with its own base timestamp (the smallest record's), which is not a horizon.
        record.delete_horizon = false;
    }
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: if delete_horizon_ms.is_some() {
            Compression::None
        } else {
            compression
        },
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
    match delete_horizon_ms {
        Some(horizon) => with_delete_horizon(&bytes, &header, horizon, compression),
        None => Ok(bytes),
    }
}

/// `batch` (uncompressed, `header` its header) with `horizon` as its base timestamp, each
/// record's timestamp delta rebased on it, attribute bit 6 set and its records compressed
/// with `compression`.
fn with_delete_horizon(
    batch: &[u8],
    header: &BatchHeader,
    horizon: i64,
    compression: Compression,
) -> Result<Vec<u8>, String> {
    let mut section = batch.get(BATCH_HEADER_SIZE..).unwrap_or_default();
    let mut records = Vec::with_capacity(section.len() + 10 * header.records_count.max(0) as usize);
    let mut body = Vec::new();
    for _ in 0..header.records_count {
        let length = usize::try_from(read_varlong(&mut section)?)
            .map_err(|_| "negative record length".to_string())?;
        let mut record = section
            .get(..length)
            .ok_or_else(|| "record longer than its batch".to_string())?;
        section = &section[length..];
        let (&attributes, rest) = record
            .split_first()
            .ok_or_else(|| "empty record".to_string())?;
        record = rest;
        let delta = read_varlong(&mut record)?;
        let timestamp = header.base_timestamp.wrapping_add(delta);
        body.clear();
        body.push(attributes);
        write_varlong(&mut body, timestamp.wrapping_sub(horizon));
        body.extend_from_slice(record);
        write_varlong(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    if !section.is_empty() {
        return Err("bytes after the last record".to_string());
    }
    let mut out_header = batch[..BATCH_HEADER_SIZE].to_vec();
    out_header[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&horizon.to_be_bytes());
    // From the bytes: a LogAppendTime stamp changed them after `header` was read.
    let attributes =
        i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]) | ATTR_DELETE_HORIZON;
    out_header[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let failed = |error: crate::record_validation::RecordValidationError| error.to_string();
    let mut recompressor =
        Recompressor::new(compression, &out_header, i32::MAX as usize).map_err(failed)?;
    recompressor.write(&records).map_err(failed)?;
    let mut out = recompressor.finish().map_err(failed)?;
    seal_recompressed(&mut out, codec_of(compression));
    Ok(out)
}

/// Reads one zigzag varint (Kafka's `ByteUtils.readVarlong`) from the front of `bytes`.
fn read_varlong(bytes: &mut &[u8]) -> Result<i64, String> {
    let mut raw: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err("varint too long or cut".to_string())
}

/// Appends one zigzag varint (Kafka's `ByteUtils.writeVarlong`).
fn write_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Kafka's sequence arithmetic: `base + delta`, wrapping from `i32::MAX` to 0.
pub fn sequence_after(base_sequence: i32, delta: i64) -> i32 {
    ((i64::from(base_sequence) + delta) % (i64::from(i32::MAX) + 1)) as i32
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::records::{RecordBatchDecoder, TimestampType};

    use super::*;
    use crate::control_record::ControlRecord;

    /// The header of a whole batch whose CRC and extent check (offsets may have gaps).
    fn checked(batch: &[u8]) -> BatchHeader {
        let header = BatchHeader::parse(batch).expect("header");
        assert_eq!(header.size_bytes(), batch.len());
        assert_eq!(crc32c::crc32c(&batch[ATTRIBUTES_AT..]), header.crc, "CRC");
        header
    }

    const T0: i64 = 1_700_000_000_000;

    fn record(offset: i64, key: &str, value: Option<&str>, timestamp: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 3,
            producer_id: 9,
            producer_epoch: 1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32,
            timestamp,
            key: Some(Bytes::from(key.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        }
    }

    fn decode(batch: &[u8]) -> Vec<Record> {
        let mut buf = Bytes::copy_from_slice(batch);
        RecordBatchDecoder::decode(&mut buf)
            .expect("decode")
            .records
    }

    #[test]
    fn a_delete_horizon_becomes_the_base_timestamp_and_records_keep_their_timestamps() {
        // Pins MemoryRecordsBuilder with a deleteHorizonMs: bit 6, base timestamp = horizon,
        // deltas from it (negative here), in every codec.
        let originals = vec![
            record(10, "a", Some("x"), T0 + 5),
            record(11, "b", None, T0),
            record(13, "c", None, T0 + 9),
        ];
        let source = encode_like(
            &BatchHeader::parse(&{
                let mut buf = BytesMut::new();
                let options = RecordEncodeOptions {
                    version: 2,
                    compression: Compression::None,
                };
                RecordBatchEncoder::encode(&mut buf, originals.iter(), &options).expect("encode");
                buf.to_vec()
            })
            .expect("header"),
            originals.clone(),
            Compression::None,
            None,
        )
        .expect("encode");
        let original = BatchHeader::parse(&source).expect("header");
        let horizon = T0 + 86_400_000;
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = encode_like(&original, decode(&source), compression, Some(horizon))
                .expect("encode with a horizon");
            let header = checked(&batch);
            assert_eq!(header.delete_horizon_ms(), Some(horizon), "{compression:?}");
            assert_eq!(header.base_timestamp, horizon);
            assert_eq!(header.max_timestamp, T0 + 9);
            assert_eq!(header.compression(), codec_of(compression));
            assert_eq!((header.base_offset, header.last_offset()), (10, 13));
            assert_eq!((header.producer_id, header.base_sequence), (9, 10));
            let read = decode(&batch);
            assert_eq!(read.len(), 3);
            for (got, want) in read.iter().zip(&originals) {
                assert_eq!(
                    (got.offset, got.timestamp, &got.key, &got.value),
                    (want.offset, want.timestamp, &want.key, &want.value)
                );
                assert!(got.delete_horizon);
            }
            // Written again without one (records removed from a batch that had a horizon
            // are given it explicitly), the batch has none.
            let again = encode_like(&header, read, compression, None).expect("encode");
            let header = checked(&again);
            assert_eq!(header.delete_horizon_ms(), None);
            assert_eq!(header.base_timestamp, T0);
        }
    }

    #[test]
    fn a_marker_with_a_delete_horizon_still_reads_as_the_same_marker() {
        let marker = ControlRecord::marker(true, 4);
        let source = marker.encode_batch(77, 2, T0);
        let original = BatchHeader::parse(&source).expect("header");
        let horizon = T0 - 1;
        let batch = encode_like(&original, decode(&source), Compression::None, Some(horizon))
            .expect("encode");
        let header = checked(&batch);
        assert!(header.is_control() && header.is_transactional());
        assert_eq!(header.delete_horizon_ms(), Some(horizon));
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (77, 2, -1)
        );
        assert_eq!(ControlRecord::decode_batch(&batch), Ok(marker));
        assert_eq!(decode(&batch)[0].timestamp, T0);
    }

    #[test]
    fn varints_round_trip_at_their_limits() {
        for value in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            write_varlong(&mut out, value);
            let mut bytes = out.as_slice();
            assert_eq!(read_varlong(&mut bytes), Ok(value));
            assert!(bytes.is_empty());
        }
        assert!(read_varlong(&mut [0x80u8, 0x80].as_slice()).is_err());
    }
}
