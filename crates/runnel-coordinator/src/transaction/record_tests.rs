//! `__transaction_state` records against bytes laid out by hand from Kafka's
//! `TransactionLogKey.json` / `TransactionLogValue.json`, and hostile bytes.

use proptest::prelude::*;

use super::*;

fn partitions(list: &[(&str, i32)]) -> BTreeSet<(String, i32)> {
    list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

fn value(version: i16, state: TxnState, parts: &[(&str, i32)]) -> TxnValue {
    TxnValue {
        version,
        producer_id: 1000,
        previous_producer_id: -1,
        next_producer_id: -1,
        next_producer_epoch: -1,
        producer_epoch: 2,
        transaction_timeout_ms: 60_000,
        state,
        partitions: partitions(parts),
        last_update_timestamp_ms: 5,
        start_timestamp_ms: 3,
        client_transaction_version: 0,
    }
}

/// The fixed head every value starts with: pid 1000, epoch 2, timeout 60000, `status`.
fn head(version: u8, status: u8) -> Vec<u8> {
    let mut bytes = vec![0, version];
    bytes.extend_from_slice(&1000i64.to_be_bytes());
    bytes.extend_from_slice(&[0, 2]);
    bytes.extend_from_slice(&60_000i32.to_be_bytes());
    bytes.push(status);
    bytes
}

fn timestamps() -> Vec<u8> {
    let mut bytes = 5i64.to_be_bytes().to_vec();
    bytes.extend_from_slice(&3i64.to_be_bytes());
    bytes
}

fn round_trip(record: &TxnRecord, key: &[u8], value_bytes: Option<&[u8]>) {
    let (encoded_key, encoded_value) = record.encode();
    assert_eq!(&encoded_key[..], key, "key bytes");
    assert_eq!(encoded_value.as_deref(), value_bytes, "value bytes");
    let decoded = TxnRecord::decode(Some(key), value_bytes).expect("decodes");
    assert_eq!(&decoded, record);
}

#[test]
fn key_v0_is_a_version_and_a_string_as_in_kafkas_transaction_log_key() {
    let record = TxnRecord {
        transactional_id: "txn-1".into(),
        value: None,
    };
    round_trip(&record, &[0, 0, 0, 5, b't', b'x', b'n', b'-', b'1'], None);
}

#[test]
fn value_v0_ongoing_matches_kafkas_layout() {
    let mut bytes = head(0, 1);
    bytes.extend_from_slice(&[0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
    bytes.extend_from_slice(&timestamps());
    let record = TxnRecord {
        transactional_id: "a".into(),
        value: Some(value(0, TxnState::Ongoing, &[("t", 0), ("t", 1)])),
    };
    round_trip(&record, &[0, 0, 0, 1, b'a'], Some(&bytes));
}

#[test]
fn value_v0_empty_has_null_partitions_as_kafkas_value_to_bytes_writes() {
    let mut bytes = head(0, 0);
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    bytes.extend_from_slice(&timestamps());
    let record = TxnRecord {
        transactional_id: "a".into(),
        value: Some(value(0, TxnState::Empty, &[])),
    };
    round_trip(&record, &[0, 0, 0, 1, b'a'], Some(&bytes));
}

#[test]
fn value_v1_is_flexible_with_compact_arrays_and_struct_tags() {
    let mut bytes = head(1, 2);
    // Two topics (+1), each a compact name, a compact array of partitions and no tags.
    bytes.extend_from_slice(&[
        3, 2, b'a', 2, 0, 0, 0, 7, 0, 2, b'b', 3, 0, 0, 0, 0, 0, 0, 0, 1, 0,
    ]);
    bytes.extend_from_slice(&timestamps());
    bytes.push(0); // no tagged fields: every one is at its default
    let record = TxnRecord {
        transactional_id: "a".into(),
        value: Some(value(
            1,
            TxnState::PrepareCommit,
            &[("b", 1), ("a", 7), ("b", 0)],
        )),
    };
    round_trip(&record, &[0, 0, 0, 1, b'a'], Some(&bytes));
}

#[test]
fn value_v1_writes_kip_890_tags_in_ascending_order_only_when_set() {
    let mut bytes = head(1, 4);
    bytes.push(1); // CompleteCommit: an empty, not null, partition array
    bytes.extend_from_slice(&timestamps());
    bytes.push(3);
    bytes.extend_from_slice(&[0, 8]);
    bytes.extend_from_slice(&999i64.to_be_bytes());
    bytes.extend_from_slice(&[1, 8]);
    bytes.extend_from_slice(&1001i64.to_be_bytes());
    bytes.extend_from_slice(&[2, 2, 0, 2]);
    let mut stored = value(1, TxnState::CompleteCommit, &[]);
    stored.previous_producer_id = 999;
    stored.next_producer_id = 1001;
    stored.client_transaction_version = 2;
    let record = TxnRecord {
        transactional_id: "a".into(),
        value: Some(stored),
    };
    round_trip(&record, &[0, 0, 0, 1, b'a'], Some(&bytes));
}

#[test]
fn value_v1_empty_has_a_null_compact_array() {
    let mut bytes = head(1, 0);
    bytes.push(0);
    bytes.extend_from_slice(&timestamps());
    bytes.push(0);
    let record = TxnRecord {
        transactional_id: "a".into(),
        value: Some(value(1, TxnState::Empty, &[])),
    };
    round_trip(&record, &[0, 0, 0, 1, b'a'], Some(&bytes));
}

#[test]
fn value_v1_reads_next_producer_epoch_and_skips_unknown_tags() {
    let mut bytes = head(1, 5);
    bytes.push(1);
    bytes.extend_from_slice(&timestamps());
    let tail = bytes.clone();
    bytes.push(2);
    bytes.extend_from_slice(&[3, 2, 0, 9]); // NextProducerEpoch = 9
    bytes.extend_from_slice(&[40, 3, 1, 2, 3]); // a tag from the future
    let decoded = TxnRecord::decode(Some(&[0, 0, 0, 1, b'a']), Some(&bytes)).expect("decodes");
    let stored = decoded.value.expect("a value");
    assert_eq!(stored.next_producer_epoch, 9);
    assert_eq!(stored.state, TxnState::CompleteAbort);
    // Tag 3's number is assumed, not read from Kafka's schema: another size is skipped.
    let mut other = tail;
    other.extend_from_slice(&[1, 3, 4, 1, 2, 3, 4]);
    let decoded = TxnRecord::decode(Some(&[0, 0, 0, 1, b'a']), Some(&other)).expect("decodes");
    assert_eq!(decoded.value.expect("a value").next_producer_epoch, -1);
}

#[test]
fn statuses_are_kafkas_transaction_state_ids() {
    let states = [
        (0, TxnState::Empty, "Empty"),
        (1, TxnState::Ongoing, "Ongoing"),
        (2, TxnState::PrepareCommit, "PrepareCommit"),
        (3, TxnState::PrepareAbort, "PrepareAbort"),
        (4, TxnState::CompleteCommit, "CompleteCommit"),
        (5, TxnState::CompleteAbort, "CompleteAbort"),
        (6, TxnState::Dead, "Dead"),
        (7, TxnState::PrepareEpochFence, "PrepareEpochFence"),
    ];
    for (id, state, name) in states {
        assert_eq!(state.id(), id);
        assert_eq!(TxnState::from_id(id), Some(state));
        assert_eq!(state.name(), name);
    }
    assert_eq!(TxnState::from_id(8), None);
}

#[test]
fn damaged_records_are_refused_with_a_reason() {
    assert_eq!(TxnRecord::decode(None, None), Err(TxnRecordError::NoKey));
    assert_eq!(
        TxnRecord::decode(Some(&[0, 1, 0, 0]), None),
        Err(TxnRecordError::UnknownKeyVersion { version: 1 })
    );
    assert_eq!(
        TxnRecord::decode(Some(&[0, 0, 0xff, 0xff]), None),
        Err(TxnRecordError::UnexpectedNull {
            what: "transactional id"
        })
    );
    let key = [0, 0, 0, 1, b'a'];
    assert_eq!(
        TxnRecord::decode(Some(&key), Some(&[0, 2])),
        Err(TxnRecordError::UnknownValueVersion { version: 2 })
    );
    let mut bad_status = head(0, 9);
    bad_status.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    bad_status.extend_from_slice(&timestamps());
    assert_eq!(
        TxnRecord::decode(Some(&key), Some(&bad_status)),
        Err(TxnRecordError::UnknownStatus { status: 9 })
    );
    // A huge topic count over a few bytes is refused before anything is allocated.
    let mut huge = head(0, 1);
    huge.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0, 1, b't']);
    assert!(matches!(
        TxnRecord::decode(Some(&key), Some(&huge)),
        Err(TxnRecordError::Truncated { .. })
    ));
    let mut long_varint = head(1, 1);
    long_varint.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert!(matches!(
        TxnRecord::decode(Some(&key), Some(&long_varint)),
        Err(TxnRecordError::VarintTooLong { .. })
    ));
    let mut wrong_tag_size = head(1, 4);
    wrong_tag_size.push(1);
    wrong_tag_size.extend_from_slice(&timestamps());
    wrong_tag_size.extend_from_slice(&[1, 0, 4, 0, 0, 0, 1]);
    assert_eq!(
        TxnRecord::decode(Some(&key), Some(&wrong_tag_size)),
        Err(TxnRecordError::TagSize {
            tag: 0,
            size: 4,
            expected: 8
        })
    );
}

#[test]
fn every_truncation_of_a_valid_record_is_an_error() {
    let mut stored = value(
        1,
        TxnState::Ongoing,
        &[("topic", 0), ("topic", 3), ("x", 1)],
    );
    stored.previous_producer_id = 4;
    stored.client_transaction_version = 2;
    for version in [0, 1] {
        stored.version = version;
        let record = TxnRecord {
            transactional_id: "some-id".into(),
            value: Some(stored.clone()),
        };
        let (key, value) = record.encode();
        let value = value.expect("a value");
        for cut in 0..key.len() {
            assert!(TxnRecord::decode(Some(&key[..cut]), Some(&value)).is_err());
        }
        for cut in 0..value.len() {
            assert!(
                TxnRecord::decode(Some(&key), Some(&value[..cut])).is_err(),
                "v{version} value cut at {cut} decoded"
            );
        }
    }
}

proptest! {
    #[test]
    fn hostile_bytes_never_panic(
        key in proptest::collection::vec(any::<u8>(), 0..40),
        value in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = TxnRecord::decode(Some(&key), Some(&value));
        let mut framed = vec![0u8, 0, 0, 1, b'a'];
        framed.extend_from_slice(&key);
        let _ = TxnRecord::decode(Some(&framed[..5]), Some(&value));
        // A valid head followed by noise reaches the partition and tag decoders.
        for version in [0u8, 1] {
            let mut noisy = head(version, 1);
            noisy.extend_from_slice(&value);
            let _ = TxnRecord::decode(Some(&framed[..5]), Some(&noisy));
        }
    }

    #[test]
    fn values_round_trip(
        producer_id in any::<i64>(),
        epoch in any::<i16>(),
        parts in proptest::collection::btree_set(("[a-z]{1,4}", 0..8i32), 0..6),
        state_id in 0i8..8,
        version in 0i16..2,
        previous in any::<i64>(),
        client in 0i16..3,
    ) {
        let state = TxnState::from_id(state_id).expect("a state");
        let flexible = version == 1;
        let stored = TxnValue {
            version,
            producer_id,
            previous_producer_id: if flexible { previous } else { -1 },
            next_producer_id: -1,
            next_producer_epoch: -1,
            producer_epoch: epoch,
            transaction_timeout_ms: 1,
            state,
            partitions: if state == TxnState::Empty { BTreeSet::new() } else { parts },
            last_update_timestamp_ms: 2,
            start_timestamp_ms: 3,
            client_transaction_version: if flexible { client } else { 0 },
        };
        let record = TxnRecord { transactional_id: "id".into(), value: Some(stored) };
        let (key, value) = record.encode();
        prop_assert_eq!(TxnRecord::decode(Some(&key), value.as_deref()), Ok(record));
    }
}
