//! Damage below the recovery point is isolated, not spread (issue 11, item 4): real segment
//! files damaged on a closed log, then reopened. Before the fix, a segment cut short below the
//! recovery point made recovery delete every later segment, and a missing segment or garbage
//! in an old one was served silently.

mod support;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use runnel_log::open_files::{OpenFiles, OPEN_FILES_MIN};
use runnel_log::scrub::{scrub_step, ScrubCursor, ScrubStep};
use runnel_log::segment::segment_file_path;
use runnel_log::{DamagedRange, PartitionLog, ReadError, DAMAGED_SEGMENTS_FILE};
use support::{batch, read_all, small_config};

const NOW: i64 = 1_700_000_000_000;
/// Three records of 20 bytes per batch, segments of 700 bytes: 4 batches (12 offsets) each.
const SEGMENT_BYTES: u64 = 700;

/// A closed log of `batches` batches of 3 records, four batches a segment; returns the
/// segment bases and the log end offset, which is the checkpointed recovery point.
fn closed_log(dir: &Path, batches: usize) -> (Vec<i64>, i64) {
    let mut log = PartitionLog::open(dir, small_config(SEGMENT_BYTES), 0).expect("open");
    for i in 0..batches {
        let mut bytes = batch(3, &format!("b{i}"), 20, NOW, None);
        log.append(&mut bytes, 0, NOW).expect("append");
    }
    let bases = log.segment_base_offsets();
    let end = log.log_end_offset();
    log.close().expect("close");
    (bases, end)
}

fn reopen(dir: &Path, recovery_point: i64) -> PartitionLog {
    let mut log =
        PartitionLog::open(dir, small_config(SEGMENT_BYTES), recovery_point).expect("reopen");
    log.set_high_watermark(i64::MAX);
    log
}

fn log_file(dir: &Path, base: i64) -> std::path::PathBuf {
    segment_file_path(dir, base, ".log")
}

fn values_between(all: &[(i64, String)], from: i64, to: i64) -> Vec<(i64, String)> {
    all.iter()
        .filter(|(offset, _)| (from..to).contains(offset))
        .cloned()
        .collect()
}

/// Reads from `offset` and returns the first offset it answers with, or the error.
fn first_offset_read(log: &PartitionLog, offset: i64) -> Result<Option<i64>, ReadError> {
    let slice = log.read(offset, 1 << 20, log.high_watermark(), true)?;
    if slice.is_empty() {
        return Ok(None);
    }
    let bytes = slice.read_bytes().expect("pread");
    Ok(support::decode(&bytes).first().map(|(o, _)| *o))
}

fn assert_refused(log: &PartitionLog, offset: i64, range: &DamagedRange) {
    match log.read(offset, 1 << 20, log.high_watermark(), true) {
        Err(ReadError::Damaged {
            offset: refused,
            start_offset,
            end_offset,
        }) => {
            assert_eq!(refused, offset);
            assert_eq!(
                (start_offset, end_offset),
                (range.start_offset, range.end_offset)
            );
        }
        other => panic!("a read at {offset} inside {range:?} answered {other:?}"),
    }
}

#[test]
fn a_segment_cut_short_below_the_recovery_point_keeps_every_later_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bases, end) = closed_log(dir.path(), 36);
    assert_eq!(bases.len(), 9, "{bases:?}");
    let expected = read_all(&reopen(dir.path(), end), end);
    // Cut the second segment in the middle of its second batch.
    let second = log_file(dir.path(), bases[1]);
    let length = fs::metadata(&second).expect("stat").len();
    OpenOptions::new()
        .write(true)
        .open(&second)
        .and_then(|f| f.set_len(length / 2))
        .expect("cut");

    let log = reopen(dir.path(), end);
    assert_eq!(log.segment_base_offsets(), bases, "no segment deleted");
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(
        fs::metadata(&second).expect("stat").len(),
        length / 2,
        "file left as it was"
    );
    let ranges = log.damaged_ranges().to_vec();
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    let range = &ranges[0];
    assert_eq!(range.segment_base_offset, bases[1]);
    assert!(range.start_offset > bases[1] && range.start_offset < bases[2]);
    assert_eq!(range.end_offset, bases[2]);

    // Every later segment is there and readable.
    let mut later = Vec::new();
    let mut offset = bases[2];
    while offset < end {
        let slice = log.read(offset, 1 << 20, end, true).expect("read later");
        later.extend(support::decode(&slice.read_bytes().expect("pread")));
        offset = slice.next_offset;
    }
    assert_eq!(later, values_between(&expected, bases[2], end));
    // Inside the range: refused. Below: the records before the gap only. Past: works.
    for offset in range.start_offset..range.end_offset {
        assert_refused(&log, offset, range);
    }
    let before = log.read(bases[1], 1 << 20, end, true).expect("read below");
    assert_eq!(before.next_offset, range.start_offset);
    assert_eq!(
        support::decode(&before.read_bytes().expect("pread")),
        values_between(&expected, bases[1], range.start_offset)
    );
    assert_eq!(
        first_offset_read(&log, range.end_offset).expect("past"),
        Some(bases[2])
    );
    drop(log);

    // Recomputed at the next open too (nothing was rewritten to hide it).
    let log = reopen(dir.path(), end);
    assert_eq!(log.damaged_ranges(), &ranges[..]);
    assert_eq!(log.segment_base_offsets(), bases);
}

#[test]
fn a_missing_middle_segment_is_a_damaged_range_not_a_silent_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bases, end) = closed_log(dir.path(), 40);
    for suffix in [".log", ".index", ".timeindex"] {
        fs::remove_file(segment_file_path(dir.path(), bases[4], suffix)).expect("remove");
    }
    let log = reopen(dir.path(), end);
    let range = DamagedRange {
        start_offset: bases[4],
        end_offset: bases[5],
        segment_base_offset: bases[3],
        position: 0,
        bytes: 0,
        reason: String::new(),
    };
    let found = log.damaged_ranges();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (
            found[0].start_offset,
            found[0].end_offset,
            found[0].segment_base_offset
        ),
        (
            range.start_offset,
            range.end_offset,
            range.segment_base_offset
        )
    );
    // Before the fix a fetch in the hole answered with the first records after it.
    for offset in bases[4]..bases[5] {
        assert_refused(&log, offset, &found[0]);
    }
    let below = log.read(bases[3], 1 << 20, end, true).expect("below");
    assert_eq!(below.next_offset, bases[4]);
    assert_eq!(
        first_offset_read(&log, bases[5]).expect("past"),
        Some(bases[5])
    );
}

#[test]
fn in_a_compacted_log_a_gap_between_segments_is_the_cleaners() {
    // The cleaner drops emptied segments: a gap there is served as Kafka serves a compacted
    // gap, with the next offset present.
    let dir = tempfile::tempdir().expect("tempdir");
    let (bases, end) = closed_log(dir.path(), 40);
    for suffix in [".log", ".index", ".timeindex"] {
        fs::remove_file(segment_file_path(dir.path(), bases[4], suffix)).expect("remove");
    }
    let config = runnel_log::LogConfig {
        compacted: true,
        ..small_config(SEGMENT_BYTES)
    };
    let mut log = PartitionLog::open(dir.path(), config, end).expect("reopen");
    log.set_high_watermark(i64::MAX);
    assert!(log.damaged_ranges().is_empty());
    assert_eq!(
        first_offset_read(&log, bases[4]).expect("gap"),
        Some(bases[5])
    );
}

/// Overwrites 16 bytes in the middle of the second batch of the segment at `base`.
fn garbage_in(dir: &Path, base: i64) {
    let path = log_file(dir, base);
    let length = fs::metadata(&path).expect("stat").len();
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(&[0x5a; 16], length / 2).expect("garbage");
}

fn scrub_all(log: &PartitionLog) -> Vec<(DamagedRange, i64)> {
    let mut found = Vec::new();
    for segment in log.scrub_candidates() {
        let mut cursor = ScrubCursor::start(&segment);
        loop {
            match scrub_step(&segment, &mut cursor, 100).expect("scrub") {
                ScrubStep::Continue { .. } => {}
                ScrubStep::Done { .. } | ScrubStep::Gone => break,
                ScrubStep::Damaged { range, .. } => {
                    found.push((range, segment.next_offset()));
                    break;
                }
            }
        }
    }
    found
}

#[test]
fn garbage_in_an_old_segment_is_found_by_the_scrubber_refused_and_found_again_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bases, end) = closed_log(dir.path(), 40);
    let mut log = reopen(dir.path(), end);
    assert!(scrub_all(&log).is_empty(), "an intact log scrubs clean");
    garbage_in(dir.path(), bases[2]);

    let found = scrub_all(&log);
    assert_eq!(found.len(), 1, "{found:?}");
    let (range, next) = found[0].clone();
    assert_eq!(range.segment_base_offset, bases[2]);
    assert!(range.start_offset > bases[2] && range.end_offset == bases[3]);
    assert!(log.record_damage(range.clone(), next).expect("record"));
    assert!(
        !log.record_damage(range.clone(), next).expect("again"),
        "recorded once"
    );
    for offset in range.start_offset..range.end_offset {
        assert_refused(&log, offset, &range);
    }
    let below = log.read(bases[2], 1 << 20, end, true).expect("below");
    assert_eq!(below.next_offset, range.start_offset);
    assert!(dir.path().join(DAMAGED_SEGMENTS_FILE).exists());
    log.close().expect("close");

    // The next open scans the listed segment with CRC checks and finds the damage again.
    let log = reopen(dir.path(), end);
    let ranges = log.damaged_ranges();
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    assert_eq!(
        (ranges[0].start_offset, ranges[0].end_offset),
        (range.start_offset, range.end_offset)
    );
    assert_eq!(log.segment_base_offsets(), bases);
    assert_refused(&log, range.start_offset, &ranges[0]);
}

#[test]
fn deleting_records_past_a_damaged_range_forgets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bases, end) = closed_log(dir.path(), 40);
    for suffix in [".log", ".index", ".timeindex"] {
        fs::remove_file(segment_file_path(dir.path(), bases[2], suffix)).expect("remove");
    }
    let mut log = reopen(dir.path(), end);
    assert_eq!(log.damaged_ranges().len(), 1);
    log.advance_log_start_offset(bases[3])
        .expect("delete records");
    assert!(log.damaged_ranges().is_empty());
    assert!(!dir.path().join(DAMAGED_SEGMENTS_FILE).exists());
}

/// The scrubber reads through the process-wide open-files cache (`open_files.rs`): copies of
/// segments taken before their handles were evicted still scrub (clean ones clean, the
/// damaged one found), and a copy of a segment deleted since (retention, here DeleteRecords)
/// is gone, not damaged. Before the scrubber read through a pinned handle, the retired
/// segment's refused reopen was reported as damage at position 0.
#[test]
fn scrubbing_goes_through_the_open_files_cache_and_a_deleted_segment_is_not_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bases, end) = closed_log(dir.path(), 40);
    let mut log = reopen(dir.path(), end);
    let candidates = log.scrub_candidates();
    assert!(candidates.len() >= 8, "{} candidates", candidates.len());
    garbage_in(dir.path(), bases[2]);
    // Evict every handle the copies share, as other partitions' opens do in a broker: the
    // cache at its minimum, then three times that many other files opened through it. (The
    // other tests of this binary share the cache; a smaller one only makes them reopen.)
    let cache = OpenFiles::global();
    cache.set_capacity(OPEN_FILES_MIN);
    let others = tempfile::tempdir().expect("tempdir");
    let _fillers: Vec<_> = (0..3 * OPEN_FILES_MIN)
        .map(|i| {
            let path = others.path().join(format!("filler-{i}"));
            fs::write(&path, b"x").expect("write filler");
            cache.open(&path).expect("open filler")
        })
        .collect();
    assert!(candidates.iter().all(|s| !s.segment_file().is_cached()));

    let mut found = Vec::new();
    for segment in &candidates {
        let mut cursor = ScrubCursor::start(segment);
        loop {
            match scrub_step(segment, &mut cursor, 100).expect("scrub after eviction") {
                ScrubStep::Continue { .. } => {}
                ScrubStep::Done { .. } => break,
                ScrubStep::Gone => panic!("segment {} is still in the log", segment.base_offset()),
                ScrubStep::Damaged { range, .. } => {
                    found.push(range.segment_base_offset);
                    break;
                }
            }
        }
    }
    assert_eq!(found, vec![bases[2]], "only the damaged segment is found");

    // DeleteRecords past the first four segments deletes (and retires) them: the copies taken
    // before are gone, not damaged.
    log.advance_log_start_offset(bases[4])
        .expect("delete records");
    for segment in candidates.iter().filter(|s| s.base_offset() < bases[4]) {
        let mut cursor = ScrubCursor::start(segment);
        assert_eq!(
            scrub_step(segment, &mut cursor, 1 << 20).expect("scrub a deleted segment"),
            ScrubStep::Gone
        );
    }
}
