//! librdkafka (the `rdkafka` crate, bundled librdkafka 2.12) against a real broker: admin
//! create and delete, produce in every codec with keys, headers and timestamps, consume by
//! assignment, watermarks and offsets by time, and large multi-partition fetches (sent with
//! sendfile) through a small socket buffer.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::TestBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn admin(broker: &TestBroker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("admin")
}

fn producer(broker: &TestBroker, codec: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("compression.codec", codec)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

fn consumer(broker: &TestBroker) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "unused-assign-only")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .create()
        .expect("consumer")
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    header: Option<Vec<u8>>,
    timestamp: Option<i64>,
}

#[test]
fn every_codec_round_trips_through_librdkafka() {
    let broker = TestBroker::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let topic = "rd-codecs";
    let admin = admin(&broker);
    let created = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let mut sent: Vec<(i32, i64, Seen)> = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let producer = producer(&broker, codec);
        for i in 0..20 {
            let key = format!("key-{}", i % 4);
            let value = format!("{codec}-value-{i}");
            let timestamp = 1_700_000_000_000 + i;
            let headers = OwnedHeaders::new().insert(Header {
                key: "codec",
                value: Some(codec),
            });
            let keyed = i % 5 != 0;
            let mut record = FutureRecord::to(topic)
                .payload(value.as_bytes())
                .timestamp(timestamp)
                .headers(headers);
            if keyed {
                record = record.key(key.as_bytes());
            }
            let delivery = runtime
                .block_on(producer.send(record, TIMEOUT))
                .expect("delivered");
            let (partition, offset) = (delivery.partition, delivery.offset);
            sent.push((
                partition,
                offset,
                Seen {
                    key: keyed.then(|| key.into_bytes()),
                    value: value.into_bytes(),
                    header: Some(codec.as_bytes().to_vec()),
                    timestamp: Some(timestamp),
                },
            ));
        }
    }

    // Records with one key landed in one partition.
    let mut partitions_by_key: HashMap<Vec<u8>, i32> = HashMap::new();
    for (partition, _, seen) in &sent {
        if let Some(key) = &seen.key {
            assert_eq!(
                *partitions_by_key.entry(key.clone()).or_insert(*partition),
                *partition
            );
        }
    }

    // Consume every partition from offset 0 by assignment.
    let consumer = consumer(&broker);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..3 {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut received: HashMap<(i32, i64), Seen> = HashMap::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while received.len() < sent.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "consumed {} of {}",
            received.len(),
            sent.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("no consume error");
        let header = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == "codec")
                .and_then(|h| h.value.map(<[u8]>::to_vec))
        });
        received.insert(
            (message.partition(), message.offset()),
            Seen {
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().unwrap_or_default().to_vec(),
                header,
                timestamp: message.timestamp().to_millis(),
            },
        );
    }
    for (partition, offset, seen) in &sent {
        assert_eq!(
            received.get(&(*partition, *offset)),
            Some(seen),
            "at {partition}/{offset}"
        );
    }
    // Offsets are contiguous from 0 in each partition.
    for partition in 0..3 {
        let count = sent.iter().filter(|(p, _, _)| *p == partition).count() as i64;
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .expect("watermarks");
        assert_eq!((low, high), (0, count));
        for offset in 0..count {
            assert!(received.contains_key(&(partition, offset)));
        }
    }

    // Offsets by time: the first record at or after a timestamp.
    let (partition, offset, seen) = &sent[7];
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(
            topic,
            *partition,
            Offset::Offset(seen.timestamp.expect("ts")),
        )
        .expect("query");
    let found = consumer
        .offsets_for_times(query, TIMEOUT)
        .expect("offsets for times");
    let found = found
        .find_partition(topic, *partition)
        .expect("partition")
        .offset();
    let expected = sent
        .iter()
        .filter(|(p, _, s)| p == partition && s.timestamp >= seen.timestamp)
        .map(|(_, o, _)| *o)
        .min()
        .expect("at least this record");
    assert_eq!(found, Offset::Offset(expected));
    assert!(expected <= *offset);

    // Delete the topic: it disappears from metadata.
    let deleted = runtime
        .block_on(admin.delete_topics(&[topic], &AdminOptions::new()))
        .expect("delete topics");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    let metadata = consumer.fetch_metadata(None, TIMEOUT).expect("metadata");
    assert!(metadata.topics().iter().all(|t| t.name() != topic));
}

/// Fetch responses are sent with sendfile: many megabytes over several partitions, read by a
/// consumer with a small socket buffer (so the broker's sends block and resume midway), arrive
/// whole and in order, every record where it was written.
#[test]
fn large_fetches_from_several_partitions_arrive_whole() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    const PARTITIONS: i32 = 3;
    const RECORDS_PER_PARTITION: usize = 8_000;
    const VALUE_BYTES: usize = 1_000;
    let broker = TestBroker::start();
    let created = common::create_topic(
        &mut common::RawClient::connect(broker.addr),
        "bulk",
        PARTITIONS,
        &[],
    );
    assert_eq!(created, 0);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "5")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer");
    let value = |partition: i32, index: usize| -> Vec<u8> {
        let tag = format!("{partition}/{index}/");
        tag.bytes().cycle().take(VALUE_BYTES).collect()
    };
    for index in 0..RECORDS_PER_PARTITION {
        for partition in 0..PARTITIONS {
            let payload = value(partition, index);
            let record: BaseRecord<'_, (), [u8]> = BaseRecord::to("bulk")
                .partition(partition)
                .payload(&payload);
            producer.send(record).map_err(|(e, _)| e).expect("queue");
        }
    }
    producer.flush(TIMEOUT).expect("flush");

    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "unused-assign-only")
        .set("enable.auto.commit", "false")
        .set("socket.receive.buffer.bytes", "16384")
        .set("fetch.max.bytes", "8388608")
        .set("max.partition.fetch.bytes", "4194304")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset("bulk", partition, Offset::Beginning)
            .expect("assign");
    }
    reader.assign(&assignment).expect("assign");
    let mut next = [0usize; PARTITIONS as usize];
    let total = RECORDS_PER_PARTITION * PARTITIONS as usize;
    let mut read = 0;
    common::wait_until("every record", Duration::from_secs(120), || {
        while let Some(message) = reader.poll(Duration::from_millis(50)) {
            let message = message.expect("no consume error");
            let partition = message.partition();
            let index = next[partition as usize];
            assert_eq!(
                message.offset(),
                index as i64,
                "partition {partition} in order"
            );
            assert_eq!(
                message.payload(),
                Some(&value(partition, index)[..]),
                "record {partition}/{index}"
            );
            next[partition as usize] += 1;
            read += 1;
        }
        read == total
    });
}

/// librdkafka's transactional producer (KIP-98): an aborted transaction then a committed one
/// on two partitions; a read_committed consumer gets only the committed records (Kafka's
/// isolation: aborted batches skipped through Fetch's aborted transactions, markers never
/// delivered), each partition ending one offset past its records for each marker.
#[test]
fn read_committed_sees_only_the_committed_transaction() {
    use rdkafka::producer::Producer;
    let broker = TestBroker::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let topic = "rd-transactions";
    let created = runtime
        .block_on(admin(&broker).create_topics(
            &[NewTopic::new(topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("transactional.id", "rd-txn")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    let send_all = |prefix: &str| {
        for i in 0..4 {
            let value = format!("{prefix}-{i}");
            let record = FutureRecord::<(), _>::to(topic)
                .partition(i % 2)
                .payload(&value);
            runtime
                .block_on(producer.send(record, TIMEOUT))
                .expect("delivered");
        }
    };
    producer.begin_transaction().expect("begin");
    send_all("aborted");
    producer.abort_transaction(TIMEOUT).expect("abort");
    producer.begin_transaction().expect("begin");
    send_all("committed");
    producer.commit_transaction(TIMEOUT).expect("commit");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "unused-assign-only")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    // Two records and two markers (ABORT, COMMIT) after the aborted pair, per partition.
    for partition in 0..2 {
        common::wait_until("both markers", TIMEOUT, || {
            consumer
                .fetch_watermarks(topic, partition, TIMEOUT)
                .is_ok_and(|(_, high)| high == 6)
        });
    }
    let mut assignment = TopicPartitionList::new();
    for partition in 0..2 {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let mut values = Vec::new();
    common::wait_until("the committed records", TIMEOUT, || {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            values
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
        values.len() >= 4
    });
    values.sort();
    assert_eq!(
        values,
        ["committed-0", "committed-1", "committed-2", "committed-3"]
    );
    // Nothing else arrives: the aborted records stay skipped.
    assert!(consumer.poll(Duration::from_millis(500)).is_none());
}
