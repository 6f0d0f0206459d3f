//! CreatePartitions answers over raw requests for what clients do not send: a topic named
//! twice in one request, growing `__consumer_offsets`, and the non-flexible v0 encoding (v2+ is
//! flexible; confluent-kafka and kafka-python cover the rest in test_create_partitions.py).

mod common;

use common::{RawClient, TestBroker};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::ErrorCode;

/// Grow `topic` to `count` partitions, with no manual assignments (null, as clients send it:
/// an empty list would be zero assignments for the new partitions).
fn grow(topic: &str, count: i32) -> CreatePartitionsTopic {
    CreatePartitionsTopic::default()
        .with_name(common::topic_name(topic))
        .with_count(count)
        .with_assignments(None)
}

fn create_partitions(
    client: &mut RawClient,
    version: i16,
    topics: Vec<CreatePartitionsTopic>,
) -> Vec<(String, ErrorCode)> {
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(topics);
    let response: CreatePartitionsResponse =
        client.request(ApiKey::CreatePartitions, version, &request);
    response
        .results
        .iter()
        .map(|r| {
            let code = ErrorCode::from_code(r.error_code).expect("a known error code");
            (r.name.to_string(), code)
        })
        .collect()
}

#[test]
fn duplicates_internal_topics_and_v0() {
    let broker = TestBroker::start_with(&[("offsets.topic.num.partitions", "2")]);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, "a", 1, &[]), 0);
    assert_eq!(common::create_topic(&mut client, "b", 1, &[]), 0);

    assert_eq!(
        create_partitions(
            &mut client,
            3,
            vec![grow("a", 2), grow("b", 2), grow("a", 3)]
        ),
        [
            ("a".to_string(), ErrorCode::InvalidRequest),
            ("b".to_string(), ErrorCode::None),
            ("a".to_string(), ErrorCode::InvalidRequest),
        ],
        "a topic named twice is refused both times; the others are served"
    );

    let found: FindCoordinatorResponse = client.request(
        ApiKey::FindCoordinator,
        2,
        &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
    );
    assert_eq!(found.error_code, 0, "__consumer_offsets created");
    assert_eq!(
        create_partitions(&mut client, 0, vec![grow("__consumer_offsets", 4)]),
        [("__consumer_offsets".to_string(), ErrorCode::InvalidRequest)]
    );

    assert_eq!(
        create_partitions(&mut client, 0, vec![grow("a", 2)]),
        [("a".to_string(), ErrorCode::None)],
        "v0 (not flexible)"
    );
    let (error, base_offset) = common::produce(&mut client, "a", 1, common::record_batch(3, 10));
    assert_eq!(
        (error, base_offset),
        (0, 0),
        "the new partition takes records"
    );
}
