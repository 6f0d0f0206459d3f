//! Timestamp lookups (ListOffsets by timestamp and MAX_TIMESTAMP), with record precision.
//!
//! Only offsets below the high watermark and at or above the log start offset count. Segment
//! max timestamps and the time index narrow the search; batch headers (max timestamp) find the
//! batch; `record_timestamps` finds the record inside it. The segment holding the high
//! watermark is scanned header by header for MAX_TIMESTAMP (a rare request). Compacted batches
//! may skip offsets or hold no records: only the records present count.

use runnel_protocol::record_batch::{self, BatchHeader};

use super::PartitionLog;
use crate::error::LogError;
use crate::segment::{validate_stored_batch, Segment};

impl PartitionLog {
    /// The first record (offset, timestamp) whose timestamp is ≥ `timestamp`.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        let high_watermark = self.high_watermark;
        for segment in &self.segments {
            if segment.base_offset() >= high_watermark {
                break;
            }
            if segment.max_timestamp().0 < timestamp {
                continue;
            }
            let mut position = segment.timestamp_scan_start(timestamp);
            while let Some((at, header)) =
                segment.scan_from(position, |h| h.max_timestamp >= timestamp)?
            {
                if header.base_offset >= high_watermark {
                    return Ok(None);
                }
                let records = self.records_of(segment, at, &header)?;
                let found = records
                    .into_iter()
                    .filter(|&(offset, _)| {
                        offset >= self.log_start_offset && offset < high_watermark
                    })
                    .find(|&(_, t)| t >= timestamp);
                if found.is_some() {
                    return Ok(found);
                }
                position = at + header.size_bytes() as u64;
            }
        }
        Ok(None)
    }

    /// The record (offset, timestamp) with the largest timestamp; the first such record.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let high_watermark = self.high_watermark;
        // (timestamp, segment index, last offset of the batch holding it)
        let mut best: Option<(i64, usize, i64)> = None;
        let mut consider = |timestamp: i64, index: usize, last_offset: i64| {
            if timestamp >= 0 && best.is_none_or(|(t, _, _)| timestamp > t) {
                best = Some((timestamp, index, last_offset));
            }
        };
        for (index, segment) in self.segments.iter().enumerate() {
            if segment.base_offset() >= high_watermark {
                break;
            }
            if segment.next_offset() <= high_watermark {
                let (timestamp, last_offset) = segment.max_timestamp();
                consider(timestamp, index, last_offset);
                continue;
            }
            for (position, header) in segment.headers_below(high_watermark)? {
                if header.last_offset() < high_watermark {
                    consider(header.max_timestamp, index, header.last_offset());
                } else {
                    let records = self.records_of(segment, position, &header)?;
                    let below: Vec<_> = records
                        .into_iter()
                        .filter(|&(o, _)| o < high_watermark)
                        .collect();
                    if let Some(max) = below.iter().map(|&(_, t)| t).max() {
                        consider(max, index, header.last_offset());
                    }
                }
            }
        }
        let Some((timestamp, index, last_offset)) = best else {
            return Ok(None);
        };
        let segment = &self.segments[index];
        let Some((position, header)) = segment.translate_offset(last_offset)? else {
            return Ok(None);
        };
        let records: Vec<_> = self
            .records_of(segment, position, &header)?
            .into_iter()
            .filter(|&(o, _)| o < high_watermark)
            .collect();
        let record_max = records.iter().map(|&(_, t)| t).max();
        // A producer may send a header max timestamp that disagrees with its records.
        let wanted = if records.iter().any(|&(_, t)| t == timestamp) {
            Some(timestamp)
        } else {
            record_max
        };
        Ok(wanted.and_then(|w| records.into_iter().find(|&(_, t)| t == w)))
    }

    fn records_of(
        &self,
        segment: &Segment,
        position: u64,
        header: &BatchHeader,
    ) -> Result<Vec<(i64, i64)>, LogError> {
        let bytes = segment.read_batch(position, header)?;
        let corrupt = |reason: String| LogError::Corrupt {
            path: segment.log_path().to_path_buf(),
            reason: format!("batch at position {position}: {reason}"),
        };
        let header = validate_stored_batch(&bytes).map_err(corrupt)?;
        record_batch::timestamps_of_validated(&header, &bytes)
            .map_err(|error| corrupt(error.to_string()))
    }
}
