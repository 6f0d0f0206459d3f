//! The fuzzer's seeds: one valid request frame for every API and version Runnel serves
//! (`SERVED_APIS`), encoded with kafka-protocol, with non-empty arrays wherever the API has
//! them so that mutations reach nested counts and lengths.
//!
//! Every request names only the fuzz topic and fuzz groups, never the topic whose records the
//! fuzzer checks afterwards; creations are `validate_only`.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use runnel_protocol::api_versions::SERVED_APIS;

/// The topic the corpus's requests name (created before the run, two partitions).
pub const FUZZ_TOPIC: &str = "fuzz-topic";
const FUZZ_GROUP: &str = "fuzz-group";

/// One seed frame: a whole request without its size prefix.
pub struct Seed {
    pub api: ApiKey,
    pub version: i16,
    pub frame: Vec<u8>,
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn topic() -> TopicName {
    s(FUZZ_TOPIC).into()
}

fn group() -> GroupId {
    s(FUZZ_GROUP).into()
}

/// Every served `(api, version)`, each as one valid frame.
pub fn seeds(records: &Bytes) -> Vec<Seed> {
    // `RUNNEL_FUZZ_APIS=8,11`: only these API keys (to narrow a finding down); default all.
    let only: Option<Vec<i16>> = std::env::var("RUNNEL_FUZZ_APIS").ok().map(|keys| {
        keys.split(',')
            .map(|key| {
                key.trim()
                    .parse()
                    .expect("RUNNEL_FUZZ_APIS: API keys, comma-separated")
            })
            .collect()
    });
    let mut seeds = Vec::new();
    for served in SERVED_APIS.iter().filter(|served| {
        only.as_ref()
            .is_none_or(|keys| keys.contains(&(served.key as i16)))
    }) {
        for version in served.min_version..=served.max_version {
            let body = body(served.key, version, records)
                .unwrap_or_else(|error| panic!("{:?} v{version}: {error}", served.key));
            let header = RequestHeader::default()
                .with_request_api_key(served.key as i16)
                .with_request_api_version(version)
                .with_correlation_id(7)
                .with_client_id(Some(s("frame-fuzz")));
            let mut frame = BytesMut::new();
            header
                .encode(&mut frame, served.key.request_header_version(version))
                .expect("header encodes");
            frame.put_slice(&body);
            seeds.push(Seed {
                api: served.key,
                version,
                frame: frame.to_vec(),
            });
        }
    }
    seeds
}

fn encoded<T: Encodable>(request: T, version: i16) -> anyhow::Result<Vec<u8>> {
    let mut buf = BytesMut::new();
    request.encode(&mut buf, version)?;
    Ok(buf.to_vec())
}

fn body(api: ApiKey, version: i16, records: &Bytes) -> anyhow::Result<Vec<u8>> {
    match api {
        ApiKey::Produce => encoded(produce(records), version),
        ApiKey::Fetch => encoded(fetch(), version),
        ApiKey::ListOffsets => encoded(list_offsets(), version),
        ApiKey::Metadata => encoded(metadata(version), version),
        ApiKey::ApiVersions => encoded(
            ApiVersionsRequest::default()
                .with_client_software_name(s("frame-fuzz"))
                .with_client_software_version(s("1.0")),
            version,
        ),
        ApiKey::SaslHandshake => encoded(
            SaslHandshakeRequest::default().with_mechanism(s("PLAIN")),
            version,
        ),
        ApiKey::SaslAuthenticate => encoded(
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0u\0p")),
            version,
        ),
        ApiKey::CreateTopics => encoded(create_topics(), version),
        ApiKey::DeleteTopics => encoded(delete_topics(version), version),
        ApiKey::CreatePartitions => encoded(create_partitions(), version),
        ApiKey::ElectLeaders => encoded(elect_leaders(), version),
        ApiKey::DeleteRecords => encoded(delete_records(), version),
        ApiKey::DescribeConfigs => encoded(describe_configs(), version),
        ApiKey::AlterConfigs => encoded(alter_configs(), version),
        ApiKey::IncrementalAlterConfigs => encoded(incremental_alter_configs(), version),
        ApiKey::InitProducerId => encoded(
            InitProducerIdRequest::default()
                .with_transaction_timeout_ms(60_000)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
            version,
        ),
        ApiKey::FindCoordinator => encoded(find_coordinator(version), version),
        ApiKey::JoinGroup => encoded(join_group(), version),
        ApiKey::SyncGroup => encoded(sync_group(version), version),
        ApiKey::Heartbeat => encoded(
            HeartbeatRequest::default()
                .with_group_id(group())
                .with_generation_id(1)
                .with_member_id(s("member-1")),
            version,
        ),
        ApiKey::LeaveGroup => encoded(leave_group(version), version),
        ApiKey::OffsetCommit => encoded(offset_commit(), version),
        ApiKey::OffsetFetch => encoded(offset_fetch(version), version),
        ApiKey::ListGroups => encoded(list_groups(version), version),
        ApiKey::DescribeGroups => encoded(
            DescribeGroupsRequest::default().with_groups(vec![group(), s("other").into()]),
            version,
        ),
        ApiKey::DeleteGroups => encoded(
            DeleteGroupsRequest::default().with_groups_names(vec![s("fuzz-empty").into()]),
            version,
        ),
        ApiKey::OffsetDelete => encoded(offset_delete(), version),
        ApiKey::OffsetForLeaderEpoch => encoded(offset_for_leader_epoch(), version),
        ApiKey::DescribeCluster => encoded(
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
            version,
        ),
        ApiKey::DescribeQuorum => encoded(
            DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(s("__cluster_metadata").into())
                    .with_partitions(vec![
                        describe_quorum_request::PartitionData::default().with_partition_index(0)
                    ]),
            ]),
            version,
        ),
        ApiKey::WriteTxnMarkers => encoded(
            WriteTxnMarkersRequest::default().with_markers(vec![
                write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(4242.into())
                    .with_producer_epoch(0)
                    .with_transaction_result(false)
                    .with_topics(vec![
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(s(FUZZ_TOPIC).into())
                            .with_partition_indexes(vec![0]),
                    ]),
            ]),
            version,
        ),
        ApiKey::DescribeProducers => encoded(describe_producers(), version),
        ApiKey::DescribeLogDirs => encoded(describe_log_dirs(), version),
        // A directory that is not configured: refused, nothing moves.
        ApiKey::AlterReplicaLogDirs => encoded(alter_replica_log_dirs(), version),
        ApiKey::ListPartitionReassignments => encoded(list_partition_reassignments(), version),
        ApiKey::AlterPartitionReassignments => encoded(alter_partition_reassignments(), version),
        ApiKey::AddPartitionsToTxn => encoded(add_partitions_to_txn(version), version),
        ApiKey::AddOffsetsToTxn => encoded(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(7.into())
                .with_producer_epoch(0)
                .with_group_id(group()),
            version,
        ),
        ApiKey::EndTxn => encoded(
            EndTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(7.into())
                .with_producer_epoch(0)
                .with_committed(true),
            version,
        ),
        ApiKey::TxnOffsetCommit => encoded(txn_offset_commit(), version),
        ApiKey::DescribeTransactions => encoded(
            DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![txn_id(), s("").into()]),
            version,
        ),
        ApiKey::ListTransactions => encoded(list_transactions(version), version),
        other => anyhow::bail!("no seed for {other:?}"),
    }
}

fn produce(records: &Bytes) -> ProduceRequest {
    use produce_request::{PartitionProduceData, TopicProduceData};
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records.clone()))])])
}

fn fetch() -> FetchRequest {
    use fetch_request::{FetchPartition, FetchTopic};
    let partition = |index| {
        FetchPartition::default()
            .with_partition(index)
            .with_fetch_offset(0)
            .with_partition_max_bytes(64 * 1024)
    };
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(256 * 1024)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic())
            .with_partitions(vec![partition(0), partition(1)])])
}

fn list_offsets() -> ListOffsetsRequest {
    use list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic())
            .with_partitions(vec![
                ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
                ListOffsetsPartition::default()
                    .with_partition_index(1)
                    .with_timestamp(1_700_000_000_000),
            ])])
}

fn metadata(version: i16) -> MetadataRequest {
    use metadata_request::MetadataRequestTopic;
    MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic())),
            MetadataRequestTopic::default().with_name(Some(s("fuzz-absent").into())),
        ]))
        .with_allow_auto_topic_creation(version < 4)
}

fn create_topics() -> CreateTopicsRequest {
    use create_topics_request::{CreatableTopic, CreatableTopicConfig};
    CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_validate_only(true)
        .with_topics(vec![CreatableTopic::default()
            .with_name(s("fuzz-new").into())
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("600000")))])])
}

fn delete_topics(version: i16) -> DeleteTopicsRequest {
    use delete_topics_request::DeleteTopicState;
    let request = DeleteTopicsRequest::default().with_timeout_ms(5_000);
    if version >= 6 {
        request.with_topics(vec![
            DeleteTopicState::default().with_name(Some(s("fuzz-never-created").into()))
        ])
    } else {
        request.with_topic_names(vec![s("fuzz-never-created").into()])
    }
}

fn create_partitions() -> CreatePartitionsRequest {
    use create_partitions_request::CreatePartitionsTopic;
    CreatePartitionsRequest::default()
        .with_timeout_ms(5_000)
        .with_validate_only(true)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic())
            .with_count(3)])
}

fn elect_leaders() -> ElectLeadersRequest {
    use elect_leaders_request::TopicPartitions;
    ElectLeadersRequest::default()
        .with_timeout_ms(5_000)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(topic())
            .with_partitions(vec![0, 1])]))
}

fn describe_producers() -> DescribeProducersRequest {
    use describe_producers_request::TopicRequest;
    DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(topic())
        .with_partition_indexes(vec![0, 1])])
}

fn list_transactions(version: i16) -> ListTransactionsRequest {
    let request = ListTransactionsRequest::default()
        .with_state_filters(vec![s("Ongoing"), s("NoSuchState")])
        .with_producer_id_filters(vec![7.into()]);
    if version >= 1 {
        request.with_duration_filter(1_000)
    } else {
        request
    }
}

fn describe_log_dirs() -> DescribeLogDirsRequest {
    use describe_log_dirs_request::DescribableLogDirTopic;
    DescribeLogDirsRequest::default().with_topics(Some(vec![DescribableLogDirTopic::default()
        .with_topic(topic())
        .with_partitions(vec![0, 1])]))
}

fn alter_replica_log_dirs() -> AlterReplicaLogDirsRequest {
    use alter_replica_log_dirs_request::{AlterReplicaLogDir, AlterReplicaLogDirTopic};
    AlterReplicaLogDirsRequest::default().with_dirs(vec![AlterReplicaLogDir::default()
        .with_path(s("/nonexistent-fuzz-log-dir"))
        .with_topics(vec![AlterReplicaLogDirTopic::default()
            .with_name(topic())
            .with_partitions(vec![0, 1])])])
}

fn list_partition_reassignments() -> ListPartitionReassignmentsRequest {
    use list_partition_reassignments_request::ListPartitionReassignmentsTopics;
    ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(Some(vec![ListPartitionReassignmentsTopics::default()
            .with_name(topic())
            .with_partition_indexes(vec![0, 1])]))
}

fn alter_partition_reassignments() -> AlterPartitionReassignmentsRequest {
    use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(topic())
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(vec![BrokerId(1)]))])])
}

fn delete_records() -> DeleteRecordsRequest {
    use delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic())
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(1)
                .with_offset(0)])])
}

fn describe_configs() -> DescribeConfigsRequest {
    use describe_configs_request::DescribeConfigsResource;
    DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(FUZZ_TOPIC))
            .with_configuration_keys(Some(vec![s("retention.ms"), s("cleanup.policy")])),
        DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s("1"))
            .with_configuration_keys(None),
    ])
}

fn alter_configs() -> AlterConfigsRequest {
    use alter_configs_request::{AlterConfigsResource, AlterableConfig};
    AlterConfigsRequest::default()
        .with_validate_only(true)
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(FUZZ_TOPIC))
            .with_configs(vec![AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("600000")))])])
}

fn incremental_alter_configs() -> IncrementalAlterConfigsRequest {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    IncrementalAlterConfigsRequest::default()
        .with_validate_only(true)
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(FUZZ_TOPIC))
            .with_configs(vec![AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(s("600000")))])])
}

/// The transactional id of the corpus's transactional requests (never initialized: they are
/// refused, INVALID_PRODUCER_ID_MAPPING and the like, which is what mutations should reach).
fn txn_id() -> TransactionalId {
    s("fuzz-txn").into()
}

fn add_partitions_to_txn(version: i16) -> AddPartitionsToTxnRequest {
    use add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
    let topics = vec![AddPartitionsToTxnTopic::default()
        .with_name(topic())
        .with_partitions(vec![0, 1])];
    if version >= 4 {
        AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(txn_id())
                .with_producer_id(7.into())
                .with_producer_epoch(0)
                .with_verify_only(version == 5)
                .with_topics(topics),
        ])
    } else {
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id())
            .with_v3_and_below_producer_id(7.into())
            .with_v3_and_below_producer_epoch(0)
            .with_v3_and_below_topics(topics)
    }
}

fn txn_offset_commit() -> TxnOffsetCommitRequest {
    use txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
    TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id())
        .with_group_id(s("fuzz-commits").into())
        .with_producer_id(7.into())
        .with_producer_epoch(0)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(topic())
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)
                .with_committed_metadata(Some(s("meta")))])])
}

fn find_coordinator(version: i16) -> FindCoordinatorRequest {
    if version >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![s(FUZZ_GROUP), s("other")])
    } else {
        FindCoordinatorRequest::default().with_key(s(FUZZ_GROUP))
    }
}

/// A consumer protocol subscription (version 0) to the fuzz topic: what real consumers send as
/// JoinGroup's protocol metadata.
fn subscription() -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    buf.put_i32(1);
    buf.put_i16(FUZZ_TOPIC.len() as i16);
    buf.put_slice(FUZZ_TOPIC.as_bytes());
    buf.put_i32(-1);
    buf.freeze()
}

fn join_group() -> JoinGroupRequest {
    use join_group_request::JoinGroupRequestProtocol;
    JoinGroupRequest::default()
        .with_group_id(group())
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription()),
            JoinGroupRequestProtocol::default()
                .with_name(s("roundrobin"))
                .with_metadata(subscription()),
        ])
}

fn sync_group(version: i16) -> SyncGroupRequest {
    use sync_group_request::SyncGroupRequestAssignment;
    let request = SyncGroupRequest::default()
        .with_group_id(group())
        .with_generation_id(1)
        .with_member_id(s("member-1"))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s("member-1"))
            .with_assignment(subscription())]);
    if version >= 5 {
        request
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
    } else {
        request
    }
}

fn leave_group(version: i16) -> LeaveGroupRequest {
    use leave_group_request::MemberIdentity;
    if version >= 3 {
        LeaveGroupRequest::default()
            .with_group_id(group())
            .with_members(vec![
                MemberIdentity::default().with_member_id(s("member-1")),
                MemberIdentity::default().with_member_id(s("member-2")),
            ])
    } else {
        LeaveGroupRequest::default()
            .with_group_id(group())
            .with_member_id(s("member-1"))
    }
}

fn offset_commit() -> OffsetCommitRequest {
    use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    let partition = |index, offset| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(index)
            .with_committed_offset(offset)
            .with_committed_metadata(Some(s("meta")))
    };
    OffsetCommitRequest::default()
        .with_group_id(s("fuzz-commits").into())
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic())
            .with_partitions(vec![partition(0, 1), partition(1, 0)])])
}

fn offset_fetch(version: i16) -> OffsetFetchRequest {
    use offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    if version >= 8 {
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(s("fuzz-commits").into())
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic())
                .with_partition_indexes(vec![0, 1])]))])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(s("fuzz-commits").into())
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic())
                .with_partition_indexes(vec![0, 1])]))
    }
}

fn list_groups(version: i16) -> ListGroupsRequest {
    let request = ListGroupsRequest::default();
    match version {
        5.. => request
            .with_states_filter(vec![s("Stable"), s("Empty")])
            .with_types_filter(vec![s("classic")]),
        4 => request.with_states_filter(vec![s("Stable"), s("Empty")]),
        _ => request,
    }
}

fn offset_delete() -> OffsetDeleteRequest {
    use offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
    OffsetDeleteRequest::default()
        .with_group_id(s("fuzz-commits").into())
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(topic())
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(1)
            ])])
}

fn offset_for_leader_epoch() -> OffsetForLeaderEpochRequest {
    use offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    OffsetForLeaderEpochRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic())
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(0)])])
}
