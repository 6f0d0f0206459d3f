//! Loading: COORDINATOR_LOAD_IN_PROGRESS and NOT_COORDINATOR, replay of the log, completion
//! of transactions caught between prepare and complete, and the admin views of the state.

use super::*;

#[test]
fn a_loading_coordinator_answers_load_in_progress_and_another_partitions_ids_not_coordinator() {
    // Kafka's getTransactionState: COORDINATOR_LOAD_IN_PROGRESS while the partition loads,
    // NOT_COORDINATOR for an id that hashes to a partition this broker does not lead.
    let cfg = TxnConfig::default();
    // Kafka's hash: "my-group" is partition 36 of 50 (see partition_for's test).
    let mut c = TxnCoordinator::new(cfg, 36, 1, Box::new(Ids(1)), 0);
    let (loading, out) = init(&mut c, "my-group", None, 0);
    assert_eq!(loading.error, TxnErrorCode::CoordinatorLoadInProgress);
    assert!(out.records.is_empty());
    let out: TxnOutput<u32> = c.expire(1_000_000);
    assert!(out.records.is_empty(), "no timers while loading");
    assert_eq!(c.next_deadline_ms(), i64::MAX);
    let _: TxnOutput<u32> = c.finish_load(0);
    assert_eq!(partition_for_transactional_id("my-group", 50), 36);
    assert_eq!(producer(&init(&mut c, "my-group", None, 0).0), (1, 0));
    let (elsewhere, _) = init(&mut c, "x-y-z", None, 0);
    assert_eq!(elsewhere.error, TxnErrorCode::NotCoordinator);
}

#[test]
fn a_crash_between_prepare_commit_and_complete_is_completed_on_restart() {
    // Kafka's loadTransactionsForTxnTopicPartition: a transaction found in PrepareCommit after
    // replay gets its markers sent again and is completed; meanwhile the producer waits.
    let cfg = config(TxnVersion::V2);
    let mut c = loaded(cfg.clone());
    let mut log = Vec::new();
    let (result, out) = init(&mut c, "app", None, 0);
    persist(&mut log, &out);
    let p = producer(&result);
    let (_, out) = add(&mut c, "app", p, &[("t", 0), ("u", 3)], TxnVersion::V0, 1);
    persist(&mut log, &out);
    let (_, out) = end(&mut c, "app", p, TxnResult::Commit, TxnVersion::V0, 2);
    persist(&mut log, &out);
    drop(c); // the broker dies before the markers are written

    let mut c = reload(&log, cfg);
    let (loading, _) = init(&mut c, "app", None, 3);
    assert_eq!(loading.error, TxnErrorCode::CoordinatorLoadInProgress);
    let out: TxnOutput<u32> = c.finish_load(3);
    assert!(out.records.is_empty());
    let markers = out.markers.first().expect("markers again").clone();
    assert_eq!(markers.result, TxnResult::Commit);
    assert_eq!(markers.coordinator_epoch, 8, "the new leader epoch");
    assert_eq!(markers.partitions.len(), 2);
    let (waiting, _) = init(&mut c, "app", None, 4);
    assert_eq!(waiting.error, TxnErrorCode::ConcurrentTransactions);
    let out: TxnOutput<u32> = c.markers_written(&markers, 5);
    assert_eq!(states(&out), [TxnState::CompleteCommit]);
    assert_eq!(producer(&init(&mut c, "app", None, 6).0), (1000, 1));
}

#[test]
fn replay_applies_the_last_record_and_tombstones() {
    // Kafka's loadTransactionMetadata: later records win, a tombstone removes the id.
    let cfg = config(TxnVersion::V0);
    let mut c = loaded(cfg.clone());
    let mut log = Vec::new();
    for id in ["a", "b"] {
        let (_, out) = init(&mut c, id, None, 0);
        persist(&mut log, &out);
        let (_, out) = init(&mut c, id, None, 1);
        persist(&mut log, &out);
    }
    log.push((
        TxnRecord {
            transactional_id: "a".into(),
            value: None,
        }
        .encode()
        .0
        .to_vec(),
        None,
    ));
    let mut c = reload(&log, cfg);
    let _: TxnOutput<u32> = c.finish_load(2);
    assert!(c.transaction("a").is_none());
    let b = c.transaction("b").expect("b is held");
    assert_eq!((b.producer_id, b.producer_epoch), (1001, 1));
    assert_eq!(
        b.last_producer_epoch, NO_PRODUCER_EPOCH,
        "not stored, as in Kafka"
    );
}

#[test]
fn describe_and_list_report_kafkas_state_names() {
    // Kafka's handleDescribeTransactions and listTransactionStates.
    let mut c = loaded(config(TxnVersion::V2));
    let p = producer(&init(&mut c, "app", None, 0).0);
    add(&mut c, "app", p, &[("t", 0)], TxnVersion::V0, 100);
    producer(&init(&mut c, "idle", None, 0).0);
    let out = c.handle(
        TxnRequest::Describe(vec!["app".into(), "none".into()]),
        5,
        200,
    );
    let TxnResponse::Describe(described) = reply(&out, 5) else {
        panic!("not a describe reply");
    };
    assert_eq!(described[0].state, "Ongoing");
    assert_eq!(described[0].transaction_start_time_ms, 100);
    assert_eq!(described[0].partitions, [("t".to_string(), 0)]);
    assert_eq!(described[1].error, TxnErrorCode::TransactionalIdNotFound);
    let list = |c: &mut TxnCoordinator, filter: ListTxnFilter| {
        let out = c.handle(TxnRequest::List(filter), 6, 200);
        match reply(&out, 6) {
            TxnResponse::List(Ok(listed)) => listed
                .into_iter()
                .map(|t| t.transactional_id)
                .collect::<Vec<_>>(),
            other => panic!("unexpected {other:?}"),
        }
    };
    let all = ListTxnFilter {
        duration_ms_min: -1,
        ..ListTxnFilter::default()
    };
    assert_eq!(list(&mut c, all.clone()), ["app", "idle"]);
    let ongoing = ListTxnFilter {
        states: vec!["Ongoing".into()],
        ..all.clone()
    };
    assert_eq!(list(&mut c, ongoing), ["app"]);
    let long = ListTxnFilter {
        states: vec!["Ongoing".into()],
        duration_ms_min: 100,
        ..all
    };
    assert!(list(&mut c, long).is_empty(), "open for exactly 100 ms");
}
