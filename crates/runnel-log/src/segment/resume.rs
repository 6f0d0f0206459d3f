//! Resuming a segment from its offset index: the bounded recovery scan, and keeping the active
//! segment's index files current so that there is an index to resume from after a crash.
//!
//! # What it owns
//! - [`Segment::scan_from_index`]: the recovery scan of [`Segment::scan`] (CRC and continuity
//!   checks, truncation point, zero padding), but starting at the last offset-index entry whose
//!   batch ends below a trusted offset instead of at the start of the file. The batches before
//!   that entry are trusted as a sealed segment below the recovery point is (their indexes
//!   checked, their CRCs not); the entry's own batch and every byte after it are verified.
//!   Work is bounded by what lies after the entry: after a clean shutdown (everything trusted),
//!   about `index.interval.bytes`; after a crash, what was appended after the last recovery
//!   point the index files were written with.
//! - [`Segment::write_index_updates`]: appends the entries added since the index files were
//!   last written (the broker calls it with each recovery-point checkpoint), so the active
//!   segment's index on disk is never older than the checkpointed recovery point.
//!
//! # Invariants and crash policy
//! The index files are a cache and never fsynced: after a crash they may be old, short, torn
//! or, after a power loss, garbage. Only the longest prefix of whole, strictly increasing
//! entries with positions inside the file is used, and of it only the entries of batches
//! ending below the trusted offset; the batch the last of them names must be there, end at
//! that entry's offset and pass its CRC, or the whole segment is scanned from its start
//! exactly as [`Segment::scan`] does. Everything at or above the trusted offset is therefore
//! always CRC-checked, as the crash policy of `segment.rs` requires.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use runnel_protocol::record_batch::BatchHeader;

use super::{
    decode_offset_entry, decode_time_entry, encode_offset_entries, encode_time_entries,
    read_index_file, segment_file_path, OffsetEntry, Segment, TimeEntry, Truncation, INDEX_SUFFIX,
    OFFSET_INDEX_ENTRY_SIZE, TIME_INDEX_ENTRY_SIZE, TIME_INDEX_SUFFIX,
};
use crate::error::LogError;

/// Where a resumed scan starts: the trusted entries and the batch of the last of them.
struct Resume {
    offset_index: Vec<OffsetEntry>,
    time_index: Vec<TimeEntry>,
    position: u64,
    header: BatchHeader,
    /// Whole entries in the offset and time index files: more than the trusted ones means
    /// the files hold entries memory will not.
    files_hold: (usize, usize),
}

impl Segment {
    /// [`Segment::scan`], resumed at the last offset-index entry of a batch ending below
    /// `trusted_below` (see the module doc); a full scan when the index offers none.
    /// `i64::MAX` trusts the whole index: the segment was closed cleanly.
    pub fn scan_from_index(
        dir: &Path,
        base_offset: i64,
        previous_last_offset: Option<i64>,
        index_interval_bytes: u64,
        trusted_below: i64,
        mut on_batch: impl FnMut(&BatchHeader),
    ) -> Result<(Segment, Option<Truncation>), LogError> {
        let (mut segment, file_len, expected_min) =
            Segment::open_for_scan(dir, base_offset, previous_last_offset)?;
        let resume = segment.find_resume_point(file_len, expected_min, trusted_below)?;
        let damage = match resume {
            Some(resume) => {
                let size = resume.header.size_bytes() as u64;
                let in_files = (resume.offset_index.len(), resume.time_index.len());
                segment.index_entries_in_files =
                    (resume.files_hold == in_files).then_some(in_files);
                if let Some(last) = resume.time_index.last() {
                    segment.max_timestamp = last.timestamp;
                    segment.offset_of_max_timestamp = base_offset + i64::from(last.relative_offset);
                }
                segment.offset_index = Arc::new(resume.offset_index);
                segment.time_index = Arc::new(resume.time_index);
                // The entry's batch is indexed already: note it as `Segment::load` does.
                segment.note_batch(&resume.header, resume.position);
                segment.bytes_since_last_index_entry = size;
                on_batch(&resume.header);
                tracing::debug!(path = %segment.log_path.display(), from = resume.position + size,
                    file_len, "resuming the recovery scan at the last trusted index entry");
                segment.scan_batches(
                    resume.position + size,
                    resume.header.last_offset() + 1,
                    file_len,
                    index_interval_bytes,
                    on_batch,
                )
            }
            None => segment.scan_whole(expected_min, file_len, index_interval_bytes, on_batch),
        };
        segment.finish_scan(damage, file_len)
    }

    /// The trusted index entries and the verified batch of the last one; `None` when there
    /// is none to trust (missing or unusable index files, or a last batch that fails its
    /// checks): the caller scans from the start.
    fn find_resume_point(
        &self,
        file_len: u64,
        expected_min: i64,
        trusted_below: i64,
    ) -> Result<Option<Resume>, LogError> {
        if file_len > i32::MAX as u64 {
            return Ok(None);
        }
        let (mut offset_index, offsets_in_file) =
            read_offset_index_prefix(&self.dir, self.base_offset, file_len, trusted_below)?;
        // Only the last trusted entry is tried: when its batch does not verify, the whole
        // segment is scanned (falling back to an earlier entry would gain little).
        let Some(last) = offset_index.last().copied() else {
            return Ok(None);
        };
        let position = u64::from(last.position);
        let header = match self.read_valid_batch(position, file_len, expected_min) {
            Ok(header) => header,
            Err(reason) => {
                tracing::debug!(path = %self.log_path.display(), position, %reason,
                    "the last trusted index entry's batch does not verify; scanning the whole segment");
                return Ok(None);
            }
        };
        if header.last_offset() != self.base_offset + i64::from(last.relative_offset) {
            return Ok(None);
        }
        offset_index.shrink_to_fit();
        let Some((time_index, times_in_file)) =
            read_time_index_prefix(&self.dir, self.base_offset, last.relative_offset)?
        else {
            return Ok(None);
        };
        Ok(Some(Resume {
            offset_index,
            time_index,
            position,
            header,
            files_hold: (offsets_in_file, times_in_file),
        }))
    }

    /// Appends to the index files the entries added since they were last written, or writes
    /// them whole when they no longer match what memory says they hold (no fsync: a cache).
    /// Nothing is written when nothing changed.
    pub fn write_index_updates(&mut self) -> Result<(), LogError> {
        let Some((offsets_in_file, times_in_file)) = self.index_entries_in_files else {
            return self.write_index_files();
        };
        // The time index first: see `read_time_index_prefix`.
        if times_in_file != self.time_index.len() {
            update_index_file(
                &segment_file_path(&self.dir, self.base_offset, TIME_INDEX_SUFFIX),
                (times_in_file * TIME_INDEX_ENTRY_SIZE) as u64,
                || encode_time_entries(&self.time_index),
                || encode_time_entries(&self.time_index[times_in_file..]),
            )?;
        }
        if offsets_in_file != self.offset_index.len() {
            update_index_file(
                &segment_file_path(&self.dir, self.base_offset, INDEX_SUFFIX),
                (offsets_in_file * OFFSET_INDEX_ENTRY_SIZE) as u64,
                || encode_offset_entries(&self.offset_index),
                || encode_offset_entries(&self.offset_index[offsets_in_file..]),
            )?;
        }
        self.index_entries_in_files = Some((self.offset_index.len(), self.time_index.len()));
        Ok(())
    }
}

/// Appends `new()` at `known_len` when the file is exactly that long (and not empty), else
/// replaces its content with `whole()`.
fn update_index_file(
    path: &Path,
    known_len: u64,
    whole: impl FnOnce() -> Vec<u8>,
    new: impl FnOnce() -> Vec<u8>,
) -> Result<(), LogError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(LogError::io("open", path))?;
    let len = file.metadata().map_err(LogError::io("stat", path))?.len();
    if known_len > 0 && len == known_len {
        return file
            .write_all_at(&new(), known_len)
            .map_err(LogError::io("write", path));
    }
    let bytes = whole();
    file.write_all_at(&bytes, 0)
        .and_then(|()| file.set_len(bytes.len() as u64))
        .map_err(LogError::io("write", path))
}

/// The longest prefix of the offset index file's entries that are whole, strictly increasing,
/// inside a log of `file_len` bytes and of batches ending below `trusted_below`; and how many
/// entries the file holds.
fn read_offset_index_prefix(
    dir: &Path,
    base_offset: i64,
    file_len: u64,
    trusted_below: i64,
) -> Result<(Vec<OffsetEntry>, usize), LogError> {
    let path = segment_file_path(dir, base_offset, INDEX_SUFFIX);
    let Some(bytes) = read_index_file(&path)? else {
        return Ok((Vec::new(), 0));
    };
    // A torn last entry counts: the file then holds more than what is trusted.
    let in_file = bytes.len().div_ceil(OFFSET_INDEX_ENTRY_SIZE);
    let mut entries: Vec<OffsetEntry> = Vec::with_capacity(bytes.len() / OFFSET_INDEX_ENTRY_SIZE);
    for raw in bytes.chunks_exact(OFFSET_INDEX_ENTRY_SIZE) {
        let entry = decode_offset_entry(raw);
        let increasing = entries.last().is_none_or(|last| {
            entry.relative_offset > last.relative_offset && entry.position > last.position
        });
        let usable = increasing
            && entry.relative_offset <= i32::MAX as u32
            && u64::from(entry.position) < file_len
            && base_offset + i64::from(entry.relative_offset) < trusted_below;
        if !usable {
            break;
        }
        entries.push(entry);
    }
    Ok((entries, in_file))
}

/// The time index file's entries at or below `relative_offset_max` (the last trusted
/// offset-index entry's): they give the segment's max timestamp up to that entry, so a file
/// that is missing, torn or has a bad entry among them gives `None` (scan from the start).
/// The time index is written before the offset index ([`Segment::write_index_updates`]), so
/// an offset-index entry in the file has its time entries in the file too.
fn read_time_index_prefix(
    dir: &Path,
    base_offset: i64,
    relative_offset_max: u32,
) -> Result<Option<(Vec<TimeEntry>, usize)>, LogError> {
    let path = segment_file_path(dir, base_offset, TIME_INDEX_SUFFIX);
    let Some(bytes) = read_index_file(&path)? else {
        return Ok(None);
    };
    if bytes.len() % TIME_INDEX_ENTRY_SIZE != 0 {
        return Ok(None);
    }
    let mut entries: Vec<TimeEntry> = Vec::new();
    for raw in bytes.chunks_exact(TIME_INDEX_ENTRY_SIZE) {
        let entry = decode_time_entry(raw);
        if entry.relative_offset > relative_offset_max {
            break;
        }
        let increasing = entries.last().is_none_or(|last| {
            entry.timestamp > last.timestamp && entry.relative_offset >= last.relative_offset
        });
        if !increasing || entry.timestamp < 0 {
            return Ok(None);
        }
        entries.push(entry);
    }
    Ok(Some((entries, bytes.len() / TIME_INDEX_ENTRY_SIZE)))
}
