//! Per-record errors (KIP-467): what a Produce response says about a batch whose records are
//! well formed but refused by the topic's policy (a record without a key on a compacted topic,
//! a create time outside `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms`).
//!
//! Kafka's `LogValidator.processRecordErrors` is matched: the whole batch is refused, the
//! partition's error is `INVALID_TIMESTAMP` when any record's fault is a timestamp and
//! `INVALID_RECORD` otherwise, its `error_message` is Kafka's text, and `record_errors` names
//! each refused record by its index in the batch with Kafka's per-record text. Clients (the
//! Java producer, librdkafka) fail exactly those records with their message and the batch's
//! other records as failed because of them.
//!
//! Departure from Kafka: at most [`RECORD_ERRORS_MAX`] records are named per batch. Kafka names
//! every one, so a 1 MiB batch of minimal keyless records would be answered with about 15 MiB
//! of texts, and a request of many such batches with far more than the broker takes in; past
//! the bound the remaining records are failed as the batch's others are.

use runnel_protocol::record_batch::BatchHeader;
use runnel_protocol::record_validation::{RecordFault, RecordFaultKind, TimestampBounds};
use runnel_protocol::ErrorCode;

/// The most refused records one partition's response names.
pub const RECORD_ERRORS_MAX: usize = 1000;

/// A batch refused because of some of its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRecords {
    pub error_code: ErrorCode,
    /// The partition's `error_message`.
    pub message: String,
    /// `(batch_index, batch_index_error_message)`, in batch order, at most
    /// [`RECORD_ERRORS_MAX`].
    pub record_errors: Vec<(i32, String)>,
}

impl std::fmt::Display for RefusedRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl RefusedRecords {
    /// The refusal of the batch `header` of `topic`-`partition` for `faults` (not empty),
    /// found with `bounds` where timestamps were checked.
    pub fn new(
        topic: &str,
        partition: i32,
        header: &BatchHeader,
        faults: &[RecordFault],
        bounds: Option<&TimestampBounds>,
    ) -> Self {
        let texts: Vec<(i32, String)> = faults
            .iter()
            .take(RECORD_ERRORS_MAX)
            .map(|fault| {
                (
                    fault.index,
                    fault_text(topic, partition, header, fault, bounds),
                )
            })
            .collect();
        let timestamp_fault = faults.iter().any(|fault| {
            matches!(
                fault.kind,
                RecordFaultKind::TimestampOutOfRange { .. }
                    | RecordFaultKind::LogAppendTimeFromProducer
            )
        });
        let (error_code, message) = if timestamp_fault {
            (
                ErrorCode::InvalidTimestamp,
                "One or more records have been rejected due to invalid timestamp".to_string(),
            )
        } else {
            // Java's `List.toString` of `ProduceResponse.RecordError`s.
            let first_three: Vec<String> = texts
                .iter()
                .take(3)
                .map(|(index, text)| format!("RecordError(batchIndex={index}, message='{text}')"))
                .collect();
            (
                ErrorCode::InvalidRecord,
                format!(
                    "One or more records have been rejected due to {} record errors in total, \
                     and only showing the first three errors at most: [{}]",
                    faults.len(),
                    first_three.join(", ")
                ),
            )
        };
        RefusedRecords {
            error_code,
            message,
            record_errors: texts,
        }
    }
}

/// Kafka's text for one refused record (`LogValidator.validateKey` / `validateTimestamp`).
fn fault_text(
    topic: &str,
    partition: i32,
    header: &BatchHeader,
    fault: &RecordFault,
    bounds: Option<&TimestampBounds>,
) -> String {
    // Before offsets are assigned a record's offset is the producer's base offset plus its
    // delta, which validation checked equals its index.
    let offset = header.base_offset.wrapping_add(i64::from(fault.index));
    match fault.kind {
        RecordFaultKind::KeyMissing => {
            format!("Compacted topic cannot accept message without key in topic partition {topic}-{partition}")
        }
        RecordFaultKind::TimestampOutOfRange { timestamp } => {
            // Java's long arithmetic wraps; so does this, to print the same bounds.
            let (low, high) = bounds.map_or((i64::MIN, i64::MAX), |b| {
                (
                    b.now_ms.wrapping_sub(b.before_max_ms),
                    b.now_ms.wrapping_add(b.after_max_ms),
                )
            });
            format!(
                "Timestamp {timestamp} of message with offset {offset} is out of range. \
                 The timestamp should be within [{low}, {high}]"
            )
        }
        RecordFaultKind::LogAppendTimeFromProducer => format!(
            "Invalid timestamp type in message with offset {offset}. Producer should not set \
             timestamp type to LogAppendTime."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            length: 0,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: 9,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: 10,
        }
    }

    fn fault(index: i32, kind: RecordFaultKind) -> RecordFault {
        RecordFault { index, kind }
    }

    /// Pins `LogValidator.processRecordErrors`' text for key faults.
    #[test]
    fn key_faults_are_invalid_record_with_kafkas_texts() {
        let faults: Vec<RecordFault> = [1, 4, 6, 9]
            .into_iter()
            .map(|i| fault(i, RecordFaultKind::KeyMissing))
            .collect();
        let refused = RefusedRecords::new("t", 2, &header(), &faults, None);
        assert_eq!(refused.error_code, ErrorCode::InvalidRecord);
        let text = "Compacted topic cannot accept message without key in topic partition t-2";
        assert_eq!(refused.record_errors.len(), 4);
        assert_eq!(refused.record_errors[0], (1, text.to_string()));
        assert_eq!(
            refused.message,
            format!(
                "One or more records have been rejected due to 4 record errors in total, and only \
                 showing the first three errors at most: [RecordError(batchIndex=1, message='{text}'), \
                 RecordError(batchIndex=4, message='{text}'), RecordError(batchIndex=6, message='{text}')]"
            )
        );
    }

    #[test]
    fn any_timestamp_fault_makes_the_batch_invalid_timestamp() {
        let bounds = TimestampBounds {
            now_ms: 10_000,
            before_max_ms: 100,
            after_max_ms: 50,
        };
        let faults = [
            fault(0, RecordFaultKind::KeyMissing),
            fault(
                3,
                RecordFaultKind::TimestampOutOfRange { timestamp: 20_000 },
            ),
        ];
        let refused = RefusedRecords::new("t", 0, &header(), &faults, Some(&bounds));
        assert_eq!(refused.error_code, ErrorCode::InvalidTimestamp);
        assert_eq!(
            refused.message,
            "One or more records have been rejected due to invalid timestamp"
        );
        assert_eq!(
            refused.record_errors[1].1,
            "Timestamp 20000 of message with offset 3 is out of range. The timestamp should be \
             within [9900, 10050]"
        );
    }

    #[test]
    fn record_errors_are_bounded() {
        let faults: Vec<RecordFault> = (0..5000)
            .map(|i| fault(i, RecordFaultKind::KeyMissing))
            .collect();
        let refused = RefusedRecords::new("t", 0, &header(), &faults, None);
        assert_eq!(refused.record_errors.len(), RECORD_ERRORS_MAX);
        assert!(refused.message.contains("due to 5000 record errors"));
    }
}
