//! The console's first page (`/`, `/api/topics`): the broker in one line, every topic (not
//! the internal ones) with its partition count, records, size, rates and damage, and the stray
//! partition directories found at start (kept, not served: [`crate::data_dir`]).

use std::fmt::Write;
use std::sync::Arc;

use serde::Serialize;

use super::rates::Rates;
use super::{blocking, escape, human_bytes, ConsoleError};
use crate::broker::Broker;

/// One topic's line.
#[derive(Debug, Serialize)]
pub struct TopicSummary {
    pub name: String,
    pub topic_id: String,
    pub partitions: usize,
    /// High watermark minus log start offset, summed over the partitions.
    pub records: i64,
    pub size_bytes: u64,
    /// Partitions with damaged ranges.
    pub damaged_partitions: usize,
    /// Config overrides set on the topic.
    pub config_overrides: usize,
    /// `None` until the console has sampled the topic twice.
    pub rates: Option<Rates>,
}

#[derive(Debug, Serialize)]
pub struct StrayDir {
    pub path: String,
    pub topic: String,
    pub partition: i32,
}

/// The first page.
#[derive(Debug, Serialize)]
pub struct TopicsView {
    pub node_id: i32,
    pub cluster_id: String,
    pub listener: String,
    pub data_dir: String,
    pub topics: Vec<TopicSummary>,
    pub stray_partition_dirs: Vec<StrayDir>,
}

pub async fn view(broker: &Arc<Broker>) -> Result<TopicsView, ConsoleError> {
    let broker = Arc::clone(broker);
    blocking(move || Ok(read(&broker))).await
}

fn read(broker: &Broker) -> TopicsView {
    let image = broker.controller.image();
    let topics = image
        .topics()
        .filter(|t| !t.is_internal())
        .map(|topic| {
            let mut summary = TopicSummary {
                name: topic.name.clone(),
                topic_id: topic.topic_id.to_string(),
                partitions: topic.partitions.len(),
                records: 0,
                size_bytes: 0,
                damaged_partitions: 0,
                config_overrides: topic.configs.len(),
                rates: broker.console_rates.rates(&topic.name),
            };
            for image in &topic.partitions {
                if let Some(partition) = broker.replicas.replica(&topic.name, image.partition) {
                    let offsets = partition.offsets();
                    summary.records += offsets.high_watermark - offsets.log_start_offset;
                    summary.size_bytes += partition.size_bytes();
                    if !partition.damaged_ranges().is_empty() {
                        summary.damaged_partitions += 1;
                    }
                }
            }
            summary
        })
        .collect();
    let listener = broker.advertised_listener();
    TopicsView {
        node_id: broker.config.node_id,
        cluster_id: broker.cluster_id.clone(),
        listener: format!("{}:{}", listener.host, listener.port),
        data_dir: broker.config.data_dir.display().to_string(),
        topics,
        stray_partition_dirs: broker
            .replicas
            .stray_partition_dirs()
            .into_iter()
            .map(|dir| StrayDir {
                path: dir.path.display().to_string(),
                topic: dir.topic,
                partition: dir.partition,
            })
            .collect(),
    }
}

pub fn html(view: &TopicsView) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "<p>Node {} of cluster <code>{}</code>, listening on <code>{}</code>, data in \
         <code>{}</code>.</p>",
        view.node_id,
        escape(&view.cluster_id),
        escape(&view.listener),
        escape(&view.data_dir),
    );
    if view.topics.is_empty() {
        out.push_str("<p>No topics.</p>\n");
    } else {
        out.push_str(
            "<table id=\"topics\"><tr><th>Topic</th><th>Partitions</th><th>Records</th>\
             <th>Size</th><th>In (B/s)</th><th>In (records/s)</th><th>Out (B/s)</th>\
             <th>Out (records/s)</th><th>Overrides</th><th>Damaged</th></tr>\n",
        );
        for topic in &view.topics {
            let rate = |f: fn(&Rates) -> f64| {
                topic
                    .rates
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |r| format!("{:.1}", f(r)))
            };
            let damaged = if topic.damaged_partitions > 0 {
                format!("<span class=\"bad\">{}</span>", topic.damaged_partitions)
            } else {
                "0".to_string()
            };
            let _ = writeln!(
                out,
                "<tr data-topic=\"{name}\"><td><a href=\"/topics/{name}\">{name}</a></td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{damaged}</td></tr>",
                topic.partitions,
                topic.records,
                human_bytes(topic.size_bytes),
                rate(|r| r.bytes_in_per_second),
                rate(|r| r.records_in_per_second),
                rate(|r| r.bytes_out_per_second),
                rate(|r| r.records_out_per_second),
                topic.config_overrides,
                name = escape(&topic.name),
            );
        }
        out.push_str("</table>\n");
    }
    stray_html(view, &mut out);
    out
}

fn stray_html(view: &TopicsView, out: &mut String) {
    let stray = &view.stray_partition_dirs;
    if stray.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<h2>Stray partition directories</h2>\n<p>{} director{} in the data directory that \
         the metadata does not name: kept untouched and not served. Move them away, or stop \
         the broker and run <code>runnel metadata rebuild</code> if the metadata lost them.</p>",
        stray.len(),
        if stray.len() == 1 { "y" } else { "ies" },
    );
    out.push_str("<table><tr><th>Directory</th><th>Topic</th><th>Partition</th></tr>\n");
    for dir in stray {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(&dir.path),
            escape(&dir.topic),
            dir.partition,
        );
    }
    out.push_str("</table>\n");
}
