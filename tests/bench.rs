//! `runnel bench floor` and `runnel bench produce --broker-pid`: the figures issue 13's
//! benchmark reads, checked for consistency with what was sent (never for speed).

mod common;

use std::process::{Command, Output, Stdio};

use common::TestBroker;
use serde_json::Value;

fn runnel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run runnel")
}

/// The JSON summary of a successful `runnel bench ... --json`.
fn summary(args: &[&str]) -> Value {
    let mut with = args.to_vec();
    with.push("--json");
    let output = runnel(&with);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().expect("a summary line");
    serde_json::from_str(last).expect("the summary is JSON")
}

fn number(summary: &Value, key: &str) -> f64 {
    summary[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {summary}"))
}

/// Every byte is received and written in requests of the size asked, O_DIRECT writes padded
/// to 4096 bytes (or buffered with the reason given), the CPU figures add up, and the file
/// is gone afterwards.
#[test]
fn floor_receives_and_writes_every_byte_in_requests_of_the_size_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let total: u64 = 8 << 20;
    let request: u64 = 100_000;
    let requests = total.div_ceil(request);
    for buffered in [false, true] {
        let total_arg = total.to_string();
        let request_arg = request.to_string();
        let dir_arg = dir.path().to_str().expect("utf-8 path");
        let mut args = vec![
            "bench",
            "floor",
            "--dir",
            dir_arg,
            "--total-bytes",
            &total_arg,
            "--request-bytes",
            &request_arg,
        ];
        if buffered {
            args.push("--buffered");
        }
        let s = summary(&args);
        assert_eq!(s["mode"], "floor");
        assert_eq!(number(&s, "bytes") as u64, total, "{s}");
        assert_eq!(number(&s, "requests") as u64, requests, "{s}");
        assert_eq!(number(&s, "records") as u64, requests, "{s}");
        assert_eq!(number(&s, "errors") as u64, 0, "{s}");
        let last = total - (requests - 1) * request;
        let pad = |size: u64| size.div_ceil(4096) * 4096 - size;
        match s["method"].as_str() {
            Some("o_direct") => {
                assert!(!buffered, "{s}");
                assert!(s["fallback"].is_null(), "{s}");
                assert_eq!(
                    number(&s, "padded_bytes") as u64,
                    (requests - 1) * pad(request) + pad(last),
                    "{s}"
                );
            }
            Some("buffered") => {
                let reason = s["fallback"].as_str().unwrap_or_else(|| panic!("{s}"));
                assert!(
                    reason.contains(if buffered { "--buffered" } else { "O_DIRECT" }),
                    "{s}"
                );
                assert_eq!(number(&s, "padded_bytes") as u64, 0, "{s}");
            }
            other => panic!("method {other:?} in {s}"),
        }
        let user = number(&s, "receiver_cpu_user_s");
        let system = number(&s, "receiver_cpu_system_s");
        let cpu = number(&s, "receiver_cpu_s");
        assert!(user >= 0.0 && system >= 0.0 && cpu > 0.0, "{s}");
        assert!((user + system - cpu).abs() < 1e-9, "{s}");
        let gb = total as f64 / 1e9;
        assert!((number(&s, "cpu_s_per_gb") - cpu / gb).abs() < 1e-6, "{s}");
        assert!(
            (number(&s, "cpu_user_s_per_gb") - user / gb).abs() < 1e-6,
            "{s}"
        );
        assert!(s["latency_ms"]["p99"].as_f64().is_some(), "{s}");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("list dir").count(),
            0,
            "the floor's file is removed"
        );
    }
    let refused = runnel(&["bench", "floor", "--dir", "/tmp", "--request-bytes", "0"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--request-bytes"));
}

/// `--broker-pid` adds the broker's CPU, and its CPU per GB is that over the bytes produced;
/// the producer defaults stay Runnel's (batch.size 1 MiB, linger.ms 5). The broker here runs
/// in this test's process, so its pid is the broker's.
#[test]
fn produce_reports_the_broker_cpu_per_gb_of_the_pid_given() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    let pid = std::process::id().to_string();
    let s = summary(&[
        "bench",
        "produce",
        "-b",
        &bootstrap,
        "--topic",
        "cpu",
        "--num-records",
        "20000",
        "--broker-pid",
        &pid,
    ]);
    assert_eq!(number(&s, "records") as u64, 20_000, "{s}");
    assert_eq!(s["workload"]["batch_size"], 1 << 20, "{s}");
    assert_eq!(s["workload"]["linger_ms"], 5, "{s}");
    let cpu = number(&s, "broker_cpu_s");
    assert!(cpu >= 0.0, "{s}");
    assert!(
        (number(&s, "broker_cpu_user_s") + number(&s, "broker_cpu_system_s") - cpu).abs() < 1e-9,
        "{s}"
    );
    let per_gb = cpu / (number(&s, "bytes") / 1e9);
    assert!(
        (number(&s, "broker_cpu_s_per_gb") - per_gb).abs() < 1e-6,
        "{s}"
    );

    let without = summary(&[
        "bench",
        "produce",
        "-b",
        &bootstrap,
        "--topic",
        "cpu",
        "--num-records",
        "10",
    ]);
    assert!(without.get("broker_cpu_s").is_none(), "{without}");

    // A pid that is not running is an error, not a zero.
    let gone = runnel(&[
        "bench",
        "produce",
        "-b",
        &bootstrap,
        "--topic",
        "cpu",
        "--num-records",
        "10",
        "--broker-pid",
        "999999999",
    ]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("--broker-pid"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}

/// The summary carries librdkafka's own split of send→ack (its statistics every second: the
/// records' wait in its queue, the produce request's round trip), for a run long enough to
/// get a window; with `linger.ms` 5 at a low rate, batches leave on the linger, so the
/// queue's p99 is near it and the round trip is positive.
#[test]
fn produce_reports_librdkafka_queue_and_round_trip_windows() {
    let broker = TestBroker::start();
    let s = summary(&[
        "bench",
        "produce",
        "-b",
        &broker.bootstrap(),
        "--topic",
        "windows",
        "--num-records",
        "3000",
        "--throughput",
        "2000",
    ]);
    let windows = &s["librdkafka_window_p99"];
    let queue = windows["queue_p99_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("{s}"));
    let rtt = windows["rtt_p99_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("{s}"));
    assert!(queue > 1.0, "records waited for linger.ms 5: {s}");
    assert!(rtt > 0.0, "{s}");
}
