//! Transactions v2 (KIP-890 part 2) over the wire: the `transaction.version` feature that
//! tells Kafka 4.x clients to use it, partitions added by the transaction's first Produce v12
//! and TxnOffsetCommit v5 (no AddPartitionsToTxn or AddOffsetsToTxn), the epoch bumped by every
//! EndTxn v5, and the hole it closes: a request of an earlier transaction delayed in the
//! network (here by a proxy that holds a connection's bytes) never joins, commits or corrupts a
//! later one, the scenario of Jepsen's analysis of Bufstream on Kafka's v1 protocol.
//!
//! These are raw requests because no client this project can install speaks transactions v2
//! yet (librdkafka, kafka-python, aiokafka and kafkajs all send the v1 protocol, which
//! tests/clients/python/test_transactions_confluent.py covers); the requests are the ones
//! Kafka 4.x's Java producer sends, per Kafka's message schemas and `TransactionManager`.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use common::txn::{
    end_txn, end_txn_request, fetch_read_committed, init_loaded, latest_offset, produce,
    produce_error, produce_request, transactional_batch, txn_id,
};
use common::{RawClient, TestBroker};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, EndTxnResponse, GroupId, OffsetFetchRequest,
    OffsetFetchResponse, ProduceResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use runnel_protocol::ErrorCode;

/// Few `__transaction_state` partitions keep the tests quick; ids still hash across them.
const OVERRIDES: &[(&str, &str)] = &[("transaction.state.log.num.partitions", "4")];
/// The versions a Kafka 4.x producer sends once `transaction.version` 2 is finalized.
const INIT_V2: i16 = 5;
const PRODUCE_V2: i16 = 12;
const END_TXN_V2: i16 = 5;
const TXN_OFFSET_COMMIT_V2: i16 = 5;
const DEADLINE: Duration = Duration::from_secs(10);

/// Produce v12 of one transactional record, retried while the coordinator is still writing
/// the previous transaction's markers (CONCURRENT_TRANSACTIONS, which Kafka answers v12
/// clients as it is and they retry); the final error code.
fn produce_v2(
    client: &mut RawClient,
    id: &str,
    (topic, partition): (&str, i32),
    (producer_id, epoch, sequence): (i64, i16, i32),
    value: &[u8],
) -> i16 {
    let mut error = 0;
    common::wait_until("a transactions-v2 produce to be taken", DEADLINE, || {
        let batch = transactional_batch(producer_id, epoch, sequence, value);
        error = produce(client, PRODUCE_V2, Some(id), (topic, partition), batch);
        error != ErrorCode::ConcurrentTransactions.code()
    });
    error
}

/// The values of the data records a read_committed fetch of `topic`/`partition` returns,
/// without those of the aborted transactions it lists, dropped as a consumer drops them: a
/// listed producer's records from the transaction's first offset to its ABORT marker.
fn committed_values(client: &mut RawClient, topic: &str, partition: i32) -> Vec<Bytes> {
    let (_, _, mut aborted, mut records) = fetch_read_committed(client, topic, partition);
    aborted.sort_by_key(|(_, first_offset)| std::cmp::Reverse(*first_offset));
    let mut aborting = Vec::new();
    let mut values = Vec::new();
    while !records.is_empty() {
        let set = RecordBatchDecoder::decode(&mut records).expect("a record batch");
        for record in set.records {
            while let Some(&(producer_id, first_offset)) = aborted.last() {
                if first_offset > record.offset {
                    break;
                }
                aborting.push(producer_id);
                aborted.pop();
            }
            if record.control {
                aborting.retain(|&producer_id| producer_id != record.producer_id);
            } else if !(record.transactional && aborting.contains(&record.producer_id)) {
                values.push(record.value.unwrap_or_default());
            }
        }
    }
    values
}

/// The last stable offset of `topic`/`partition` as a read_committed ListOffsets says it.
fn stable_offset(client: &mut RawClient, topic: &str, partition: i32) -> i64 {
    latest_offset(client, topic, partition, 1)
}

/// ApiVersions v3+ carries Kafka's features (KIP-584): `transaction.version` supported 0-2
/// and finalized at 2, as a new Kafka 4.x cluster has it; this is what a Kafka 4.x producer
/// reads (`TransactionManager.isTransactionV2Enabled`) to choose the v2 protocol.
#[test]
fn transaction_version_2_is_finalized_in_api_versions() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("raw-test"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let response: ApiVersionsResponse = client.request(ApiKey::ApiVersions, 3, &request);
    assert_eq!(response.error_code, 0);
    let supported: Vec<_> = response
        .supported_features
        .iter()
        .map(|f| (f.name.to_string(), f.min_version, f.max_version))
        .collect();
    assert_eq!(supported, [("transaction.version".to_string(), 0, 2)]);
    let finalized: Vec<_> = response
        .finalized_features
        .iter()
        .map(|f| (f.name.to_string(), f.min_version_level, f.max_version_level))
        .collect();
    assert_eq!(finalized, [("transaction.version".to_string(), 2, 2)]);
    assert!(response.finalized_features_epoch >= 0);
    let produce = response
        .api_keys
        .iter()
        .find(|api| api.api_key == ApiKey::Produce as i16)
        .expect("Produce is served");
    assert_eq!(produce.max_version, PRODUCE_V2);
}

/// Kafka 4.x's transactions-v2 flow: the first Produce v12 of a partition adds it to the
/// transaction (`ReplicaManager` with `ADD_PARTITION`), TxnOffsetCommit v5 adds the group's
/// `__consumer_offsets` partition, EndTxn v5 commits and answers the bumped epoch the next
/// transaction uses (`TransactionCoordinator.endTransaction` under TV2), and the committed
/// offsets become visible with the marker. A v11 request, which verifies only, is refused with
/// TRANSACTION_ABORTABLE for a partition the transaction does not hold (KIP-890 part 1).
#[test]
fn produce_v12_adds_its_partition_and_end_txn_v5_bumps_the_epoch() {
    let topic = "v2-flow";
    let group = "v2-group";
    let broker = TestBroker::start_with(OVERRIDES);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, topic, 2, &[]), 0);
    let (error, producer_id, epoch) = init_loaded(&mut client, "flow", INIT_V2);
    assert_eq!(error, 0);

    assert_eq!(
        produce_v2(
            &mut client,
            "flow",
            (topic, 0),
            (producer_id, epoch, 0),
            b"one"
        ),
        0
    );
    // Below v12 the produce path only verifies: partition 1 was never added.
    let v1_batch = transactional_batch(producer_id, epoch, 0, b"not added");
    assert_eq!(
        produce(&mut client, 11, Some("flow"), (topic, 1), v1_batch),
        ErrorCode::TransactionAbortable.code()
    );
    // The transaction is open: read_committed stops at its first offset.
    assert_eq!(stable_offset(&mut client, topic, 0), 0);

    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id("flow"))
        .with_group_id(GroupId(StrBytes::from_static_str(group)))
        .with_producer_id(producer_id.into())
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(common::topic_name(topic))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(42)])]);
    // The first group request creates `__consumer_offsets`: retried while it loads, as
    // clients retry COORDINATOR_LOAD_IN_PROGRESS.
    let mut error = 0;
    common::wait_until("the group coordinator to load", DEADLINE, || {
        let committed: TxnOffsetCommitResponse =
            client.request(ApiKey::TxnOffsetCommit, TXN_OFFSET_COMMIT_V2, &commit);
        error = committed.topics[0].partitions[0].error_code;
        error != ErrorCode::CoordinatorLoadInProgress.code()
    });
    assert_eq!(error, 0);
    assert_eq!(group_offset(&mut client, group, topic), -1);

    let (error, next_id, next_epoch) =
        end_txn(&mut client, END_TXN_V2, "flow", (producer_id, epoch), true);
    assert_eq!(error, 0);
    assert_eq!((next_id, next_epoch), (producer_id, epoch + 1));
    common::wait_until("the COMMIT marker", DEADLINE, || {
        stable_offset(&mut client, topic, 0) == 2
    });
    assert_eq!(
        committed_values(&mut client, topic, 0),
        [Bytes::from_static(b"one")]
    );
    common::wait_until("the committed offset", DEADLINE, || {
        group_offset(&mut client, group, topic) == 42
    });

    // The next transaction runs at the bumped epoch, sequences from 0; it aborts.
    assert_eq!(
        produce_v2(
            &mut client,
            "flow",
            (topic, 0),
            (producer_id, next_epoch, 0),
            b"two"
        ),
        0
    );
    let (error, _, third_epoch) = end_txn(
        &mut client,
        END_TXN_V2,
        "flow",
        (producer_id, next_epoch),
        false,
    );
    assert_eq!(error, 0);
    assert_eq!(third_epoch, next_epoch + 1);
    common::wait_until("the ABORT marker", DEADLINE, || {
        stable_offset(&mut client, topic, 0) == 4
    });
    let (_, _, aborted, _) = fetch_read_committed(&mut client, topic, 0);
    assert_eq!(aborted, [(producer_id, 2)]);
    assert_eq!(
        committed_values(&mut client, topic, 0),
        [Bytes::from_static(b"one")]
    );

    // The epoch the abort left behind is the only one accepted now.
    let stale = transactional_batch(producer_id, next_epoch, 1, b"stale");
    assert_eq!(
        produce(&mut client, PRODUCE_V2, Some("flow"), (topic, 1), stale),
        ErrorCode::InvalidProducerEpoch.code()
    );
}

/// A producer pipelines its batches (up to five in flight per connection): the first two
/// batches of a partition new to the transaction, sent back to back, each need the partition
/// added, and still reach the log in sequence order, as one connection's requests are handled
/// in order in Kafka. Were the second appended while the first waited for its add, it would be
/// OUT_OF_ORDER_SEQUENCE_NUMBER.
#[test]
fn pipelined_batches_for_a_new_partition_keep_their_order() {
    let topic = "v2-pipelined";
    let broker = TestBroker::start_with(OVERRIDES);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, topic, 1, &[]), 0);
    let (error, producer_id, epoch) = init_loaded(&mut client, "pipelined", INIT_V2);
    assert_eq!(error, 0);
    let requests: Vec<i32> = (0..2)
        .map(|sequence| {
            let batch = transactional_batch(producer_id, epoch, sequence, b"in order");
            let request = produce_request(Some("pipelined"), topic, 0, batch);
            client.send(ApiKey::Produce, PRODUCE_V2, &request)
        })
        .collect();
    let answers: Vec<(i16, i64)> = requests
        .into_iter()
        .map(|correlation_id| {
            let answer: ProduceResponse =
                client.receive(ApiKey::Produce, PRODUCE_V2, correlation_id);
            let partition = &answer.responses[0].partition_responses[0];
            (partition.error_code, partition.base_offset)
        })
        .collect();
    assert_eq!(answers, [(0, 0), (0, 1)]);
}

/// The committed offset of partition 0 of `topic` for `group` (OffsetFetch v6), -1 if none.
fn group_offset(client: &mut RawClient, group: &str, topic: &str) -> i64 {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(common::topic_name(topic))
            .with_partition_indexes(vec![0])]));
    let response: OffsetFetchResponse = client.request(ApiKey::OffsetFetch, 6, &request);
    assert_eq!(response.error_code, 0);
    response.topics[0].partitions[0].committed_offset
}

/// A TCP proxy to the broker for one connection that can hold what the client sends: the
/// bytes are read and kept (the request is "in the network") until [`DelayProxy::release`].
/// Answers flow back unheld.
struct DelayProxy {
    addr: SocketAddr,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

#[derive(Default)]
struct Gate {
    held: bool,
    /// Bytes read from the client while held, not yet forwarded.
    held_bytes: usize,
}

impl DelayProxy {
    fn start(upstream: SocketAddr) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let gate: Arc<(Mutex<Gate>, Condvar)> = Arc::default();
        let forward_gate = Arc::clone(&gate);
        thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let (mut client_read, mut server_write) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let (mut server_read, mut client_write) = (server, client);
            thread::spawn(move || {
                let _ = std::io::copy(&mut server_read, &mut client_write);
                let _ = client_write.shutdown(Shutdown::Write);
            });
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = match client_read.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read,
                };
                let (lock, released) = &*forward_gate;
                let mut gate = lock.lock().expect("gate");
                if gate.held {
                    gate.held_bytes += read;
                    while gate.held {
                        gate = released.wait(gate).expect("gate");
                    }
                    gate.held_bytes = 0;
                }
                drop(gate);
                if server_write.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
            let _ = server_write.shutdown(Shutdown::Write);
        });
        DelayProxy { addr, gate }
    }

    fn hold(&self) {
        self.gate.0.lock().expect("gate").held = true;
    }

    /// Waits until the proxy holds at least `bytes` from the client.
    fn wait_until_holding(&self, bytes: usize) {
        common::wait_until("the proxy to hold the request", DEADLINE, || {
            self.gate.0.lock().expect("gate").held_bytes >= bytes
        });
    }

    fn release(&self) {
        let (lock, released) = &*self.gate;
        lock.lock().expect("gate").held = false;
        released.notify_all();
    }
}

/// The size of a request frame as the client sends it, for [`DelayProxy::wait_until_holding`]:
/// at least the size prefix and the header's fixed fields.
const SOME_OF_A_FRAME: usize = 12;

/// The scene of both delayed-request tests: a producer's first transaction holds one record
/// on `(topic, 0)`, and a second connection goes through a [`DelayProxy`] that holds what it is
/// sent, where one request of that first transaction is "in the network".
struct LateRequest {
    _broker: TestBroker,
    client: RawClient,
    transactional_id: &'static str,
    topic: &'static str,
    producer_id: i64,
    epoch: i16,
    proxy: DelayProxy,
    delayed: RawClient,
}

impl LateRequest {
    fn set_up(topic: &'static str, transactional_id: &'static str) -> LateRequest {
        let broker = TestBroker::start_with(OVERRIDES);
        let mut client = RawClient::connect(broker.addr);
        assert_eq!(common::create_topic(&mut client, topic, 2, &[]), 0);
        let (error, producer_id, epoch) = init_loaded(&mut client, transactional_id, INIT_V2);
        assert_eq!(error, 0);
        let first = (producer_id, epoch, 0);
        let produced = produce_v2(&mut client, transactional_id, (topic, 0), first, b"first");
        assert_eq!(produced, 0);
        let proxy = DelayProxy::start(broker.addr);
        let delayed = RawClient::connect(proxy.addr);
        LateRequest {
            _broker: broker,
            client,
            transactional_id,
            topic,
            producer_id,
            epoch,
            proxy,
            delayed,
        }
    }

    /// Sends `body` on the held connection and waits until the proxy holds it; its
    /// correlation id.
    fn send_held<T: kafka_protocol::protocol::Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &T,
    ) -> i32 {
        self.proxy.hold();
        let correlation_id = self.delayed.send(api, version, body);
        self.proxy.wait_until_holding(SOME_OF_A_FRAME);
        correlation_id
    }

    /// Commits the first transaction on the direct connection (EndTxn v5 bumps the epoch) and
    /// begins the second with one record on `(topic, 1)`; the second transaction's epoch.
    fn commit_first_and_begin_second(&mut self) -> i16 {
        let first = (self.producer_id, self.epoch);
        let (error, _, next_epoch) = end_txn(
            &mut self.client,
            END_TXN_V2,
            self.transactional_id,
            first,
            true,
        );
        assert_eq!((error, next_epoch), (0, self.epoch + 1));
        let second = (self.producer_id, next_epoch, 0);
        let produced = produce_v2(
            &mut self.client,
            self.transactional_id,
            (self.topic, 1),
            second,
            b"second",
        );
        assert_eq!(produced, 0);
        next_epoch
    }

    /// Ends the second transaction, waits for its marker and returns the committed values of
    /// both partitions.
    fn end_second(&mut self, next_epoch: i16, commit: bool) -> [Vec<Bytes>; 2] {
        let second = (self.producer_id, next_epoch);
        let (error, _, _) = end_txn(
            &mut self.client,
            END_TXN_V2,
            self.transactional_id,
            second,
            commit,
        );
        assert_eq!(error, 0);
        common::wait_until("the second transaction's marker", DEADLINE, || {
            stable_offset(&mut self.client, self.topic, 1) == 2
        });
        [0, 1].map(|partition| committed_values(&mut self.client, self.topic, partition))
    }
}

/// A Produce of the first transaction, delayed in the network until the producer has committed
/// it and begun the next one on the same partition, arrives with the epoch EndTxn v5 bumped
/// past: it is refused (INVALID_PRODUCER_EPOCH, Kafka's answer to a fenced batch) and never
/// becomes part of the second transaction, which commits with only its own record. Under the
/// v1 protocol both transactions share one epoch, so the late batch would have been appended
/// into the second one (the hanging or misattributed write KIP-890 names).
#[test]
fn a_delayed_produce_of_an_earlier_transaction_never_joins_a_later_one() {
    let mut scene = LateRequest::set_up("v2-late-produce", "late");
    let late = transactional_batch(scene.producer_id, scene.epoch, 0, b"late");
    let request = produce_request(Some("late"), scene.topic, 1, late);
    let correlation_id = scene.send_held(ApiKey::Produce, PRODUCE_V2, &request);

    let next_epoch = scene.commit_first_and_begin_second();

    scene.proxy.release();
    let answer: ProduceResponse =
        scene
            .delayed
            .receive(ApiKey::Produce, PRODUCE_V2, correlation_id);
    assert_eq!(
        produce_error(&answer),
        ErrorCode::InvalidProducerEpoch.code()
    );
    let [first, second] = scene.end_second(next_epoch, true);
    assert_eq!(first, [Bytes::from_static(b"first")]);
    assert_eq!(second, [Bytes::from_static(b"second")]);
}

/// An EndTxn(commit) of the first transaction, delayed in the network while the producer
/// retried it (the retry commits) and began a second transaction, arrives with the epoch the
/// commit bumped past: Kafka's TV2 `endTransaction` refuses it with PRODUCER_FENCED, and the
/// second transaction stays open, then aborts when its producer says so; its record is never
/// visible to read_committed. Under v1 the late commit would have committed the second
/// transaction (the Jepsen scenario).
#[test]
fn a_delayed_end_txn_never_commits_a_later_transaction() {
    let mut scene = LateRequest::set_up("v2-late-end", "late-end");
    let request = end_txn_request("late-end", (scene.producer_id, scene.epoch), true);
    let correlation_id = scene.send_held(ApiKey::EndTxn, END_TXN_V2, &request);

    // The producer's retry of the same commit goes through the direct connection.
    let next_epoch = scene.commit_first_and_begin_second();

    scene.proxy.release();
    let answer: EndTxnResponse = scene
        .delayed
        .receive(ApiKey::EndTxn, END_TXN_V2, correlation_id);
    assert_eq!(answer.error_code, ErrorCode::ProducerFenced.code());
    // The second transaction is still open: read_committed still stops at its record.
    assert_eq!(stable_offset(&mut scene.client, scene.topic, 1), 0);

    let [first, second] = scene.end_second(next_epoch, false);
    assert_eq!(first, [Bytes::from_static(b"first")]);
    assert!(second.is_empty());
}

/// Under transactions v2 (`TransactionCoordinator.endTransaction` with TV2), EndTxn v5 with no
/// transaction open: a commit is INVALID_TXN_STATE; an abort is accepted and bumps the epoch
/// (the client aborts when it cannot know whether its transaction began, and the bump fences
/// whatever of it may still be in flight).
#[test]
fn end_txn_v5_with_no_transaction_refuses_a_commit_and_bumps_on_an_abort() {
    let broker = TestBroker::start_with(OVERRIDES);
    let mut client = RawClient::connect(broker.addr);
    let (error, producer_id, epoch) = init_loaded(&mut client, "empty", INIT_V2);
    assert_eq!(error, 0);
    assert_eq!(
        end_txn(&mut client, END_TXN_V2, "empty", (producer_id, epoch), true).0,
        ErrorCode::InvalidTxnState.code()
    );
    let mut aborted = (0, 0, 0);
    common::wait_until("the empty abort to be taken", DEADLINE, || {
        aborted = end_txn(
            &mut client,
            END_TXN_V2,
            "empty",
            (producer_id, epoch),
            false,
        );
        aborted.0 != ErrorCode::ConcurrentTransactions.code()
    });
    assert_eq!(aborted, (0, producer_id, epoch + 1));
}
