//! `/metrics` (Prometheus text format) and `/health` on the node's `metrics_listen` address:
//! what an operator watches — pieces and bytes held, capacity, requests by kind and result,
//! piece bytes in and out, audits answered, scrub progress.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::node::NodeService;

/// The metrics router.
pub fn router(service: Arc<NodeService>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let service = service.clone();
                async move {
                    (
                        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
                        render(&service),
                    )
                        .into_response()
                }
            }),
        )
}

/// Binds `addr` and serves the router until `cancel` fires; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    service: Arc<NodeService>,
    cancel: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen for metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let serve = axum::serve(listener, router(service))
            .with_graceful_shutdown(async move { cancel.cancelled().await });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    });
    Ok(bound)
}

/// The metrics, in Prometheus' text exposition format.
pub fn render(service: &NodeService) -> String {
    let stats = service.stats();
    let c = &service.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP storage_node_{name} {help}");
        let _ = writeln!(out, "# TYPE storage_node_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "storage_node_{name}{labels} {value}");
        }
    };
    let single: [(&str, &str, &str, u64); 13] = [
        ("pieces", "gauge", "Pieces held.", stats.pieces),
        (
            "lanes_up",
            "gauge",
            "Data lanes to gateways that are up.",
            load(&c.lanes_up),
        ),
        (
            "used_bytes",
            "gauge",
            "Bytes of pieces held.",
            stats.used_bytes,
        ),
        (
            "capacity_bytes",
            "gauge",
            "Configured capacity.",
            stats.capacity_bytes,
        ),
        (
            "disk_free_bytes",
            "gauge",
            "Bytes the node can still take (capacity and disk).",
            stats.disk_free_bytes,
        ),
        (
            "refused_unauthorized_total",
            "counter",
            "Streams from peers that are not configured gateways.",
            load(&c.refused_unauthorized),
        ),
        (
            "piece_bytes_received_total",
            "counter",
            "Piece bytes received in puts.",
            load(&c.bytes_in),
        ),
        (
            "piece_bytes_sent_total",
            "counter",
            "Piece bytes sent in gets.",
            load(&c.bytes_out),
        ),
        (
            "audits_answered_total",
            "counter",
            "Challenges answered with a proof.",
            load(&c.audits_answered),
        ),
        (
            "audits_failed_total",
            "counter",
            "Challenges that could not be answered (missing or corrupt piece).",
            load(&c.audits_failed),
        ),
        (
            "scrubbed_pieces_total",
            "counter",
            "Pieces re-hashed by the scrub.",
            load(&c.scrubbed),
        ),
        (
            "scrub_corrupt_total",
            "counter",
            "Corrupt pieces the scrub found.",
            load(&c.scrub_corrupt),
        ),
        (
            "last_scrub_finished_seconds",
            "gauge",
            "When the last full scrub pass ended (Unix time; 0: none since start).",
            load(&c.last_scrub_finished_ms) / 1000,
        ),
    ];
    for (name, kind, help, value) in single {
        metric(name, kind, help, &[(String::new(), value)]);
    }
    let by_kind: Vec<(String, u64)> = c
        .requests_by_kind()
        .into_iter()
        .map(|((kind, result), n)| (format!("{{kind=\"{kind}\",result=\"{result}\"}}"), n))
        .collect();
    metric(
        "requests_total",
        "counter",
        "Requests from gateways by kind and result.",
        &by_kind,
    );
    out
}
