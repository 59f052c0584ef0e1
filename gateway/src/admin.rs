//! The admin endpoint (on `admin_listen`): `/health` for load balancers and, behind a bearer
//! token, the JSON admin API that `gateway status` reads.
//!
//! The token lives in `<data_dir>/admin.token` (owner-only), created on first start.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::meta::Meta;
use crate::nodes::Nodes;

/// File name of the admin token in the data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Reads the admin token, creating it on first use.
pub fn token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let token = crate::digest::hex(&chunker::DataKey::generate()?.to_bytes());
    crate::secrets::write_new_secret(&path, token.as_bytes())?;
    Ok(token)
}

/// One node in the status report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: String,
    pub online: bool,
    pub software: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Seconds since its last registration or heartbeat (`None`: not since this gateway
    /// started).
    pub last_seen_secs: Option<u64>,
}

/// What `GET /admin/v1/status` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub nodes: Vec<NodeStatus>,
    pub nodes_online: usize,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub buckets: usize,
    /// Pieces waiting to be deleted from nodes.
    pub delete_queue: u64,
    /// Pieces per segment (`k + m`): fewer online nodes than this means writes are refused.
    pub segment_width: usize,
}

#[derive(Clone)]
struct AdminState {
    nodes: Arc<Nodes>,
    meta: Arc<Meta>,
    token: Arc<str>,
    segment_width: usize,
}

/// The admin router.
pub fn router(nodes: Arc<Nodes>, meta: Arc<Meta>, token: String, segment_width: usize) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/admin/v1/status", get(status))
        .with_state(AdminState {
            nodes,
            meta,
            token: token.into(),
            segment_width,
        })
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant-time comparison: the token is a secret.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn status(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if !authorized(&headers, &s.token) {
        return (
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required\n",
        )
            .into_response();
    }
    let nodes: Vec<NodeStatus> = s
        .nodes
        .all()
        .into_iter()
        .map(|n| NodeStatus {
            id: n.peer.to_string(),
            online: n.online,
            free_bytes: n.free(),
            software: n.registration.software.clone(),
            capacity_bytes: n.registration.capacity_bytes,
            used_bytes: n.registration.used_bytes,
            labels: n.registration.labels.clone(),
            last_seen_secs: n.last_seen.map(|t| t.elapsed().as_secs()),
        })
        .collect();
    let online: Vec<&NodeStatus> = nodes.iter().filter(|n| n.online).collect();
    let (buckets, delete_queue) = match (s.meta.buckets(), s.meta.gc_nodes()) {
        (Ok(b), Ok(g)) => (b.len(), g.iter().map(|(_, n)| n).sum()),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "admin status: metadata read failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "metadata read failed\n").into_response();
        }
    };
    Json(Status {
        nodes_online: online.len(),
        capacity_bytes: online.iter().map(|n| n.capacity_bytes).sum(),
        used_bytes: online.iter().map(|n| n.used_bytes).sum(),
        free_bytes: online.iter().map(|n| n.free_bytes).sum(),
        buckets,
        delete_queue,
        segment_width: s.segment_width,
        nodes,
    })
    .into_response()
}

/// Fetches the status from a running gateway's admin endpoint (a plain HTTP/1.1 GET).
pub async fn fetch_status(addr: std::net::SocketAddr, token: &str) -> anyhow::Result<Status> {
    use anyhow::Context;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| {
            format!("connect to the admin endpoint {addr} (is the gateway running?)")
        })?;
    let request = format!(
        "GET /admin/v1/status HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    conn.take(16 << 20).read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the admin endpoint sent no HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!(
            "the admin endpoint answered {}",
            head.lines().next().unwrap_or("")
        );
    }
    serde_json::from_str(body).context("parse the status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "secret"));
        h.insert("authorization", "Bearer secret".parse().unwrap());
        assert!(authorized(&h, "secret"));
        h.insert("authorization", "Bearer secreT".parse().unwrap());
        assert!(!authorized(&h, "secret"));
        h.insert("authorization", "Bearer secret2".parse().unwrap());
        assert!(!authorized(&h, "secret"));
        h.insert("authorization", "secret".parse().unwrap());
        assert!(!authorized(&h, "secret"));
    }
}
