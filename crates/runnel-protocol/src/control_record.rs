//! Control records: the one record of a control batch (attribute bit 5), Kafka's
//! `ControlRecordType` key and `EndTxnMarker` value.
//!
//! A transaction marker is a batch with the transactional and control bits set, the producer's
//! id and epoch, base sequence -1 and exactly one record:
//!
//! | part  | bytes | field                                                             |
//! |-------|------:|-------------------------------------------------------------------|
//! | key   |     2 | version (0)                                                       |
//! | key   |     2 | type: 0 ABORT, 1 COMMIT (2–6 are KRaft's, unknown types are kept) |
//! | value |     2 | version (0)                                                       |
//! | value |     4 | coordinator epoch                                                 |
//!
//! Kafka reads a key of version > 0 as version 0 (extra bytes ignored) and refuses a negative
//! version; [`ControlRecord::decode_batch`] does the same. Decoding is bounded by the batch's
//! bytes: nothing here trusts a length it has not checked.

use bytes::Bytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordEncodeOptions, TimestampType,
};

/// Kafka's `ControlRecordType` ids that Runnel writes or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
    /// Any other type (KRaft's leader change, snapshot header and footer, …), kept as read.
    Other(i16),
}

impl ControlType {
    pub fn id(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
            ControlType::Other(id) => id,
        }
    }

    fn from_id(id: i16) -> Self {
        match id {
            0 => ControlType::Abort,
            1 => ControlType::Commit,
            other => ControlType::Other(other),
        }
    }
}

/// What a control batch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRecord {
    pub control_type: ControlType,
    /// The transaction coordinator's epoch for COMMIT and ABORT; `None` for other types or a
    /// marker without a readable value.
    pub coordinator_epoch: Option<i32>,
}

/// Why a control batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlRecordError {
    #[error("control batch does not decode: {0}")]
    Batch(String),
    #[error("control batch holds {0} records, not one")]
    RecordCount(usize),
    #[error("control record has no key or a key shorter than 4 bytes")]
    Key,
    #[error("control record key version {0} is negative")]
    KeyVersion(i16),
    #[error("transaction marker value is missing, shorter than 6 bytes or of negative version")]
    MarkerValue,
}

impl ControlRecord {
    /// A COMMIT or ABORT marker.
    pub fn marker(commit: bool, coordinator_epoch: i32) -> Self {
        ControlRecord {
            control_type: if commit {
                ControlType::Commit
            } else {
                ControlType::Abort
            },
            coordinator_epoch: Some(coordinator_epoch),
        }
    }

    /// Whether this is a COMMIT marker (an ABORT or other type is not).
    pub fn is_commit(&self) -> bool {
        self.control_type == ControlType::Commit
    }

    /// Reads the control record of one whole control batch (its header included).
    pub fn decode_batch(batch: &[u8]) -> Result<Self, ControlRecordError> {
        let mut bytes = Bytes::copy_from_slice(batch);
        let set = RecordBatchDecoder::decode(&mut bytes)
            .map_err(|error| ControlRecordError::Batch(error.to_string()))?;
        let [record] = set.records.as_slice() else {
            return Err(ControlRecordError::RecordCount(set.records.len()));
        };
        Self::decode(record.key.as_deref(), record.value.as_deref())
    }

    /// Reads a control record from its key and value.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Self, ControlRecordError> {
        let key = key
            .filter(|key| key.len() >= 4)
            .ok_or(ControlRecordError::Key)?;
        let version = i16::from_be_bytes([key[0], key[1]]);
        if version < 0 {
            return Err(ControlRecordError::KeyVersion(version));
        }
        let control_type = ControlType::from_id(i16::from_be_bytes([key[2], key[3]]));
        let coordinator_epoch = match control_type {
            ControlType::Abort | ControlType::Commit => {
                let value = value
                    .filter(|value| value.len() >= 6)
                    .filter(|value| i16::from_be_bytes([value[0], value[1]]) >= 0)
                    .ok_or(ControlRecordError::MarkerValue)?;
                Some(i32::from_be_bytes([value[2], value[3], value[4], value[5]]))
            }
            ControlType::Other(_) => None,
        };
        Ok(ControlRecord {
            control_type,
            coordinator_epoch,
        })
    }

    fn key_bytes(&self) -> Bytes {
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&self.control_type.id().to_be_bytes());
        Bytes::from(key)
    }

    fn value_bytes(&self) -> Option<Bytes> {
        let epoch = self.coordinator_epoch?;
        let mut value = Vec::with_capacity(6);
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&epoch.to_be_bytes());
        Some(Bytes::from(value))
    }

    /// One control batch holding this record, for `producer_id` at `producer_epoch`, stamped
    /// with `timestamp`: transactional and control bits set, base sequence -1 (Kafka's
    /// `MemoryRecords.withEndTransactionMarker`). The base offset and leader epoch are set on
    /// append, like any batch's.
    pub fn encode_batch(&self, producer_id: i64, producer_epoch: i16, timestamp: i64) -> Vec<u8> {
        let record = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp,
            key: Some(self.key_bytes()),
            value: self.value_bytes(),
            headers: Default::default(),
        };
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        kafka_protocol::records::RecordBatchEncoder::encode(
            &mut buf,
            std::iter::once(&record),
            &options,
        )
        .expect("encoding one uncompressed record into memory cannot fail");
        buf.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::validate_batch;

    #[test]
    fn a_marker_batch_has_kafkas_header_fields_and_reads_back() {
        for commit in [true, false] {
            let marker = ControlRecord::marker(commit, 7);
            let batch = marker.encode_batch(4242, 3, 1_700_000_000_000);
            let header = validate_batch(&batch).expect("a valid batch");
            assert!(header.is_control());
            assert!(header.is_transactional());
            assert_eq!(header.producer_id, 4242);
            assert_eq!(header.producer_epoch, 3);
            assert_eq!(header.base_sequence, -1);
            assert_eq!(header.records_count, 1);
            let read = ControlRecord::decode_batch(&batch).expect("decodes");
            assert_eq!(read, marker);
            assert_eq!(read.is_commit(), commit);
        }
    }

    #[test]
    fn kafkas_marker_bytes_decode() {
        // Key and value exactly as Kafka's EndTxnMarker writes them for COMMIT, epoch 5.
        let key = [0u8, 0, 0, 1];
        let value = [0u8, 0, 0, 0, 0, 5];
        let read = ControlRecord::decode(Some(&key), Some(&value)).expect("decodes");
        assert_eq!(read, ControlRecord::marker(true, 5));
    }

    #[test]
    fn short_or_negative_keys_and_values_are_refused() {
        assert_eq!(
            ControlRecord::decode(None, None),
            Err(ControlRecordError::Key)
        );
        assert_eq!(
            ControlRecord::decode(Some(&[0, 0, 0]), None),
            Err(ControlRecordError::Key)
        );
        assert_eq!(
            ControlRecord::decode(Some(&[0xff, 0xff, 0, 1]), None),
            Err(ControlRecordError::KeyVersion(-1))
        );
        assert_eq!(
            ControlRecord::decode(Some(&[0, 0, 0, 0]), Some(&[0, 0, 0])),
            Err(ControlRecordError::MarkerValue)
        );
        assert_eq!(
            ControlRecord::decode(Some(&[0, 0, 0, 0]), Some(&[0xff, 0xff, 0, 0, 0, 1])),
            Err(ControlRecordError::MarkerValue)
        );
    }

    #[test]
    fn other_control_types_are_kept_without_a_value() {
        let read = ControlRecord::decode(Some(&[0, 0, 0, 2]), Some(&[1, 2])).expect("decodes");
        assert_eq!(read.control_type, ControlType::Other(2));
        assert_eq!(read.coordinator_epoch, None);
        assert!(!read.is_commit());
    }

    #[test]
    fn a_batch_of_garbage_is_an_error_not_a_panic() {
        assert!(ControlRecord::decode_batch(&[0u8; 10]).is_err());
        let mut batch = ControlRecord::marker(true, 1).encode_batch(1, 0, 0);
        batch.truncate(batch.len() - 3);
        assert!(ControlRecord::decode_batch(&batch).is_err());
    }
}
