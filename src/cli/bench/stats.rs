//! Counting and reporting: a latency histogram, a live progress line, and the summary.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

/// Microsecond latencies up to an hour, 3 significant digits.
pub struct Latencies(Mutex<Histogram<u64>>);

impl Latencies {
    pub fn new() -> Latencies {
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("static histogram bounds are valid");
        Latencies(Mutex::new(histogram))
    }

    pub fn record(&self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
        let mut histogram = self.0.lock().expect("histogram lock poisoned");
        // Clamped into the histogram's bounds above, so recording cannot fail.
        let _ = histogram.record(micros);
    }

    /// avg, p50, p99, p99.9 and max in milliseconds, or `None` when nothing was recorded.
    pub fn summary_ms(&self) -> Option<[f64; 5]> {
        let histogram = self.0.lock().expect("histogram lock poisoned");
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some([
            histogram.mean() / 1000.0,
            ms(histogram.value_at_quantile(0.50)),
            ms(histogram.value_at_quantile(0.99)),
            ms(histogram.value_at_quantile(0.999)),
            ms(histogram.max()),
        ])
    }
}

/// Counters shared by the workers and the progress line.
#[derive(Default)]
pub struct Counters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Prints "N records, R rec/s, M MiB/s" on stderr every second until dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(label: &'static str, counters: Arc<Counters>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut last = (Instant::now(), 0u64, 0u64);
            while !stopping.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.0.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                let records = counters.records.load(Ordering::Relaxed);
                let bytes = counters.bytes.load(Ordering::Relaxed);
                let seconds = last.0.elapsed().as_secs_f64();
                eprint!(
                    "\r{label}: {records} records in {:.0} s, {:.0} records/s, {:.1} MiB/s   ",
                    started.elapsed().as_secs_f64(),
                    (records - last.1) as f64 / seconds,
                    (bytes - last.2) as f64 / seconds / (1024.0 * 1024.0),
                );
                let _ = std::io::stderr().flush();
                last = (Instant::now(), records, bytes);
            }
            eprintln!();
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Prints the result of a run: a line for people, or one JSON object with `--json`.
pub fn report(
    mode: &str,
    json_output: bool,
    counters: &Counters,
    elapsed: Duration,
    latencies: Option<&Latencies>,
    extra: serde_json::Value,
) {
    report_with(
        mode,
        json_output,
        counters,
        elapsed,
        latencies,
        extra,
        Figures::default(),
    );
}

/// Figures a subcommand adds to the summary: top-level JSON fields, and the same figures as
/// text appended to the line for people.
#[derive(Default)]
pub struct Figures {
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub text: String,
}

impl Figures {
    pub fn add(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.fields.insert(key.to_string(), value.into());
    }
}

/// [`report`] with figures of the subcommand's own (CPU per GB, the write method, …).
pub fn report_with(
    mode: &str,
    json_output: bool,
    counters: &Counters,
    elapsed: Duration,
    latencies: Option<&Latencies>,
    extra: serde_json::Value,
    figures: Figures,
) {
    let records = counters.records.load(Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    let records_per_s = records as f64 / seconds;
    let mib_per_s = bytes as f64 / seconds / (1024.0 * 1024.0);
    let latency = latencies.and_then(Latencies::summary_ms);
    if json_output {
        let latency = latency.map(|[avg, p50, p99, p999, max]| {
            json!({"avg": avg, "p50": p50, "p99": p99, "p999": p999, "max": max})
        });
        let mut summary = json!({
            "mode": mode,
            "records": records,
            "bytes": bytes,
            "errors": errors,
            "elapsed_s": seconds,
            "records_per_s": records_per_s,
            "mib_per_s": mib_per_s,
            "latency_ms": latency,
            "workload": extra,
        });
        if let Some(object) = summary.as_object_mut() {
            object.extend(figures.fields);
        }
        println!("{summary}");
        return;
    }
    print!(
        "{mode}: {records} records, {bytes} bytes in {seconds:.2} s: {records_per_s:.0} records/s, \
         {mib_per_s:.2} MiB/s, {errors} errors"
    );
    if let Some([avg, p50, p99, p999, max]) = latency {
        print!(
            "; latency ms avg {avg:.2}, p50 {p50:.2}, p99 {p99:.2}, p99.9 {p999:.2}, max {max:.2}"
        );
    }
    println!("{}", figures.text);
}
