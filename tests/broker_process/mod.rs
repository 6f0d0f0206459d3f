//! A `runnel server` run as a separate process, for tests whose failure is the process dying:
//! an abort or a panic must not take the test with it, and must be seen in the broker's log.
//!
//! The binary is `$RUNNEL_BIN` when set, else the one Cargo built for this test run. The broker
//! listens on `127.0.0.1:0` with a temporary data directory; its stderr (the log) goes to a file
//! in that directory, read back with [`BrokerProcess::log`]. Dropping a [`BrokerProcess`] kills
//! the process and waits for it, so a failing test never leaves a broker behind.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Log lines that mean the process did something it must never do.
pub const FATAL_LOG_MARKERS: &[&str] = &[
    "panicked",
    "memory allocation",
    "fatal runtime error",
    "stack overflow",
    "SIGSEGV",
    "abort",
];

pub struct BrokerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    log_path: PathBuf,
}

impl BrokerProcess {
    /// Starts `runnel server` with Kafka-named `--override`s and waits until it listens.
    pub fn start(overrides: &[(&str, &str)]) -> BrokerProcess {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let log_path = data_dir.path().join("broker.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let binary = std::env::var_os("RUNNEL_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_runnel")));
        let mut command = Command::new(binary);
        command
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path().join("data"))
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (key, value) in overrides {
            command.arg("--override").arg(format!("{key}={value}"));
        }
        let child = command.spawn().expect("start runnel server");
        let mut broker = BrokerProcess {
            child,
            addr: "127.0.0.1:0".parse().expect("address"),
            data_dir,
            log_path,
        };
        broker.addr = broker.wait_for_listen_address();
        broker
    }

    fn wait_for_listen_address(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.log();
            if let Some(addr) = log
                .lines()
                .find_map(|line| line.split("runnel listening on ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.parse().ok())
            {
                return addr;
            }
            assert!(self.is_alive(), "the broker exited at start:\n{log}");
            assert!(
                Instant::now() < deadline,
                "the broker did not listen:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's exit status, once it has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything the broker has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log lines that show a panic, an abort or an allocation failure.
    pub fn fatal_log_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| FATAL_LOG_MARKERS.iter().any(|marker| line.contains(marker)))
            .map(str::to_string)
            .collect()
    }

    /// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`), while the process runs.
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
