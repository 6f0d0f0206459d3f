//! `log.flush.syncfs`: one `syncfs(2)` per filesystem per flusher pass, instead of one
//! `fdatasync` per partition (and a directory fsync after each roll).
//!
//! Owns the checks that make the mode safe to turn on and the grouping of a pass's partitions
//! by log directory. The flusher ([`crate::flusher`]) still writes every partition's appends
//! out (the `O_DIRECT` writes) before the call, and marks a partition durable only when the
//! `syncfs` of its filesystem returned 0.
//!
//! Why it is cheaper: each `fdatasync` commits the ext4 journal and sends the device a cache
//! flush of its own, so a pass over six partitions paid six of each; `syncfs` writes back every
//! dirty inode of the filesystem and pays one (measured in docs/benchmarks.md).
//!
//! What it costs, and why it is opt-in: `syncfs` also writes back whatever *other* programs
//! left dirty on the same filesystem, so on a shared disk a pass can take as long as their
//! writeback. It is only as durable as `fdatasync` where the kernel says so:
//! - Linux ≥ 5.8, where `syncfs` returns writeback errors (before, it returned 0 after a failed
//!   write, and an acknowledged record could be lost without a word);
//! - ext4, whose `sync_fs` commits the journal and sends a cache flush even when there is no
//!   journal transaction to commit (`ext4_sync_fs`). Other filesystems differ (XFS forces its
//!   log, which issues no flush when the log is idle), so the broker refuses to start with the
//!   setting on any other filesystem rather than assume.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// ext4's `f_type` in `statfs(2)` (`EXT4_SUPER_MAGIC`, shared with ext2 and ext3).
const EXT4_SUPER_MAGIC: i64 = 0xEF53;
/// The first kernel whose `syncfs` reports writeback errors (commit 735e4ae5ba28).
const KERNEL_WITH_SYNCFS_ERRORS: (u32, u32) = (5, 8);

/// Why `log.flush.syncfs=true` cannot be honoured here.
#[derive(Debug, thiserror::Error)]
pub enum SyncfsUnsupported {
    #[error(
        "log.flush.syncfs needs Linux 5.8 or later (syncfs reports write errors from 5.8 on); \
         this kernel is {0}"
    )]
    Kernel(String),
    #[error(
        "log.flush.syncfs is only durable on ext4; {dir} is on a filesystem of type {f_type:#x}"
    )]
    Filesystem { dir: PathBuf, f_type: i64 },
    #[error("log.flush.syncfs: cannot inspect {dir}: {source}")]
    Inspect { dir: PathBuf, source: io::Error },
}

/// Checks the kernel and that every log directory is on ext4.
pub fn check_supported<'a>(
    log_dirs: impl IntoIterator<Item = &'a Path>,
) -> Result<(), SyncfsUnsupported> {
    let release = kernel_release();
    if parse_kernel_version(&release).is_none_or(|version| version < KERNEL_WITH_SYNCFS_ERRORS) {
        return Err(SyncfsUnsupported::Kernel(release));
    }
    for dir in log_dirs {
        let f_type = filesystem_type(dir).map_err(|source| SyncfsUnsupported::Inspect {
            dir: dir.to_path_buf(),
            source,
        })?;
        if f_type != EXT4_SUPER_MAGIC {
            return Err(SyncfsUnsupported::Filesystem {
                dir: dir.to_path_buf(),
                f_type,
            });
        }
    }
    Ok(())
}

/// Calls `syncfs` once for the filesystem of each distinct log directory among
/// `partition_dirs` (a partition directory's parent is its log directory), and returns, for
/// each entry of `partition_dirs` in order, whether its filesystem's call succeeded, and how
/// many calls were made.
pub fn sync_log_dirs_of(partition_dirs: &[&Path]) -> (Vec<io::Result<()>>, usize) {
    let mut by_log_dir: BTreeMap<&Path, Option<io::ErrorKind>> = BTreeMap::new();
    for dir in partition_dirs {
        by_log_dir.entry(log_dir_of(dir)).or_insert(None);
    }
    for (log_dir, failure) in by_log_dir.iter_mut() {
        if let Err(error) = syncfs(log_dir) {
            tracing::error!(dir = %log_dir.display(), %error, "syncfs failed");
            *failure = Some(error.kind());
        }
    }
    let outcomes = partition_dirs
        .iter()
        .map(
            |dir| match by_log_dir.get(log_dir_of(dir)).copied().flatten() {
                None => Ok(()),
                Some(kind) => Err(io::Error::new(kind, "syncfs of the log directory failed")),
            },
        )
        .collect();
    (outcomes, by_log_dir.len())
}

fn log_dir_of(partition_dir: &Path) -> &Path {
    partition_dir.parent().unwrap_or(partition_dir)
}

/// `syncfs(2)` on the filesystem holding `dir`.
pub fn syncfs(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir)?;
    // SAFETY: `handle` is an open descriptor for the duration of the call; syncfs reads no
    // memory of ours.
    let result = unsafe { libc::syncfs(handle.as_raw_fd()) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn filesystem_type(dir: &Path) -> io::Result<i64> {
    let handle = File::open(dir)?;
    // SAFETY: an all-zero `statfs` is a valid value of the plain-data struct, which fstatfs
    // fills; the descriptor is open for the duration of the call.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    let result = unsafe { libc::fstatfs(handle.as_raw_fd(), &mut stats) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between targets.
    Ok(stats.f_type as i64)
}

fn kernel_release() -> String {
    // SAFETY: an all-zero `utsname` is a valid value of the plain-data struct, which uname
    // fills with NUL-terminated strings.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return "unknown".to_string();
    }
    let bytes: Vec<u8> = name
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `"6.18.44-fc"` → `(6, 18)`.
fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse_and_compare() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.8.0"), Some((5, 8)));
        assert_eq!(parse_kernel_version("5.10"), Some((5, 10)));
        assert!(parse_kernel_version("4.19.0-amd64").unwrap() < KERNEL_WITH_SYNCFS_ERRORS);
        assert!(parse_kernel_version("5.10").unwrap() >= KERNEL_WITH_SYNCFS_ERRORS);
        assert_eq!(parse_kernel_version("weird"), None);
    }

    #[test]
    fn partitions_of_one_log_dir_share_one_call_and_its_outcome() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("t-0");
        let b = dir.path().join("t-1");
        std::fs::create_dir(&a).expect("mkdir");
        std::fs::create_dir(&b).expect("mkdir");
        let (outcomes, calls) = sync_log_dirs_of(&[a.as_path(), b.as_path()]);
        assert_eq!(calls, 1);
        assert_eq!(outcomes.len(), 2);
        assert!(outcomes.iter().all(|outcome| outcome.is_ok()));
        // A log directory that vanished fails every partition in it, and only those.
        let gone = dir.path().join("gone").join("t-0");
        let (outcomes, calls) = sync_log_dirs_of(&[a.as_path(), gone.as_path()]);
        assert_eq!(calls, 2);
        assert!(outcomes[0].is_ok());
        assert!(outcomes[1].is_err());
    }
}
