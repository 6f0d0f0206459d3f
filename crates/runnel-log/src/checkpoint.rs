//! Kafka's offset checkpoint files, and the atomic file write every checkpoint uses.
//!
//! `recovery-point-offset-checkpoint` and `log-start-offset-checkpoint` in the data directory
//! are text, exactly as Kafka writes them (`OffsetCheckpointFile`):
//!
//! ```text
//! 0                      <- format version
//! 2                      <- number of entries
//! orders 0 1234          <- topic, partition, offset (single spaces)
//! orders 1 99
//! ```
//!
//! Writes are atomic: the content goes to `<name>.tmp`, is fsynced, renamed over the old file,
//! and the directory is fsynced. A reader therefore sees the old or the new file, never a mix;
//! a leftover `.tmp` is garbage and is ignored here (and removed by partition-dir recovery).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::LogError;

/// Suffix of a file being written atomically; such files are deleted when found at open.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// The only checkpoint format version.
const CHECKPOINT_VERSION: i32 = 0;

/// Reads an offset checkpoint. A missing file is an empty map; a malformed one is an error.
pub fn read_offset_checkpoint(path: &Path) -> Result<HashMap<(String, i32), i64>, LogError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(source) => {
            return Err(LogError::Io {
                op: "read",
                path: path.into(),
                source,
            })
        }
    };
    let corrupt = |reason: String| LogError::Corrupt {
        path: path.into(),
        reason,
    };
    let mut lines = text.lines();
    let version = lines
        .next()
        .ok_or_else(|| corrupt("missing version line".into()))?;
    if version.trim().parse::<i32>().ok() != Some(CHECKPOINT_VERSION) {
        return Err(corrupt(format!("unsupported version {version:?}")));
    }
    let count_line = lines
        .next()
        .ok_or_else(|| corrupt("missing count line".into()))?;
    let count: usize = count_line
        .trim()
        .parse()
        .map_err(|_| corrupt(format!("bad count {count_line:?}")))?;
    let mut entries = HashMap::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let line = lines
            .next()
            .ok_or_else(|| corrupt(format!("expected {count} entries")))?;
        let mut fields = line.split(' ');
        let (Some(topic), Some(partition), Some(offset), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(corrupt(format!("bad entry {line:?}")));
        };
        let partition: i32 = partition
            .parse()
            .map_err(|_| corrupt(format!("bad partition in {line:?}")))?;
        let offset: i64 = offset
            .parse()
            .map_err(|_| corrupt(format!("bad offset in {line:?}")))?;
        if topic.is_empty() {
            return Err(corrupt(format!("empty topic in {line:?}")));
        }
        entries.insert((topic.to_string(), partition), offset);
    }
    if lines.any(|line| !line.trim().is_empty()) {
        return Err(corrupt(format!("more than {count} entries")));
    }
    Ok(entries)
}

/// Writes an offset checkpoint atomically (temp file, fsync, rename, fsync of the directory).
/// Entries are written sorted by topic and partition.
pub fn write_offset_checkpoint(
    path: &Path,
    entries: &HashMap<(String, i32), i64>,
) -> Result<(), LogError> {
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort();
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", sorted.len());
    for ((topic, partition), offset) in sorted {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    write_atomically(path, text.as_bytes())
}

/// Replaces `path` with `bytes` atomically: `<path>.tmp`, fsync, rename, fsync the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    write_atomically_leaving_dir(path, bytes)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// [`write_atomically`] without the directory's fsync: the new name may be lost in a crash
/// (the old file, or none, is then found), never the content under it. For caches whose loss
/// only costs work.
pub(crate) fn write_atomically_leaving_dir(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let temp = temp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(LogError::io("create", &temp))?;
    file.write_all(bytes)
        .map_err(LogError::io("write", &temp))?;
    file.sync_all().map_err(LogError::io("fsync", &temp))?;
    drop(file);
    fs::rename(&temp, path).map_err(LogError::io("rename", &temp))
}

/// Fsyncs a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(LogError::io("fsync directory", dir))
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("recovery-point-offset-checkpoint");
        assert!(read_offset_checkpoint(&path).expect("missing").is_empty());
        let mut entries = HashMap::new();
        entries.insert(("orders".to_string(), 0), 1234);
        entries.insert(("my-topic".to_string(), 7), 0);
        write_offset_checkpoint(&path, &entries).expect("write");
        assert_eq!(read_offset_checkpoint(&path).expect("read"), entries);
        let text = fs::read_to_string(&path).expect("text");
        assert_eq!(text, "0\n2\nmy-topic 7 0\norders 0 1234\n");
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn malformed_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        for bad in [
            "",
            "1\n0\n",
            "0\n2\nt 0 1\n",
            "0\nx\n",
            "0\n1\nt zero 1\n",
            "0\n1\nt 0 1 2\n",
        ] {
            fs::write(&path, bad).expect("write");
            assert!(
                matches!(read_offset_checkpoint(&path), Err(LogError::Corrupt { .. })),
                "{bad:?} should be refused"
            );
        }
    }
}
