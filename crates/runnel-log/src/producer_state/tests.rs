//! Producer state rules and snapshots, against Kafka's `ProducerAppendInfo` and
//! `ProducerStateManager`.

use super::*;

fn header(
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    count: i32,
    base_offset: i64,
) -> BatchHeader {
    BatchHeader {
        base_offset,
        length: 49,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: count - 1,
        base_timestamp: 0,
        max_timestamp: 10,
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
        records_count: count,
    }
}

fn txn_header(producer_id: i64, sequence: i32, base_offset: i64) -> BatchHeader {
    BatchHeader {
        attributes: 0x10,
        ..header(producer_id, 0, sequence, 1, base_offset)
    }
}

fn marker_header(producer_id: i64, epoch: i16, base_offset: i64) -> BatchHeader {
    BatchHeader {
        attributes: 0x30,
        base_sequence: -1,
        ..header(producer_id, epoch, -1, 1, base_offset)
    }
}

#[test]
fn snapshots_keep_ongoing_transactions_and_coordinator_epochs() {
    // Pins Kafka's snapshot fields coordinator_epoch and current_txn_first_offset.
    let mut state = ProducerStateManager::new();
    state.update(&txn_header(1, 0, 0));
    state.update(&txn_header(2, 0, 1));
    state.update(&txn_header(1, 1, 2));
    let abort = ControlRecord::marker(false, 7);
    let completed = state.update_marker(&marker_header(2, 0, 3), &abort);
    assert_eq!(
        completed,
        Some(CompletedTxn {
            producer_id: 2,
            first_offset: 1,
            last_offset: 3,
            is_aborted: true,
            last_stable_offset: 0,
        })
    );
    state.on_high_watermark_updated(4);
    let bytes = state.encode_snapshot(4);
    let (offset, decoded) = ProducerStateManager::decode_snapshot(&bytes).expect("decode");
    assert_eq!((offset, &decoded), (4, &state));
    assert_eq!(decoded.entry(2).map(|e| e.coordinator_epoch), Some(7));
    assert_eq!(
        decoded.entry(1).and_then(|e| e.current_txn_first_offset),
        Some(0)
    );
    assert_eq!(decoded.first_unstable_offset(), Some(0));
    assert!(decoded.has_ongoing_transaction(1) && !decoded.has_ongoing_transaction(2));
}

#[test]
fn version_1_snapshots_are_still_read() {
    let mut body = Vec::new();
    body.extend_from_slice(&9i64.to_be_bytes());
    body.extend_from_slice(&1u32.to_be_bytes());
    body.extend_from_slice(&5i64.to_be_bytes());
    body.extend_from_slice(&2i16.to_be_bytes());
    body.push(1);
    for value in [0i32, 3] {
        body.extend_from_slice(&value.to_be_bytes());
    }
    for value in [5i64, 8, 10] {
        body.extend_from_slice(&value.to_be_bytes());
    }
    let mut bytes = b"RNPS".to_vec();
    bytes.extend_from_slice(&1u16.to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    bytes.extend_from_slice(&body);
    let (offset, state) = ProducerStateManager::decode_snapshot(&bytes).expect("decode");
    assert_eq!(offset, 9);
    let entry = state.entry(5).expect("producer 5");
    assert_eq!((entry.epoch, entry.batches.len()), (2, 1));
    assert_eq!(entry.coordinator_epoch, NO_COORDINATOR_EPOCH);
    assert_eq!(entry.current_txn_first_offset, None);
    // A producer count its bytes cannot hold is refused before anything is allocated.
    let mut huge = bytes.clone();
    huge[18..22].copy_from_slice(&u32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&huge[10..]);
    huge[6..10].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(
        ProducerStateManager::decode_snapshot(&huge).map(|_| ()),
        Err("bad producer count")
    );
}

#[test]
fn a_producer_known_from_a_marker_only_must_start_at_sequence_0() {
    // Pins ProducerAppendInfo.checkSequence: same epoch, no cached batch → NO_SEQUENCE,
    // so only sequence 0 is in sequence.
    let mut state = ProducerStateManager::new();
    state.update_marker(&marker_header(3, 1, 0), &ControlRecord::marker(true, 0));
    assert!(matches!(
        state.check(&header(3, 1, 4, 1, 1)),
        Err(AppendError::OutOfOrderSequence {
            expected: 0,
            received: 4,
            ..
        })
    ));
    assert_eq!(
        state.check(&header(3, 1, 0, 1, 1)).ok(),
        Some(ProducerCheck::Append)
    );
}

#[test]
fn applies_kafka_sequence_rules() {
    let mut state = ProducerStateManager::new();
    let first = header(7, 0, 0, 3, 0);
    assert_eq!(state.check(&first).ok(), Some(ProducerCheck::Append));
    state.update(&first);
    assert!(
        matches!(state.check(&header(7, 0, 0, 3, 99)), Ok(ProducerCheck::Duplicate(b)) if b.first_offset == 0 && b.last_offset == 2)
    );
    assert!(matches!(
        state.check(&header(7, 0, 4, 1, 3)),
        Err(AppendError::OutOfOrderSequence {
            producer_id: 7,
            expected: 3,
            received: 4
        })
    ));
    assert_eq!(
        state.check(&header(7, 0, 3, 1, 3)).ok(),
        Some(ProducerCheck::Append)
    );
    assert!(matches!(
        state.check(&header(7, 1, 5, 1, 3)),
        Err(AppendError::OutOfOrderSequence {
            expected: 0,
            received: 5,
            ..
        })
    ));
    state.update(&header(7, 2, 0, 1, 3));
    assert!(matches!(
        state.check(&header(7, 1, 0, 1, 4)),
        Err(AppendError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(
        state.check(&header(8, 0, 42, 1, 4)).ok(),
        Some(ProducerCheck::Append)
    );
    let mut wrap = ProducerStateManager::new();
    wrap.update(&header(9, 0, i32::MAX, 1, 0));
    assert_eq!(
        wrap.check(&header(9, 0, 0, 1, 1)).ok(),
        Some(ProducerCheck::Append)
    );
}

#[test]
fn keeps_five_batches_and_round_trips_snapshots() {
    let mut state = ProducerStateManager::new();
    for i in 0..7 {
        state.update(&header(1, 0, i, 1, i64::from(i)));
    }
    state.update(&header(2, 3, 0, 2, 7));
    assert_eq!(
        state.entry(1).map(|e| e.batches.len()),
        Some(PRODUCER_BATCHES_CACHED)
    );
    let bytes = state.encode_snapshot(9);
    let (offset, decoded) = ProducerStateManager::decode_snapshot(&bytes).expect("decode");
    assert_eq!((offset, &decoded), (9, &state));
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        ProducerStateManager::decode_snapshot(&bad),
        Err("CRC mismatch")
    );
    assert!(ProducerStateManager::decode_snapshot(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn writes_keeps_two_and_loads_the_newest_valid_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut state = ProducerStateManager::new();
    for offset in [10, 20, 30] {
        state.update(&header(offset, 0, 0, 1, offset));
        state.write_snapshot(dir.path(), offset, 2).expect("write");
    }
    let offsets: Vec<i64> = list_snapshots(dir.path())
        .expect("list")
        .iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(offsets, vec![20, 30]);
    fs::write(snapshot_path(dir.path(), 30), b"garbage").expect("corrupt");
    let (offset, loaded) = load_newest_snapshot(dir.path(), 0, 100)
        .expect("load")
        .expect("some");
    assert_eq!((offset, loaded.producer_count()), (20, 2));
    assert!(load_newest_snapshot(dir.path(), 0, 19)
        .expect("load")
        .is_none());
}
