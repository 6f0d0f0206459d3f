//! Shared helpers for the partition log tests: real record batches and reading a log back.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use runnel_log::{LogConfig, PartitionLog};

/// Idempotent producer fields of a batch.
#[derive(Clone, Copy, Debug)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub sequence: i32,
}

/// A batch of `count` records with values `"{tag}-{i}"` padded to `value_bytes`, timestamps
/// `timestamp + i`.
pub fn batch(
    count: usize,
    tag: &str,
    value_bytes: usize,
    timestamp: i64,
    producer: Option<Producer>,
) -> Vec<u8> {
    batch_with_timestamps(
        &(0..count).map(|i| timestamp + i as i64).collect::<Vec<_>>(),
        tag,
        value_bytes,
        producer,
    )
}

pub fn batch_with_timestamps(
    timestamps: &[i64],
    tag: &str,
    value_bytes: usize,
    producer: Option<Producer>,
) -> Vec<u8> {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &timestamp)| {
            let mut value = format!("{tag}-{i}");
            while value.len() < value_bytes {
                value.push('.');
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: producer.map_or(-1, |p| p.id),
                producer_epoch: producer.map_or(-1, |p| p.epoch),
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: producer.map_or(i as i32, |p| p.sequence + i as i32),
                timestamp,
                key: None,
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
    buf.to_vec()
}

/// Decodes batches back to back into (offset, value) pairs.
pub fn decode(bytes: &[u8]) -> Vec<(i64, String)> {
    let mut buf = Bytes::copy_from_slice(bytes);
    let mut out = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut buf).expect("decode") {
        for record in set.records {
            let value = record
                .value
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            out.push((record.offset, value));
        }
    }
    out
}

/// Every record from the log start up to `max_offset`, by repeated reads.
pub fn read_all(log: &PartitionLog, max_offset: i64) -> Vec<(i64, String)> {
    let mut offset = log.log_start_offset();
    let mut out = Vec::new();
    loop {
        let slice = log.read(offset, 1 << 20, max_offset, true).expect("read");
        if slice.is_empty() {
            return out;
        }
        out.extend(decode(&slice.read_bytes().expect("pread")));
        assert!(slice.next_offset > offset, "reads make progress");
        offset = slice.next_offset;
    }
}

pub fn small_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

/// A batch of records with the given keys (None = null key) and values `"{tag}-{i}"` padded to
/// `value_bytes`, timestamps `timestamp + i`.
pub fn keyed_batch(
    keys: &[Option<String>],
    tag: &str,
    value_bytes: usize,
    timestamp: i64,
) -> Vec<u8> {
    let records: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let mut value = format!("{tag}-{i}");
            while value.len() < value_bytes {
                value.push('.');
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: timestamp + i as i64,
                key: key.clone().map(Bytes::from),
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
    buf.to_vec()
}

/// Decodes batches back to back into (offset, key, value) triples.
pub fn decode_keyed(bytes: &[u8]) -> Vec<(i64, Option<String>, String)> {
    let mut buf = Bytes::copy_from_slice(bytes);
    let mut out = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut buf).expect("decode") {
        for record in set.records {
            let text = |b: Bytes| String::from_utf8_lossy(&b).into_owned();
            out.push((
                record.offset,
                record.key.map(text),
                record.value.map(text).unwrap_or_default(),
            ));
        }
    }
    out
}

/// A transactional batch of `producer` (transactional attribute set) holding records with the
/// given keys and values `"{tag}-{i}"`.
pub fn txn_batch(
    keys: &[Option<String>],
    tag: &str,
    timestamp: i64,
    producer: Producer,
) -> Vec<u8> {
    let records: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.id,
            producer_epoch: producer.epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: producer.sequence + i as i32,
            timestamp: timestamp + i as i64,
            key: key.clone().map(Bytes::from),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
    buf.to_vec()
}
