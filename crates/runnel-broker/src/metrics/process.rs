//! The process series every Prometheus client exports (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`), read from
//! `/proc/self` when scraped. Elsewhere than Linux they are left out. They describe the
//! process, which may run several brokers (tests do): each broker reports the same figures.

use std::fmt::Write;

use super::header;

/// Writes the process series that can be read.
pub(super) fn render(out: &mut String) {
    let Some(figures) = read() else {
        return;
    };
    for (name, kind, help, value) in [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            figures.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size, in bytes.",
            figures.resident_bytes as f64,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            figures.open_fds as f64,
        ),
        (
            "process_max_fds",
            "gauge",
            "The soft limit on open file descriptors (RLIMIT_NOFILE).",
            figures.max_fds as f64,
        ),
    ] {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

struct ProcessFigures {
    cpu_seconds: f64,
    resident_bytes: u64,
    open_fds: u64,
    max_fds: u64,
}

#[cfg(target_os = "linux")]
fn read() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks_per_second = if ticks_per_second > 0 {
        ticks_per_second as f64
    } else {
        100.0
    };
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let resident_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(ProcessFigures {
        cpu_seconds: ticks as f64 / ticks_per_second,
        resident_bytes: resident_kib * 1024,
        // The directory's own descriptor, open while it is read, is not counted.
        open_fds: open_fds.saturating_sub(1),
        max_fds: runnel_log::open_files::soft_open_files_limit().unwrap_or(0),
    })
}

#[cfg(not(target_os = "linux"))]
fn read() -> Option<ProcessFigures> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_process_figures_are_read() {
        let figures = super::read().expect("/proc/self is readable");
        assert!(figures.resident_bytes > 0);
        assert!(figures.open_fds >= 3, "stdin, stdout, stderr");
        assert!(figures.max_fds >= figures.open_fds);
    }
}
