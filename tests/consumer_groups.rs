//! Consumer groups through librdkafka (the `rdkafka` crate): three members share a topic's
//! partitions, read every record once, commit; the group is described and listed; committed
//! offsets survive a broker restart and a new member of the group resumes after them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{RawClient, TestBroker};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset};

const TIMEOUT: Duration = Duration::from_secs(60);
const GROUP_OVERRIDES: &[(&str, &str)] = &[
    ("group.initial.rebalance.delay.ms", "0"),
    ("offsets.topic.num.partitions", "5"),
];

fn create_topic(broker: &TestBroker, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("admin");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let created = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// Produces `count` records spread over `partitions` partitions; returns them by position.
fn produce(broker: &TestBroker, topic: &str, partitions: i32, tag: &str, count: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("acks", "all")
        .create()
        .expect("producer");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for i in 0..count {
        let value = format!("{tag}-{i}");
        let record = FutureRecord::<(), _>::to(topic)
            .payload(value.as_bytes())
            .partition((i as i32) % partitions);
        runtime
            .block_on(producer.send(record, Duration::from_secs(30)))
            .expect("delivered");
    }
}

fn group_consumer(broker: &TestBroker, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer")
}

/// Polls every consumer in turn until `done` holds; returns the values each one read.
fn poll_until(
    consumers: &[BaseConsumer],
    what: &str,
    mut done: impl FnMut(&[BaseConsumer], &[Vec<(i32, i64, String)>]) -> bool,
) -> Vec<Vec<(i32, i64, String)>> {
    let mut read = vec![Vec::new(); consumers.len()];
    let deadline = Instant::now() + TIMEOUT;
    while !done(consumers, &read) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for (consumer, read) in consumers.iter().zip(read.iter_mut()) {
            if let Some(message) = consumer.poll(Duration::from_millis(50)) {
                let message = message.expect("no consume error");
                let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
                read.push((message.partition(), message.offset(), value.to_string()));
            }
        }
    }
    read
}

fn assigned(consumer: &BaseConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|list| list.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

fn describe(broker: &TestBroker, group: &str) -> DescribeGroupsResponse {
    let mut client = RawClient::connect(broker.addr);
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    client.request(ApiKey::DescribeGroups, 5, &request)
}

#[test]
fn three_members_share_six_partitions_and_commit() {
    let broker = TestBroker::start_with(GROUP_OVERRIDES);
    let (topic, group) = ("orders", "billing");
    create_topic(&broker, topic, 6);
    let consumers: Vec<BaseConsumer> = (0..3).map(|_| group_consumer(&broker, group)).collect();
    for consumer in &consumers {
        consumer.subscribe(&[topic]).expect("subscribe");
    }
    poll_until(&consumers, "two partitions each", |consumers, _| {
        consumers.iter().all(|c| assigned(c).len() == 2)
    });
    let all: BTreeSet<i32> = consumers.iter().flat_map(assigned).collect();
    assert_eq!(all, (0..6).collect(), "every partition assigned once");

    produce(&broker, topic, 6, "v", 60);
    let read = poll_until(&consumers, "all 60 records", |_, read| {
        read.iter().map(Vec::len).sum::<usize>() >= 60
    });
    let mut values: Vec<&str> = read.iter().flatten().map(|(_, _, v)| v.as_str()).collect();
    values.sort();
    let mut expected: Vec<String> = (0..60).map(|i| format!("v-{i}")).collect();
    expected.sort();
    assert_eq!(values, expected, "every record read exactly once");
    for (consumer, read) in consumers.iter().zip(&read) {
        let mine = assigned(consumer);
        assert!(read.iter().all(|(p, _, _)| mine.contains(p)));
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
    }

    let described = describe(&broker, group);
    let described = &described.groups[0];
    assert_eq!(described.error_code, 0);
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.protocol_type.as_str(), "consumer");
    assert_eq!(described.members.len(), 3);
    let mut client = RawClient::connect(broker.addr);
    let listed: ListGroupsResponse =
        client.request(ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    assert!(listed
        .groups
        .iter()
        .any(|g| g.group_id.as_str() == group && g.group_state.as_str() == "Stable"));

    // Every partition's committed offset is its end: 10 records each.
    let committed = consumers[0]
        .committed_offsets(
            {
                let mut list = rdkafka::TopicPartitionList::new();
                for p in 0..6 {
                    list.add_partition(topic, p);
                }
                list
            },
            TIMEOUT,
        )
        .expect("committed offsets");
    for element in committed.elements() {
        assert_eq!(element.offset(), Offset::Offset(10), "{element:?}");
    }
}

#[test]
fn committed_offsets_survive_a_restart() {
    let mut broker = TestBroker::start_with(GROUP_OVERRIDES);
    let (topic, group) = ("events", "resumer");
    create_topic(&broker, topic, 2);
    produce(&broker, topic, 2, "before", 10);
    {
        let consumer = group_consumer(&broker, group);
        consumer.subscribe(&[topic]).expect("subscribe");
        let consumers = [consumer];
        poll_until(&consumers, "the first 10 records", |_, read| {
            read[0].len() >= 10
        });
        consumers[0]
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
        consumers[0].unsubscribe();
    }
    broker.restart(GROUP_OVERRIDES);
    produce(&broker, topic, 2, "after", 6);
    let consumer = group_consumer(&broker, group);
    consumer.subscribe(&[topic]).expect("subscribe");
    let consumers = [consumer];
    let read = poll_until(&consumers, "the 6 new records", |_, read| {
        read[0].len() >= 6
    });
    let values: BTreeMap<(i32, i64), String> = read[0]
        .iter()
        .map(|(p, o, v)| ((*p, *o), v.clone()))
        .collect();
    assert!(
        values.values().all(|v| v.starts_with("after")),
        "read a committed record again: {values:?}"
    );
    assert_eq!(values.len(), 6);
}
