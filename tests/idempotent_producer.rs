//! Idempotent producer rules, end to end: producer ids from InitProducerId never repeat (also
//! across restarts), and a partition checks each producer's sequence numbers: a duplicate gets
//! its original offset, a gap OUT_OF_ORDER_SEQUENCE_NUMBER, a stale epoch
//! INVALID_PRODUCER_EPOCH; all of it survives a restart.

mod common;

use bytes::Bytes;
use common::{RawClient, TestBroker};
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};
use kafka_protocol::records::{Compression, Record};
use runnel_protocol::ErrorCode;

const TOPIC: &str = "idem";

fn produce(client: &mut RawClient, records: Bytes) -> (i16, i64) {
    common::produce(client, TOPIC, 0, records)
}

fn init_producer_id(client: &mut RawClient) -> i64 {
    let response: InitProducerIdResponse = client.request(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1),
    );
    assert_eq!(response.error_code, 0);
    assert_eq!(response.producer_epoch, 0);
    response.producer_id.0
}

fn batch(producer_id: i64, epoch: i16, base_sequence: i32, count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let sequence = base_sequence + i as i32;
            let value = Some(Bytes::from(format!("seq-{sequence}")));
            Record {
                producer_id,
                producer_epoch: epoch,
                sequence,
                ..common::record(i, 1_700_000_000_000, None, value)
            }
        })
        .collect();
    common::encode_batch(&records, Compression::None)
}

#[test]
fn sequence_rules_hold_and_survive_a_restart() {
    let mut broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, TOPIC, 1, &[]), 0);
    let producer = init_producer_id(&mut client);

    assert_eq!(produce(&mut client, batch(producer, 0, 0, 3)), (0, 0));
    assert_eq!(produce(&mut client, batch(producer, 0, 3, 2)), (0, 3));
    // A retried batch is a duplicate: its original offset, nothing appended.
    assert_eq!(produce(&mut client, batch(producer, 0, 0, 3)), (0, 0));
    // A gap is out of order.
    let (error, _) = produce(&mut client, batch(producer, 0, 9, 1));
    assert_eq!(error, ErrorCode::OutOfOrderSequenceNumber.code());
    // The log holds exactly offsets 0..5.
    assert_eq!(produce(&mut client, batch(producer, 0, 5, 1)), (0, 5));

    broker.restart(&[]);
    let mut client = RawClient::connect(broker.addr);
    // After the restart the state is back: a duplicate is still recognised, the next
    // sequence continues, and a gap is still refused.
    assert_eq!(produce(&mut client, batch(producer, 0, 3, 2)), (0, 3));
    let (error, _) = produce(&mut client, batch(producer, 0, 7, 1));
    assert_eq!(error, ErrorCode::OutOfOrderSequenceNumber.code());
    assert_eq!(produce(&mut client, batch(producer, 0, 6, 1)), (0, 6));
    // A new epoch starts at sequence 0; the old epoch is then stale.
    assert_eq!(produce(&mut client, batch(producer, 1, 0, 1)), (0, 7));
    let (error, _) = produce(&mut client, batch(producer, 0, 7, 1));
    assert_eq!(error, ErrorCode::InvalidProducerEpoch.code());
}

#[test]
fn producer_ids_never_repeat_across_restarts() {
    let mut broker = TestBroker::start();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let mut client = RawClient::connect(broker.addr);
        for _ in 0..5 {
            assert!(
                seen.insert(init_producer_id(&mut client)),
                "producer id handed out twice"
            );
        }
        broker.restart(&[]);
    }
    assert_eq!(seen.len(), 15);
}

/// Ids come from durable blocks of 1,000 with the next block recorded in the background at
/// 90% (`producer_ids.rs`, after Kafka's `RPCProducerIdManager`): 2,500 ids in one run cross
/// two block boundaries, each handed out once, and a restart (which skips the rest of the
/// last block) hands out none of them again.
#[test]
fn producer_ids_cross_block_boundaries_without_repeating() {
    let mut broker = TestBroker::start();
    let mut seen = std::collections::HashSet::new();
    let mut client = RawClient::connect(broker.addr);
    for _ in 0..2_500 {
        assert!(
            seen.insert(init_producer_id(&mut client)),
            "producer id handed out twice"
        );
    }
    broker.restart(&[]);
    let mut client = RawClient::connect(broker.addr);
    for _ in 0..100 {
        assert!(
            seen.insert(init_producer_id(&mut client)),
            "producer id handed out again after a restart"
        );
    }
    assert_eq!(seen.len(), 2_600);
}
