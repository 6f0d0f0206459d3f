//! The web console (`GET /` on the HTTP port): one read-only page of what the broker holds,
//! rendered on the server, refreshed by the browser every few seconds. It shows the broker
//! (node, cluster id, listener, data directory), every topic (partitions, records, size, config
//! overrides) with its partitions' offsets, and the consumer groups (state, protocol, how
//! many partitions they committed, their total lag), and the stray partition directories found
//! at start (kept, not served: [`crate::data_dir`]). Viewing it changes nothing: it reads
//! the metadata image and the partitions, and the groups through [`crate::group_offsets`].

use std::fmt::Write;
use std::sync::Arc;

use crate::broker::Broker;
use crate::group_offsets::{self, GroupOffsets};

/// Seconds between the browser's reloads.
const REFRESH_S: u32 = 5;

/// The console page.
pub async fn page(broker: &Arc<Broker>) -> String {
    let groups = group_offsets::read(broker).await;
    let broker = Arc::clone(broker);
    tokio::task::spawn_blocking(move || render(&broker, &groups))
        .await
        .unwrap_or_else(|error| format!("<p>rendering failed: {}</p>", escape(&error.to_string())))
}

fn render(broker: &Broker, groups: &Result<Vec<GroupOffsets>, String>) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let listener = broker.advertised_listener();
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\"><title>Runnel</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse;margin-bottom:2em}}\
         th,td{{border:1px solid #ccc;padding:4px 10px;text-align:left}}\
         th{{background:#f3f3f3}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}\
         </style></head><body>\n<h1>Runnel</h1>\n<p>Node {} of cluster <code>{}</code>, \
         listening on <code>{}:{}</code>, data in <code>{}</code>. \
         <a href=\"/metrics\">Metrics</a> · <a href=\"/health\">Health</a></p>\n",
        broker.config.node_id,
        escape(&broker.cluster_id),
        escape(&listener.host),
        listener.port,
        escape(&broker.config.data_dir.display().to_string()),
    );
    render_topics(broker, &mut out);
    render_stray_dirs(broker, &mut out);
    out.push_str("<h2>Consumer groups</h2>\n");
    match groups {
        Err(error) => {
            let _ = writeln!(out, "<p>Groups unavailable: {}</p>", escape(error));
        }
        Ok(groups) if groups.is_empty() => out.push_str("<p>No groups.</p>\n"),
        Ok(groups) => {
            out.push_str(
                "<table><tr><th>Group</th><th>State</th><th>Protocol type</th>\
                 <th>Partitions committed</th><th>Lag</th></tr>\n",
            );
            for group in groups {
                let lag: i64 = group.lags(broker).map(|(_, _, lag)| lag).sum();
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
                     <td class=\"n\">{lag}</td></tr>",
                    escape(&group.group_id),
                    group.state,
                    escape(&group.protocol_type),
                    group.committed.len(),
                );
            }
            out.push_str("</table>\n");
        }
    }
    out.push_str("</body></html>\n");
    out
}

fn render_topics(broker: &Broker, out: &mut String) {
    let image = broker.controller.image();
    out.push_str("<h2>Topics</h2>\n");
    let topics: Vec<_> = image.topics().filter(|t| !t.is_internal()).collect();
    if topics.is_empty() {
        out.push_str("<p>No topics.</p>\n");
        return;
    }
    out.push_str(
        "<table><tr><th>Topic</th><th>Partition</th><th>Log start</th><th>High watermark</th>\
         <th>Log end</th><th>Size</th><th>Configs</th></tr>\n",
    );
    for topic in topics {
        let configs: Vec<String> = topic
            .configs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        for image in &topic.partitions {
            let Some(partition) = broker.replicas.partition(&topic.name, image.partition) else {
                continue;
            };
            let offsets = partition.offsets();
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                escape(&topic.name),
                image.partition,
                offsets.log_start_offset,
                offsets.high_watermark,
                offsets.log_end_offset,
                human_bytes(partition.size_bytes()),
                escape(&configs.join(", ")),
            );
        }
    }
    out.push_str("</table>\n");
}

/// The partition directories the metadata does not name, if any: kept on disk, not served.
fn render_stray_dirs(broker: &Broker, out: &mut String) {
    let stray = broker.replicas.stray_partition_dirs();
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
    for dir in &stray {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(&dir.path.display().to_string()),
            escape(&dir.topic),
            dir.partition,
        );
    }
    out.push_str("</table>\n");
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_escapes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(
            escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
