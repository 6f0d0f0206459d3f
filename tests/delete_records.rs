//! DeleteRecords answers over raw requests: the low watermark it reports, -1 meaning the high
//! watermark, and the errors for offsets past the high watermark and unknown partitions.

mod common;

use common::{RawClient, TestBroker};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::ErrorCode;

fn delete_records(client: &mut RawClient, topic: &str, offset: i64) -> (i16, i64) {
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(StrBytes::from_string(topic.to_string()).into())
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset)])]);
    let response: DeleteRecordsResponse = client.request(ApiKey::DeleteRecords, 2, &request);
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.low_watermark)
}

#[test]
fn delete_records_answers() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, "dr", 1, &[]), 0);
    assert_eq!(
        common::produce(&mut client, "dr", 0, common::record_batch(5, 10)),
        (0, 0)
    );

    assert_eq!(
        delete_records(&mut client, "dr", 6),
        (ErrorCode::OffsetOutOfRange.code(), -1)
    );
    assert_eq!(delete_records(&mut client, "dr", 2), (0, 2));
    assert_eq!(
        delete_records(&mut client, "dr", 1),
        (0, 2),
        "never moves backwards"
    );
    assert_eq!(
        delete_records(&mut client, "dr", -1),
        (0, 5),
        "-1 is the high watermark"
    );
    assert_eq!(
        delete_records(&mut client, "nowhere", 0),
        (ErrorCode::UnknownTopicOrPartition.code(), -1)
    );
}
