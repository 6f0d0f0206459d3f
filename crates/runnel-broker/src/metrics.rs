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
use std::time::Duration;

use runnel_protocol::api_versions::SERVED_APIS;
use runnel_protocol::messages::ApiKey;

use crate::broker::Broker;
use crate::group_offsets::GroupOffsets;

/// Latency bucket upper bounds, in seconds (Prometheus `le`).
const LATENCY_BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Request versions counted per API; a higher one (never served) counts as the last.
const VERSIONS_MAX: usize = 20;

/// One API's request figures.
struct ApiFigures {
    key: ApiKey,
    requests_by_version: [AtomicU64; VERSIONS_MAX],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    latency_sum_us: AtomicU64,
}

/// Counters of one broker, shared by its connections.
pub struct BrokerMetrics {
    apis: Vec<ApiFigures>,
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_refused_per_ip: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_closed_bad_input: AtomicU64,
    pub connections_closed_idle: AtomicU64,
    /// Fetches parked waiting for data now (Kafka's fetch purgatory size).
    pub fetch_purgatory_size: AtomicU64,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            apis: SERVED_APIS
                .iter()
                .map(|api| ApiFigures {
                    key: api.key,
                    requests_by_version: std::array::from_fn(|_| AtomicU64::new(0)),
                    latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                    latency_sum_us: AtomicU64::new(0),
                })
                .collect(),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_refused_per_ip: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_closed_bad_input: AtomicU64::new(0),
            connections_closed_idle: AtomicU64::new(0),
            fetch_purgatory_size: AtomicU64::new(0),
        }
    }
}

impl BrokerMetrics {
    /// Counts one answered request of a served API and how long it took.
    pub fn request_answered(&self, api: ApiKey, version: i16, latency: Duration) {
        let Some(figures) = self.apis.iter().find(|f| f.key == api) else {
            return;
        };
        let version = usize::try_from(version).unwrap_or(0).min(VERSIONS_MAX - 1);
        figures.requests_by_version[version].fetch_add(1, Ordering::Relaxed);
        let seconds = latency.as_secs_f64();
        if let Some(bucket) = LATENCY_BUCKETS_S.iter().position(|le| seconds <= *le) {
            figures.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        figures
            .latency_sum_us
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Per-partition counters, kept on the partition.
#[derive(Default)]
pub struct PartitionMetrics {
    pub bytes_in: AtomicU64,
    pub records_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// The broker's metrics in Prometheus' text exposition format (version 0.0.4), with each
/// group's commits and lag from `groups`.
pub fn render(broker: &Broker, groups: &[GroupOffsets]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let metrics = &broker.metrics;
    header(
        &mut out,
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
    header(
        &mut out,
        "runnel_request_duration_seconds",
        "histogram",
        "From a request's frame read to its response written, by API.",
    );
    for api in &metrics.apis {
        let total: u64 = api
            .requests_by_version
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        if total == 0 {
            continue;
        }
        let mut cumulative = 0;
        for (le, count) in LATENCY_BUCKETS_S.iter().zip(&api.latency_buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "runnel_request_duration_seconds_bucket{{api=\"{:?}\",le=\"{le}\"}} {cumulative}",
                api.key
            );
        }
        let name = format!("{:?}", api.key);
        let sum_s = api.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "runnel_request_duration_seconds_bucket{{api=\"{name}\",le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "runnel_request_duration_seconds_sum{{api=\"{name}\"}} {sum_s}"
        );
        let _ = writeln!(
            out,
            "runnel_request_duration_seconds_count{{api=\"{name}\"}} {total}"
        );
    }
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
    ] {
        header(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    render_partitions(broker, &mut out);
    render_groups(broker, groups, &mut out);
    out
}

fn render_groups(broker: &Broker, groups: &[GroupOffsets], out: &mut String) {
    header(
        out,
        "runnel_group_committed_offset",
        "gauge",
        "A consumer group's committed offset.",
    );
    for group in groups {
        for (topic, partition, offset) in &group.committed {
            let _ = writeln!(
                out,
                "runnel_group_committed_offset{{group=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {offset}",
                escape(&group.group_id),
                escape(topic)
            );
        }
    }
    header(
        out,
        "runnel_group_lag",
        "gauge",
        "Records between a consumer group's commit and the partition's high watermark.",
    );
    for group in groups {
        for (topic, partition, lag) in group.lags(broker) {
            let _ = writeln!(
                out,
                "runnel_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {lag}",
                escape(&group.group_id),
                escape(topic)
            );
        }
    }
}

fn render_partitions(broker: &Broker, out: &mut String) {
    let mut partitions = broker.replicas.all_partitions();
    partitions.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
    let figures: Vec<_> = partitions
        .iter()
        .map(|p| (p, p.offsets(), p.size_bytes()))
        .collect();
    type Figure = fn(&crate::partition::PartitionOffsets, u64, &PartitionMetrics) -> u64;
    let series: [(&str, &str, &str, Figure); 7] = [
        (
            "runnel_partition_log_end_offset",
            "gauge",
            "The offset the next record gets.",
            |o, _, _| o.log_end_offset as u64,
        ),
        (
            "runnel_partition_high_watermark",
            "gauge",
            "Records below it are durable and readable.",
            |o, _, _| o.high_watermark as u64,
        ),
        (
            "runnel_partition_log_start_offset",
            "gauge",
            "The first offset still kept.",
            |o, _, _| o.log_start_offset as u64,
        ),
        (
            "runnel_partition_size_bytes",
            "gauge",
            "Bytes of the partition's segment files.",
            |_, size, _| size,
        ),
        (
            "runnel_partition_bytes_in_total",
            "counter",
            "Record batch bytes appended by producers.",
            |_, _, m| m.bytes_in.load(Ordering::Relaxed),
        ),
        (
            "runnel_partition_records_in_total",
            "counter",
            "Records appended by producers.",
            |_, _, m| m.records_in.load(Ordering::Relaxed),
        ),
        (
            "runnel_partition_bytes_out_total",
            "counter",
            "Record batch bytes sent to fetchers.",
            |_, _, m| m.bytes_out.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in series {
        header(out, name, kind, help);
        for (partition, offsets, size) in &figures {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                escape(&partition.topic),
                partition.index,
                value(offsets, *size, &partition.metrics)
            );
        }
    }
    render_damage(&partitions, out);
}

/// Per partition, the damaged ranges (offsets lost or corrupt below the recovery point, not
/// served) and the bytes of segment files they leave unserved.
fn render_damage(partitions: &[std::sync::Arc<crate::partition::Partition>], out: &mut String) {
    let damage: Vec<_> = partitions
        .iter()
        .map(|p| {
            let ranges = p.damaged_ranges();
            let bytes: u64 = ranges.iter().map(|r| r.bytes).sum();
            (p, ranges.len() as u64, bytes)
        })
        .collect();
    type DamageFigure = fn(u64, u64) -> u64;
    let series: [(&str, &str, DamageFigure); 2] = [
        (
            "runnel_partition_damaged_ranges",
            "Damaged offset ranges below the recovery point, refused to fetches.",
            |ranges, _| ranges,
        ),
        (
            "runnel_partition_damaged_bytes",
            "Bytes of segment files in damaged ranges, not served.",
            |_, bytes| bytes,
        ),
    ];
    for (name, help, value) in series {
        header(out, name, "gauge", help);
        for (partition, ranges, bytes) in &damage {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                escape(&partition.topic),
                partition.index,
                value(*ranges, *bytes)
            );
        }
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
        metrics.request_answered(ApiKey::Produce, 9, Duration::from_micros(300));
        metrics.request_answered(ApiKey::Produce, 9, Duration::from_millis(30));
        metrics.request_answered(ApiKey::Produce, 99, Duration::from_secs(60));
        let produce = metrics
            .apis
            .iter()
            .find(|f| f.key == ApiKey::Produce)
            .expect("served");
        assert_eq!(produce.requests_by_version[9].load(Ordering::Relaxed), 2);
        assert_eq!(
            produce.requests_by_version[VERSIONS_MAX - 1].load(Ordering::Relaxed),
            1
        );
        let buckets: Vec<u64> = produce
            .latency_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(buckets[0], 1, "300 µs ≤ 0.5 ms");
        assert_eq!(buckets[6], 1, "30 ms ≤ 50 ms");
        assert_eq!(buckets.iter().sum::<u64>(), 2, "60 s only in +Inf");
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
