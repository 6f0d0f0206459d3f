//! Transactions v2 (KIP-890 part 2): an epoch bump at every EndTxn, partitions added by the
//! produce path, and the retry rules that keep a late request of one transaction out of the next.

use super::*;

const V2: TxnVersion = TxnVersion::V2;

#[test]
fn every_end_txn_bumps_the_epoch_and_returns_it() {
    // Kafka's endTransaction (TV2) and prepareAbortOrCommit: PrepareCommit at epoch + 1, the
    // reply carries the producer id and epoch for the next transaction, the markers the bumped
    // epoch; the next transaction's first produce adds its partitions at that epoch.
    let mut c = loaded(config(V2));
    let (result, _) = init(&mut c, "app", None, 0);
    let mut producer = (result.producer_id, result.producer_epoch);
    for round in 0..3i16 {
        let (error, out) = add(&mut c, "app", producer, &[("t", 0)], V2, 10);
        assert_eq!(error, TxnErrorCode::None);
        assert_eq!(states(&out), [TxnState::Ongoing]);
        let (ended, out) = end(&mut c, "app", producer, TxnResult::Commit, V2, 20);
        assert_eq!(ended.error, TxnErrorCode::None);
        assert_eq!((ended.producer_id, ended.producer_epoch), (1000, round + 1));
        let value = out.records[0].value.as_ref().expect("a value");
        assert_eq!(value.client_transaction_version, 2);
        assert_eq!(out.markers[0].producer_epoch, round + 1);
        let markers = out.markers[0].clone();
        let _: TxnOutput<u32> = c.markers_written(&markers, 30);
        producer = (ended.producer_id, ended.producer_epoch);
    }
}

#[test]
fn a_delayed_request_of_an_earlier_transaction_never_touches_the_next_one() {
    // The scenario Jepsen's Bufstream analysis showed on the v1 protocol: an EndTxn or produce
    // of transaction N that arrives during transaction N+1. Under v2 its epoch is stale, so
    // Kafka answers PRODUCER_FENCED and transaction N+1 is untouched.
    let mut c = loaded(config(V2));
    let (result, _) = init(&mut c, "app", None, 0);
    let first = (result.producer_id, result.producer_epoch);
    add(&mut c, "app", first, &[("t", 0)], V2, 1);
    let (ended, out) = end(&mut c, "app", first, TxnResult::Commit, V2, 2);
    let markers = out.markers[0].clone();

    // A retry while the markers are out waits; once complete it is answered NONE, unchanged.
    let (retry, _) = end(&mut c, "app", first, TxnResult::Commit, V2, 3);
    assert_eq!(retry.error, TxnErrorCode::ConcurrentTransactions);
    let _: TxnOutput<u32> = c.markers_written(&markers, 4);
    let (retry, out) = end(&mut c, "app", first, TxnResult::Commit, V2, 5);
    assert_eq!(retry.error, TxnErrorCode::None);
    assert_eq!((retry.producer_id, retry.producer_epoch), (1000, 1));
    assert!(out.records.is_empty());

    // Transaction N+1 starts at the bumped epoch.
    let second = (ended.producer_id, ended.producer_epoch);
    add(&mut c, "app", second, &[("t", 1)], V2, 6);

    let (late_end, out) = end(&mut c, "app", first, TxnResult::Commit, V2, 7);
    assert_eq!(late_end.error, TxnErrorCode::ProducerFenced);
    assert!(out.records.is_empty() && out.markers.is_empty());
    let (late_add, out) = add(&mut c, "app", first, &[("t", 0)], V2, 7);
    assert_eq!(late_add, TxnErrorCode::ProducerFenced);
    assert!(out.records.is_empty());
    let txn = c.transaction("app").expect("held");
    assert_eq!(txn.state, TxnState::Ongoing);
    assert_eq!(txn.partitions.len(), 1, "only transaction N+1's partition");
}

#[test]
fn an_abort_without_a_transaction_is_allowed_and_completes_at_once() {
    // Kafka's TV2 table: Empty/CompleteAbort/CompleteCommit + abort at the current epoch bump
    // the epoch (a client unsure whether a transaction is open may abort); with no partitions
    // the transaction completes without markers. Commit on Empty is INVALID_TXN_STATE, a retry
    // epoch on Empty is PRODUCER_FENCED.
    let mut c = loaded(config(V2));
    let (result, _) = init(&mut c, "app", None, 0);
    let p = (result.producer_id, result.producer_epoch);
    let (commit, _) = end(&mut c, "app", p, TxnResult::Commit, V2, 1);
    assert_eq!(commit.error, TxnErrorCode::InvalidTxnState);
    let (ended, out) = end(&mut c, "app", p, TxnResult::Abort, V2, 1);
    assert_eq!(ended.error, TxnErrorCode::None);
    assert_eq!(ended.producer_epoch, 1);
    assert_eq!(
        states(&out),
        [TxnState::PrepareAbort, TxnState::CompleteAbort]
    );
    assert!(out.markers.is_empty());
    let prepare = out.records[0].value.as_ref().expect("a value");
    assert_eq!(
        prepare.start_timestamp_ms, 1,
        "an abort with no partitions starts now"
    );

    // CompleteAbort: the retry (old epoch) is NONE, a commit at either epoch is refused.
    let (retry, out) = end(&mut c, "app", p, TxnResult::Abort, V2, 2);
    assert_eq!((retry.error, retry.producer_epoch), (TxnErrorCode::None, 1));
    assert!(out.records.is_empty());
    let (commit, _) = end(&mut c, "app", (1000, 1), TxnResult::Commit, V2, 2);
    assert_eq!(commit.error, TxnErrorCode::InvalidTxnState);
    let (commit, _) = end(&mut c, "app", p, TxnResult::Commit, V2, 2);
    assert_eq!(commit.error, TxnErrorCode::InvalidTxnState);

    // Empty again after InitProducerId: a retry epoch is fenced.
    let (result, _) = init(&mut c, "app", None, 3);
    let (fenced, _) = end(
        &mut c,
        "app",
        (result.producer_id, result.producer_epoch - 1),
        TxnResult::Abort,
        V2,
        4,
    );
    assert_eq!(fenced.error, TxnErrorCode::ProducerFenced);
}

#[test]
fn an_end_txn_that_takes_the_last_epoch_moves_to_a_new_producer_id() {
    // Kafka's TV2 overflow: at epoch i16::MAX - 1 EndTxn allocates the next producer id; the
    // markers go out at i16::MAX under the old id, the reply and CompleteCommit carry the new
    // id at epoch 0, and a retry of that EndTxn is recognised by the old id and epoch.
    let mut c = holding(
        config(V2),
        "app",
        TxnState::Ongoing,
        (1000, i16::MAX - 1),
        &[("t", 0)],
        V2,
    );
    let old = (1000, i16::MAX - 1);
    let (ended, out) = end(&mut c, "app", old, TxnResult::Commit, V2, 1);
    assert_eq!(ended.error, TxnErrorCode::None);
    assert_eq!((ended.producer_id, ended.producer_epoch), (2000, 0));
    let value = out.records[0].value.as_ref().expect("a value");
    assert_eq!(
        (value.producer_epoch, value.next_producer_id),
        (i16::MAX, 2000)
    );
    let markers = out.markers[0].clone();
    assert_eq!(
        (markers.producer_id, markers.producer_epoch),
        (1000, i16::MAX)
    );

    // The producer already on the new id waits for the rotation to complete.
    let (early, _) = add(&mut c, "app", (2000, 0), &[("t", 0)], V2, 2);
    assert_eq!(early, TxnErrorCode::ConcurrentTransactions);

    let out: TxnOutput<u32> = c.markers_written(&markers, 3);
    let value = out.records[0].value.as_ref().expect("a value");
    assert_eq!(value.state, TxnState::CompleteCommit);
    assert_eq!((value.producer_id, value.producer_epoch), (2000, 0));
    assert_eq!(
        (value.previous_producer_id, value.next_producer_id),
        (1000, -1)
    );

    let (retry, out) = end(&mut c, "app", old, TxnResult::Commit, V2, 4);
    assert_eq!(retry.error, TxnErrorCode::None);
    assert_eq!((retry.producer_id, retry.producer_epoch), (2000, 0));
    assert!(out.records.is_empty());
    let (error, _) = add(&mut c, "app", (2000, 0), &[("t", 0)], V2, 5);
    assert_eq!(error, TxnErrorCode::None);
}

#[test]
fn an_abort_after_a_commit_starts_and_ends_an_empty_transaction_at_the_next_epoch() {
    // Kafka's TV2 table, CompleteCommit + abort at the current epoch: a bump, PrepareAbort and
    // CompleteAbort with no partitions, and the reply carries the new epoch.
    let mut c = loaded(config(V2));
    let (result, _) = init(&mut c, "app", None, 0);
    let first = (result.producer_id, result.producer_epoch);
    add(&mut c, "app", first, &[("t", 0)], V2, 1);
    let (ended, out) = end(&mut c, "app", first, TxnResult::Commit, V2, 2);
    let markers = out.markers[0].clone();
    let _: TxnOutput<u32> = c.markers_written(&markers, 3);
    let current = (ended.producer_id, ended.producer_epoch);
    let (aborted, out) = end(&mut c, "app", current, TxnResult::Abort, V2, 4);
    assert_eq!(aborted.error, TxnErrorCode::None);
    assert_eq!(aborted.producer_epoch, current.1 + 1);
    assert_eq!(
        states(&out),
        [TxnState::PrepareAbort, TxnState::CompleteAbort]
    );
    // The retry of the commit before it is now neither a retry nor current: fenced.
    let (late, _) = end(&mut c, "app", first, TxnResult::Commit, V2, 5);
    assert_eq!(late.error, TxnErrorCode::ProducerFenced);
}

#[test]
fn a_producer_recovering_from_unknown_producer_id_may_name_its_lost_id_to_a_new_coordinator() {
    // Kafka's isValidProducerId, case 1: the metadata was just created (epoch -1), so the
    // producer id and epoch a recovering producer names are accepted and the new id returned.
    let mut c = loaded(config(V2));
    let (result, _) = init(&mut c, "app", Some((77, 3)), 0);
    assert_eq!(result.error, TxnErrorCode::None);
    assert_eq!((result.producer_id, result.producer_epoch), (1000, 0));
}
