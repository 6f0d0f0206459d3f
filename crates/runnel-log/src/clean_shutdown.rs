//! The clean-shutdown marker of a log directory: `.kafka_cleanshutdown` (Kafka's
//! `LogLoader.CleanShutdownFile`), and what a start does with it.
//!
//! # Format
//! One line of text, `version 0\n`. Only a file with exactly that content counts; anything
//! else (a torn write, another program's file) is an unclean shutdown, reported at WARN.
//!
//! # Protocol
//! - Written ([`write_marker`]: temp file, fsync, rename, fsync of the directory) only after
//!   every partition of the directory was flushed and closed and its checkpoints written, on an
//!   orderly shutdown: its presence says every log there ends exactly where its index files and
//!   checkpoints say.
//! - Taken at start ([`take_marker`]) before anything in the directory is written: read, then
//!   removed and the removal fsynced, so that a crash at any later point (during recovery
//!   itself, too) finds no marker at the next start.
//!
//! # What a clean start skips
//! [`LastShutdown::Clean`] lets [`crate::PartitionLog::open_after`] trust the active segment's
//! index files as a sealed segment's (Kafka's `LogLoader` does no recovery after a clean
//! shutdown): the CRC scan covers only the batch of the last offset-index entry and what
//! follows it (at most about `index.interval.bytes` plus a batch), not the whole segment. A
//! damaged tail (a torn or flipped last batch, garbage after it) is still found and cut there;
//! damage earlier in the active segment is left to readers' CRC checks, as for sealed segments.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use crate::checkpoint::{sync_dir, write_atomically};
use crate::error::LogError;

/// The marker's file name in a log directory (Kafka's).
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";

/// The marker's only content.
const MARKER_CONTENT: &str = "version 0\n";

/// How the last process using a log directory ended, as its marker tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastShutdown {
    /// Orderly: every log was flushed and closed, its index files written.
    Clean,
    /// A crash, kill -9, power loss, a failed close, or a directory never used before.
    Unclean,
}

/// Writes the marker in `dir` atomically and durably.
pub fn write_marker(dir: &Path) -> Result<(), LogError> {
    write_atomically(&dir.join(CLEAN_SHUTDOWN_FILE), MARKER_CONTENT.as_bytes())
}

/// Reads and removes the marker of `dir` (the removal fsynced), and a leftover temp file of
/// an interrupted [`write_marker`].
pub fn take_marker(dir: &Path) -> Result<LastShutdown, LogError> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    let temp = dir.join(format!(
        "{CLEAN_SHUTDOWN_FILE}{}",
        crate::checkpoint::TEMP_SUFFIX
    ));
    let removed_temp = remove_if_present(&temp)?;
    let content = match fs::read(&path) {
        Ok(content) => Some(content),
        Err(error) if error.kind() == ErrorKind::NotFound => None,
        Err(source) => {
            return Err(LogError::Io {
                op: "read",
                path,
                source,
            })
        }
    };
    let last = match &content {
        Some(content) if content.as_slice() == MARKER_CONTENT.as_bytes() => LastShutdown::Clean,
        Some(content) => {
            tracing::warn!(path = %path.display(), bytes = content.len(),
                "unexpected content in the clean-shutdown marker; recovering as after a crash");
            LastShutdown::Unclean
        }
        None => LastShutdown::Unclean,
    };
    if content.is_some() {
        remove_if_present(&path)?;
    }
    if content.is_some() || removed_temp {
        sync_dir(dir)?;
    }
    Ok(last)
}

fn remove_if_present(path: &Path) -> Result<bool, LogError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
        Err(source) => Err(LogError::Io {
            op: "remove",
            path: path.into(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_taken_once_and_anything_else_is_unclean() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            take_marker(dir.path()).expect("none"),
            LastShutdown::Unclean
        );
        write_marker(dir.path()).expect("write");
        assert_eq!(
            fs::read_to_string(dir.path().join(CLEAN_SHUTDOWN_FILE)).expect("read"),
            "version 0\n"
        );
        assert_eq!(take_marker(dir.path()).expect("take"), LastShutdown::Clean);
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert_eq!(
            take_marker(dir.path()).expect("again"),
            LastShutdown::Unclean
        );
        for bad in ["", "version 0", "version 1\n"] {
            fs::write(dir.path().join(CLEAN_SHUTDOWN_FILE), bad).expect("write");
            assert_eq!(take_marker(dir.path()).expect("bad"), LastShutdown::Unclean);
            assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists(), "{bad:?}");
        }
        fs::write(dir.path().join(".kafka_cleanshutdown.tmp"), "version").expect("write");
        assert_eq!(
            take_marker(dir.path()).expect("temp"),
            LastShutdown::Unclean
        );
        assert!(!dir.path().join(".kafka_cleanshutdown.tmp").exists());
    }
}
