//! Restarts of a real `runnel server` process: an orderly shutdown leaves the clean-shutdown
//! marker (`.kafka_cleanshutdown`, `runnel_log::clean_shutdown`) in the data directory and a
//! start takes it; a start after kill -9 (no marker) recovers every acknowledged record,
//! resuming its scan at the index entries the checkpoint task wrote; and a clean start still
//! finds and drops a corrupt last batch, since it CRC-checks the active segment from its last
//! index entry on.
//!
//! The index interval is small (`log.index.interval.bytes=1024`) so that the active segment
//! has index entries to trust and resume from; the checkpoint interval is short so that the
//! kill -9 test can wait for a checkpoint (a condition with a deadline, not a sleep).

mod broker_process;
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use broker_process::BrokerProcess;
use bytes::Bytes;
use common::{create_topic, fetch_all, produce, record_batch, RawClient};

const TOPIC: &str = "restarts";
const MARKER: &str = ".kafka_cleanshutdown";
const RECORDS_PER_BATCH: i64 = 10;

const OVERRIDES: &[(&str, &str)] = &[
    ("log.index.interval.bytes", "1024"),
    ("log.flush.offset.checkpoint.interval.ms", "100"),
];

/// Produces `batches` batches of 10 records, each acknowledged (acks=all) at the next offsets;
/// returns what was sent.
fn produce_batches(broker: &BrokerProcess, first_offset: i64, batches: usize) -> Vec<Bytes> {
    let mut client = RawClient::connect(broker.addr);
    (0..batches)
        .map(|i| {
            let batch = record_batch(RECORDS_PER_BATCH as usize, 200 + i % 37);
            let (error, base) = produce(&mut client, TOPIC, 0, batch.clone());
            assert_eq!(error, 0, "batch {i}");
            assert_eq!(
                base,
                first_offset + i as i64 * RECORDS_PER_BATCH,
                "batch {i}"
            );
            batch
        })
        .collect()
}

/// The batches the partition serves, each as bytes, with the log end offset.
fn served_batches(broker: &BrokerProcess) -> (i64, Vec<Bytes>) {
    let mut client = RawClient::connect(broker.addr);
    let (error, high_watermark, records) = fetch_all(&mut client, TOPIC);
    assert_eq!(error, 0);
    let mut batches = Vec::new();
    let mut at = 0;
    while at + 12 <= records.len() {
        let length = i32::from_be_bytes(records[at + 8..at + 12].try_into().expect("4 bytes"));
        let end = at + 12 + usize::try_from(length).expect("batch length");
        batches.push(records.slice(at..end));
        at = end;
    }
    assert_eq!(at, records.len(), "whole batches");
    (high_watermark, batches)
}

/// Every served batch is the one acknowledged at its place: the same bytes except the base
/// offset and partition leader epoch the broker patches (the CRC covers neither).
fn assert_served_as_acknowledged(broker: &BrokerProcess, acknowledged: &[Bytes]) {
    let (high_watermark, served) = served_batches(broker);
    assert_eq!(
        high_watermark,
        acknowledged.len() as i64 * RECORDS_PER_BATCH
    );
    assert_eq!(served.len(), acknowledged.len());
    for (i, (served, sent)) in served.iter().zip(acknowledged).enumerate() {
        let base = i64::from_be_bytes(served[..8].try_into().expect("8 bytes"));
        assert_eq!(base, i as i64 * RECORDS_PER_BATCH, "batch {i}");
        assert_eq!(served[8..12], sent[8..12], "batch {i} length");
        assert_eq!(served[16..], sent[16..], "batch {i} after the leader epoch");
    }
}

fn active_segment(broker: &BrokerProcess) -> PathBuf {
    let dir = broker.data_path().join(format!("{TOPIC}-0"));
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .expect("partition dir")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

fn index_entries(log: &Path) -> u64 {
    fs::metadata(log.with_extension("index")).map_or(0, |m| m.len() / 8)
}

/// The partition's offset in the data directory's `recovery-point-offset-checkpoint`.
fn checkpointed_recovery_point(broker: &BrokerProcess) -> Option<i64> {
    let text =
        fs::read_to_string(broker.data_path().join("recovery-point-offset-checkpoint")).ok()?;
    text.lines().skip(2).find_map(|line| {
        let mut fields = line.split(' ');
        match (fields.next(), fields.next(), fields.next()) {
            (Some(TOPIC), Some("0"), Some(offset)) => offset.parse().ok(),
            _ => None,
        }
    })
}

fn started_broker() -> BrokerProcess {
    let broker = BrokerProcess::start(OVERRIDES);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(create_topic(&mut client, TOPIC, 1, &[]), 0);
    broker
}

#[test]
fn a_clean_shutdown_writes_the_marker_and_the_next_start_takes_it() {
    let mut broker = started_broker();
    let marker = broker.data_path().join(MARKER);
    let acknowledged = produce_batches(&broker, 0, 40);
    assert!(!marker.exists(), "no marker while the broker runs");

    assert!(broker.stop(), "exit status 0:\n{}", broker.log());
    assert_eq!(fs::read_to_string(&marker).expect("marker"), "version 0\n");
    assert!(
        index_entries(&active_segment(&broker)) > 0,
        "the close wrote the index"
    );

    broker.restart(OVERRIDES);
    assert!(!marker.exists(), "the start took the marker");
    assert_served_as_acknowledged(&broker, &acknowledged);
    let more = produce_batches(&broker, 400, 5);
    assert_served_as_acknowledged(&broker, &[acknowledged, more].concat());

    broker.kill9();
    assert!(!marker.exists(), "a killed broker leaves no marker");
}

#[test]
fn a_start_after_kill_9_recovers_every_acknowledged_record() {
    let mut broker = started_broker();
    let marker = broker.data_path().join(MARKER);
    let mut acknowledged = produce_batches(&broker, 0, 60);
    // Once a checkpoint covers these, the active segment's index on disk reaches them too:
    // the recovery below resumes from there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while checkpointed_recovery_point(&broker) != Some(600) {
        assert!(Instant::now() < deadline, "no checkpoint at 600");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        index_entries(&active_segment(&broker)) > 0,
        "the checkpoint wrote the index"
    );
    acknowledged.extend(produce_batches(&broker, 600, 25));

    broker.kill9();
    assert!(!marker.exists());
    broker.restart(OVERRIDES);
    assert_served_as_acknowledged(&broker, &acknowledged);
    acknowledged.extend(produce_batches(&broker, 850, 3));
    assert_served_as_acknowledged(&broker, &acknowledged);
}

#[test]
fn a_clean_start_still_drops_a_corrupt_last_batch_and_reuses_its_offsets() {
    let mut broker = started_broker();
    let acknowledged = produce_batches(&broker, 0, 30);
    assert!(broker.stop(), "exit status 0:\n{}", broker.log());
    assert!(broker.data_path().join(MARKER).exists());

    // The last bytes of the segment are the last record of the last batch: flipping them
    // breaks that batch's CRC and nothing else.
    let segment = active_segment(&broker);
    assert!(
        index_entries(&segment) > 2,
        "the last batch lies after an index entry"
    );
    let mut bytes = fs::read(&segment).expect("read segment");
    let len = bytes.len();
    for byte in &mut bytes[len - 6..len - 1] {
        *byte ^= 0xff;
    }
    fs::write(&segment, bytes).expect("write segment");

    broker.restart(OVERRIDES);
    let intact = &acknowledged[..acknowledged.len() - 1];
    assert_served_as_acknowledged(&broker, intact);
    let again = produce_batches(&broker, intact.len() as i64 * RECORDS_PER_BATCH, 1);
    assert_served_as_acknowledged(&broker, &[intact, &again[..]].concat());
    assert!(
        broker
            .log()
            .contains("truncated log at the first invalid batch"),
        "the cut is reported:\n{}",
        broker.log()
    );
}
