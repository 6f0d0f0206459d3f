//! Creating partitions is all or nothing, and a node refuses what it cannot hold (issue 11,
//! item 5).
//!
//! - A CreateTopics or CreatePartitions that fails half-way (here: a partition directory that
//!   cannot be created, because a file has its name) answers the error and leaves no partial
//!   topic, neither in the metadata nor on disk. Before the fix the topic was recorded first
//!   and its partitions opened after, so the failure left a topic in the metadata with half of
//!   its directories.
//! - A request for more than 10,000 partitions gets `POLICY_VIOLATION` ("Excessively large
//!   number of partitions per request."), as Kafka's controller answers
//!   (`ReplicationControlManager.validateTotalNumberOfPartitions`, `MAX_PARTITIONS_PER_BATCH`).
//! - A creation that would take the node past `max.broker.partitions` (KIP-578's name) gets
//!   `POLICY_VIOLATION` and creates nothing.

mod common;

use common::{create_topic, topic_name, RawClient, TestBroker};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, MetadataRequest, MetadataResponse,
};

const KAFKA_STORAGE_ERROR: i16 = 56;
const POLICY_VIOLATION: i16 = 44;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// (error code, partition count) of `topic` in a Metadata v9 answer, without auto-creation.
fn describe(client: &mut RawClient, topic: &str) -> (i16, usize) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let response: MetadataResponse = client.request(ApiKey::Metadata, 9, &request);
    let topic = &response.topics[0];
    (topic.error_code, topic.partitions.len())
}

/// Names of the directories under the data dir that belong to `topic`.
fn partition_dirs(broker: &TestBroker, topic: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(broker.data_dir())
        .expect("list data dir")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.rsplit_once('-')
                .is_some_and(|(name, index)| name == topic && index.parse::<i32>().is_ok())
        })
        .collect();
    names.sort();
    names
}

fn create_partitions(client: &mut RawClient, topic: &str, count: i32) -> i16 {
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(topic))
            .with_count(count)
            .with_assignments(None)]);
    let response: CreatePartitionsResponse = client.request(ApiKey::CreatePartitions, 3, &request);
    response.results[0].error_code
}

#[test]
fn a_topic_creation_that_fails_half_way_leaves_nothing_behind() {
    let mut broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    // A file where partition 150's directory must go: the creation fails there.
    let blocker = broker.data_dir().join("half-150");
    std::fs::write(&blocker, b"in the way").expect("write the blocker");

    assert_eq!(
        create_topic(&mut client, "half", 300, &[]),
        KAFKA_STORAGE_ERROR
    );
    assert_eq!(describe(&mut client, "half").0, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(partition_dirs(&broker, "half"), Vec::<String>::new());
    assert!(blocker.is_file(), "what was there before is left alone");

    // Nothing half-made survives a restart either, and the same creation then succeeds.
    broker.restart(&[]);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(describe(&mut client, "half").0, UNKNOWN_TOPIC_OR_PARTITION);
    std::fs::remove_file(&blocker).expect("remove the blocker");
    assert_eq!(create_topic(&mut client, "half", 300, &[]), 0);
    assert_eq!(describe(&mut client, "half"), (0, 300));
    assert_eq!(partition_dirs(&broker, "half").len(), 300);
}

#[test]
fn adding_partitions_that_fails_half_way_leaves_the_topic_as_it_was() {
    let mut broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(create_topic(&mut client, "grow", 10, &[]), 0);
    let blocker = broker.data_dir().join("grow-60");
    std::fs::write(&blocker, b"in the way").expect("write the blocker");

    assert_eq!(
        create_partitions(&mut client, "grow", 100),
        KAFKA_STORAGE_ERROR
    );
    assert_eq!(describe(&mut client, "grow"), (0, 10));
    assert_eq!(partition_dirs(&broker, "grow").len(), 10);

    broker.restart(&[]);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(describe(&mut client, "grow"), (0, 10));
    std::fs::remove_file(&blocker).expect("remove the blocker");
    assert_eq!(create_partitions(&mut client, "grow", 100), 0);
    assert_eq!(describe(&mut client, "grow"), (0, 100));
}

#[test]
fn more_than_ten_thousand_partitions_in_one_request_is_a_policy_violation() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(
        create_topic(&mut client, "huge", i32::MAX, &[]),
        POLICY_VIOLATION
    );
    assert_eq!(
        create_topic(&mut client, "huge", 10_001, &[]),
        POLICY_VIOLATION
    );
    assert_eq!(describe(&mut client, "huge").0, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(partition_dirs(&broker, "huge"), Vec::<String>::new());

    assert_eq!(create_topic(&mut client, "small", 1, &[]), 0);
    assert_eq!(
        create_partitions(&mut client, "small", i32::MAX),
        POLICY_VIOLATION
    );
    assert_eq!(describe(&mut client, "small"), (0, 1));
}

#[test]
fn creations_past_max_broker_partitions_are_refused_and_create_nothing() {
    let mut broker = TestBroker::start_with(&[("max.broker.partitions", "100")]);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(create_topic(&mut client, "first", 60, &[]), 0);
    assert_eq!(
        create_topic(&mut client, "second", 41, &[]),
        POLICY_VIOLATION
    );
    assert_eq!(
        describe(&mut client, "second").0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(partition_dirs(&broker, "second"), Vec::<String>::new());
    assert_eq!(
        create_partitions(&mut client, "first", 101),
        POLICY_VIOLATION
    );
    assert_eq!(describe(&mut client, "first"), (0, 60));
    // Up to the limit exactly is fine.
    assert_eq!(create_topic(&mut client, "second", 40, &[]), 0);

    // A restart with a lower limit still starts (the limit governs creations only).
    broker.restart(&[("max.broker.partitions", "50")]);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(describe(&mut client, "first"), (0, 60));
    assert_eq!(create_topic(&mut client, "third", 1, &[]), POLICY_VIOLATION);
}

/// A kill -9 between a creation's directories and its metadata record (the order that makes a
/// creation all or nothing) leaves directories without records that the metadata does not
/// name. They are kept and reported at start like any stray directory, but they must not
/// block the name forever: creating the topic again removes them (they hold no record byte)
/// and succeeds. A directory of that name that holds records still refuses the creation.
#[test]
fn directories_without_records_left_by_an_interrupted_creation_do_not_block_the_name() {
    let mut broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(create_topic(&mut client, "first", 1, &[]), 0);
    // What an interrupted creation of "again" with 2 partitions leaves behind.
    for partition in 0..2 {
        let dir = broker.data_dir().join(format!("again-{partition}"));
        std::fs::create_dir(&dir).expect("create a leftover dir");
        std::fs::write(dir.join("00000000000000000000.log"), b"").expect("empty log");
        std::fs::write(dir.join("00000000000000000000.index"), b"").expect("empty index");
        std::fs::write(
            dir.join("partition.metadata"),
            b"version: 0\ntopic_id: AAAAAAAAAAAAAAAAAAAAAA\n",
        )
        .expect("partition.metadata of the interrupted creation");
    }
    // A stray directory with a record byte in it, under another name.
    let kept = broker.data_dir().join("kept-0");
    std::fs::create_dir(&kept).expect("create a dir with data");
    std::fs::write(kept.join("00000000000000000000.log"), b"x").expect("a log with bytes");
    broker.restart(&[]);
    let mut client = RawClient::connect(broker.addr);

    assert_eq!(create_topic(&mut client, "again", 2, &[]), 0);
    assert_eq!(describe(&mut client, "again"), (0, 2));
    assert_ne!(create_topic(&mut client, "kept", 1, &[]), 0);
    assert_eq!(
        std::fs::read(kept.join("00000000000000000000.log")).expect("the data is kept"),
        b"x"
    );
}

/// The same crash during a fresh node's first creation leaves directories without records and
/// a metadata log without records: the start goes on (there is no data the missing metadata
/// could lose), and the name can be created.
#[test]
fn a_first_creation_interrupted_by_a_crash_does_not_refuse_the_start() {
    let mut broker = TestBroker::start();
    let dir = broker.data_dir().join("first-0");
    std::fs::create_dir(&dir).expect("create a leftover dir");
    std::fs::write(dir.join("00000000000000000000.log"), b"").expect("empty log");
    broker.restart(&[]);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(create_topic(&mut client, "first", 1, &[]), 0);
    assert_eq!(describe(&mut client, "first"), (0, 1));
}
