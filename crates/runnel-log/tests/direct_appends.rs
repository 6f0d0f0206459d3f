//! Direct appends (`direct_io.rs`, "Direct appends" in `segment.rs`) through real files: what
//! the tail holds, what reaches the file and when, the zero padding, and what a crash keeps.

mod support;

use std::fs;
use std::sync::atomic::Ordering;

use runnel_log::direct_io::{self, BLOCK_BYTES};
use runnel_log::segment::segment_file_path;
use runnel_log::{LogConfig, PartitionLog};
use support::{batch, read_all};

const NOW: i64 = 1_700_000_000_000;

fn direct_config() -> LogConfig {
    LogConfig {
        direct_appends: true,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn active_file_len(log: &PartitionLog) -> u64 {
    let base = *log.segment_base_offsets().last().expect("a segment");
    fs::metadata(segment_file_path(log.dir(), base, ".log"))
        .expect("stat")
        .len()
}

/// Appends `count` batches of 3 records of `value_bytes` each.
fn append(log: &mut PartitionLog, first: usize, count: usize, value_bytes: usize) {
    for i in first..first + count {
        let mut bytes = batch(3, &format!("b{i}"), value_bytes, NOW, None);
        log.append(&mut bytes, 0, NOW).expect("append");
    }
}

fn flush(log: &mut PartitionLog) {
    if let Some(target) = log.prepare_flush().expect("write out") {
        target.sync().expect("fsync");
        log.mark_flushed(target.up_to);
    }
}

#[test]
fn appends_wait_in_the_tail_until_a_flush_writes_them_with_padding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(&dir.path().join("t-0"), direct_config(), 0).expect("open");
    let writes_before = direct_io::STATS.writes.load(Ordering::Relaxed);
    let refused_before = direct_io::STATS.refused.load(Ordering::Relaxed);
    append(&mut log, 0, 10, 100);
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(active_file_len(&log), 0, "nothing written before the flush");
    // The offsets are known under the lock, but a fetch reads only what the file holds.
    log.set_high_watermark(30);
    assert!(read_all(&log, 30).is_empty());

    flush(&mut log);
    assert_eq!(log.recovery_point(), 30);
    let size = log.size_bytes();
    let file_len = active_file_len(&log);
    let refused = direct_io::STATS.refused.load(Ordering::Relaxed) > refused_before;
    if refused {
        assert_eq!(file_len, size, "buffered writes where O_DIRECT is refused");
    } else {
        assert!(direct_io::STATS.writes.load(Ordering::Relaxed) > writes_before);
        assert_eq!(
            file_len,
            size.div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64
        );
        let bytes = fs::read(segment_file_path(log.dir(), 0, ".log")).expect("read");
        assert!(
            bytes[size as usize..].iter().all(|&b| b == 0),
            "zero padding"
        );
    }
    let records = read_all(&log, 30);
    assert_eq!(records.len(), 30);
    assert_eq!(records[29].0, 29);

    // More appends rewrite the partial block with more bytes, and reads still see all.
    append(&mut log, 10, 10, 100);
    flush(&mut log);
    let records = read_all(&log, 60);
    assert_eq!(records.len(), 60);
    assert!(records.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    // Closing cuts the padding.
    let size = log.size_bytes();
    let path = dir.path().join("t-0");
    log.close().expect("close");
    let file_len = fs::metadata(segment_file_path(&path, 0, ".log"))
        .expect("stat")
        .len();
    assert_eq!(file_len, size);
    let log = PartitionLog::open(&path, direct_config(), 60).expect("reopen");
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(read_all(&log, 60).len(), 60);
}

/// A fetch may ask for any offset up to the log end while appends still wait in the tail: at a
/// batch in the tail or at the end, it gets an empty read (and a debug build does not trip the
/// slice's bound check: a read of nothing has no file range to check). The history run found
/// this: a consumer or follower fetching at the end of a freshly appended log, between the
/// append and the flusher's write.
#[test]
fn reads_inside_and_at_the_end_of_an_unwritten_tail_are_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(&dir.path().join("t-0"), direct_config(), 0).expect("open");
    append(&mut log, 0, 4, 100);
    flush(&mut log);
    append(&mut log, 4, 4, 100);
    for offset in [12, 13, 20, 23, 24] {
        let slice = log.read(offset, 1 << 20, 24, true).expect("read");
        assert!(slice.is_empty(), "offset {offset}");
        assert_eq!(slice.next_offset, offset);
    }
    // What the file holds is read as before; the rest once it is written.
    assert_eq!(read_all(&log, 24).len(), 12);
    flush(&mut log);
    assert_eq!(read_all(&log, 24).len(), 24);
}

#[test]
fn a_crash_keeps_what_was_flushed_and_drops_the_padding_as_no_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, direct_config(), 0).expect("open");
    append(&mut log, 0, 7, 333);
    flush(&mut log);
    let flushed = log.recovery_point();
    assert_eq!(flushed, 21);
    // Appended but never written out: lost by the crash, and never acknowledged.
    append(&mut log, 7, 5, 333);
    drop(log);
    let log = PartitionLog::open(&path, direct_config(), flushed).expect("recover");
    assert_eq!(log.log_end_offset(), flushed);
    assert!(log.damaged_ranges().is_empty());
    assert_eq!(active_file_len(&log), log.size_bytes(), "padding cut");
    assert_eq!(read_all(&log, flushed).len(), 21);
}

#[test]
fn a_full_tail_is_written_out_by_the_append_and_rolls_seal_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-0");
    let config = LogConfig {
        segment_bytes: 3 * direct_io::TAIL_BYTES_MAX as u64,
        ..direct_config()
    };
    let mut log = PartitionLog::open(&path, config.clone(), 0).expect("open");
    // About 64 KiB per batch: the tail fills and is written out by appends, then rolls.
    append(&mut log, 0, 200, 21_000);
    assert!(log.segment_count() >= 2, "rolled: {}", log.segment_count());
    flush(&mut log);
    // Sealed segments end at their last batch; only the active one may end with padding.
    let bases = log.segment_base_offsets();
    let lens: Vec<u64> = bases
        .iter()
        .map(|base| {
            fs::metadata(segment_file_path(&path, *base, ".log"))
                .expect("stat")
                .len()
        })
        .collect();
    let sealed: u64 = lens[..lens.len() - 1].iter().sum();
    let active_size = log.size_bytes() - sealed;
    let active_len = lens[lens.len() - 1];
    assert!(active_len >= active_size && active_len - active_size < BLOCK_BYTES as u64);
    flush(&mut log);
    assert_eq!(read_all(&log, 600).len(), 600);
    drop(log);
    let log = PartitionLog::open(&path, config, 600).expect("recover");
    assert_eq!(log.log_end_offset(), 600);
    assert!(log.damaged_ranges().is_empty());
}

#[test]
fn truncation_in_direct_mode_keeps_the_prefix_and_appends_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, direct_config(), 0).expect("open");
    append(&mut log, 0, 10, 50);
    flush(&mut log);
    append(&mut log, 10, 4, 50);
    log.truncate_to(16).expect("truncate");
    assert_eq!(log.log_end_offset(), 15);
    append(&mut log, 20, 2, 50);
    flush(&mut log);
    let records = read_all(&log, 21);
    assert_eq!(records.len(), 21);
    assert!(records.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    drop(log);
    let log = PartitionLog::open(&path, direct_config(), 21).expect("recover");
    assert_eq!(log.log_end_offset(), 21);
}

#[test]
fn an_idle_tail_lets_go_of_its_partial_block_and_the_next_append_reads_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, direct_config(), 0).expect("open");
    append(&mut log, 0, 5, 333);
    flush(&mut log);
    log.release_idle_tail(); // appended since the last call: kept
    append(&mut log, 5, 1, 333);
    flush(&mut log);
    log.release_idle_tail(); // kept again
    log.release_idle_tail(); // idle since: released
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(read_all(&log, 18).len(), 18, "reads come from the file");
    // The next appends continue the partial block read back from the file.
    append(&mut log, 6, 4, 333);
    flush(&mut log);
    log.set_high_watermark(log.log_end_offset());
    let records = read_all(&log, 30);
    assert_eq!(records.len(), 30);
    assert!(records.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    drop(log); // a crash: the file has the padding, recovery keeps every flushed batch
    let log = PartitionLog::open(&path, direct_config(), 30).expect("recover");
    assert_eq!(log.log_end_offset(), 30);
    assert!(log.damaged_ranges().is_empty());
    assert_eq!(read_all(&log, 30).len(), 30);
}

#[test]
fn a_reopened_log_reads_its_partial_block_at_the_first_append_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(&path, direct_config(), 0).expect("open");
    append(&mut log, 0, 7, 333);
    log.close().expect("close");
    let mut log = PartitionLog::open(&path, direct_config(), 21).expect("reopen");
    append(&mut log, 7, 3, 333);
    flush(&mut log);
    drop(log);
    let log = PartitionLog::open(&path, direct_config(), 30).expect("recover");
    assert_eq!(log.log_end_offset(), 30);
    let records = read_all(&log, 30);
    assert_eq!(records.len(), 30);
    assert!(records.iter().enumerate().all(|(i, r)| r.0 == i as i64));
}
