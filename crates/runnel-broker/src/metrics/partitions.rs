//! The per-partition and per-group series of `/metrics`: offsets, sizes, bytes and records in
//! and out, damaged ranges, partitions offline, and each consumer group's commits and lag.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{escape, header, PartitionMetrics};
use crate::broker::Broker;
use crate::group_offsets::GroupOffsets;

pub(super) fn render_groups(broker: &Broker, groups: &[GroupOffsets], out: &mut String) {
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
    let lags: Vec<_> = groups.iter().map(|group| group.lag(broker)).collect();
    header(
        out,
        "runnel_group_lag",
        "gauge",
        "High watermark minus the group's committed offset, per assigned or committed partition \
         with a commit (runnel_coordinator::consumer_lag).",
    );
    for (group, lag) in groups.iter().zip(&lags) {
        for partition in &lag.partitions {
            let Some(value) = partition.lag() else {
                continue;
            };
            let _ = writeln!(
                out,
                "runnel_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {value}",
                escape(&group.group_id),
                escape(&partition.topic),
                partition.partition
            );
        }
    }
    header(
        out,
        "runnel_group_total_lag",
        "gauge",
        "The sum of a group's known partition lags.",
    );
    for (group, lag) in groups.iter().zip(&lags) {
        let _ = writeln!(
            out,
            "runnel_group_total_lag{{group=\"{}\"}} {}",
            escape(&group.group_id),
            lag.total()
        );
    }
    header(
        out,
        "runnel_group_members",
        "gauge",
        "Members of a consumer group now.",
    );
    for group in groups {
        let _ = writeln!(
            out,
            "runnel_group_members{{group=\"{}\"}} {}",
            escape(&group.group_id),
            group.members.len()
        );
    }
}

pub(super) fn render_partitions(broker: &Broker, out: &mut String) {
    let mut partitions = broker.replicas.all_partitions();
    partitions.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
    let figures: Vec<_> = partitions
        .iter()
        .map(|p| (p, p.offsets(), p.size_bytes()))
        .collect();
    type Figure = fn(&crate::partition::PartitionOffsets, u64, &PartitionMetrics) -> u64;
    let series: [(&str, &str, &str, Figure); 10] = [
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
            "runnel_partition_last_stable_offset_lag",
            "gauge",
            "High watermark minus the last stable offset: records read_committed consumers wait \
             for (Kafka's LastStableOffsetLag).",
            |o, _, _| (o.high_watermark - o.last_stable_offset).max(0) as u64,
        ),
        (
            "runnel_partition_ongoing_transactions",
            "gauge",
            "Producers with a transaction open in the partition.",
            |o, _, _| o.ongoing_transactions as u64,
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
        (
            "runnel_partition_records_out_total",
            "counter",
            "Records in the batches sent to fetchers (the offsets they span).",
            |_, _, m| m.records_out.load(Ordering::Relaxed),
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
    render_offline(broker, &partitions, out);
}

/// How many partitions the metadata gives this node that it does not serve (offline: not
/// opened, or in a failed log directory, [`crate::log_dirs`]), and
/// how many it serves with damaged ranges.
fn render_offline(
    broker: &Broker,
    partitions: &[std::sync::Arc<crate::partition::Partition>],
    out: &mut String,
) {
    let image = broker.controller.image();
    let node = broker.config.node_id;
    let offline = image
        .topics()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .filter(move |p| p.leader == node)
                .map(move |p| (topic.name.as_str(), p.partition))
        })
        .filter(|(topic, index)| {
            // Not opened at start, or taken offline since with its log directory.
            broker
                .replicas
                .partition(topic, *index)
                .is_none_or(|partition| partition.is_offline())
        })
        .count();
    let damaged = partitions
        .iter()
        .filter(|p| !p.damaged_ranges().is_empty())
        .count();
    for (name, help, value) in [
        (
            "runnel_offline_partitions",
            "Partitions the metadata names that this node does not serve (Kafka's OfflinePartitionsCount).",
            offline,
        ),
        (
            "runnel_damaged_partitions",
            "Partitions served with at least one damaged range.",
            damaged,
        ),
    ] {
        header(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
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
