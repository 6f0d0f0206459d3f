//! The `runnel server` command itself: a `server.properties` file and `--override` pairs are
//! read with Kafka's names (overrides win), and SIGTERM stops the broker with exit status 0.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_until, RawClient};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[test]
fn properties_file_and_overrides_configure_the_broker_and_sigterm_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let properties = dir.path().join("server.properties");
    std::fs::write(
        &properties,
        format!(
            "# a Kafka-style file\nlisteners=PLAINTEXT://127.0.0.1:{port}\nnode.id=7\n\
             num.partitions=2\nlog.dirs={}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write properties");
    let mut broker = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["server", "--config"])
        .arg(&properties)
        .args(["--override", "num.partitions=3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the broker");
    let address = format!("127.0.0.1:{port}").parse().expect("address");
    wait_until("the broker to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(address).is_ok()
    });

    // Auto-creation uses num.partitions from the override (3), not the file (2); the node id
    // comes from the file.
    let mut client = RawClient::connect(address);
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(StrBytes::from_static_str("configured").into()))]))
        .with_allow_auto_topic_creation(true);
    let response: MetadataResponse = client.request(ApiKey::Metadata, 9, &request);
    assert_eq!(response.brokers[0].node_id.0, 7);
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].partitions.len(), 3);
    assert!(dir.path().join("data").join("configured-2").is_dir());

    // SIGTERM: a clean stop with exit status 0.
    let status = Command::new("kill")
        .args(["-TERM", &broker.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let mut exit = None;
    wait_until("the broker to exit", Duration::from_secs(30), || {
        exit = broker.try_wait().expect("wait");
        exit.is_some()
    });
    assert_eq!(exit.and_then(|status| status.code()), Some(0));
}
