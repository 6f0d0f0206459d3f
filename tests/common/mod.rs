//! Shared test harness: a real broker on 127.0.0.1:0 with a temporary data directory, and a
//! raw protocol client for the requests no well-behaved client would send.

#![allow(dead_code)]

pub mod txn;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use runnel_broker::{BrokerConfig, RunningBroker};

/// A broker running in this process on its own runtime.
pub struct TestBroker {
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    running: Option<RunningBroker>,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        TestBroker::start_with(&[])
    }

    /// Starts a broker with Kafka-named configuration overrides.
    pub fn start_with(overrides: &[(&str, &str)]) -> TestBroker {
        TestBroker::start_in(tempfile::tempdir().expect("temp dir"), overrides)
    }

    /// Starts a broker on a data directory the test prepared.
    pub fn start_in(data_dir: tempfile::TempDir, overrides: &[(&str, &str)]) -> TestBroker {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut broker = TestBroker {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir,
            runtime,
            running: None,
        };
        broker.boot(overrides);
        broker
    }

    fn boot(&mut self, overrides: &[(&str, &str)]) {
        // Broker logs go to the test's captured output (shown when a test fails).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_test_writer()
            .try_init();
        let properties: BTreeMap<String, String> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut config = BrokerConfig::from_properties(&properties).expect("valid overrides");
        config.listen = if self.addr.port() == 0 {
            "127.0.0.1:0".parse().unwrap()
        } else {
            self.addr
        };
        config.data_dir = self.data_dir.path().to_path_buf();
        let running = self
            .runtime
            .block_on(runnel_broker::start(config))
            .expect("broker starts");
        self.addr = running.local_addr();
        self.running = Some(running);
    }

    /// The running broker (for calling its internals from a test's threads).
    pub fn running(&self) -> &RunningBroker {
        self.running.as_ref().expect("the broker is running")
    }

    /// Runs `future` to completion on the broker's runtime (for calling its async internals).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The HTTP port's address, when the broker was started with `http.listen`.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().and_then(RunningBroker::http_addr)
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Starts again on the same data directory and port, after a stop.
    pub fn restart_stopped(&mut self, overrides: &[(&str, &str)]) {
        assert!(self.running.is_none(), "the broker is still running");
        self.boot(overrides);
    }

    /// Shuts down cleanly and starts again on the same data directory and port.
    pub fn restart(&mut self, overrides: &[(&str, &str)]) {
        self.stop();
        self.boot(overrides);
    }

    /// Runs `steps` on the broker's runtime, then shuts down cleanly at once, in the same
    /// task (no chance for the broker to catch up in between).
    pub fn stop_right_after<F: std::future::Future<Output = ()>>(
        &mut self,
        steps: impl FnOnce(Arc<runnel_broker::broker::Broker>) -> F,
    ) {
        let running = self.running.take().expect("the broker is running");
        let broker = Arc::clone(running.broker());
        self.runtime.block_on(async move {
            steps(broker).await;
            running.shutdown().await.expect("clean shutdown");
        });
    }

    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            self.runtime
                .block_on(running.shutdown())
                .expect("clean shutdown");
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = self.runtime.block_on(running.shutdown());
        }
    }
}

/// `GET path` from the broker's HTTP port with HTTP/1.1; returns (status line, headers in
/// lower case, body).
pub fn http_get(address: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the HTTP port");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: runnel\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a header block");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw Kafka protocol connection, for requests real clients would never send.
pub struct RawClient {
    stream: TcpStream,
    correlation_id: i32,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        RawClient {
            stream,
            correlation_id: 0,
        }
    }

    /// A client on a connection made elsewhere (from a chosen local address, say).
    pub fn from_stream(stream: TcpStream) -> RawClient {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        RawClient {
            stream,
            correlation_id: 0,
        }
    }

    /// The connection itself, for socket options and addresses.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sets how long a read may block before the test fails.
    pub fn stream_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("timeout");
    }

    /// Sends a request with a proper header; returns its correlation id.
    pub fn send<T: Encodable>(&mut self, api: ApiKey, version: i16, body: &T) -> i32 {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut frame = BytesMut::new();
        header
            .encode(&mut frame, api.request_header_version(version))
            .expect("header");
        body.encode(&mut frame, version).expect("body");
        self.send_frame(&frame);
        self.correlation_id
    }

    /// Sends raw bytes with a size prefix.
    pub fn send_frame(&mut self, frame: &[u8]) {
        let mut bytes = Vec::with_capacity(frame.len() + 4);
        bytes.extend_from_slice(&(frame.len() as i32).to_be_bytes());
        bytes.extend_from_slice(frame);
        self.stream.write_all(&bytes).expect("write");
    }

    /// Sends bytes exactly as given, no size prefix added.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one response frame (without its size prefix); `None` when the broker closed.
    pub fn receive_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame).ok()?;
        Some(Bytes::from(frame))
    }

    /// Reads and decodes one response, checking its correlation id.
    pub fn receive<T: Decodable>(&mut self, api: ApiKey, version: i16, correlation_id: i32) -> T {
        let mut frame = self
            .receive_frame()
            .expect("a response, not a closed connection");
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .expect("response header");
        assert_eq!(header.correlation_id, correlation_id);
        let body = T::decode(&mut frame, version).expect("response body");
        assert!(!frame.has_remaining(), "trailing bytes in the response");
        body
    }

    pub fn request<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        let correlation_id = self.send(api, version, body);
        self.receive(api, version, correlation_id)
    }

    /// Whether the broker closed this connection (read returns end of stream).
    pub fn is_closed_by_broker(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0))
            || matches!(
                self.stream.read(&mut byte),
                Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset
            )
    }
}

/// Record `index` of a batch as a producer sends it: offset and sequence deltas equal to the
/// index (the encoder splits a batch where `offset - sequence` changes), no producer id.
pub fn record(index: usize, timestamp: i64, key: Option<Bytes>, value: Option<Bytes>) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: index as i64,
        sequence: index as i32,
        timestamp,
        key,
        value,
        headers: Default::default(),
    }
}

/// One record batch v2 holding `records`.
pub fn encode_batch(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
    buf.freeze()
}

/// A record batch v2 of `count` keyed records, as a producer would send it.
pub fn record_batch(count: usize, value_size: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let key = Some(Bytes::from(format!("key-{i}")));
            record(
                i,
                1_700_000_000_000 + i as i64,
                key,
                Some(Bytes::from(vec![b'v'; value_size])),
            )
        })
        .collect();
    encode_batch(&records, Compression::None)
}

/// A topic name for a request.
pub fn topic_name(topic: &str) -> kafka_protocol::messages::TopicName {
    StrBytes::from_string(topic.to_string()).into()
}

/// Creates `topic` with a raw CreateTopics v7; returns the topic's error code.
pub fn create_topic(
    client: &mut RawClient,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> i16 {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
    let configs = configs
        .iter()
        .map(|(key, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(key.to_string()))
                .with_value(Some(StrBytes::from_string(value.to_string())))
        })
        .collect();
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(configs)]);
    let response: CreateTopicsResponse = client.request(ApiKey::CreateTopics, 7, &request);
    response.topics[0].error_code
}

/// Produces `records` to one partition with acks=all (Produce v9); returns the partition's
/// error code and base offset.
pub fn produce(client: &mut RawClient, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let response: ProduceResponse = client.request(ApiKey::Produce, 9, &request);
    let result = &response.responses[0].partition_responses[0];
    (result.error_code, result.base_offset)
}

/// Fetches partition 0 from offset 0 and returns (error code, high watermark, record bytes).
pub fn fetch_all(client: &mut RawClient, topic: &str) -> (i16, i64, Bytes) {
    let request = kafka_protocol::messages::FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(10 << 20)
        .with_topics(vec![
            kafka_protocol::messages::fetch_request::FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![
                    kafka_protocol::messages::fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(10 << 20),
                ]),
        ]);
    let response: kafka_protocol::messages::FetchResponse =
        client.request(ApiKey::Fetch, 12, &request);
    let partition = &response.responses[0].partitions[0];
    (
        partition.error_code,
        partition.high_watermark,
        partition.records.clone().unwrap_or_default(),
    )
}

/// Big-endian i16 at `at`, for poking at raw response bytes.
pub fn i16_at(bytes: &[u8], at: usize) -> i16 {
    let mut slice = &bytes[at..at + 2];
    slice.get_i16()
}

/// Appends a big-endian i32 length and bytes (a non-compact Kafka string/bytes).
pub fn put_sized(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_i32(bytes.len() as i32);
    buf.put_slice(bytes);
}
