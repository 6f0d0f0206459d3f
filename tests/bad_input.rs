//! Every bad input the broker refuses, sent over a raw socket: each test checks the answer
//! (an error code, or a closed connection) and that the broker still serves other clients and
//! still holds what it acknowledged before.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{i16_at, record_batch, RawClient, TestBroker};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
};
use runnel_protocol::ErrorCode;

/// The broker answers ApiVersions on a fresh connection.
fn assert_serving(broker: &TestBroker) {
    let mut client = RawClient::connect(broker.addr);
    let response: ApiVersionsResponse =
        client.request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    assert!(!response.api_keys.is_empty());
}

#[test]
fn zero_and_negative_frame_sizes_close_the_connection() {
    let broker = TestBroker::start();
    for size in [0i32, -1, i32::MIN] {
        let mut client = RawClient::connect(broker.addr);
        client.send_raw(&size.to_be_bytes());
        assert!(
            client.is_closed_by_broker(),
            "size {size} must close the connection"
        );
        assert_serving(&broker);
    }
}

#[test]
fn frames_above_socket_request_max_bytes_close_the_connection() {
    let broker = TestBroker::start_with(&[("socket.request.max.bytes", "1024")]);
    let mut client = RawClient::connect(broker.addr);
    // Announce 1025 bytes: refused before the body is read.
    client.send_raw(&1025i32.to_be_bytes());
    assert!(client.is_closed_by_broker());
    assert_serving(&broker);
    // The default limit (100 MiB) refuses a 2 GiB announcement without allocating it.
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    client.send_raw(&i32::MAX.to_be_bytes());
    assert!(client.is_closed_by_broker());
    assert_serving(&broker);
}

#[test]
fn garbage_bodies_close_the_connection_and_others_are_served() {
    let broker = TestBroker::start();
    let mut other = RawClient::connect(broker.addr);
    // A Metadata v9 header followed by bytes that are no Metadata request.
    let mut frame = BytesMut::new();
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(9);
    frame.put_i32(1);
    frame.put_slice(&[0xff; 3]);
    let mut client = RawClient::connect(broker.addr);
    client.send_frame(&frame);
    assert!(client.is_closed_by_broker());
    // A frame too short for a header.
    let mut client = RawClient::connect(broker.addr);
    client.send_frame(&[0, 3, 0]);
    assert!(client.is_closed_by_broker());
    // A connection opened before is unaffected.
    let response: ApiVersionsResponse =
        other.request(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    assert_serving(&broker);
}

#[test]
fn unknown_api_keys_and_versions_get_unsupported_version() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    for (api_key, api_version) in [
        (999i16, 0i16),
        (ApiKey::Produce as i16, 2),
        (ApiKey::Metadata as i16, 99),
    ] {
        let mut frame = BytesMut::new();
        frame.put_i16(api_key);
        frame.put_i16(api_version);
        frame.put_i32(77);
        common::put_sized(&mut frame, b"");
        client.send_frame(&frame);
        let response = client
            .receive_frame()
            .expect("an answer, not a closed connection");
        assert_eq!(&response[..4], &77i32.to_be_bytes());
        assert_eq!(i16_at(&response, 4), ErrorCode::UnsupportedVersion.code());
    }
    // The same connection keeps working.
    let response: ApiVersionsResponse =
        client.request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
}

#[test]
fn api_versions_above_our_max_gets_the_v0_error_response_with_our_versions() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    // A v5 request still carries a v2 (flexible) header; the answer is a v0 body.
    let mut frame = BytesMut::new();
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(5);
    frame.put_i32(42);
    common::put_sized(&mut frame, b"client");
    frame.put_u8(0); // header tagged fields
    frame.put_slice(&[0, 0, 0]); // some v5 body
    client.send_frame(&frame);
    let mut response = client.receive_frame().expect("answer");
    assert_eq!(&response[..4], &42i32.to_be_bytes());
    let body = response.split_off(4);
    let mut body = body;
    let decoded =
        <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut body, 0)
            .expect("a v0 ApiVersions body");
    assert_eq!(decoded.error_code, ErrorCode::UnsupportedVersion.code());
    let api_versions = decoded
        .api_keys
        .iter()
        .find(|api| api.api_key == ApiKey::ApiVersions as i16)
        .expect("ApiVersions listed");
    assert_eq!((api_versions.min_version, api_versions.max_version), (0, 4));
}

#[test]
fn unknown_topics_are_unknown_topic_or_partition() {
    let broker = TestBroker::start_with(&[("auto.create.topics.enable", "false")]);
    let mut client = RawClient::connect(broker.addr);
    let (error, _) = common::produce(&mut client, "nowhere", 0, record_batch(1, 10));
    assert_eq!(error, ErrorCode::UnknownTopicOrPartition.code());
    let (error, _, _) = common::fetch_all(&mut client, "nowhere");
    assert_eq!(error, ErrorCode::UnknownTopicOrPartition.code());
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(common::topic_name("nowhere")))
        ]))
        .with_allow_auto_topic_creation(true);
    let response: MetadataResponse = client.request(ApiKey::Metadata, 9, &request);
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    assert_serving(&broker);
}

#[test]
fn invalid_topic_names_are_invalid_topic_exception() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    for bad in ["bad name", "..", "x/y", &"a".repeat(250)] {
        assert_eq!(
            common::create_topic(&mut client, bad, 1, &[]),
            ErrorCode::InvalidTopicException.code()
        );
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(common::topic_name(bad)))
            ]))
            .with_allow_auto_topic_creation(true);
        let response: MetadataResponse = client.request(ApiKey::Metadata, 9, &request);
        assert_eq!(
            response.topics[0].error_code,
            ErrorCode::InvalidTopicException.code()
        );
    }
    assert_serving(&broker);
}

/// Produces one good batch, then `bad`, and checks the error and that the good batch is intact.
fn refused_without_damage(mutate: impl FnOnce(&mut Vec<u8>), expected: ErrorCode) {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, "t", 1, &[]), 0);
    let good = record_batch(3, 20);
    assert_eq!(common::produce(&mut client, "t", 0, good.clone()), (0, 0));
    let mut bad = record_batch(2, 20).to_vec();
    mutate(&mut bad);
    let (error, _) = common::produce(&mut client, "t", 0, Bytes::from(bad));
    assert_eq!(ErrorCode::from_code(error), Some(expected));
    let (error, high_watermark, records) = common::fetch_all(&mut client, "t");
    assert_eq!((error, high_watermark), (0, 3));
    // Stored as produced, but for the base offset and leader epoch the broker sets (0 and 0).
    assert_eq!(&records[12..16], &0i32.to_be_bytes());
    assert_eq!(&records[16..], &good[16..]);
    // And the log still takes good batches at the next offset.
    assert_eq!(
        common::produce(&mut client, "t", 0, record_batch(1, 5)),
        (0, 3)
    );
    assert_serving(&broker);
}

#[test]
fn bad_crc_is_corrupt_message() {
    refused_without_damage(
        |batch| {
            let last = batch.len() - 1;
            batch[last] ^= 0x55;
        },
        ErrorCode::CorruptMessage,
    );
}

#[test]
fn magic_other_than_2_is_refused() {
    refused_without_damage(
        |batch| batch[16] = 1,
        ErrorCode::UnsupportedForMessageFormat,
    );
}

#[test]
fn a_batch_whose_length_field_lies_is_corrupt_message() {
    refused_without_damage(
        |batch| {
            let claimed = batch.len() as i32;
            batch[8..12].copy_from_slice(&claimed.to_be_bytes());
        },
        ErrorCode::CorruptMessage,
    );
}

#[test]
fn batches_above_max_message_bytes_are_message_too_large() {
    let broker = TestBroker::start_with(&[("message.max.bytes", "4096")]);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, "broker-limit", 1, &[]), 0);
    assert_eq!(
        common::create_topic(
            &mut client,
            "topic-limit",
            1,
            &[("max.message.bytes", "1024")]
        ),
        0
    );
    let (error, _) = common::produce(&mut client, "broker-limit", 0, record_batch(1, 5_000));
    assert_eq!(error, ErrorCode::MessageTooLarge.code());
    let (error, _) = common::produce(&mut client, "topic-limit", 0, record_batch(1, 2_000));
    assert_eq!(error, ErrorCode::MessageTooLarge.code());
    // Under each limit, accepted.
    assert_eq!(
        common::produce(&mut client, "broker-limit", 0, record_batch(1, 2_000)).0,
        0
    );
    assert_eq!(
        common::produce(&mut client, "topic-limit", 0, record_batch(1, 500)).0,
        0
    );
    assert_serving(&broker);
}

#[test]
fn invalid_topic_configs_are_invalid_config() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(
        common::create_topic(&mut client, "c1", 1, &[("max.message.bytes", "lots")]),
        ErrorCode::InvalidConfig.code()
    );
    assert_eq!(
        common::create_topic(&mut client, "c2", 1, &[("no.such.config", "1")]),
        ErrorCode::InvalidConfig.code()
    );
    assert_eq!(common::create_topic(&mut client, "c3", 1, &[]), 0);
    assert_eq!(
        common::create_topic(&mut client, "c3", 1, &[]),
        ErrorCode::TopicAlreadyExists.code()
    );
}

#[test]
fn list_offsets_naming_a_partition_twice_is_invalid_request() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, "twice", 1, &[]), 0);
    let partition = |timestamp| {
        ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(timestamp)
    };
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(common::topic_name("twice"))
            .with_partitions(vec![partition(-1), partition(-2)])]);
    let response: ListOffsetsResponse = client.request(ApiKey::ListOffsets, 7, &request);
    let errors: Vec<i16> = response.topics[0]
        .partitions
        .iter()
        .map(|partition| partition.error_code)
        .collect();
    assert_eq!(errors, vec![ErrorCode::InvalidRequest.code(); 2]);
    // Named once, it is answered.
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(common::topic_name("twice"))
            .with_partitions(vec![partition(-1)])]);
    let response: ListOffsetsResponse = client.request(ApiKey::ListOffsets, 7, &request);
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    assert_eq!(response.topics[0].partitions[0].offset, 0);
}
