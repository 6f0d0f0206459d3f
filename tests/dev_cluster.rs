//! `runnel dev-cluster`: three nodes as separate processes on the documented ports, which
//! librdkafka sees as one cluster of three brokers; a node killed is started again by hand
//! with the command the dev cluster printed; SIGINT stops every node and the command exits 0.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

const DEADLINE: Duration = Duration::from_secs(60);

/// A base port whose six ports (three nodes, two each) are free now, taken below Linux's
/// ephemeral range (32768-60999) so that no client socket can be handed one of them before
/// the nodes bind it.
fn free_base_port() -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    for attempt in 0..200u32 {
        let base = 20_000 + (seed.wrapping_add(attempt.wrapping_mul(7919)) % 12_000) as u16;
        if (base..base + 6).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return base;
        }
    }
    panic!("no six free consecutive ports");
}

fn brokers_seen(bootstrap: &str) -> Vec<(i32, u16)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut brokers: Vec<(i32, u16)> = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.port() as u16))
        .collect();
    brokers.sort_unstable();
    brokers
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `runnel dev-cluster` with three nodes from `base`, and returns it once it has
/// printed its plan (every node serves by then), with what it printed.
fn start_dev_cluster(base: u16, dir: &std::path::Path) -> (std::process::Child, Vec<String>) {
    let mut cluster = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args([
            "dev-cluster",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start dev-cluster");
    let lines = BufReader::new(cluster.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    for line in lines {
        let line = line.expect("a line");
        let done = line.starts_with("Ctrl-C");
        printed.push(line);
        if done {
            break;
        }
    }
    (cluster, printed)
}

#[test]
fn three_nodes_start_on_documented_ports_restart_by_hand_and_stop_on_sigint() {
    let base = free_base_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut cluster, printed) = start_dev_cluster(base, dir.path());
    let bootstrap = format!(
        "127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
        base,
        base + 2,
        base + 4
    );
    assert_eq!(
        printed[0],
        format!("bootstrap: {bootstrap}"),
        "{printed:#?}"
    );
    assert!(
        printed[1].starts_with(&format!(
            "node 1: client 127.0.0.1:{base}, controller 127.0.0.1:{}",
            base + 1
        )),
        "{printed:#?}"
    );
    // A node serves once the quorum has a leader; the other nodes' registrations reach its
    // image a moment later.
    let expected = vec![(1, base), (2, base + 2), (3, base + 4)];
    for port in [base, base + 2, base + 4] {
        wait_until(&format!("node on {port} to list every broker"), || {
            brokers_seen(&format!("127.0.0.1:{port}")) == expected
        });
    }

    // Node 3, killed, started again by hand with the printed command.
    let node3 = printed
        .iter()
        .filter(|l| l.starts_with("  "))
        .nth(2)
        .expect("node 3's command")
        .clone();
    let pid = String::from_utf8(
        Command::new("pgrep")
            .args(["-f", "node.id=3"])
            .output()
            .expect("pgrep")
            .stdout,
    )
    .expect("utf-8");
    let pids: Vec<i32> = pid
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let data = dir.path().display().to_string();
    let node3_pid = pids
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|cmdline| cmdline.contains(&data))
        })
        .expect("node 3's process");
    // SAFETY: kill(2) on a process of this test's dev cluster.
    unsafe { libc::kill(node3_pid, libc::SIGKILL) };
    // The dev cluster notices a node exiting by itself: it stops the others and fails.
    let status = cluster.wait().expect("dev-cluster exits");
    assert!(
        !status.success(),
        "a node exiting by itself fails dev-cluster"
    );
    wait_until("every node's port to close", || {
        [base, base + 2, base + 4]
            .iter()
            .all(|port| TcpStream::connect(("127.0.0.1", *port)).is_err())
    });
    // By hand: the printed commands start the nodes again, on the same data.
    let words: Vec<String> = node3
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .collect();
    let mut by_hand = Vec::new();
    for line in printed.iter().filter(|l| l.starts_with("  ")) {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.trim_matches('\'').to_string())
            .collect();
        by_hand.push(
            Command::new(&words[0])
                .args(&words[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a node by hand"),
        );
    }
    assert_eq!(words[1], "server");
    wait_until("the nodes started by hand to list three brokers", || {
        TcpStream::connect(("127.0.0.1", base + 4)).is_ok()
            && brokers_seen(&format!("127.0.0.1:{}", base + 4)) == expected
    });
    for mut node in by_hand {
        // SAFETY: SIGTERM to a child this test started.
        unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
        assert!(node.wait().expect("node exits").success());
    }

    // Started again, SIGINT stops every node and the command exits 0.
    let (mut cluster, _) = start_dev_cluster(base, dir.path());
    wait_until("the restarted cluster to list three brokers", || {
        brokers_seen(&bootstrap) == expected
    });
    // SAFETY: SIGINT to the dev cluster this test started.
    unsafe { libc::kill(cluster.id() as i32, libc::SIGINT) };
    assert!(cluster.wait().expect("dev-cluster exits").success());
    assert!([base, base + 2, base + 4]
        .iter()
        .all(|port| TcpStream::connect(("127.0.0.1", *port)).is_err()));
}
