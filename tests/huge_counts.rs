//! Requests whose array counts claim billions of elements, sent to a real `runnel server`
//! process: each is refused before anything is allocated, with one WARN line naming the count,
//! the connection is closed, and the broker goes on serving and keeps what it acknowledged.
//!
//! Kafka behaviour pinned: its generated readers refuse an array count larger than the bytes
//! remaining ("Tried to allocate a collection of size N, but there are only M bytes
//! remaining.", `MessageDataGenerator`), and a request that does not parse closes the
//! connection. Before the patched codec (`vendor/kafka-protocol/RUNNEL-PATCHES.md`) the first
//! frame aborted the broker ("memory allocation of 154618822584 bytes failed"); here that shows
//! as the broker process gone and the test failing.

mod broker_process;
mod common;

use broker_process::BrokerProcess;
use bytes::{BufMut, Bytes, BytesMut};
use common::{create_topic, fetch_all, produce, record_batch, RawClient};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

/// An i32 count of `i32::MAX`.
const HUGE_COUNT: i32 = 0x7fff_ffff;
/// A compact count (an unsigned varint holding count + 1) of `u32::MAX`: 4,294,967,294 elements.
const HUGE_COMPACT_COUNT: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];
const HUGE_COMPACT_ELEMENTS: u64 = u32::MAX as u64 - 1;

/// A request body written field by field, in Kafka's encodings.
#[derive(Default)]
struct Body(BytesMut);

impl Body {
    fn i8(mut self, value: i8) -> Self {
        self.0.put_i8(value);
        self
    }
    fn i16(mut self, value: i16) -> Self {
        self.0.put_i16(value);
        self
    }
    fn i32(mut self, value: i32) -> Self {
        self.0.put_i32(value);
        self
    }
    fn i64(mut self, value: i64) -> Self {
        self.0.put_i64(value);
        self
    }
    /// A non-compact string: i16 length and bytes.
    fn string(mut self, value: &str) -> Self {
        self.0.put_i16(value.len() as i16);
        self.0.put_slice(value.as_bytes());
        self
    }
    /// A compact string: unsigned varint length + 1 (one byte here) and bytes.
    fn compact_string(mut self, value: &str) -> Self {
        self.0.put_u8(value.len() as u8 + 1);
        self.0.put_slice(value.as_bytes());
        self
    }
    /// A compact null (string or array), or a compact count of `count` when below 127.
    fn compact_count(mut self, count: u8) -> Self {
        self.0.put_u8(count + 1);
        self
    }
    fn compact_null(mut self) -> Self {
        self.0.put_u8(0);
        self
    }
    fn huge_count(self) -> Self {
        self.i32(HUGE_COUNT)
    }
    fn huge_compact_count(mut self) -> Self {
        self.0.put_slice(&HUGE_COMPACT_COUNT);
        self
    }
    /// Bytes after the lie, so that "bytes remaining" is not zero.
    fn padding(mut self, length: usize) -> Self {
        self.0.put_bytes(0, length);
        self
    }
}

/// A whole request frame (size prefix included) with the header version `api` uses.
fn frame(api: ApiKey, version: i16, client_id: &str, body: &[u8]) -> Vec<u8> {
    let mut frame = BytesMut::new();
    frame.put_i16(api as i16);
    frame.put_i16(version);
    frame.put_i32(1);
    frame.put_i16(client_id.len() as i16);
    frame.put_slice(client_id.as_bytes());
    if api.request_header_version(version) >= 2 {
        frame.put_u8(0); // no tagged fields
    }
    frame.put_slice(body);
    let mut sized = (frame.len() as i32).to_be_bytes().to_vec();
    sized.extend_from_slice(&frame);
    sized
}

struct Case {
    what: &'static str,
    api: ApiKey,
    version: i16,
    body: Body,
    /// The count the refusal must name.
    elements: u64,
}

fn cases() -> Vec<Case> {
    let huge = HUGE_COUNT as u64;
    let compact = HUGE_COMPACT_ELEMENTS;
    let case = |what, api, version, body, elements| Case {
        what,
        api,
        version,
        body,
        elements,
    };
    vec![
        case(
            "Metadata v12 topics",
            ApiKey::Metadata,
            12,
            Body::default().huge_compact_count(),
            compact,
        ),
        case(
            "Produce v3 topic partitions",
            ApiKey::Produce,
            3,
            Body::default()
                .i16(-1)
                .i16(-1)
                .i32(1000)
                .i32(1)
                .string("t")
                .huge_count()
                .padding(32),
            huge,
        ),
        case(
            "Produce v9 topic partitions",
            ApiKey::Produce,
            9,
            Body::default()
                .compact_null()
                .i16(-1)
                .i32(1000)
                .compact_count(1)
                .compact_string("t")
                .huge_compact_count(),
            compact,
        ),
        case(
            "Fetch v4 topics",
            ApiKey::Fetch,
            4,
            Body::default()
                .i32(-1)
                .i32(500)
                .i32(1)
                .i32(1 << 20)
                .i8(0)
                .huge_count(),
            huge,
        ),
        case(
            "Fetch v12 topic partitions",
            ApiKey::Fetch,
            12,
            Body::default()
                .i32(-1)
                .i32(500)
                .i32(1)
                .i32(1 << 20)
                .i8(0)
                .i32(0)
                .i32(-1)
                .compact_count(1)
                .compact_string("t")
                .huge_compact_count()
                .padding(16),
            compact,
        ),
        case(
            "CreateTopics v2 assignments",
            ApiKey::CreateTopics,
            2,
            Body::default()
                .i32(1)
                .string("t")
                .i32(1)
                .i16(1)
                .huge_count(),
            huge,
        ),
        case(
            "CreateTopics v5 assignments",
            ApiKey::CreateTopics,
            5,
            Body::default()
                .compact_count(1)
                .compact_string("t")
                .i32(1)
                .i16(1)
                .huge_compact_count(),
            compact,
        ),
        case(
            "OffsetCommit v2 topic partitions",
            ApiKey::OffsetCommit,
            2,
            Body::default()
                .string("g")
                .i32(1)
                .string("m")
                .i64(-1)
                .i32(1)
                .string("t")
                .huge_count(),
            huge,
        ),
        case(
            "OffsetCommit v8 topics",
            ApiKey::OffsetCommit,
            8,
            Body::default()
                .compact_string("g")
                .i32(1)
                .compact_string("m")
                .compact_null()
                .huge_compact_count(),
            compact,
        ),
        case(
            "JoinGroup v0 protocols",
            ApiKey::JoinGroup,
            0,
            Body::default()
                .string("g")
                .i32(10_000)
                .string("")
                .string("consumer")
                .huge_count(),
            huge,
        ),
        case(
            "JoinGroup v6 protocols",
            ApiKey::JoinGroup,
            6,
            Body::default()
                .compact_string("g")
                .i32(10_000)
                .i32(10_000)
                .compact_string("")
                .compact_null()
                .compact_string("consumer")
                .huge_compact_count()
                .padding(8),
            compact,
        ),
        case(
            "DescribeConfigs v1 configuration keys",
            ApiKey::DescribeConfigs,
            1,
            Body::default().i32(1).i8(2).string("t").huge_count(),
            huge,
        ),
        case(
            "DescribeConfigs v4 resources",
            ApiKey::DescribeConfigs,
            4,
            Body::default().huge_compact_count(),
            compact,
        ),
    ]
}

/// What the broker acknowledged before the lies: a topic and the records it holds.
struct Acknowledged {
    topic: &'static str,
    records: Bytes,
}

fn produce_some(broker: &BrokerProcess) -> Acknowledged {
    let topic = "kept";
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(create_topic(&mut client, topic, 1, &[]), 0);
    let (error, base_offset) = produce(&mut client, topic, 0, record_batch(5, 10));
    assert_eq!((error, base_offset), (0, 0));
    let (error, high_watermark, records) = fetch_all(&mut client, topic);
    assert_eq!((error, high_watermark), (0, 5));
    Acknowledged { topic, records }
}

/// The broker is alive, answers a new connection, and still holds the acknowledged records.
fn assert_serving_and_intact(broker: &mut BrokerProcess, acknowledged: &Acknowledged) {
    assert!(broker.is_alive(), "the broker died:\n{}", broker.log());
    let mut client = RawClient::connect(broker.addr);
    let response: ApiVersionsResponse =
        client.request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    let (error, high_watermark, records) = fetch_all(&mut client, acknowledged.topic);
    assert_eq!((error, high_watermark), (0, 5));
    assert_eq!(
        records, acknowledged.records,
        "acknowledged records changed"
    );
}

fn closing_lines(broker: &BrokerProcess) -> Vec<String> {
    broker
        .log()
        .lines()
        .filter(|line| line.contains("closing connection"))
        .map(str::to_string)
        .collect()
}

/// Sends `frame`, expects the connection closed with exactly one new log line naming a
/// collection of `elements`, and the broker serving with its data intact.
fn refused_with_one_line(
    broker: &mut BrokerProcess,
    acknowledged: &Acknowledged,
    what: &str,
    frame: &[u8],
    elements: u64,
) {
    let before = closing_lines(broker).len();
    let mut client = RawClient::connect(broker.addr);
    client.send_raw(frame);
    assert!(
        client.is_closed_by_broker(),
        "{what}: the connection stays open"
    );
    assert!(
        broker.is_alive(),
        "{what} killed the broker:\n{}",
        broker.log()
    );
    let lines = closing_lines(broker);
    assert_eq!(lines.len(), before + 1, "{what}: one log line: {lines:#?}");
    let line = &lines[before];
    assert!(
        line.contains(&format!(
            "Tried to allocate a collection of size {elements},"
        )),
        "{what}: the refusal names the count: {line}"
    );
    assert!(line.contains("WARN"), "{what}: logged at WARN: {line}");
    assert_serving_and_intact(broker, acknowledged);
}

#[test]
fn the_21_byte_metadata_frame_is_refused_and_the_broker_lives() {
    let mut broker = BrokerProcess::start(&[]);
    let acknowledged = produce_some(&broker);
    // Size 17; Metadata v1, correlation id 1, client id "abc"; topics count 0x7fffffff.
    let frame = frame(ApiKey::Metadata, 1, "abc", &Body::default().huge_count().0);
    assert_eq!(frame.len(), 21);
    refused_with_one_line(
        &mut broker,
        &acknowledged,
        "Metadata v1 topics",
        &frame,
        HUGE_COUNT as u64,
    );
    assert_eq!(broker.fatal_log_lines(), Vec::<String>::new());
}

#[test]
fn huge_counts_in_every_kind_of_array_are_refused_and_the_broker_lives() {
    let mut broker = BrokerProcess::start(&[]);
    let acknowledged = produce_some(&broker);
    for case in cases() {
        let frame = frame(case.api, case.version, "huge-counts", &case.body.0);
        refused_with_one_line(&mut broker, &acknowledged, case.what, &frame, case.elements);
    }
    assert_eq!(broker.fatal_log_lines(), Vec::<String>::new());
}
