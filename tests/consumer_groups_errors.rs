//! Each error the group coordinator answers, sent as raw requests (clients hide most of them):
//! MEMBER_ID_REQUIRED, INVALID_SESSION_TIMEOUT, UNKNOWN_MEMBER_ID, INCONSISTENT_GROUP_PROTOCOL,
//! ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID, NON_EMPTY_GROUP,
//! GROUP_ID_NOT_FOUND, UNKNOWN_TOPIC_OR_PARTITION, INVALID_GROUP_ID, GROUP_MAX_SIZE_REACHED,
//! OFFSET_METADATA_TOO_LARGE, COORDINATOR_NOT_AVAILABLE (transaction coordinators are not served
//! yet), OffsetForLeaderEpoch's UNKNOWN_LEADER_EPOCH; and a simple consumer's commit accepted.
//!
//! COORDINATOR_LOAD_IN_PROGRESS is tested in the broker's group driver (a partition still
//! loading); NOT_COORDINATOR cannot arise on a single node, which coordinates every group.

mod common;

use bytes::Bytes;
use common::{RawClient, TestBroker};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::ErrorCode;

const OVERRIDES: &[(&str, &str)] = &[
    ("group.initial.rebalance.delay.ms", "0"),
    ("offsets.topic.num.partitions", "3"),
];

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn group(id: &str) -> GroupId {
    GroupId(s(id))
}

fn code(error: i16) -> ErrorCode {
    ErrorCode::from_code(error).unwrap_or_else(|| panic!("unknown error code {error}"))
}

fn join_request(group_id: &str, member_id: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"m"))])
}

fn join(client: &mut RawClient, request: &JoinGroupRequest) -> JoinGroupResponse {
    client.request(ApiKey::JoinGroup, 5, request)
}

/// A member through KIP-394's two joins, synced; returns (member id, generation).
fn stable_member(client: &mut RawClient, group_id: &str) -> (String, i32) {
    let first = join(client, &join_request(group_id, "", None));
    assert_eq!(code(first.error_code), ErrorCode::MemberIdRequired);
    let member_id = first.member_id.to_string();
    let joined = join(client, &join_request(group_id, &member_id, None));
    assert_eq!(code(joined.error_code), ErrorCode::None);
    let synced: SyncGroupResponse = client.request(
        ApiKey::SyncGroup,
        3,
        &SyncGroupRequest::default()
            .with_group_id(group(group_id))
            .with_generation_id(joined.generation_id)
            .with_member_id(s(&member_id)),
    );
    assert_eq!(code(synced.error_code), ErrorCode::None);
    (member_id, joined.generation_id)
}

fn heartbeat(client: &mut RawClient, group_id: &str, generation: i32, member: &str) -> ErrorCode {
    let response: HeartbeatResponse = client.request(
        ApiKey::Heartbeat,
        3,
        &HeartbeatRequest::default()
            .with_group_id(group(group_id))
            .with_generation_id(generation)
            .with_member_id(s(member)),
    );
    code(response.error_code)
}

fn commit(client: &mut RawClient, group_id: &str, generation: i32, topic: &str) -> ErrorCode {
    commit_with_metadata(client, group_id, generation, topic, "kept")
}

fn commit_with_metadata(
    client: &mut RawClient,
    group_id: &str,
    generation: i32,
    topic: &str,
    metadata: &str,
) -> ErrorCode {
    let response: OffsetCommitResponse = client.request(
        ApiKey::OffsetCommit,
        7,
        &OffsetCommitRequest::default()
            .with_group_id(group(group_id))
            .with_generation_id_or_member_epoch(generation)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(42)
                    .with_committed_metadata(Some(s(metadata)))])]),
    );
    code(response.topics[0].partitions[0].error_code)
}

fn broker_with_topic() -> (TestBroker, RawClient) {
    broker_with_topic_and(&[])
}

/// A broker with [`OVERRIDES`] and `more`, a topic `t` to commit to, and a raw client.
fn broker_with_topic_and(more: &[(&str, &str)]) -> (TestBroker, RawClient) {
    let overrides: Vec<(&str, &str)> = OVERRIDES.iter().chain(more).copied().collect();
    let broker = TestBroker::start_with(&overrides);
    let mut client = RawClient::connect(broker.addr);
    let found: FindCoordinatorResponse = client.request(
        ApiKey::FindCoordinator,
        2,
        &FindCoordinatorRequest::default().with_key(s("any")),
    );
    assert_eq!(found.error_code, 0);
    // Auto-create a topic to commit to.
    let _: kafka_protocol::messages::MetadataResponse = client.request(
        ApiKey::Metadata,
        4,
        &kafka_protocol::messages::MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(s("t")))),
            ])),
    );
    (broker, client)
}

#[test]
fn join_sync_and_heartbeat_errors() {
    let (_broker, mut client) = broker_with_topic();
    let mut short = join_request("g", "", None);
    short.session_timeout_ms = 1_000;
    assert_eq!(
        code(join(&mut client, &short).error_code),
        ErrorCode::InvalidSessionTimeout
    );
    assert_eq!(
        code(join(&mut client, &join_request("g", "ghost", None)).error_code),
        ErrorCode::UnknownMemberId
    );
    let (member, generation) = stable_member(&mut client, "g");
    let mut other_type = join_request("g", "", None);
    other_type.protocol_type = s("connect");
    assert_eq!(
        code(join(&mut client, &other_type).error_code),
        ErrorCode::InconsistentGroupProtocol
    );
    assert_eq!(
        heartbeat(&mut client, "g", generation, &member),
        ErrorCode::None
    );
    assert_eq!(
        heartbeat(&mut client, "g", generation + 1, &member),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        heartbeat(&mut client, "g", generation, "nobody"),
        ErrorCode::UnknownMemberId
    );
    let stale_sync: SyncGroupResponse = client.request(
        ApiKey::SyncGroup,
        3,
        &SyncGroupRequest::default()
            .with_group_id(group("g"))
            .with_generation_id(generation + 5)
            .with_member_id(s(&member)),
    );
    assert_eq!(code(stale_sync.error_code), ErrorCode::IllegalGeneration);

    // A second member's join (parked) puts the group into a rebalance.
    let mut second = RawClient::connect(_broker.addr);
    let first = join(&mut second, &join_request("g", "", None));
    second.send(
        ApiKey::JoinGroup,
        5,
        &join_request("g", &first.member_id.to_string(), None),
    );
    common::wait_until("the rebalance", std::time::Duration::from_secs(10), || {
        heartbeat(&mut client, "g", generation, &member) == ErrorCode::RebalanceInProgress
    });
    assert_eq!(
        commit(&mut client, "g", generation - 1, "t"),
        ErrorCode::UnknownMemberId,
        "a commit without the member id"
    );
}

#[test]
fn static_members_are_fenced() {
    let (_broker, mut client) = broker_with_topic();
    let first = join(&mut client, &join_request("s", "", Some("instance-1")));
    assert_eq!(code(first.error_code), ErrorCode::None);
    let old_member = first.member_id.to_string();
    let again = join(&mut client, &join_request("s", "", Some("instance-1")));
    assert_eq!(code(again.error_code), ErrorCode::None);
    assert_ne!(again.member_id.to_string(), old_member);
    let fenced: HeartbeatResponse = client.request(
        ApiKey::Heartbeat,
        3,
        &HeartbeatRequest::default()
            .with_group_id(group("s"))
            .with_generation_id(again.generation_id)
            .with_member_id(s(&old_member))
            .with_group_instance_id(Some(s("instance-1"))),
    );
    assert_eq!(code(fenced.error_code), ErrorCode::FencedInstanceId);
}

#[test]
fn commits_deletes_and_their_errors() {
    let (_broker, mut client) = broker_with_topic();
    assert_eq!(
        commit(&mut client, "simple", -1, "t"),
        ErrorCode::None,
        "a simple consumer commits with generation -1"
    );
    assert_eq!(
        commit(&mut client, "other", 3, "t"),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        commit(&mut client, "simple", -1, "missing-topic"),
        ErrorCode::UnknownTopicOrPartition
    );
    let fetched: OffsetFetchResponse = client.request(
        ApiKey::OffsetFetch,
        5,
        &OffsetFetchRequest::default()
            .with_group_id(group("simple"))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0, 1])])),
    );
    let partitions = &fetched.topics[0].partitions;
    assert_eq!(partitions[0].committed_offset, 42);
    assert_eq!(partitions[0].metadata.as_deref(), Some("kept"));
    assert_eq!(partitions[1].committed_offset, -1);

    stable_member(&mut client, "busy");
    let deleted: DeleteGroupsResponse = client.request(
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![
            group("busy"),
            group("nope"),
            group("simple"),
        ]),
    );
    let errors: Vec<ErrorCode> = deleted.results.iter().map(|r| code(r.error_code)).collect();
    assert_eq!(
        errors,
        [
            ErrorCode::NonEmptyGroup,
            ErrorCode::GroupIdNotFound,
            ErrorCode::None
        ]
    );
    let offset_delete = |client: &mut RawClient, group_id: &str| -> OffsetDeleteResponse {
        client.request(
            ApiKey::OffsetDelete,
            0,
            &OffsetDeleteRequest::default()
                .with_group_id(group(group_id))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])]),
        )
    };
    assert_eq!(
        code(offset_delete(&mut client, "simple").error_code),
        ErrorCode::GroupIdNotFound,
        "deleted with its group"
    );
    assert_eq!(commit(&mut client, "simple", -1, "t"), ErrorCode::None);
    let response = offset_delete(&mut client, "simple");
    assert_eq!(code(response.error_code), ErrorCode::None);
    assert_eq!(
        code(response.topics[0].partitions[0].error_code),
        ErrorCode::None
    );
}

#[test]
fn offset_fetch_v8_answers_several_groups_at_once() {
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
    let (_broker, mut client) = broker_with_topic();
    // Two simple consumers commit 42 (generation -1); a third group commits nothing.
    assert_eq!(commit(&mut client, "first", -1, "t"), ErrorCode::None);
    assert_eq!(commit(&mut client, "second", -1, "t"), ErrorCode::None);
    let group_request = |id: &str| {
        OffsetFetchRequestGroup::default()
            .with_group_id(group(id))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0])]))
    };
    let response: OffsetFetchResponse = client.request(
        ApiKey::OffsetFetch,
        8,
        &OffsetFetchRequest::default().with_groups(vec![
            group_request("first"),
            group_request("second"),
            group_request("none"),
        ]),
    );
    let offsets: Vec<(String, i16, i64, Option<String>)> = response
        .groups
        .iter()
        .map(|g| {
            let partition = &g.topics[0].partitions[0];
            (
                g.group_id.to_string(),
                g.error_code,
                partition.committed_offset,
                partition.metadata.as_ref().map(ToString::to_string),
            )
        })
        .collect();
    assert_eq!(
        offsets,
        vec![
            ("first".to_string(), 0, 42, Some("kept".to_string())),
            ("second".to_string(), 0, 42, Some("kept".to_string())),
            ("none".to_string(), 0, -1, Some(String::new())),
        ]
    );
}

#[test]
fn group_limits_and_invalid_ids() {
    let (broker, mut client) =
        broker_with_topic_and(&[("group.max.size", "1"), ("offset.metadata.max.bytes", "16")]);
    assert_eq!(
        code(join(&mut client, &join_request("", "", None)).error_code),
        ErrorCode::InvalidGroupId
    );
    assert_eq!(commit(&mut client, "", -1, "t"), ErrorCode::InvalidGroupId);

    stable_member(&mut client, "full");
    let mut second = RawClient::connect(broker.addr);
    assert_eq!(
        code(join(&mut second, &join_request("full", "", None)).error_code),
        ErrorCode::GroupMaxSizeReached,
        "group.max.size=1 and one member already"
    );

    assert_eq!(
        commit_with_metadata(&mut client, "simple", -1, "t", &"m".repeat(17)),
        ErrorCode::OffsetMetadataTooLarge
    );
    assert_eq!(
        commit_with_metadata(&mut client, "simple", -1, "t", &"m".repeat(16)),
        ErrorCode::None,
        "metadata of offset.metadata.max.bytes is kept"
    );
}

#[test]
fn offset_for_leader_epoch_answers_end_offsets_and_epoch_errors() {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
    let (_broker, mut client) = broker_with_topic();
    let (error, _) = common::produce(&mut client, "t", 0, common::record_batch(7, 10));
    assert_eq!(code(error), ErrorCode::None);
    let ask = |client: &mut RawClient, topic: &str, current: i32, epoch: i32| {
        let response: OffsetForLeaderEpochResponse = client.request(
            ApiKey::OffsetForLeaderEpoch,
            4,
            &OffsetForLeaderEpochRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_topics(vec![OffsetForLeaderTopic::default()
                    .with_topic(TopicName(s(topic)))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(current)
                        .with_leader_epoch(epoch)])]),
        );
        let partition = &response.topics[0].partitions[0];
        (
            code(partition.error_code),
            partition.leader_epoch,
            partition.end_offset,
        )
    };
    assert_eq!(ask(&mut client, "t", 0, 0), (ErrorCode::None, 0, 7));
    assert_eq!(
        ask(&mut client, "t", -1, 0),
        (ErrorCode::None, 0, 7),
        "no current epoch: not fenced"
    );
    assert_eq!(
        ask(&mut client, "t", 5, 0),
        (ErrorCode::UnknownLeaderEpoch, -1, -1),
        "a current epoch newer than the leader's"
    );
    assert_eq!(
        ask(&mut client, "missing", 0, 0),
        (ErrorCode::UnknownTopicOrPartition, -1, -1)
    );
}
