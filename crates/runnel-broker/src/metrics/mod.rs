//! The broker's metrics, rendered in Prometheus' text format for `GET /metrics` ([`crate::http`]).
//!
//! What is counted as it happens, in [`BrokerMetrics`]: requests and their latency per API
//! (from the frame being read to its response written, as a client sees it), connections
//! accepted, refused (`max.connections`, `max.connections.per.ip`) and open, connections
//! closed for bad input or idleness (`connections.max.idle.ms`), and fetches parked waiting
//! for data; request memory reserved and connections waiting for it (`queued.max.request.bytes`)
//! are read from the pool when scraped. Per
//! partition, bytes and records produced and bytes fetched are counters on the partition
//! itself; its offsets, size and damaged ranges are read when scraped, as are each consumer
//! group's commits and lag ([`crate::group_offsets`]). The count of stray partition directories
//! (found at start, not named by the metadata, kept: [`crate::data_dir`]) is a gauge. The
//! counters are lock-free atomics. Every series is listed in `docs/metrics.md`.
//!
//! Departure from DESIGN.md §7 (`metrics` + `metrics-exporter-prometheus`): that facade keeps
//! one recorder per process, and a process may run several brokers (every integration test
//! does); each broker owns its figures here instead, and renders them itself.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runnel_protocol::api_versions::SERVED_APIS;
use runnel_protocol::messages::ApiKey;
use runnel_protocol::ErrorCode;

use crate::broker::Broker;
use crate::group_offsets::GroupOffsets;

mod partitions;
mod process;

/// Latency bucket upper bounds, in seconds (Prometheus `le`).
pub const LATENCY_BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Request versions counted per API; a higher one (never served) counts as the last.
const VERSIONS_MAX: usize = 20;
/// Error codes counted per API: -1 (UNKNOWN_SERVER_ERROR) up to `ERROR_CODES_MAX - 2`; a code
/// outside counts as -1.
const ERROR_CODES_MAX: usize = 160;

/// A latency histogram of lock-free counters, with [`LATENCY_BUCKETS_S`]' bounds.
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(bucket) = LATENCY_BUCKETS_S.iter().position(|le| seconds <= *le) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines of series `name` with `labels`
    /// (`key="value"` pairs joined by commas, or "").
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let total = self.count();
        let with_le = if labels.is_empty() {
            String::new()
        } else {
            format!("{labels},")
        };
        let mut cumulative = 0;
        for (le, count) in LATENCY_BUCKETS_S.iter().zip(&self.buckets) {
            // Observations are counted before their bucket is read here: never above total.
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{with_le}le=\"{le}\"}} {}",
                cumulative.min(total)
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{with_le}le=\"+Inf\"}} {total}");
        let sum_s = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braced} {sum_s}");
        let _ = writeln!(out, "{name}_count{braced} {total}");
    }
}

/// Where one request's time went, in the stages of Kafka's request metrics
/// (`kafka.network:type=RequestMetrics`), as Runnel's connection measures them (the mapping
/// is in `docs/metrics.md`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestStages {
    /// Frame read to its handler starting (Kafka's RequestQueueTimeMs).
    pub queue: Duration,
    /// The handler's own work, in the connection's reader (LocalTimeMs).
    pub local: Duration,
    /// Handler done to the writer taking the reply up, behind earlier responses of the
    /// connection (ResponseQueueTimeMs).
    pub response_queue: Duration,
    /// The writer awaiting a reply still being produced: a long-poll fetch, a produce waiting
    /// for fsync (acks), a JoinGroup waiting for its rebalance (RemoteTimeMs).
    pub remote: Duration,
    /// Writing the response to the socket (ResponseSendTimeMs).
    pub send: Duration,
}

/// One API's request figures.
pub struct ApiFigures {
    key: ApiKey,
    requests_by_version: [AtomicU64; VERSIONS_MAX],
    /// Error codes in responses, as Kafka's `errorCounts()` counts them (NONE included).
    errors_by_code: [AtomicU64; ERROR_CODES_MAX],
    total: Histogram,
    queue: Histogram,
    local: Histogram,
    response_queue: Histogram,
    remote: Histogram,
    send: Histogram,
}

impl ApiFigures {
    fn new(key: ApiKey) -> Self {
        ApiFigures {
            key,
            requests_by_version: std::array::from_fn(|_| AtomicU64::new(0)),
            errors_by_code: std::array::from_fn(|_| AtomicU64::new(0)),
            total: Histogram::default(),
            queue: Histogram::default(),
            local: Histogram::default(),
            response_queue: Histogram::default(),
            remote: Histogram::default(),
            send: Histogram::default(),
        }
    }

    /// Counts `count` occurrences of `code` in a response of this API.
    pub fn count_error(&self, code: i16, count: u64) {
        let slot = usize::try_from(i32::from(code) + 1)
            .ok()
            .filter(|slot| *slot < ERROR_CODES_MAX)
            .unwrap_or(0);
        self.errors_by_code[slot].fetch_add(count, Ordering::Relaxed);
    }
}

/// Counters of one broker, shared by its connections.
pub struct BrokerMetrics {
    apis: Vec<Arc<ApiFigures>>,
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_refused_per_ip: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_closed_bad_input: AtomicU64,
    pub connections_closed_idle: AtomicU64,
    /// Fetches parked waiting for data now (Kafka's fetch purgatory size).
    pub fetch_purgatory_size: AtomicU64,
    /// ISR changes this broker's partitions took as their leader asked (Kafka's
    /// `IsrShrinksPerSec` and `IsrExpandsPerSec`, as totals).
    pub isr_shrinks: AtomicU64,
    pub isr_expands: AtomicU64,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            apis: SERVED_APIS
                .iter()
                .map(|api| Arc::new(ApiFigures::new(api.key)))
                .collect(),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_refused_per_ip: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_closed_bad_input: AtomicU64::new(0),
            connections_closed_idle: AtomicU64::new(0),
            fetch_purgatory_size: AtomicU64::new(0),
            isr_shrinks: AtomicU64::new(0),
            isr_expands: AtomicU64::new(0),
        }
    }
}

impl BrokerMetrics {
    /// The figures of a served API (shared with its requests, which count their errors).
    pub fn api(&self, api: ApiKey) -> Option<Arc<ApiFigures>> {
        self.apis.iter().find(|f| f.key == api).cloned()
    }

    /// Counts one answered request of a served API, its latency and its stages.
    pub fn request_answered(
        &self,
        api: ApiKey,
        version: i16,
        latency: Duration,
        stages: &RequestStages,
    ) {
        let Some(figures) = self.apis.iter().find(|f| f.key == api) else {
            return;
        };
        let version = usize::try_from(version).unwrap_or(0).min(VERSIONS_MAX - 1);
        figures.requests_by_version[version].fetch_add(1, Ordering::Relaxed);
        figures.total.observe(latency);
        figures.queue.observe(stages.queue);
        figures.local.observe(stages.local);
        figures.response_queue.observe(stages.response_queue);
        figures.remote.observe(stages.remote);
        figures.send.observe(stages.send);
    }
}

/// Per-partition counters, kept on the partition.
#[derive(Default)]
pub struct PartitionMetrics {
    pub bytes_in: AtomicU64,
    pub records_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub records_out: AtomicU64,
}

/// The broker's metrics in Prometheus' text exposition format (version 0.0.4), with each
/// group's commits and lag from `groups`.
pub fn render(broker: &Broker, groups: &[GroupOffsets]) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let metrics = &broker.metrics;
    render_build_info(&mut out);
    process::render(&mut out);
    render_requests(metrics, &mut out);
    let connection_counters = [
        (
            "runnel_connections_accepted_total",
            "counter",
            "Connections accepted.",
            &metrics.connections_accepted,
        ),
        (
            "runnel_connections_refused_total",
            "counter",
            "Connections refused at max.connections.",
            &metrics.connections_refused,
        ),
        (
            "runnel_connections_refused_per_ip_total",
            "counter",
            "Connections refused at max.connections.per.ip (or the IP's override).",
            &metrics.connections_refused_per_ip,
        ),
        (
            "runnel_connections_closed_bad_input_total",
            "counter",
            "Connections closed for a bad frame, header or body.",
            &metrics.connections_closed_bad_input,
        ),
        (
            "runnel_connections_closed_idle_total",
            "counter",
            "Connections closed after connections.max.idle.ms without activity.",
            &metrics.connections_closed_idle,
        ),
        (
            "runnel_connections_open",
            "gauge",
            "Connections open now.",
            &metrics.connections_open,
        ),
        (
            "runnel_fetch_purgatory_size",
            "gauge",
            "Fetches parked now, waiting for data or their max_wait_ms.",
            &metrics.fetch_purgatory_size,
        ),
        (
            "runnel_isr_shrinks_total",
            "counter",
            "ISR shrinks this broker made as a partition leader (a follower fell behind).",
            &metrics.isr_shrinks,
        ),
        (
            "runnel_isr_expands_total",
            "counter",
            "ISR expansions this broker made as a partition leader (a follower caught up).",
            &metrics.isr_expands,
        ),
    ];
    for (name, kind, help, value) in connection_counters {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
    }
    header(
        &mut out,
        "runnel_stray_partition_dirs",
        "gauge",
        "Partition directories found at start that the metadata does not name: kept, not served.",
    );
    let stray = broker.replicas.stray_partition_dirs().len();
    let _ = writeln!(out, "runnel_stray_partition_dirs {stray}");
    let pool = &broker.request_memory;
    for (name, help, value) in [
        (
            "runnel_request_memory_bytes",
            "Request bytes reserved now against queued.max.request.bytes.",
            pool.reserved_bytes(),
        ),
        (
            "runnel_request_memory_waiting",
            "Connections waiting now for request memory (reading nothing meanwhile).",
            pool.waiting(),
        ),
        (
            "runnel_receive_buffers_cached_bytes",
            "Capacity of the idle request receive buffers cached for reuse.",
            broker.receive_buffers.cached_bytes() as u64,
        ),
        (
            "runnel_under_replicated_partitions",
            "Partitions this broker leads whose ISR is smaller than their replica set (Kafka's UnderReplicatedPartitions).",
            under_replicated(broker),
        ),
        (
            "runnel_replica_fetchers",
            "Source brokers this broker's replica fetchers copy partitions from now.",
            broker.fetchers.sources().len() as u64,
        ),
        (
            "runnel_transactions_ongoing",
            "Transactions open or being completed (Ongoing, PrepareCommit, PrepareAbort).",
            broker.txns.ongoing_transactions() as u64,
        ),
    ] {
        header(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    render_log(broker, &mut out);
    partitions::render_partitions(broker, &mut out);
    partitions::render_groups(broker, groups, &mut out);
    out
}

/// Partitions led here whose ISR is smaller than their replica set.
fn under_replicated(broker: &Broker) -> u64 {
    broker
        .replicas
        .all_partitions()
        .iter()
        .filter(|p| p.is_led_here() && p.has_followers())
        .filter(|p| {
            let set = p.replica_set_view();
            set.isr().len() < set.replicas().len()
        })
        .count() as u64
}

fn render_build_info(out: &mut String) {
    header(
        out,
        "runnel_build_info",
        "gauge",
        "1, labelled with the broker's version (and the git commit it was built from, if known).",
    );
    let commit = option_env!("RUNNEL_GIT_COMMIT").unwrap_or("unknown");
    let _ = writeln!(
        out,
        "runnel_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        escape(env!("CARGO_PKG_VERSION")),
        escape(commit)
    );
}

/// Per API: requests by version, errors by code, and the latency histograms, total and by
/// stage (only APIs that have been asked).
fn render_requests(metrics: &BrokerMetrics, out: &mut String) {
    header(
        out,
        "runnel_requests_total",
        "counter",
        "Requests answered, by API and version.",
    );
    for api in &metrics.apis {
        for (version, count) in api.requests_by_version.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                let _ = writeln!(
                    out,
                    "runnel_requests_total{{api=\"{:?}\",version=\"{version}\"}} {count}",
                    api.key
                );
            }
        }
    }
    render_errors(metrics, out);
    type Stage = fn(&ApiFigures) -> &Histogram;
    let histograms: [(&str, &str, Stage); 6] = [
        (
            "runnel_request_duration_seconds",
            "From a request's frame read to its response written, by API.",
            |f| &f.total,
        ),
        (
            "runnel_request_queue_time_seconds",
            "Frame read to its handler starting (Kafka's RequestQueueTimeMs).",
            |f| &f.queue,
        ),
        (
            "runnel_request_local_time_seconds",
            "The handler's own work (Kafka's LocalTimeMs).",
            |f| &f.local,
        ),
        (
            "runnel_request_remote_time_seconds",
            "Waiting for a long-poll, an fsync (acks) or a rebalance (Kafka's RemoteTimeMs).",
            |f| &f.remote,
        ),
        (
            "runnel_response_queue_time_seconds",
            "Waiting behind the connection's earlier responses (Kafka's ResponseQueueTimeMs).",
            |f| &f.response_queue,
        ),
        (
            "runnel_response_send_time_seconds",
            "Writing the response to the socket (Kafka's ResponseSendTimeMs).",
            |f| &f.send,
        ),
    ];
    for (name, help, stage) in histograms {
        header(out, name, "histogram", help);
        for api in &metrics.apis {
            let histogram = stage(api);
            if histogram.count() == 0 {
                continue;
            }
            histogram.render(out, name, &format!("api=\"{:?}\"", api.key));
        }
    }
}

/// Per API, the error codes its responses carried.
fn render_errors(metrics: &BrokerMetrics, out: &mut String) {
    header(
        out,
        "runnel_request_errors_total",
        "counter",
        "Error codes in responses, by API and code (NONE included), as Kafka's ErrorsPerSec.",
    );
    for api in &metrics.apis {
        for (slot, count) in api.errors_by_code.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let code = slot as i16 - 1;
            let name = ErrorCode::from_code(code)
                .map_or_else(|| code.to_string(), |c| c.name().to_string());
            let _ = writeln!(
                out,
                "runnel_request_errors_total{{api=\"{:?}\",error=\"{name}\"}} {count}",
                api.key
            );
        }
    }
}

/// The flusher's fsync latencies and failures, and the open segment files cache.
fn render_log(broker: &Broker, out: &mut String) {
    let flusher = broker.replicas.flush_figures();
    header(
        out,
        "runnel_log_flush_duration_seconds",
        "histogram",
        "One partition's fsync by the flusher, or one pass's syncfs calls with log.flush.syncfs (Kafka's LogFlushRateAndTimeMs).",
    );
    flusher
        .fsync
        .render(out, "runnel_log_flush_duration_seconds", "");
    header(
        out,
        "runnel_log_flush_errors_total",
        "counter",
        "Failed fsyncs (the partition's high watermark stays where it was).",
    );
    let _ = writeln!(
        out,
        "runnel_log_flush_errors_total {}",
        flusher.errors.load(Ordering::Relaxed)
    );
    header(
        out,
        "runnel_log_syncfs_total",
        "counter",
        "syncfs calls by the flusher, one per log directory per pass (log.flush.syncfs).",
    );
    let _ = writeln!(
        out,
        "runnel_log_syncfs_total {}",
        flusher.syncfs_calls.load(Ordering::Relaxed)
    );
    let stats = runnel_log::OpenFiles::global().stats();
    let direct = &runnel_log::direct_io::STATS;
    let (tail_bytes, pool_bytes) = runnel_log::direct_io::memory_bytes();
    for (name, kind, help, value) in [
        (
            "runnel_open_segment_files",
            "gauge",
            "Segment file handles the open files cache holds now.",
            stats.open as u64,
        ),
        (
            "runnel_open_segment_files_max",
            "gauge",
            "The open files cache's capacity (log.open.files.max).",
            stats.capacity as u64,
        ),
        (
            "runnel_open_segment_files_hits_total",
            "counter",
            "Segment file lookups served by a cached handle.",
            stats.hits,
        ),
        (
            "runnel_open_segment_files_misses_total",
            "counter",
            "Segment file lookups that opened the file.",
            stats.misses,
        ),
        (
            "runnel_open_segment_files_evictions_total",
            "counter",
            "Handles the cache closed to stay within its capacity.",
            stats.evictions,
        ),
        (
            "runnel_log_direct_writes_total",
            "counter",
            "O_DIRECT writes of direct appends (log.direct.io).",
            direct.writes.load(Ordering::Relaxed),
        ),
        (
            "runnel_log_direct_written_bytes_total",
            "counter",
            "Bytes those writes sent, the zero padding of each last block included.",
            direct.bytes.load(Ordering::Relaxed),
        ),
        (
            "runnel_log_direct_refused_total",
            "counter",
            "Segments whose filesystem refused O_DIRECT; their appends were written buffered.",
            direct.refused.load(Ordering::Relaxed),
        ),
        (
            "runnel_log_direct_tail_bytes",
            "gauge",
            "Bytes of aligned buffers held by active segments' tails now.",
            tail_bytes as u64,
        ),
        (
            "runnel_log_direct_pool_bytes",
            "gauge",
            "Bytes of idle aligned buffers kept for reuse.",
            pool_bytes as u64,
        ),
        (
            "runnel_log_direct_buffers_allocated_total",
            "counter",
            "Aligned buffers allocated because the pool had none of the size.",
            direct.buffers_allocated.load(Ordering::Relaxed),
        ),
    ] {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with Prometheus' escapes (topic names are `[a-zA-Z0-9._-]`, but be safe).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_cumulative_buckets() {
        let metrics = BrokerMetrics::default();
        let stages = RequestStages::default();
        metrics.request_answered(ApiKey::Produce, 9, Duration::from_micros(300), &stages);
        metrics.request_answered(ApiKey::Produce, 9, Duration::from_millis(30), &stages);
        metrics.request_answered(ApiKey::Produce, 99, Duration::from_secs(60), &stages);
        let produce = metrics.api(ApiKey::Produce).expect("served");
        assert_eq!(produce.requests_by_version[9].load(Ordering::Relaxed), 2);
        assert_eq!(
            produce.requests_by_version[VERSIONS_MAX - 1].load(Ordering::Relaxed),
            1
        );
        let buckets: Vec<u64> = produce
            .total
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(buckets[0], 1, "300 µs ≤ 0.5 ms");
        assert_eq!(buckets[6], 1, "30 ms ≤ 50 ms");
        assert_eq!(buckets.iter().sum::<u64>(), 2, "60 s only in +Inf");
        assert_eq!(produce.queue.count(), 3);
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn error_codes_are_counted_by_name() {
        let metrics = BrokerMetrics::default();
        let produce = metrics.api(ApiKey::Produce).expect("served");
        produce.count_error(0, 2);
        produce.count_error(3, 1);
        produce.count_error(i16::MAX, 1);
        let mut out = String::new();
        render_requests(&metrics, &mut out);
        assert!(out.contains("runnel_request_errors_total{api=\"Produce\",error=\"NONE\"} 2\n"));
        assert!(out.contains(
            "runnel_request_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 1\n"
        ));
        assert!(out.contains(
            "runnel_request_errors_total{api=\"Produce\",error=\"UNKNOWN_SERVER_ERROR\"} 1\n"
        ));
    }
}
