//! A segment's transaction index `<base>.txnindex`: the aborted transactions whose ABORT
//! markers lie in the segment, in Kafka's format and with Kafka's rules (`TransactionIndex`,
//! `AbortedTxn`). read_committed consumers get these entries with a fetch
//! (`PartitionLog::aborted_transactions`) and drop the aborted records themselves.
//!
//! # Format: 34-byte entries, big-endian, exactly Kafka's `AbortedTxn`
//! | size | field |
//! |-----:|-------|
//! | 2 | version (0) |
//! | 8 | producer id |
//! | 8 | first offset of the transaction |
//! | 8 | last offset: the offset of its ABORT marker |
//! | 8 | last stable offset when the marker was written (Kafka's `lastStableOffset(completedTxn)`) |
//!
//! Entries are appended in marker order, so last offsets strictly increase. The file is created
//! with the segment's first entry (a segment without aborted transactions has none, as in
//! Kafka), deleted with the segment, truncated with it (entries whose marker is cut go), and
//! rewritten whole when compaction replaces the segment.
//!
//! # Crash policy
//! An entry is written to the file when its marker is appended, without fsync; the flush that
//! makes the marker durable fsyncs the file too (`FlushTarget`), so below the recovery point
//! the index is as trusted as the log. On open the file is checked: a length that is not a
//! whole number of entries, a version other than 0, a last offset outside the segment or not
//! above the previous entry's, a first offset above the last, or a last stable offset above the
//! marker's offset + 1 make it *damaged*: reported at WARN and rebuilt from the log's batches
//! by the producer-state replay (`partition_log/recovery.rs`), which also rebuilds every entry
//! of the part of the log it replays. The log is never touched for a bad index.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use runnel_protocol::record_batch::BATCH_HEADER_SIZE;

use super::{segment_file_path, Segment};
use crate::checkpoint::write_atomically_leaving_dir;
use crate::error::LogError;
use crate::producer_state::CompletedTxn;

/// File name suffix of a segment's transaction index.
pub const TXN_INDEX_SUFFIX: &str = ".txnindex";
/// Bytes per entry (Kafka's `AbortedTxn.TOTAL_SIZE`).
pub const ABORTED_TXN_ENTRY_SIZE: usize = 34;
/// The only entry version (Kafka's `AbortedTxn.CURRENT_VERSION`).
pub const ABORTED_TXN_VERSION: i16 = 0;

/// One aborted transaction of a segment's transaction index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of the ABORT marker.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    /// The entry of an aborted [`CompletedTxn`].
    pub fn of(completed: &CompletedTxn) -> Self {
        AbortedTxn {
            producer_id: completed.producer_id,
            first_offset: completed.first_offset,
            last_offset: completed.last_offset,
            last_stable_offset: completed.last_stable_offset,
        }
    }

    /// The entry's 34 bytes.
    pub fn encode(&self) -> [u8; ABORTED_TXN_ENTRY_SIZE] {
        let mut bytes = [0u8; ABORTED_TXN_ENTRY_SIZE];
        bytes[..2].copy_from_slice(&ABORTED_TXN_VERSION.to_be_bytes());
        bytes[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        bytes[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        bytes[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        bytes[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        bytes
    }

    /// Reads one entry from its 34 bytes; `Err` for a version other than 0.
    pub fn decode(raw: &[u8; ABORTED_TXN_ENTRY_SIZE]) -> Result<Self, String> {
        let i64_at = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&raw[at..at + 8]);
            i64::from_be_bytes(bytes)
        };
        let version = i16::from_be_bytes([raw[0], raw[1]]);
        if version != ABORTED_TXN_VERSION {
            return Err(format!("unknown entry version {version}"));
        }
        Ok(AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }
}

/// The bytes of a whole index.
pub fn encode_entries(entries: &[AbortedTxn]) -> Vec<u8> {
    entries.iter().flat_map(|entry| entry.encode()).collect()
}

/// Reads and checks a whole index of the segment `[base_offset, next_offset)` (see the module
/// doc); `Err` says why it is damaged.
pub fn decode_entries(
    bytes: &[u8],
    base_offset: i64,
    next_offset: i64,
) -> Result<Vec<AbortedTxn>, String> {
    if !bytes.len().is_multiple_of(ABORTED_TXN_ENTRY_SIZE) {
        return Err(format!(
            "length {} is not a multiple of {ABORTED_TXN_ENTRY_SIZE}",
            bytes.len()
        ));
    }
    let mut entries: Vec<AbortedTxn> = Vec::with_capacity(bytes.len() / ABORTED_TXN_ENTRY_SIZE);
    for (i, raw) in bytes.chunks_exact(ABORTED_TXN_ENTRY_SIZE).enumerate() {
        let mut array = [0u8; ABORTED_TXN_ENTRY_SIZE];
        array.copy_from_slice(raw);
        let entry = AbortedTxn::decode(&array).map_err(|reason| format!("entry {i}: {reason}"))?;
        let problem = if entry.last_offset < base_offset || entry.last_offset >= next_offset {
            Some("last offset outside the segment")
        } else if entries
            .last()
            .is_some_and(|previous| previous.last_offset >= entry.last_offset)
        {
            Some("last offset not above the previous entry's")
        } else if entry.first_offset > entry.last_offset {
            Some("first offset above the last offset")
        } else if entry.last_stable_offset > entry.last_offset + 1 {
            Some("last stable offset above the marker")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(format!("entry {i}: {problem}: {entry:?}"));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// A segment's entries in memory, shared by its clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct TxnIndex {
    entries: Arc<Vec<AbortedTxn>>,
    /// The file may not hold exactly `entries` (a write failed, or it was found damaged): the
    /// next write rewrites it whole.
    file_stale: bool,
}

impl Segment {
    /// The aborted transactions whose markers lie in this segment, in marker order.
    pub fn aborted_txns(&self) -> &[AbortedTxn] {
        &self.txn_index.entries
    }

    pub fn txn_index_path(&self) -> PathBuf {
        segment_file_path(&self.dir, self.base_offset, TXN_INDEX_SUFFIX)
    }

    /// Kafka's `TransactionIndex.collectAbortedTxns`: adds to `out` the entries overlapping
    /// `[fetch_offset, upper_offset)` and returns whether the search is complete (an entry's
    /// last stable offset reached `upper_offset`: no later segment can hold an overlapping one).
    pub fn collect_aborted_txns(
        &self,
        fetch_offset: i64,
        upper_offset: i64,
        out: &mut Vec<AbortedTxn>,
    ) -> bool {
        for entry in self.txn_index.entries.iter() {
            if entry.last_offset >= fetch_offset && entry.first_offset < upper_offset {
                out.push(*entry);
            }
            if entry.last_stable_offset >= upper_offset {
                return true;
            }
        }
        false
    }

    /// Appends an entry to the index and its file (no fsync; see the module doc). On error
    /// the entry is not added and the file will be rewritten whole by the next write.
    pub(crate) fn append_aborted_txn(&mut self, entry: AbortedTxn) -> Result<(), LogError> {
        assert!(
            self.txn_index
                .entries
                .last()
                .is_none_or(|last| last.last_offset < entry.last_offset),
            "transaction index entries must follow marker order"
        );
        let path = self.txn_index_path();
        if self.txn_index.file_stale {
            let mut entries = self.txn_index.entries.to_vec();
            entries.push(entry);
            fs::write(&path, encode_entries(&entries)).map_err(LogError::io("write", &path))?;
            self.txn_index.file_stale = false;
        } else {
            let position = (self.txn_index.entries.len() * ABORTED_TXN_ENTRY_SIZE) as u64;
            let written = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .and_then(|file| file.write_all_at(&entry.encode(), position));
            if let Err(source) = written {
                self.txn_index.file_stale = true;
                return Err(LogError::Io {
                    op: "write",
                    path,
                    source,
                });
            }
        }
        if self.txn_index.entries.is_empty() {
            // A new file: its name is durable with the next directory fsync.
            self.dir_entry_synced = false;
        }
        Arc::make_mut(&mut self.txn_index.entries).push(entry);
        Ok(())
    }

    /// Takes back the last entry (its marker could not be written).
    pub(crate) fn remove_last_aborted_txn(&mut self) {
        if Arc::make_mut(&mut self.txn_index.entries).pop().is_none() {
            return;
        }
        let path = self.txn_index_path();
        let length = (self.txn_index.entries.len() * ABORTED_TXN_ENTRY_SIZE) as u64;
        let cut = OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_len(length));
        if cut.is_err() {
            self.txn_index.file_stale = true;
        }
    }

    /// Makes the index hold exactly `entries`, rewriting its file when they differ from what
    /// it holds: atomically (temp file, fsync, rename), or removed when empty. Returns whether
    /// the file changed (the caller then fsyncs the directory).
    pub(crate) fn replace_txn_index(&mut self, entries: Vec<AbortedTxn>) -> Result<bool, LogError> {
        if !self.txn_index.file_stale && *self.txn_index.entries == entries {
            return Ok(false);
        }
        let path = self.txn_index_path();
        if entries.is_empty() {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(LogError::Io {
                        op: "remove",
                        path,
                        source,
                    })
                }
            }
        } else {
            write_atomically_leaving_dir(&path, &encode_entries(&entries))?;
        }
        self.txn_index.entries = Arc::new(entries);
        self.txn_index.file_stale = false;
        Ok(true)
    }

    /// Drops the entries whose marker is at or after `offset` (the log was truncated there).
    pub(crate) fn truncate_txn_index(&mut self, offset: i64) -> Result<(), LogError> {
        if self
            .txn_index
            .entries
            .last()
            .is_none_or(|last| last.last_offset < offset)
        {
            return Ok(());
        }
        let kept: Vec<AbortedTxn> = self
            .txn_index
            .entries
            .iter()
            .filter(|entry| entry.last_offset < offset)
            .copied()
            .collect();
        self.replace_txn_index(kept).map(|_| ())
    }

    /// Sets the entries of a segment not yet on disk under its name (a cleaned segment); the
    /// file is written by [`Segment::replace_txn_index`] once it is.
    pub(crate) fn set_txn_index_in_memory(&mut self, entries: Vec<AbortedTxn>) {
        self.txn_index.entries = Arc::new(entries);
        self.txn_index.file_stale = true;
    }

    /// Reads and checks the index file of a loaded or scanned segment. `Ok(Err(reason))` when
    /// it is damaged: the segment then holds no entry until the replay rebuilds them.
    pub(crate) fn load_txn_index(&mut self) -> Result<Result<(), String>, LogError> {
        let path = self.txn_index_path();
        let length = match fs::metadata(&path) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Ok(())),
            Err(source) => {
                return Err(LogError::Io {
                    op: "stat",
                    path,
                    source,
                })
            }
        };
        // A segment holds at most one marker per batch header's worth of bytes.
        let entries_max = self.size_bytes / BATCH_HEADER_SIZE as u64 + 1;
        let damage = if length > entries_max * ABORTED_TXN_ENTRY_SIZE as u64 {
            Err(format!(
                "{length} bytes, more than the segment's batches can explain"
            ))
        } else {
            let bytes = fs::read(&path).map_err(LogError::io("read", &path))?;
            decode_entries(&bytes, self.base_offset, i64::MAX).map(|mut entries| {
                // Entries of markers a crash cut from the log's unflushed tail: the log
                // decides, and the replay rebuilds what the tail held.
                let kept = entries.partition_point(|e| e.last_offset < self.next_offset);
                if kept < entries.len() {
                    tracing::info!(path = %path.display(), dropped = entries.len() - kept,
                        "dropping transaction index entries past the end of the log");
                    entries.truncate(kept);
                    self.txn_index.file_stale = true;
                }
                self.txn_index.entries = Arc::new(entries);
            })
        };
        if damage.is_err() {
            self.txn_index.entries = Arc::new(Vec::new());
            self.txn_index.file_stale = true;
        }
        Ok(damage)
    }

    /// Whether the file holds entries whose markers are at or above `offset` (not yet
    /// durable when `offset` is the recovery point).
    pub(crate) fn txn_index_has_entries_from(&self, offset: i64) -> bool {
        self.txn_index
            .entries
            .last()
            .is_some_and(|last| last.last_offset >= offset)
    }

    /// Fsyncs the index file, if the segment has one.
    pub(crate) fn sync_txn_index(&self) -> Result<(), LogError> {
        if self.txn_index.entries.is_empty() {
            return Ok(());
        }
        let path = self.txn_index_path();
        fs::File::open(&path)
            .and_then(|file| file.sync_data())
            .map_err(LogError::io("fsync", &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_kafkas_34_bytes() {
        // Pins TransactionIndex.java / AbortedTxn.java: version i16 0, producerId i64,
        // firstOffset i64, lastOffset i64, lastStableOffset i64, big-endian.
        let entry = AbortedTxn {
            producer_id: 0x0102_0304_0506_0708,
            first_offset: 10,
            last_offset: 20,
            last_stable_offset: 21,
        };
        let bytes = entry.encode();
        let mut expected = vec![0u8, 0];
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(&10i64.to_be_bytes());
        expected.extend_from_slice(&20i64.to_be_bytes());
        expected.extend_from_slice(&21i64.to_be_bytes());
        assert_eq!(bytes.to_vec(), expected);
        assert_eq!(AbortedTxn::decode(&bytes), Ok(entry));
    }

    #[test]
    fn damaged_indexes_are_refused_with_a_reason() {
        let entry = |last_offset: i64| AbortedTxn {
            producer_id: 1,
            first_offset: 100,
            last_offset,
            last_stable_offset: last_offset + 1,
        };
        let good = encode_entries(&[entry(105), entry(110)]);
        assert_eq!(
            decode_entries(&good, 100, 111),
            Ok(vec![entry(105), entry(110)])
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() - 1].to_vec(), "not a multiple"),
            (
                {
                    let mut bad = good.clone();
                    bad[1] = 1;
                    bad
                },
                "version",
            ),
            (good.clone(), "outside the segment"),
            (encode_entries(&[entry(110), entry(105)]), "previous"),
            (
                encode_entries(&[AbortedTxn {
                    first_offset: 106,
                    ..entry(105)
                }]),
                "first offset",
            ),
        ];
        for (i, (bytes, expected)) in cases.into_iter().enumerate() {
            let next_offset = if i == 2 { 110 } else { 111 };
            let error = decode_entries(&bytes, 100, next_offset).expect_err("damaged");
            assert!(error.contains(expected), "{error}");
        }
    }
}
