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
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP storage_node_{name} {help}");
        let _ = writeln!(out, "# TYPE storage_node_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "storage_node_{name}{labels} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v)];
    metric("pieces", "gauge", "Pieces held.", &one(stats.pieces));
    metric(
        "used_bytes",
        "gauge",
        "Bytes of pieces held.",
        &one(stats.used_bytes),
    );
    metric(
        "capacity_bytes",
        "gauge",
        "Configured capacity.",
        &one(stats.capacity_bytes),
    );
    metric(
        "disk_free_bytes",
        "gauge",
        "Bytes the node can still take (capacity and disk).",
        &one(stats.disk_free_bytes),
    );
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
    metric(
        "refused_unauthorized_total",
        "counter",
        "Streams from peers that are not configured gateways.",
        &one(c.refused_unauthorized.load(Ordering::Relaxed)),
    );
    metric(
        "piece_bytes_received_total",
        "counter",
        "Piece bytes received in puts.",
        &one(c.bytes_in.load(Ordering::Relaxed)),
    );
    metric(
        "piece_bytes_sent_total",
        "counter",
        "Piece bytes sent in gets.",
        &one(c.bytes_out.load(Ordering::Relaxed)),
    );
    metric(
        "audits_answered_total",
        "counter",
        "Challenges answered with a proof.",
        &one(c.audits_answered.load(Ordering::Relaxed)),
    );
    metric(
        "audits_failed_total",
        "counter",
        "Challenges that could not be answered (missing or corrupt piece).",
        &one(c.audits_failed.load(Ordering::Relaxed)),
    );
    metric(
        "scrubbed_pieces_total",
        "counter",
        "Pieces re-hashed by the scrub.",
        &one(c.scrubbed.load(Ordering::Relaxed)),
    );
    metric(
        "scrub_corrupt_total",
        "counter",
        "Corrupt pieces the scrub found.",
        &one(c.scrub_corrupt.load(Ordering::Relaxed)),
    );
    metric(
        "last_scrub_finished_seconds",
        "gauge",
        "When the last full scrub pass ended (Unix time; 0: none since start).",
        &one(c.last_scrub_finished_ms.load(Ordering::Relaxed) / 1000),
    );
    out
}
