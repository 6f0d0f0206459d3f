//! Connections cannot exhaust the broker's memory or lock real clients out, and shutdown does
//! not wait on long-polls: request bytes in flight are bounded by `queued.max.request.bytes`,
//! idle and stalled connections close after `connections.max.idle.ms`, one IP gets at most
//! `max.connections.per.ip`, SIGTERM answers a parked fetch at once, and a reset between frames
//! is not reported as a broken frame.
//!
//! The broker runs as its own process where its memory, its signals or its log are watched.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_until, RawClient, TestBroker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest};

/// Generous bounds for a loaded 2-core machine; none is a performance claim.
const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A `runnel server` process with its stderr in a file; killed when dropped.
struct BrokerProcess {
    child: Child,
    addr: SocketAddr,
    http: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl BrokerProcess {
    fn start(overrides: &[(&str, &str)]) -> BrokerProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let log = dir.path().join("broker.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_runnel"));
        command
            .arg("server")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--http-listen")
            .arg(http.to_string())
            .arg("--data-dir")
            .arg(dir.path().join("data"));
        for (key, value) in overrides {
            command.arg("--override").arg(format!("{key}={value}"));
        }
        let child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("start the broker");
        let broker = BrokerProcess {
            child,
            addr,
            http,
            log,
            _dir: dir,
        };
        wait_until("the broker to listen", DEADLINE, || {
            TcpStream::connect(broker.http).is_ok()
        });
        broker
    }

    /// A `/proc/<pid>/status` field in bytes (`VmHWM`, `VmRSS`).
    fn memory_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read the broker's status");
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {field} in /proc status"));
        let kib: u64 = line
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .expect("a number of kB");
        kib * 1024
    }

    fn metric(&self, series: &str) -> Option<f64> {
        metric(self.http, series)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).expect("read the broker's log")
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is shared.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "kill failed");
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the `/metrics` line starting with `series`, or `None` if absent.
fn metric(http: SocketAddr, series: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(http).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: runnel\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// Raises this process's soft file-descriptor limit to at least `count` (children inherit it).
fn raise_fd_limit(count: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur >= count {
            return;
        }
        assert!(
            limit.rlim_max >= count,
            "this test needs {count} file descriptors; the hard limit is {}",
            limit.rlim_max
        );
        limit.rlim_cur = count;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// Closes `stream` with a TCP reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a pointer to a local struct of the right size.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_LINGER");
    drop(stream);
}

/// Whether the small request/response round trip of a real client works.
fn api_versions(client: &mut RawClient) -> i16 {
    let response: ApiVersionsResponse =
        client.request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    response.error_code
}

/// Kafka's `queued.max.request.bytes` (SocketServer's MemoryPool): a frame's announced size is
/// reserved before its bytes are read and a connection that cannot get memory is muted, not
/// closed. 20 connections each send 60 MiB of an announced 100 MiB frame; the broker's peak
/// RSS stays within the pool plus a margin, and a small client is served meanwhile.
#[test]
fn stalled_giant_frames_are_bounded_by_queued_max_request_bytes() {
    const POOL_BYTES: u64 = 256 << 20;
    const MARGIN_BYTES: u64 = 160 << 20;
    const CONNECTIONS: usize = 20;
    let broker = BrokerProcess::start(&[("queued.max.request.bytes", &POOL_BYTES.to_string())]);
    let finished = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut stream = TcpStream::connect(broker.addr).expect("connect");
        streams.push(stream.try_clone().expect("clone"));
        let finished = Arc::clone(&finished);
        senders.push(std::thread::spawn(move || {
            let chunk = vec![0u8; 1 << 20];
            if stream.write_all(&(100i32 << 20).to_be_bytes()).is_err() {
                return;
            }
            for _ in 0..60 {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
            finished.fetch_add(1, Ordering::SeqCst);
        }));
    }
    // Settled: every connection has either sent its 60 MiB or is muted waiting for memory.
    wait_until("the giant frames to settle", DEADLINE, || {
        let waiting = broker
            .metric("runnel_request_memory_waiting")
            .unwrap_or(0.0) as usize;
        finished.load(Ordering::SeqCst) + waiting == CONNECTIONS
    });
    assert!(finished.load(Ordering::SeqCst) >= 1, "no frame got memory");

    let mut client = RawClient::connect(broker.addr);
    assert_eq!(api_versions(&mut client), 0);
    assert_eq!(
        common::create_topic(&mut client, "beside-giants", 1, &[]),
        0
    );
    let batch = common::record_batch(3, 10);
    assert_eq!(
        common::produce(&mut client, "beside-giants", 0, batch),
        (0, 0)
    );

    let peak = broker.memory_bytes("VmHWM");
    eprintln!(
        "{} of {CONNECTIONS} giant frames admitted; broker peak RSS {} MiB",
        finished.load(Ordering::SeqCst),
        peak >> 20
    );
    assert!(
        peak < POOL_BYTES + MARGIN_BYTES,
        "peak RSS {} MiB exceeds the pool ({} MiB) plus {} MiB",
        peak >> 20,
        POOL_BYTES >> 20,
        MARGIN_BYTES >> 20
    );
    for stream in &streams {
        let _ = stream.shutdown(Shutdown::Both);
    }
    for sender in senders {
        sender.join().expect("sender");
    }
    // Closed connections give their memory back.
    wait_until("the request memory to be released", DEADLINE, || {
        broker.metric("runnel_request_memory_bytes") == Some(0.0)
    });
}

/// Kafka's Selector closes a connection with no bytes read or written for
/// `connections.max.idle.ms`. 10,000 idle connections (half of them stalled inside a frame)
/// fill `max.connections` (default 10,000), so a real client (librdkafka) is refused at first; the broker closes the idle ones, and the
/// client, retrying as it does, gets in, produces and consumes.
#[test]
fn idle_connections_are_closed_and_do_not_lock_out_a_real_client() {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    const IDLE: usize = 10_000;
    raise_fd_limit(IDLE as u64 + 1_000);
    // The idle window must be longer than opening all 10,000 takes (accepting them costs the
    // debug broker about a second of CPU, far more wall time on a loaded machine): if the
    // first ones expire before the last are open, the broker was never full, which proves
    // nothing, so the run is repeated with a longer window.
    let mut windows_ms = [20_000u64, 60_000, 180_000].into_iter();
    let (broker, idle, window_ms) = loop {
        let window_ms = windows_ms
            .next()
            .expect("a window long enough to fill the broker");
        let broker = BrokerProcess::start(&[("connections.max.idle.ms", &window_ms.to_string())]);
        let mut idle = connect_many(broker.addr, IDLE);
        // Half of them stall inside a frame: 10 bytes of an announced 100. A write refused
        // here means the broker already closed that connection: the window was too short
        // (the other tests of this file load the machine meanwhile), so it is tried longer.
        let stalled = idle.iter_mut().step_by(2).all(|stream| {
            stream.write_all(&100i32.to_be_bytes()).is_ok() && stream.write_all(&[0u8; 10]).is_ok()
        });
        // The broker is full: max.connections (10,000) are open, all idle.
        let mut full = false;
        if stalled {
            // Either happens within the window: the first idle close comes at its end.
            wait_until(
                "all idle connections open, or the first closed",
                Duration::from_millis(window_ms) + DEADLINE,
                || {
                    full = broker.metric("runnel_connections_open") == Some(IDLE as f64);
                    full || broker.metric("runnel_connections_closed_idle_total") > Some(0.0)
                },
            );
        } else {
            // Only an idle close may explain it; a refusal at max.connections is a bug.
            assert!(
                broker.metric("runnel_connections_closed_idle_total") > Some(0.0),
                "a connection was closed while not idle; refused: {:?}",
                broker.metric("runnel_connections_refused_total")
            );
        }
        if full {
            break (broker, idle, window_ms);
        }
        eprintln!("idle connections expired before all {IDLE} were open at {window_ms} ms; longer");
    };

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.addr.to_string())
        .set("acks", "all")
        .set("message.timeout.ms", (window_ms + 60_000).to_string())
        .create()
        .expect("producer");
    // The records wait for the idle ones to expire: the whole window, plus a margin.
    let wait_in = Duration::from_millis(window_ms) + DEADLINE;
    for i in 0..10 {
        let value = format!("value-{i}");
        producer
            .send(BaseRecord::<(), _>::to("after-idle").payload(&value))
            .expect("queue a record");
    }
    assert_eq!(producer.flush(wait_in), Ok(()));
    drop(producer);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr.to_string())
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("after-idle", 0, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let mut values = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while values.len() < 10 {
        assert!(Instant::now() < deadline, "consumed only {values:?}");
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message.expect("a record");
            values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).to_string());
        }
    }
    assert_eq!(values[9], "value-9");

    // Every idle connection was closed by the broker.
    let deadline = Instant::now() + DEADLINE;
    for mut stream in idle {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("an idle connection was not closed: {other:?}"),
        }
    }
    assert!(broker.metric("runnel_connections_closed_idle_total") >= Some(IDLE as f64));
    eprintln!(
        "connections refused at max.connections meanwhile: {:?}",
        broker.metric("runnel_connections_refused_total")
    );
}

/// `count` connections to `addr`, a few hundred handshakes at a time.
fn connect_many(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    const CONCURRENT: usize = 128;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
        let mut connecting = tokio::task::JoinSet::new();
        for index in 0..count {
            let permit = Arc::clone(&permits).acquire_owned().await.expect("permit");
            connecting.spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await;
                drop(permit);
                (index, stream.expect("connect an idle connection"))
            });
        }
        let mut streams = Vec::with_capacity(count);
        while let Some(joined) = connecting.join_next().await {
            let (_, stream) = joined.expect("connect task");
            let stream = stream.into_std().expect("std stream");
            stream.set_nonblocking(false).expect("blocking");
            streams.push(stream);
        }
        streams
    })
}

/// A client connection from `local` (another loopback address is another client IP).
fn connect_from(local: &str, broker: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{local}:0").parse().expect("address"))
            .expect("bind");
        socket.connect(broker).await.expect("connect")
    });
    let stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
}

/// Kafka's ConnectionQuotas: a connection over `max.connections.per.ip` (or the IP's entry in
/// `max.connections.per.ip.overrides`) is closed at accept; other IPs are served.
#[test]
fn max_connections_per_ip_refuses_the_extra_connection_and_serves_another_ip() {
    let broker = TestBroker::start_with(&[
        ("max.connections.per.ip", "2"),
        ("max.connections.per.ip.overrides", "127.0.0.3:3"),
        ("http.listen", "127.0.0.1:0"),
    ]);
    let http = broker.http_addr().expect("http");
    let mut served: Vec<RawClient> = (0..2)
        .map(|_| RawClient::from_stream(connect_from("127.0.0.1", broker.addr)))
        .collect();
    for client in &mut served {
        assert_eq!(api_versions(client), 0);
    }
    let mut refused = RawClient::from_stream(connect_from("127.0.0.1", broker.addr));
    assert!(refused.is_closed_by_broker());
    assert_eq!(
        metric(http, "runnel_connections_refused_per_ip_total"),
        Some(1.0)
    );
    let mut other_ip = RawClient::from_stream(connect_from("127.0.0.2", broker.addr));
    assert_eq!(api_versions(&mut other_ip), 0);
    let mut overridden: Vec<RawClient> = (0..3)
        .map(|_| RawClient::from_stream(connect_from("127.0.0.3", broker.addr)))
        .collect();
    for client in &mut overridden {
        assert_eq!(api_versions(client), 0);
    }
    // The served connections still work, and a slot freed by a close is reusable.
    assert_eq!(api_versions(&mut served[0]), 0);
    drop(served.pop());
    wait_until("the freed slot to serve a new connection", DEADLINE, || {
        let mut again = RawClient::from_stream(connect_from("127.0.0.1", broker.addr));
        again.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        again.receive_frame().is_some()
    });
}

/// Shutdown does not wait for parked fetches: a Fetch with `max_wait_ms` 60 s is answered at
/// SIGTERM and the process exits 0 well before that wait would end. (Kafka closes such
/// connections unanswered when its socket server stops; Runnel answers them, see
/// connection.rs.)
#[test]
fn sigterm_answers_a_pending_long_poll_fetch() {
    let broker = BrokerProcess::start(&[]);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(common::create_topic(&mut client, "long-poll", 1, &[]), 0);
    let request = FetchRequest::default()
        .with_max_wait_ms(60_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(common::topic_name("long-poll"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let correlation_id = client.send(ApiKey::Fetch, 12, &request);
    wait_until("the fetch to park", DEADLINE, || {
        broker.metric("runnel_fetch_purgatory_size") == Some(1.0)
    });
    let signalled = Instant::now();
    broker.signal(libc::SIGTERM);
    // Well below the fetch's own 60 s (and the old 30 s shutdown drain).
    let bound = Duration::from_secs(15);
    client.stream_timeout(bound);
    let response: FetchResponse = client.receive(ApiKey::Fetch, 12, correlation_id);
    assert_eq!(response.error_code, 0);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert!(partition.records.as_ref().is_none_or(|r| r.is_empty()));
    let mut broker = broker;
    let mut exit = None;
    wait_until(
        "the broker to exit",
        bound.saturating_sub(signalled.elapsed()),
        || {
            exit = broker.child.try_wait().expect("wait");
            exit.is_some()
        },
    );
    assert_eq!(exit.and_then(|status| status.code()), Some(0));
}

/// A reset between frames is an ordinary end of a connection (Kafka's Selector logs it at
/// DEBUG); only a connection that ends inside a frame is reported as such.
#[test]
fn a_reset_between_frames_is_not_logged_as_inside_a_frame() {
    let broker = BrokerProcess::start(&[]);
    let mut between = RawClient::connect(broker.addr);
    assert_eq!(api_versions(&mut between), 0);
    let between_port = between.stream().local_addr().expect("address").port();
    let mut inside = RawClient::connect(broker.addr);
    assert_eq!(api_versions(&mut inside), 0);
    let inside_port = inside.stream().local_addr().expect("address").port();
    inside.send_raw(&100i32.to_be_bytes());
    inside.send_raw(&[0u8; 10]);
    let between_stream = between.stream().try_clone().expect("clone");
    let inside_stream = inside.stream().try_clone().expect("clone");
    drop((between, inside));
    reset(between_stream);
    reset(inside_stream);
    wait_until("both connections to end", DEADLINE, || {
        broker.metric("runnel_connections_open") == Some(0.0)
    });
    let log = broker.log();
    let inside_lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("inside a frame"))
        .collect();
    assert!(
        !inside_lines
            .iter()
            .any(|line| line.contains(&format!("127.0.0.1:{between_port} "))),
        "a reset between frames was logged as inside a frame: {inside_lines:?}"
    );
    assert!(
        inside_lines
            .iter()
            .any(|line| line.contains(&format!("127.0.0.1:{inside_port} "))),
        "the reset inside a frame was not logged: {log}"
    );
}

/// The cache of receive buffers (`runnel_receive_buffers_cached_bytes`) keeps at most 64 MiB
/// of idle buffers, a quarter of it per size class, however many frames were in flight at
/// once. 20 connections each stop inside a frame until all 20 are being read, then finish it
/// and read the answer (ApiVersions ignores the bytes after its body), for frames of several
/// size classes in turn.
#[test]
fn receive_buffers_cached_stay_within_their_bound_after_many_concurrent_frames() {
    const CONNECTIONS: usize = 20;
    const CACHED_BYTES_MAX: f64 = (64 << 20) as f64;
    const CLASS_BYTES_MAX: f64 = CACHED_BYTES_MAX / 4.0;
    let broker = BrokerProcess::start(&[]);
    let mut clients: Vec<RawClient> = (0..CONNECTIONS)
        .map(|_| RawClient::connect(broker.addr))
        .collect();
    let request = ApiVersionsRequest::default();
    for padding in [3 << 20, 900 << 10, 200 << 10, 50 << 10, 3 << 20] {
        let mut frames = Vec::new();
        for (index, client) in clients.iter_mut().enumerate() {
            let mut frame = api_versions_frame(&request, index as i32);
            frame.resize(frame.len() + padding, 0xA5);
            let mut sent = (frame.len() as i32).to_be_bytes().to_vec();
            sent.extend_from_slice(&frame[..frame.len() / 2]);
            client.send_raw(&sent);
            frames.push((index as i32, frame));
        }
        let announced: usize = frames.iter().map(|(_, frame)| frame.len()).sum();
        // Every connection is inside its frame, its buffer taken.
        wait_until("every frame to be reserved", DEADLINE, || {
            broker.metric("runnel_request_memory_bytes") == Some(announced as f64)
        });
        for (client, (correlation_id, frame)) in clients.iter_mut().zip(&frames) {
            client.send_raw(&frame[frame.len() / 2..]);
            let response: ApiVersionsResponse =
                client.receive(ApiKey::ApiVersions, 3, *correlation_id);
            assert_eq!(response.error_code, 0);
        }
        wait_until("the request memory to be released", DEADLINE, || {
            broker.metric("runnel_request_memory_bytes") == Some(0.0)
        });
        let cached = broker
            .metric("runnel_receive_buffers_cached_bytes")
            .expect("the cached bytes gauge");
        eprintln!(
            "after {CONNECTIONS} frames with {padding} bytes of padding: {cached} bytes cached"
        );
        assert!(cached <= CACHED_BYTES_MAX, "{cached} bytes cached");
    }
    // The 4 MiB class (3 MiB frames, twice) kept its share and no more; the others theirs.
    let cached = broker
        .metric("runnel_receive_buffers_cached_bytes")
        .expect("the cached bytes gauge");
    assert!(
        cached >= CLASS_BYTES_MAX,
        "{cached} bytes cached: buffers were not kept"
    );
    assert!(cached <= 3.0 * CLASS_BYTES_MAX, "{cached} bytes cached");
    // The connections still serve.
    for client in &mut clients {
        assert_eq!(api_versions(client), 0);
    }
}

/// An ApiVersions v3 request frame (header and body, no size prefix).
fn api_versions_frame(request: &ApiVersionsRequest, correlation_id: i32) -> Vec<u8> {
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(3)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("padded")));
    let mut frame = bytes::BytesMut::new();
    header
        .encode(&mut frame, ApiKey::ApiVersions.request_header_version(3))
        .expect("header");
    request.encode(&mut frame, 3).expect("body");
    frame.to_vec()
}
