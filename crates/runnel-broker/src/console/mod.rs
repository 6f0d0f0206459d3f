//! The web console on the HTTP port: read-only pages of what the broker holds, rendered on the
//! server (plain HTML, a few lines of vanilla JavaScript for an optional auto-refresh), each
//! backed by a JSON API returning the same figures (`docs/console.md`).
//!
//! # Layout
//! - [`topics`]: `/` and `/api/topics`: the broker's summary and every topic with its
//!   partition count, records, size and rates; stray partition directories.
//! - [`topic`]: `/topics/{name}` and `/api/topics/{name}`: a topic's partitions (log start,
//!   high watermark, last stable offset, log end, size, segments, leader epoch, damage) and
//!   configs; [`records`] is its browser of records (`/api/topics/{name}/records`).
//! - [`groups`]: `/groups`, `/groups/{id}` and their APIs: groups, members, assignments and
//!   per-partition lag ([`runnel_coordinator::consumer_lag`], as `runnel group describe`).
//! - [`brokers`]: `/brokers` and `/api/brokers`: this node and its configs (through the
//!   DescribeConfigs handler, as a client sees them).
//! - [`rates`]: per-topic byte and record rates, from counters sampled in the broker.
//! - [`api`]: the JSON routes.
//!
//! Invariants: viewing changes nothing (the console never creates a topic or a group: an
//! unknown one is a 404); everything from topics, records, groups and clients is escaped
//! before it reaches the page; every list read for a page is bounded (records by count and
//! bytes, values cut for display).

mod api;
mod brokers;
mod groups;
pub mod rates;
mod records;
mod topic;
mod topics;

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::broker::Broker;

/// The console's routes, HTML and JSON.
pub fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/", get(topics_page))
        .route("/topics/{name}", get(topic_page))
        .route("/groups", get(groups_page))
        .route("/groups/{id}", get(group_page))
        .route("/brokers", get(brokers_page))
        .merge(api::routes())
}

/// Why a console request was not answered with a page.
#[derive(Debug)]
pub enum ConsoleError {
    /// No such topic, group or partition.
    NotFound(String),
    /// A query parameter that does not parse.
    BadRequest(String),
    /// What the page needs could not be read (the group coordinator's answer, a log read).
    Unavailable(String),
}

impl ConsoleError {
    fn status(&self) -> (StatusCode, &str) {
        match self {
            ConsoleError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            ConsoleError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ConsoleError::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, message),
        }
    }
}

/// An HTML page, or an error page with its status.
struct Page(Result<String, ConsoleError>);

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self.0 {
            Ok(html) => Html(html).into_response(),
            Err(error) => {
                let (status, message) = error.status();
                let body = layout(
                    status.as_str(),
                    &format!("<h2>{}</h2>\n<p>{}</p>\n", status, escape(message)),
                );
                (status, Html(body)).into_response()
            }
        }
    }
}

async fn topics_page(State(broker): State<Arc<Broker>>) -> Page {
    let view = topics::view(&broker).await;
    Page(view.map(|view| layout("Topics", &topics::html(&view))))
}

async fn topic_page(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Page {
    let page = async {
        let browse = records::Browse::parse(query.as_deref())?;
        let view = topic::view(&broker, &name).await?;
        let records = records::read(&broker, &name, &browse).await?;
        Ok(layout(&name, &topic::html(&view, &records)))
    };
    Page(page.await)
}

async fn groups_page(State(broker): State<Arc<Broker>>) -> Page {
    let view = groups::list(&broker).await;
    Page(view.map(|view| layout("Consumer groups", &groups::list_html(&view))))
}

async fn group_page(State(broker): State<Arc<Broker>>, Path(id): Path<String>) -> Page {
    let view = groups::one(&broker, &id).await;
    Page(view.map(|view| layout(&id, &groups::one_html(&view))))
}

async fn brokers_page(State(broker): State<Arc<Broker>>) -> Page {
    let view = brokers::view(&broker).await;
    Page(view.map(|view| layout("Brokers", &brokers::html(&view))))
}

/// Runs `f` (which takes partitions' locks briefly) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConsoleError> + Send + 'static,
) -> Result<T, ConsoleError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|error| ConsoleError::Unavailable(format!("rendering failed: {error}")))?
}

/// The page around `body`: title, navigation, style, the auto-refresh switch.
fn layout(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{} · Runnel</title><style>\
         body{{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222}}\
         nav a{{margin-right:1.2em}}\
         table{{border-collapse:collapse;margin-bottom:1.5em}}\
         th,td{{border:1px solid #ccc;padding:3px 9px;text-align:left;vertical-align:top}}\
         th{{background:#f3f3f3}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}\
         td.v{{font-family:monospace;white-space:pre-wrap;word-break:break-all;max-width:40em}}\
         .bad{{color:#b00020;font-weight:bold}}form{{margin:0.5em 0 1em}}\
         </style></head><body>\n<nav><strong>Runnel</strong> · <a href=\"/\">Topics</a>\
         <a href=\"/groups\">Groups</a><a href=\"/brokers\">Brokers</a>\
         <a href=\"/metrics\">Metrics</a>\
         <label><input type=\"checkbox\" id=\"refresh\"> refresh every 5 s</label></nav>\n\
         <h1 id=\"title\">{}</h1>\n",
        escape(title),
        escape(title),
    );
    out.push_str(body);
    out.push_str(
        "<script>\n\
         (function(){var box=document.getElementById('refresh');\
         box.checked=localStorage.getItem('runnel.refresh')==='1';\
         box.addEventListener('change',function(){\
         localStorage.setItem('runnel.refresh',box.checked?'1':'0');});\
         setInterval(function(){if(box.checked){location.reload();}},5000);})();\n\
         </script>\n</body></html>\n",
    );
    out
}

/// Text made safe for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment made safe for a URL (topic names are safe already; group ids may not be).
fn url_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
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

/// A figure, or Kafka's `-` when unknown.
fn dash(figure: Option<i64>) -> String {
    figure.map_or_else(|| "-".to_string(), |f| f.to_string())
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
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(url_segment("a b/ü"), "a%20b%2F%C3%BC");
    }
}
