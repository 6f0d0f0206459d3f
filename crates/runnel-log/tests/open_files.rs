//! The partition count does not decide how many file descriptors are open (issue 11, item 5):
//! with the process-wide cache of open segment files set to its minimum, hundreds of partition
//! logs of several segments each are written, read, flushed, closed and reopened through real
//! files, and the process never holds more than the cache's capacity of descriptors beyond
//! what it held before. Before the cache every segment held its `.log` open, so 300 partitions
//! of 3 segments held 900 descriptors.
//!
//! This file is its own test binary (its own process): setting the global capacity here does
//! not affect the crate's other tests.

mod support;

use runnel_log::open_files::{OpenFiles, OPEN_FILES_MIN};
use runnel_log::PartitionLog;
use support::{batch, read_all, small_config};

const NOW: i64 = 1_700_000_000_000;
const PARTITIONS: usize = 300;
const BATCHES: usize = 6;

/// Descriptors this process holds now.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .count()
}

#[test]
fn hundreds_of_partitions_of_several_segments_hold_at_most_the_cache_capacity() {
    let cache = OpenFiles::global();
    cache.set_capacity(OPEN_FILES_MIN);
    let dir = tempfile::tempdir().expect("tempdir");
    let baseline = open_descriptors();
    // Descriptors beyond the cache: the one `read_dir` of /proc/self/fd holds while counting.
    let slack = 2;

    let mut logs: Vec<PartitionLog> = (0..PARTITIONS)
        .map(|p| PartitionLog::open(&dir.path().join(format!("t-{p}")), small_config(400), 0))
        .collect::<Result<_, _>>()
        .expect("open");
    // Round robin, so each append finds its segment evicted by the other partitions'.
    for b in 0..BATCHES {
        for log in &mut logs {
            let mut bytes = batch(3, &format!("b{b}"), 20, NOW + b as i64, None);
            log.append(&mut bytes, 0, NOW).expect("append");
        }
        assert!(open_descriptors() <= baseline + OPEN_FILES_MIN + slack);
    }
    for log in &mut logs {
        assert!(log.segment_count() >= 3, "{} segments", log.segment_count());
        let target = log.flush_target().expect("unflushed data");
        target.sync().expect("fsync through reopened handles");
        log.mark_flushed(target.up_to);
        let end = log.log_end_offset();
        log.set_high_watermark(end);
    }
    for log in &logs {
        assert_eq!(read_all(log, log.log_end_offset()).len(), 3 * BATCHES);
    }
    assert!(open_descriptors() <= baseline + OPEN_FILES_MIN + slack);
    let stats = cache.stats();
    assert!(stats.open <= OPEN_FILES_MIN, "{stats:?}");
    assert!(stats.evictions > 0 && stats.misses > 0, "{stats:?}");
    for log in logs {
        log.close().expect("close");
    }

    // Reopened (recovery reads every active segment, loads the sealed ones): still bounded,
    // and every record is there.
    let logs: Vec<PartitionLog> = (0..PARTITIONS)
        .map(|p| {
            PartitionLog::open(
                &dir.path().join(format!("t-{p}")),
                small_config(400),
                i64::MAX,
            )
        })
        .collect::<Result<_, _>>()
        .expect("reopen");
    assert!(open_descriptors() <= baseline + OPEN_FILES_MIN + slack);
    for log in &logs {
        assert_eq!(read_all(log, log.log_end_offset()).len(), 3 * BATCHES);
    }
    assert!(open_descriptors() <= baseline + OPEN_FILES_MIN + slack);
}
