//! Raw transactional requests shared by the transaction tests: what a transactional producer
//! sends, with the version chosen by the test.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, EndTxnRequest, EndTxnResponse, FetchRequest, FetchResponse, InitProducerIdRequest,
    InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest,
    ProduceResponse, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record};
use runnel_protocol::ErrorCode;

use super::RawClient;

pub fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

/// InitProducerId with a transactional id; (error, producer id, epoch).
pub fn init(client: &mut RawClient, id: &str, timeout_ms: i32, version: i16) -> (i16, i64, i16) {
    let response: InitProducerIdResponse = client.request(
        ApiKey::InitProducerId,
        version,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id(id)))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1),
    );
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

/// InitProducerId at `version`, retried while the coordinator loads (COORDINATOR_LOAD_IN_PROGRESS,
/// which clients retry: the first request creates `__transaction_state` and its tasks start
/// loading).
pub fn init_loaded(client: &mut RawClient, id: &str, version: i16) -> (i16, i64, i16) {
    let mut answer = None;
    super::wait_until(
        "the transaction coordinator to load",
        Duration::from_secs(10),
        || {
            let init = init(client, id, 60_000, version);
            answer = Some(init);
            init.0 != ErrorCode::CoordinatorLoadInProgress.code()
        },
    );
    answer.expect("asked at least once")
}

/// One transactional record of (producer id, epoch) at `base_sequence`.
pub fn transactional_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    value: &[u8],
) -> Bytes {
    let record = Record {
        transactional: true,
        producer_id,
        producer_epoch: epoch,
        sequence: base_sequence,
        ..super::record(
            0,
            1_700_000_000_000,
            None,
            Some(Bytes::copy_from_slice(value)),
        )
    };
    super::encode_batch(&[record], Compression::None)
}

/// A Produce request (acks=all) of one batch to `topic`/`partition`.
pub fn produce_request(
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(transactional_id.map(txn_id))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(super::topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// The partition's error code in a one-batch Produce response.
pub fn produce_error(response: &ProduceResponse) -> i16 {
    response.responses[0].partition_responses[0].error_code
}

/// Produce at `version` of one batch; the partition's error code.
pub fn produce(
    client: &mut RawClient,
    version: i16,
    transactional_id: Option<&str>,
    (topic, partition): (&str, i32),
    records: Bytes,
) -> i16 {
    let request = produce_request(transactional_id, topic, partition, records);
    let response: ProduceResponse = client.request(ApiKey::Produce, version, &request);
    produce_error(&response)
}

/// An EndTxn request.
pub fn end_txn_request(id: &str, (producer_id, epoch): (i64, i16), commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(producer_id.into())
        .with_producer_epoch(epoch)
        .with_committed(commit)
}

/// EndTxn at `version`; (error, producer id, epoch) (the last two from v5).
pub fn end_txn(
    client: &mut RawClient,
    version: i16,
    id: &str,
    producer: (i64, i16),
    commit: bool,
) -> (i16, i64, i16) {
    let response: EndTxnResponse = client.request(
        ApiKey::EndTxn,
        version,
        &end_txn_request(id, producer, commit),
    );
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

/// A read_committed Fetch v12 of `topic`/`partition` from offset 0: (high watermark, last
/// stable offset, aborted transactions as (producer id, first offset), the records' bytes).
pub fn fetch_read_committed(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
) -> (i64, i64, Vec<(i64, i64)>, Bytes) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(super::topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client.request(ApiKey::Fetch, 12, &request);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let aborted = partition
        .aborted_transactions
        .iter()
        .flatten()
        .map(|txn| (txn.producer_id.0, txn.first_offset))
        .collect();
    (
        partition.high_watermark,
        partition.last_stable_offset,
        aborted,
        partition.records.clone().unwrap_or_default(),
    )
}

/// ListOffsets v5 latest (-1) of `topic`/`partition` under `isolation_level`.
pub fn latest_offset(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
    isolation_level: i8,
) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(super::topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let response: ListOffsetsResponse = client.request(ApiKey::ListOffsets, 5, &request);
    response.topics[0].partitions[0].offset
}
