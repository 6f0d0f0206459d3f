//! The client subcommands (`runnel topic`, `produce`, `consume`, `group`) run as a user runs
//! them, as processes against a real broker. What they write is checked with another client
//! (the `rdkafka` crate), and what they read was written by it, so the CLI is not only
//! checked against itself.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::TestBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `runnel <args>` against `broker` with `stdin`; returns its output.
fn runnel(broker: &TestBroker, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(args)
        .args(["--bootstrap", &broker.bootstrap()])
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run runnel");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(stdin)
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait for runnel");
    eprintln!(
        "runnel {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a command that must succeed; returns its stdout.
fn ok(broker: &TestBroker, args: &[&str], stdin: &[u8]) -> String {
    let output = runnel(broker, args, stdin);
    assert!(output.status.success(), "runnel {args:?} failed");
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// Runs a command that must fail; returns its stderr.
fn fails(broker: &TestBroker, args: &[&str]) -> String {
    let output = runnel(broker, args, b"");
    assert!(!output.status.success(), "runnel {args:?} succeeded");
    String::from_utf8(output.stderr).expect("utf-8 output")
}

fn as_args(owned: &[String]) -> Vec<&str> {
    owned.iter().map(String::as_str).collect()
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn topic_commands_create_describe_alter_and_delete() {
    let broker = TestBroker::start();
    assert_eq!(
        ok(
            &broker,
            &[
                "topic",
                "create",
                "orders",
                "-p",
                "2",
                "-c",
                "retention.ms=60000"
            ],
            b""
        ),
        "Created topic orders.\n"
    );
    assert!(fails(&broker, &["topic", "create", "orders"]).contains("TopicAlreadyExists"));
    ok(&broker, &["topic", "create", "audit"], b"");
    assert_eq!(ok(&broker, &["topic", "list"], b""), "audit\norders\n");

    ok(
        &broker,
        &[
            "topic",
            "alter",
            "orders",
            "--partitions",
            "3",
            "-c",
            "cleanup.policy=compact",
        ],
        b"",
    );
    let described = ok(&broker, &["topic", "describe", "orders"], b"");
    assert_eq!(
        lines(&described),
        [
            "Topic: orders\tPartitionCount: 3\tReplicationFactor: 1\t\
             Configs: cleanup.policy=compact,retention.ms=60000",
            "\tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1",
            "\tTopic: orders\tPartition: 1\tLeader: 1\tReplicas: 1\tIsr: 1",
            "\tTopic: orders\tPartition: 2\tLeader: 1\tReplicas: 1\tIsr: 1",
        ]
    );
    ok(
        &broker,
        &[
            "topic",
            "alter",
            "orders",
            "--delete-config",
            "retention.ms",
        ],
        b"",
    );
    let described = ok(&broker, &["topic", "describe", "orders"], b"");
    assert!(
        described.starts_with(
            "Topic: orders\tPartitionCount: 3\tReplicationFactor: 1\tConfigs: cleanup.policy=compact\n"
        ),
        "{described}"
    );
    assert!(
        fails(&broker, &["topic", "alter", "orders", "--partitions", "2"])
            .contains("InvalidPartitions"),
        "shrinking is refused"
    );

    assert_eq!(
        ok(&broker, &["topic", "delete", "audit"], b""),
        "Deleted topic audit.\n"
    );
    assert_eq!(ok(&broker, &["topic", "list"], b""), "orders\n");
}

#[test]
fn produced_lines_are_records_another_client_reads() {
    let broker = TestBroker::start();
    ok(&broker, &["topic", "create", "events", "-p", "1"], b"");
    let input = b"user1:signed up\nuser2:signed up\nno key here\nuser1:logged: in\n";
    let output = runnel(
        &broker,
        &[
            "produce",
            "events",
            "-K",
            ":",
            "-H",
            "source=tour",
            "-H",
            "v=2",
            "-z",
            "zstd",
        ],
        input,
    );
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("4 of 4 record(s) acknowledged"));

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "cli-test-reader")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("events", 0, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let mut read = Vec::new();
    common::wait_until("the 4 records", TIMEOUT, || {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("no consume error");
            let headers: Vec<(String, Vec<u8>)> = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            read.push((
                message.offset(),
                message.key().map(<[u8]>::to_vec),
                message.payload().map(<[u8]>::to_vec),
                headers,
            ));
        }
        read.len() >= 4
    });
    let headers = vec![
        ("source".to_string(), b"tour".to_vec()),
        ("v".to_string(), b"2".to_vec()),
    ];
    assert_eq!(
        read,
        [
            (
                0,
                Some(b"user1".to_vec()),
                Some(b"signed up".to_vec()),
                headers.clone()
            ),
            (
                1,
                Some(b"user2".to_vec()),
                Some(b"signed up".to_vec()),
                headers.clone()
            ),
            (2, None, Some(b"no key here".to_vec()), headers.clone()),
            (
                3,
                Some(b"user1".to_vec()),
                Some(b"logged: in".to_vec()),
                headers
            ),
        ]
    );
}

#[test]
fn consume_prints_another_clients_records_in_the_format_asked() {
    let broker = TestBroker::start();
    ok(&broker, &["topic", "create", "ledger", "-p", "2"], b"");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");
    for (partition, key, value) in [(0, "a", "one"), (1, "b", "two"), (0, "c", "three")] {
        let record = BaseRecord::to("ledger")
            .partition(partition)
            .key(key)
            .payload(value)
            .timestamp(1_700_000_000_000)
            .headers(OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some("x"),
            }));
        producer.send(record).map_err(|(e, _)| e).expect("queue");
    }
    producer.flush(TIMEOUT).expect("flush");

    let printed = ok(
        &broker,
        &[
            "consume",
            "ledger",
            "-e",
            "-f",
            "%t %p %o %k=%s %K/%S ts=%T [%h]\\n",
        ],
        b"",
    );
    let mut printed = lines(&printed);
    printed.sort_unstable();
    assert_eq!(
        printed,
        [
            "ledger 0 0 a=one 1/3 ts=1700000000000 [h=x]",
            "ledger 0 1 c=three 1/5 ts=1700000000000 [h=x]",
            "ledger 1 0 b=two 1/3 ts=1700000000000 [h=x]",
        ]
    );
    assert_eq!(
        ok(
            &broker,
            &["consume", "ledger", "-p", "0", "-o", "-1", "-e"],
            b""
        ),
        "three\n",
        "-o -1: the last record"
    );
    assert_eq!(
        ok(
            &broker,
            &["consume", "ledger", "-p", "0", "-o", "1", "-e", "-f", "%o\\n"],
            b""
        ),
        "1\n"
    );
    assert_eq!(
        ok(&broker, &["consume", "ledger", "-c", "1", "-p", "1"], b""),
        "two\n",
        "-c 1 exits after one record"
    );
    assert!(fails(&broker, &["consume", "missing", "-e"]).contains("UnknownTopicOrPartition"));
    assert!(fails(&broker, &["consume", "ledger", "-f", "%x"]).contains("unknown field %x"));
}

/// A broker whose groups form at once (no initial rebalance delay), with a small
/// `__consumer_offsets`.
fn group_broker() -> TestBroker {
    TestBroker::start_with(&[
        ("group.initial.rebalance.delay.ms", "0"),
        ("offsets.topic.num.partitions", "2"),
    ])
}

#[test]
fn group_commands_describe_lag_reset_and_delete() {
    let broker = group_broker();
    ok(&broker, &["topic", "create", "jobs", "-p", "2"], b"");
    ok(&broker, &["produce", "jobs", "-p", "0"], b"j0\nj1\nj2\n");
    ok(&broker, &["produce", "jobs", "-p", "1"], b"j3\n");

    // A group member reads everything and commits it as it leaves.
    let read = ok(&broker, &["consume", "jobs", "-g", "workers", "-e"], b"");
    let mut read = lines(&read);
    read.sort_unstable();
    assert_eq!(read, ["j0", "j1", "j2", "j3"]);
    assert_eq!(ok(&broker, &["group", "list"], b""), "workers\n");

    let described = ok(&broker, &["group", "describe", "workers"], b"");
    let rows = lag_rows(&described);
    assert!(
        described.starts_with("Group workers: state Empty"),
        "{described}"
    );
    assert_eq!(rows, [("jobs", 0, 3, 3, 0), ("jobs", 1, 1, 1, 0)]);

    let reset = ok(
        &broker,
        &[
            "group",
            "reset-offsets",
            "workers",
            "-t",
            "jobs",
            "--to-offset",
            "1",
        ],
        b"",
    );
    assert_eq!(
        lines(&reset).len(),
        3,
        "a header and one line per partition"
    );
    let described = ok(&broker, &["group", "describe", "workers"], b"");
    assert_eq!(
        lag_rows(&described),
        [("jobs", 0, 1, 3, 2), ("jobs", 1, 1, 1, 0)]
    );
    let read = ok(&broker, &["consume", "jobs", "-g", "workers", "-e"], b"");
    let mut read = lines(&read);
    read.sort_unstable();
    assert_eq!(
        read,
        ["j1", "j2"],
        "the group resumes from the reset offsets"
    );

    assert_eq!(
        ok(&broker, &["group", "delete", "workers"], b""),
        "Deleted group workers.\n"
    );
    assert_eq!(ok(&broker, &["group", "list"], b""), "");
    assert!(fails(&broker, &["group", "delete", "workers"]).contains("GroupIdNotFound"));

    // Several at once: each is reported, and one failure fails the command.
    ok(
        &broker,
        &["consume", "jobs", "-g", "second", "-c", "1"],
        b"",
    );
    let output = runnel(&broker, &["group", "delete", "second", "never"], b"");
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Deleted group second.\n"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("group never: GroupIdNotFound"));
}

/// (topic, partition, committed, log end offset, lag) of each row of `group describe`.
fn lag_rows(described: &str) -> Vec<(&str, i32, i64, i64, i64)> {
    described
        .lines()
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.split_whitespace().collect();
            let number = |i: usize| cells[i].parse::<i64>().expect("a number");
            (cells[1], number(2) as i32, number(3), number(4), number(5))
        })
        .collect()
}

#[test]
fn librdkafka_properties_reach_a_sasl_broker() {
    let jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required \
                user_alice=\"alice-secret\";";
    let broker = TestBroker::start_with(&[
        ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
        ("sasl.enabled.mechanisms", "PLAIN"),
        ("listener.name.sasl_plaintext.plain.sasl.jaas.config", jaas),
    ]);
    // `args` followed by the -X properties of a SASL/PLAIN login as alice with `password`.
    let login = |args: &[&'static str], password: &'static str| -> Vec<String> {
        let sasl = [
            "security.protocol=SASL_PLAINTEXT".to_string(),
            "sasl.mechanism=PLAIN".to_string(),
            "sasl.username=alice".to_string(),
            format!("sasl.password={password}"),
        ];
        let properties = sasl.into_iter().flat_map(|p| ["-X".to_string(), p]);
        args.iter()
            .map(|a| a.to_string())
            .chain(properties)
            .collect()
    };
    let with_sasl = |args: &[&'static str]| login(args, "alice-secret");
    ok(
        &broker,
        &as_args(&with_sasl(&["topic", "create", "private", "-p", "1"])),
        b"",
    );
    ok(
        &broker,
        &as_args(&with_sasl(&["produce", "private"])),
        b"secret one\nsecret two\n",
    );
    assert_eq!(
        ok(
            &broker,
            &as_args(&with_sasl(&["consume", "private", "-e"])),
            b""
        ),
        "secret one\nsecret two\n"
    );
    let wrong = login(&["topic", "list", "--timeout-ms", "3000"], "wrong");
    let refused = runnel(&broker, &as_args(&wrong), b"");
    assert!(!refused.status.success(), "a wrong password lists nothing");
}

#[test]
fn an_interrupted_group_consumer_commits_and_leaves_at_once() {
    use std::io::{BufRead, BufReader};
    let broker = group_broker();
    ok(&broker, &["topic", "create", "tasks", "-p", "1"], b"");
    ok(&broker, &["produce", "tasks"], b"t1\nt2\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args([
            "consume",
            "tasks",
            "-g",
            "leavers",
            "--bootstrap",
            &broker.bootstrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run runnel consume");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let read: Vec<String> = (0..2)
        .map(|_| lines.next().expect("a line").expect("utf-8"))
        .collect();
    assert_eq!(read, ["t1", "t2"]);
    let described = ok(&broker, &["group", "describe", "leavers"], b"");
    assert!(described.contains("state Stable"), "{described}");

    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let status = child.wait().expect("wait for runnel consume");
    assert!(status.success(), "{status}");

    // Left (LeaveGroup) rather than timed out, and committed what it printed.
    let described = ok(&broker, &["group", "describe", "leavers"], b"");
    assert!(
        described.starts_with("Group leavers: state Empty"),
        "{described}"
    );
    assert_eq!(lag_rows(&described), [("tasks", 0, 2, 2, 0)]);
}
