//! Local damage is contained, not spread (issue 11, items 4 and 7), through a real broker on
//! real files: a segment cut short below the recovery point, a missing middle segment, and
//! garbage written into an old segment while the broker runs (found by the scrubber) are each
//! reported on `/metrics` and refused to fetches with `CORRUPT_MESSAGE`, which is what Kafka
//! answers when a read meets corrupt bytes (`CorruptRecordException` →
//! `Errors.CORRUPT_MESSAGE` in `ReplicaManager.readFromLocalLog`); records before the damage
//! and after it are still served, and no later segment is deleted. Before the fix the cut-short
//! segment made recovery delete every later segment, the hole was answered with the records
//! after it, and the garbage was served. Also: the checkpoint writers (the periodic task,
//! retention, shutdown) never collide.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::{RawClient, TestBroker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};
use runnel_protocol::ErrorCode;

const TOPIC: &str = "damaged";
/// Batches of 10 records of 50 bytes (about 800 bytes): two batches a segment.
const SEGMENT_BYTES: &str = "2000";

fn get_metrics(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the HTTP port");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: runnel\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

fn damaged_ranges(broker: &TestBroker) -> Option<u64> {
    let metrics = get_metrics(broker.http_addr().expect("http"));
    let series = format!("runnel_partition_damaged_ranges{{topic=\"{TOPIC}\",partition=\"0\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|v| v.parse().ok())
}

/// Fetches partition 0 from `offset`: (error code, base offset of the first batch returned).
fn fetch_at(client: &mut RawClient, offset: i64) -> (i16, Option<i64>) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(common::topic_name(TOPIC))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client.request(ApiKey::Fetch, 12, &request);
    let partition = &response.responses[0].partitions[0];
    let records = partition.records.clone().unwrap_or_default();
    (partition.error_code, first_base_offset(&records))
}

fn first_base_offset(records: &Bytes) -> Option<i64> {
    (records.len() >= 8).then(|| i64::from_be_bytes(records[..8].try_into().expect("8 bytes")))
}

/// A broker with a topic of `batches` batches of 10 records; returns it and its segment files.
fn broker_with_segments(batches: usize, overrides: &[(&str, &str)]) -> (TestBroker, Vec<PathBuf>) {
    let mut all = vec![
        ("http.listen", "127.0.0.1:0"),
        ("log.segment.bytes", SEGMENT_BYTES),
    ];
    all.extend_from_slice(overrides);
    let broker = TestBroker::start_with(&all);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, TOPIC, 1, &[]), 0);
    for i in 0..batches {
        let (error, base) = common::produce(&mut client, TOPIC, 0, common::record_batch(10, 50));
        assert_eq!((error, base), (0, 10 * i as i64));
    }
    let files = segment_files(&broker);
    assert!(files.len() >= 5, "{files:?}");
    (broker, files)
}

fn segment_files(broker: &TestBroker) -> Vec<PathBuf> {
    let dir = broker.data_dir().join(format!("{TOPIC}-0"));
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("partition dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

fn base_of(path: &std::path::Path) -> i64 {
    let stem = path.file_stem().and_then(|s| s.to_str()).expect("stem");
    stem.parse().expect("20 digits")
}

#[test]
fn a_segment_cut_short_on_a_stopped_broker_is_isolated_and_fetches_in_it_get_corrupt_message() {
    let (mut broker, files) = broker_with_segments(12, &[]);
    broker.stop();
    let second = &files[1];
    let length = fs::metadata(second).expect("stat").len();
    OpenOptions::new()
        .write(true)
        .open(second)
        .and_then(|f| f.set_len(length - 100))
        .expect("cut");
    broker.restart(&[
        ("http.listen", "127.0.0.1:0"),
        ("log.segment.bytes", SEGMENT_BYTES),
    ]);

    assert_eq!(segment_files(&broker), files, "every segment kept");
    assert_eq!(damaged_ranges(&broker), Some(1));
    let (second_base, third_base) = (base_of(&files[1]), base_of(&files[2]));
    let mut client = RawClient::connect(broker.addr);
    // The second segment's first batch survives; its second batch is the damaged range.
    assert_eq!(fetch_at(&mut client, second_base), (0, Some(second_base)));
    for offset in [second_base + 10, third_base - 1] {
        assert_eq!(
            fetch_at(&mut client, offset),
            (ErrorCode::CorruptMessage.code(), None),
            "offset {offset}"
        );
    }
    assert_eq!(fetch_at(&mut client, third_base), (0, Some(third_base)));
    assert_eq!(fetch_at(&mut client, 110), (0, Some(110)), "the last batch");
}

#[test]
fn a_missing_middle_segment_is_not_answered_with_the_records_after_it() {
    let (mut broker, files) = broker_with_segments(12, &[]);
    broker.stop();
    let missing = base_of(&files[2]);
    let after = base_of(&files[3]);
    for suffix in ["log", "index", "timeindex"] {
        fs::remove_file(files[2].with_extension(suffix)).expect("remove");
    }
    broker.restart(&[
        ("http.listen", "127.0.0.1:0"),
        ("log.segment.bytes", SEGMENT_BYTES),
    ]);
    assert_eq!(damaged_ranges(&broker), Some(1));
    let mut client = RawClient::connect(broker.addr);
    // Before the fix a fetch at `missing` answered with the batch at `after`.
    assert_eq!(
        fetch_at(&mut client, missing),
        (ErrorCode::CorruptMessage.code(), None)
    );
    assert_eq!(fetch_at(&mut client, after), (0, Some(after)));
    assert_eq!(fetch_at(&mut client, 0), (0, Some(0)));
}

#[test]
fn the_scrubber_finds_garbage_written_into_an_old_segment_while_the_broker_runs() {
    let (mut broker, files) = broker_with_segments(
        12,
        &[
            ("log.scrub.bytes.per.second", "100000000"),
            ("log.scrub.interval.ms", "50"),
        ],
    );
    let target = &files[1];
    let base = base_of(target);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(fetch_at(&mut client, base + 10), (0, Some(base + 10)));
    assert_eq!(damaged_ranges(&broker), Some(0));
    // 16 bytes of garbage inside the records of the segment's second batch.
    let length = fs::metadata(target).expect("stat").len();
    let file = OpenOptions::new().write(true).open(target).expect("open");
    file.write_all_at(&[0xa5; 16], length - 200)
        .expect("garbage");
    drop(file);

    common::wait_until(
        "the scrubber reports the damage",
        Duration::from_secs(30),
        || damaged_ranges(&broker) == Some(1),
    );
    assert_eq!(
        fetch_at(&mut client, base + 10),
        (ErrorCode::CorruptMessage.code(), None)
    );
    assert_eq!(
        fetch_at(&mut client, base),
        (0, Some(base)),
        "the batch before it"
    );
    let next = base_of(&files[2]);
    assert_eq!(
        fetch_at(&mut client, next),
        (0, Some(next)),
        "the segment after it"
    );

    // Reported again at the next start, before any scrub (scrubber off).
    broker.restart(&[
        ("http.listen", "127.0.0.1:0"),
        ("log.segment.bytes", SEGMENT_BYTES),
        ("log.scrub.bytes.per.second", "0"),
    ]);
    assert_eq!(damaged_ranges(&broker), Some(1));
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(
        fetch_at(&mut client, base + 10),
        (ErrorCode::CorruptMessage.code(), None)
    );
}

#[test]
fn checkpoint_writers_never_collide() {
    // Retention and the periodic checkpoint task both call write_checkpoints; before the fix
    // two calls at once collided on `recovery-point-offset-checkpoint.tmp` (a rename failing
    // with "No such file or directory").
    let (broker, _) = broker_with_segments(12, &[]);
    let broker = std::sync::Arc::clone(broker.running().broker());
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let broker = std::sync::Arc::clone(&broker);
            std::thread::spawn(move || {
                for _ in 0..100 {
                    broker
                        .replicas
                        .write_checkpoints()
                        .map_err(|e| e.to_string())?;
                    broker
                        .replicas
                        .write_cleaner_checkpoint()
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread").expect("no collision");
    }
}
