//! Transactions in the partition log through real files: producer transaction state and its
//! checks, the last stable offset, `.txnindex` files in Kafka's format, aborted-transaction
//! lookups across segments, restarts and crashes, damaged indexes, truncation, retention and
//! compaction. Each test names the Kafka behaviour it pins.

mod support;

use std::fs;
use std::path::Path;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use runnel_log::{
    AbortedTxn, AppendError, CompactionPolicy, LastShutdown, LogConfig, PartitionLog, TxnMarker,
};
use runnel_protocol::control_record::ControlRecord;
use support::{small_config, txn_batch, Producer};

const T0: i64 = 1_700_000_000_000;

fn keys(names: &[&str]) -> Vec<Option<String>> {
    names.iter().map(|k| Some(k.to_string())).collect()
}

/// Appends a transactional batch of `count` unkeyed-style records for producer `id` at
/// `sequence`; returns its base offset.
fn send(log: &mut PartitionLog, id: i64, epoch: i16, sequence: i32, count: usize) -> i64 {
    let names: Vec<String> = (0..count).map(|i| format!("k{sequence}-{i}")).collect();
    let keys: Vec<Option<String>> = names.into_iter().map(Some).collect();
    let producer = Producer {
        id,
        epoch,
        sequence,
    };
    let mut batch = txn_batch(&keys, &format!("p{id}"), T0, producer);
    log.append(&mut batch, 0, T0).expect("append").base_offset
}

fn marker(producer_id: i64, producer_epoch: i16, commit: bool) -> TxnMarker {
    TxnMarker {
        producer_id,
        producer_epoch,
        coordinator_epoch: 5,
        commit,
        transaction_version: 0,
    }
}

fn end(log: &mut PartitionLog, producer_id: i64, commit: bool) -> i64 {
    log.append_txn_marker(&marker(producer_id, 0, commit), 0, T0)
        .expect("marker")
        .base_offset
}

fn txn_index_path(dir: &Path, base: i64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.txnindex"))
}

fn entry(producer_id: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id,
        first_offset: first,
        last_offset: last,
        last_stable_offset: lso,
    }
}

fn high_watermark_at_end(log: &mut PartitionLog) {
    let end = log.log_end_offset();
    log.set_high_watermark(end);
}

#[test]
fn commit_and_abort_end_transactions_and_the_last_stable_offset_follows_the_high_watermark() {
    // Pins UnifiedLog.lastStableOffset = min(firstUnstableOffset, highWatermark) and
    // ProducerStateManager's unreplicatedTxns: a completed transaction holds the LSO back until
    // the high watermark passes its marker.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config(1 << 20), 0).expect("open");
    assert_eq!(send(&mut log, 1, 0, 0, 2), 0);
    high_watermark_at_end(&mut log);
    assert_eq!(log.first_unstable_offset(), Some(0));
    assert_eq!(log.last_stable_offset(), 0);
    assert!(log.has_ongoing_transaction(1));
    let ongoing = log.ongoing_transactions();
    assert_eq!(ongoing.len(), 1);
    assert_eq!(
        (
            ongoing[0].producer_id,
            ongoing[0].producer_epoch,
            ongoing[0].first_offset
        ),
        (1, 0, 0)
    );

    assert_eq!(end(&mut log, 1, true), 2);
    assert!(!log.has_ongoing_transaction(1));
    // The marker at 2 is not below the high watermark (2): still unstable.
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(log.last_stable_offset(), 0);
    log.set_high_watermark(3);
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(log.last_stable_offset(), 3);
    assert!(log.aborted_txn_index().is_empty(), "a COMMIT adds no entry");

    assert_eq!(send(&mut log, 1, 0, 2, 1), 3);
    assert_eq!(end(&mut log, 1, false), 4);
    high_watermark_at_end(&mut log);
    assert_eq!(log.last_stable_offset(), 5);
    assert_eq!(log.aborted_txn_index(), vec![entry(1, 3, 4, 5)]);
    assert_eq!(log.aborted_transactions(0, 5), vec![(1, 3)]);
    assert_eq!(log.aborted_transactions(5, 6), Vec::<(i64, i64)>::new());

    // read_committed stops at the LSO and names the aborted transaction it overlaps.
    send(&mut log, 1, 0, 3, 1);
    high_watermark_at_end(&mut log);
    assert_eq!(log.last_stable_offset(), 5);
    let (slice, aborted) = log.read_committed(0, 1 << 20, true).expect("read");
    assert_eq!((slice.next_offset, slice.last_stable_offset), (5, 5));
    assert_eq!(aborted, vec![(1, 3)]);
    let (slice, aborted) = log.read_committed(5, 1 << 20, true).expect("read");
    assert!(slice.is_empty() && aborted.is_empty());
}

#[test]
fn producer_append_info_refuses_what_kafka_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config(1 << 20), 0).expect("open");
    send(&mut log, 1, 3, 0, 1);
    // ProducerAppendInfo.appendDataBatch: a non-transactional batch during a transaction.
    let mut plain = support::batch(
        1,
        "plain",
        10,
        T0,
        Some(Producer {
            id: 1,
            epoch: 3,
            sequence: 1,
        }),
    );
    let error = log.append(&mut plain, 0, T0).expect_err("refused");
    assert!(
        matches!(error, AppendError::InvalidTxnState { producer_id: 1 }),
        "{error}"
    );
    assert_eq!(log.log_end_offset(), 1, "nothing written");
    // checkProducerEpoch: a marker below the producer's epoch is InvalidProducerEpoch.
    let error = log
        .append_txn_marker(&marker(1, 2, true), 0, T0)
        .expect_err("fenced");
    assert!(
        matches!(
            error,
            AppendError::InvalidProducerEpoch {
                current_epoch: 3,
                received_epoch: 2,
                ..
            }
        ),
        "{error}"
    );
    log.append_txn_marker(&marker(1, 3, false), 0, T0)
        .expect("abort");
    // checkCoordinatorEpoch: a marker from an older coordinator.
    send(&mut log, 1, 3, 1, 1);
    let old_coordinator = TxnMarker {
        coordinator_epoch: 4,
        ..marker(1, 3, true)
    };
    let error = log
        .append_txn_marker(&old_coordinator, 0, T0)
        .expect_err("fenced coordinator");
    assert!(
        matches!(
            error,
            AppendError::TransactionCoordinatorFenced {
                current_coordinator_epoch: 5,
                received_coordinator_epoch: 4,
                ..
            }
        ),
        "{error}"
    );
    // TV2: a marker at the producer's epoch while its transaction is ongoing is late.
    let tv2 = |epoch| TxnMarker {
        transaction_version: 2,
        ..marker(1, epoch, true)
    };
    assert!(matches!(
        log.append_txn_marker(&tv2(3), 0, T0),
        Err(AppendError::InvalidProducerEpoch { .. })
    ));
    log.append_txn_marker(&tv2(4), 0, T0)
        .expect("bumped marker");
    // KAFKA-19999: its retry, same epoch and no transaction ongoing, is written again.
    let before = log.log_end_offset();
    log.append_txn_marker(&tv2(4), 0, T0).expect("retry");
    assert_eq!(log.log_end_offset(), before + 1);
    // A marker appended as a control batch gets the legacy rule: epoch 2 < 4 is refused.
    let mut batch = ControlRecord::marker(true, 5).encode_batch(1, 2, T0);
    assert!(matches!(
        log.append(&mut batch, 0, T0),
        Err(AppendError::InvalidProducerEpoch { .. })
    ));
    let mut batch = ControlRecord::marker(true, 5).encode_batch(1, 4, T0);
    log.append(&mut batch, 0, T0)
        .expect("legacy marker at the same epoch");
}

#[test]
fn interleaved_producers_write_kafkas_txnindex_bytes() {
    // Pins ProducerStateManager.lastStableOffset(completedTxn): the entry's LSO is the first
    // offset of another producer's ongoing transaction, else the marker's offset + 1; and
    // TransactionIndex's 34-byte entries.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config(1 << 20), 0).expect("open");
    send(&mut log, 10, 0, 0, 1); // 0
    send(&mut log, 20, 0, 0, 1); // 1
    let firsts: Vec<(i64, i64)> = log
        .ongoing_transactions()
        .iter()
        .map(|t| (t.producer_id, t.first_offset))
        .collect();
    assert_eq!(firsts, vec![(10, 0), (20, 1)]);
    assert_eq!(end(&mut log, 10, false), 2);
    log.set_high_watermark(3);
    assert_eq!(log.last_stable_offset(), 1, "producer 20 still open");
    send(&mut log, 20, 0, 1, 1); // 3
    assert_eq!(end(&mut log, 20, false), 4);
    high_watermark_at_end(&mut log);
    assert_eq!(log.last_stable_offset(), 5);
    let expected = vec![entry(10, 0, 2, 1), entry(20, 1, 4, 5)];
    assert_eq!(log.aborted_txn_index(), expected);
    let mut bytes = Vec::new();
    for e in &expected {
        bytes.extend_from_slice(&0i16.to_be_bytes());
        bytes.extend_from_slice(&e.producer_id.to_be_bytes());
        bytes.extend_from_slice(&e.first_offset.to_be_bytes());
        bytes.extend_from_slice(&e.last_offset.to_be_bytes());
        bytes.extend_from_slice(&e.last_stable_offset.to_be_bytes());
    }
    assert_eq!(
        fs::read(txn_index_path(dir.path(), 0)).expect("read"),
        bytes
    );
    // The flush that makes the markers durable fsyncs the index too.
    let target = log
        .prepare_flush()
        .expect("prepare")
        .expect("something to flush");
    assert_eq!(target.txn_index_files, vec![txn_index_path(dir.path(), 0)]);
    target.sync().expect("sync");
    log.mark_flushed(target.up_to);
    let target = log.prepare_flush().expect("prepare");
    assert!(target.is_none_or(|t| t.txn_index_files.is_empty()));
}

/// Segments [0,1] [2,3] [4,5] [6..=9]: producer 1 aborts [0..=3], producer 2 aborts [1..=5],
/// producer 1 commits [6..=7], producer 3 aborts [8..=9].
fn log_with_aborts_across_rolls(dir: &Path) -> PartitionLog {
    let mut log = PartitionLog::open(dir, small_config(1 << 20), 0).expect("open");
    send(&mut log, 1, 0, 0, 1); // 0
    send(&mut log, 2, 0, 0, 1); // 1
    log.roll().expect("roll");
    send(&mut log, 1, 0, 1, 1); // 2
    end(&mut log, 1, false); // 3
    log.roll().expect("roll");
    send(&mut log, 2, 0, 1, 1); // 4
    end(&mut log, 2, false); // 5
    log.roll().expect("roll");
    send(&mut log, 1, 0, 2, 1); // 6
    end(&mut log, 1, true); // 7
    send(&mut log, 3, 0, 0, 1); // 8
    end(&mut log, 3, false); // 9
    high_watermark_at_end(&mut log);
    log
}

#[test]
fn aborted_transactions_are_collected_across_segments_as_kafka_does() {
    // Pins LocalLog.collectAbortedTransactions / TransactionIndex.collectAbortedTxns: entries
    // with lastOffset >= start and firstOffset < upper, from the segment holding start on,
    // stopping at an entry whose lastStableOffset >= upper.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = log_with_aborts_across_rolls(dir.path());
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 4, 6]);
    assert_eq!(
        log.aborted_txn_index(),
        vec![entry(1, 0, 3, 1), entry(2, 1, 5, 6), entry(3, 8, 9, 10)]
    );
    assert!(!txn_index_path(dir.path(), 0).exists(), "created lazily");
    for base in [2, 4, 6] {
        assert_eq!(
            fs::metadata(txn_index_path(dir.path(), base))
                .expect("txnindex")
                .len(),
            34
        );
    }
    assert_eq!(
        log.aborted_transactions(0, 10),
        vec![(1, 0), (2, 1), (3, 8)]
    );
    assert_eq!(log.aborted_transactions(4, 6), vec![(2, 1)]);
    assert_eq!(log.aborted_transactions(0, 1), vec![(1, 0)]);
    assert_eq!(log.aborted_transactions(6, 8), Vec::<(i64, i64)>::new());
    assert_eq!(log.aborted_transactions(3, 4), vec![(1, 0), (2, 1)]);
}

#[test]
fn reopening_after_close_or_a_crash_gives_the_replayed_state_and_indexes() {
    // Pins LogSegment.recover (the txn index rebuilt from the batches) and the snapshot's
    // current_txn_first_offset / coordinator_epoch fields surviving a restart.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(1 << 20);
    let mut log = log_with_aborts_across_rolls(dir.path());
    send(&mut log, 4, 0, 0, 2); // 10, 11: ongoing at the restart
    high_watermark_at_end(&mut log);
    let state = log.producer_state().clone();
    let index = log.aborted_txn_index();
    let (lso, end) = (log.last_stable_offset(), log.log_end_offset());
    assert_eq!(lso, 10);
    log.close().expect("close");

    let log = PartitionLog::open_after(dir.path(), config.clone(), end, 0, LastShutdown::Clean)
        .expect("reopen");
    assert_eq!(log.producer_state(), &state);
    assert_eq!(log.aborted_txn_index(), index);
    assert_eq!(log.last_stable_offset(), lso);
    assert!(log.has_ongoing_transaction(4));
    drop(log);

    // A crash: no close, every snapshot and index file lost; the replay from the log start
    // gives the same state and the same index files.
    let bytes_before: Vec<Vec<u8>> = [2, 4, 6]
        .iter()
        .map(|&b| fs::read(txn_index_path(dir.path(), b)).expect("read"))
        .collect();
    for entry in fs::read_dir(dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        let name = path.to_string_lossy().into_owned();
        if name.ends_with(".snapshot") || name.ends_with(".txnindex") {
            fs::remove_file(&path).expect("remove");
        }
    }
    let log = PartitionLog::open(dir.path(), config.clone(), 0).expect("recover");
    assert_eq!(log.producer_state(), &state);
    assert_eq!(log.aborted_txn_index(), index);
    let bytes_after: Vec<Vec<u8>> = [2, 4, 6]
        .iter()
        .map(|&b| fs::read(txn_index_path(dir.path(), b)).expect("read"))
        .collect();
    assert_eq!(bytes_after, bytes_before);
}

#[test]
fn a_crash_after_a_flush_recovers_from_the_recovery_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(1 << 20);
    let mut log = PartitionLog::open(dir.path(), config.clone(), 0).expect("open");
    send(&mut log, 1, 0, 0, 1);
    send(&mut log, 2, 0, 0, 1);
    log.roll().expect("roll");
    end(&mut log, 1, false);
    let target = log.prepare_flush().expect("prepare").expect("target");
    target.sync().expect("sync");
    log.mark_flushed(target.up_to);
    let recovery_point = log.recovery_point();
    send(&mut log, 2, 0, 1, 1);
    end(&mut log, 2, false);
    high_watermark_at_end(&mut log);
    let (state, index) = (log.producer_state().clone(), log.aborted_txn_index());
    drop(log); // kill -9: the page cache keeps what was written
    let log = PartitionLog::open(dir.path(), config, recovery_point).expect("recover");
    assert_eq!(log.producer_state(), &state);
    assert_eq!(log.aborted_txn_index(), index);
    assert_eq!(index, vec![entry(1, 0, 2, 1), entry(2, 1, 4, 5)]);
}

#[test]
fn a_torn_abort_marker_is_cut_with_its_index_entry() {
    // Pins LogSegment.recover: truncating at the first bad batch also rebuilds the txn index,
    // so the entry of a lost marker goes and the transaction is ongoing again.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(1 << 20);
    let mut log = PartitionLog::open(dir.path(), config.clone(), 0).expect("open");
    send(&mut log, 1, 0, 0, 1);
    end(&mut log, 1, false);
    assert!(txn_index_path(dir.path(), 0).exists());
    drop(log);
    let log_path = dir.path().join(format!("{:020}.log", 0));
    let len = fs::metadata(&log_path).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&log_path)
        .and_then(|f| f.set_len(len - 3))
        .expect("tear");
    let log = PartitionLog::open(dir.path(), config, 0).expect("recover");
    assert_eq!(log.log_end_offset(), 1);
    assert!(log.has_ongoing_transaction(1));
    assert!(log.aborted_txn_index().is_empty());
    assert!(!txn_index_path(dir.path(), 0).exists());
    assert_eq!(log.last_stable_offset(), 0);
}

#[test]
fn a_damaged_txnindex_is_rebuilt_from_the_log_and_the_log_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(1 << 20);
    let mut log = log_with_aborts_across_rolls(dir.path());
    let index = log.aborted_txn_index();
    let end = log.log_end_offset();
    let good = fs::read(txn_index_path(dir.path(), 4)).expect("read");
    let target = log.prepare_flush().expect("prepare").expect("target");
    target.sync().expect("sync");
    log.close().expect("close");
    let log_bytes = fs::read(dir.path().join(format!("{:020}.log", 4))).expect("log");
    for damage in ["length", "version"] {
        let mut bad = good.clone();
        match damage {
            "length" => bad.push(0),
            _ => bad[1] = 7,
        }
        fs::write(txn_index_path(dir.path(), 4), &bad).expect("damage");
        let log = PartitionLog::open_after(dir.path(), config.clone(), end, 0, LastShutdown::Clean)
            .expect("reopen");
        assert_eq!(log.aborted_txn_index(), index, "{damage}");
        assert_eq!(
            fs::read(txn_index_path(dir.path(), 4)).expect("read"),
            good,
            "{damage}"
        );
        assert_eq!(log.log_end_offset(), end);
        drop(log);
        assert_eq!(
            fs::read(dir.path().join(format!("{:020}.log", 4))).expect("log"),
            log_bytes
        );
    }
}

#[test]
fn truncation_drops_the_entries_of_markers_it_removes() {
    // Pins TransactionIndex.truncateTo: entries with lastOffset >= the offset go.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config(1 << 20), 0).expect("open");
    send(&mut log, 1, 0, 0, 1); // 0
    end(&mut log, 1, false); // 1
    send(&mut log, 2, 0, 0, 1); // 2
    end(&mut log, 2, false); // 3
    high_watermark_at_end(&mut log);
    assert_eq!(log.aborted_txn_index().len(), 2);
    log.truncate_to(3).expect("truncate");
    assert_eq!(log.aborted_txn_index(), vec![entry(1, 0, 1, 2)]);
    assert_eq!(
        fs::metadata(txn_index_path(dir.path(), 0))
            .expect("stat")
            .len(),
        34
    );
    assert!(log.has_ongoing_transaction(2));
    assert_eq!(log.first_unstable_offset(), Some(2));
    log.truncate_to(1).expect("truncate");
    assert!(log.aborted_txn_index().is_empty());
    assert!(log.has_ongoing_transaction(1));
    assert!(!log.has_ongoing_transaction(2));
    assert!(!txn_index_path(dir.path(), 0).exists());
}

#[test]
fn deleting_segments_deletes_their_txnindex_and_keeps_producer_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_with_aborts_across_rolls(dir.path());
    let producers_before = log.producer_count();
    assert_eq!(log.advance_log_start_offset(6).expect("advance"), 6);
    assert_eq!(log.segment_base_offsets(), vec![6]);
    for base in [2, 4] {
        assert!(!txn_index_path(dir.path(), base).exists(), "{base}");
    }
    assert!(txn_index_path(dir.path(), 6).exists());
    assert_eq!(log.aborted_transactions(6, 10), vec![(3, 8)]);
    // Kafka keeps producer state across retention.
    assert_eq!(log.producer_count(), producers_before);
}

#[test]
fn an_ongoing_transaction_below_the_log_start_holds_the_lso_there() {
    // Pins UnifiedLog.maybeIncrementFirstUnstableOffset: the first unstable offset is at least
    // the log start offset.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config(1 << 20), 0).expect("open");
    send(&mut log, 1, 0, 0, 1); // 0, never ended
    let mut plain = support::batch(3, "x", 10, T0, None);
    log.append(&mut plain, 0, T0).expect("append");
    high_watermark_at_end(&mut log);
    log.advance_log_start_offset(2).expect("advance");
    assert_eq!(log.first_unstable_offset(), Some(2));
    assert_eq!(log.last_stable_offset(), 2);
}

fn keyed_txn(log: &mut PartitionLog, id: i64, sequence: i32, keys_values: &[&str]) {
    let producer = Producer {
        id,
        epoch: 0,
        sequence,
    };
    let mut batch = txn_batch(&keys(keys_values), &format!("txn{id}"), T0, producer);
    log.append(&mut batch, 0, T0).expect("append");
}

fn read_keyed(log: &PartitionLog) -> Vec<(i64, Option<String>, String)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    loop {
        let slice = log
            .read(offset, 1 << 20, log.high_watermark(), true)
            .expect("read");
        if slice.is_empty() {
            return out;
        }
        let mut buf = Bytes::from(slice.read_bytes().expect("pread"));
        for set in RecordBatchDecoder::decode_all(&mut buf).expect("decode") {
            for record in set.records.into_iter().filter(|r| !r.control) {
                let text = |b: Bytes| String::from_utf8_lossy(&b).into_owned();
                out.push((
                    record.offset,
                    record.key.map(text),
                    record.value.map(text).unwrap_or_default(),
                ));
            }
        }
        offset = slice.next_offset;
    }
}

#[test]
fn compaction_removes_aborted_data_keeps_markers_and_stops_at_the_lso() {
    // Pins Cleaner/CleanedTransactionMetadata: aborted records are removed and never shadow
    // committed ones in the offset map; committed transactional records compact normally;
    // the cleanable range ends at the last stable offset.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        compacted: true,
        ..small_config(1 << 20)
    };
    let mut log = PartitionLog::open(dir.path(), config, 0).expect("open");
    let mut old = support::keyed_batch(&keys(&["a", "b"]), "old", 5, T0);
    log.append(&mut old, 0, T0).expect("append"); // a@0, b@1
    keyed_txn(&mut log, 1, 0, &["a"]); // 2, aborted
    end(&mut log, 1, false); // 3
    keyed_txn(&mut log, 2, 0, &["b"]); // 4, committed: replaces b@1
    end(&mut log, 2, true); // 5
    log.roll().expect("roll");
    keyed_txn(&mut log, 3, 0, &["a", "a"]); // 6, 7: ongoing
    log.roll().expect("roll");
    let mut filler = support::keyed_batch(&keys(&["z"]), "filler", 5, T0);
    log.append(&mut filler, 0, T0).expect("append"); // 8
    high_watermark_at_end(&mut log);
    assert_eq!(log.last_stable_offset(), 6);
    let policy = CompactionPolicy {
        min_cleanable_dirty_ratio: 0.0,
        ..CompactionPolicy::default()
    };
    let outcome = log.compact(&policy, T0 + 1_000, 1 << 20).expect("compact");
    assert!(outcome.records_removed >= 2, "{outcome:?}");
    let records: Vec<(i64, Option<String>, String)> = read_keyed(&log);
    let seen: Vec<(i64, String)> = records
        .iter()
        .map(|(offset, key, _)| (*offset, key.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, "a".to_string()),
            (4, "b".to_string()),
            (6, "a".to_string()),
            (7, "a".to_string()),
            (8, "z".to_string()),
        ],
        "the aborted a@2 and the replaced b@1 are gone; the ongoing transaction is untouched"
    );
    // Both markers stay; the abort's entry stays (its data was seen this pass).
    for offset in [3, 5] {
        let slice = log.read(offset, 1 << 20, 6, true).expect("read");
        assert_eq!(slice.base_offset, offset, "marker at {offset} kept");
    }
    assert_eq!(log.aborted_txn_index(), vec![entry(1, 2, 3, 4)]);
    assert!(log.has_ongoing_transaction(3));
    // Once producer 3 commits and the high watermark passes, its records compact too.
    end(&mut log, 3, true); // 9
    log.roll().expect("roll");
    let mut filler = support::keyed_batch(&keys(&["y"]), "filler", 5, T0);
    log.append(&mut filler, 0, T0).expect("append");
    high_watermark_at_end(&mut log);
    log.compact(&policy, T0 + 2_000, 1 << 20).expect("compact");
    let keys_left: Vec<(i64, String)> = read_keyed(&log)
        .into_iter()
        .map(|(offset, key, _)| (offset, key.unwrap_or_default()))
        .collect();
    assert_eq!(
        keys_left,
        vec![
            (4, "b".to_string()),
            (7, "a".to_string()),
            (8, "z".to_string()),
            (10, "y".to_string()),
        ]
    );
}

#[test]
fn a_seeded_mix_of_transactions_replays_to_the_same_state_and_indexes() {
    // The invariant of producer_state.rs and segment/txn_index.rs: whatever the order of
    // data, commits, aborts, rolls and flushes, a replay of the log gives the live state and
    // the live transaction indexes (after a crash resumed at the recovery point, and from
    // scratch with every snapshot and index lost).
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(700);
    let mut log = PartitionLog::open(dir.path(), config.clone(), 0).expect("open");
    let mut seed: u64 = 0x5eed_1234;
    let mut next = move |bound: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % bound
    };
    let mut sequences = [0i32; 3];
    let mut open = [false; 3];
    let mut recovery_point = 0;
    for _ in 0..300 {
        let producer = next(3) as usize;
        let id = producer as i64 + 1;
        match next(10) {
            0..=5 => {
                send(&mut log, id, 0, sequences[producer], 1 + next(3) as usize);
                sequences[producer] = log
                    .producer_state()
                    .entry(id)
                    .and_then(|e| e.batches.back())
                    .map_or(0, |b| b.last_sequence + 1);
                open[producer] = true;
            }
            6 | 7 if open[producer] => {
                end(&mut log, id, next(2) == 0);
                open[producer] = false;
            }
            8 => {
                if let Some(target) = log.prepare_flush().expect("prepare") {
                    target.sync().expect("sync");
                    log.mark_flushed(target.up_to);
                    recovery_point = log.recovery_point();
                }
            }
            _ => {}
        }
    }
    high_watermark_at_end(&mut log);
    let state = log.producer_state().clone();
    let index = log.aborted_txn_index();
    assert!(
        index.len() >= 5,
        "the mix aborted some transactions: {}",
        index.len()
    );
    assert!(log.segment_count() >= 3);
    drop(log);
    let log = PartitionLog::open(dir.path(), config.clone(), recovery_point).expect("recover");
    assert_eq!(log.producer_state(), &state);
    assert_eq!(log.aborted_txn_index(), index);
    drop(log);
    for entry in fs::read_dir(dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        let name = path.to_string_lossy().into_owned();
        if name.ends_with(".snapshot") || name.ends_with(".txnindex") {
            fs::remove_file(&path).expect("remove");
        }
    }
    let log = PartitionLog::open(dir.path(), config, 0).expect("replay");
    assert_eq!(log.producer_state(), &state);
    assert_eq!(log.aborted_txn_index(), index);
}
