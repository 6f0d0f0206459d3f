//! The leader-epoch cache: for each leader epoch, the first offset written in it.
//!
//! Invariants: epochs strictly increase and start offsets never decrease along the list. An
//! entry is added when an appended batch carries an epoch higher than the last entry's.
//!
//! Persisted as `leader-epoch-checkpoint` in the partition directory, in Kafka's text format
//! (`LeaderEpochCheckpointFile`), written atomically (temp file, fsync, rename) on every change:
//!
//! ```text
//! 0          <- format version
//! 2          <- number of entries
//! 0 0        <- epoch, start offset
//! 3 1500
//! ```
//!
//! The file is a cache of what the batches say: on open, entries at or beyond the log end
//! offset are dropped, and recovery re-adds epochs found in the batches it scans. An unreadable
//! file is replaced by what recovery finds.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::checkpoint::write_atomically;
use crate::error::LogError;

/// File name of the leader-epoch checkpoint in a partition directory.
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Epoch → start offset, in increasing order.
#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint in `dir`; a missing file is an empty cache, a malformed one too
    /// (with a WARN): the batches are the truth and recovery refills it.
    pub fn load(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
        let entries = match fs::read_to_string(&path) {
            Ok(text) => match parse(&text) {
                Some(entries) => entries,
                None => {
                    tracing::warn!(path = %path.display(), "ignoring malformed leader-epoch checkpoint");
                    Vec::new()
                }
            },
            Err(error) if error.kind() == ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(LogError::Io {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        Ok(LeaderEpochCache { path, entries })
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// The latest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(epoch, _)| epoch)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the latest entry.
    /// Returns whether the cache changed (the caller then persists it).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        assert!(
            self.entries
                .last()
                .is_none_or(|&(_, start)| start <= start_offset),
            "leader epoch {epoch} starts at {start_offset}, before the previous epoch"
        );
        self.entries.push((epoch, start_offset));
        true
    }

    /// Drops entries starting at or after `end_offset` (the log was truncated there).
    /// Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|&(_, start)| start < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// Kafka's OffsetForLeaderEpoch answer: the largest epoch ≤ `epoch` and the end offset of
    /// that epoch (the next epoch's start offset, or the log end offset for the latest one).
    /// An `epoch` older than every entry gets itself and the first entry's start offset, as
    /// Kafka's `LeaderEpochFileCache.endOffsetFor` answers it (the records of that epoch, if
    /// there were any here, are gone: a follower holding some truncates to where this log's
    /// known epochs begin, not to its high watermark). `None` (UNDEFINED) when the cache is
    /// empty or `epoch` is negative.
    pub fn end_offset_for_epoch(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        let after = self.entries.partition_point(|&(e, _)| e <= epoch);
        if after == 0 {
            return self.entries.first().map(|&(_, start)| (epoch, start));
        }
        let (found, _) = self.entries[after - 1];
        let end = self
            .entries
            .get(after)
            .map_or(log_end_offset, |&(_, start)| start);
        Some((found, end))
    }

    /// Writes the checkpoint atomically.
    pub fn persist(&self) -> Result<(), LogError> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            text.push_str(&format!("{epoch} {start}\n"));
        }
        write_atomically(&self.path, text.as_bytes())
    }
}

fn parse(text: &str) -> Option<Vec<(i32, i64)>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries: Vec<(i32, i64)> = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let mut fields = lines.next()?.split_whitespace();
        let epoch: i32 = fields.next()?.parse().ok()?;
        let start: i64 = fields.next()?.parse().ok()?;
        if let Some(&(last_epoch, last_start)) = entries.last() {
            if epoch <= last_epoch || start < last_start {
                return None;
            }
        }
        entries.push((epoch, start));
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigns_truncates_persists_and_answers_end_offsets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cache = LeaderEpochCache::load(dir.path()).expect("load");
        assert!(cache.assign(0, 0));
        assert!(!cache.assign(0, 5));
        assert!(cache.assign(2, 10));
        assert!(cache.assign(5, 20));
        cache.persist().expect("persist");
        let text = fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).expect("read");
        assert_eq!(text, "0\n3\n0 0\n2 10\n5 20\n");
        let cache = LeaderEpochCache::load(dir.path()).expect("reload");
        assert_eq!(cache.entries(), &[(0, 0), (2, 10), (5, 20)]);
        assert_eq!(cache.end_offset_for_epoch(0, 30), Some((0, 10)));
        assert_eq!(cache.end_offset_for_epoch(-1, 30), None, "UNDEFINED");
        assert_eq!(cache.end_offset_for_epoch(1, 30), Some((0, 10)));
        assert_eq!(cache.end_offset_for_epoch(2, 30), Some((2, 20)));
        assert_eq!(cache.end_offset_for_epoch(9, 30), Some((5, 30)));
        // Kafka's answer for an epoch older than any known: itself, where the known begin.
        let mut later = LeaderEpochCache::load(&dir.path().join("none")).expect("load");
        assert_eq!(later.end_offset_for_epoch(0, 30), None, "empty: UNDEFINED");
        assert!(later.assign(3, 12));
        assert_eq!(later.end_offset_for_epoch(1, 30), Some((1, 12)));
        let mut cache = cache;
        assert!(cache.truncate_from_end(10));
        assert_eq!(cache.entries(), &[(0, 0)]);
        assert_eq!(
            LeaderEpochCache::load(dir.path())
                .map(|c| c.entries.len())
                .ok(),
            Some(3)
        );
    }

    #[test]
    fn malformed_checkpoint_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE),
            "0\n2\n3 10\n1 20\n",
        )
        .expect("w");
        assert!(LeaderEpochCache::load(dir.path())
            .expect("load")
            .entries()
            .is_empty());
    }
}
