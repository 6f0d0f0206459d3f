//! The console's JSON API: one route per view, returning the figures the page shows
//! (`docs/console.md` lists the fields). Errors answer with their status (404 for an unknown
//! topic, group or partition, 400 for a bad query, 503 when the groups cannot be read) and a
//! body `{"error": "..."}`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::{brokers, groups, records, topic, topics, ConsoleError};
use crate::broker::Broker;

pub fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/topics", get(all_topics))
        .route("/api/topics/{name}", get(one_topic))
        .route("/api/topics/{name}/records", get(topic_records))
        .route("/api/groups", get(all_groups))
        .route("/api/groups/{id}", get(one_group))
        .route("/api/brokers", get(all_brokers))
}

/// A JSON answer, or an error with its status.
struct Json<T>(Result<T, ConsoleError>);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let json = [(CONTENT_TYPE, "application/json")];
        match self.0.map(|value| serde_json::to_string(&value)) {
            Ok(Ok(body)) => (json, body).into_response(),
            Ok(Err(error)) => {
                tracing::error!(%error, "encoding a console answer failed");
                let body = serde_json::json!({ "error": error.to_string() }).to_string();
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, json, body).into_response()
            }
            Err(error) => {
                let (status, message) = error.status();
                let body = serde_json::json!({ "error": message }).to_string();
                (status, json, body).into_response()
            }
        }
    }
}

async fn all_topics(State(broker): State<Arc<Broker>>) -> Json<topics::TopicsView> {
    Json(topics::view(&broker).await)
}

async fn one_topic(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
) -> Json<topic::TopicView> {
    Json(topic::view(&broker, &name).await)
}

async fn topic_records(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Json<records::RecordsView> {
    let read = async {
        let browse = records::Browse::parse(query.as_deref())?;
        records::read(&broker, &name, &browse).await
    };
    Json(read.await)
}

async fn all_groups(State(broker): State<Arc<Broker>>) -> Json<Vec<groups::GroupView>> {
    Json(groups::list(&broker).await)
}

async fn one_group(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
) -> Json<groups::GroupView> {
    Json(groups::one(&broker, &id).await)
}

async fn all_brokers(State(broker): State<Arc<Broker>>) -> Json<Vec<brokers::BrokerView>> {
    Json(brokers::view(&broker).await)
}
