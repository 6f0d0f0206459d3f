//! Batches whose CRC holds but whose records do not decode are refused before they are
//! acknowledged, as Kafka's `LogValidator` refuses them, and nothing of them is written: the
//! log end offset stays, a consumer at that offset gets the next good batch, the broker serves
//! on. Each batch is built byte by byte and sent in a raw Produce v9 over a socket.
//!
//! Kafka behaviours pinned (`DefaultRecordBatch`'s record iterators, `DefaultRecord.readFrom`,
//! `LogValidator`): records that do not decode, counts that lie either way, lengths and header
//! counts that lie, bytes after the last record: `INVALID_RECORD`. Runnel departs from Kafka
//! where Kafka stores what its consumers then fail on, or answers a code no client can act on
//! (see `runnel_protocol::record_validation`): offset deltas other than 0..n-1 are
//! `INVALID_RECORD`, a payload that does not decompress is `CORRUPT_MESSAGE` (Kafka:
//! `UNKNOWN_SERVER_ERROR`), and a payload inflating past `socket.request.max.bytes` is
//! `MESSAGE_TOO_LARGE` (Kafka has no bound).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::{encode_batch, record, record_batch, wait_until, RawClient, TestBroker};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceRequest, ProduceResponse};
use kafka_protocol::records::Compression;
use runnel_protocol::ErrorCode;

const CODECS: [(i16, Compression); 4] = [
    (1, Compression::Gzip),
    (2, Compression::Snappy),
    (3, Compression::Lz4),
    (4, Compression::Zstd),
];

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// One record's body (after its length): attributes, timestamp delta 0, `offset_delta`, the
/// key, a 5-byte value, and `headers` (each a key and a value).
fn record_body(offset_delta: i64, key: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut body = vec![0u8, 0];
    put_varint(&mut body, offset_delta);
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(key);
    put_varint(&mut body, 5);
    body.extend_from_slice(b"value");
    put_varint(&mut body, headers.len() as i64);
    for (key, value) in headers {
        for field in [key, value] {
            put_varint(&mut body, field.len() as i64);
            body.extend_from_slice(field);
        }
    }
    body
}

fn with_length(body: &[u8]) -> Vec<u8> {
    let mut record = Vec::new();
    put_varint(&mut record, body.len() as i64);
    record.extend_from_slice(body);
    record
}

fn records(offset_deltas: &[i64]) -> Vec<u8> {
    offset_deltas
        .iter()
        .flat_map(|&delta| with_length(&record_body(delta, b"key", &[])))
        .collect()
}

/// A batch with a correct CRC around `payload`, declaring `count` records and codec `codec`.
fn batch_of(payload: &[u8], count: i32, codec: i16) -> Bytes {
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes());
    batch.extend_from_slice(&((49 + payload.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes());
    batch.push(2);
    batch.extend_from_slice(&[0; 4]);
    batch.extend_from_slice(&codec.to_be_bytes());
    batch.extend_from_slice(&(count - 1).to_be_bytes());
    batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes());
    batch.extend_from_slice(&(-1i16).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes());
    batch.extend_from_slice(&count.to_be_bytes());
    batch.extend_from_slice(payload);
    let crc = crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(batch)
}

/// CRC-32C (Castagnoli), bitwise: the test builds its own batches without the broker's code.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82f6_3b78 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// A real encoder's batch of `count` records compressed with `compression`.
fn encoded(count: usize, compression: Compression) -> Bytes {
    let records: Vec<_> = (0..count)
        .map(|i| {
            record(
                i,
                1_700_000_000_000,
                Some(Bytes::from(format!("key-{i}"))),
                Some(Bytes::from(format!("value {i} ").repeat(30))),
            )
        })
        .collect();
    encode_batch(&records, compression)
}

/// Produce v9, acks=all: (error code, error message, base offset).
fn produce(client: &mut RawClient, topic: &str, records: Bytes) -> (i16, Option<String>, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(common::topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response: ProduceResponse = client.request(ApiKey::Produce, 9, &request);
    let result = &response.responses[0].partition_responses[0];
    let message = result.error_message.as_ref().map(|m| m.to_string());
    (result.error_code, message, result.base_offset)
}

/// Fetch v12 of partition 0 from `offset`: (error code, high watermark, record bytes).
fn fetch_from(client: &mut RawClient, topic: &str, offset: i64) -> (i16, i64, Bytes) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let request = kafka_protocol::messages::FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(10 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(common::topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(10 << 20)])]);
    let response: FetchResponse = client.request(ApiKey::Fetch, 12, &request);
    let partition = &response.responses[0].partitions[0];
    (
        partition.error_code,
        partition.high_watermark,
        partition.records.clone().unwrap_or_default(),
    )
}

/// On a fresh topic: a good batch (offsets 0-2), then `bad`, which must get `expected` with an
/// error message; then the log is unchanged, the next good batch takes offset 3, and a fetch
/// at offset 3 returns exactly that batch.
fn refused_without_damage(
    client: &mut RawClient,
    topic: &str,
    configs: &[(&str, &str)],
    bad: Bytes,
    expected: ErrorCode,
) {
    assert_eq!(common::create_topic(client, topic, 1, configs), 0);
    assert_eq!(produce(client, topic, record_batch(3, 20)).0, 0);
    let (error, message, base_offset) = produce(client, topic, bad);
    assert_eq!(
        (ErrorCode::from_code(error), base_offset),
        (Some(expected), -1),
        "{topic}: {message:?}"
    );
    assert!(
        message.is_some_and(|m| !m.is_empty()),
        "{topic}: an error message"
    );
    let (error, high_watermark, _) = fetch_from(client, topic, 0);
    assert_eq!((error, high_watermark), (0, 3), "{topic}: nothing written");
    let next = record_batch(2, 7);
    assert_eq!(produce(client, topic, next.clone()), (0, None, 3));
    let (error, high_watermark, fetched) = fetch_from(client, topic, 3);
    assert_eq!((error, high_watermark), (0, 5));
    assert_eq!(
        &fetched[..8],
        &3i64.to_be_bytes(),
        "{topic}: the next good batch"
    );
    assert_eq!(&fetched[16..], &next[16..], "{topic}: the next good batch");
}

#[test]
fn uncompressed_batches_whose_records_do_not_decode_are_invalid_record() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    let garbage: Vec<u8> = (0..120u32).map(|i| (i * 37 % 251) as u8).collect();
    let body = record_body(0, b"k", &[]);
    let mut length_lies = Vec::new();
    put_varint(&mut length_lies, body.len() as i64 + 40);
    length_lies.extend_from_slice(&body);
    length_lies.extend_from_slice(&records(&[1]));
    let mut headers_lie = record_body(0, b"k", &[(b"h", b"v")]);
    let count_at = headers_lie.len() - 5;
    assert_eq!(headers_lie[count_at], 2);
    headers_lie[count_at] = 200; // 100 headers in a record of a few bytes
    let mut trailing = records(&[0, 1]);
    trailing.extend_from_slice(&[0, 0, 0]);
    let cases: [(&str, Bytes); 8] = [
        ("garbage", batch_of(&garbage, 3, 0)),
        ("count-larger", batch_of(&records(&[0, 1, 2]), 4, 0)),
        ("count-smaller", batch_of(&records(&[0, 1, 2]), 2, 0)),
        ("length-lies", batch_of(&length_lies, 2, 0)),
        ("offset-deltas-repeat", batch_of(&records(&[0, 0, 1]), 3, 0)),
        (
            "offset-deltas-shifted",
            batch_of(&records(&[1, 2, 3]), 3, 0),
        ),
        (
            "header-count-lies",
            batch_of(&with_length(&headers_lie), 1, 0),
        ),
        ("trailing-bytes", batch_of(&trailing, 2, 0)),
    ];
    for (topic, bad) in cases {
        refused_without_damage(&mut client, topic, &[], bad, ErrorCode::InvalidRecord);
    }
}

#[test]
fn compressed_payloads_that_do_not_decompress_are_corrupt_message() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    let garbage: Vec<u8> = (0..400u32).map(|i| (i * 89 % 253) as u8 ^ 0x5a).collect();
    for (codec, compression) in CODECS {
        let good = encoded(10, compression);
        let payload = &good[61..];
        let truncated = &payload[..payload.len() - 4];
        let cases = [("garbage", &garbage[..]), ("truncated", truncated)];
        for (what, bad) in cases {
            let topic = format!("{compression:?}-{what}").to_lowercase();
            refused_without_damage(
                &mut client,
                &topic,
                &[],
                batch_of(bad, 10, codec),
                ErrorCode::CorruptMessage,
            );
        }
        // The same garbage where the topic's compression.type recompresses it.
        let topic = format!("{compression:?}-to-uncompressed").to_lowercase();
        let configs = [("compression.type", "uncompressed")];
        let bad = batch_of(&garbage, 10, codec);
        refused_without_damage(
            &mut client,
            &topic,
            &configs,
            bad,
            ErrorCode::CorruptMessage,
        );
    }
}

#[test]
fn compressed_batches_whose_records_lie_are_invalid_record() {
    let broker = TestBroker::start();
    let mut client = RawClient::connect(broker.addr);
    for (codec, compression) in CODECS {
        // A real encoder's payload under a header declaring one record more than it holds.
        let good = encoded(10, compression);
        let topic = format!("{compression:?}-count-larger").to_lowercase();
        let bad = batch_of(&good[61..], 11, codec);
        refused_without_damage(&mut client, &topic, &[], bad, ErrorCode::InvalidRecord);
        let topic = format!("{compression:?}-count-smaller").to_lowercase();
        let bad = batch_of(&good[61..], 9, codec);
        refused_without_damage(&mut client, &topic, &[], bad, ErrorCode::InvalidRecord);
    }
    // Valid batches of every codec still pass, recompressed or not.
    for (_, compression) in CODECS {
        let topic = format!("{compression:?}-valid").to_lowercase();
        assert_eq!(common::create_topic(&mut client, &topic, 1, &[]), 0);
        assert_eq!(
            produce(&mut client, &topic, encoded(10, compression)),
            (0, None, 0)
        );
        let topic = format!("{compression:?}-valid-to-zstd").to_lowercase();
        let configs = [("compression.type", "zstd")];
        assert_eq!(common::create_topic(&mut client, &topic, 1, &configs), 0);
        assert_eq!(
            produce(&mut client, &topic, encoded(10, compression)),
            (0, None, 0)
        );
    }
}

/// A zstd frame built block by block: two records whose values are 2 GiB - 64 bytes of
/// zeros each, stored as raw blocks for the record fields and RLE blocks for the zeros. About
/// 128 KiB that inflate to 4 GiB, declaring a window of 2^`window_log` bytes (17 to 27).
fn zstd_bomb(window_log: u8) -> (Vec<u8>, i32) {
    const BLOCK_BYTES: usize = 128 << 10;
    let value_bytes: i64 = (1 << 31) - 64;
    let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
    frame.push(0x00); // no content size, not single-segment, no checksum, no dictionary
    frame.push((window_log - 10) << 3); // window descriptor: exponent, mantissa 0
    let block = |frame: &mut Vec<u8>, last: bool, kind: u32, size: usize| {
        let header = u32::from(last) | (kind << 1) | ((size as u32) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
    };
    let mut pending = Vec::new(); // record fields waiting for a raw block
    for index in 0..2 {
        let mut prefix = vec![0u8, 0]; // attributes, timestamp delta
        put_varint(&mut prefix, index);
        put_varint(&mut prefix, -1); // null key
        put_varint(&mut prefix, value_bytes);
        let length = prefix.len() as i64 + value_bytes + 1;
        put_varint(&mut pending, length);
        pending.extend_from_slice(&prefix);
        block(&mut frame, false, 0, pending.len());
        frame.append(&mut pending);
        let mut zeros = value_bytes as usize;
        while zeros > 0 {
            let size = zeros.min(BLOCK_BYTES);
            block(&mut frame, false, 1, size);
            frame.push(0);
            zeros -= size;
        }
        pending.push(0); // headers count
    }
    block(&mut frame, true, 0, pending.len());
    frame.append(&mut pending);
    (frame, 2)
}

/// A broker in its own process, killed when dropped.
struct BrokerProcess {
    child: Child,
    addr: SocketAddr,
    _data_dir: tempfile::TempDir,
}

impl BrokerProcess {
    fn start() -> BrokerProcess {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_runnel"))
            .arg("server")
            .arg("--override")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"))
            .arg("--override")
            .arg(format!("log.dirs={}", data_dir.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the broker");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let broker = BrokerProcess {
            child,
            addr,
            _data_dir: data_dir,
        };
        wait_until("the broker to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        broker
    }

    /// The process's peak resident set (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the broker's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_zstd_bomb_is_message_too_large_without_inflating_in_memory() {
    let broker = BrokerProcess::start();
    let mut client = RawClient::connect(broker.addr);
    client.stream_timeout(Duration::from_secs(60));
    assert_eq!(common::create_topic(&mut client, "bomb", 1, &[]), 0);
    assert_eq!(produce(&mut client, "bomb", record_batch(3, 20)).0, 0);
    let configs = [("compression.type", "uncompressed")];
    assert_eq!(
        common::create_topic(&mut client, "bomb-recompressed", 1, &configs),
        0
    );
    let before_kib = broker.peak_rss_kib();
    // Windows of 128 KiB and of 8 MiB (the largest accepted): inflated until the bound named
    // is hit, the inflated size (socket.request.max.bytes) or, where the topic recompresses
    // (to uncompressed: the worst case), the recompressed batch's (max.message.bytes).
    for window_log in [17, 23] {
        let (bomb, count) = zstd_bomb(window_log);
        assert!(bomb.len() < 160 << 10, "the bomb is {} bytes", bomb.len());
        for (topic, bound) in [
            ("bomb", "socket.request.max.bytes"),
            ("bomb-recompressed", "max.message.bytes"),
        ] {
            let (error, message, _) = produce(&mut client, topic, batch_of(&bomb, count, 4));
            assert_eq!(
                ErrorCode::from_code(error),
                Some(ErrorCode::MessageTooLarge),
                "window 2^{window_log}: {message:?}"
            );
            assert!(
                message.as_deref().is_some_and(|m| m.contains(bound)),
                "{message:?}"
            );
        }
    }
    // A window of 128 MiB (zstd's default limit, which Kafka accepts) would hold up to the
    // bound in memory: refused.
    let (bomb, count) = zstd_bomb(27);
    let (error, message, _) = produce(&mut client, "bomb", batch_of(&bomb, count, 4));
    assert_eq!(
        ErrorCode::from_code(error),
        Some(ErrorCode::CorruptMessage),
        "{message:?}"
    );
    let after_kib = broker.peak_rss_kib();
    eprintln!("broker peak RSS: {before_kib} KiB before the bombs, {after_kib} KiB after");
    // Inflating to the 100 MiB bound in memory would add 100 MiB or more.
    assert!(
        after_kib < before_kib + (48 << 10),
        "peak RSS went from {before_kib} KiB to {after_kib} KiB"
    );
    // Nothing written, and the broker serves on.
    let (error, high_watermark, _) = fetch_from(&mut client, "bomb", 0);
    assert_eq!((error, high_watermark), (0, 3));
    assert_eq!(fetch_from(&mut client, "bomb-recompressed", 0).1, 0);
    assert_eq!(
        produce(&mut client, "bomb", record_batch(1, 5)),
        (0, None, 3)
    );
    let mut other = RawClient::connect(broker.addr);
    assert_eq!(fetch_from(&mut other, "bomb", 3).1, 4);
}
