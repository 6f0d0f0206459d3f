//! One topic (`/topics/{name}`, `/api/topics/{name}`): its partitions (log start offset, high
//! watermark, last stable offset, log end offset, size, segment count, leader and leader
//! epoch, damaged ranges) and every topic config with its value and source, as DescribeConfigs
//! reports them. The page also holds the record browser ([`super::records`]). An unknown topic
//! is a 404; nothing is created.

use std::fmt::Write;
use std::sync::Arc;

use serde::Serialize;

use super::brokers::source_name;
use super::records::RecordsView;
use super::{blocking, escape, human_bytes, ConsoleError};
use crate::broker::Broker;

#[derive(Debug, Serialize)]
pub struct DamageView {
    pub start_offset: i64,
    pub end_offset: i64,
    pub bytes: u64,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct PartitionView {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    /// False when the metadata names the partition but this node does not serve it.
    pub online: bool,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    /// The high watermark until transactions exist.
    pub last_stable_offset: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
    pub segments: usize,
    pub damaged_ranges: Vec<DamageView>,
}

#[derive(Debug, Serialize)]
pub struct ConfigView {
    pub name: String,
    pub value: String,
    /// Kafka's ConfigSource name: DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG.
    pub source: &'static str,
}

#[derive(Debug, Serialize)]
pub struct TopicView {
    pub name: String,
    pub topic_id: String,
    pub partitions: Vec<PartitionView>,
    pub configs: Vec<ConfigView>,
}

/// The topic `name`, or [`ConsoleError::NotFound`].
pub async fn view(broker: &Arc<Broker>, name: &str) -> Result<TopicView, ConsoleError> {
    let broker = Arc::clone(broker);
    let name = name.to_string();
    blocking(move || read(&broker, &name)).await
}

fn read(broker: &Broker, name: &str) -> Result<TopicView, ConsoleError> {
    let image = broker.controller.image();
    let topic = image
        .topic(name)
        .ok_or_else(|| ConsoleError::NotFound(format!("Topic '{name}' does not exist.")))?;
    let partitions = topic
        .partitions
        .iter()
        .map(|image| {
            let mut view = PartitionView {
                partition: image.partition,
                leader: image.leader,
                leader_epoch: image.leader_epoch,
                online: false,
                log_start_offset: -1,
                high_watermark: -1,
                last_stable_offset: -1,
                log_end_offset: -1,
                size_bytes: 0,
                segments: 0,
                damaged_ranges: Vec::new(),
            };
            if let Some(partition) = broker.replicas.replica(name, image.partition) {
                let offsets = partition.offsets();
                view.online = true;
                view.leader_epoch = partition.leader_epoch();
                view.log_start_offset = offsets.log_start_offset;
                view.high_watermark = offsets.high_watermark;
                view.last_stable_offset = offsets.high_watermark;
                view.log_end_offset = offsets.log_end_offset;
                (view.size_bytes, view.segments) =
                    partition.with_log(|log| (log.size_bytes(), log.segment_count()));
                view.damaged_ranges = partition
                    .damaged_ranges()
                    .into_iter()
                    .map(|range| DamageView {
                        start_offset: range.start_offset,
                        end_offset: range.end_offset,
                        bytes: range.bytes,
                        reason: range.reason,
                    })
                    .collect();
            }
            view
        })
        .collect();
    let configs = crate::topic_config::describe(&topic.configs, &broker.dynamic.view(), None)
        .into_iter()
        .map(|config| ConfigView {
            name: config.def.name.to_string(),
            value: config.value,
            source: source_name(config.source),
        })
        .collect();
    Ok(TopicView {
        name: topic.name.clone(),
        topic_id: topic.topic_id.to_string(),
        partitions,
        configs,
    })
}

pub fn html(view: &TopicView, records: &RecordsView) -> String {
    let mut out = String::with_capacity(8192);
    let _ = writeln!(
        out,
        "<p>Topic id <code>{}</code>, {} partition(s).</p>\n<h2>Partitions</h2>\n\
         <table id=\"partitions\"><tr><th>Partition</th><th>Leader</th><th>Leader epoch</th>\
         <th>Log start</th><th>High watermark</th><th>Last stable</th><th>Log end</th>\
         <th>Size</th><th>Segments</th><th>Damage</th></tr>",
        escape(&view.topic_id),
        view.partitions.len(),
    );
    for p in &view.partitions {
        let damage = if !p.online {
            "<span class=\"bad\">offline</span>".to_string()
        } else if p.damaged_ranges.is_empty() {
            "none".to_string()
        } else {
            let ranges: Vec<String> = p
                .damaged_ranges
                .iter()
                .map(|r| format!("{}–{}: {}", r.start_offset, r.end_offset, escape(&r.reason)))
                .collect();
            format!("<span class=\"bad\">{}</span>", ranges.join("<br>"))
        };
        let _ = writeln!(
            out,
            "<tr data-partition=\"{}\"><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{damage}</td></tr>",
            p.partition,
            p.partition,
            p.leader,
            p.leader_epoch,
            p.log_start_offset,
            p.high_watermark,
            p.last_stable_offset,
            p.log_end_offset,
            human_bytes(p.size_bytes),
            p.segments,
        );
    }
    out.push_str("</table>\n");
    super::records::html(view, records, &mut out);
    out.push_str(
        "<h2>Configs</h2>\n<table id=\"configs\"><tr><th>Name</th><th>Value</th>\
         <th>Source</th></tr>\n",
    );
    for config in &view.configs {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"v\">{}</td><td>{}</td></tr>",
            escape(&config.name),
            escape(&config.value),
            config.source,
        );
    }
    out.push_str("</table>\n");
    out
}
