//! One definition of consumer lag (`runnel_coordinator::consumer_lag`): the same group shows
//! the same per-partition and total lag in `runnel group describe`, in `/metrics` and in the
//! console (its page and its JSON API).
//!
//! Kafka behaviour pinned (`kafka-consumer-groups --describe`, ConsumerGroupCommand's
//! `collectGroupsOffsets` / `getLag`): the rows are the partitions assigned to members plus the
//! partitions with a commit (assigned or not); the end offset is ListOffsets latest under
//! read_uncommitted, the high watermark; a partition without a commit has no lag (`-`) and
//! adds nothing to the total.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{http_get, TestBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// (topic, partition, committed, end offset, lag) with `None` for Kafka's `-`.
type Row = (String, i32, Option<i64>, Option<i64>, Option<i64>);

fn runnel(broker: &TestBroker, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(args)
        .args(["--bootstrap", &broker.bootstrap()])
        .output()
        .expect("run runnel");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "runnel {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn produce(broker: &TestBroker, counts: &[(&str, i32, usize)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");
    for (topic, partition, count) in counts {
        for i in 0..*count {
            let value = format!("{topic}-{partition}-{i}");
            producer
                .send(
                    BaseRecord::<(), _>::to(topic)
                        .partition(*partition)
                        .payload(&value),
                )
                .expect("queue a record");
        }
    }
    producer.flush(TIMEOUT).expect("flush");
}

fn consumer(broker: &TestBroker, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .create()
        .expect("consumer")
}

fn commit(consumer: &BaseConsumer, offsets: &[(&str, i32, i64)]) {
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .expect("add");
    }
    consumer.commit(&list, CommitMode::Sync).expect("commit");
}

/// The rows of `runnel group describe`.
fn cli_rows(described: &str) -> Vec<Row> {
    let number = |cell: &str| cell.parse::<i64>().ok();
    described
        .lines()
        .skip(2)
        .filter(|line| !line.trim().is_empty())
        .map(|row| {
            let cells: Vec<&str> = row.split_whitespace().collect();
            (
                cells[1].to_string(),
                cells[2].parse().expect("a partition"),
                number(cells[3]),
                number(cells[4]),
                number(cells[5]),
            )
        })
        .collect()
}

fn json_rows(group: &serde_json::Value) -> Vec<Row> {
    group["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["topic"].as_str().expect("topic").to_string(),
                p["partition"].as_i64().expect("partition") as i32,
                p["committed_offset"].as_i64(),
                p["end_offset"].as_i64(),
                p["lag"].as_i64(),
            )
        })
        .collect()
}

/// `runnel_group_lag` of `group` per (topic, partition), and its `runnel_group_total_lag`.
fn metrics_lags(metrics: &str, group: &str) -> (Vec<(String, i32, i64)>, Option<i64>) {
    let mut lags = Vec::new();
    let mut total = None;
    let prefix = format!("runnel_group_lag{{group=\"{group}\",topic=\"");
    let total_prefix = format!("runnel_group_total_lag{{group=\"{group}\"}} ");
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix(&prefix) {
            let (topic, rest) = rest
                .split_once("\",partition=\"")
                .expect("a partition label");
            let (partition, value) = rest.split_once("\"} ").expect("a value");
            lags.push((
                topic.to_string(),
                partition.parse().expect("partition"),
                value.parse().expect("lag"),
            ));
        } else if let Some(value) = line.strip_prefix(&total_prefix) {
            total = Some(value.parse().expect("total"));
        }
    }
    lags.sort();
    (lags, total)
}

#[test]
fn describe_metrics_and_console_report_the_same_lag() {
    let broker = TestBroker::start_with(&[
        ("http.listen", "127.0.0.1:0"),
        ("group.initial.rebalance.delay.ms", "0"),
        ("offsets.topic.num.partitions", "2"),
    ]);
    let http = broker.http_addr().expect("the HTTP port is on");
    for (topic, partitions) in [("alpha", "3"), ("beta", "2"), ("gamma", "1")] {
        runnel(&broker, &["topic", "create", topic, "-p", partitions]);
    }
    produce(
        &broker,
        &[
            ("alpha", 0, 10),
            ("alpha", 1, 5),
            ("beta", 0, 7),
            ("beta", 1, 3),
            ("gamma", 0, 4),
        ],
    );

    // While the group is empty, a simple consumer commits to gamma, which no member will be
    // assigned: Kafka lists such a partition, without a consumer.
    let simple = consumer(&broker, "lagging");
    commit(&simple, &[("gamma", 0, 1)]);
    drop(simple);

    // A member subscribed to alpha and beta gets their five partitions and commits two.
    let member = consumer(&broker, "lagging");
    member.subscribe(&["alpha", "beta"]).expect("subscribe");
    common::wait_until("the member's assignment", TIMEOUT, || {
        let _ = member.poll(Duration::from_millis(100));
        member.assignment().map(|a| a.count()).unwrap_or(0) == 5
    });
    commit(&member, &[("alpha", 0, 4), ("beta", 1, 3)]);

    let owned = |s: &str| s.to_string();
    let expected: Vec<Row> = vec![
        (owned("alpha"), 0, Some(4), Some(10), Some(6)),
        // Assigned, never committed: listed, lag unknown (Kafka's "-"), not counted.
        (owned("alpha"), 1, None, Some(5), None),
        (owned("alpha"), 2, None, Some(0), None),
        (owned("beta"), 0, None, Some(7), None),
        (owned("beta"), 1, Some(3), Some(3), Some(0)),
        // Committed, not assigned.
        (owned("gamma"), 0, Some(1), Some(4), Some(3)),
    ];
    let total = 9;

    let described = runnel(&broker, &["group", "describe", "lagging"]);
    assert!(described.contains("state Stable"), "{described}");
    assert_eq!(cli_rows(&described), expected, "{described}");

    let (status, _, body) = http_get(http, "/api/groups/lagging");
    assert!(status.contains("200"), "{status}: {body}");
    let group: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json_rows(&group), expected, "{body}");
    assert_eq!(group["total_lag"].as_i64(), Some(total), "{body}");
    assert_eq!(group["state"].as_str(), Some("Stable"));

    let (_, _, metrics) = http_get(http, "/metrics");
    let (lags, metrics_total) = metrics_lags(&metrics, "lagging");
    let known: Vec<(String, i32, i64)> = expected
        .iter()
        .filter_map(|(t, p, _, _, lag)| lag.map(|lag| (t.clone(), *p, lag)))
        .collect();
    assert_eq!(lags, known, "no series for a partition without a commit");
    assert_eq!(metrics_total, Some(total));

    let (_, _, page) = http_get(http, "/groups/lagging");
    assert!(
        page.contains(&format!("<strong id=\"total-lag\">{total}</strong>")),
        "{page}"
    );
    assert!(
        page.contains(
            "<tr data-topic=\"alpha\" data-partition=\"1\"><td>alpha</td><td class=\"n\">1</td>\
             <td class=\"n\">-</td><td class=\"n\">5</td><td class=\"n lag\">-</td>"
        ),
        "{page}"
    );
    let (_, _, list) = http_get(http, "/api/groups");
    let list: serde_json::Value = serde_json::from_str(&list).expect("JSON");
    assert_eq!(list[0]["total_lag"].as_i64(), Some(total));

    // An unknown group is a 404 in the console, and describing it creates nothing.
    let (status, _, _) = http_get(http, "/api/groups/nosuch");
    assert!(status.contains("404"), "{status}");
    drop(member);
}
