//! The console's record browser (on `/topics/{name}`, and `/api/topics/{name}/records`):
//! the records of one partition from an offset, or its latest ones, with key, value, headers
//! and timestamp.
//!
//! Query: `partition` (default 0), `offset` (default: the latest `limit` records below the
//! high watermark), `limit` (default [`LIMIT_DEFAULT`], at most [`LIMIT_MAX`]).
//!
//! Bounds: at most [`READ_BYTES_MAX`] bytes are read from the log per request (whole batches,
//! as a fetch reads them; a batch larger than that is read whole, and is itself bounded by
//! `message.max.bytes`), at most [`LIMIT_MAX`] records returned, and each key, value and
//! header value is cut to [`SHOWN_BYTES_MAX`] bytes for display. Bytes that are not printable
//! UTF-8 are shown as `\xNN`, so binary data is safe to put on the page (and escaped again for
//! HTML). Only records below the high watermark are read, as a consumer would see them.
//! Departure: headers with the same key twice show only the last one (the decoder keeps a map).

use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;
use runnel_protocol::records::RecordBatchDecoder;
use serde::Serialize;

use super::topic::TopicView;
use super::{blocking, escape, ConsoleError};
use crate::broker::Broker;

pub const LIMIT_DEFAULT: usize = 20;
pub const LIMIT_MAX: usize = 100;
pub const READ_BYTES_MAX: usize = 1 << 20;
pub const SHOWN_BYTES_MAX: usize = 1024;
/// Reads of the log per request (each at most what is left of [`READ_BYTES_MAX`]).
const READS_MAX: usize = 8;

/// What the browser was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Browse {
    pub partition: i32,
    pub offset: Option<i64>,
    pub limit: usize,
}

impl Browse {
    /// Parses `partition=&offset=&limit=` (other keys are ignored).
    pub fn parse(query: Option<&str>) -> Result<Browse, ConsoleError> {
        let mut browse = Browse {
            partition: 0,
            offset: None,
            limit: LIMIT_DEFAULT,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if value.is_empty() {
                continue;
            }
            let bad = || ConsoleError::BadRequest(format!("{key}={value}: not a number"));
            match key {
                "partition" => browse.partition = value.parse().map_err(|_| bad())?,
                "offset" => browse.offset = Some(value.parse().map_err(|_| bad())?),
                "limit" => {
                    let limit: usize = value.parse().map_err(|_| bad())?;
                    browse.limit = limit.clamp(1, LIMIT_MAX);
                }
                _ => {}
            }
        }
        Ok(browse)
    }
}

/// One record, made safe to show.
#[derive(Debug, Serialize)]
pub struct RecordView {
    pub offset: i64,
    pub timestamp_ms: i64,
    /// `CreateTime` or `LogAppendTime`.
    pub timestamp_type: &'static str,
    pub key: Option<Shown>,
    pub value: Option<Shown>,
    pub headers: Vec<(String, Option<Shown>)>,
}

impl RecordView {
    fn of(record: runnel_protocol::records::Record) -> RecordView {
        RecordView {
            offset: record.offset,
            timestamp_ms: record.timestamp,
            timestamp_type: match record.timestamp_type {
                runnel_protocol::records::TimestampType::LogAppend => "LogAppendTime",
                runnel_protocol::records::TimestampType::Creation => "CreateTime",
            },
            key: record.key.as_deref().map(Shown::of),
            value: record.value.as_deref().map(Shown::of),
            headers: record
                .headers
                .iter()
                .map(|(k, v)| (printable(k.as_bytes()), v.as_deref().map(Shown::of)))
                .collect(),
        }
    }
}

/// Bytes as text: printable UTF-8 as is, other bytes as `\xNN`, cut at [`SHOWN_BYTES_MAX`].
#[derive(Debug, Serialize)]
pub struct Shown {
    pub text: String,
    /// The length of the whole field.
    pub bytes: usize,
    pub truncated: bool,
}

impl Shown {
    fn of(bytes: &[u8]) -> Shown {
        let cut = &bytes[..bytes.len().min(SHOWN_BYTES_MAX)];
        Shown {
            text: printable(cut),
            bytes: bytes.len(),
            truncated: cut.len() < bytes.len(),
        }
    }
}

/// `bytes` with every byte that is not part of printable UTF-8 (or a tab or newline) written
/// as `\xNN`, and a backslash as `\\`.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' | '\t' => out.push(c),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{byte:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// The records shown, and where they came from.
#[derive(Debug, Serialize)]
pub struct RecordsView {
    pub partition: i32,
    /// The offset read from (after the default or clamping to the log start offset).
    pub offset: i64,
    pub limit: usize,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub records: Vec<RecordView>,
    /// Why no records could be read from `offset` (a damaged range, a read error).
    pub error: Option<String>,
}

/// Reads what `browse` asks of topic `name`: 404 for an unknown topic or partition.
pub async fn read(
    broker: &Arc<Broker>,
    name: &str,
    browse: &Browse,
) -> Result<RecordsView, ConsoleError> {
    let broker = Arc::clone(broker);
    let name = name.to_string();
    let browse = *browse;
    blocking(move || read_blocking(&broker, &name, &browse)).await
}

fn read_blocking(
    broker: &Broker,
    name: &str,
    browse: &Browse,
) -> Result<RecordsView, ConsoleError> {
    if broker.controller.image().topic(name).is_none() {
        return Err(ConsoleError::NotFound(format!(
            "Topic '{name}' does not exist."
        )));
    }
    let partition = broker
        .replicas
        .partition(name, browse.partition)
        .ok_or_else(|| {
            ConsoleError::NotFound(format!(
                "Partition {} of topic '{name}' is not served here.",
                browse.partition
            ))
        })?;
    let offsets = partition.offsets();
    let limit = browse.limit.clamp(1, LIMIT_MAX);
    let latest = (offsets.high_watermark - limit as i64).max(offsets.log_start_offset);
    let from = browse
        .offset
        .unwrap_or(latest)
        .max(offsets.log_start_offset);
    let mut view = RecordsView {
        partition: browse.partition,
        offset: from,
        limit,
        log_start_offset: offsets.log_start_offset,
        high_watermark: offsets.high_watermark,
        records: Vec::new(),
        error: None,
    };
    let mut next = from;
    let mut bytes_left = READ_BYTES_MAX;
    for _ in 0..READS_MAX {
        if view.records.len() >= limit || next >= offsets.high_watermark || bytes_left == 0 {
            break;
        }
        let read = match partition.read(next, bytes_left, view.records.is_empty(), false) {
            Ok(read) => read,
            Err(error) => {
                view.error = Some(error.to_string());
                break;
            }
        };
        if read.records.length == 0 {
            break;
        }
        bytes_left = bytes_left.saturating_sub(read.records.length);
        let bytes = read
            .records
            .read_bytes()
            .map_err(|error| ConsoleError::Unavailable(format!("reading the log: {error}")))?;
        let decoded = match RecordBatchDecoder::decode_all(&mut Bytes::from(bytes)) {
            Ok(batches) => batches,
            Err(error) => {
                view.error = Some(format!("a batch does not decode: {error}"));
                break;
            }
        };
        let before = next;
        for record in decoded.into_iter().flat_map(|batch| batch.records) {
            if record.offset < next || record.control || view.records.len() >= limit {
                continue;
            }
            next = record.offset + 1;
            view.records.push(RecordView::of(record));
        }
        if next == before {
            // Only records below the asked offset (or control records): the batch's offsets
            // continue past them.
            next += 1;
        }
    }
    Ok(view)
}

/// The browser's form and table, on the topic's page.
pub fn html(topic: &TopicView, view: &RecordsView, out: &mut String) {
    let _ = writeln!(
        out,
        "<h2>Records</h2>\n<form id=\"browse\" method=\"get\" action=\"/topics/{name}\">\
         Partition <select name=\"partition\">",
        name = escape(&topic.name)
    );
    for p in &topic.partitions {
        let selected = if p.partition == view.partition {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<option value=\"{0}\"{selected}>{0}</option>",
            p.partition
        );
    }
    let _ = writeln!(
        out,
        "</select> from offset <input name=\"offset\" type=\"number\" min=\"0\" value=\"{}\"> \
         limit <input name=\"limit\" type=\"number\" min=\"1\" max=\"{LIMIT_MAX}\" value=\"{}\"> \
         <button type=\"submit\">Show</button> \
         <a href=\"/topics/{}?partition={}\">latest</a></form>\n\
         <p>Partition {}: offsets {} to {} readable.</p>",
        view.offset,
        view.limit,
        escape(&topic.name),
        view.partition,
        view.partition,
        view.log_start_offset,
        view.high_watermark,
    );
    if let Some(error) = &view.error {
        let _ = writeln!(out, "<p class=\"bad\">{}</p>", escape(error));
    }
    if view.records.is_empty() {
        out.push_str("<p id=\"no-records\">No records from this offset.</p>\n");
        return;
    }
    out.push_str(
        "<table id=\"records\"><tr><th>Offset</th><th>Timestamp</th><th>Key</th><th>Value</th>\
         <th>Headers</th></tr>\n",
    );
    let shown = |field: &Option<Shown>| match field {
        None => "<em>null</em>".to_string(),
        Some(shown) if shown.truncated => {
            format!("{}… ({} bytes)", escape(&shown.text), shown.bytes)
        }
        Some(shown) => escape(&shown.text),
    };
    for record in &view.records {
        let headers: Vec<String> = record
            .headers
            .iter()
            .map(|(key, value)| format!("{}: {}", escape(key), shown(value)))
            .collect();
        let _ = writeln!(
            out,
            "<tr data-offset=\"{}\"><td class=\"n\">{}</td><td>{} ({})</td>\
             <td class=\"v key\">{}</td><td class=\"v value\">{}</td><td class=\"v\">{}</td></tr>",
            record.offset,
            record.offset,
            utc(record.timestamp_ms),
            record.timestamp_type,
            shown(&record.key),
            shown(&record.value),
            headers.join("<br>"),
        );
    }
    out.push_str("</table>\n");
}

/// A timestamp in milliseconds as `YYYY-MM-DD HH:MM:SS.mmm UTC` (proleptic Gregorian).
pub fn utc(timestamp_ms: i64) -> String {
    let days = timestamp_ms.div_euclid(86_400_000);
    let ms_of_day = timestamp_ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_is_escaped_and_text_kept() {
        assert_eq!(printable(b"caf\xc3\xa9 \\ ok"), "café \\\\ ok");
        assert_eq!(printable(&[0x00, 0xff, b'a', 0x1b]), "\\x00\\xffa\\x1b");
        let long = vec![b'x'; SHOWN_BYTES_MAX + 5];
        let shown = Shown::of(&long);
        assert!(shown.truncated);
        assert_eq!(shown.bytes, SHOWN_BYTES_MAX + 5);
        assert_eq!(shown.text.len(), SHOWN_BYTES_MAX);
    }

    #[test]
    fn queries_parse_and_are_bounded() {
        let browse = Browse::parse(Some("partition=2&offset=10&limit=100000")).expect("parses");
        assert_eq!(
            browse,
            Browse {
                partition: 2,
                offset: Some(10),
                limit: LIMIT_MAX
            }
        );
        assert_eq!(
            Browse::parse(Some("offset=&x=y")).expect("parses").offset,
            None
        );
        assert!(matches!(
            Browse::parse(Some("offset=<script>")),
            Err(ConsoleError::BadRequest(_))
        ));
    }

    #[test]
    fn timestamps_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20.123 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59.999 UTC");
    }
}
