//! Bounded recovery through real files (`segment/resume.rs`, `clean_shutdown.rs`): after a
//! clean close the active segment is CRC-checked from its last index entry on, which still
//! finds a damaged tail; after a crash the scan resumes at the last index entry below the
//! recovery point, and everything above it is checked as before; the index files the
//! checkpoint task writes grow by appending and are rewritten after a truncation.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use runnel_log::segment::segment_file_path;
use runnel_log::{LastShutdown, LogConfig, PartitionLog};
use support::{batch, read_all};

const NOW: i64 = 1_700_000_000_000;
const RECORDS: usize = 3;

/// One segment for everything, an index entry after every batch or two.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

fn append(log: &mut PartitionLog, from: usize, batches: usize) {
    for i in from..from + batches {
        let mut bytes = batch(RECORDS, &format!("b{i}"), 40, NOW + i as i64, None);
        log.append(&mut bytes, 0, NOW).expect("append");
    }
}

fn flush(log: &mut PartitionLog) {
    if let Some(target) = log.prepare_flush().expect("prepare") {
        target.sync().expect("fsync");
        log.mark_flushed(target.up_to);
    }
}

fn active_log(dir: &Path) -> PathBuf {
    segment_file_path(dir, 0, ".log")
}

/// Byte positions of each batch in the segment file.
fn batch_positions(path: &Path) -> Vec<usize> {
    let bytes = fs::read(path).expect("read");
    let mut positions = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().expect("4")) as usize;
        positions.push(at);
        at += 12 + length;
    }
    positions
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = fs::read(path).expect("read");
    bytes[at] ^= 0x5a;
    fs::write(path, bytes).expect("write");
}

fn open(dir: &Path, recovery_point: i64, last: LastShutdown) -> PartitionLog {
    PartitionLog::open_after(dir, config(), recovery_point, 0, last).expect("open")
}

#[test]
fn a_clean_open_checks_the_tail_from_the_last_index_entry_and_drops_a_corrupt_last_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), 0, LastShutdown::Unclean);
    append(&mut log, 0, 40);
    log.close().expect("close");
    let path = active_log(dir.path());
    let positions = batch_positions(&path);
    let len = fs::metadata(&path).expect("stat").len() as usize;
    flip_byte(&path, len - 3);

    let log = open(dir.path(), 120, LastShutdown::Clean);
    assert_eq!(log.log_end_offset(), 117, "the last batch is dropped");
    assert_eq!(
        fs::metadata(&path).expect("stat").len() as usize,
        positions[39],
        "and cut from the file"
    );
    assert_eq!(read_all(&log, 117).len(), 117);
}

#[test]
fn a_clean_open_trusts_the_active_segment_before_its_last_index_entry() {
    // The bounded work of a clean start: a batch damaged with the broker stopped, before the
    // last index entry, is not looked at (readers' CRC checks see it), exactly as for a sealed
    // segment below the recovery point; an open without the marker scans and cuts there.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), 0, LastShutdown::Unclean);
    append(&mut log, 0, 40);
    log.close().expect("close");
    let path = active_log(dir.path());
    let positions = batch_positions(&path);
    flip_byte(&path, positions[10] + 70);

    let log = open(dir.path(), 120, LastShutdown::Clean);
    assert_eq!(log.log_end_offset(), 120);
    drop(log);
    let log = open(dir.path(), 0, LastShutdown::Unclean);
    assert_eq!(log.log_end_offset(), 30, "a full scan cuts at batch 10");
}

#[test]
fn after_a_crash_everything_above_the_recovery_point_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), 0, LastShutdown::Unclean);
    append(&mut log, 0, 20);
    flush(&mut log);
    let recovery_point = log.recovery_point();
    assert_eq!(recovery_point, 60);
    log.write_index_updates().expect("index files");
    append(&mut log, 20, 10);
    drop(log); // a crash: no close
    let path = active_log(dir.path());
    let positions = batch_positions(&path);
    flip_byte(&path, positions[25] + 70);

    let mut log = open(dir.path(), recovery_point, LastShutdown::Unclean);
    assert_eq!(
        log.log_end_offset(),
        75,
        "cut at the damaged batch above the recovery point"
    );
    assert_eq!(read_all(&log, 75).len(), 75);
    append(&mut log, 25, 1);
    assert_eq!(log.log_end_offset(), 78);
}

#[test]
fn a_crash_with_index_files_older_than_the_log_recovers_every_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), 0, LastShutdown::Unclean);
    append(&mut log, 0, 30);
    flush(&mut log);
    log.write_index_updates().expect("index files");
    let recovery_point = log.recovery_point();
    append(&mut log, 30, 30);
    flush(&mut log);
    drop(log); // a crash after the fsync, before the next checkpoint
    let log = open(dir.path(), recovery_point, LastShutdown::Unclean);
    assert_eq!(log.log_end_offset(), 180);
    assert_eq!(read_all(&log, 180).len(), 180);
    let first = log.read(0, 1, 180, true).expect("read").base_offset;
    assert_eq!(first, 0);
    for offset in [0, 59, 90, 179] {
        let slice = log.read(offset, 1, 180, true).expect("read");
        assert_eq!(slice.base_offset, offset / 3 * 3, "offset {offset}");
    }
}

#[test]
fn index_updates_append_new_entries_and_a_truncation_rewrites_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = segment_file_path(dir.path(), 0, ".index");
    let mut log = open(dir.path(), 0, LastShutdown::Unclean);
    append(&mut log, 0, 10);
    log.write_index_updates().expect("first");
    let first = fs::read(&index).expect("index");
    assert!(!first.is_empty() && first.len().is_multiple_of(8));
    append(&mut log, 10, 10);
    log.write_index_updates().expect("second");
    let second = fs::read(&index).expect("index");
    assert!(second.len() > first.len());
    assert_eq!(second[..first.len()], first[..], "appended, not rewritten");
    log.truncate_to(15).expect("truncate");
    log.write_index_updates().expect("after truncation");
    let third = fs::read(&index).expect("index");
    assert!(third.len() < second.len());
    assert_eq!(third[..], second[..third.len()]);
    // What the files now say is what a clean open trusts.
    log.close().expect("close");
    let log = open(dir.path(), 15, LastShutdown::Clean);
    assert_eq!(log.log_end_offset(), 15);
    assert_eq!(read_all(&log, 15).len(), 15);
}

#[test]
fn a_recovery_that_cuts_the_log_leaves_no_stale_index_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), 0, LastShutdown::Unclean);
    append(&mut log, 0, 20);
    flush(&mut log);
    let recovery_point = log.recovery_point();
    append(&mut log, 20, 10);
    // The index files reach batches that were never fsynced.
    log.write_index_updates().expect("index files");
    drop(log); // a crash that lost the unflushed end of the file
    let path = active_log(dir.path());
    let positions = batch_positions(&path);
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(positions[25] as u64 + 30))
        .expect("tear");

    let mut log = open(dir.path(), recovery_point, LastShutdown::Unclean);
    assert_eq!(log.log_end_offset(), 75);
    let len = fs::metadata(&path).expect("stat").len();
    let index = fs::read(segment_file_path(dir.path(), 0, ".index")).expect("index");
    assert!(index
        .chunks_exact(8)
        .all(|e| { u64::from(u32::from_be_bytes([e[4], e[5], e[6], e[7]])) < len }));
    append(&mut log, 25, 5);
    flush(&mut log);
    drop(log);
    let log = open(dir.path(), recovery_point, LastShutdown::Unclean);
    assert_eq!(log.log_end_offset(), 90);
    assert_eq!(read_all(&log, 90).len(), 90);
}
