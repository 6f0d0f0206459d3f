//! Reading the Raft log (`__cluster_metadata-0`) before it is opened, without changing it, and
//! telling the torn tail of an unfinished write from damage.
//!
//! This is the quorum-of-one's rule (`runnel-broker/src/metadata_log.rs`, from which this
//! module is adapted; the broker will use this one once it runs on the quorum), applied to Raft
//! entries: each batch must hold exactly one record, a Raft entry whose index and term match
//! the batch's base offset and leader epoch ([`crate::log_store`] has the format).
//!
//! Appends are fsync'd before openraft is told they are flushed, and only then may a vote or
//! an append response count them. So a crash can leave unfinished writes only after the last
//! flushed entry, at the end of the last segment. That is a *torn tail*, and recovery
//! truncates it as for any partition. Its shapes, from `P`, the end of the last intact batch:
//!
//! - fewer than 12 bytes (the batch length field itself incomplete);
//! - a plausible batch length (61 bytes to [`METADATA_BATCH_BYTES_MAX`]) whose extent runs past
//!   the end of the file (a partial write), or fits but fails its CRC (a write whose sectors
//!   were not all persisted), with only zero bytes after that extent;
//! - zero bytes only (the file grew but its data was never written).
//!
//! Anything else is *damage*, and [`scan`] refuses it without touching a byte: a bad batch
//! followed by an intact one (found by trying every position after it), a bad batch in a
//! segment that is not the last, a region longer than one write, a CRC-valid batch out of
//! offset order, or an entry that does not decode or does not match its batch. Truncating there
//! would drop entries this node reported flushed (votes and commits were counted on them), so
//! the node must not start on it: the error names the file and byte.
//!
//! Reads are bounded: batches are read one at a time (at most [`METADATA_BATCH_BYTES_MAX`]),
//! the search for an intact batch after damage reads [`SEARCH_CHUNK_BYTES`] at a time and only
//! checks the CRC of candidates whose base offset is in the range the log could reach.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use runnel_log::segment::{parse_base_offset, validate_stored_batch};
use runnel_protocol::record_batch::{BatchHeader, BATCH_HEADER_SIZE, BATCH_LOG_OVERHEAD, MAGIC_V2};
use thiserror::Error;

use crate::log_store::{decode_entry, METADATA_BATCH_BYTES_MAX};
use crate::types::LogId;
/// Bytes read at a time when searching for an intact batch after a bad one.
const SEARCH_CHUNK_BYTES: usize = 1024 * 1024;
const MAGIC_AT: usize = 16;
const LENGTH_AT: usize = 8;

/// Why the metadata log cannot be trusted.
#[derive(Debug, Error)]
pub enum MetadataLogDamage {
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
    #[error("the Raft entry at offset {offset} is damaged: {reason}")]
    Undecodable { offset: i64, reason: String },
}

/// The torn tail recovery will truncate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    pub position: u64,
    pub bytes: u64,
}

/// What the metadata log holds.
#[derive(Debug, Default)]
pub struct MetadataLogScan {
    /// Whether `__cluster_metadata-0/` exists.
    pub exists: bool,
    /// The log id of the last intact entry.
    pub last_log_id: Option<LogId>,
    /// The offset after the last intact batch.
    pub end_offset: i64,
    pub torn_tail: Option<TornTail>,
}

/// Reads the whole Raft log in `dir`; damage (see the module doc) is an error.
pub fn scan(dir: &Path) -> Result<MetadataLogScan, MetadataLogDamage> {
    let mut scan = MetadataLogScan {
        exists: dir.is_dir(),
        ..MetadataLogScan::default()
    };
    if scan.exists {
        read_segments(dir, &mut scan)?;
    }
    Ok(scan)
}

fn segment_paths(dir: &Path) -> Result<Vec<(i64, PathBuf)>, MetadataLogDamage> {
    let io = |source| MetadataLogDamage::Io {
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

fn read_segments(dir: &Path, scan: &mut MetadataLogScan) -> Result<(), MetadataLogDamage> {
    let segments = segment_paths(dir)?;
    for (i, (base, path)) in segments.iter().enumerate() {
        let io = |source| MetadataLogDamage::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        scan.end_offset = scan.end_offset.max(*base);
        let mut position = 0u64;
        while position < len {
            let reason = match read_batch(&file, position, len, scan.end_offset) {
                Ok((header, bytes)) => {
                    let entry = decode_entry(&header, bytes).map_err(|reason| {
                        MetadataLogDamage::Undecodable {
                            offset: header.base_offset,
                            reason,
                        }
                    })?;
                    scan.last_log_id = Some(entry.log_id);
                    scan.end_offset = header.last_offset() + 1;
                    position += header.size_bytes() as u64;
                    continue;
                }
                Err(BadBatch::OutOfOrder(reason)) => {
                    return Err(corrupt(
                        path,
                        position,
                        reason,
                        "the batch's CRC holds".into(),
                    ))
                }
                Err(BadBatch::Invalid(reason)) => reason,
            };
            let later = segments.len() - i - 1;
            if later > 0 {
                let why = format!("{later} later segment(s) follow this one");
                return Err(corrupt(path, position, reason, why));
            }
            if let Some(why) = not_a_torn_tail(&file, position, len, scan.end_offset, path)? {
                return Err(corrupt(path, position, reason, why));
            }
            scan.torn_tail = Some(TornTail {
                segment: path.clone(),
                position,
                bytes: len - position,
            });
            return Ok(());
        }
    }
    Ok(())
}

fn corrupt(path: &Path, position: u64, reason: String, why_not_torn: String) -> MetadataLogDamage {
    MetadataLogDamage::Corrupt {
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

/// The intact batch at `position`, its offsets at or above `expected_min`.
fn read_batch(
    file: &File,
    position: u64,
    len: u64,
    expected_min: i64,
) -> Result<(BatchHeader, Vec<u8>), BadBatch> {
    let bytes = read_batch_bytes(file, position, len).map_err(BadBatch::Invalid)?;
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
fn read_batch_bytes(file: &File, position: u64, len: u64) -> Result<Vec<u8>, String> {
    let available = len - position;
    if available < BATCH_HEADER_SIZE as u64 {
        return Err(format!("{available} bytes, less than a batch header"));
    }
    let mut header = [0u8; BATCH_HEADER_SIZE];
    file.read_exact_at(&mut header, position)
        .map_err(|e| format!("read failed: {e}"))?;
    let header = BatchHeader::parse(&header).map_err(|e| e.to_string())?;
    let size = header.size_bytes();
    if size > METADATA_BATCH_BYTES_MAX {
        return Err(format!(
            "batch length {size} is above {METADATA_BATCH_BYTES_MAX}"
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

/// `None` when the bytes from `position` to `len` are the torn tail of one unfinished write;
/// otherwise why they are not (see the module doc).
fn not_a_torn_tail(
    file: &File,
    position: u64,
    len: u64,
    expected_min: i64,
    path: &Path,
) -> Result<Option<String>, MetadataLogDamage> {
    let io = |source| MetadataLogDamage::Io {
        path: path.to_path_buf(),
        source,
    };
    let remaining = len - position;
    if remaining < BATCH_LOG_OVERHEAD as u64 {
        return Ok(None);
    }
    let after = intact_batch_after(file, position + 1, len, expected_min).map_err(io)?;
    if let Some((at, base_offset)) = after {
        return Ok(Some(format!(
            "an intact batch (base offset {base_offset}) follows at byte {at}"
        )));
    }
    let mut length = [0u8; 4];
    file.read_exact_at(&mut length, position + LENGTH_AT as u64)
        .map_err(io)?;
    let size = i64::from(i32::from_be_bytes(length)) + BATCH_LOG_OVERHEAD as i64;
    let plausible = (BATCH_HEADER_SIZE as i64..=METADATA_BATCH_BYTES_MAX as i64).contains(&size);
    let extent_end = if plausible {
        (position + size as u64).min(len)
    } else {
        position
    };
    if !all_zero(file, extent_end, len).map_err(io)? {
        let why = if plausible {
            format!(
                "{} non-zero bytes follow the {size}-byte batch it announces",
                len - extent_end
            )
        } else {
            format!("its length field is implausible and {remaining} bytes follow, not all zero")
        };
        return Ok(Some(why));
    }
    Ok(None)
}

/// The first position in `from..len` holding an intact batch whose base offset the log could
/// have reached (at least `expected_min`, at most one offset per header-sized step beyond).
fn intact_batch_after(
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
            if let Ok(batch) = read_batch_bytes(file, at, len) {
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
