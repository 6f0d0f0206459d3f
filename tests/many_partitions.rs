//! The partition count never makes the broker unable to start (issue 11, item 5): the real
//! `runnel server` process, run with the soft and hard `RLIMIT_NOFILE` at 1024 (most machines'
//! default `ulimit -n`), creates 50,000 partitions (5 topics × 10,000, one CreateTopics each:
//! Kafka's most per request), serves produce and fetch on partitions across the whole range,
//! stops, starts again on the same data and serves again.
//!
//! `RUNNEL_BIN=target/release/runnel` runs another build of the broker (to time a release
//! start: the phases' times are printed with `--nocapture`).
//!
//! Before the open-segment-file cache each partition held its active segment's descriptor, so
//! creation failed with EMFILE near the 1,000th partition (and a start with more partitions
//! than the limit failed outright).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{create_topic, produce, record_batch, topic_name, wait_until, RawClient};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};

const TOPICS: usize = 5;
const PARTITIONS_PER_TOPIC: i32 = 10_000;
/// The descriptor limit the broker runs under.
const NOFILE: u32 = 1024;
/// Partitions written and read per topic: together more than the segment files the broker
/// may hold open under [`NOFILE`] (half of it), so the cache evicts and reopens.
const PARTITIONS_TOUCHED_PER_TOPIC: i32 = 120;

/// The broker process; killed if the test fails before stopping it.
struct Broker {
    child: Child,
    address: SocketAddr,
    /// The "runnel listening" log line's `startup_ms`, once seen.
    started: mpsc::Receiver<String>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Starts `runnel server` under `ulimit -n 1024` and waits until it listens.
fn start(data_dir: &Path, port: u16) -> (Broker, Duration) {
    let begun = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {NOFILE} && exec \"$0\" \"$@\""))
        .arg(std::env::var_os("RUNNEL_BIN").unwrap_or(env!("CARGO_BIN_EXE_runnel").into()))
        .args(["server", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the broker");
    let (sender, started) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("broker: {line}");
                }
                if line.contains("runnel listening") {
                    let _ = sender.send(line);
                }
            }
        });
    }
    let address = format!("127.0.0.1:{port}").parse().expect("address");
    let mut broker = Broker {
        child,
        address,
        started,
    };
    wait_until("the broker to listen", Duration::from_secs(120), || {
        assert!(
            broker.child.try_wait().expect("wait").is_none(),
            "the broker exited during start"
        );
        std::net::TcpStream::connect(address).is_ok()
    });
    let elapsed = begun.elapsed();
    if let Ok(line) = broker.started.recv_timeout(Duration::from_secs(10)) {
        eprintln!("{line}");
    }
    (broker, elapsed)
}

/// SIGTERM, and exit status 0 within the deadline.
fn stop(mut broker: Broker) {
    let begun = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &broker.child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let mut exit = None;
    wait_until("the broker to exit", Duration::from_secs(60), || {
        exit = broker.child.try_wait().expect("wait");
        exit.is_some()
    });
    assert_eq!(exit.and_then(|status| status.code()), Some(0));
    eprintln!("stopped in {:?}", begun.elapsed());
}

fn topic(index: usize) -> String {
    format!("many-{index}")
}

/// Partitions of each topic the test writes and reads: spread over the whole range, the
/// first and the last included.
fn touched() -> Vec<i32> {
    let step = (PARTITIONS_PER_TOPIC - 1) / (PARTITIONS_TOUCHED_PER_TOPIC - 1);
    (0..PARTITIONS_TOUCHED_PER_TOPIC)
        .map(|i| (i * step).min(PARTITIONS_PER_TOPIC - 1))
        .chain([PARTITIONS_PER_TOPIC - 1])
        .collect()
}

/// Fetches one partition from offset 0; returns (error code, high watermark, record bytes).
fn fetch(client: &mut RawClient, topic: &str, partition: i32) -> (i16, i64, usize) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client.request(ApiKey::Fetch, 12, &request);
    let data = &response.responses[0].partitions[0];
    (
        data.error_code,
        data.high_watermark,
        data.records.as_ref().map_or(0, |records| records.len()),
    )
}

/// Every touched partition holds `batches` batches of 3 records, readable from offset 0.
fn check_touched(client: &mut RawClient, batches: i64) {
    let begun = Instant::now();
    for t in 0..TOPICS {
        for partition in touched() {
            let (code, high_watermark, bytes) = fetch(client, &topic(t), partition);
            assert_eq!(code, 0, "fetch {}-{partition}", topic(t));
            assert_eq!(high_watermark, 3 * batches, "{}-{partition}", topic(t));
            assert!(bytes > 0, "{}-{partition} returned no records", topic(t));
        }
    }
    eprintln!(
        "fetched {} partitions in {:?}",
        TOPICS * touched().len(),
        begun.elapsed()
    );
}

fn produce_touched(client: &mut RawClient, expected_base: i64) {
    let begun = Instant::now();
    for t in 0..TOPICS {
        for partition in touched() {
            let (code, base) = produce(client, &topic(t), partition, record_batch(3, 16));
            assert_eq!(code, 0, "produce {}-{partition}", topic(t));
            assert_eq!(base, expected_base, "{}-{partition}", topic(t));
        }
    }
    eprintln!(
        "produced to {} partitions in {:?}",
        TOPICS * touched().len(),
        begun.elapsed()
    );
}

#[test]
fn fifty_thousand_partitions_start_serve_and_restart_under_ulimit_1024() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let port = free_port();

    let (broker, first_start) = start(&data_dir, port);
    eprintln!("start on an empty data dir: {first_start:?}");
    let mut client = RawClient::connect(broker.address);
    client.stream_timeout(Duration::from_secs(120));
    for t in 0..TOPICS {
        let begun = Instant::now();
        let code = create_topic(&mut client, &topic(t), PARTITIONS_PER_TOPIC, &[]);
        assert_eq!(
            code,
            0,
            "CreateTopics {} × {PARTITIONS_PER_TOPIC}",
            topic(t)
        );
        eprintln!("created {} in {:?}", topic(t), begun.elapsed());
    }
    produce_touched(&mut client, 0);
    check_touched(&mut client, 1);
    drop(client);
    stop(broker);

    // Restart on 50,000 partitions under the same limit; everything is served again.
    let (broker, restart) = start(&data_dir, port);
    eprintln!(
        "restart with {} partitions: {restart:?}",
        TOPICS as i32 * PARTITIONS_PER_TOPIC
    );
    let mut client = RawClient::connect(broker.address);
    client.stream_timeout(Duration::from_secs(60));
    check_touched(&mut client, 1);
    produce_touched(&mut client, 3);
    check_touched(&mut client, 2);
    drop(client);
    stop(broker);

    // And once more: the second restart reads what the first one's run wrote.
    let (broker, again) = start(&data_dir, port);
    eprintln!("second restart: {again:?}");
    let mut client = RawClient::connect(broker.address);
    check_touched(&mut client, 2);
    drop(client);
    stop(broker);
}
