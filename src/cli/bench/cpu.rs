//! CPU time readings for the benchmark: the calling thread's (`getrusage(RUSAGE_THREAD)`) and
//! another process's (`/proc/PID/stat`), so figures can be given as CPU-seconds per GB.

use std::path::PathBuf;

use anyhow::Context;

/// Bytes in the GB of "CPU-seconds per GB" (decimal, as in the rest of `docs/benchmarks.md`).
pub const GB: f64 = 1e9;

/// User and system CPU seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTime {
    pub user_s: f64,
    pub system_s: f64,
}

impl CpuTime {
    pub fn total_s(self) -> f64 {
        self.user_s + self.system_s
    }

    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user_s: self.user_s - earlier.user_s,
            system_s: self.system_s - earlier.system_s,
        }
    }
}

/// The calling thread's CPU time so far (Linux `RUSAGE_THREAD`).
pub fn this_thread() -> anyhow::Result<CpuTime> {
    // SAFETY: `rusage` is plain old data; all-zero is a valid value for it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage` for the duration of the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage(RUSAGE_THREAD)");
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(CpuTime {
        user_s: seconds(usage.ru_utime),
        system_s: seconds(usage.ru_stime),
    })
}

/// A process's CPU time so far: utime and stime of `/proc/PID/stat`, all its threads.
pub fn process(pid: u32) -> anyhow::Result<CpuTime> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let stat =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    // The command name (field 2) is in parentheses and may hold spaces: fields after the last
    // ')' start at field 3 (state), so utime (14) and stime (15) are the 12th and 13th.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{}: no ')'", path.display()))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .map(|ticks| ticks as f64)
            .with_context(|| {
                format!(
                    "{}: field {} is not a tick count",
                    path.display(),
                    index + 3
                )
            })
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    anyhow::ensure!(per_second > 0, "sysconf(_SC_CLK_TCK) failed");
    Ok(CpuTime {
        user_s: ticks(11)? / per_second as f64,
        system_s: ticks(12)? / per_second as f64,
    })
}

/// The broker's CPU over a run, when `--broker-pid` is given.
pub struct BrokerCpu {
    pid: u32,
    before: CpuTime,
}

impl BrokerCpu {
    pub fn start(pid: Option<u32>) -> anyhow::Result<Option<BrokerCpu>> {
        pid.map(|pid| {
            Ok(BrokerCpu {
                pid,
                before: process(pid).context("--broker-pid")?,
            })
        })
        .transpose()
    }

    /// `broker_cpu_s` (and its user and system parts) and `broker_cpu_s_per_gb` for `bytes`.
    pub fn finish(broker: Option<BrokerCpu>, bytes: u64) -> anyhow::Result<super::stats::Figures> {
        let mut figures = super::stats::Figures::default();
        let Some(broker) = broker else {
            return Ok(figures);
        };
        let cpu = process(broker.pid)
            .context("--broker-pid")?
            .since(broker.before);
        let per_gb = cpu.total_s() / (bytes as f64 / GB).max(f64::EPSILON);
        figures.add("broker_cpu_s", cpu.total_s());
        figures.add("broker_cpu_user_s", cpu.user_s);
        figures.add("broker_cpu_system_s", cpu.system_s);
        figures.add("broker_cpu_s_per_gb", per_gb);
        figures.text = format!(
            "; broker CPU {:.2} s (user {:.2}, system {:.2}) = {per_gb:.3} CPU-s per GB",
            cpu.total_s(),
            cpu.user_s,
            cpu.system_s
        );
        Ok(figures)
    }
}
