//! Partition log behaviour through real files: append/read, limits, reopen, recovery, indexes,
//! idempotent producers, timestamps, truncation, flushing.

mod support;

use std::fs::{self, OpenOptions};
use std::path::Path;

use runnel_log::segment::segment_file_path;
use runnel_log::{AppendError, LogConfig, PartitionLog, ReadError};
use support::{batch, batch_with_timestamps, read_all, small_config, Producer};

const NOW: i64 = 1_700_000_000_000;

fn append_many(log: &mut PartitionLog, batches: usize, records: usize) {
    for i in 0..batches {
        let mut bytes = batch(records, &format!("b{i}"), 20, NOW + i as i64 * 10, None);
        log.append(&mut bytes, 0, NOW).expect("append");
    }
}

fn expected_values(batches: usize, records: usize) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for b in 0..batches {
        for r in 0..records {
            let mut value = format!("b{b}-{r}");
            while value.len() < 20 {
                value.push('.');
            }
            out.push(((b * records + r) as i64, value));
        }
    }
    out
}

#[test]
fn append_and_read_round_trip_over_several_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(&dir.path().join("t-0"), small_config(600), 0).expect("open");
    assert_eq!((log.log_end_offset(), log.segment_count()), (0, 1));
    for i in 0..30 {
        let mut bytes = batch(3, &format!("b{i}"), 20, NOW, None);
        let outcome = log.append(&mut bytes, 0, NOW).expect("append");
        assert_eq!(
            (outcome.base_offset, outcome.last_offset, outcome.duplicate),
            (i * 3, i * 3 + 2, false)
        );
    }
    assert_eq!(log.log_end_offset(), 90);
    assert!(
        log.segment_count() > 3,
        "small segments roll: {}",
        log.segment_count()
    );
    log.set_high_watermark(90);
    assert_eq!(read_all(&log, 90), expected_values(30, 3));
    // Every offset reads from the batch containing it.
    for offset in 0..90 {
        let slice = log.read(offset, 1 << 20, 90, true).expect("read");
        assert_eq!(slice.base_offset, offset / 3 * 3);
        let records = support::decode(&slice.read_bytes().expect("pread"));
        assert_eq!(records.first().map(|r| r.0), Some(offset / 3 * 3));
    }
    for base in log.segment_base_offsets() {
        assert!(segment_file_path(log.dir(), base, ".log").exists());
        assert!(segment_file_path(log.dir(), base, ".index").exists());
        assert!(segment_file_path(log.dir(), base, ".timeindex").exists());
    }
}

#[test]
fn reads_honour_max_bytes_whole_batches_min_one_batch_and_max_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(
        dir.path(),
        LogConfig {
            index_interval_bytes: 1,
            ..LogConfig::default()
        },
        0,
    )
    .expect("open");
    append_many(&mut log, 20, 2);
    let one = log.read(0, 1 << 20, 2, true).expect("read").length;
    let whole = log.read(0, 1 << 20, 40, true).expect("read");
    assert_eq!(whole.length, one * 20);
    assert_eq!(whole.next_offset, 40);
    // Smaller than one batch.
    assert!(log.read(0, one - 1, 40, false).expect("read").is_empty());
    let forced = log.read(0, one - 1, 40, true).expect("read");
    assert_eq!((forced.length, forced.next_offset), (one, 2));
    // Two and a half batches: two whole ones.
    let partial = log.read(4, one * 5 / 2, 40, false).expect("read");
    assert_eq!(
        (partial.base_offset, partial.length, partial.next_offset),
        (4, one * 2, 8)
    );
    // Mid-batch offset starts at the batch.
    assert_eq!(log.read(5, 1 << 20, 40, true).expect("read").base_offset, 4);
    // max_offset (the high watermark) is exclusive and whole batches only.
    let capped = log.read(0, 1 << 20, 11, true).expect("read");
    assert_eq!((capped.length, capped.next_offset), (one * 5, 10));
    assert!(log.read(10, 1 << 20, 11, true).expect("read").is_empty());
    // Bounds.
    assert!(log.read(40, 1 << 20, 40, true).expect("read").is_empty());
    assert!(matches!(
        log.read(41, 100, 40, true),
        Err(ReadError::OffsetOutOfRange {
            offset: 41,
            log_start_offset: 0,
            log_end_offset: 40
        })
    ));
    assert!(matches!(
        log.read(-1, 100, 40, true),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn reopen_after_close_keeps_everything_and_offsets_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-1");
    let mut log = PartitionLog::open(&path, small_config(700), 0).expect("open");
    append_many(&mut log, 12, 3);
    let segments = log.segment_count();
    log.close().expect("close");
    let mut log = PartitionLog::open(&path, small_config(700), 36).expect("reopen");
    assert_eq!(
        (
            log.log_end_offset(),
            log.high_watermark(),
            log.recovery_point()
        ),
        (36, 36, 36)
    );
    assert_eq!(log.segment_count(), segments);
    let mut bytes = batch(2, "late", 20, NOW, None);
    assert_eq!(
        log.append(&mut bytes, 0, NOW).expect("append").base_offset,
        36
    );
    log.set_high_watermark(i64::MAX);
    let all = read_all(&log, log.high_watermark());
    assert_eq!(all.len(), 38);
    assert_eq!(&all[..36], &expected_values(12, 3)[..]);
}

fn log_file_of_last_segment(log: &PartitionLog) -> std::path::PathBuf {
    let base = *log.segment_base_offsets().last().expect("segment");
    segment_file_path(log.dir(), base, ".log")
}

fn crash_with(path: &Path, damage: impl FnOnce(&Path)) -> PartitionLog {
    let mut log = PartitionLog::open(path, small_config(700), 0).expect("open");
    append_many(&mut log, 10, 3);
    let file = log_file_of_last_segment(&log);
    drop(log); // a crash: no close
    damage(&file);
    PartitionLog::open(path, small_config(700), 0).expect("recover")
}

#[test]
fn recovery_truncates_garbage_appended_to_the_last_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = crash_with(dir.path(), |file| {
        let mut bytes = fs::read(file).expect("read");
        bytes.extend_from_slice(&[0xab; 100]);
        fs::write(file, bytes).expect("write");
    });
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(read_all(&log, 30), expected_values(10, 3));
    let mut bytes = batch(1, "next", 20, NOW, None);
    assert_eq!(
        log.append(&mut bytes, 0, NOW).expect("append").base_offset,
        30
    );
}

#[test]
fn recovery_drops_a_last_batch_with_a_flipped_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = crash_with(dir.path(), |file| {
        let mut bytes = fs::read(file).expect("read");
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        fs::write(file, bytes).expect("write");
    });
    assert_eq!(log.log_end_offset(), 27);
    assert_eq!(read_all(&log, 27), expected_values(9, 3));
}

#[test]
fn recovery_drops_a_torn_last_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = crash_with(dir.path(), |file| {
        let len = fs::metadata(file).expect("stat").len();
        OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|f| f.set_len(len - 10))
            .expect("tear");
    });
    assert_eq!(log.log_end_offset(), 27);
    assert_eq!(read_all(&log, 27), expected_values(9, 3));
}

#[test]
fn recovery_deletes_segments_after_a_corrupt_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config(400), 0).expect("open");
    append_many(&mut log, 20, 3);
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 4);
    drop(log);
    // Corrupt the first batch of the second segment.
    let second = segment_file_path(dir.path(), bases[1], ".log");
    let mut bytes = fs::read(&second).expect("read");
    bytes[70] ^= 0xff;
    fs::write(&second, bytes).expect("write");
    let log = PartitionLog::open(dir.path(), small_config(400), 0).expect("recover");
    assert_eq!(log.log_end_offset(), bases[1]);
    assert_eq!(log.segment_count(), 2);
    for later in &bases[2..] {
        assert!(!segment_file_path(dir.path(), *later, ".log").exists());
    }
    let n = bases[1] as usize;
    assert_eq!(
        read_all(&log, bases[1]),
        expected_values(20, 3)[..n].to_vec()
    );
}

#[test]
fn indexes_are_rebuilt_when_deleted_or_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone(), 0).expect("open");
    append_many(&mut log, 40, 3);
    let bases = log.segment_base_offsets();
    log.set_high_watermark(120);
    let expected_ts = log.offset_for_timestamp(NOW + 205).expect("ts");
    assert_eq!(expected_ts, Some((63, NOW + 210)));
    log.close().expect("close");
    fs::remove_file(segment_file_path(dir.path(), bases[0], ".index")).expect("rm");
    fs::write(
        segment_file_path(dir.path(), bases[1], ".index"),
        [0xff; 13],
    )
    .expect("garbage");
    fs::write(
        segment_file_path(dir.path(), bases[2], ".index"),
        [0, 0, 0, 1, 0, 0, 0, 7],
    )
    .expect("lie");
    fs::write(
        segment_file_path(dir.path(), bases[0], ".timeindex"),
        [0x7f; 24],
    )
    .expect("garbage");
    let log = PartitionLog::open(dir.path(), config, 120).expect("reopen");
    assert_eq!(read_all(&log, 120), expected_values(40, 3));
    for offset in 0..120 {
        assert_eq!(
            log.read(offset, 1, 120, true).expect("read").base_offset,
            offset / 3 * 3
        );
    }
    assert_eq!(
        log.offset_for_timestamp(NOW + 205).expect("ts"),
        expected_ts
    );
    assert!(
        fs::metadata(segment_file_path(dir.path(), bases[1], ".index"))
            .expect("stat")
            .len()
            .is_multiple_of(8)
    );
}

fn idempotent(id: i64, epoch: i16, sequence: i32, count: usize) -> Vec<u8> {
    batch(
        count,
        &format!("p{id}-{epoch}-{sequence}"),
        10,
        NOW,
        Some(Producer {
            id,
            epoch,
            sequence,
        }),
    )
}

fn check_producer_rules(log: &mut PartitionLog, base: i64) {
    // Retry of the first batch (id 7, epoch 0, seq 0..3) → original offsets, nothing written.
    let end = log.log_end_offset();
    let outcome = log
        .append(&mut idempotent(7, 0, 0, 3), 0, NOW)
        .expect("dup");
    assert!(outcome.duplicate);
    assert_eq!((outcome.base_offset, outcome.last_offset), (base, base + 2));
    assert_eq!(log.log_end_offset(), end);
    assert!(matches!(
        log.append(&mut idempotent(7, 0, 9, 1), 0, NOW),
        Err(AppendError::OutOfOrderSequence {
            producer_id: 7,
            expected: 5,
            received: 9
        })
    ));
    assert!(matches!(
        log.append(&mut idempotent(8, 2, 0, 1), 0, NOW),
        Err(AppendError::InvalidProducerEpoch {
            producer_id: 8,
            current_epoch: 3,
            received_epoch: 2
        })
    ));
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn idempotent_producers_are_checked_before_and_after_reopen_and_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config(500), 0).expect("open");
    assert_eq!(
        log.append(&mut idempotent(7, 0, 0, 3), 0, NOW)
            .expect("first")
            .base_offset,
        0
    );
    assert!(
        !log.append(&mut idempotent(7, 0, 3, 2), 0, NOW)
            .expect("next")
            .duplicate
    );
    log.append(&mut idempotent(8, 3, 40, 1), 0, NOW)
        .expect("unknown producer: any sequence");
    append_many(&mut log, 6, 2); // rolls segments, writes snapshots
    assert_eq!(log.producer_count(), 2);
    check_producer_rules(&mut log, 0);
    log.close().expect("close");

    // Reopen from the snapshot.
    let mut log = PartitionLog::open(dir.path(), small_config(500), 18).expect("reopen");
    assert_eq!(log.producer_count(), 2);
    check_producer_rules(&mut log, 0);
    let end = log.log_end_offset();
    drop(log);

    // Crash without any snapshot: rebuilt from the log.
    for entry in fs::read_dir(dir.path()).expect("ls") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            fs::remove_file(path).expect("rm");
        }
    }
    let mut log = PartitionLog::open(dir.path(), small_config(500), 0).expect("recover");
    assert_eq!((log.log_end_offset(), log.producer_count()), (end, 2));
    check_producer_rules(&mut log, 0);
    // A new epoch starting at sequence 0 is accepted; a new epoch not at 0 is not.
    assert!(matches!(
        log.append(&mut idempotent(7, 1, 4, 1), 0, NOW),
        Err(AppendError::OutOfOrderSequence { .. })
    ));
    let outcome = log
        .append(&mut idempotent(7, 1, 0, 1), 0, NOW)
        .expect("new epoch");
    assert_eq!(outcome.base_offset, end);
    // A corrupt newest snapshot is ignored.
    log.close().expect("close");
    let newest = fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .max()
        .expect("a snapshot");
    fs::write(&newest, b"RNPS broken").expect("corrupt");
    let mut log = PartitionLog::open(dir.path(), small_config(500), 0).expect("reopen");
    assert!(
        log.append(&mut idempotent(7, 1, 0, 1), 0, NOW)
            .expect("dup")
            .duplicate
    );
    assert!(matches!(
        log.append(&mut idempotent(7, 0, 5, 1), 0, NOW),
        Err(AppendError::InvalidProducerEpoch { .. })
    ));
}

#[test]
fn timestamps_find_the_first_record_at_or_after_and_the_max() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 500,
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone(), 0).expect("open");
    // Offsets 0..3: 100, 300, 200 | 3..5: 400, 150 | 5..8: 500, 500, 120 | 8..9: 450
    for timestamps in [&[100, 300, 200][..], &[400, 150], &[500, 500, 120], &[450]] {
        log.append(
            &mut batch_with_timestamps(timestamps, "t", 50, None),
            0,
            NOW,
        )
        .expect("append");
    }
    assert!(log.segment_count() > 1);
    assert_eq!(
        log.max_timestamp().expect("max"),
        None,
        "nothing below the high watermark yet"
    );
    log.set_high_watermark(9);
    let check = |log: &PartitionLog| {
        assert_eq!(log.offset_for_timestamp(0).expect("ts"), Some((0, 100)));
        assert_eq!(log.offset_for_timestamp(150).expect("ts"), Some((1, 300)));
        assert_eq!(log.offset_for_timestamp(301).expect("ts"), Some((3, 400)));
        assert_eq!(log.offset_for_timestamp(460).expect("ts"), Some((5, 500)));
        assert_eq!(log.offset_for_timestamp(501).expect("ts"), None);
        assert_eq!(log.max_timestamp().expect("max"), Some((5, 500)));
    };
    check(&log);
    // Only offsets below the high watermark count.
    log.set_high_watermark(5);
    assert_eq!(log.offset_for_timestamp(460).expect("ts"), None);
    assert_eq!(log.max_timestamp().expect("max"), Some((3, 400)));
    log.set_high_watermark(4);
    assert_eq!(log.max_timestamp().expect("max"), Some((3, 400)));
    log.set_high_watermark(2);
    assert_eq!(log.max_timestamp().expect("max"), Some((1, 300)));
    assert_eq!(log.offset_for_timestamp(301).expect("ts"), None);
    log.close().expect("close");
    let log = PartitionLog::open(dir.path(), config, 9).expect("reopen");
    check(&log);
}

#[test]
fn truncate_fully_and_start_at_restarts_the_log_beyond_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config(500), 0).expect("open");
    log.append(&mut idempotent(3, 0, 0, 2), 1, NOW)
        .expect("append");
    append_many(&mut log, 5, 3);
    log.set_high_watermark(17);
    assert!(log.segment_count() > 1);

    log.truncate_fully_and_start_at(100)
        .expect("restart at 100");
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark(),
            log.recovery_point(),
            log.segment_count(),
            log.producer_count()
        ),
        (100, 100, 100, 100, 1, 0)
    );
    assert!(log.leader_epochs().is_empty());
    let outcome = log
        .append(&mut batch(1, "x", 20, NOW, None), 4, NOW)
        .expect("append");
    assert_eq!(outcome.base_offset, 100);
    log.close().expect("close");
    let log = PartitionLog::open_at(dir.path(), small_config(500), 0, 100).expect("reopen");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 101));
    assert_eq!(log.leader_epochs(), &[(4, 100)]);
}

#[test]
fn truncate_to_removes_the_tail_and_appends_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config(500), 0).expect("open");
    log.append(&mut idempotent(3, 0, 0, 2), 1, NOW)
        .expect("append");
    append_many(&mut log, 5, 3); // offsets 2..17, epoch 0 (older than 1: not cached)
    log.append(&mut idempotent(3, 0, 2, 2), 2, NOW)
        .expect("append"); // 17..19 epoch 2
    append_many(&mut log, 5, 3); // 19..34
    log.set_high_watermark(34);
    assert_eq!(log.leader_epochs(), &[(1, 0), (2, 17)]);
    let segments = log.segment_count();
    log.mark_flushed(34);

    log.truncate_to(18).expect("truncate mid-batch"); // batch 17..19 goes whole
    assert_eq!(
        (
            log.log_end_offset(),
            log.high_watermark(),
            log.recovery_point()
        ),
        (17, 17, 17)
    );
    assert!(log.segment_count() < segments);
    assert_eq!(log.leader_epochs(), &[(1, 0)]);
    assert_eq!(read_all(&log, 17).len(), 17);
    // Producer state rebuilt: sequence 2 is next again, the truncated batch is no duplicate.
    let outcome = log
        .append(&mut idempotent(3, 0, 2, 2), 3, NOW)
        .expect("re-append");
    assert_eq!((outcome.base_offset, outcome.duplicate), (17, false));
    assert_eq!(log.leader_epochs(), &[(1, 0), (3, 17)]);
    log.close().expect("close");
    let mut log = PartitionLog::open(dir.path(), small_config(500), 19).expect("reopen");
    assert_eq!(log.log_end_offset(), 19);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 17)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 19)));
    log.truncate_to(0).expect("truncate all");
    assert_eq!(
        (
            log.log_end_offset(),
            log.segment_count(),
            log.producer_count()
        ),
        (0, 1, 0)
    );
    assert_eq!(
        log.append(&mut batch(1, "x", 5, NOW, None), 0, NOW)
            .expect("append")
            .base_offset,
        0
    );
}

#[test]
fn flush_target_and_mark_flushed_advance_the_recovery_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config(400), 0).expect("open");
    assert!(log.flush_target().is_none());
    append_many(&mut log, 8, 3);
    let target = log.flush_target().expect("unflushed data");
    assert_eq!(target.up_to, 24);
    assert_eq!(target.files.len(), log.segment_count());
    append_many(&mut log, 1, 3); // arrives while the fsync runs
    target.sync().expect("fsync");
    log.mark_flushed(target.up_to);
    assert_eq!(log.recovery_point(), 24);
    log.mark_flushed(10);
    assert_eq!(log.recovery_point(), 24, "never backwards");
    let target = log.flush_target().expect("the late batch");
    assert_eq!((target.files.len(), target.up_to), (1, 27));
    target.sync().expect("fsync");
    log.mark_flushed(target.up_to);
    assert!(log.flush_target().is_none());
    assert_eq!(log.recovery_point(), 27);
}

#[test]
fn segment_ms_and_index_size_roll_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: 1000,
        index_interval_bytes: 1,
        segment_index_bytes: 24,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config, 0).expect("open");
    log.append(&mut batch(1, "a", 5, NOW, None), 0, NOW)
        .expect("append");
    log.append(&mut batch(1, "b", 5, NOW, None), 0, NOW + 999)
        .expect("append");
    assert_eq!(log.segment_count(), 1);
    log.append(&mut batch(1, "c", 5, NOW, None), 0, NOW + 1000)
        .expect("append");
    assert_eq!(log.segment_count(), 2);
    for i in 0..6 {
        log.append(&mut batch(1, "d", 5, NOW, None), 0, NOW + 1000 + i)
            .expect("append");
    }
    assert!(
        log.segment_count() >= 3,
        "index full rolls: {}",
        log.segment_count()
    );
    assert!(matches!(
        PartitionLog::open(&dir.path().join("x-0"), small_config(100), 0)
            .expect("open")
            .append(&mut batch(5, "big", 50, NOW, None), 0, NOW),
        Err(AppendError::RecordTooLarge { .. })
    ));
}

#[test]
fn leftover_temp_files_are_removed_and_delete_removes_the_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-3");
    let mut log = PartitionLog::open(&path, small_config(500), 0).expect("open");
    append_many(&mut log, 3, 1);
    log.close().expect("close");
    fs::write(path.join("leader-epoch-checkpoint.tmp"), "junk").expect("write");
    fs::write(path.join("00000000000000000099.index"), "orphan").expect("write");
    let log = PartitionLog::open(&path, small_config(500), 0).expect("open");
    assert!(!path.join("leader-epoch-checkpoint.tmp").exists());
    assert!(!path.join("00000000000000000099.index").exists());
    assert_eq!(log.log_end_offset(), 3);
    log.delete().expect("delete");
    assert!(!path.exists());
}
