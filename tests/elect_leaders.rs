//! ElectLeaders over raw requests for what clients do not send: an unknown election type
//! (INVALID_REQUEST for the whole request) and v0 (preferred only, no top-level error code).

mod common;

use common::{RawClient, TestBroker};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse};
use runnel_protocol::ErrorCode;

fn elect(client: &mut RawClient, version: i16, election_type: i8) -> ElectLeadersResponse {
    let request = ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_timeout_ms(5_000)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(common::topic_name("t"))
            .with_partitions(vec![0])]));
    client.request(ApiKey::ElectLeaders, version, &request)
}

#[test]
fn unknown_election_types_are_invalid_and_v0_elects_the_preferred_leader() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, "t", 1, &[]), 0);

    let refused = elect(&mut client, 2, 7);
    assert_eq!(refused.error_code, ErrorCode::InvalidRequest.code());
    assert!(refused.replica_election_results.is_empty());

    let v0 = elect(&mut client, 0, 0);
    let codes: Vec<i16> = v0
        .replica_election_results
        .iter()
        .flat_map(|r| r.partition_result.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(codes, [ErrorCode::ElectionNotNeeded.code()]);
}
