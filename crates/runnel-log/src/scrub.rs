//! Scrubbing: re-verifying a sealed segment's batches (extent, CRC-32C, counts) in bounded
//! steps, so that damage to data at rest is found while it sits unread rather than when a
//! consumer reaches it.
//!
//! The caller (the broker's scrubber task) takes copies of the segments to verify from
//! [`crate::PartitionLog::scrub_candidates`] under the partition's lock, calls [`scrub_step`]
//! without it as often as its byte rate allows, and hands any [`DamagedRange`] found to
//! [`crate::PartitionLog::record_damage`] under the lock again. A sealed segment's bytes never
//! change while it is in the log (it is only replaced or deleted whole), so reading a copy
//! without the lock is sound; a segment replaced meanwhile is recognised by `record_damage`.
//!
//! Invariant: a step reads at most `bytes_max` bytes, plus at most one batch (batches are
//! checked whole; a batch is at most a segment, `log.segment.bytes`).
//!
//! File handles: a step reads through the process-wide cache of open segment files
//! (`open_files.rs`): it takes the segment's handle once ([`Segment::pinned`]: the cached one,
//! or the file opened again after an eviction) and drops it when the step ends, so the
//! scrubber holds at most one descriptor, for one step, beyond the cache. A segment retired
//! since the copy was taken (deleted by retention, replaced by compaction) is
//! [`ScrubStep::Gone`]; a handle that cannot be opened is an I/O error; neither is damage.

use crate::error::LogError;
use crate::partition_log::DamagedRange;
use crate::segment::Segment;

/// Where a scrub of one segment has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubCursor {
    /// Position of the next batch to verify.
    pub position: u64,
    /// The offset after the last batch verified good (the segment's base at first).
    pub verified_next_offset: i64,
}

impl ScrubCursor {
    pub fn start(segment: &Segment) -> ScrubCursor {
        ScrubCursor {
            position: 0,
            verified_next_offset: segment.base_offset(),
        }
    }
}

/// What one step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrubStep {
    /// The segment was deleted or replaced since the copy was taken: nothing left to verify.
    Gone,
    /// Every batch up to the cursor is good; more remain.
    Continue { bytes_read: u64 },
    /// The whole segment is good.
    Done { bytes_read: u64 },
    /// A bad batch: the range from the last good batch to the segment's next offset is not to
    /// be served (the batches after a bad one are not trusted: the walk from batch to batch
    /// relies on the lengths the damage may have hit).
    Damaged {
        bytes_read: u64,
        range: DamagedRange,
    },
}

/// Verifies the batches of `segment` from `cursor`, reading about `bytes_max` bytes.
pub fn scrub_step(
    segment: &Segment,
    cursor: &mut ScrubCursor,
    bytes_max: u64,
) -> Result<ScrubStep, LogError> {
    let segment = match segment.pinned() {
        Ok(pinned) => pinned,
        Err(_) if segment.segment_file().is_retired() => return Ok(ScrubStep::Gone),
        Err(error) => return Err(error),
    };
    let segment = &segment;
    let mut bytes_read = 0u64;
    while cursor.position < segment.size_bytes() {
        if bytes_read >= bytes_max {
            return Ok(ScrubStep::Continue { bytes_read });
        }
        match segment.verify_batch(cursor.position) {
            Ok(header) if header.base_offset >= cursor.verified_next_offset => {
                let size = header.size_bytes() as u64;
                bytes_read += size;
                cursor.position += size;
                cursor.verified_next_offset = header.last_offset() + 1;
            }
            Ok(header) => {
                let reason = format!(
                    "non-contiguous batch at position {}: base offset {} below {}",
                    cursor.position, header.base_offset, cursor.verified_next_offset
                );
                return Ok(damaged(segment, cursor, bytes_read, reason));
            }
            Err(reason) => {
                let reason = format!("at position {}: {reason}", cursor.position);
                return Ok(damaged(segment, cursor, bytes_read, reason));
            }
        }
    }
    Ok(ScrubStep::Done { bytes_read })
}

fn damaged(segment: &Segment, cursor: &ScrubCursor, bytes_read: u64, reason: String) -> ScrubStep {
    ScrubStep::Damaged {
        bytes_read,
        range: DamagedRange {
            start_offset: cursor.verified_next_offset,
            end_offset: segment.next_offset().max(cursor.verified_next_offset + 1),
            segment_base_offset: segment.base_offset(),
            position: cursor.position,
            bytes: segment.size_bytes() - cursor.position,
            reason,
        },
    }
}
