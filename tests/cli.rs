//! The client subcommands (`runnel topic`, `produce`, `consume`, `group`, `txn`) run as a user runs
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
    assert!(fails(&broker, &["topic", "create", "orders"]).contains("TOPIC_ALREADY_EXISTS"));
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
            .contains("INVALID_PARTITIONS"),
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
    assert!(fails(&broker, &["consume", "missing", "-e"]).contains("UNKNOWN_TOPIC_OR_PARTITION"));
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
            "--execute",
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
    assert!(fails(&broker, &["group", "delete", "workers"]).contains("GROUP_ID_NOT_FOUND"));

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
    assert!(String::from_utf8_lossy(&output.stderr).contains("group never: GROUP_ID_NOT_FOUND"));
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
    // The transaction views speak Kafka's requests themselves (librdkafka has no call for
    // them) and log in the same way.
    let listed = ok(&broker, &as_args(&with_sasl(&["txn", "list"])), b"");
    assert_eq!(
        listed.split_whitespace().collect::<Vec<_>>(),
        [
            "TransactionalId",
            "Coordinator",
            "ProducerId",
            "TransactionState"
        ]
    );
    let wrong = login(&["topic", "list", "--timeout-ms", "3000"], "wrong");
    let refused = runnel(&broker, &as_args(&wrong), b"");
    assert!(!refused.status.success(), "a wrong password lists nothing");
    let wrong = login(&["txn", "list", "--timeout-ms", "3000"], "wrong");
    let refused = runnel(&broker, &as_args(&wrong), b"");
    assert!(
        !refused.status.success(),
        "a wrong password lists no transaction"
    );
}

/// `runnel txn list|describe|describe-producers` and `topic describe --producers` show an
/// open transaction of librdkafka's transactional producer as kafka-transactions shows it
/// (its columns, `None` for what is absent), then its commit: the state CompleteCommit, no
/// partitions, no open transaction start offset on the partition's producer.
#[test]
fn txn_commands_show_an_open_transaction_then_its_commit() {
    let broker = TestBroker::start_with(&[("transaction.state.log.num.partitions", "4")]);
    ok(&broker, &["topic", "create", "payments", "-p", "2"], b"");
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("transactional.id", "cli-txn")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    producer.begin_transaction().expect("begin");
    producer
        .send(
            BaseRecord::to("payments")
                .partition(1)
                .key("k")
                .payload("v"),
        )
        .map_err(|(error, _)| error)
        .expect("send");
    producer.flush(TIMEOUT).expect("flush");

    let rows = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|line| line.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let listed = rows(&ok(&broker, &["txn", "list"], b""));
    assert_eq!(listed.len(), 2, "a header and one transaction: {listed:?}");
    assert_eq!(listed[1][0], "cli-txn");
    assert_eq!(listed[1][3], "Ongoing");
    let producer_id = listed[1][2].clone();
    assert_eq!(
        rows(&ok(
            &broker,
            &["txn", "list", "--state", "CompleteCommit"],
            b""
        ))
        .len(),
        1
    );
    let described = rows(&ok(&broker, &["txn", "describe", "cli-txn"], b""));
    assert_eq!(described[0][0], "CoordinatorId");
    let open = &described[1];
    assert_eq!(open[1..3], ["cli-txn".to_string(), producer_id.clone()]);
    assert_eq!(open[4], "Ongoing");
    assert_ne!(open[6], "None", "an open transaction has a start time");
    assert_eq!(open[8], "payments-1");
    let producers = rows(&ok(
        &broker,
        &["txn", "describe-producers", "--topic", "payments"],
        b"",
    ));
    assert_eq!(
        producers.len(),
        2,
        "one producer on partition 1: {producers:?}"
    );
    assert_eq!(producers[1][0..2], ["1".to_string(), producer_id.clone()]);
    assert_eq!(
        producers[1][6], "0",
        "the open transaction starts at offset 0"
    );
    let topic = ok(
        &broker,
        &["topic", "describe", "payments", "--producers"],
        b"",
    );
    assert!(
        topic.contains(&format!(
            "ProducerId: {producer_id}\tProducerEpoch: 0\tLatestCoordinatorEpoch: None"
        )) && topic.contains("CurrentTransactionStartOffset: 0"),
        "{topic}"
    );

    producer.commit_transaction(TIMEOUT).expect("commit");
    let mut committed = Vec::new();
    common::wait_until("the transaction to complete", TIMEOUT, || {
        committed = rows(&ok(&broker, &["txn", "describe", "cli-txn"], b""));
        committed[1][4] == "CompleteCommit"
    });
    assert_eq!(
        committed[1].len(),
        8,
        "no partitions once complete: {committed:?}"
    );
    let producers = rows(&ok(
        &broker,
        &[
            "txn",
            "describe-producers",
            "--topic",
            "payments",
            "--partition",
            "1",
        ],
        b"",
    ));
    assert_eq!(producers[1][6], "None", "no open transaction");
    let unknown = fails(&broker, &["txn", "describe", "nobody"]);
    assert!(unknown.contains("TRANSACTIONAL_ID_NOT_FOUND"), "{unknown}");
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

/// The offsets `group` has committed on `topic`'s partitions `0..partitions`, read with
/// another client (the `rdkafka` crate), `None` where there is no commit.
fn committed(broker: &TestBroker, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut request = TopicPartitionList::new();
    for partition in 0..partitions {
        request.add_partition(topic, partition);
    }
    let found = consumer
        .committed_offsets(request, TIMEOUT)
        .expect("committed offsets");
    (0..partitions)
        .map(|partition| {
            match found
                .find_partition(topic, partition)
                .map(|element| element.offset())
            {
                Some(Offset::Offset(offset)) => Some(offset),
                _ => None,
            }
        })
        .collect()
}

/// Produces `values` to `topic`'s `partition` with another client, the i-th stamped
/// `timestamp_ms + i * 1000`.
fn produce_stamped(
    broker: &TestBroker,
    topic: &str,
    partition: i32,
    values: &[&str],
    timestamp_ms: i64,
) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");
    for (i, value) in values.iter().enumerate() {
        let record = BaseRecord::<(), str>::to(topic)
            .partition(partition)
            .payload(value)
            .timestamp(timestamp_ms + i as i64 * 1000);
        producer.send(record).map_err(|(e, _)| e).expect("queue");
    }
    producer.flush(TIMEOUT).expect("flush");
}

/// Pins kcat's and Kafka's console consumer's commit rule: a group member commits, per
/// partition, the offset after the last record it printed, and with `-c N` exactly N records,
/// never what it fetched ahead. Two `-c 2` runs in one group read four consecutive records.
#[test]
fn consume_in_a_group_commits_exactly_what_it_printed() {
    let broker = group_broker();
    ok(&broker, &["topic", "create", "steps", "-p", "1"], b"");
    ok(&broker, &["produce", "steps"], b"s0\ns1\ns2\ns3\ns4\ns5\n");

    // (-e too, so that a member that committed more than it printed ends with too little
    // rather than waiting for records that never come.)
    let first = ok(
        &broker,
        &["consume", "steps", "-g", "walkers", "-c", "2", "-e"],
        b"",
    );
    assert_eq!(first, "s0\ns1\n");
    assert_eq!(committed(&broker, "walkers", "steps", 1), [Some(2)]);
    let second = ok(
        &broker,
        &["consume", "steps", "-g", "walkers", "-c", "2", "-e"],
        b"",
    );
    assert_eq!(
        second, "s2\ns3\n",
        "the second run starts after the first one's last record"
    );
    assert_eq!(committed(&broker, "walkers", "steps", 1), [Some(4)]);

    // Over several partitions: each partition's commit follows its own last printed record.
    ok(&broker, &["topic", "create", "spread", "-p", "2"], b"");
    ok(&broker, &["produce", "spread", "-p", "0"], b"a0\na1\na2\n");
    ok(&broker, &["produce", "spread", "-p", "1"], b"b0\n");
    let printed = ok(
        &broker,
        &[
            "consume",
            "spread",
            "-g",
            "spreaders",
            "-e",
            "-f",
            "%p %o\\n",
        ],
        b"",
    );
    assert_eq!(lines(&printed).len(), 4, "{printed}");
    assert_eq!(
        committed(&broker, "spreaders", "spread", 2),
        [Some(3), Some(1)]
    );
}

/// Kafka's AdminClient asks Metadata with allow_auto_topic_creation=false, so describing a
/// topic that does not exist is an error naming it, never a creation, even on a broker with
/// auto.create.topics.enable=true (the default here).
#[test]
fn read_only_commands_never_create_a_topic() {
    let broker = group_broker();
    ok(&broker, &["topic", "create", "real", "-p", "1"], b"");
    ok(&broker, &["produce", "real"], b"r0\n");
    ok(
        &broker,
        &["consume", "real", "-g", "nobody", "-c", "1"],
        b"",
    );
    let error = fails(&broker, &["topic", "describe", "nosuch"]);
    assert!(error.contains("nosuch"), "{error}");
    assert!(error.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{error}");
    let error = fails(&broker, &["group", "describe", "nobody", "-t", "nosuch"]);
    assert!(error.contains("nosuch"), "{error}");
    let error = fails(
        &broker,
        &[
            "group",
            "reset-offsets",
            "nobody",
            "-t",
            "nosuch",
            "--to-earliest",
        ],
    );
    assert!(error.contains("nosuch"), "{error}");

    assert_eq!(ok(&broker, &["topic", "list"], b""), "real\n");
    assert!(!broker.data_dir().join("nosuch-0").exists());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(None, TIMEOUT).expect("metadata");
    assert!(
        metadata.topics().iter().all(|t| t.name() != "nosuch"),
        "another client sees no topic nosuch"
    );
}

/// A failure is one line on stderr: `error: `, the subject, Kafka's error name once, and no
/// backtrace even with RUST_BACKTRACE set; the exit status is 1.
#[test]
fn errors_name_the_kafka_error_once_without_a_backtrace() {
    let broker = TestBroker::start();
    ok(&broker, &["topic", "create", "orders"], b"");
    let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["topic", "create", "orders", "-b", &broker.bootstrap()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run runnel");
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: topic orders: TOPIC_ALREADY_EXISTS: "),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("TOPIC_ALREADY_EXISTS").count(),
        1,
        "{stderr}"
    );
    assert_eq!(stderr.matches("already exists").count(), 1, "{stderr}");
    assert!(
        !stderr.contains("acktrace") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "no colour on a pipe: {stderr}");
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Waits (with a deadline far above the connect timeout, and far below what librdkafka's
/// own retries would take: a group consumer retries for ever, a producer for
/// message.timeout.ms, 300 s) for `child` to exit; its status and stderr.
fn exit_of(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    let mut status = None;
    common::wait_until(
        "runnel to give up on the broker",
        Duration::from_secs(60),
        || {
            status = child.try_wait().expect("wait");
            status.is_some()
        },
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)
        .expect("stderr");
    (status.expect("exited"), stderr)
}

#[test]
fn an_unreachable_broker_fails_with_a_clear_message() {
    let nowhere = format!("127.0.0.1:{}", free_port());
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_runnel"))
            .args(args)
            .args(["-b", &nowhere, "--connect-timeout-ms", "2000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run runnel")
    };
    let children = [
        spawn(&["topic", "list"]),
        spawn(&["consume", "anything", "-g", "readers"]),
        spawn(&["produce", "anything"]),
        spawn(&["group", "list"]),
    ];
    for child in children {
        let (status, stderr) = exit_of(child);
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("no broker at {nowhere} answered within 2000 ms")),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// `runnel consume | head` ends with status 0 and says nothing once head has gone, as kcat
/// does (the write's EPIPE ends it; no "Broken pipe" panic).
#[test]
fn a_closed_output_pipe_ends_quietly_with_success() {
    let broker = TestBroker::start();
    ok(&broker, &["topic", "create", "many", "-p", "1"], b"");
    // More than a pipe's 64 KiB buffer, so the writer meets the closed pipe.
    let line = "x".repeat(200);
    let input: String = (0..2_000).map(|i| format!("{i} {line}\n")).collect();
    ok(&broker, &["produce", "many"], input.as_bytes());
    let bin = env!("CARGO_BIN_EXE_runnel");
    let bootstrap = broker.bootstrap();
    for command in [
        format!("{bin} consume many -e -b {bootstrap} | head -n 1"),
        format!("{bin} consume many -e -b {bootstrap} -f '%o\\n' | head -c 1"),
        format!("{bin} topic list -b {bootstrap} | head -n 0"),
    ] {
        let output = Command::new("bash")
            .args(["-o", "pipefail", "-c", &command])
            .output()
            .expect("run bash");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{command}: {stderr}");
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

/// kafka-consumer-groups' --reset-offsets: a plan by default (and with --dry-run), a commit
/// only with --execute; Kafka's clamping to [log start, log end] with a warning; --shift-by
/// from the commit; --to-datetime and --by-duration through ListOffsets by timestamp,
/// falling back to the log end offset when no record is that late; `topic:partitions` and
/// --all-topics; refused while the group has members, with Kafka's sentence.
#[test]
fn group_reset_offsets_plans_unless_executed() {
    let broker = group_broker();
    ok(&broker, &["topic", "create", "ledger", "-p", "2"], b"");
    // Partition 0: offsets 0..5 stamped 2023-11-14T22:13:20Z + 0..4 s; partition 1: one record.
    produce_stamped(
        &broker,
        "ledger",
        0,
        &["l0", "l1", "l2", "l3", "l4"],
        1_700_000_000_000,
    );
    produce_stamped(&broker, "ledger", 1, &["m0"], 1_700_000_000_000);
    ok(&broker, &["consume", "ledger", "-g", "auditors", "-e"], b"");
    assert_eq!(
        committed(&broker, "auditors", "ledger", 2),
        [Some(5), Some(1)]
    );
    let reset = |extra: &[&str]| {
        let mut args = vec!["group", "reset-offsets", "auditors"];
        args.extend_from_slice(extra);
        runnel(&broker, &args, b"")
    };
    let table = |output: &Output| -> Vec<Vec<String>> {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|row| row.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let row = |partition: &str, offset: &str| -> Vec<String> {
        ["auditors", "ledger", partition, offset]
            .map(str::to_string)
            .to_vec()
    };
    let header: Vec<String> = ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]
        .map(str::to_string)
        .to_vec();

    // Plans change nothing.
    for plan_only in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["-t", "ledger", "--to-earliest"];
        args.extend_from_slice(plan_only);
        let output = reset(&args);
        assert!(output.status.success());
        assert_eq!(
            table(&output),
            [header.clone(), row("0", "0"), row("1", "0")]
        );
        assert!(String::from_utf8_lossy(&output.stderr).contains("--execute"));
        assert_eq!(
            committed(&broker, "auditors", "ledger", 2),
            [Some(5), Some(1)]
        );
    }
    assert!(
        !reset(&["-t", "ledger", "--to-earliest", "--execute", "--dry-run"])
            .status
            .success()
    );

    // --shift-by moves from the commit, clamped at the log start (with Kafka's warning).
    let output = reset(&["-t", "ledger", "--shift-by", "-3", "--execute"]);
    assert_eq!(
        table(&output),
        [header.clone(), row("0", "2"), row("1", "0")]
    );
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("is lower than earliest offset for topic partition ledger-1"));
    assert_eq!(
        committed(&broker, "auditors", "ledger", 2),
        [Some(2), Some(0)]
    );

    // One partition only; an offset past the end is set to the log end offset.
    let output = reset(&["-t", "ledger:0", "--to-offset", "99", "--execute"]);
    assert_eq!(table(&output), [header.clone(), row("0", "5")]);
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("New offset (99) is higher than latest offset for topic partition ledger-0"));
    assert_eq!(
        committed(&broker, "auditors", "ledger", 2),
        [Some(5), Some(0)]
    );

    // By time: the first record at or after 22:13:22 is offset 2 on partition 0; partition 1
    // has none that late, so it falls back to its log end offset.
    let output = reset(&[
        "--all-topics",
        "--to-datetime",
        "2023-11-14T22:13:22.000",
        "--execute",
    ]);
    assert_eq!(
        table(&output),
        [header.clone(), row("0", "2"), row("1", "1")]
    );
    assert_eq!(
        committed(&broker, "auditors", "ledger", 2),
        [Some(2), Some(1)]
    );
    let output = reset(&[
        "-t",
        "ledger",
        "--to-datetime",
        "2023-11-15T00:13:21.000+02:00",
    ]);
    assert_eq!(
        table(&output),
        [header.clone(), row("0", "1"), row("1", "1")]
    );
    // Every record is older than an hour ago: the log end; all of them are younger than
    // 100 years ago: the log start.
    let output = reset(&["-t", "ledger", "--by-duration", "PT1H"]);
    assert_eq!(
        table(&output),
        [header.clone(), row("0", "5"), row("1", "1")]
    );
    let output = reset(&["-t", "ledger", "--by-duration", "P36500D"]);
    assert_eq!(
        table(&output),
        [header.clone(), row("0", "0"), row("1", "0")]
    );
    let output = reset(&["-t", "ledger", "--to-latest", "--execute"]);
    assert_eq!(
        table(&output),
        [header.clone(), row("0", "5"), row("1", "1")]
    );
    assert_eq!(
        committed(&broker, "auditors", "ledger", 2),
        [Some(5), Some(1)]
    );
    assert!(!reset(&["-t", "ledger:7", "--to-earliest"]).status.success());
    assert!(!reset(&["-t", "ledger", "--by-duration", "an hour"])
        .status
        .success());

    // An active member: refused, plan or not, and nothing changes.
    let mut member = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["consume", "ledger", "-g", "auditors", "-o", "beginning"])
        .args(["-b", &broker.bootstrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run runnel consume");
    common::wait_until("the member to join", TIMEOUT, || {
        ok(&broker, &["group", "describe", "auditors"], b"").contains("state Stable")
    });
    for execute in [false, true] {
        let mut args = vec!["-t", "ledger", "--to-earliest"];
        if execute {
            args.push("--execute");
        }
        let output = reset(&args);
        assert!(!output.status.success());
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(
                "Assignments can only be reset if the group 'auditors' is inactive, but the \
                 current state is Stable."
            ),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = member.kill();
    let _ = member.wait();
    assert_eq!(
        committed(&broker, "auditors", "ledger", 2),
        [Some(5), Some(1)]
    );
}

/// `-b` and `-X` mean the same in every client subcommand, before or after the subcommand's
/// own arguments, `bench` included: an unknown librdkafka property is refused by each, and
/// `bench produce` reaches a broker through `-b`.
#[test]
fn bootstrap_and_properties_work_in_every_subcommand() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_runnel"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run runnel")
    };
    for args in [
        &["topic", "list"][..],
        &["group", "list"][..],
        &["produce", "t"][..],
        &["consume", "t", "-e"][..],
        &["bench", "produce", "--num-records", "1"][..],
        &["bench", "consume", "--num-records", "1"][..],
        &["bench", "e2e", "--num-records", "1"][..],
    ] {
        let mut with = args.to_vec();
        with.extend_from_slice(&["-b", &bootstrap, "-X", "no.such.property=1"]);
        let output = run(&with);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains("no.such.property"), "{args:?}: {stderr}");
    }
    // -b before the subcommand's arguments, and the bench through it.
    let listed = run(&["topic", "-b", &bootstrap, "list"]);
    assert!(listed.status.success());
    let bench = run(&[
        "bench",
        "produce",
        "-b",
        &bootstrap,
        "--topic",
        "benched",
        "--partitions",
        "1",
        "--num-records",
        "50",
        "--record-size",
        "10",
        "-X",
        "client.id=bench-cli",
    ]);
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    let printed = ok(&broker, &["consume", "benched", "-e", "-f", "%o\\n"], b"");
    assert_eq!(lines(&printed).len(), 50);
}

/// Reads a `runnel server` process's stderr file until it says where it listens.
fn wait_for_listen(child: &mut std::process::Child, log: &std::path::Path) -> String {
    let mut address = None;
    common::wait_until("the server to listen", TIMEOUT, || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "the server exited: {text}"
        );
        address = text
            .lines()
            .find_map(|line| line.split("runnel listening on ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string);
        address.is_some()
    });
    address.expect("listening")
}

/// `runnel server --listen localhost:0` and `listeners=PLAINTEXT://localhost:0` (host names,
/// as Kafka's quickstarts write them) bind the name's address and advertise the name; an
/// unknown config key's warning suggests the key meant; the log on a file carries no colour
/// codes (NO_COLOR unset).
#[test]
fn the_server_takes_host_names_and_suggests_mistyped_keys_without_colour() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (index, listen) in [
        &["--listen", "localhost:0"][..],
        &["--override", "listeners=PLAINTEXT://localhost:0"][..],
    ]
    .into_iter()
    .enumerate()
    {
        let log = dir.path().join(format!("server-{index}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_runnel"))
            .arg("server")
            .args(listen)
            .args(["--override", "log.segment.byte=1048576", "--data-dir"])
            .arg(dir.path().join(format!("data-{index}")))
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start runnel server");
        let address: std::net::SocketAddr = wait_for_listen(&mut child, &log)
            .parse()
            .expect("an address");
        assert!(address.ip().is_loopback(), "{address}");
        let bootstrap = format!("localhost:{}", address.port());
        let created = Command::new(env!("CARGO_BIN_EXE_runnel"))
            .args(["topic", "create", "named", "-b", &bootstrap])
            .output()
            .expect("run runnel");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("consumer");
        let metadata = consumer.fetch_metadata(None, TIMEOUT).expect("metadata");
        assert_eq!(
            metadata.brokers()[0].host(),
            "localhost",
            "advertised as written"
        );
        assert_eq!(metadata.brokers()[0].port(), i32::from(address.port()));

        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().expect("wait for the server");
        assert!(status.success(), "{status}");
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(
            text.contains(
                "unknown config key log.segment.byte (ignored); did you mean log.segment.bytes?"
            ),
            "{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "colour codes in a log file: {text}"
        );
    }
}
