//! A topic's `compression.type`: batches produced in another codec are stored recompressed
//! (what a Fetch returns is in the topic's codec, records, offsets and sequences unchanged);
//! `producer` keeps each batch as it came; the setting changes live.

mod common;

use bytes::Bytes;
use common::{RawClient, TestBroker};
use kafka_protocol::records::RecordBatchDecoder;
use runnel_protocol::record_batch::BatchHeader;
use runnel_protocol::ErrorCode;

/// (offset, value) of a stored record.
type Stored = (i64, Option<Bytes>);

/// (codec, records) of each batch a fetch from offset 0 returns.
fn stored_batches(client: &mut RawClient, topic: &str) -> Vec<(i16, Vec<Stored>)> {
    let (error, _, mut records) = common::fetch_all(client, topic);
    assert_eq!(error, 0);
    let mut batches = Vec::new();
    while !records.is_empty() {
        let header = BatchHeader::parse(&records).expect("a batch header");
        let set = RecordBatchDecoder::decode(&mut records).expect("a batch");
        batches.push((
            header.compression(),
            set.records
                .into_iter()
                .map(|r| (r.offset, r.value))
                .collect(),
        ));
    }
    batches
}

/// IncrementalAlterConfigs SET of one topic config; returns the resource's error.
fn set_config(client: &mut RawClient, topic: &str, key: &str, value: &str) -> ErrorCode {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    const TOPIC_RESOURCE: i8 = 2;
    const SET: i8 = 0;
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_string(key.to_string()))
                .with_config_operation(SET)
                .with_value(Some(StrBytes::from_string(value.to_string())))]),
    ]);
    let response: IncrementalAlterConfigsResponse =
        client.request(ApiKey::IncrementalAlterConfigs, 1, &request);
    ErrorCode::from_code(response.responses[0].error_code).expect("a known error code")
}

#[test]
fn batches_are_stored_in_the_topics_codec() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    let created = common::create_topic(&mut client, "squeezed", 1, &[("compression.type", "zstd")]);
    assert_eq!(created, 0);
    let produced = common::record_batch(20, 200);
    assert_eq!(
        common::produce(&mut client, "squeezed", 0, produced.clone()),
        (0, 0)
    );

    let expected: Vec<Stored> = RecordBatchDecoder::decode(&mut produced.clone())
        .expect("decode")
        .records
        .into_iter()
        .map(|r| (r.offset, r.value))
        .collect();
    let stored = stored_batches(&mut client, "squeezed");
    assert_eq!(
        stored,
        vec![(4, expected.clone())],
        "one zstd batch, same records"
    );

    // producer: the next batch stays uncompressed, and continues the offsets.
    assert_eq!(
        set_config(&mut client, "squeezed", "compression.type", "producer"),
        ErrorCode::None
    );
    assert_eq!(
        common::produce(&mut client, "squeezed", 0, common::record_batch(3, 10)).0,
        0
    );
    let stored = stored_batches(&mut client, "squeezed");
    assert_eq!(
        stored
            .iter()
            .map(|(codec, records)| (*codec, records.len()))
            .collect::<Vec<_>>(),
        [(4, 20), (0, 3)]
    );
    assert_eq!(stored[1].1[0].0, 20, "offsets continue");
}
