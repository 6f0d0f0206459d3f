//! Compaction through real files: the view after passes, tombstones, bounded offset maps,
//! idempotent producers, reads at removed offsets, reopen, and crashes mid-swap.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::*;
use crate::config::LogConfig;
use crate::segment::segment_file_path;

const T0: i64 = 1_700_000_000_000;
const MAP_BYTES: usize = 1 << 20;

/// (offset, key, value) of one record as read back.
type Entry = (i64, Option<String>, Option<String>);

fn keyed_batch(
    records: &[(Option<String>, Option<String>)],
    timestamp: i64,
    producer: Option<(i64, i16, i32)>,
    compression: Compression,
) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.map_or(-1, |p| p.0),
            producer_epoch: producer.map_or(-1, |p| p.1),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: producer.map_or(i as i32, |p| p.2 + i as i32),
            timestamp: timestamp + i as i64,
            key: key.clone().map(Bytes::from),
            value: value.clone().map(Bytes::from),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
    buf.to_vec()
}

fn text(bytes: Option<Bytes>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn decode(bytes: &[u8]) -> Vec<Entry> {
    let mut buf = Bytes::copy_from_slice(bytes);
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("decode")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| (r.offset, text(r.key), text(r.value)))
        .collect()
}

/// Every record from `offset` to the high watermark, by repeated reads.
fn read_from(log: &PartitionLog, mut offset: i64) -> Vec<Entry> {
    let mut out = Vec::new();
    loop {
        let slice = log
            .read(offset, 1 << 16, log.high_watermark(), true)
            .expect("read");
        if slice.is_empty() {
            return out;
        }
        out.extend(
            decode(&slice.read_bytes().expect("pread"))
                .into_iter()
                .filter(|e| e.0 >= offset),
        );
        assert!(slice.next_offset > offset, "reads make progress");
        offset = slice.next_offset;
    }
}

fn read_all(log: &PartitionLog) -> Vec<Entry> {
    read_from(log, log.log_start_offset())
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        compacted: true,
        ..LogConfig::default()
    }
}

fn policy(delete_retention_ms: i64) -> CompactionPolicy {
    CompactionPolicy {
        delete_retention_ms,
        ..CompactionPolicy::default()
    }
}

/// 5,000 records over 50 keys in batches of 5, 10 tombstones (keys k0..k9), 20 null-key
/// records, then a roll and a tail batch in the active segment. Returns the newest timestamp.
fn fill(log: &mut PartitionLog) -> i64 {
    let mut timestamp = T0;
    for b in 0..1_000 {
        let records: Vec<_> = (0..5)
            .map(|r| {
                let i = b * 5 + r;
                (Some(format!("k{}", i % 50)), Some(format!("v{i}")))
            })
            .collect();
        let compression = if b % 3 == 0 {
            Compression::Gzip
        } else {
            Compression::None
        };
        log.append(
            &mut keyed_batch(&records, timestamp, None, compression),
            0,
            timestamp,
        )
        .expect("append");
        timestamp += 5;
    }
    let tombstones: Vec<_> = (0..10).map(|k| (Some(format!("k{k}")), None)).collect();
    log.append(
        &mut keyed_batch(&tombstones, timestamp, None, Compression::None),
        0,
        timestamp,
    )
    .expect("append");
    timestamp += 10;
    let unkeyed: Vec<_> = (0..20).map(|i| (None, Some(format!("n{i}")))).collect();
    log.append(
        &mut keyed_batch(&unkeyed, timestamp, None, Compression::None),
        0,
        timestamp,
    )
    .expect("append");
    timestamp += 20;
    log.roll().expect("roll");
    let tail = vec![(Some("tail".to_string()), Some("t".to_string()))];
    log.append(
        &mut keyed_batch(&tail, timestamp, None, Compression::None),
        0,
        timestamp,
    )
    .expect("append");
    let end = log.log_end_offset();
    log.set_high_watermark(end);
    timestamp
}

/// Latest value per key (None = tombstone) and the unkeyed values, from the uncompacted input.
fn latest_by_key(entries: &[Entry]) -> HashMap<String, Option<String>> {
    entries
        .iter()
        .filter_map(|(_, k, v)| k.clone().map(|k| (k, v.clone())))
        .collect()
}

fn assert_compacted(
    view: &[Entry],
    latest: &HashMap<String, Option<String>>,
    tombstones_gone: bool,
) {
    assert!(view.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
    let mut seen = HashMap::new();
    for (offset, key, value) in view {
        if let Some(key) = key {
            assert!(seen.insert(key.clone(), *offset).is_none(), "{key} twice");
            assert_eq!(latest.get(key), Some(value), "{key} has its latest value");
            if tombstones_gone {
                assert!(value.is_some(), "tombstone of {key} still there");
            }
        }
    }
    for (key, value) in latest {
        let expected = value.is_some() || !tombstones_gone;
        assert_eq!(seen.contains_key(key), expected, "{key}");
    }
    assert_eq!(
        view.iter().filter(|e| e.1.is_none()).count(),
        20,
        "null keys kept"
    );
}

#[test]
fn compaction_keeps_the_latest_record_per_key_and_drops_tombstones_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let newest = fill(&mut log);
    assert!(log.segment_count() > 20, "{}", log.segment_count());
    let before = read_all(&log);
    let latest = latest_by_key(&before);
    let end = log.log_end_offset();
    assert_eq!(log.cleaner_offset(), 0);
    assert_eq!(log.cleanable_ratio(), 1.0);

    let first = log
        .compact(&policy(60_000), newest + 1, MAP_BYTES)
        .expect("compact");
    let active_base = *log.segment_base_offsets().last().expect("segments");
    assert_eq!(first.cleaner_offset, active_base);
    assert!(first.records_removed > 4_900, "{first:?}");
    assert!(first.bytes_after < first.bytes_before / 10, "{first:?}");
    assert_eq!(log.log_end_offset(), end, "the log end offset stays");
    let view = read_all(&log);
    assert_compacted(&view, &latest, false);
    assert_eq!(log.cleanable_ratio(), 0.0);
    // KIP-534: the batch keeping the tombstones got its delete horizon, now + retention.
    let horizons: Vec<i64> = headers(&log)
        .iter()
        .filter_map(BatchHeader::delete_horizon_ms)
        .collect();
    assert_eq!(horizons, vec![newest + 1 + 60_000]);

    // Nothing dirty and the tombstones are young: no pass.
    let idle = log
        .compact(&policy(60_000), newest + 2, MAP_BYTES)
        .expect("compact");
    assert_eq!(
        (idle.segments_rewritten, idle.cleaner_offset),
        (0, active_base)
    );

    // Once delete.retention.ms has passed since, the tombstones go (not a millisecond before).
    let early = log
        .compact(&policy(60_000), newest + 60_000, MAP_BYTES)
        .expect("compact");
    assert_eq!(early.segments_rewritten, 0, "{early:?}");
    let second = log
        .compact(&policy(60_000), newest + 60_002, MAP_BYTES)
        .expect("compact");
    assert_eq!(second.records_removed, 10, "{second:?}");
    let view = read_all(&log);
    assert_compacted(&view, &latest, true);

    // A read at any offset lands on the first retained record at or after it.
    for offset in 0..end {
        let expected = view.iter().find(|e| e.0 >= offset).map(|e| e.0);
        let got = read_from(&log, offset).first().map(|e| e.0);
        if offset % 97 == 0 || got != expected {
            assert_eq!(got, expected, "read at {offset}");
        }
    }
    // Timestamp lookups decode the compacted batches.
    let found = log.offset_for_timestamp(T0).expect("lookup").expect("some");
    assert_eq!(found.0, view[0].0);
    assert!(log.max_timestamp().expect("max").is_some());
    // Truncation inside a compacted segment keeps what lies below.
    let cleaner_offset = log.cleaner_offset();

    // Reopen: same view, cleaner offset restored by the caller.
    log.close().expect("close");
    let mut log = PartitionLog::open(dir.path(), config(), end).expect("reopen");
    assert_eq!(log.cleaner_offset(), 0);
    log.set_cleaner_offset(cleaner_offset);
    assert_eq!(read_all(&log), view);
    // Opened with a recovery point of 0, every batch is CRC-checked by the scan, and survives.
    drop(log);
    let log = PartitionLog::open(dir.path(), config(), 0).expect("recover");
    assert_eq!(read_all(&log), view);
}

#[test]
fn a_full_offset_map_cleans_part_of_the_dirty_section_per_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let newest = fill(&mut log);
    let latest = latest_by_key(&read_all(&log));
    let active_base = *log.segment_base_offsets().last().expect("segments");
    // Room for about 10 of the 50 keys.
    let map_bytes = 10 * (OFFSET_MAP_ENTRY_OVERHEAD_BYTES + 3);
    let mut passes = 0;
    let mut previous = log.cleaner_offset();
    let no_ratio = CompactionPolicy {
        min_cleanable_dirty_ratio: 0.0,
        ..policy(60_000)
    };
    while log.cleaner_offset() < active_base {
        let outcome = log
            .compact(&no_ratio, newest + 1, map_bytes)
            .expect("compact");
        assert!(outcome.cleaner_offset > previous, "progress: {outcome:?}");
        previous = outcome.cleaner_offset;
        passes += 1;
        assert!(passes < 1_000);
    }
    assert!(passes > 1);
    assert_compacted(&read_all(&log), &latest, false);
}

#[test]
fn nothing_at_or_above_the_high_watermark_or_too_young_is_cleaned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let newest = fill(&mut log);
    let before = read_all(&log);
    log.set_high_watermark(0);
    let outcome = log.compact(&policy(0), newest, MAP_BYTES).expect("compact");
    assert_eq!((outcome.segments_rewritten, outcome.cleaner_offset), (0, 0));
    let end = log.log_end_offset();
    log.set_high_watermark(end);
    let young = CompactionPolicy {
        min_compaction_lag_ms: 1_000_000,
        ..policy(0)
    };
    let outcome = log.compact(&young, newest, MAP_BYTES).expect("compact");
    assert_eq!(outcome.segments_rewritten, 0);
    assert_eq!(read_all(&log), before);
    // Half of the segments are old enough.
    let middle = T0 + 2_500;
    let outcome = log
        .compact(&young, middle + 1_000_000, MAP_BYTES)
        .expect("compact");
    assert!(
        outcome.cleaner_offset > 0 && outcome.cleaner_offset < end,
        "{outcome:?}"
    );
    // A dirty record older than max.compaction.lag.ms forces a pass below the ratio.
    let forced = CompactionPolicy {
        min_cleanable_dirty_ratio: 1.1,
        max_compaction_lag_ms: 10,
        ..policy(0)
    };
    let outcome = log
        .compact(&forced, newest + 100, MAP_BYTES)
        .expect("compact");
    assert!(outcome.records_removed > 0, "{outcome:?}");
}

#[test]
fn an_idempotent_producers_last_batch_survives_as_an_empty_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let same_key = |value: &str| vec![(Some("k".to_string()), Some(value.to_string()))];
    for sequence in 0..3 {
        let mut bytes = keyed_batch(
            &same_key(&format!("p{sequence}")),
            T0,
            Some((7, 2, sequence)),
            Compression::None,
        );
        log.append(&mut bytes, 0, T0).expect("append");
    }
    let mut bytes = keyed_batch(&same_key("later"), T0, None, Compression::None);
    log.append(&mut bytes, 0, T0).expect("append");
    log.roll().expect("roll");
    log.append(
        &mut keyed_batch(&same_key("tail"), T0, None, Compression::None),
        0,
        T0,
    )
    .expect("append");
    let end = log.log_end_offset();
    log.set_high_watermark(end);
    let state = log.producer_state().clone();
    log.compact(&policy(0), T0 + 1, MAP_BYTES).expect("compact");
    // The producer's last batch stays as an empty header before the latest value of "k".
    let view = read_all(&log);
    let offsets: Vec<i64> = view.iter().map(|e| e.0).collect();
    assert_eq!(offsets, vec![3, 4], "{view:?}");
    let slice = log.read(0, 1 << 16, end, true).expect("read");
    let bytes = slice.read_bytes().expect("pread");
    let header = BatchHeader::parse(&bytes).expect("header");
    assert_eq!(
        (
            header.base_offset,
            header.records_count,
            header.producer_id,
            header.base_sequence
        ),
        (2, 0, 7, 2)
    );
    // Rebuilt from the log alone (no snapshots), the producer state is the same for id 7.
    log.close().expect("close");
    for (_, path) in crate::producer_state::list_snapshots(dir.path()).expect("list") {
        fs::remove_file(path).expect("remove snapshot");
    }
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    let last = |s: &crate::ProducerStateManager| {
        s.entry(7).map(|e| {
            (
                e.epoch,
                e.batches.back().map(|b| (b.last_sequence, b.last_offset)),
            )
        })
    };
    assert_eq!(last(log.producer_state()), last(&state));
    let mut next = keyed_batch(&same_key("p3"), T0, Some((7, 2, 3)), Compression::None);
    assert!(
        log.append(&mut next, 0, T0).is_ok(),
        "the next sequence is accepted"
    );
}

/// Copies every file of `from` into `to`.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[test]
fn a_crash_at_any_step_of_a_swap_leaves_a_readable_log_with_every_kept_record() {
    let root = tempfile::tempdir().expect("tempdir");
    let original = root.path().join("original");
    let mut log = PartitionLog::open(&original, config(), 0).expect("open");
    let newest = fill(&mut log);
    let uncompacted = read_all(&log);
    let end = log.log_end_offset();
    log.close().expect("close");
    let compacted_dir = root.path().join("compacted");
    copy_dir(&original, &compacted_dir);
    let mut log = PartitionLog::open(&compacted_dir, config(), end).expect("open");
    log.compact(&policy(60_000), newest + 1, MAP_BYTES)
        .expect("compact");
    let kept = read_all(&log);
    let bases = log.segment_base_offsets();
    drop(log);
    // The last segment after the first that the pass rewrote (and did not delete).
    let (base, cleaned) = bases[1..bases.len() - 1]
        .iter()
        .rev()
        .map(|&base| {
            let path = segment_file_path(&compacted_dir, base, LOG_SUFFIX);
            (base, fs::read(path).expect("read"))
        })
        .find(|(base, cleaned)| {
            let old = segment_file_path(&original, *base, LOG_SUFFIX);
            *cleaned != fs::read(old).expect("read")
        })
        .expect("a rewritten segment");

    type Crash = fn(&Path, i64, &[u8]);
    let crashes: [(&str, Crash); 3] = [
        ("after .cleaned was written", |dir, base, cleaned| {
            fs::write(segment_file_path(dir, base, CLEANED_SUFFIX), cleaned).expect("write");
        }),
        (
            "after .swap exists, old segment present",
            |dir, base, cleaned| {
                fs::write(segment_file_path(dir, base, SWAP_SUFFIX), cleaned).expect("write");
            },
        ),
        (
            "after the old segment was deleted, before the rename",
            |dir, base, cleaned| {
                fs::write(segment_file_path(dir, base, SWAP_SUFFIX), cleaned).expect("write");
                Segment::delete_files(dir, base).expect("delete");
            },
        ),
    ];
    for (i, (name, crash)) in crashes.iter().enumerate() {
        let dir = root.path().join(format!("crash-{i}"));
        copy_dir(&original, &dir);
        crash(&dir, base, &cleaned);
        let log = PartitionLog::open(&dir, config(), end).expect(name);
        assert_eq!(log.log_end_offset(), end, "{name}");
        let view = read_all(&log);
        assert!(
            view.windows(2).all(|w| w[0].0 < w[1].0),
            "{name}: offsets increase"
        );
        for entry in &kept {
            assert!(view.contains(entry), "{name}: lost {entry:?}");
        }
        assert!(view.iter().all(|e| uncompacted.contains(e)), "{name}");
        if i == 0 {
            assert_eq!(view, uncompacted, "{name}");
        }
        for entry in fs::read_dir(&dir).expect("list") {
            let name = entry.expect("entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                !name.ends_with(".cleaned") && !name.ends_with(".swap"),
                "{name} left"
            );
        }
        assert!(segment_file_path(&dir, base, LOG_SUFFIX).exists());
    }
}

/// A pass planned, then run while the log moves on (appends, a roll, DeleteRecords removing
/// the first planned segment), then applied: what was appended meanwhile is all there, the
/// deleted segment stays deleted, no `.cleaned` file is left, and a later pass compacts
/// everything as usual. This is the partition's concurrency: only plan and apply hold its lock.
#[test]
fn a_pass_applied_after_the_log_moved_on_keeps_everything_written_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let newest = fill(&mut log);
    let plan = log
        .plan_compaction(&policy(60_000), newest + 1, MAP_BYTES)
        .expect("plan")
        .expect("a pass is due");

    // Meanwhile: new values for some keys, a roll, and DeleteRecords past the first segment.
    let late: Vec<_> = (0..5)
        .map(|k| (Some(format!("k{k}")), Some(format!("late{k}"))))
        .collect();
    let mut timestamp = newest + 10;
    for _ in 0..2 {
        log.append(
            &mut keyed_batch(&late, timestamp, None, Compression::None),
            0,
            timestamp,
        )
        .expect("append");
        timestamp += 10;
        log.roll().expect("roll");
    }
    let end = log.log_end_offset();
    log.set_high_watermark(end);
    let second_base = log.segment_base_offsets()[1];
    log.advance_log_start_offset(second_base)
        .expect("delete records");
    let before = read_all(&log);

    let outcome = log
        .apply_compaction(plan.run().expect("run"))
        .expect("apply");
    assert!(outcome.segments_rewritten > 0, "{outcome:?}");
    assert_eq!(log.log_start_offset(), second_base);
    assert_eq!(log.log_end_offset(), end);
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cleaned") || name.ends_with(".swap"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());

    // Every key's newest record (as of now) is still there with its value, and so is every
    // record appended meanwhile.
    let view = read_all(&log);
    let latest = latest_by_key(&before);
    let newest_in_view = latest_by_key(&view);
    assert_eq!(newest_in_view, latest);
    let late_offsets: Vec<i64> = before
        .iter()
        .filter(|e| e.2.as_deref().is_some_and(|v| v.starts_with("late")))
        .map(|e| e.0)
        .collect();
    assert_eq!(late_offsets.len(), 10);
    assert!(late_offsets
        .iter()
        .all(|offset| view.iter().any(|e| e.0 == *offset)));

    // A later pass, with the log holding still, compacts all of it (however small its dirty
    // share).
    let any_ratio = CompactionPolicy {
        min_cleanable_dirty_ratio: 0.0,
        ..policy(60_000)
    };
    log.compact(&any_ratio, timestamp + 1, MAP_BYTES)
        .expect("compact");
    let mut seen = std::collections::HashSet::new();
    for (_, key, _) in read_all(&log) {
        if let Some(key) = key {
            assert!(seen.insert(key.clone()), "{key} twice");
        }
    }
}

// Transaction markers (Kafka's `CleanedTransactionMetadata` and KIP-534's delete horizon).

const RETENTION_MS: i64 = 60_000;

/// A transactional batch of `producer` = (id, epoch, first sequence).
fn txn_batch(records: &[(&str, &str)], timestamp: i64, producer: (i64, i16, i32)) -> Vec<u8> {
    let records: Vec<_> = records
        .iter()
        .map(|(k, v)| (Some(k.to_string()), Some(v.to_string())))
        .collect();
    let plain = keyed_batch(&records, timestamp, Some(producer), Compression::None);
    let mut buf = Bytes::from(plain);
    let mut decoded = RecordBatchDecoder::decode(&mut buf)
        .expect("decode")
        .records;
    for record in &mut decoded {
        record.transactional = true;
    }
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut out, decoded.iter(), &options).expect("encode");
    out.to_vec()
}

fn append(log: &mut PartitionLog, mut batch: Vec<u8>) -> i64 {
    log.append(&mut batch, 0, T0).expect("append").base_offset
}

fn plain(log: &mut PartitionLog, key: &str, value: &str) -> i64 {
    let records = [(Some(key.to_string()), Some(value.to_string()))];
    append(log, keyed_batch(&records, T0, None, Compression::None))
}

fn end_txn(log: &mut PartitionLog, producer_id: i64, commit: bool) -> i64 {
    let marker = crate::TxnMarker {
        producer_id,
        producer_epoch: 0,
        coordinator_epoch: 3,
        commit,
        transaction_version: 0,
    };
    log.append_txn_marker(&marker, 0, T0)
        .expect("marker")
        .base_offset
}

/// Every batch header of the log, in offset order (what a read_uncommitted fetch returns).
fn headers(log: &PartitionLog) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    loop {
        let slice = log
            .read(offset, 1 << 20, log.log_end_offset(), true)
            .expect("read");
        if slice.is_empty() {
            return out;
        }
        let bytes = slice.read_bytes().expect("pread");
        let mut at = 0;
        while at < bytes.len() {
            let header = BatchHeader::parse(&bytes[at..]).expect("header");
            at += header.size_bytes();
            out.push(header);
        }
        offset = slice.next_offset;
    }
}

/// Base offsets of the control batches (markers, emptied or not).
fn control_offsets(log: &PartitionLog) -> Vec<i64> {
    headers(log)
        .iter()
        .filter(|h| h.is_control())
        .map(|h| h.base_offset)
        .collect()
}

fn header_at(log: &PartitionLog, offset: i64) -> Option<BatchHeader> {
    headers(log).into_iter().find(|h| h.base_offset == offset)
}

/// What a read_committed consumer gets from the log start (Kafka's consumer: a
/// transactional batch of a producer with an aborted transaction begun at or before it is
/// skipped until that producer's ABORT marker; control records are never delivered).
fn read_committed_view(log: &PartitionLog) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let mut aborted_producers = std::collections::HashSet::new();
    loop {
        let (slice, aborted) = log.read_committed(offset, 1 << 20, true).expect("read");
        if slice.is_empty() {
            return out;
        }
        let mut aborted: Vec<(i64, i64)> = aborted;
        aborted.sort_by_key(|&(_, first)| first);
        let mut aborted = aborted.into_iter().peekable();
        let mut buf = Bytes::from(slice.read_bytes().expect("pread"));
        for set in RecordBatchDecoder::decode_all(&mut buf).expect("decode") {
            let Some(last) = set.records.last().map(|r| r.offset) else {
                continue;
            };
            while let Some((producer, _)) = aborted.next_if(|&(_, first)| first <= last) {
                aborted_producers.insert(producer);
            }
            for record in set.records {
                if record.control {
                    let abort = record.key.as_deref().is_some_and(|k| k == [0, 0, 0, 0]);
                    if abort {
                        aborted_producers.remove(&record.producer_id);
                    }
                    continue;
                }
                if record.transactional && aborted_producers.contains(&record.producer_id) {
                    continue;
                }
                if record.offset >= offset {
                    out.push((record.offset, text(record.key), text(record.value)));
                }
            }
        }
        offset = slice.next_offset;
    }
}

/// The read_committed view below `end` (the records a test wrote before its fillers).
fn committed_below(log: &PartitionLog, end: i64) -> Vec<Entry> {
    read_committed_view(log)
        .into_iter()
        .filter(|e| e.0 < end)
        .collect()
}

fn record(offset: i64, key: &str, value: &str) -> Entry {
    (offset, Some(key.to_string()), Some(value.to_string()))
}

/// One more dirty segment, so that the next pass is due (min.cleanable.dirty.ratio 0).
fn dirty_segment(log: &mut PartitionLog, key: &str) {
    log.roll().expect("roll");
    plain(log, key, "filler");
    log.roll().expect("roll");
    plain(log, "tail", "t");
    let end = log.log_end_offset();
    log.set_high_watermark(end);
}

fn any_ratio() -> CompactionPolicy {
    CompactionPolicy {
        min_cleanable_dirty_ratio: 0.0,
        ..policy(RETENTION_MS)
    }
}

/// Reopens the log from its files alone (no producer snapshot, no `.txnindex`): the state a
/// replay of what compaction left gives.
fn reopen_from_log_only(log: PartitionLog, dir: &Path) -> PartitionLog {
    let cleaner_offset = log.cleaner_offset();
    let end = log.log_end_offset();
    log.close().expect("close");
    for entry in fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        let name = path.to_string_lossy().into_owned();
        if name.ends_with(".snapshot") || name.ends_with(".txnindex") {
            fs::remove_file(&path).expect("remove");
        }
    }
    let mut log = PartitionLog::open(dir, config(), 0).expect("reopen");
    assert_eq!(log.log_end_offset(), end);
    log.set_high_watermark(end);
    log.set_cleaner_offset(cleaner_offset);
    log
}

/// The transactional state a reopen must give back.
fn txn_state(log: &PartitionLog) -> (i64, Option<i64>, Vec<AbortedTxn>, Vec<Entry>) {
    (
        log.last_stable_offset(),
        log.first_unstable_offset(),
        log.aborted_txn_index(),
        read_committed_view(log),
    )
}

#[test]
fn a_commit_marker_goes_a_pass_after_its_data_and_only_once_its_horizon_has_passed() {
    // Pins CleanedTransactionMetadata.onControlBatchRead (a COMMIT is removable when the pass
    // saw no batch of its transaction) and KIP-534 (the first such pass sets the delete
    // horizon, now + delete.retention.ms; a pass after it removes the marker).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    append(&mut log, txn_batch(&[("a", "v1")], T0, (1, 0, 0))); // 0
    let first_commit = end_txn(&mut log, 1, true); // 1
    plain(&mut log, "a", "v2"); // 2: a@0 is no longer the latest
    append(&mut log, txn_batch(&[("b", "w")], T0, (1, 0, 1))); // 3: b stays the latest
    let kept_commit = end_txn(&mut log, 1, true); // 4
    append(&mut log, txn_batch(&[("c", "x")], T0, (1, 0, 2))); // 5: producer 1's last batch
    let last_commit = end_txn(&mut log, 1, true); // 6
    dirty_segment(&mut log, "f1");
    assert_eq!((first_commit, kept_commit, last_commit), (1, 4, 6));
    let now = T0 + 1_000;

    // Pass 1 removes a@0; its transaction's batch was seen, so the marker stays as it is.
    log.compact(&any_ratio(), now, MAP_BYTES).expect("compact");
    assert!(header_at(&log, 0).is_none(), "a@0 removed");
    assert_eq!(control_offsets(&log), vec![1, 4, 6]);
    assert_eq!(
        header_at(&log, 1).expect("marker").delete_horizon_ms(),
        None
    );

    // Pass 2 sees no data of the first transaction: the marker gets its delete horizon and
    // stays, still a COMMIT read as such.
    dirty_segment(&mut log, "f2");
    let now = now + 1_000;
    log.compact(&any_ratio(), now, MAP_BYTES).expect("compact");
    assert_eq!(control_offsets(&log), vec![1, 4, 6]);
    let marker = header_at(&log, 1).expect("marker");
    assert_eq!(marker.delete_horizon_ms(), Some(now + RETENTION_MS));
    assert_eq!(marker.records_count, 1);
    for offset in [4, 6] {
        let header = header_at(&log, offset).expect("marker");
        assert_eq!(header.delete_horizon_ms(), None, "{offset} has data left");
    }

    // Before the horizon no pass is due, and a forced one keeps the marker.
    let early = log
        .compact(&any_ratio(), now + RETENTION_MS - 1, MAP_BYTES)
        .expect("compact");
    assert_eq!(early.segments_rewritten, 0, "{early:?}");
    dirty_segment(&mut log, "f3");
    log.compact(&any_ratio(), now + RETENTION_MS - 1, MAP_BYTES)
        .expect("compact");
    assert_eq!(control_offsets(&log), vec![1, 4, 6]);

    // Once it has passed, a pass is due and removes it; b's and c's markers stay, whatever
    // the time, as their data does.
    let due = log
        .compact(&any_ratio(), now + RETENTION_MS, MAP_BYTES)
        .expect("compact");
    assert!(due.segments_rewritten > 0, "{due:?}");
    assert_eq!(control_offsets(&log), vec![4, 6]);
    for later in 1..4 {
        dirty_segment(&mut log, &format!("g{later}"));
        log.compact(&any_ratio(), now + later * 10 * RETENTION_MS, MAP_BYTES)
            .expect("compact");
    }
    assert_eq!(control_offsets(&log), vec![4, 6]);
    assert_eq!(
        committed_below(&log, 7),
        vec![
            record(2, "a", "v2"),
            record(3, "b", "w"),
            record(5, "c", "x")
        ]
    );

    // A replay of what is left gives no transaction in progress and the same reads.
    let before = txn_state(&log);
    assert_eq!(before.0, log.log_end_offset());
    assert_eq!(before.1, None);
    let state = log.producer_state().entry(1).cloned().expect("producer 1");
    let log = reopen_from_log_only(log, dir.path());
    assert_eq!(txn_state(&log), before);
    assert!(log.ongoing_transactions().is_empty());
    let replayed = log.producer_state().entry(1).expect("producer 1");
    assert_eq!(
        (replayed.epoch, replayed.current_txn_first_offset),
        (state.epoch, None)
    );
    assert_eq!(
        replayed
            .batches
            .back()
            .map(|b| (b.last_sequence, b.last_offset)),
        Some((2, 5))
    );
}

#[test]
fn an_abort_marker_and_its_index_entry_outlive_its_data_and_the_marker_its_horizon() {
    // Pins CleanedTransactionMetadata: aborted data goes in the first pass, which keeps the
    // marker and the transaction-index entry (it saw data of the transaction); the next pass
    // sees none, so the cleaned index drops the entry and the marker gets its delete horizon;
    // a pass after the horizon removes the marker. read_committed reads the same throughout.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    plain(&mut log, "a", "good"); // 0
    append(
        &mut log,
        txn_batch(&[("a", "bad"), ("x", "bad")], T0, (1, 0, 0)),
    ); // 1, 2
    let abort = end_txn(&mut log, 1, false); // 3
    append(&mut log, txn_batch(&[("b", "w")], T0, (1, 0, 2))); // 4: producer 1's last batch
    let commit = end_txn(&mut log, 1, true); // 5
    dirty_segment(&mut log, "f1");
    assert_eq!((abort, commit), (3, 5));
    let committed = committed_below(&log, 6);
    assert_eq!(committed, vec![record(0, "a", "good"), record(4, "b", "w")]);
    let entry = log.aborted_txn_index();
    assert_eq!(entry.len(), 1);
    let now = T0 + 1_000;

    log.compact(&any_ratio(), now, MAP_BYTES).expect("compact");
    assert!(
        header_at(&log, 1).is_none(),
        "aborted data removed in one pass"
    );
    assert_eq!(control_offsets(&log), vec![3, 5]);
    assert_eq!(
        log.aborted_txn_index(),
        entry,
        "the entry stays with its data seen"
    );
    assert_eq!(header_at(&log, 3).expect("abort").delete_horizon_ms(), None);
    assert_eq!(committed_below(&log, 6), committed);

    dirty_segment(&mut log, "f2");
    let now = now + 1_000;
    log.compact(&any_ratio(), now, MAP_BYTES).expect("compact");
    assert_eq!(
        log.aborted_txn_index(),
        vec![],
        "no data of it left: the entry goes"
    );
    assert_eq!(control_offsets(&log), vec![3, 5]);
    assert_eq!(
        header_at(&log, 3).expect("abort").delete_horizon_ms(),
        Some(now + RETENTION_MS)
    );
    assert_eq!(committed_below(&log, 6), committed);

    dirty_segment(&mut log, "f3");
    log.compact(&any_ratio(), now + RETENTION_MS - 1, MAP_BYTES)
        .expect("compact");
    assert_eq!(control_offsets(&log), vec![3, 5], "kept until the horizon");
    log.compact(&any_ratio(), now + RETENTION_MS, MAP_BYTES)
        .expect("compact");
    assert_eq!(
        control_offsets(&log),
        vec![5],
        "the ABORT goes, the COMMIT of b@4 stays"
    );
    assert_eq!(committed_below(&log, 6), committed);

    let before = txn_state(&log);
    assert_eq!((before.0, before.1), (log.log_end_offset(), None));
    let log = reopen_from_log_only(log, dir.path());
    assert_eq!(txn_state(&log), before);
    assert!(log.ongoing_transactions().is_empty());
    assert!(!log.has_ongoing_transaction(1));
}

#[test]
fn a_marker_stays_while_its_transaction_has_a_latest_record_or_its_producers_last_batch() {
    // Pins isBatchLastRecordOfProducer and onControlBatchRead: an aborted transaction whose
    // batch is its producer's last stays as an empty header, so its ABORT and index entry
    // stay; a COMMIT whose record is its key's latest stays; neither gets a horizon.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    append(&mut log, txn_batch(&[("k", "kept")], T0, (1, 0, 0))); // 0
    end_txn(&mut log, 1, true); // 1
    append(&mut log, txn_batch(&[("k", "aborted")], T0, (2, 0, 0))); // 2: producer 2's last
    end_txn(&mut log, 2, false); // 3
    dirty_segment(&mut log, "f0");
    let entry = log.aborted_txn_index();
    for pass in 1..6 {
        dirty_segment(&mut log, &format!("f{pass}"));
        log.compact(&any_ratio(), T0 + pass * 10 * RETENTION_MS, MAP_BYTES)
            .expect("compact");
        assert_eq!(control_offsets(&log), vec![1, 3], "pass {pass}");
        for offset in [1, 3] {
            let header = header_at(&log, offset).expect("marker");
            assert_eq!(header.delete_horizon_ms(), None, "pass {pass}");
            assert_eq!(header.records_count, 1);
        }
        let emptied = header_at(&log, 2).expect("producer 2's last batch");
        assert_eq!(emptied.records_count, 0);
        assert_eq!(log.aborted_txn_index(), entry);
    }
    assert_eq!(committed_below(&log, 4), vec![record(0, "k", "kept")]);
    let before = txn_state(&log);
    let log = reopen_from_log_only(log, dir.path());
    assert_eq!(txn_state(&log), before);
    assert!(log.ongoing_transactions().is_empty());
}
