//! One segment of a partition log: `<base>.log` + `<base>.index` + `<base>.timeindex`, and
//! `<base>.txnindex` when an ABORT marker lies in it (`segment/txn_index.rs`), where `<base>`
//! is the segment's base offset as 20 zero-padded digits (Kafka's file names).
//!
//! # `.log`
//! Record batches (v2) back to back, exactly as produced, with base offset and partition
//! leader epoch patched by the broker, or as rewritten by compaction (fewer records than
//! offsets, or an empty header; see [`validate_stored_batch`] and
//! `partition_log/compaction.rs`, which writes `<base>.log.cleaned` and `<base>.log.swap`
//! beside the segment). Offsets increase strictly from batch to batch, gaps allowed; the first
//! batch's base offset is ≥ the segment's base offset and every offset of the segment is below
//! `base + 2^31` (relative offsets fit the index's 4-byte field). A segment never exceeds
//! `segment_bytes` (≤ `i32::MAX`, so positions fit 4 bytes).
//!
//! # `.index` (offset index), 8-byte entries, big-endian, as Kafka's `OffsetIndex`
//! | size | field |
//! |-----:|-------|
//! | 4 | relative offset: last offset of the batch − segment base offset |
//! | 4 | position of that batch in `.log` |
//!
//! # `.timeindex` (time index), 12-byte entries, big-endian, as Kafka's `TimeIndex`
//! | size | field |
//! |-----:|-------|
//! | 8 | largest timestamp seen in the segment so far |
//! | 4 | relative offset of the batch (its last offset) that first reached that timestamp |
//!
//! Entries are sparse (Kafka's rule): when more than `index_interval_bytes` of log were appended
//! since the last entry, the batch being appended gets an offset-index entry, and a time-index
//! entry if the segment's max timestamp grew since the last one. When the segment becomes
//! inactive (roll, close) a final time-index entry records the segment's max timestamp.
//! Offset-index entries strictly increase in both fields; time-index entries strictly increase
//! in timestamp and never decrease in offset.
//!
//! # File handles
//! A segment holds no open file of its own: its `.log` handle lives in the process-wide cache
//! of open segment files (`open_files.rs`, bounded by `RLIMIT_NOFILE`), reached through a
//! [`SegmentFile`], and is opened again on use after an eviction. The index files are never
//! held open: they are read whole on load and written whole on seal. Before a segment's files
//! are deleted or replaced, [`Segment::retire`] closes the cached handle for good.
//!
//! # Direct appends
//! In direct mode (the broker's default when every append is fsync'd before its ack; see
//! `direct_io.rs` for why), the active segment has a [`Tail`]: the bytes from the block that
//! holds the file's end onwards live in a block-aligned buffer, and appends copy into it. The
//! buffer is written to the file with `O_DIRECT`, whole blocks from the block boundary at or
//! below the end of what the file already holds, when the flusher prepares an fsync
//! ([`Segment::write_out`], under the partition lock, so writes reach the file in order), when
//! it would grow past `TAIL_BYTES_MAX` (or all tails together past their budget), and before
//! anything that needs the file itself (seal, truncation, a log-dir move's last pass). Reads
//! of the segment under the lock serve bytes past the written prefix from the tail
//! ([`Segment::read_at`]); fetches never need them, since they read below the high watermark,
//! which only the fsync of written bytes moves. After a write only the last partial block is
//! kept (a copy of what the file now holds, needed again for the next write), so a partition
//! between flushes holds less than a block; an idle one holds none: the block is not read at
//! open, and is dropped once a partition took no append between two calls of
//! [`Segment::release_idle_tail`] (the broker's checkpoint task); the next append reads it back
//! from the file (less than a block, one `pread`). Sealing writes the tail out and cuts the
//! zero padding after the last batch; after a crash, recovery drops that padding as the end of the log.
//!
//! # Crash policy
//! The index contents live in memory (`Vec`s); the files are written whole, without fsync,
//! when the segment becomes inactive (roll), on close, and after recovery rebuilt them. They are
//! a cache: on open they are checked (whole entries, monotonic, positions inside the log, the
//! last entry pointing at a batch that ends at that offset) and rebuilt by scanning the log when
//! anything is off. Segments holding offsets at or above the recovery point are always scanned
//! batch by batch with CRC checks and truncated at the first bad batch.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::direct_io::{self, AlignedBuf, TailBytes, BLOCK_BYTES};
use crate::open_files::{OpenFiles, SegmentFile};

use runnel_protocol::record_batch::{BatchHeader, BATCH_HEADER_SIZE};

use crate::error::LogError;

mod resume;
mod txn_index;

pub use txn_index::{
    decode_entries, encode_entries, AbortedTxn, ABORTED_TXN_ENTRY_SIZE, ABORTED_TXN_VERSION,
    TXN_INDEX_SUFFIX,
};

/// Bytes per offset-index entry.
pub const OFFSET_INDEX_ENTRY_SIZE: usize = 8;
/// Bytes per time-index entry.
pub const TIME_INDEX_ENTRY_SIZE: usize = 12;
pub const LOG_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Suffix of a segment being written by the cleaner (`<base>.log.cleaned`); deleted on open.
pub const CLEANED_SUFFIX: &str = ".log.cleaned";
/// Suffix of a cleaned segment ready to replace the segments it covers (`<base>.log.swap`);
/// completed on open (see `partition_log/compaction.rs`).
pub const SWAP_SUFFIX: &str = ".log.swap";

/// Byte offset of the attributes field in a batch header, where the CRC's coverage starts.
const ATTRIBUTES_AT: usize = 21;

/// Checks one whole stored batch, exactly `bytes.len()` long: header, extent, CRC and the
/// counts. Looser than the producer-side `validate_batch` in one way, which compaction needs:
/// a batch may hold fewer records than its offset range (offsets removed by the cleaner), and
/// may hold none at all (the cleaner keeps an idempotent producer's last batch header).
pub fn validate_stored_batch(bytes: &[u8]) -> Result<BatchHeader, String> {
    let header = BatchHeader::parse(bytes).map_err(|e| e.to_string())?;
    if header.size_bytes() != bytes.len() {
        return Err(format!(
            "batch length {} does not match its {} bytes",
            header.size_bytes(),
            bytes.len()
        ));
    }
    let computed = crc32c::crc32c(&bytes[ATTRIBUTES_AT..]);
    if computed != header.crc {
        return Err(format!(
            "record batch CRC mismatch: stored {:#010x}, computed {computed:#010x}",
            header.crc
        ));
    }
    if header.records_count < 0 || header.last_offset_delta < 0 {
        return Err("negative records count or last offset delta".to_string());
    }
    if i64::from(header.records_count) > i64::from(header.last_offset_delta) + 1 {
        return Err("more records than offsets".to_string());
    }
    if header.records_count == 0 && !header.is_control() && !header.has_producer_id() {
        return Err("empty record batch without a producer id".to_string());
    }
    Ok(header)
}

/// Parses a 20-digit zero-padded offset (a segment or snapshot file stem).
pub fn parse_base_offset(stem: &str) -> Option<i64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// `<dir>/<20-digit base><suffix>`.
pub fn segment_file_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// One offset-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// Why recovery cut a segment short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub position: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

/// The active segment's appends in direct mode (see "Direct appends" in the module doc).
#[derive(Debug)]
struct Tail {
    /// Block-aligned file position of the first byte held.
    start: u64,
    /// The log's bytes `[start, size)` while some of them are not in the file yet.
    buf: Option<AlignedBuf>,
    /// The log's bytes `[start, size)`, less than a block and already in the file, while
    /// `buf` is `None`: the partial block the next write sends again. `None` when not in
    /// memory (not read since the open, or released while idle): the file holds it.
    partial: Option<Vec<u8>>,
    /// Whether anything was appended since the last [`Segment::release_idle_tail`].
    appended_since_release: bool,
    /// The file holds the log's bytes `[0, written)`, and up to a block of zeros after them.
    written: u64,
    /// The offset after the last batch the file holds.
    written_next_offset: i64,
    /// False once the filesystem refused `O_DIRECT`: buffered writes from then on.
    direct: bool,
    /// About what the tail held at its recent write-outs: a new buffer starts this large, so
    /// that a partition's steady flow between two flushes fills one buffer without growing
    /// (each growth copies what is held; the profile showed it as 7% of broker CPU).
    recent_bytes: usize,
}

impl Tail {
    /// The log's bytes from `start` to the segment's end, when in memory (else the file
    /// holds all of them).
    fn held(&self) -> Option<&[u8]> {
        match &self.buf {
            Some(buf) => Some(buf.as_slice()),
            None => self.partial.as_deref(),
        }
    }

    /// Replaces the buffer, keeping the process-wide count of tail bytes right.
    fn set_buf(&mut self, buf: Option<AlignedBuf>) {
        if let Some(new) = &buf {
            TailBytes::add(new.capacity());
        }
        if let Some(old) = std::mem::replace(&mut self.buf, buf) {
            TailBytes::sub(old.capacity());
            direct_io::give_back(old);
        }
    }
}

impl Clone for Tail {
    fn clone(&self) -> Tail {
        let mut tail = Tail {
            start: self.start,
            buf: None,
            partial: self.partial.clone(),
            appended_since_release: self.appended_since_release,
            written: self.written,
            written_next_offset: self.written_next_offset,
            direct: self.direct,
            recent_bytes: self.recent_bytes,
        };
        if let Some(buf) = &self.buf {
            let mut copy = direct_io::take_buffer(buf.len());
            copy.extend_from_slice(buf.as_slice());
            tail.set_buf(Some(copy));
        }
        tail
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.set_buf(None);
    }
}

/// A segment: its log file, in-memory indexes and the facts derived from its batches.
///
/// A clone shares the cached file: compaction reads a sealed segment's clone without the
/// partition's lock (a sealed segment's bytes never change; it is only ever replaced whole).
#[derive(Debug, Clone)]
pub struct Segment {
    base_offset: i64,
    dir: PathBuf,
    log_path: PathBuf,
    file: SegmentFile,
    /// A handle this copy keeps open whatever the cache does ([`Segment::pinned`]).
    pinned: Option<Arc<File>>,
    size_bytes: u64,
    next_offset: i64,
    /// Shared with clones (see the type's doc); copied on write, which only the active
    /// segment, never cloned, does in practice.
    offset_index: Arc<Vec<OffsetEntry>>,
    time_index: Arc<Vec<TimeEntry>>,
    bytes_since_last_index_entry: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// When the first batch was appended in this process (or when the segment was opened, if
    /// it held data): `segment.ms` counts from here.
    pub(crate) rolling_started_ms: Option<i64>,
    /// Whether the directory entry of this segment's files is known durable.
    pub(crate) dir_entry_synced: bool,
    /// Direct mode: the appends not yet written, and the partial last block.
    tail: Option<Box<Tail>>,
    /// How many offset-index and time-index entries the index files hold exactly as in
    /// memory, and nothing else: [`Segment::write_index_updates`] appends only the entries
    /// after them. `None` when the files may hold entries memory does not (stale ones, after a
    /// recovery or a truncation): they are rewritten whole.
    index_entries_in_files: Option<(usize, usize)>,
    /// The aborted transactions whose markers lie here (`segment/txn_index.rs`).
    txn_index: txn_index::TxnIndex,
}

/// Creates (or empties) a segment's `.log` file at `path`, through the open-files cache.
fn create_empty_log_file(path: &Path) -> Result<File, LogError> {
    OpenFiles::global()
        .open_file(
            path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true),
        )
        .map_err(LogError::io("create", path))
}

impl Segment {
    /// Creates a new empty segment (empty `.log`, `.index`, `.timeindex`), replacing files of
    /// the same name; a stale `.txnindex` of that name is removed (Kafka's roll does the same).
    pub fn create(dir: &Path, base_offset: i64) -> Result<Segment, LogError> {
        let log_path = segment_file_path(dir, base_offset, LOG_SUFFIX);
        let file = create_empty_log_file(&log_path)?;
        remove_if_present(&segment_file_path(dir, base_offset, TXN_INDEX_SUFFIX))?;
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = segment_file_path(dir, base_offset, suffix);
            File::create(&path).map_err(LogError::io("create", &path))?;
        }
        let mut segment = Segment::empty(dir, base_offset, log_path, file);
        segment.dir_entry_synced = false;
        segment.index_entries_in_files = Some((0, 0));
        Ok(segment)
    }

    /// Creates an empty segment written to `<base>.log.cleaned` (the cleaner's output), without
    /// index files: they are written by [`Segment::seal`] once the file is renamed to `.log`.
    pub(crate) fn create_cleaned(dir: &Path, base_offset: i64) -> Result<Segment, LogError> {
        let log_path = segment_file_path(dir, base_offset, CLEANED_SUFFIX);
        let file = create_empty_log_file(&log_path)?;
        let mut segment = Segment::empty(dir, base_offset, log_path, file);
        segment.dir_entry_synced = false;
        Ok(segment)
    }

    /// Records that the segment's file was renamed to `path` (the open handle stays valid).
    pub(crate) fn set_log_path(&mut self, path: PathBuf) {
        self.file.set_path(path.clone());
        self.log_path = path;
    }

    /// Closes the segment's cached handle for good, before its files are deleted or replaced:
    /// a clone still holding the segment then fails to read instead of opening whatever file
    /// has the name later. Handles in use (a fetch's range) stay valid.
    pub fn retire(&self) {
        self.file.retire();
    }

    fn empty(dir: &Path, base_offset: i64, log_path: PathBuf, file: File) -> Segment {
        let file = OpenFiles::global().insert(log_path.clone(), file);
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            log_path,
            file,
            pinned: None,
            size_bytes: 0,
            next_offset: base_offset,
            offset_index: Arc::new(Vec::new()),
            time_index: Arc::new(Vec::new()),
            bytes_since_last_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            rolling_started_ms: None,
            dir_entry_synced: true,
            tail: None,
            index_entries_in_files: None,
            txn_index: txn_index::TxnIndex::default(),
        }
    }

    fn open_log(dir: &Path, base_offset: i64) -> Result<(Segment, u64), LogError> {
        let log_path = segment_file_path(dir, base_offset, LOG_SUFFIX);
        let file = OpenFiles::global()
            .open_file(&log_path, OpenOptions::new().read(true).write(true))
            .map_err(LogError::io("open", &log_path))?;
        let len = file
            .metadata()
            .map_err(LogError::io("stat", &log_path))?
            .len();
        Ok((Segment::empty(dir, base_offset, log_path, file), len))
    }

    /// Opens an existing segment scanning every batch with CRC and continuity checks (the
    /// recovery path). The log is truncated (and fsynced) at the first bad batch; the indexes
    /// are rebuilt. `previous_last_offset` is the last offset of the previous segment, if any.
    /// `on_batch` sees every valid batch header in order.
    pub fn recover(
        dir: &Path,
        base_offset: i64,
        previous_last_offset: Option<i64>,
        index_interval_bytes: u64,
        on_batch: impl FnMut(&BatchHeader),
    ) -> Result<(Segment, Option<Truncation>), LogError> {
        let (segment, damage) = Segment::scan(
            dir,
            base_offset,
            previous_last_offset,
            index_interval_bytes,
            on_batch,
        )?;
        if damage.is_some() {
            segment.truncate_file_to_size()?;
        }
        Ok((segment, damage))
    }

    /// [`Segment::recover`] without touching the file: the segment holds the valid prefix of
    /// its log (its size and next offset stop before the first bad batch), and the returned
    /// [`Truncation`] says where the prefix ends and how many bytes of the file lie beyond it.
    /// For damage found below the recovery point, which is reported and kept, not cut away.
    pub fn scan(
        dir: &Path,
        base_offset: i64,
        previous_last_offset: Option<i64>,
        index_interval_bytes: u64,
        on_batch: impl FnMut(&BatchHeader),
    ) -> Result<(Segment, Option<Truncation>), LogError> {
        let (mut segment, file_len, expected_min) =
            Segment::open_for_scan(dir, base_offset, previous_last_offset)?;
        let damage = segment.scan_whole(expected_min, file_len, index_interval_bytes, on_batch);
        segment.finish_scan(damage, file_len)
    }

    /// Opens the segment for a recovery scan: the segment, its file's length, and the lowest
    /// offset its first batch may hold. The scan reads through one handle held for its whole
    /// length: an eviction, or an open failing with EMFILE, in the middle of it must not look
    /// like a bad batch (and cut the log there).
    fn open_for_scan(
        dir: &Path,
        base_offset: i64,
        previous_last_offset: Option<i64>,
    ) -> Result<(Segment, u64, i64), LogError> {
        let (mut segment, file_len) = Segment::open_log(dir, base_offset)?;
        segment.pinned = Some(segment.file()?);
        let expected_min = previous_last_offset
            .map_or(base_offset, |last| last + 1)
            .max(base_offset);
        Ok((segment, file_len, expected_min))
    }

    /// Scans every batch from the start of the file, trusting no index entry.
    fn scan_whole(
        &mut self,
        expected_min: i64,
        file_len: u64,
        index_interval_bytes: u64,
        on_batch: impl FnMut(&BatchHeader),
    ) -> Option<Truncation> {
        self.index_entries_in_files = self.index_files_empty().then_some((0, 0));
        self.scan_batches(0, expected_min, file_len, index_interval_bytes, on_batch)
    }

    /// Whether both index files are missing or empty (then they hold nothing stale).
    fn index_files_empty(&self) -> bool {
        [INDEX_SUFFIX, TIME_INDEX_SUFFIX].iter().all(|suffix| {
            fs::metadata(segment_file_path(&self.dir, self.base_offset, suffix))
                .map_or(true, |m| m.len() == 0)
        })
    }

    /// Writes the index files whole when they may hold entries memory does not (after a
    /// recovery scan, a truncation): a later recovery must not find stale entries there.
    pub(crate) fn write_index_files_if_stale(&mut self) -> Result<(), LogError> {
        if self.index_entries_in_files.is_none() {
            self.write_index_files()?;
        }
        Ok(())
    }

    /// The end of a scan: a cut at the zero padding of a direct write is no damage (the
    /// padding is cut from the file); the pinned handle is let go.
    fn finish_scan(
        mut self,
        mut damage: Option<Truncation>,
        file_len: u64,
    ) -> Result<(Segment, Option<Truncation>), LogError> {
        let segment = &mut self;
        if damage
            .as_ref()
            .is_some_and(|cut| segment.is_zero_padding(cut, file_len))
        {
            // The zeros a direct write pads its last block with: the log ends here. Cut
            // them so that the file ends at its last batch again.
            tracing::debug!(path = %segment.log_path.display(), "dropping the zero padding of direct appends");
            segment.truncate_file_to_size()?;
            damage = None;
        }
        self.pinned = None;
        Ok((self, damage))
    }

    /// Whether the bytes a scan stopped at are the zero padding after the last batch of a
    /// direct write (less than a block, all zeros, up to the end of the file) rather than a
    /// torn or corrupt batch.
    fn is_zero_padding(&self, cut: &Truncation, file_len: u64) -> bool {
        if cut.bytes_dropped == 0 || cut.bytes_dropped >= BLOCK_BYTES as u64 {
            return false;
        }
        if !file_len.is_multiple_of(BLOCK_BYTES as u64)
            || cut.position + cut.bytes_dropped != file_len
        {
            return false;
        }
        let mut bytes = vec![0u8; cut.bytes_dropped as usize];
        let read = self
            .file()
            .ok()
            .and_then(|file| file.read_exact_at(&mut bytes, cut.position).ok());
        read.is_some() && bytes.iter().all(|&b| b == 0)
    }

    /// The batch walk of [`Segment::scan`], from `position` (where the segment's facts end)
    /// with batches' base offsets at least `expected_min`: indexes every valid batch and
    /// returns where the first bad one is, if any.
    fn scan_batches(
        &mut self,
        mut position: u64,
        mut expected_min: i64,
        file_len: u64,
        index_interval_bytes: u64,
        mut on_batch: impl FnMut(&BatchHeader),
    ) -> Option<Truncation> {
        let segment = self;
        debug_assert_eq!(segment.size_bytes, position);
        while position < file_len {
            match segment.read_valid_batch(position, file_len, expected_min) {
                Ok(header) => {
                    segment.index_batch(&header, position, index_interval_bytes);
                    on_batch(&header);
                    expected_min = header.last_offset() + 1;
                    position += header.size_bytes() as u64;
                }
                Err(reason) => {
                    debug_assert_eq!(segment.size_bytes, position);
                    return Some(Truncation {
                        position,
                        bytes_dropped: file_len - position,
                        reason,
                    });
                }
            }
        }
        debug_assert_eq!(segment.size_bytes, position);
        None
    }

    /// Cuts the log file to the segment's size (the valid prefix) and fsyncs it.
    pub(crate) fn truncate_file_to_size(&self) -> Result<(), LogError> {
        debug_assert!(self.tail.as_ref().is_none_or(|t| t.buf.is_none()));
        let file = self.file()?;
        file.set_len(self.size_bytes)
            .map_err(LogError::io("truncate", &self.log_path))?;
        file.sync_all()
            .map_err(LogError::io("fsync", &self.log_path))
    }

    /// Makes the segment serve only its first `position` bytes, ending at `next_offset` (in
    /// memory only: the file keeps its bytes). For a sealed segment found damaged at
    /// `position`, so that walks from batch to batch never reach the damage.
    pub(crate) fn limit_to(&mut self, position: u64, next_offset: i64) {
        if position < self.size_bytes {
            self.size_bytes = position;
            self.next_offset = next_offset.clamp(self.base_offset, self.next_offset);
        }
    }

    /// Reads the batch at `position` and checks it whole (extent, CRC, counts): the
    /// scrubber's check of a sealed segment. `Err` is the reason the batch is damaged; the
    /// caller reads through a [`Segment::pinned`] copy, so that a handle that cannot be
    /// (re)opened is an I/O error of its own, not damage.
    pub fn verify_batch(&self, position: u64) -> Result<BatchHeader, String> {
        self.read_valid_batch(position, self.size_bytes, i64::MIN)
    }

    /// Reads and fully validates the batch at `position`; `Err` is the reason to truncate.
    fn read_valid_batch(
        &self,
        position: u64,
        file_len: u64,
        expected_min: i64,
    ) -> Result<BatchHeader, String> {
        let header = self
            .read_header(position, file_len)
            .map_err(|e| e.to_string())?;
        let size = header.size_bytes() as u64;
        let mut bytes = vec![0u8; size as usize];
        self.read_at(&mut bytes, position)
            .map_err(|e| format!("read failed: {e}"))?;
        let header = validate_stored_batch(&bytes)?;
        if header.base_offset < expected_min {
            return Err(format!(
                "non-contiguous batch: base offset {} below expected {expected_min}",
                header.base_offset
            ));
        }
        if header.last_offset() - self.base_offset > i64::from(i32::MAX) {
            return Err(format!(
                "offset {} does not fit the segment's relative offsets",
                header.last_offset()
            ));
        }
        Ok(header)
    }

    /// Opens an existing segment trusting its data (below the recovery point): loads and checks
    /// the index files and walks batch headers after the last index entry. Returns `None` when
    /// anything is inconsistent; the caller then recovers the segment instead.
    pub fn load(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
    ) -> Result<Option<Segment>, LogError> {
        let (mut segment, file_len) = Segment::open_log(dir, base_offset)?;
        if file_len > i32::MAX as u64 {
            return Ok(None);
        }
        let Some(offset_index) = read_offset_index(dir, base_offset, file_len)? else {
            return Ok(None);
        };
        let Some(time_index) = read_time_index(dir, base_offset)? else {
            return Ok(None);
        };
        let mut position = 0u64;
        if let Some(last) = offset_index.last() {
            position = u64::from(last.position);
            let Ok(header) = segment.read_header(position, file_len) else {
                return Ok(None);
            };
            if header.last_offset() != base_offset + i64::from(last.relative_offset) {
                return Ok(None);
            }
        }
        if let Some(last) = time_index.last() {
            segment.max_timestamp = last.timestamp;
            segment.offset_of_max_timestamp = base_offset + i64::from(last.relative_offset);
        }
        segment.index_entries_in_files = Some((offset_index.len(), time_index.len()));
        segment.offset_index = Arc::new(offset_index);
        segment.time_index = Arc::new(time_index);
        let resumed = position;
        while position < file_len {
            let Ok(header) = segment.read_header(position, file_len) else {
                return Ok(None);
            };
            if header.base_offset < segment.next_offset
                || header.last_offset() - base_offset > i64::from(i32::MAX)
            {
                return Ok(None);
            }
            if position == resumed && !segment.offset_index.is_empty() {
                // The batch of the last entry: already indexed.
                segment.note_batch(&header, position);
                segment.bytes_since_last_index_entry = header.size_bytes() as u64;
            } else {
                segment.index_batch(&header, position, index_interval_bytes);
            }
            position += header.size_bytes() as u64;
        }
        if segment
            .time_index
            .last()
            .is_some_and(|e| i64::from(e.relative_offset) + base_offset >= segment.next_offset)
        {
            return Ok(None);
        }
        Ok(Some(segment))
    }

    /// Records a batch's effect on the segment's facts (size, next offset, max timestamp).
    fn note_batch(&mut self, header: &BatchHeader, position: u64) {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        self.next_offset = header.last_offset() + 1;
        self.size_bytes = position + header.size_bytes() as u64;
    }

    /// Kafka's sparse indexing rule for a batch placed at `position`.
    fn index_batch(&mut self, header: &BatchHeader, position: u64, index_interval_bytes: u64) {
        self.note_batch(header, position);
        if self.bytes_since_last_index_entry > index_interval_bytes {
            let entry = OffsetEntry {
                relative_offset: self.relative(header.last_offset()),
                position: position as u32,
            };
            Arc::make_mut(&mut self.offset_index).push(entry);
            self.maybe_append_time_entry();
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += header.size_bytes() as u64;
    }

    fn maybe_append_time_entry(&mut self) {
        if self.max_timestamp >= 0
            && self
                .time_index
                .last()
                .is_none_or(|e| self.max_timestamp > e.timestamp)
        {
            let entry = TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: self.relative(self.offset_of_max_timestamp),
            };
            Arc::make_mut(&mut self.time_index).push(entry);
        }
    }

    fn relative(&self, offset: i64) -> u32 {
        let relative = offset - self.base_offset;
        assert!(
            (0..=i64::from(i32::MAX)).contains(&relative),
            "offset {offset} outside segment {}",
            self.base_offset
        );
        relative as u32
    }

    /// Appends one batch (already patched) at the end of the log: to the page cache, or in
    /// direct mode to the tail (written out when full). On a write error the file is cut back
    /// to its previous size (buffered) or the tail keeps what it held (direct).
    pub fn append(
        &mut self,
        batch: &[u8],
        header: &BatchHeader,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        assert!(
            header.base_offset >= self.next_offset,
            "offsets must increase"
        );
        let position = self.size_bytes;
        if let Some(mut tail) = self.tail.take() {
            let appended = self.append_to_tail(&mut tail, batch);
            self.tail = Some(tail);
            appended?;
        } else {
            let file = self.file()?;
            if let Err(source) = file.write_all_at(batch, position) {
                let _ = file.set_len(position);
                return Err(LogError::Io {
                    op: "write",
                    path: self.log_path.clone(),
                    source,
                });
            }
        }
        self.index_batch(header, position, index_interval_bytes);
        self.rolling_started_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// Marks the segment inactive: writes a direct tail out and cuts its padding (the segment
    /// leaves direct mode), adds the final time-index entry and writes the index files.
    pub fn seal(&mut self) -> Result<(), LogError> {
        self.leave_direct_mode()?;
        self.maybe_append_time_entry();
        self.write_index_files()
    }

    /// Writes the tail out, cuts the zero padding after the last batch, and drops the tail.
    /// The cut is made durable by the next fsync of the file (the flusher's or close's).
    pub fn leave_direct_mode(&mut self) -> Result<(), LogError> {
        if self.tail.is_none() {
            return Ok(());
        }
        self.write_out()?;
        self.file()?
            .set_len(self.size_bytes)
            .map_err(LogError::io("truncate", &self.log_path))?;
        self.tail = None;
        Ok(())
    }

    /// Writes both index files whole from memory (no fsync: they are a cache).
    pub fn write_index_files(&mut self) -> Result<(), LogError> {
        // The time index first (see `segment/resume.rs`).
        let path = segment_file_path(&self.dir, self.base_offset, TIME_INDEX_SUFFIX);
        fs::write(&path, encode_time_entries(&self.time_index))
            .map_err(LogError::io("write", &path))?;
        let path = segment_file_path(&self.dir, self.base_offset, INDEX_SUFFIX);
        fs::write(&path, encode_offset_entries(&self.offset_index))
            .map_err(LogError::io("write", &path))?;
        self.index_entries_in_files = Some((self.offset_index.len(), self.time_index.len()));
        Ok(())
    }

    /// Reads and parses the batch header at `position`, checking that the batch ends within
    /// `end` (no CRC check).
    pub fn read_header(&self, position: u64, end: u64) -> Result<BatchHeader, LogError> {
        let corrupt = |reason: String| LogError::Corrupt {
            path: self.log_path.clone(),
            reason,
        };
        if position + BATCH_HEADER_SIZE as u64 > end {
            return Err(corrupt(format!("torn batch header at position {position}")));
        }
        let mut bytes = [0u8; BATCH_HEADER_SIZE];
        self.read_at(&mut bytes, position)?;
        let header = BatchHeader::parse(&bytes)
            .map_err(|e| corrupt(format!("at position {position}: {e}")))?;
        if position + header.size_bytes() as u64 > end {
            return Err(corrupt(format!("torn batch at position {position}")));
        }
        Ok(header)
    }

    /// Reads the whole batch at `position`.
    pub fn read_batch(&self, position: u64, header: &BatchHeader) -> Result<Vec<u8>, LogError> {
        let mut bytes = vec![0u8; header.size_bytes()];
        self.read_at(&mut bytes, position)?;
        Ok(bytes)
    }

    /// Reads `out.len()` bytes of the log at `position`: from the file, and past what the file
    /// holds from the tail (direct mode). The range must lie within the segment's size.
    pub fn read_at(&self, out: &mut [u8], position: u64) -> Result<(), LogError> {
        let read_error = LogError::io("read", &self.log_path);
        let end = position + out.len() as u64;
        let mut from_file = out;
        // A tail whose bytes are not in memory has them all in the file.
        let tail = self.tail.as_deref().filter(|t| end > t.start);
        if let Some((tail, held)) = tail.and_then(|t| t.held().map(|held| (t, held))) {
            let first = position.max(tail.start);
            let (lo, hi) = ((first - tail.start) as usize, (end - tail.start) as usize);
            if hi > held.len() {
                return Err(read_error(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let split = (first - position) as usize;
            let (file_part, tail_part) = from_file.split_at_mut(split);
            tail_part.copy_from_slice(&held[lo..hi]);
            from_file = file_part;
        }
        if from_file.is_empty() {
            return Ok(());
        }
        self.file()?
            .read_exact_at(from_file, position)
            .map_err(read_error)
    }

    /// Puts the segment in direct mode (see "Direct appends" in the module doc): later appends
    /// gather in a tail written with `O_DIRECT`. The partial last block, which the first write
    /// sends again, is read back by the first append, not here.
    pub fn enable_direct_appends(&mut self) -> Result<(), LogError> {
        if self.tail.is_some() {
            return Ok(());
        }
        self.tail = Some(Box::new(Tail {
            start: direct_io::block_start(self.size_bytes),
            buf: None,
            partial: None,
            appended_since_release: false,
            written: self.size_bytes,
            written_next_offset: self.next_offset,
            direct: true,
            recent_bytes: 0,
        }));
        Ok(())
    }

    /// Drops the partial last block of an idle direct tail (see "Direct appends" in the module
    /// doc): when nothing was appended since the last call and nothing waits to be written.
    pub fn release_idle_tail(&mut self) {
        if let Some(tail) = self.tail.as_deref_mut() {
            if tail.buf.is_none() && !tail.appended_since_release {
                tail.partial = None;
            }
            tail.appended_since_release = false;
        }
    }

    /// Whether appends wait in a tail not yet written to the file.
    pub fn has_unwritten_appends(&self) -> bool {
        self.tail.as_ref().is_some_and(|t| t.buf.is_some())
    }

    /// How much of the log the file holds: the segment's size, less a tail not yet written.
    pub fn file_bytes(&self) -> u64 {
        self.tail.as_ref().map_or(self.size_bytes, |t| t.written)
    }

    /// The offset after the last batch the file holds: the next offset, less a tail not yet
    /// written.
    pub fn file_next_offset(&self) -> i64 {
        self.tail
            .as_ref()
            .map_or(self.next_offset, |t| t.written_next_offset)
    }

    /// Writes the tail's unwritten appends to the file (direct mode; nothing otherwise). On
    /// error nothing is lost: the tail keeps them and a later call writes them again.
    pub fn write_out(&mut self) -> Result<(), LogError> {
        let Some(mut tail) = self.tail.take() else {
            return Ok(());
        };
        let result = self.write_tail(&mut tail);
        self.tail = Some(tail);
        result
    }

    fn write_tail(&self, tail: &mut Tail) -> Result<(), LogError> {
        let Some(buf) = tail.buf.as_mut() else {
            return Ok(());
        };
        let write_error = LogError::io("write", &self.log_path);
        if tail.direct {
            match direct_io::write_at(&self.log_path, buf.padded(), tail.start) {
                Ok(()) => {}
                Err(error) if direct_io::is_refusal(&error) => {
                    tracing::info!(path = %self.log_path.display(), %error,
                        "the filesystem refuses O_DIRECT; appends to this segment are buffered");
                    direct_io::STATS
                        .refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tail.direct = false;
                }
                Err(error) => return Err(write_error(error)),
            }
        }
        if !tail.direct {
            self.file()?
                .write_all_at(buf.as_slice(), tail.start)
                .map_err(write_error)?;
        }
        let end = tail.start + buf.len() as u64;
        tail.recent_bytes = buf.len().max(tail.recent_bytes / 2);
        let keep_from = (direct_io::block_start(end) - tail.start) as usize;
        let mut partial = tail.partial.take().unwrap_or_default();
        partial.clear();
        partial.extend_from_slice(&buf.as_slice()[keep_from..]);
        tail.partial = Some(partial);
        tail.start = direct_io::block_start(end);
        tail.written = end;
        tail.written_next_offset = self.next_offset;
        tail.set_buf(None);
        Ok(())
    }

    /// Copies `batch` to the end of the tail, writing the tail out first when it is full.
    fn append_to_tail(&self, tail: &mut Tail, batch: &[u8]) -> Result<(), LogError> {
        tail.appended_since_release = true;
        if let Some(held) = tail.buf.as_ref().map(AlignedBuf::len) {
            if held + batch.len() > direct_io::TAIL_BYTES_MAX || TailBytes::over_budget() {
                self.write_tail(tail)?;
            }
        }
        if tail.held().is_none() {
            // Not in memory: the file holds `[start, size)` (nothing waits to be written).
            let mut partial = vec![0u8; (self.size_bytes - tail.start) as usize];
            if !partial.is_empty() {
                self.file()?
                    .read_exact_at(&mut partial, tail.start)
                    .map_err(LogError::io("read", &self.log_path))?;
            }
            tail.partial = Some(partial);
        }
        let needed = tail.held().map_or(0, <[u8]>::len) + batch.len();
        match tail.buf.as_mut() {
            Some(buf) if buf.capacity() - buf.len() >= batch.len() => buf.extend_from_slice(batch),
            _ => {
                let hint = tail.recent_bytes.min(direct_io::TAIL_BYTES_MAX);
                let mut grown = direct_io::take_buffer(needed.max(hint));
                grown.extend_from_slice(tail.held().unwrap_or_default());
                grown.extend_from_slice(batch);
                tail.partial = None;
                tail.set_buf(Some(grown));
            }
        }
        Ok(())
    }

    /// Position to start scanning for `offset`: the batch of the last index entry at or below
    /// it, else the start of the segment.
    fn lookup_position(&self, offset: i64) -> u64 {
        let relative = offset - self.base_offset;
        let found = self
            .offset_index
            .partition_point(|e| i64::from(e.relative_offset) <= relative);
        if found == 0 {
            0
        } else {
            u64::from(self.offset_index[found - 1].position)
        }
    }

    /// The first batch whose last offset is ≥ `offset`, with its position; `None` when the
    /// segment holds no such batch.
    pub fn translate_offset(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        self.scan_from(self.lookup_position(offset), |header| {
            header.last_offset() >= offset
        })
    }

    /// Walks batch headers from `position` to the end; returns the first matching `found`.
    pub fn scan_from(
        &self,
        mut position: u64,
        mut found: impl FnMut(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        while position < self.size_bytes {
            let header = self.read_header(position, self.size_bytes)?;
            if found(&header) {
                return Ok(Some((position, header)));
            }
            position += header.size_bytes() as u64;
        }
        Ok(None)
    }

    /// Where a read starting with the batch at `start` (header `first`) ends: whole batches,
    /// last offsets below `max_offset`, at most `max_bytes` unless `min_one_batch` lets the
    /// first batch through alone. Returns (end position, offset after the last batch read).
    pub fn read_extent(
        &self,
        start: u64,
        first: &BatchHeader,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<(u64, i64), LogError> {
        let first_size = first.size_bytes() as u64;
        if first.last_offset() >= max_offset || (first_size > max_bytes as u64 && !min_one_batch) {
            return Ok((start, first.base_offset));
        }
        let limit = start.saturating_add((max_bytes as u64).max(first_size));
        let mut end = start + first_size;
        // Skip ahead with the index: every batch before an entry's position ends there and has
        // offsets below the entry's.
        let usable = self.offset_index.partition_point(|e| {
            u64::from(e.position) <= limit
                && self.base_offset + i64::from(e.relative_offset) < max_offset
        });
        if usable > 0 {
            end = end.max(u64::from(self.offset_index[usable - 1].position));
        }
        while end < self.size_bytes {
            let header = self.read_header(end, self.size_bytes)?;
            if header.last_offset() >= max_offset || end + header.size_bytes() as u64 > limit {
                return Ok((end, header.base_offset));
            }
            end += header.size_bytes() as u64;
        }
        Ok((end, self.next_offset))
    }

    /// Where to start scanning for the first batch with max timestamp ≥ `timestamp`: the time
    /// index's last entry at or below it says no earlier batch can match.
    pub fn timestamp_scan_start(&self, timestamp: i64) -> u64 {
        let found = self
            .time_index
            .partition_point(|e| e.timestamp <= timestamp);
        if found == 0 {
            0
        } else {
            self.lookup_position(
                self.base_offset + i64::from(self.time_index[found - 1].relative_offset),
            )
        }
    }

    /// Every batch header (position, header) of the segment with base offset below `end_offset`.
    pub fn headers_below(&self, end_offset: i64) -> Result<Vec<(u64, BatchHeader)>, LogError> {
        let mut headers = Vec::new();
        let mut position = 0;
        while position < self.size_bytes {
            let header = self.read_header(position, self.size_bytes)?;
            if header.base_offset >= end_offset {
                break;
            }
            headers.push((position, header));
            position += header.size_bytes() as u64;
        }
        Ok(headers)
    }

    /// Walks headers from the batch containing `from_offset` to the end, calling `f` on each.
    pub fn for_each_header_from(
        &self,
        from_offset: i64,
        mut f: impl FnMut(&BatchHeader),
    ) -> Result<(), LogError> {
        let Some((mut position, _)) = self.translate_offset(from_offset)? else {
            return Ok(());
        };
        while position < self.size_bytes {
            let header = self.read_header(position, self.size_bytes)?;
            f(&header);
            position += header.size_bytes() as u64;
        }
        Ok(())
    }

    /// Removes every batch from the one containing `offset` on (whole batches: the log may end
    /// below `offset`), fsyncs, and rebuilds the indexes by walking the remaining headers.
    pub fn truncate_to(&mut self, offset: i64, index_interval_bytes: u64) -> Result<(), LogError> {
        let Some((position, _)) = self.translate_offset(offset)? else {
            return Ok(());
        };
        let direct = self.tail.is_some();
        self.leave_direct_mode()?;
        let file = self.file()?;
        file.set_len(position)
            .map_err(LogError::io("truncate", &self.log_path))?;
        file.sync_all()
            .map_err(LogError::io("fsync", &self.log_path))?;
        let old_size = self.size_bytes;
        self.size_bytes = position;
        let headers = self.headers_below(i64::MAX);
        self.size_bytes = old_size;
        let headers = headers?;
        Arc::make_mut(&mut self.offset_index).clear();
        Arc::make_mut(&mut self.time_index).clear();
        self.index_entries_in_files = None;
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.size_bytes = 0;
        self.next_offset = self.base_offset;
        for (position, header) in headers {
            self.index_batch(&header, position, index_interval_bytes);
        }
        self.truncate_txn_index(self.next_offset)?;
        if direct {
            self.enable_direct_appends()?;
        }
        Ok(())
    }

    /// Removes the segment's files: `.log`, `.index`, `.timeindex` and `.txnindex`.
    pub fn delete_files(dir: &Path, base_offset: i64) -> Result<(), LogError> {
        Segment::delete_log_and_indexes(dir, base_offset)?;
        remove_if_present(&segment_file_path(dir, base_offset, TXN_INDEX_SUFFIX))
    }

    /// Removes `.log`, `.index` and `.timeindex` and keeps the `.txnindex`: a compaction swap,
    /// whose cleaned segment's transaction index is written over the old one (see
    /// `partition_log/compaction.rs`).
    pub(crate) fn delete_log_and_indexes(dir: &Path, base_offset: i64) -> Result<(), LogError> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_if_present(&segment_file_path(dir, base_offset, suffix))?;
        }
        Ok(())
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    /// Last offset + 1, or the base offset when empty.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }
    /// The open `.log` handle: the cached one, or the file opened again (see
    /// `open_files.rs`). Whoever holds the handle may use it after the segment is gone.
    pub fn file(&self) -> Result<Arc<File>, LogError> {
        if let Some(file) = &self.pinned {
            return Ok(Arc::clone(file));
        }
        self.file
            .get()
            .map_err(LogError::io("open", &self.log_path))
    }
    /// A copy that holds the segment's open handle for as long as it lives: it reads the
    /// segment's bytes even after the segment is retired and its files deleted.
    pub fn pinned(&self) -> Result<Segment, LogError> {
        let file = self.file()?;
        Ok(Segment {
            pinned: Some(file),
            ..self.clone()
        })
    }
    /// The segment's cache entry, to be opened later (by a flush outside the lock).
    pub fn segment_file(&self) -> &SegmentFile {
        &self.file
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    pub fn offset_index(&self) -> &[OffsetEntry] {
        &self.offset_index
    }
    pub fn time_index(&self) -> &[TimeEntry] {
        &self.time_index
    }
    /// Largest batch max timestamp in the segment (-1 when none), and the last offset of the
    /// first batch that reached it.
    pub fn max_timestamp(&self) -> (i64, i64) {
        (self.max_timestamp, self.offset_of_max_timestamp)
    }
    /// Entries the offset index holds.
    pub fn offset_index_len(&self) -> usize {
        self.offset_index.len()
    }
    /// Whether appending `last_offset` would overflow the 4-byte relative offset.
    pub fn offset_overflows(&self, last_offset: i64) -> bool {
        last_offset - self.base_offset > i64::from(i32::MAX)
    }
}

/// Removes a file; a missing one is fine.
fn remove_if_present(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LogError::Io {
            op: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_index_file(path: &Path) -> Result<Option<Vec<u8>>, LogError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LogError::Io {
            op: "read",
            path: path.into(),
            source,
        }),
    }
}

/// Reads and checks an offset index; `None` if missing or invalid.
fn read_offset_index(
    dir: &Path,
    base_offset: i64,
    log_len: u64,
) -> Result<Option<Vec<OffsetEntry>>, LogError> {
    let path = segment_file_path(dir, base_offset, INDEX_SUFFIX);
    let Some(bytes) = read_index_file(&path)? else {
        return Ok(None);
    };
    if bytes.len() % OFFSET_INDEX_ENTRY_SIZE != 0 {
        return Ok(None);
    }
    let mut entries: Vec<OffsetEntry> = Vec::with_capacity(bytes.len() / OFFSET_INDEX_ENTRY_SIZE);
    for raw in bytes.chunks_exact(OFFSET_INDEX_ENTRY_SIZE) {
        let entry = decode_offset_entry(raw);
        let monotonic = entries.last().is_none_or(|last| {
            entry.relative_offset > last.relative_offset && entry.position > last.position
        });
        if !monotonic
            || entry.relative_offset > i32::MAX as u32
            || u64::from(entry.position) >= log_len
        {
            return Ok(None);
        }
        entries.push(entry);
    }
    Ok(Some(entries))
}

/// Reads and checks a time index; `None` if missing or invalid.
fn read_time_index(dir: &Path, base_offset: i64) -> Result<Option<Vec<TimeEntry>>, LogError> {
    let path = segment_file_path(dir, base_offset, TIME_INDEX_SUFFIX);
    let Some(bytes) = read_index_file(&path)? else {
        return Ok(None);
    };
    if bytes.len() % TIME_INDEX_ENTRY_SIZE != 0 {
        return Ok(None);
    }
    let mut entries: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_INDEX_ENTRY_SIZE);
    for raw in bytes.chunks_exact(TIME_INDEX_ENTRY_SIZE) {
        let entry = decode_time_entry(raw);
        let monotonic = entries.last().is_none_or(|last| {
            entry.timestamp > last.timestamp && entry.relative_offset >= last.relative_offset
        });
        if !monotonic || entry.timestamp < 0 || entry.relative_offset > i32::MAX as u32 {
            return Ok(None);
        }
        entries.push(entry);
    }
    Ok(Some(entries))
}

/// One offset-index entry from its 8 bytes (see the module doc).
fn decode_offset_entry(raw: &[u8]) -> OffsetEntry {
    OffsetEntry {
        relative_offset: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
        position: u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]),
    }
}

/// One time-index entry from its 12 bytes (see the module doc).
fn decode_time_entry(raw: &[u8]) -> TimeEntry {
    let mut timestamp = [0u8; 8];
    timestamp.copy_from_slice(&raw[..8]);
    TimeEntry {
        timestamp: i64::from_be_bytes(timestamp),
        relative_offset: u32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]),
    }
}

fn encode_offset_entries(entries: &[OffsetEntry]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * OFFSET_INDEX_ENTRY_SIZE);
    for entry in entries {
        bytes.extend_from_slice(&entry.relative_offset.to_be_bytes());
        bytes.extend_from_slice(&entry.position.to_be_bytes());
    }
    bytes
}

fn encode_time_entries(entries: &[TimeEntry]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * TIME_INDEX_ENTRY_SIZE);
    for entry in entries {
        bytes.extend_from_slice(&entry.timestamp.to_be_bytes());
        bytes.extend_from_slice(&entry.relative_offset.to_be_bytes());
    }
    bytes
}
