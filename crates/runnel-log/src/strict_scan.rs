//! Reading a single-writer log without changing it, and telling the torn tail of an unfinished
//! write from damage: the recovery rule of the metadata logs (the quorum-of-one's metadata log
//! in `runnel-broker/src/metadata_log.rs`, the Raft log in `runnel-controller`).
//!
//! Such a log is written one batch per write, and each write is fsync'd before anything acts
//! on it (answers, votes, directories created). So a crash can leave unfinished writes only
//! after the last flushed batch, at the end of the last segment. That is a *torn tail*, and
//! recovery truncates it as for any partition. Its shapes, from `P`, the end of the last intact
//! batch:
//!
//! - fewer than 12 bytes (the batch length field itself incomplete);
//! - a plausible batch length (61 bytes to the log's largest batch) whose extent runs past the
//!   end of the file (a partial write), or fits but fails its CRC (a write whose sectors were
//!   not all persisted), with only zero bytes after that extent;
//! - zero bytes only (the file grew but its data was never written).
//!
//! Anything else is *damage*, and [`scan`] refuses it without touching a byte: a bad batch
//! followed by an intact one (found by trying every position after it), a bad batch in a
//! segment that is not the last, a region longer than one write, a CRC-valid batch out of
//! offset order, or a batch the caller's callback cannot decode. Truncating there would drop
//! data that was acted on, so the owner must not start on it.
//!
//! Unlike a partition's recovery (which trusts nothing above its recovery point and truncates
//! at the first bad batch), this scan runs before the log is opened and decides whether that
//! truncation is safe. Reads are bounded: batches are read one at a time (at most the caller's
//! `batch_bytes_max`), the search for an intact batch after damage reads [`SEARCH_CHUNK_BYTES`]
//! at a time and only checks the CRC of candidates whose base offset the log could reach.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use runnel_protocol::record_batch::{BatchHeader, BATCH_HEADER_SIZE, BATCH_LOG_OVERHEAD, MAGIC_V2};
use thiserror::Error;

use crate::segment::{parse_base_offset, validate_stored_batch};

/// Bytes read at a time when searching for an intact batch after a bad one.
pub const SEARCH_CHUNK_BYTES: usize = 1024 * 1024;
const MAGIC_AT: usize = 16;
const LENGTH_AT: usize = 8;

/// Why a single-writer log cannot be trusted.
#[derive(Debug, Error)]
pub enum LogDamage {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}, byte {position}: {reason}; {why_not_torn}, so this is damage, not the torn tail \
         of an unfinished write"
    )]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
        why_not_torn: String,
    },
    /// An intact batch (its CRC holds) whose content the log's owner cannot read.
    #[error("the record at offset {offset} does not decode: {reason}")]
    Undecodable { offset: i64, reason: String },
}

/// The torn tail recovery will truncate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    pub position: u64,
    pub bytes: u64,
}

/// What a scan found, apart from the batches it handed to its callback.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScannedLog {
    /// Whether the log's directory exists.
    pub exists: bool,
    /// The offset after the last intact batch.
    pub end_offset: i64,
    pub torn_tail: Option<TornTail>,
}

/// Reads the whole log in `dir`, handing each intact batch (header and bytes, in log order) to
/// `on_batch`; damage (see the module doc) or an error from `on_batch` is an error.
pub fn scan(
    dir: &Path,
    batch_bytes_max: usize,
    on_batch: impl FnMut(&BatchHeader, Vec<u8>) -> Result<(), LogDamage>,
) -> Result<ScannedLog, LogDamage> {
    match salvage(dir, batch_bytes_max, on_batch) {
        (_, Some(damage)) => Err(damage),
        (scanned, None) => Ok(scanned),
    }
}

/// Reads the log in `dir` up to its damage, if any: every batch before it goes to `on_batch`,
/// and the damage is returned beside what was read.
pub fn salvage(
    dir: &Path,
    batch_bytes_max: usize,
    mut on_batch: impl FnMut(&BatchHeader, Vec<u8>) -> Result<(), LogDamage>,
) -> (ScannedLog, Option<LogDamage>) {
    let mut scanned = ScannedLog {
        exists: dir.is_dir(),
        ..ScannedLog::default()
    };
    if !scanned.exists {
        return (scanned, None);
    }
    let reader = Reader { batch_bytes_max };
    let damage = reader.read_segments(dir, &mut scanned, &mut on_batch).err();
    (scanned, damage)
}

fn segment_paths(dir: &Path) -> Result<Vec<(i64, PathBuf)>, LogDamage> {
    let io = |source| LogDamage::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let base = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".log"))
            .and_then(parse_base_offset);
        if let Some(base) = base {
            segments.push((base, path));
        }
    }
    segments.sort();
    Ok(segments)
}

fn corrupt(path: &Path, position: u64, reason: String, why_not_torn: String) -> LogDamage {
    LogDamage::Corrupt {
        path: path.to_path_buf(),
        position,
        reason,
        why_not_torn,
    }
}

enum BadBatch {
    /// Not an intact batch: torn or damaged.
    Invalid(String),
    /// An intact batch where it cannot be: always damage.
    OutOfOrder(String),
}

/// The scan's bound on one batch.
struct Reader {
    batch_bytes_max: usize,
}

impl Reader {
    fn read_segments(
        &self,
        dir: &Path,
        scanned: &mut ScannedLog,
        on_batch: &mut impl FnMut(&BatchHeader, Vec<u8>) -> Result<(), LogDamage>,
    ) -> Result<(), LogDamage> {
        let segments = segment_paths(dir)?;
        for (i, (base, path)) in segments.iter().enumerate() {
            let io = |source| LogDamage::Io {
                path: path.clone(),
                source,
            };
            let file = File::open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            scanned.end_offset = scanned.end_offset.max(*base);
            let mut position = 0u64;
            while position < len {
                let reason = match self.read_batch(&file, position, len, scanned.end_offset) {
                    Ok((header, bytes)) => {
                        on_batch(&header, bytes)?;
                        scanned.end_offset = header.last_offset() + 1;
                        position += header.size_bytes() as u64;
                        continue;
                    }
                    Err(BadBatch::OutOfOrder(reason)) => {
                        let why = "the batch's CRC holds".to_string();
                        return Err(corrupt(path, position, reason, why));
                    }
                    Err(BadBatch::Invalid(reason)) => reason,
                };
                let later = segments.len() - i - 1;
                if later > 0 {
                    let why = format!("{later} later segment(s) follow this one");
                    return Err(corrupt(path, position, reason, why));
                }
                if let Some(why) = self
                    .not_a_torn_tail(&file, position, len, scanned.end_offset)
                    .map_err(io)?
                {
                    return Err(corrupt(path, position, reason, why));
                }
                scanned.torn_tail = Some(TornTail {
                    segment: path.clone(),
                    position,
                    bytes: len - position,
                });
                return Ok(());
            }
        }
        Ok(())
    }

    /// The intact batch at `position`, its offsets at or above `expected_min`.
    fn read_batch(
        &self,
        file: &File,
        position: u64,
        len: u64,
        expected_min: i64,
    ) -> Result<(BatchHeader, Vec<u8>), BadBatch> {
        let bytes = self
            .read_batch_bytes(file, position, len)
            .map_err(BadBatch::Invalid)?;
        let header = validate_stored_batch(&bytes).map_err(BadBatch::Invalid)?;
        if header.base_offset < expected_min {
            return Err(BadBatch::OutOfOrder(format!(
                "batch at base offset {} where offset {expected_min} or later was expected",
                header.base_offset
            )));
        }
        Ok((header, bytes))
    }

    /// The bytes of the batch at `position` as its length field gives them, bounded.
    fn read_batch_bytes(&self, file: &File, position: u64, len: u64) -> Result<Vec<u8>, String> {
        let available = len - position;
        if available < BATCH_HEADER_SIZE as u64 {
            return Err(format!("{available} bytes, less than a batch header"));
        }
        let mut header = [0u8; BATCH_HEADER_SIZE];
        file.read_exact_at(&mut header, position)
            .map_err(|e| format!("read failed: {e}"))?;
        let header = BatchHeader::parse(&header).map_err(|e| e.to_string())?;
        let size = header.size_bytes();
        if size > self.batch_bytes_max {
            return Err(format!(
                "batch length {size} is above {}",
                self.batch_bytes_max
            ));
        }
        if size as u64 > available {
            return Err(format!("batch of {size} bytes but only {available} remain"));
        }
        let mut bytes = vec![0u8; size];
        file.read_exact_at(&mut bytes, position)
            .map_err(|e| format!("read failed: {e}"))?;
        Ok(bytes)
    }

    /// `None` when the bytes from `position` to `len` are the torn tail of one unfinished
    /// write; otherwise why they are not (see the module doc).
    fn not_a_torn_tail(
        &self,
        file: &File,
        position: u64,
        len: u64,
        expected_min: i64,
    ) -> std::io::Result<Option<String>> {
        let remaining = len - position;
        if remaining < BATCH_LOG_OVERHEAD as u64 {
            return Ok(None);
        }
        if let Some((at, base_offset)) =
            self.intact_batch_after(file, position + 1, len, expected_min)?
        {
            return Ok(Some(format!(
                "an intact batch (base offset {base_offset}) follows at byte {at}"
            )));
        }
        let mut length = [0u8; 4];
        file.read_exact_at(&mut length, position + LENGTH_AT as u64)?;
        let size = i64::from(i32::from_be_bytes(length)) + BATCH_LOG_OVERHEAD as i64;
        let max = i64::try_from(self.batch_bytes_max).unwrap_or(i64::MAX);
        let plausible = (BATCH_HEADER_SIZE as i64..=max).contains(&size);
        let extent_end = if plausible {
            (position + size as u64).min(len)
        } else {
            position
        };
        if all_zero(file, extent_end, len)? {
            return Ok(None);
        }
        Ok(Some(if plausible {
            format!(
                "{} non-zero bytes follow the {size}-byte batch it announces",
                len - extent_end
            )
        } else {
            format!("its length field is implausible and {remaining} bytes follow, not all zero")
        }))
    }

    /// The first position in `from..len` holding an intact batch whose base offset the log
    /// could have reached (at least `expected_min`, at most one offset per header-sized step
    /// beyond).
    fn intact_batch_after(
        &self,
        file: &File,
        from: u64,
        len: u64,
        expected_min: i64,
    ) -> std::io::Result<Option<(u64, i64)>> {
        let reach = i64::try_from((len - from) / BATCH_HEADER_SIZE as u64 + 1).unwrap_or(i64::MAX);
        let offsets = expected_min..=expected_min.saturating_add(reach);
        let mut chunk = vec![0u8; SEARCH_CHUNK_BYTES + BATCH_HEADER_SIZE];
        let mut start = from;
        while start + BATCH_HEADER_SIZE as u64 <= len {
            let want = ((len - start) as usize).min(chunk.len());
            let window = &mut chunk[..want];
            file.read_exact_at(window, start)?;
            let candidates = want
                .saturating_sub(BATCH_HEADER_SIZE - 1)
                .min(SEARCH_CHUNK_BYTES);
            for i in 0..candidates {
                let bytes = &window[i..];
                if bytes[MAGIC_AT] as i8 != MAGIC_V2 {
                    continue;
                }
                let base_offset = i64::from_be_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
                if !offsets.contains(&base_offset) {
                    continue;
                }
                let at = start + i as u64;
                if let Ok(batch) = self.read_batch_bytes(file, at, len) {
                    if validate_stored_batch(&batch).is_ok() {
                        return Ok(Some((at, base_offset)));
                    }
                }
            }
            start += candidates as u64;
            if candidates == 0 {
                break;
            }
        }
        Ok(None)
    }
}

fn all_zero(file: &File, from: u64, to: u64) -> std::io::Result<bool> {
    let mut chunk = vec![0u8; SEARCH_CHUNK_BYTES];
    let mut at = from;
    while at < to {
        let want = ((to - at) as usize).min(chunk.len());
        file.read_exact_at(&mut chunk[..want], at)?;
        if chunk[..want].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += want as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use runnel_protocol::record_batch;

    const MAX: usize = 1024 * 1024;

    /// A log of `count` one-record batches; returns its segment and each batch's start.
    fn log_of(dir: &Path, count: i64) -> (PathBuf, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for offset in 0..count {
            let value = Some(Bytes::from(format!("value {offset}")));
            let mut batch = record_batch::encode_internal_batch([(None, value)], 1);
            record_batch::set_base_offset(&mut batch, offset);
            starts.push(bytes.len() as u64);
            bytes.extend_from_slice(&batch);
        }
        let path = dir.join("00000000000000000000.log");
        std::fs::write(&path, &bytes).expect("write segment");
        (path, starts)
    }

    fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open");
        file.write_all_at(bytes, at).expect("overwrite");
    }

    /// The scan, and the base offsets it handed over.
    fn read(dir: &Path) -> Result<(ScannedLog, Vec<i64>), LogDamage> {
        let mut bases = Vec::new();
        let scanned = scan(dir, MAX, |header, _| {
            bases.push(header.base_offset);
            Ok(())
        })?;
        Ok((scanned, bases))
    }

    #[test]
    fn an_intact_log_reads_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        log_of(dir.path(), 5);
        let (scanned, bases) = read(dir.path()).expect("intact");
        assert_eq!(bases, vec![0, 1, 2, 3, 4]);
        assert_eq!(scanned.end_offset, 5);
        assert_eq!(scanned.torn_tail, None);
        assert!(!read(&dir.path().join("missing")).expect("missing").0.exists);
    }

    #[test]
    fn torn_tails_are_recoverable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, starts) = log_of(dir.path(), 5);
        let len = std::fs::metadata(&path).expect("len").len();
        // A partial last write, at several lengths.
        for cut in [starts[4] + 5, starts[4] + 40, len - 1] {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open");
            file.set_len(cut).expect("cut");
            let (scanned, bases) = read(dir.path()).expect("a torn tail is not damage");
            assert_eq!(bases.len(), 4, "cut at {cut}");
            assert_eq!(scanned.torn_tail.map(|t| t.position), Some(starts[4]));
            log_of(dir.path(), 5);
        }
        // The last write complete in length but not in content, then zeros.
        overwrite(&path, len - 10, &[0xAB; 10]);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_len(len + 4096).expect("grow with zeros");
        let (_, bases) = read(dir.path()).expect("a torn tail is not damage");
        assert_eq!(bases.len(), 4);
    }

    #[test]
    fn damage_before_intact_batches_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, starts) = log_of(dir.path(), 5);
        overwrite(&path, starts[1] + 30, b"garbage garbage");
        let error = read(dir.path()).expect_err("damage in the middle");
        assert!(
            error
                .to_string()
                .contains("an intact batch (base offset 2) follows"),
            "{error}"
        );
        let mut salvaged = 0;
        let (_, damage) = salvage(dir.path(), MAX, |_, _| {
            salvaged += 1;
            Ok(())
        });
        assert!(damage.is_some());
        assert_eq!(salvaged, 1, "the batches before the damage are handed over");
        // Garbage over the length field too.
        log_of(dir.path(), 5);
        overwrite(&path, starts[2], &[0xFF; 20]);
        assert!(read(dir.path()).is_err());
        // Garbage after a torn-looking last batch.
        log_of(dir.path(), 5);
        let len = std::fs::metadata(&path).expect("len").len();
        overwrite(
            &path,
            starts[3] + 20,
            &vec![0x5A; (len - starts[3] - 20) as usize],
        );
        assert!(read(dir.path()).is_err());
    }

    #[test]
    fn damage_in_a_segment_before_the_last_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, starts) = log_of(dir.path(), 3);
        let mut next = record_batch::encode_internal_batch([(None, Some(Bytes::from("x")))], 1);
        record_batch::set_base_offset(&mut next, 3);
        std::fs::write(dir.path().join("00000000000000000003.log"), &next).expect("write");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_len(starts[2] + 10).expect("cut");
        let error = read(dir.path()).expect_err("a torn batch before a later segment");
        assert!(error.to_string().contains("1 later segment(s)"), "{error}");
    }

    #[test]
    fn a_callback_error_stops_the_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        log_of(dir.path(), 3);
        let error = scan(dir.path(), MAX, |header, _| {
            if header.base_offset == 1 {
                return Err(LogDamage::Undecodable {
                    offset: 1,
                    reason: "not ours".into(),
                });
            }
            Ok(())
        })
        .expect_err("the callback refused a batch");
        assert!(matches!(error, LogDamage::Undecodable { offset: 1, .. }));
    }

    #[test]
    fn a_batch_above_the_bound_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        log_of(dir.path(), 2);
        // Every batch is larger than a 40-byte bound: none is read, and what follows the first
        // is not zeros, so it is damage rather than a torn tail.
        let error = scan(dir.path(), 40, |_, _| Ok(())).expect_err("bounded");
        assert!(error.to_string().contains("above 40"), "{error}");
    }
}
