//! Idempotent producer state of one partition, with Kafka's rules (`ProducerStateManager`,
//! `ProducerAppendInfo`).
//!
//! For each producer id we keep its epoch and the metadata of its last
//! [`PRODUCER_BATCHES_CACHED`] batches (first/last sequence, first/last offset, max timestamp).
//! A batch with a producer id ≥ 0 is checked before it is written:
//!
//! - same epoch, same first and last sequence as a cached batch → duplicate: nothing is written
//!   and the cached offsets are returned;
//! - epoch lower than the current one → `InvalidProducerEpoch`;
//! - epoch higher: the first sequence must be 0 (else `OutOfOrderSequence`), then the entry
//!   resets;
//! - same epoch: the first sequence must be the last sequence + 1, wrapping from `i32::MAX` to
//!   0 (else `OutOfOrderSequence`);
//! - unknown producer id: any sequence is accepted (KIP-360).
//!
//! Invariant: the state equals what replaying every batch header of the log from its start
//! would give. It is rebuilt that way when no snapshot helps.
//!
//! # Snapshot file format
//!
//! `<20-digit offset>.snapshot`: the state after every batch below `offset`. Big-endian:
//!
//! | size | field                                                           |
//! |-----:|-----------------------------------------------------------------|
//! |    4 | magic `RNPS`                                                    |
//! |    2 | version (1)                                                     |
//! |    4 | CRC-32C of every byte after this field                          |
//! |    8 | offset (equals the file name's)                                 |
//! |    4 | producer count                                                  |
//! |      | per producer: producer id (8), epoch (2), batch count (1), then |
//! |      | per batch: first seq (4), last seq (4), first offset (8), last offset (8), max timestamp (8) |
//!
//! Written atomically (temp file, fsync, rename, fsync dir) at segment roll and close. A file
//! that is short, has trailing bytes, a wrong magic, version or CRC is ignored.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use runnel_protocol::record_batch::BatchHeader;

use crate::checkpoint::{write_atomically, write_atomically_leaving_dir};
use crate::error::{AppendError, LogError};

/// Batches remembered per producer for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`, matching `max.in.flight.requests.per.connection` ≤ 5).
pub const PRODUCER_BATCHES_CACHED: usize = 5;
/// File name suffix of producer state snapshots.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";

const SNAPSHOT_MAGIC: &[u8; 4] = b"RNPS";
const SNAPSHOT_VERSION: u16 = 1;
const SNAPSHOT_HEADER_SIZE: usize = 4 + 2 + 4;
const SNAPSHOT_BATCH_SIZE: usize = 4 + 4 + 8 + 8 + 8;

/// Metadata of one appended batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// What we know of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Last batches, oldest first, at most [`PRODUCER_BATCHES_CACHED`].
    pub batches: VecDeque<BatchMetadata>,
}

/// The verdict on a batch before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerCheck {
    /// Not idempotent, or in sequence: write it.
    Append,
    /// Already written: answer with these offsets, write nothing.
    Duplicate(BatchMetadata),
}

/// Idempotent producer state of one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of producer ids with state.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Every producer id with state and its entry, by producer id (Kafka's
    /// `ProducerStateManager.activeProducers`).
    pub fn producers(&self) -> Vec<(i64, &ProducerEntry)> {
        let mut producers: Vec<(i64, &ProducerEntry)> = self
            .producers
            .iter()
            .map(|(id, entry)| (*id, entry))
            .collect();
        producers.sort_unstable_by_key(|(id, _)| *id);
        producers
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Each producer's newest batch's last offset, by producer id.
    pub fn last_batch_offsets(&self) -> HashMap<i64, i64> {
        self.producers
            .iter()
            .filter_map(|(id, entry)| Some((*id, entry.batches.back()?.last_offset)))
            .collect()
    }

    /// Checks a batch against the producer's state without changing it.
    pub fn check(&self, header: &BatchHeader) -> Result<ProducerCheck, AppendError> {
        if !header.has_producer_id() {
            return Ok(ProducerCheck::Append);
        }
        let producer_id = header.producer_id;
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(ProducerCheck::Append);
        };
        let first = header.base_sequence;
        let last = header.last_sequence();
        if header.producer_epoch == entry.epoch {
            if let Some(cached) = entry
                .batches
                .iter()
                .find(|b| b.first_sequence == first && b.last_sequence == last)
            {
                return Ok(ProducerCheck::Duplicate(*cached));
            }
        }
        if header.producer_epoch < entry.epoch {
            return Err(AppendError::InvalidProducerEpoch {
                producer_id,
                current_epoch: entry.epoch,
                received_epoch: header.producer_epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            if first != 0 {
                return Err(AppendError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    received: first,
                });
            }
            return Ok(ProducerCheck::Append);
        }
        let Some(previous) = entry.batches.back() else {
            return Ok(ProducerCheck::Append);
        };
        let expected = if previous.last_sequence == i32::MAX {
            0
        } else {
            previous.last_sequence + 1
        };
        if first != expected {
            return Err(AppendError::OutOfOrderSequence {
                producer_id,
                expected,
                received: first,
            });
        }
        Ok(ProducerCheck::Append)
    }

    /// Records a batch that was written (or replayed from the log) with its final offsets.
    pub fn update(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMetadata {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
        });
        while entry.batches.len() > PRODUCER_BATCHES_CACHED {
            entry.batches.pop_front();
        }
    }

    /// Encodes the state as a snapshot taken at `offset` (see the module doc).
    pub fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        let mut body = Vec::new();
        body.extend_from_slice(&offset.to_be_bytes());
        body.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let entry = &self.producers[&id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.push(entry.batches.len() as u8);
            for batch in &entry.batches {
                body.extend_from_slice(&batch.first_sequence.to_be_bytes());
                body.extend_from_slice(&batch.last_sequence.to_be_bytes());
                body.extend_from_slice(&batch.first_offset.to_be_bytes());
                body.extend_from_slice(&batch.last_offset.to_be_bytes());
                body.extend_from_slice(&batch.max_timestamp.to_be_bytes());
            }
        }
        let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER_SIZE + body.len());
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Decodes a snapshot; returns its offset and state, or why it is refused.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<(i64, Self), &'static str> {
        if bytes.len() < SNAPSHOT_HEADER_SIZE + 12 {
            return Err("short file");
        }
        if &bytes[..4] != SNAPSHOT_MAGIC {
            return Err("bad magic");
        }
        if u16::from_be_bytes([bytes[4], bytes[5]]) != SNAPSHOT_VERSION {
            return Err("unknown version");
        }
        let stored = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        let mut body = Reader {
            bytes: &bytes[SNAPSHOT_HEADER_SIZE..],
        };
        if crc32c::crc32c(body.bytes) != stored {
            return Err("CRC mismatch");
        }
        let offset = body.i64()?;
        let count = body.u32()? as usize;
        let mut state = ProducerStateManager::new();
        for _ in 0..count {
            let id = body.i64()?;
            let epoch = body.i16()?;
            let batch_count = usize::from(body.u8()?);
            if batch_count > PRODUCER_BATCHES_CACHED
                || body.bytes.len() < batch_count * SNAPSHOT_BATCH_SIZE
            {
                return Err("bad batch count");
            }
            let mut batches = VecDeque::with_capacity(batch_count);
            for _ in 0..batch_count {
                batches.push_back(BatchMetadata {
                    first_sequence: body.i32()?,
                    last_sequence: body.i32()?,
                    first_offset: body.i64()?,
                    last_offset: body.i64()?,
                    max_timestamp: body.i64()?,
                });
            }
            state.producers.insert(id, ProducerEntry { epoch, batches });
        }
        if !body.bytes.is_empty() {
            return Err("trailing bytes");
        }
        Ok((offset, state))
    }

    /// Writes a snapshot at `offset` into `dir` atomically and keeps only the newest
    /// `keep` snapshots.
    pub fn write_snapshot(&self, dir: &Path, offset: i64, keep: usize) -> Result<(), LogError> {
        let path = snapshot_path(dir, offset);
        write_atomically(&path, &self.encode_snapshot(offset))?;
        self.keep_newest(dir, keep)
    }

    /// [`ProducerStateManager::write_snapshot`] without fsyncing the directory, for a log's
    /// close: losing the new name (or an old snapshot's removal) in a crash leaves older
    /// snapshots, each still a valid picture of the log at its offset, and the replay after
    /// the newest of them gives the same state; the content is fsynced before the rename, so a
    /// name never holds a torn snapshot. A shutdown of many partitions saves two directory
    /// fsyncs per partition this way.
    pub fn write_snapshot_at_close(
        &self,
        dir: &Path,
        offset: i64,
        keep: usize,
    ) -> Result<(), LogError> {
        let path = snapshot_path(dir, offset);
        write_atomically_leaving_dir(&path, &self.encode_snapshot(offset))?;
        self.keep_newest(dir, keep)
    }

    /// Removes all but the newest `keep` snapshots.
    fn keep_newest(&self, dir: &Path, keep: usize) -> Result<(), LogError> {
        let snapshots = list_snapshots(dir)?;
        let excess = snapshots.len().saturating_sub(keep);
        for (_, old) in snapshots.into_iter().take(excess) {
            fs::remove_file(&old).map_err(LogError::io("remove", &old))?;
        }
        Ok(())
    }
}

/// Path of the snapshot at `offset` in `dir`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// Snapshot files in `dir`, oldest first.
pub fn list_snapshots(dir: &Path) -> Result<Vec<(i64, PathBuf)>, LogError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(LogError::io("list", dir))? {
        let entry = entry.map_err(LogError::io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(offset) = name
            .strip_suffix(SNAPSHOT_SUFFIX)
            .and_then(crate::segment::parse_base_offset)
        {
            found.push((offset, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Deletes snapshots taken after `offset` (the log was truncated to `offset`).
pub fn delete_snapshots_after(dir: &Path, offset: i64) -> Result<(), LogError> {
    for (snapshot_offset, path) in list_snapshots(dir)? {
        if snapshot_offset > offset {
            fs::remove_file(&path).map_err(LogError::io("remove", &path))?;
        }
    }
    Ok(())
}

/// Loads the newest valid snapshot whose offset lies in `[min_offset, max_offset]`. Invalid
/// snapshots are skipped with a WARN. Returns `None` when none qualifies.
pub fn load_newest_snapshot(
    dir: &Path,
    min_offset: i64,
    max_offset: i64,
) -> Result<Option<(i64, ProducerStateManager)>, LogError> {
    for (offset, path) in list_snapshots(dir)?.into_iter().rev() {
        if offset > max_offset || offset < min_offset {
            continue;
        }
        let bytes = fs::read(&path).map_err(LogError::io("read", &path))?;
        match ProducerStateManager::decode_snapshot(&bytes) {
            Ok((stored, state)) if stored == offset => return Ok(Some((offset, state))),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "ignoring producer snapshot: offset does not match its name")
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), reason, "ignoring corrupt producer snapshot")
            }
        }
    }
    Ok(None)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        if self.bytes.len() < N {
            return Err("short file");
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[..N]);
        self.bytes = &self.bytes[N..];
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, &'static str> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, &'static str> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, &'static str> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        count: i32,
        base_offset: i64,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 10,
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
            records_count: count,
        }
    }

    #[test]
    fn applies_kafka_sequence_rules() {
        let mut state = ProducerStateManager::new();
        let first = header(7, 0, 0, 3, 0);
        assert_eq!(state.check(&first).ok(), Some(ProducerCheck::Append));
        state.update(&first);
        assert!(
            matches!(state.check(&header(7, 0, 0, 3, 99)), Ok(ProducerCheck::Duplicate(b)) if b.first_offset == 0 && b.last_offset == 2)
        );
        assert!(matches!(
            state.check(&header(7, 0, 4, 1, 3)),
            Err(AppendError::OutOfOrderSequence {
                producer_id: 7,
                expected: 3,
                received: 4
            })
        ));
        assert_eq!(
            state.check(&header(7, 0, 3, 1, 3)).ok(),
            Some(ProducerCheck::Append)
        );
        assert!(matches!(
            state.check(&header(7, 1, 5, 1, 3)),
            Err(AppendError::OutOfOrderSequence {
                expected: 0,
                received: 5,
                ..
            })
        ));
        state.update(&header(7, 2, 0, 1, 3));
        assert!(matches!(
            state.check(&header(7, 1, 0, 1, 4)),
            Err(AppendError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(
            state.check(&header(8, 0, 42, 1, 4)).ok(),
            Some(ProducerCheck::Append)
        );
        let mut wrap = ProducerStateManager::new();
        wrap.update(&header(9, 0, i32::MAX, 1, 0));
        assert_eq!(
            wrap.check(&header(9, 0, 0, 1, 1)).ok(),
            Some(ProducerCheck::Append)
        );
    }

    #[test]
    fn keeps_five_batches_and_round_trips_snapshots() {
        let mut state = ProducerStateManager::new();
        for i in 0..7 {
            state.update(&header(1, 0, i, 1, i64::from(i)));
        }
        state.update(&header(2, 3, 0, 2, 7));
        assert_eq!(
            state.entry(1).map(|e| e.batches.len()),
            Some(PRODUCER_BATCHES_CACHED)
        );
        let bytes = state.encode_snapshot(9);
        let (offset, decoded) = ProducerStateManager::decode_snapshot(&bytes).expect("decode");
        assert_eq!((offset, &decoded), (9, &state));
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            ProducerStateManager::decode_snapshot(&bad),
            Err("CRC mismatch")
        );
        assert!(ProducerStateManager::decode_snapshot(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn writes_keeps_two_and_loads_the_newest_valid_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = ProducerStateManager::new();
        for offset in [10, 20, 30] {
            state.update(&header(offset, 0, 0, 1, offset));
            state.write_snapshot(dir.path(), offset, 2).expect("write");
        }
        let offsets: Vec<i64> = list_snapshots(dir.path())
            .expect("list")
            .iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(offsets, vec![20, 30]);
        fs::write(snapshot_path(dir.path(), 30), b"garbage").expect("corrupt");
        let (offset, loaded) = load_newest_snapshot(dir.path(), 0, 100)
            .expect("load")
            .expect("some");
        assert_eq!((offset, loaded.producer_count()), (20, 2));
        assert!(load_newest_snapshot(dir.path(), 0, 19)
            .expect("load")
            .is_none());
    }
}
