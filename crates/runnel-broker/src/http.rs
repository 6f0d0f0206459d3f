//! The broker's HTTP port (`http.listen`, off unless set): the web console and its JSON API
//! ([`crate::console`]: `/`, `/topics/…`, `/groups/…`, `/brokers`, `/api/…`), `GET /metrics`
//! in Prometheus' text format ([`crate::metrics`]) and `GET /health`, which answers 200 `ok`
//! while the broker serves. It stops with the broker, as does the console's rate sampler.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;

/// Prometheus' text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `address`; the caller serves the listener with [`serve`].
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves the console, `/metrics` and `/health` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(crate::console::rates::run(
        Arc::clone(&broker),
        shutdown.clone(),
    ));
    let app = Router::new()
        .merge(crate::console::routes())
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(broker);
    let stopping = async move { crate::server::stopped(&mut shutdown).await };
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(stopping)
        .await
    {
        tracing::error!(%error, "the HTTP port failed");
    }
}

async fn metrics(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let groups = crate::group_offsets::read(&broker)
        .await
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "group offsets unavailable for /metrics");
            Vec::new()
        });
    // Rendering takes each partition's lock briefly: off the async workers.
    let body = tokio::task::spawn_blocking(move || crate::metrics::render(&broker, &groups))
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, "rendering metrics failed");
            String::new()
        });
    ([(CONTENT_TYPE, METRICS_CONTENT_TYPE)], body)
}

async fn health() -> &'static str {
    "ok\n"
}
