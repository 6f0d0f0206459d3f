//! The transaction coordinator over the wire, with raw requests where a real client would
//! never send the bad input: FindCoordinator for transactional ids, InitProducerId with a
//! transactional id (epoch bumps that fence, Kafka's errors per version, state that survives a
//! restart), AddPartitionsToTxn's checks, EndTxn's misuse, and KIP-890 part 1's refusal of a
//! transactional batch for a partition the transaction does not hold. Committing and aborting
//! with real clients is in tests/clients/python/test_transactions_confluent.py (and
//! kafkajs_transactions.test.mjs); transactions v2 in tests/transactions_v2.rs.

mod common;

use std::time::Duration;

use common::txn::{
    fetch_read_committed, init, init_loaded, latest_offset, produce, transactional_batch, txn_id,
};
use common::{RawClient, TestBroker};
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::ErrorCode;

const TOPIC: &str = "txn-topic";
/// Few `__transaction_state` partitions keep the test quick; ids still hash across them.
const OVERRIDES: &[(&str, &str)] = &[("transaction.state.log.num.partitions", "4")];

/// AddPartitionsToTxn v0-3 for one transaction; the error of each partition, in order.
fn add_partitions(
    client: &mut RawClient,
    version: i16,
    id: &str,
    (producer_id, epoch): (i64, i16),
    topic: &str,
    partitions: &[i32],
) -> Vec<i16> {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(producer_id.into())
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(common::topic_name(topic))
            .with_partitions(partitions.to_vec())]);
    let response: AddPartitionsToTxnResponse =
        client.request(ApiKey::AddPartitionsToTxn, version, &request);
    response
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|topic| topic.results_by_partition.iter())
        .map(|partition| partition.partition_error_code)
        .collect()
}

/// FindCoordinator key type 1 (v0-3 single key, v4+ batched) names this broker, as Kafka's
/// `KafkaApis.getCoordinator` does for a transactional id once `__transaction_state` exists
/// (the first request creates it).
#[test]
fn find_coordinator_answers_for_transactional_ids() {
    let broker = TestBroker::start_with(OVERRIDES);
    let mut client = RawClient::connect(broker.addr);
    let single: FindCoordinatorResponse = client.request(
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default()
            .with_key(StrBytes::from_static_str("app-1"))
            .with_key_type(1),
    );
    assert_eq!((single.error_code, single.node_id.0), (0, 1));
    assert_eq!(single.port, i32::from(broker.addr.port()));
    let batched: FindCoordinatorResponse = client.request(
        ApiKey::FindCoordinator,
        6,
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![
                StrBytes::from_static_str("app-1"),
                StrBytes::from_static_str("app-2"),
            ]),
    );
    assert_eq!(batched.coordinators.len(), 2);
    for coordinator in &batched.coordinators {
        assert_eq!((coordinator.error_code, coordinator.node_id.0), (0, 1));
    }
    // Share groups (key type 2) are not served.
    let share: FindCoordinatorResponse = client.request(
        ApiKey::FindCoordinator,
        6,
        &FindCoordinatorRequest::default()
            .with_key_type(2)
            .with_coordinator_keys(vec![StrBytes::from_static_str("s")]),
    );
    assert_eq!(
        share.coordinators[0].error_code,
        ErrorCode::InvalidRequest.code()
    );
}

/// Kafka's `TransactionCoordinator.handleInitProducerId`: a transactional id keeps its producer
/// id and each InitProducerId bumps the epoch (also across a restart: the state is reloaded
/// from `__transaction_state`); the older epoch is then fenced, PRODUCER_FENCED from
/// AddPartitionsToTxn v2 and INVALID_PRODUCER_EPOCH below (KIP-588); a timeout above
/// `transaction.max.timeout.ms` is INVALID_TRANSACTION_TIMEOUT, and only one of producer id
/// and epoch is INVALID_REQUEST.
#[test]
fn init_producer_id_bumps_the_epoch_and_fences_the_old_producer() {
    let mut broker = TestBroker::start_with(OVERRIDES);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, TOPIC, 2, &[]), 0);
    let (error, producer_id, epoch) = init_loaded(&mut client, "app", 4);
    assert_eq!((error, epoch), (0, 0));
    assert_eq!(init(&mut client, "app", 60_000, 4), (0, producer_id, 1));

    broker.restart(OVERRIDES);
    let mut client = RawClient::connect(broker.addr);
    let reloaded = init_loaded(&mut client, "app", 4);
    assert_eq!(reloaded, (0, producer_id, 2), "state survives a restart");

    let fenced = (producer_id, 1);
    assert_eq!(
        add_partitions(&mut client, 3, "app", fenced, TOPIC, &[0]),
        [ErrorCode::ProducerFenced.code()]
    );
    assert_eq!(
        add_partitions(&mut client, 1, "app", fenced, TOPIC, &[0]),
        [ErrorCode::InvalidProducerEpoch.code()]
    );
    assert_eq!(
        add_partitions(&mut client, 3, "app", (producer_id + 1000, 2), TOPIC, &[0]),
        [ErrorCode::InvalidProducerIdMapping.code()]
    );

    let too_long = init(&mut client, "app", 900_001, 4);
    assert_eq!(too_long.0, ErrorCode::InvalidTransactionTimeout.code());
    let half: InitProducerIdResponse = client.request(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id("app")))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(producer_id.into())
            .with_producer_epoch(-1),
    );
    assert_eq!(half.error_code, ErrorCode::InvalidRequest.code());
}

/// KIP-890 part 1 (Kafka's `ReplicaManager.appendRecords` with transaction verification,
/// errors as below Produce v12): a transactional batch is appended to a partition added to
/// the transaction, refused with INVALID_TXN_STATE for one that was not, and with
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED without the request's transactional id. Unknown
/// topics in AddPartitionsToTxn are UNKNOWN_TOPIC_OR_PARTITION, the rest of that request
/// OPERATION_NOT_ATTEMPTED. The broker serves on afterwards.
#[test]
fn transactional_batches_need_their_partition_in_the_transaction() {
    let broker = TestBroker::start_with(OVERRIDES);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, TOPIC, 2, &[]), 0);
    let (error, producer_id, epoch) = init_loaded(&mut client, "writer", 4);
    assert_eq!(error, 0);
    let producer = (producer_id, epoch);

    assert_eq!(
        add_partitions(&mut client, 3, "writer", producer, "no-such-topic", &[0]),
        [ErrorCode::UnknownTopicOrPartition.code()]
    );
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id("writer"))
        .with_v3_and_below_producer_id(producer_id.into())
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            AddPartitionsToTxnTopic::default()
                .with_name(common::topic_name(TOPIC))
                .with_partitions(vec![1]),
            AddPartitionsToTxnTopic::default()
                .with_name(common::topic_name("no-such-topic"))
                .with_partitions(vec![0]),
        ]);
    let mixed: AddPartitionsToTxnResponse = client.request(ApiKey::AddPartitionsToTxn, 3, &request);
    let codes: Vec<i16> = mixed
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect();
    assert_eq!(
        codes,
        [
            ErrorCode::OperationNotAttempted.code(),
            ErrorCode::UnknownTopicOrPartition.code()
        ]
    );

    assert_eq!(
        add_partitions(&mut client, 3, "writer", producer, TOPIC, &[0]),
        [0]
    );
    let batch = || transactional_batch(producer_id, epoch, 0, b"v");
    assert_eq!(
        produce(&mut client, 9, Some("writer"), (TOPIC, 1), batch()),
        ErrorCode::InvalidTxnState.code()
    );
    assert_eq!(
        produce(&mut client, 9, None, (TOPIC, 0), batch()),
        ErrorCode::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(
        produce(&mut client, 9, Some("writer"), (TOPIC, 0), batch()),
        0
    );

    // v4+ with verify_only: what a partition leader asks; partition 1 was never added.
    let verify = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(txn_id("writer"))
            .with_producer_id(producer_id.into())
            .with_producer_epoch(epoch)
            .with_verify_only(true)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(common::topic_name(TOPIC))
                .with_partitions(vec![0, 1])]),
    ]);
    let verified: AddPartitionsToTxnResponse =
        client.request(ApiKey::AddPartitionsToTxn, 5, &verify);
    let codes: Vec<i16> = verified.results_by_transaction[0].topic_results[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect();
    assert_eq!(codes, [0, ErrorCode::TransactionAbortable.code()]);
    assert_eq!(
        common::create_topic(&mut client, "still-serving", 1, &[]),
        0
    );
}

/// (high watermark, last stable offset, aborted transactions) of a read_committed Fetch of
/// partition 0 from offset 0.
fn read_committed_view(client: &mut RawClient) -> (i64, i64, Vec<(i64, i64)>) {
    let (high_watermark, stable, aborted, _) = fetch_read_committed(client, TOPIC, 0);
    (high_watermark, stable, aborted)
}

/// Kafka's last stable offset and `collectAbortedTransactions`: while a transaction is open a
/// read_committed Fetch and ListOffsets stop at its first offset; once EndTxn aborts it and
/// the ABORT marker is written, the stable offset is the high watermark (past the marker) and
/// the fetch names the aborted transaction (producer id, first offset) for the consumer to
/// skip. read_uncommitted's latest is the high watermark throughout.
#[test]
fn read_committed_stops_at_an_open_transaction_and_lists_aborted_ones() {
    use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
    let broker = TestBroker::start_with(OVERRIDES);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, TOPIC, 1, &[]), 0);
    let (error, producer_id, epoch) = init_loaded(&mut client, "reader", 4);
    assert_eq!(error, 0);
    assert_eq!(
        add_partitions(&mut client, 3, "reader", (producer_id, epoch), TOPIC, &[0]),
        [0]
    );
    let open = transactional_batch(producer_id, epoch, 0, b"v");
    assert_eq!(produce(&mut client, 9, Some("reader"), (TOPIC, 0), open), 0);
    assert_eq!(read_committed_view(&mut client), (1, 0, vec![]));
    assert_eq!(latest_offset(&mut client, TOPIC, 0, 1), 0);
    assert_eq!(latest_offset(&mut client, TOPIC, 0, 0), 1);

    let end: EndTxnResponse = client.request(
        ApiKey::EndTxn,
        3,
        &EndTxnRequest::default()
            .with_transactional_id(txn_id("reader"))
            .with_producer_id(producer_id.into())
            .with_producer_epoch(epoch)
            .with_committed(false),
    );
    assert_eq!(end.error_code, 0);
    common::wait_until("the ABORT marker", Duration::from_secs(10), || {
        read_committed_view(&mut client).1 == 2
    });
    assert_eq!(
        read_committed_view(&mut client),
        (2, 2, vec![(producer_id, 0)])
    );
    assert_eq!(latest_offset(&mut client, TOPIC, 0, 1), 2);
}

/// EndTxn misuse gets Kafka's code at once (`TransactionCoordinator.endTransactionWithTV1`):
/// with no transaction open, commit and abort are both INVALID_TXN_STATE; an epoch older than
/// the producer's is PRODUCER_FENCED (INVALID_PRODUCER_EPOCH below v2, KIP-588); an unknown
/// producer id is INVALID_PRODUCER_ID_MAPPING. None of them changes the id's state: the
/// producer still begins and commits a transaction afterwards.
#[test]
fn end_txn_without_a_transaction_or_with_a_stale_epoch_is_refused() {
    use common::txn::end_txn;
    let broker = TestBroker::start_with(OVERRIDES);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, TOPIC, 1, &[]), 0);
    let (error, producer_id, old_epoch) = init_loaded(&mut client, "misuse", 4);
    assert_eq!(error, 0);
    let (error, _, epoch) = init(&mut client, "misuse", 60_000, 4);
    assert_eq!((error, epoch), (0, old_epoch + 1));
    let producer = (producer_id, epoch);
    for commit in [true, false] {
        assert_eq!(
            end_txn(&mut client, 3, "misuse", producer, commit).0,
            ErrorCode::InvalidTxnState.code(),
            "EndTxn(commit={commit}) with no transaction open"
        );
    }
    let stale = (producer_id, old_epoch);
    assert_eq!(
        end_txn(&mut client, 3, "misuse", stale, true).0,
        ErrorCode::ProducerFenced.code()
    );
    assert_eq!(
        end_txn(&mut client, 1, "misuse", stale, true).0,
        ErrorCode::InvalidProducerEpoch.code()
    );
    assert_eq!(
        end_txn(&mut client, 3, "misuse", (producer_id + 1000, epoch), true).0,
        ErrorCode::InvalidProducerIdMapping.code()
    );
    assert_eq!(
        add_partitions(&mut client, 3, "misuse", producer, TOPIC, &[0]),
        [0]
    );
    let batch = transactional_batch(producer_id, epoch, 0, b"after the misuse");
    assert_eq!(
        produce(&mut client, 9, Some("misuse"), (TOPIC, 0), batch),
        0
    );
    assert_eq!(end_txn(&mut client, 3, "misuse", producer, true).0, 0);
}
