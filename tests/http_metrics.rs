//! The HTTP port: `GET /health` while serving, and `GET /metrics` in Prometheus' text format
//! with the figures of what the broker just did (requests per API and version, latency
//! histograms, connections, and per partition offsets, size, bytes and records in and out).

mod common;

use common::{http_get as get, RawClient, TestBroker};
use runnel_protocol::ErrorCode;

/// The value of the metric line starting with `series` (name and labels).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn health_and_metrics_report_what_the_broker_did() {
    let broker = TestBroker::start_with(&[("http.listen", "127.0.0.1:0")]);
    let http = broker.http_addr().expect("the HTTP port is on");
    let (status, _, body) = get(http, "/health");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body.trim(), "ok");

    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, "m", 2, &[]), 0);
    let batch = common::record_batch(5, 10);
    assert_eq!(common::produce(&mut client, "m", 0, batch.clone()), (0, 0));
    let (error, _, fetched) = common::fetch_all(&mut client, "m");
    assert_eq!((error, fetched.len()), (0, batch.len()));
    let mut bad = RawClient::connect(broker.addr);
    bad.send_raw(&0i32.to_be_bytes());
    assert!(bad.is_closed_by_broker());

    let (status, headers, metrics) = get(http, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    let expect = |series: &str, wanted: f64| {
        assert_eq!(
            value(&metrics, series),
            Some(wanted),
            "{series} in:\n{metrics}"
        );
    };
    expect("runnel_requests_total{api=\"Produce\",version=\"9\"}", 1.0);
    expect("runnel_requests_total{api=\"Fetch\",version=\"12\"}", 1.0);
    expect(
        "runnel_requests_total{api=\"CreateTopics\",version=\"7\"}",
        1.0,
    );
    expect(
        "runnel_request_duration_seconds_count{api=\"Produce\"}",
        1.0,
    );
    expect(
        "runnel_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"}",
        1.0,
    );
    expect(
        "runnel_partition_log_end_offset{topic=\"m\",partition=\"0\"}",
        5.0,
    );
    expect(
        "runnel_partition_high_watermark{topic=\"m\",partition=\"0\"}",
        5.0,
    );
    expect(
        "runnel_partition_log_end_offset{topic=\"m\",partition=\"1\"}",
        0.0,
    );
    // No transaction: the last stable offset is the high watermark.
    expect(
        "runnel_partition_last_stable_offset_lag{topic=\"m\",partition=\"0\"}",
        0.0,
    );
    expect(
        "runnel_partition_ongoing_transactions{topic=\"m\",partition=\"0\"}",
        0.0,
    );
    expect(
        "runnel_partition_records_in_total{topic=\"m\",partition=\"0\"}",
        5.0,
    );
    let size = batch.len() as f64;
    expect(
        "runnel_partition_bytes_in_total{topic=\"m\",partition=\"0\"}",
        size,
    );
    expect(
        "runnel_partition_bytes_out_total{topic=\"m\",partition=\"0\"}",
        size,
    );
    expect(
        "runnel_partition_size_bytes{topic=\"m\",partition=\"0\"}",
        size,
    );
    expect("runnel_connections_accepted_total", 2.0);
    expect("runnel_connections_closed_bad_input_total", 1.0);
    common::wait_until(
        "the closed connection to leave the open count",
        std::time::Duration::from_secs(10),
        || {
            let (_, _, metrics) = get(http, "/metrics");
            value(&metrics, "runnel_connections_open") == Some(1.0)
        },
    );
    assert!(metrics.contains("# TYPE runnel_request_duration_seconds histogram"));

    let (status, _, _) = get(http, "/nowhere");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
}

#[test]
fn the_console_shows_topics_partitions_and_groups() {
    let broker = TestBroker::start_with(&[
        ("http.listen", "127.0.0.1:0"),
        ("offsets.topic.num.partitions", "2"),
        ("group.initial.rebalance.delay.ms", "0"),
    ]);
    let http = broker.http_addr().expect("the HTTP port is on");
    let (status, headers, page) = get(http, "/");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(headers.contains("content-type: text/html"), "{headers}");
    assert!(page.contains("<title>Topics · Runnel</title>") && page.contains("No topics."));
    let (status, _, _) = get(http, "/groups");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        broker.data_dir.path().read_dir().expect("list").all(|e| !e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .starts_with("__consumer_offsets")),
        "viewing the console created __consumer_offsets"
    );

    let mut client = RawClient::connect(broker.addr);
    assert_eq!(
        common::create_topic(&mut client, "orders<1>", 2, &[]),
        ErrorCode::InvalidTopicException.code(),
        "no markup in topic names"
    );
    assert_eq!(
        common::create_topic(&mut client, "orders", 2, &[("retention.ms", "60000")]),
        0
    );
    assert_eq!(
        common::produce(&mut client, "orders", 1, common::record_batch(3, 10)),
        (0, 0)
    );
    // The first group request creates __consumer_offsets, which loads before it answers.
    common::wait_until(
        "a commit once the coordinator has loaded",
        std::time::Duration::from_secs(30),
        || commit_as_simple_consumer(&mut client, "billing", "orders") == 0,
    );

    let (_, _, page) = get(http, "/");
    assert!(
        page.contains(
            "<tr data-topic=\"orders\"><td><a href=\"/topics/orders\">orders</a></td>\
             <td class=\"n\">2</td><td class=\"n\">3</td>"
        ),
        "two partitions, three records, in:\n{page}"
    );
    let (_, _, page) = get(http, "/topics/orders");
    let row = |partition: &str, end: &str| {
        format!(
            "<tr data-partition=\"{partition}\"><td class=\"n\">{partition}</td>\
             <td class=\"n\">1</td><td class=\"n\">0</td><td class=\"n\">0</td>\
             <td class=\"n\">{end}</td><td class=\"n\">{end}</td><td class=\"n\">{end}</td>"
        )
    };
    assert!(page.contains(&row("0", "0")), "{page}");
    assert!(page.contains(&row("1", "3")), "{page}");
    assert!(
        page.contains(
            "<tr><td>retention.ms</td><td class=\"v\">60000</td><td>DYNAMIC_TOPIC_CONFIG</td>"
        ),
        "{page}"
    );
    let (_, _, page) = get(http, "/groups");
    assert!(
        page.contains("<td class=\"n\">0</td><td class=\"n\">1</td><td class=\"n lag\">2</td>"),
        "no members, one partition committed at 1 of 3: a lag of 2, in:\n{page}"
    );
    let (_, _, metrics) = get(http, "/metrics");
    assert_eq!(
        value(
            &metrics,
            "runnel_group_committed_offset{group=\"billing\",topic=\"orders\",partition=\"1\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        value(
            &metrics,
            "runnel_group_lag{group=\"billing\",topic=\"orders\",partition=\"1\"}"
        ),
        Some(2.0)
    );
}

/// OffsetCommit of offset 1 on partition 1 of `topic` for `group` with generation -1.
fn commit_as_simple_consumer(client: &mut RawClient, group: &str, topic: &str) -> i16 {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse};
    use kafka_protocol::protocol::StrBytes;
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(common::topic_name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(1)
                .with_committed_offset(1)])]);
    let response: OffsetCommitResponse = client.request(ApiKey::OffsetCommit, 7, &request);
    response.topics[0].partitions[0].error_code
}
