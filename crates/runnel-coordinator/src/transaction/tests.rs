//! The transaction coordinator driven by hand: explicit times, reply handles as numbers, a
//! counting producer-id allocator. Each test names the Kafka behaviour it pins.

use super::coordinator::*;
use super::record::TxnRecord;
use super::request::*;
use super::state::*;
use super::*;

mod load;
mod model;
mod v2;

/// Producer ids 1000, 1001, ... as Kafka's ProducerIdManager would hand them out.
pub(super) struct Ids(pub i64);

impl ProducerIdAllocator for Ids {
    fn allocate(&mut self) -> Result<i64, TxnErrorCode> {
        let id = self.0;
        self.0 += 1;
        Ok(id)
    }
}

/// One partition, so every transactional id is ours.
pub(super) fn config(version: TxnVersion) -> TxnConfig {
    TxnConfig {
        transaction_state_partitions: 1,
        transaction_version: version,
        ..TxnConfig::default()
    }
}

pub(super) fn loaded(config: TxnConfig) -> TxnCoordinator {
    let mut coordinator = TxnCoordinator::new(config, 0, 7, Box::new(Ids(1000)), 0);
    let out: TxnOutput<u32> = coordinator.finish_load(0);
    assert!(out.records.is_empty() && out.markers.is_empty());
    coordinator
}

pub(super) fn reply(out: &TxnOutput<u32>, to: u32) -> TxnResponse {
    out.replies
        .iter()
        .find(|(id, _)| *id == to)
        .map(|(_, response)| response.clone())
        .unwrap_or_else(|| panic!("no reply to {to} in {out:?}"))
}

pub(super) fn init(
    c: &mut TxnCoordinator,
    id: &str,
    expected: Option<(i64, i16)>,
    now_ms: i64,
) -> (InitProducerIdResult, TxnOutput<u32>) {
    let request = TxnRequest::InitProducerId(InitProducerIdRequest {
        transactional_id: id.into(),
        transaction_timeout_ms: 60_000,
        producer_id_and_epoch: expected,
    });
    let out = c.handle(request, 1, now_ms);
    match reply(&out, 1) {
        TxnResponse::InitProducerId(result) => (result, out),
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn add(
    c: &mut TxnCoordinator,
    id: &str,
    (producer_id, epoch): (i64, i16),
    partitions: &[(&str, i32)],
    version: TxnVersion,
    now_ms: i64,
) -> (TxnErrorCode, TxnOutput<u32>) {
    let request = TxnRequest::AddPartitions(AddPartitionsRequest {
        transactional_id: id.into(),
        producer_id,
        producer_epoch: epoch,
        partitions: partitions
            .iter()
            .map(|(t, p)| (t.to_string(), *p))
            .collect(),
        client_version: version,
    });
    let out = c.handle(request, 2, now_ms);
    match reply(&out, 2) {
        TxnResponse::AddPartitions(results) => {
            let first = results.first().map_or(TxnErrorCode::None, |(_, e)| *e);
            assert!(results.iter().all(|(_, e)| *e == first), "{results:?}");
            (first, out)
        }
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn end(
    c: &mut TxnCoordinator,
    id: &str,
    (producer_id, epoch): (i64, i16),
    result: TxnResult,
    version: TxnVersion,
    now_ms: i64,
) -> (EndTxnResult, TxnOutput<u32>) {
    let request = TxnRequest::EndTxn(EndTxnRequest {
        transactional_id: id.into(),
        producer_id,
        producer_epoch: epoch,
        result,
        client_version: version,
    });
    let out = c.handle(request, 3, now_ms);
    match reply(&out, 3) {
        TxnResponse::EndTxn(result) => (result, out),
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn states(out: &TxnOutput<u32>) -> Vec<TxnState> {
    out.records
        .iter()
        .map(|r| r.value.as_ref().expect("a value").state)
        .collect()
}

pub(super) fn producer(result: &InitProducerIdResult) -> (i64, i16) {
    assert_eq!(result.error, TxnErrorCode::None, "{result:?}");
    (result.producer_id, result.producer_epoch)
}

/// Writes `out`'s records to `log` as bytes, as the driver would.
pub(super) fn persist(log: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>, out: &TxnOutput<u32>) {
    for record in &out.records {
        let (key, value) = record.encode();
        log.push((key.to_vec(), value.map(|v| v.to_vec())));
    }
}

pub(super) fn reload(log: &[(Vec<u8>, Option<Vec<u8>>)], cfg: TxnConfig) -> TxnCoordinator {
    let mut c = TxnCoordinator::new(cfg, 0, 8, Box::new(Ids(5000)), 0);
    for (key, value) in log {
        c.replay(TxnRecord::decode(Some(key), value.as_deref()).expect("our own records decode"));
    }
    c
}

#[test]
fn a_new_transactional_id_gets_a_fresh_producer_id_at_epoch_0() {
    // Kafka's handleInitProducerId: an unknown id gets a producer id from the manager and an
    // Empty record at epoch 0.
    let mut c = loaded(config(TxnVersion::V2));
    let (result, out) = init(&mut c, "app", None, 5);
    assert_eq!(producer(&result), (1000, 0));
    assert_eq!(states(&out), [TxnState::Empty]);
    let value = out.records[0].value.as_ref().expect("a value");
    assert_eq!(value.version, 1, "transaction.version 2 writes value v1");
    assert_eq!(value.transaction_timeout_ms, 60_000);
    assert_eq!(value.start_timestamp_ms, -1);
}

#[test]
fn a_second_init_bumps_the_epoch_and_fences_the_first_producer() {
    // Kafka's handleInitProducerId bumps the epoch of a known id; the old epoch is fenced at
    // the coordinator (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH before KIP-588's versions).
    let mut c = loaded(config(TxnVersion::V2));
    let first = producer(&init(&mut c, "app", None, 0).0);
    let second = producer(&init(&mut c, "app", None, 1).0);
    assert_eq!(second, (1000, 1));
    let (error, out) = add(&mut c, "app", first, &[("t", 0)], TxnVersion::V0, 2);
    assert_eq!(error, TxnErrorCode::ProducerFenced);
    assert!(out.records.is_empty());
    assert_eq!(
        error.for_version(TxnApi::AddPartitionsToTxn, 1),
        TxnErrorCode::InvalidProducerEpoch
    );
    assert_eq!(
        error.for_version(TxnApi::InitProducerId, 3),
        TxnErrorCode::InvalidProducerEpoch
    );
    assert_eq!(
        error.for_version(TxnApi::EndTxn, 2),
        TxnErrorCode::ProducerFenced
    );
}

#[test]
fn init_with_an_ongoing_transaction_aborts_it_first_and_answers_concurrent_transactions() {
    // Kafka's handleInitProducerId on Ongoing: prepareFenceProducerEpoch, then the internal
    // abort (PrepareAbort at the bumped epoch, markers), CONCURRENT_TRANSACTIONS to the new
    // producer, which retries once CompleteAbort is written and gets an epoch past the fence.
    let mut c = loaded(config(TxnVersion::V0));
    let first = producer(&init(&mut c, "app", None, 0).0);
    let (error, _) = add(
        &mut c,
        "app",
        first,
        &[("t", 0), ("t", 1)],
        TxnVersion::V0,
        1,
    );
    assert_eq!(error, TxnErrorCode::None);

    let (result, out) = init(&mut c, "app", None, 2);
    assert_eq!(result.error, TxnErrorCode::ConcurrentTransactions);
    assert_eq!(states(&out), [TxnState::PrepareAbort]);
    let markers = out.markers.first().expect("abort markers").clone();
    assert_eq!(markers.result, TxnResult::Abort);
    assert_eq!((markers.producer_id, markers.producer_epoch), (1000, 1));
    assert_eq!(markers.coordinator_epoch, 7);
    assert_eq!(
        markers.partitions,
        [("t".to_string(), 0), ("t".to_string(), 1)]
    );

    // The old producer's commit is refused: its epoch is fenced.
    let (ended, _) = end(&mut c, "app", first, TxnResult::Commit, TxnVersion::V0, 3);
    assert_eq!(ended.error, TxnErrorCode::ProducerFenced);
    // The new producer retries while the markers are out.
    let (retry, _) = init(&mut c, "app", None, 3);
    assert_eq!(retry.error, TxnErrorCode::ConcurrentTransactions);

    let out: TxnOutput<u32> = c.markers_written(&markers, 4);
    assert_eq!(states(&out), [TxnState::CompleteAbort]);
    let (retry, _) = init(&mut c, "app", None, 5);
    assert_eq!(producer(&retry), (1000, 2));
}

#[test]
fn under_transactions_v2_the_fencing_abort_bumps_the_epoch_once_more() {
    // Kafka's endTransaction (TV2) with an epoch fence: the fenced epoch is bumped again by the
    // abort, so the markers carry epoch + 2 and the retry gets epoch + 3.
    let mut c = loaded(config(TxnVersion::V2));
    let first = producer(&init(&mut c, "app", None, 0).0);
    add(&mut c, "app", first, &[("t", 0)], TxnVersion::V2, 1);
    let (result, out) = init(&mut c, "app", None, 2);
    assert_eq!(result.error, TxnErrorCode::ConcurrentTransactions);
    let markers = out.markers[0].clone();
    assert_eq!(markers.producer_epoch, 2);
    let stored = c.transaction("app").expect("held");
    assert_eq!(stored.client_version, TxnVersion::V2);
    let _: TxnOutput<u32> = c.markers_written(&markers, 3);
    assert_eq!(producer(&init(&mut c, "app", None, 4).0), (1000, 3));
}

#[test]
fn transaction_timeouts_are_checked_against_the_maximum() {
    // Kafka's validateTransactionTimeoutMs: 0 < timeout <= transaction.max.timeout.ms, else
    // INVALID_TRANSACTION_TIMEOUT; an empty transactional id is INVALID_REQUEST.
    let mut c = loaded(config(TxnVersion::V2));
    for timeout_ms in [900_001, 0, -1] {
        let request = TxnRequest::InitProducerId(InitProducerIdRequest {
            transactional_id: "app".into(),
            transaction_timeout_ms: timeout_ms,
            producer_id_and_epoch: None,
        });
        let out = c.handle(request, 1, 0);
        assert_eq!(
            reply(&out, 1),
            TxnResponse::InitProducerId(InitProducerIdResult::error(
                TxnErrorCode::InvalidTransactionTimeout
            ))
        );
        assert!(out.records.is_empty());
    }
    assert_eq!(c.transaction_count(), 0, "a refused init creates nothing");
    let (empty, _) = init(&mut c, "", None, 0);
    assert_eq!(empty.error, TxnErrorCode::InvalidRequest);
    let request = TxnRequest::InitProducerId(InitProducerIdRequest {
        transactional_id: "app".into(),
        transaction_timeout_ms: 900_000,
        producer_id_and_epoch: None,
    });
    let out = c.handle(request, 1, 0);
    assert!(
        matches!(reply(&out, 1), TxnResponse::InitProducerId(r) if r.error == TxnErrorCode::None)
    );
}

#[test]
fn kip_360_a_recovering_producer_keeps_its_id_and_a_retried_bump_is_not_bumped_twice() {
    // Kafka's prepareIncrementProducerEpoch with an expected epoch: the current epoch bumps
    // (and is remembered), the previous one is a retry answered with the current epoch, any
    // other is PRODUCER_FENCED, as is another producer id.
    let mut c = loaded(config(TxnVersion::V2));
    let first = producer(&init(&mut c, "app", None, 0).0);
    let bumped = producer(&init(&mut c, "app", Some(first), 1).0);
    assert_eq!(bumped, (1000, 1));
    let retried = producer(&init(&mut c, "app", Some(first), 2).0);
    assert_eq!(retried, (1000, 1), "a retry of a bump that succeeded");
    let (stale, _) = init(&mut c, "app", Some((1000, 5)), 3);
    assert_eq!(stale.error, TxnErrorCode::ProducerFenced);
    let (other, _) = init(&mut c, "app", Some((42, 1)), 3);
    assert_eq!(other.error, TxnErrorCode::ProducerFenced);
    // Without an expected epoch a bump clears the remembered one: the old retry is fenced.
    producer(&init(&mut c, "app", None, 4).0);
    let (late, _) = init(&mut c, "app", Some(first), 5);
    assert_eq!(late.error, TxnErrorCode::ProducerFenced);
}

/// A coordinator holding `id` as loaded from a record with these fields.
pub(super) fn holding(
    config: TxnConfig,
    id: &str,
    state: TxnState,
    (producer_id, epoch): (i64, i16),
    partitions: &[(&str, i32)],
    client_version: TxnVersion,
) -> TxnCoordinator {
    let mut c = TxnCoordinator::new(config, 0, 7, Box::new(Ids(2000)), 0);
    let mut txn = TxnMetadata::new(producer_id, 60_000, 0);
    txn.producer_epoch = epoch;
    txn.state = state;
    txn.partitions = partitions
        .iter()
        .map(|(t, p)| (t.to_string(), *p))
        .collect();
    txn.start_timestamp_ms = if state == TxnState::Empty { -1 } else { 0 };
    txn.client_version = client_version;
    c.replay(txn.to_record(id, 1));
    let _: TxnOutput<u32> = c.finish_load(0);
    c
}

#[test]
fn an_exhausted_epoch_rotates_to_a_new_producer_id() {
    // Kafka's prepareProducerIdRotation: at epoch >= i16::MAX - 1 InitProducerId hands out a
    // new producer id at epoch 0, remembering the old id so a KIP-360 retry is recognised.
    let mut c = holding(
        config(TxnVersion::V2),
        "app",
        TxnState::CompleteCommit,
        (1000, i16::MAX - 1),
        &[],
        TxnVersion::V0,
    );
    let (result, out) = init(&mut c, "app", Some((1000, i16::MAX - 1)), 1);
    assert_eq!(producer(&result), (2000, 0));
    let value = out.records[0].value.as_ref().expect("a value");
    assert_eq!(value.previous_producer_id, 1000);
    // The same request again (the response was lost) gets the same answer.
    let (retry, out) = init(&mut c, "app", Some((1000, i16::MAX - 1)), 2);
    assert_eq!(producer(&retry), (2000, 0));
    assert_eq!(states(&out), [TxnState::Empty]);
}

#[test]
fn commit_prepares_replies_writes_markers_then_completes() {
    // Kafka's endTransactionWithTV1: Ongoing + commit writes PrepareCommit, answers once it
    // is durable, sends markers to every partition (the group's __consumer_offsets partition
    // too), and writes CompleteCommit when they are all written.
    let mut c = loaded(config(TxnVersion::V2));
    let p = producer(&init(&mut c, "app", None, 0).0);
    let (error, out) = add(&mut c, "app", p, &[("orders", 2)], TxnVersion::V0, 10);
    assert_eq!(error, TxnErrorCode::None);
    assert_eq!(states(&out), [TxnState::Ongoing]);
    let value = out.records[0].value.as_ref().expect("a value");
    assert_eq!(value.start_timestamp_ms, 10);

    let request = TxnRequest::AddOffsets(AddOffsetsRequest {
        transactional_id: "app".into(),
        producer_id: p.0,
        producer_epoch: p.1,
        group_id: "my-group".into(),
        client_version: TxnVersion::V0,
    });
    let out = c.handle(request, 9, 11);
    assert_eq!(reply(&out, 9), TxnResponse::AddOffsets(TxnErrorCode::None));
    // Kafka's group hash: "my-group" is partition 36 of 50.
    let offsets = (CONSUMER_OFFSETS_TOPIC.to_string(), 36);
    assert!(c
        .transaction("app")
        .expect("held")
        .partitions
        .contains(&offsets));

    // Adding known partitions again writes nothing.
    let (error, out) = add(&mut c, "app", p, &[("orders", 2)], TxnVersion::V0, 12);
    assert_eq!(error, TxnErrorCode::None);
    assert!(out.records.is_empty());

    let (ended, out) = end(&mut c, "app", p, TxnResult::Commit, TxnVersion::V0, 20);
    assert_eq!(ended, EndTxnResult::error(TxnErrorCode::None));
    assert_eq!(states(&out), [TxnState::PrepareCommit]);
    let markers = out.markers[0].clone();
    assert_eq!(markers.result, TxnResult::Commit);
    assert_eq!((markers.producer_id, markers.producer_epoch), p);
    assert_eq!(markers.partitions, [offsets, ("orders".to_string(), 2)]);

    // While the markers are out (Kafka's pending transition) everything waits; a stale epoch
    // is still fenced first.
    let (again, _) = end(&mut c, "app", p, TxnResult::Commit, TxnVersion::V0, 21);
    assert_eq!(again.error, TxnErrorCode::ConcurrentTransactions);
    let (abort, _) = end(&mut c, "app", p, TxnResult::Abort, TxnVersion::V0, 21);
    assert_eq!(abort.error, TxnErrorCode::ConcurrentTransactions);
    let (stale, _) = end(
        &mut c,
        "app",
        (p.0, p.1 + 1),
        TxnResult::Abort,
        TxnVersion::V0,
        21,
    );
    assert_eq!(stale.error, TxnErrorCode::ProducerFenced);
    let (error, _) = add(&mut c, "app", p, &[("orders", 3)], TxnVersion::V0, 21);
    assert_eq!(error, TxnErrorCode::ConcurrentTransactions);

    let out: TxnOutput<u32> = c.markers_written(&markers, 30);
    assert_eq!(states(&out), [TxnState::CompleteCommit]);
    let value = out.records[0].value.as_ref().expect("a value");
    assert!(value.partitions.is_empty());
    // A second report of the same markers changes nothing.
    let out: TxnOutput<u32> = c.markers_written(&markers, 31);
    assert!(out.records.is_empty());

    // Kafka answers a repeated commit of a committed transaction with NONE, an abort with
    // INVALID_TXN_STATE.
    let (retry, out) = end(&mut c, "app", p, TxnResult::Commit, TxnVersion::V0, 32);
    assert_eq!(retry.error, TxnErrorCode::None);
    assert!(out.records.is_empty());
    let (abort, _) = end(&mut c, "app", p, TxnResult::Abort, TxnVersion::V0, 32);
    assert_eq!(abort.error, TxnErrorCode::InvalidTxnState);
}

#[test]
fn abort_prepares_writes_abort_markers_then_completes() {
    // Kafka's endTransactionWithTV1 with abort: PrepareAbort, ABORT markers, CompleteAbort; the
    // producer's next transaction starts from CompleteAbort at the same epoch.
    let mut c = loaded(config(TxnVersion::V0));
    let p = producer(&init(&mut c, "app", None, 0).0);
    add(&mut c, "app", p, &[("t", 0)], TxnVersion::V0, 1);
    let (ended, out) = end(&mut c, "app", p, TxnResult::Abort, TxnVersion::V0, 2);
    assert_eq!(ended.error, TxnErrorCode::None);
    assert_eq!(states(&out), [TxnState::PrepareAbort]);
    assert_eq!(out.records[0].value.as_ref().expect("a value").version, 0);
    let markers = out.markers[0].clone();
    assert_eq!(markers.result, TxnResult::Abort);
    let out: TxnOutput<u32> = c.markers_written(&markers, 3);
    assert_eq!(states(&out), [TxnState::CompleteAbort]);
    let (again, _) = end(&mut c, "app", p, TxnResult::Abort, TxnVersion::V0, 4);
    assert_eq!(again.error, TxnErrorCode::None);
    let (error, out) = add(&mut c, "app", p, &[("t", 1)], TxnVersion::V0, 5);
    assert_eq!(error, TxnErrorCode::None);
    assert_eq!(states(&out), [TxnState::Ongoing]);
}

#[test]
fn misuse_gets_kafkas_error_at_once() {
    // Kafka's coordinator errors: no such id → INVALID_PRODUCER_ID_MAPPING; another producer
    // id → INVALID_PRODUCER_ID_MAPPING; a stale epoch → PRODUCER_FENCED; EndTxn without a
    // transaction → INVALID_TXN_STATE.
    let mut c = loaded(config(TxnVersion::V2));
    let (unknown, _) = end(
        &mut c,
        "nobody",
        (1, 0),
        TxnResult::Commit,
        TxnVersion::V0,
        0,
    );
    assert_eq!(unknown.error, TxnErrorCode::InvalidProducerIdMapping);
    let (unknown, _) = add(&mut c, "nobody", (1, 0), &[("t", 0)], TxnVersion::V0, 0);
    assert_eq!(unknown, TxnErrorCode::InvalidProducerIdMapping);

    let p = producer(&init(&mut c, "app", None, 0).0);
    let (no_txn, out) = end(&mut c, "app", p, TxnResult::Commit, TxnVersion::V0, 1);
    assert_eq!(no_txn.error, TxnErrorCode::InvalidTxnState);
    assert!(out.records.is_empty() && out.markers.is_empty());
    let (no_txn, _) = end(&mut c, "app", p, TxnResult::Abort, TxnVersion::V0, 1);
    assert_eq!(no_txn.error, TxnErrorCode::InvalidTxnState);

    let (wrong_id, _) = add(
        &mut c,
        "app",
        (p.0 + 1, p.1),
        &[("t", 0)],
        TxnVersion::V0,
        1,
    );
    assert_eq!(wrong_id, TxnErrorCode::InvalidProducerIdMapping);
    let (stale, _) = add(
        &mut c,
        "app",
        (p.0, p.1 - 1),
        &[("t", 0)],
        TxnVersion::V0,
        1,
    );
    assert_eq!(stale, TxnErrorCode::ProducerFenced);
    let (ahead, _) = end(
        &mut c,
        "app",
        (p.0, p.1 + 1),
        TxnResult::Abort,
        TxnVersion::V0,
        1,
    );
    assert_eq!(ahead.error, TxnErrorCode::ProducerFenced);
    let (empty, _) = add(&mut c, "", p, &[("t", 0)], TxnVersion::V0, 1);
    assert_eq!(empty, TxnErrorCode::InvalidRequest);
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    // Kafka's abortTimedOutTransactions, every
    // transaction.abort.timed.out.transaction.cleanup.interval.ms: Ongoing with
    // start + timeout < now is fenced and aborted; the producer then gets PRODUCER_FENCED.
    let mut c = loaded(config(TxnVersion::V0));
    let p = producer(&init(&mut c, "app", None, 0).0);
    add(&mut c, "app", p, &[("t", 0)], TxnVersion::V0, 1_000);
    assert_eq!(c.next_deadline_ms(), 10_000);
    let out: TxnOutput<u32> = c.expire(10_000);
    assert!(out.records.is_empty(), "not yet past 1000 + 60000");
    assert_eq!(c.next_deadline_ms(), 20_000);
    let out: TxnOutput<u32> = c.expire(61_000);
    assert!(
        out.records.is_empty(),
        "start + timeout == now is not past it"
    );
    let out: TxnOutput<u32> = c.expire(71_001);
    assert_eq!(states(&out), [TxnState::PrepareAbort]);
    assert!(out.replies.is_empty());
    let markers = out.markers[0].clone();
    assert_eq!(markers.producer_epoch, p.1 + 1);
    let (late, _) = end(&mut c, "app", p, TxnResult::Commit, TxnVersion::V0, 71_002);
    assert_eq!(late.error, TxnErrorCode::ProducerFenced);
    let _: TxnOutput<u32> = c.markers_written(&markers, 71_003);
    assert_eq!(
        c.transaction("app").expect("held").state,
        TxnState::CompleteAbort
    );
}

#[test]
fn idle_transactional_ids_expire_with_a_tombstone() {
    // Kafka's transactional id expiration: Empty or complete ids idle for
    // transactional.id.expiration.ms get a tombstone; an open transaction is kept.
    let mut cfg = config(TxnVersion::V2);
    cfg.transactional_id_expiration_ms = 1_000_000;
    cfg.remove_expired_transaction_cleanup_interval_ms = 100_000;
    cfg.abort_timed_out_transaction_cleanup_interval_ms = 100_000_000;
    let mut c = loaded(cfg);
    producer(&init(&mut c, "idle", None, 0).0);
    let busy = producer(&init(&mut c, "busy", None, 0).0);
    add(&mut c, "busy", busy, &[("t", 0)], TxnVersion::V0, 0);
    let out: TxnOutput<u32> = c.expire(900_000);
    assert!(out.records.is_empty());
    let out: TxnOutput<u32> = c.expire(1_000_000);
    assert_eq!(
        out.records,
        [TxnRecord {
            transactional_id: "idle".into(),
            value: None
        }]
    );
    assert!(c.transaction("idle").is_none());
    assert!(c.transaction("busy").is_some());
    // A forgotten id starts over with a new producer id.
    assert_eq!(
        producer(&init(&mut c, "idle", None, 1_000_001).0),
        (1002, 0)
    );
}

#[test]
fn verification_tells_which_partitions_are_in_the_ongoing_transaction() {
    // Kafka's handleVerifyPartitionsInTransaction (KIP-890 part 1): NONE for a partition of the
    // transaction, TRANSACTION_ABORTABLE for one that is not; fencing and mapping errors for
    // all; nothing is written.
    let mut c = loaded(config(TxnVersion::V2));
    let p = producer(&init(&mut c, "app", None, 0).0);
    add(&mut c, "app", p, &[("t", 0)], TxnVersion::V0, 1);
    let verify = |c: &mut TxnCoordinator, (producer_id, producer_epoch): (i64, i16)| {
        let request = TxnRequest::VerifyPartitions(VerifyPartitionsRequest {
            transactional_id: "app".into(),
            producer_id,
            producer_epoch,
            partitions: vec![("t".into(), 0), ("t".into(), 1)],
        });
        let out = c.handle(request, 4, 2);
        assert!(out.records.is_empty());
        match reply(&out, 4) {
            TxnResponse::VerifyPartitions(result) => result
                .into_iter()
                .map(|(_, error)| error)
                .collect::<Vec<_>>(),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        verify(&mut c, p),
        [TxnErrorCode::None, TxnErrorCode::TransactionAbortable]
    );
    assert_eq!(
        verify(&mut c, (p.0, p.1 + 1)),
        [TxnErrorCode::ProducerFenced, TxnErrorCode::ProducerFenced]
    );
    assert_eq!(
        verify(&mut c, (p.0 + 5, p.1)),
        [
            TxnErrorCode::InvalidProducerIdMapping,
            TxnErrorCode::InvalidProducerIdMapping
        ]
    );
}

#[test]
fn error_codes_are_kafkas() {
    use kafka_protocol::error::ResponseError as Kafka;
    let pairs = [
        (
            TxnErrorCode::CoordinatorLoadInProgress,
            Kafka::CoordinatorLoadInProgress,
        ),
        (TxnErrorCode::NotCoordinator, Kafka::NotCoordinator),
        (
            TxnErrorCode::InvalidProducerEpoch,
            Kafka::InvalidProducerEpoch,
        ),
        (TxnErrorCode::InvalidTxnState, Kafka::InvalidTxnState),
        (
            TxnErrorCode::InvalidProducerIdMapping,
            Kafka::InvalidProducerIdMapping,
        ),
        (
            TxnErrorCode::InvalidTransactionTimeout,
            Kafka::InvalidTransactionTimeout,
        ),
        (
            TxnErrorCode::ConcurrentTransactions,
            Kafka::ConcurrentTransactions,
        ),
        (TxnErrorCode::ProducerFenced, Kafka::ProducerFenced),
        (
            TxnErrorCode::TransactionalIdNotFound,
            Kafka::TransactionalIdNotFound,
        ),
        (
            TxnErrorCode::TransactionAbortable,
            Kafka::TransactionAbortable,
        ),
    ];
    for (ours, theirs) in pairs {
        assert_eq!(ours.code(), theirs.code(), "{ours}");
    }
    assert_eq!(
        TxnErrorCode::InvalidTxnState.error_code(),
        Some(runnel_protocol::ErrorCode::InvalidTxnState)
    );
}

#[test]
fn a_failed_write_turns_successes_into_the_drivers_error() {
    let ok = TxnResponse::EndTxn(EndTxnResult {
        error: TxnErrorCode::None,
        producer_id: 1,
        producer_epoch: 2,
    });
    assert_eq!(
        ok.with_failure(TxnErrorCode::NotCoordinator),
        TxnResponse::EndTxn(EndTxnResult::error(TxnErrorCode::NotCoordinator))
    );
    let refused = TxnResponse::AddOffsets(TxnErrorCode::ProducerFenced);
    assert_eq!(
        refused.clone().with_failure(TxnErrorCode::NotCoordinator),
        refused
    );
}

#[test]
fn a_timer_pass_is_bounded_and_the_rest_follows_at_once() {
    // One output stays one modest batch: at most TIMER_PASS_IDS_MAX tombstones per pass.
    let mut cfg = config(TxnVersion::V2);
    cfg.transactional_id_expiration_ms = 10;
    cfg.remove_expired_transaction_cleanup_interval_ms = 1_000;
    let mut c = loaded(cfg);
    let count = TIMER_PASS_IDS_MAX + 5;
    for index in 0..count {
        producer(&init(&mut c, &format!("id-{index}"), None, 0).0);
    }
    let first: TxnOutput<u32> = c.expire(1_000);
    assert_eq!(first.records.len(), TIMER_PASS_IDS_MAX);
    assert_eq!(c.next_deadline_ms(), 1_000, "the rest is due at once");
    let second: TxnOutput<u32> = c.expire(1_000);
    assert_eq!(second.records.len(), 5);
    assert_eq!(c.transaction_count(), 0);
    assert!(c.next_deadline_ms() > 1_000);
}
