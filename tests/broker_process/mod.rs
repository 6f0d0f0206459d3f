//! A `runnel server` run as a separate process, for tests whose failure is the process dying:
//! an abort or a panic must not take the test with it, and must be seen in the broker's log.
//!
//! The binary is `$RUNNEL_BIN` when set, else the one Cargo built for this test run. The broker
//! listens on `127.0.0.1:0` with a temporary data directory; its stderr (the log) goes to a file
//! in that directory, read back with [`BrokerProcess::log`]. [`BrokerProcess::stop`] (SIGTERM),
//! [`BrokerProcess::kill9`] and [`BrokerProcess::restart`] on the same data directory are for
//! tests of what a restart finds. Dropping a [`BrokerProcess`] kills
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
        let child = spawn(data_dir.path(), &log_path, overrides);
        let mut broker = BrokerProcess {
            child,
            addr: "127.0.0.1:0".parse().expect("address"),
            data_dir,
            log_path,
        };
        broker.addr = broker.wait_for_listen_address();
        broker
    }

    /// The broker's data directory (`log.dirs`), inside the temporary directory.
    pub fn data_path(&self) -> PathBuf {
        self.data_dir.path().join("data")
    }

    /// Stops the broker with SIGTERM (an orderly shutdown) and waits until it has exited;
    /// returns whether it exited with status 0.
    pub fn stop(&mut self) -> bool {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid");
        // SAFETY: signalling our own child, which has not been waited for yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
        self.wait_for_exit().success()
    }

    /// Kills the broker with SIGKILL (no shutdown at all) and waits until it is gone.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// Starts a broker again on the same data directory (after [`BrokerProcess::stop`] or
    /// [`BrokerProcess::kill9`]), logging to a new file, and waits until it listens.
    pub fn restart(&mut self, overrides: &[(&str, &str)]) {
        assert!(!self.is_alive(), "restart of a running broker");
        let starts = (1..)
            .find(|n| {
                !self
                    .data_dir
                    .path()
                    .join(format!("broker-{n}.log"))
                    .exists()
            })
            .expect("a free log name");
        self.log_path = self.data_dir.path().join(format!("broker-{starts}.log"));
        self.child = spawn(self.data_dir.path(), &self.log_path, overrides);
        self.addr = self.wait_for_listen_address();
    }

    fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Spawns `runnel server` on `<temp>/data`, its log in `log_path`.
fn spawn(temp: &Path, log_path: &Path, overrides: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(log_path).expect("log file");
    let binary = std::env::var_os("RUNNEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_runnel")));
    let mut command = Command::new(binary);
    command
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(temp.join("data"))
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
    command.spawn().expect("start runnel server")
}

impl BrokerProcess {
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
