//! Damage below the recovery point: offsets whose records are lost or corrupt, kept as known
//! gaps that reads refuse, never cut away.
//!
//! # What is damage
//! Everything below the recovery point was fsynced, so a crash cannot have torn it: a bad
//! batch there (torn, CRC mismatch, non-contiguous), a segment shorter than its offset or time
//! index says, or a gap between segments is damage from outside (a disk, a person). Three
//! kinds, each one [`DamagedRange`] of offsets `[start_offset, end_offset)`:
//! - **a damaged sealed segment**: its valid prefix is served; the range runs from the
//!   prefix's next offset to the next segment's base offset. The active segment is always
//!   crash-recovered (truncated at its first bad batch, as the torn-tail tests pin), whatever
//!   the recovery point says;
//! - **a gap between segments** (a missing segment, or one cut short at a batch boundary):
//!   `[one segment's next offset, the next one's base offset)`, below the recovery point. In a
//!   log that is never compacted every roll starts the next segment at the previous one's next
//!   offset, so such a gap is unexplained. In a compacted log ([`LogConfig::compacted`]) the
//!   cleaner drops emptied segments and the last records of others, and a gap cannot be told
//!   from damage by the files: it is served as Kafka serves a compacted gap (the next offset
//!   present), and only damage found by the CRC and index checks is reported there.
//!   Gaps at or above the recovery point are crash losses of unflushed data (today's crash
//!   recovery), and a gap below the first segment is retention's (its files are unlinked before
//!   the log start offset checkpoint is written).
//! - **a batch the scrubber found bad** (`scrub.rs`): from the offset after the last good batch
//!   of the segment to the segment's next offset.
//!
//! The crash-recovery rule for the tail is unchanged: a bad batch at or above the recovery
//! point truncates the log there and deletes the later segments (Kafka's `LogLoader`).
//!
//! # What reads do
//! A read at an offset inside a range fails with [`ReadError::Damaged`] (the broker answers
//! `CORRUPT_MESSAGE`, as Kafka answers a fetch whose read hits a `CorruptRecordException`); a
//! read below a range returns the batches before it only; a read past it works. Compaction
//! does not rewrite a damaged segment; retention and DeleteRecords may delete it, and a range
//! wholly below the log start offset is forgotten.
//!
//! # Persistence
//! Damage found at open is recomputed at each open: the damaged files are never altered and no
//! index is written for a damaged segment, so the next open finds it again, and reports it at
//! ERROR again, until an operator acts (restores, removes or deletes past it). Damage the
//! scrubber finds lies in a segment whose indexes look fine, so its base offset is listed in
//! `<partition dir>/damaged-segments` (text, written atomically: `0`, the count, then one base
//! offset per line), and the next open scans those segments with CRC checks. An entry whose
//! segment is gone or scans clean is dropped at open.
//!
//! [`LogConfig::compacted`]: crate::config::LogConfig::compacted
//! [`ReadError::Damaged`]: crate::error::ReadError::Damaged

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::PartitionLog;
use crate::checkpoint::write_atomically;
use crate::error::LogError;
use crate::segment::Segment;

/// File of a partition directory listing the segments the scrubber found damaged.
pub const DAMAGED_SEGMENTS_FILE: &str = "damaged-segments";
/// Most entries read from a `damaged-segments` file (one per segment; more is not ours).
const DAMAGED_SEGMENTS_MAX: usize = 1 << 20;
/// The only format version of `damaged-segments`.
const DAMAGED_SEGMENTS_VERSION: &str = "0";

/// Offsets `[start_offset, end_offset)` of a partition whose records are lost or corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRange {
    pub start_offset: i64,
    pub end_offset: i64,
    /// The segment the damage is in, or the one before the gap.
    pub segment_base_offset: i64,
    /// Where in that segment's file the damage begins (the segment's size for a gap).
    pub position: u64,
    /// Bytes of the segment file that are not served (0 for a gap: its bytes are gone).
    pub bytes: u64,
    pub reason: String,
}

impl DamagedRange {
    pub fn contains(&self, offset: i64) -> bool {
        (self.start_offset..self.end_offset).contains(&offset)
    }
}

impl PartitionLog {
    /// The damaged ranges, by start offset.
    pub fn damaged_ranges(&self) -> &[DamagedRange] {
        &self.damaged
    }

    /// The range holding `offset`, if any.
    pub(super) fn damage_at(&self, offset: i64) -> Option<&DamagedRange> {
        self.damaged.iter().find(|range| range.contains(offset))
    }

    /// The first range starting above `offset`: a read from `offset` stops before it.
    pub(super) fn damage_above(&self, offset: i64) -> Option<&DamagedRange> {
        self.damaged
            .iter()
            .find(|range| range.start_offset > offset)
    }

    /// Whether any damaged range overlaps `segment` (compaction leaves such segments alone).
    pub(super) fn overlaps_damage(&self, segment: &Segment) -> bool {
        self.damaged.iter().any(|range| {
            range.segment_base_offset == segment.base_offset()
                || (range.start_offset < segment.next_offset()
                    && range.end_offset > segment.base_offset())
        })
    }

    /// Copies of the sealed segments wholly below the recovery point and not known damaged,
    /// for the scrubber to verify without the partition's lock (sealed bytes never change; a
    /// clone shares the cache entry of the open file).
    pub fn scrub_candidates(&self) -> Vec<Segment> {
        let sealed = &self.segments[..self.segments.len() - 1];
        sealed
            .iter()
            .filter(|s| {
                !s.is_empty() && s.next_offset() <= self.recovery_point && !self.overlaps_damage(s)
            })
            .cloned()
            .collect()
    }

    /// Records damage the scrubber found in the segment at `range.segment_base_offset`, if that
    /// segment is still the one scrubbed (same base and next offset: not compacted or deleted
    /// meanwhile) and the range is new. The segment then serves only the bytes before the
    /// damage; it is listed in `damaged-segments` and reported at ERROR. Returns whether the
    /// range was recorded.
    pub fn record_damage(
        &mut self,
        range: DamagedRange,
        scrubbed_next_offset: i64,
    ) -> Result<bool, LogError> {
        let present = self.segments.iter().any(|s| {
            s.base_offset() == range.segment_base_offset && s.next_offset() == scrubbed_next_offset
        });
        if !present || range.end_offset <= self.log_start_offset || self.overlaps_range(&range) {
            return Ok(false);
        }
        report(&self.dir, &range, "found by the scrubber");
        if let Some(segment) = self
            .segments
            .iter_mut()
            .find(|s| s.base_offset() == range.segment_base_offset)
        {
            segment.limit_to(range.position, range.start_offset);
        }
        self.damaged.push(range);
        self.damaged.sort_by_key(|r| r.start_offset);
        self.persist_damaged_segments()?;
        Ok(true)
    }

    fn overlaps_range(&self, new: &DamagedRange) -> bool {
        self.damaged
            .iter()
            .any(|r| r.start_offset < new.end_offset && new.start_offset < r.end_offset)
    }

    /// Forgets the ranges wholly below the log start offset (retention or DeleteRecords went
    /// past them).
    pub(super) fn forget_damage_below_log_start(&mut self) -> Result<(), LogError> {
        let before = self.damaged.len();
        let log_start_offset = self.log_start_offset;
        self.damaged.retain(|r| r.end_offset > log_start_offset);
        if self.damaged.len() == before {
            return Ok(());
        }
        tracing::info!(
            dir = %self.dir.display(),
            log_start_offset,
            ranges_left = self.damaged.len(),
            "damaged ranges below the log start offset forgotten"
        );
        self.persist_damaged_segments()
    }

    /// Writes `damaged-segments` with every damaged segment's base offset (removes the file
    /// when there is none).
    pub(super) fn persist_damaged_segments(&self) -> Result<(), LogError> {
        let mut bases: Vec<i64> = self.damaged.iter().map(|r| r.segment_base_offset).collect();
        bases.dedup();
        write_damaged_segments(&self.dir, &bases)
    }
}

/// Reads `damaged-segments`; a missing file is empty. A malformed one is reported and read as
/// empty: it only makes the next open scan more segments, so nothing is lost by ignoring it
/// except re-finding the scrubber's damage (which the scrubber then finds again).
pub(super) fn read_damaged_segments(dir: &Path) -> Result<Vec<i64>, LogError> {
    let path = dir.join(DAMAGED_SEGMENTS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LogError::Io {
                op: "read",
                path,
                source,
            })
        }
    };
    let mut lines = text.lines();
    let parsed = (|| {
        if lines.next()? != DAMAGED_SEGMENTS_VERSION {
            return None;
        }
        let count: usize = lines.next()?.parse().ok()?;
        if count > DAMAGED_SEGMENTS_MAX {
            return None;
        }
        let bases: Option<Vec<i64>> = lines.by_ref().take(count).map(|l| l.parse().ok()).collect();
        bases.filter(|b| b.len() == count)
    })();
    match parsed {
        Some(bases) => Ok(bases),
        None => {
            tracing::warn!(path = %path.display(), "malformed damaged-segments file ignored");
            Ok(Vec::new())
        }
    }
}

fn write_damaged_segments(dir: &Path, bases: &[i64]) -> Result<(), LogError> {
    let path = dir.join(DAMAGED_SEGMENTS_FILE);
    if bases.is_empty() {
        return match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
            Err(source) => Err(LogError::Io {
                op: "remove",
                path,
                source,
            }),
        };
    }
    let mut text = format!("{DAMAGED_SEGMENTS_VERSION}\n{}\n", bases.len());
    for base in bases {
        text.push_str(&format!("{base}\n"));
    }
    write_atomically(&path, text.as_bytes())
}

/// The unexplained gaps between consecutive segments below the recovery point that no range in
/// `known` covers (none in a compacted log; see the module doc).
pub(super) fn find_gaps(
    segments: &[Segment],
    recovery_point: i64,
    compacted: bool,
    known: &[DamagedRange],
) -> Vec<DamagedRange> {
    if compacted {
        return Vec::new();
    }
    segments
        .windows(2)
        .filter_map(|pair| {
            let (start_offset, end_offset) = (pair[0].next_offset(), pair[1].base_offset());
            let covered = known
                .iter()
                .any(|r| r.start_offset <= start_offset && r.end_offset >= end_offset);
            (start_offset < end_offset && start_offset < recovery_point && !covered).then(|| {
                DamagedRange {
                    start_offset,
                    end_offset,
                    segment_base_offset: pair[0].base_offset(),
                    position: pair[0].size_bytes(),
                    bytes: 0,
                    reason: format!(
                        "offsets missing between segment {} (next offset {start_offset}) and \
                         segment {end_offset}: a segment is missing or was cut short",
                        pair[0].base_offset()
                    ),
                }
            })
        })
        .collect()
}

/// One ERROR line for a damaged range: a person must look.
pub(super) fn report(dir: &Path, range: &DamagedRange, found: &str) {
    tracing::error!(
        dir = %dir.display(),
        start_offset = range.start_offset,
        end_offset = range.end_offset,
        segment = range.segment_base_offset,
        bytes = range.bytes,
        reason = %range.reason,
        "damaged log: offsets [{}, {}) {found} are not served (fetches get CORRUPT_MESSAGE); \
         restore the segment file or move the consumers past the range",
        range.start_offset,
        range.end_offset,
    );
}
