//! Fetch long-polling and ListOffsets lookups, over raw requests (no client exposes the
//! max-timestamp lookup, and a parked fetch is easiest to see without a client's own retries).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{RawClient, TestBroker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
};
use kafka_protocol::records::Compression;
use runnel_protocol::ErrorCode;

/// One batch whose records carry the given timestamps.
fn batch_with_timestamps(timestamps: &[i64]) -> Bytes {
    let records: Vec<_> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &timestamp)| {
            common::record(
                i,
                timestamp,
                None,
                Some(Bytes::from(format!("at-{timestamp}"))),
            )
        })
        .collect();
    common::encode_batch(&records, Compression::Lz4)
}

fn create(client: &mut RawClient, topic: &str) {
    assert_eq!(common::create_topic(client, topic, 1, &[]), 0);
}

fn produce(client: &mut RawClient, topic: &str, records: Bytes) -> i64 {
    let (error, base_offset) = common::produce(client, topic, 0, records);
    assert_eq!(error, 0);
    base_offset
}

fn list_offset(client: &mut RawClient, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(common::topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    let response: ListOffsetsResponse = client.request(ApiKey::ListOffsets, 8, &request);
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.offset, partition.timestamp)
}

fn fetch_request(topic: &str, offset: i64, min_bytes: i32, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(common::topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

#[test]
fn a_parked_fetch_is_answered_when_data_arrives() {
    let broker = TestBroker::start();
    let mut consumer = RawClient::connect(broker.addr);
    create(&mut consumer, "poll");
    // Park a fetch for up to a minute on the empty partition.
    let correlation_id = consumer.send(ApiKey::Fetch, 12, &fetch_request("poll", 0, 1, 60_000));
    let producer = std::thread::spawn({
        let addr = broker.addr;
        move || {
            let mut client = RawClient::connect(addr);
            produce(&mut client, "poll", batch_with_timestamps(&[1, 2, 3]))
        }
    });
    // The answer carries the produced batch: it was woken by the data, not by its timeout
    // (which would have answered with no records).
    let response: FetchResponse = consumer.receive(ApiKey::Fetch, 12, correlation_id);
    assert_eq!(producer.join().expect("producer"), 0);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 3);
    assert!(!partition.records.as_ref().expect("records").is_empty());
}

#[test]
fn a_fetch_with_nothing_to_return_waits_out_max_wait_ms_and_answers_empty() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    create(&mut client, "idle");
    client.stream_timeout(Duration::from_secs(30));
    let response: FetchResponse =
        client.request(ApiKey::Fetch, 12, &fetch_request("idle", 0, 1, 100));
    let partition = &response.responses[0].partitions[0];
    assert_eq!((partition.error_code, partition.high_watermark), (0, 0));
    assert!(partition.records.as_ref().is_none_or(Bytes::is_empty));
    // Past the log end: OFFSET_OUT_OF_RANGE, answered at once.
    let response: FetchResponse =
        client.request(ApiKey::Fetch, 12, &fetch_request("idle", 5, 1, 60_000));
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ErrorCode::OffsetOutOfRange.code()
    );
}

#[test]
fn list_offsets_by_time_and_max_timestamp_have_record_precision() {
    let mut broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    create(&mut client, "times");
    assert_eq!(list_offset(&mut client, "times", -1), (0, 0, -1));
    assert_eq!(list_offset(&mut client, "times", -3), (0, -1, -1));
    // Two compressed batches, timestamps out of order inside the first.
    produce(
        &mut client,
        "times",
        batch_with_timestamps(&[1_000, 5_000, 3_000]),
    );
    produce(&mut client, "times", batch_with_timestamps(&[4_000, 6_000]));
    for _ in 0..2 {
        assert_eq!(list_offset(&mut client, "times", -2), (0, 0, -1));
        assert_eq!(list_offset(&mut client, "times", -1), (0, 5, -1));
        // The first record at or after the time, not the first batch.
        assert_eq!(list_offset(&mut client, "times", 2_000), (0, 1, 5_000));
        assert_eq!(list_offset(&mut client, "times", 5_500), (0, 4, 6_000));
        assert_eq!(list_offset(&mut client, "times", 7_000), (0, -1, -1));
        // The record with the largest timestamp.
        assert_eq!(list_offset(&mut client, "times", -3), (0, 4, 6_000));
        // And the same after a restart, from the indexes on disk.
        broker.restart(&[]);
        client = RawClient::connect(broker.addr);
    }
}

/// A client that closes its connection while a fetch of its is parked frees the connection at
/// once: the response it can no longer receive is dropped, as Kafka drops responses for a
/// closed channel. Before, the connection (its task and its read and write buffers) lived on
/// until the parked request ended, so clients that park requests and leave (a fetch's
/// `max_wait_ms`, a JoinGroup's rebalance timeout of days) grew the broker without bound; the
/// frame fuzzer found it as resident memory growing with the connections it had closed.
#[test]
fn closing_a_connection_with_a_parked_fetch_frees_it_at_once() {
    const CLIENTS: usize = 50;
    let broker = TestBroker::start();
    let mut admin = RawClient::connect(broker.addr);
    create(&mut admin, "parked");
    drop(admin);
    let open = || {
        broker
            .running()
            .broker()
            .metrics
            .connections_open
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    common::wait_until(
        "the admin connection to close",
        Duration::from_secs(10),
        || open() == 0,
    );
    for _ in 0..CLIENTS {
        // Park a fetch for up to a minute on the empty partition, then go away.
        let mut client = RawClient::connect(broker.addr);
        client.send(ApiKey::Fetch, 12, &fetch_request("parked", 0, 1, 60_000));
        client
            .stream()
            .shutdown(std::net::Shutdown::Both)
            .expect("close");
    }
    // Well before the fetches' minute is up, every connection is gone.
    common::wait_until(
        "the closed connections to be freed",
        Duration::from_secs(20),
        || open() == 0,
    );
}
