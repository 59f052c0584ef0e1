//! The admin endpoint (on `admin_listen`): `/health` for load balancers and, behind a bearer
//! token, the JSON admin API that `gateway status` and `gateway audit export` read:
//!
//! - `GET /metrics` (no token): Prometheus text, see [`crate::metrics`].
//! - `GET /dashboard` (no token to load; the page asks for it): an HTML dashboard on the API.
//! - `GET /admin/v1/status`: nodes, capacity, queues (the summary).
//! - `GET /admin/v1/nodes`: every node with its state, reason, scores and audit counts.
//! - `GET /admin/v1/audits?node=ID&verdict=fail&since=MS&limit=N`: recent audits, newest last.
//! - `GET /admin/v1/audits/export?node=ID&since=MS`: full transcripts, one JSON object per line
//!   ([`ExportedAudit`]), for `gateway audit verify`.
//! - `GET /admin/v1/repair`: queue depth, the most endangered entries, counters.
//! - `GET /admin/v1/objects/{bucket}/{key}`: where one object's bytes are, per-segment health.
//! - Hybrid buckets' remotes and mirror queues: see [`hybrid`].
//! - Access keys and bucket grants: see [`keys`].
//!
//! The token lives in `<data_dir>/admin.token` (owner-only), created on first start.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::audit::ExportedAudit;
use crate::meta::{AuditRecord, Meta, RepairEntry, Verdict};
use crate::nodes::{node_id, Nodes};
use crate::repair::{Health, Repairer, SegmentHealth};
use crate::reputation::NodeState;

pub mod hybrid;
pub mod keys;
pub mod ledger;

/// File name of the admin token in the data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Reads the admin token, creating it on first use.
pub fn token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    if path.exists() {
        let t = crate::secrets::read_private(&path)?;
        return Ok(String::from_utf8_lossy(&t).trim().to_string());
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
    /// What the node says about itself: shown, never trusted.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Seconds since its last registration or heartbeat (`None`: not since this gateway
    /// started).
    pub last_seen_secs: Option<u64>,
    pub state: NodeState,
    /// The network its connection comes from, as this gateway sees it (while connected).
    #[serde(default)]
    pub network: Option<String>,
    /// The failure domain the operator gave it (`None`: a stranger).
    #[serde(default)]
    pub trusted_domain: Option<String>,
    /// Bytes of pieces it has taken from this gateway.
    #[serde(default)]
    pub stored_bytes: u64,
}

/// One node with its reputation, for `GET /admin/v1/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeDetail {
    #[serde(flatten)]
    pub status: NodeStatus,
    /// Why it is in its state.
    pub reason: String,
    pub audit_score: f64,
    pub online_score: f64,
    pub audits_passed: u64,
    pub audits_failed: u64,
    pub audits_timed_out: u64,
    pub audits_offline: u64,
    /// Pieces committed objects place on it.
    pub pieces: u64,
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
    /// Pieces per segment (`k + m`).
    pub segment_width: usize,
    /// Why a new segment cannot be placed now (`None`: writes can be placed).
    #[serde(default)]
    pub not_writable: Option<String>,
    /// Objects waiting for repair.
    pub repair_queue: u64,
    /// Pieces known lost or corrupt, not yet replaced.
    pub bad_pieces: u64,
    /// Keys of hybrid buckets whose remote copy is behind.
    #[serde(default)]
    pub mirror_queue: u64,
    /// Age of the oldest change not yet on its remote, over all buckets.
    #[serde(default)]
    pub mirror_lag_secs: u64,
    /// Segments by health as of the last census (`None` before the first one).
    pub segments: Option<crate::census::SegmentCensus>,
    /// Age of that census.
    pub census_age_secs: Option<u64>,
}

/// The parts of a gateway the admin API reads.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // holds the token
pub struct AdminState {
    pub nodes: Arc<Nodes>,
    pub meta: Arc<Meta>,
    /// Wraps the secrets of keys created through the API.
    pub master: Arc<chunker::MasterKey>,
    pub health: Arc<Health>,
    pub repairer: Arc<Repairer>,
    pub auditor: Arc<crate::audit::Auditor>,
    pub mirror: Arc<crate::mirror::Mirror>,
    pub tierer: Arc<crate::tier::Tierer>,
    pub census: Arc<crate::census::Census>,
    pub remotes: Arc<crate::hybrid::Remotes>,
    pub s3_metrics: Arc<crate::metrics::S3Metrics>,
    pub token: Arc<str>,
    pub segment_width: usize,
    /// Bytes of a full piece (what a segment's placement needs room for).
    pub piece_size: u64,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/admin/v1/status", get(status))
        .route("/admin/v1/nodes", get(nodes))
        .route("/admin/v1/audits", get(audits))
        .route("/admin/v1/audits/export", get(export))
        .route("/admin/v1/repair", get(repair))
        .route("/admin/v1/objects/{bucket}/{*key}", get(object_health))
        .merge(hybrid::routes())
        .merge(keys::routes())
        .merge(ledger::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(dashboard))
        .merge(api)
        .with_state(state)
}

/// Answers anything but a correct bearer token with 401.
async fn require_token(
    State(s): State<AdminState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if authorized(request.headers(), &s.token) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required\n",
        )
            .into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "admin API: metadata read failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "metadata read failed\n").into_response()
}

fn node_statuses(nodes: &Nodes) -> Vec<NodeStatus> {
    nodes
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
            state: n.state,
            network: n.network.clone(),
            trusted_domain: n.trusted_domain.clone(),
            stored_bytes: n.stored,
        })
        .collect()
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

async fn status(State(s): State<AdminState>) -> Response {
    let census = s.census.last();
    let nodes = node_statuses(&s.nodes);
    let online: Vec<&NodeStatus> = nodes.iter().filter(|n| n.online).collect();
    let counts = (|| {
        let buckets = s.meta.buckets()?.len();
        let delete_queue = s.meta.gc_nodes()?.iter().map(|(_, n)| n).sum();
        anyhow::Ok((
            buckets,
            delete_queue,
            s.meta.repair_depth()?,
            s.meta.bad_count()?,
            s.meta.mirror_backlog()?,
        ))
    })();
    let (buckets, delete_queue, repair_queue, bad_pieces, backlog) = match counts {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    Json(Status {
        nodes_online: online.len(),
        capacity_bytes: online.iter().map(|n| n.capacity_bytes).sum(),
        used_bytes: online.iter().map(|n| n.used_bytes).sum(),
        free_bytes: online.iter().map(|n| n.free_bytes).sum(),
        buckets,
        delete_queue,
        segment_width: s.segment_width,
        not_writable: s
            .nodes
            .writable(s.segment_width, s.piece_size)
            .err()
            .map(|e| e.to_string()),
        repair_queue,
        bad_pieces,
        mirror_queue: backlog.values().map(|b| b.depth).sum(),
        mirror_lag_secs: backlog
            .values()
            .map(|b| hybrid::Backlog::from(b).lag_secs)
            .max()
            .unwrap_or(0),
        segments: census.as_ref().map(|(_, c)| c.clone()),
        census_age_secs: census.as_ref().map(|(age, _)| age.as_secs()),
        nodes,
    })
    .into_response()
}

/// The dashboard page. It holds no data and needs no token to load: its script reads the admin
/// API with the token given in the address (`/dashboard#token=…`, never sent to the server as
/// such) or typed into it.
const DASHBOARD: &str = include_str!("dashboard.html");

/// `GET /dashboard`: nodes, segment health, repair, audits and mirrors, refreshed every 2 s, with
/// throughput and health charts of the last minutes (kept by the page).
async fn dashboard() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        DASHBOARD,
    )
        .into_response()
}

/// `GET /metrics`: Prometheus text (see [`crate::metrics`]).
async fn metrics(State(s): State<AdminState>) -> Response {
    use crate::metrics::Text;
    let mut t = Text::default();
    s.s3_metrics.render(&mut t);
    t.family("nodes", "gauge", "Known nodes by state and whether online.");
    let mut by_state: BTreeMap<(&str, bool), u64> = BTreeMap::new();
    for n in s.nodes.all() {
        *by_state.entry((n.state.as_str(), n.online)).or_default() += 1;
    }
    for ((state, online), n) in by_state {
        t.sample(
            "nodes",
            &format!("{{state=\"{state}\",online=\"{online}\"}}"),
            n as f64,
        );
    }
    t.single(
        "writable",
        "gauge",
        "1 if a new segment can be placed under the placement rules now, else 0 (see /admin/v1/status for why).",
        if s.nodes.writable(s.segment_width, s.piece_size).is_ok() { 1.0 } else { 0.0 },
    );
    t.family(
        "placement_candidates",
        "gauge",
        "Online nodes that may take new pieces, by how far placement trusts them.",
    );
    let mut by_trust: BTreeMap<&str, u64> =
        [("operator", 0), ("vetted", 0), ("unvetted", 0)].into();
    for c in s.nodes.candidates(s.piece_size) {
        let name = match c.trust {
            crate::placement::Trust::Operator => "operator",
            crate::placement::Trust::Vetted => "vetted",
            crate::placement::Trust::Unvetted => "unvetted",
        };
        *by_trust.entry(name).or_default() += 1;
    }
    for (trust, n) in by_trust {
        t.sample(
            "placement_candidates",
            &format!("{{trust=\"{trust}\"}}"),
            n as f64,
        );
    }
    let queues = (|| {
        let gc: u64 = s.meta.gc_nodes()?.iter().map(|(_, n)| n).sum();
        anyhow::Ok((s.meta.repair_depth()?, s.meta.bad_count()?, gc))
    })();
    let (repair_queue, bad, gc) = match queues {
        Ok(q) => q,
        Err(e) => return internal(e),
    };
    for (name, help, value) in [
        (
            "repair_queue_objects",
            "Objects waiting for repair.",
            repair_queue,
        ),
        (
            "bad_pieces",
            "Pieces known lost or corrupt, not yet replaced.",
            bad,
        ),
        (
            "delete_queue_pieces",
            "Pieces waiting to be deleted from nodes.",
            gc,
        ),
    ] {
        t.single(name, "gauge", help, value as f64);
    }
    if let Some((age, census)) = s.census.last() {
        t.family(
            "segments",
            "gauge",
            "Segments by health (full, degraded, repair_due, unreadable) at the last census.",
        );
        for (health, n) in census.by_health() {
            t.sample("segments", &format!("{{health=\"{health}\"}}"), n as f64);
        }
        t.single(
            "census_age_seconds",
            "gauge",
            "Age of the last segment census.",
            age.as_secs_f64(),
        );
    }
    t.family("audits_total", "counter", "Audits since start by verdict.");
    for (verdict, n) in s.auditor.counts.by_verdict() {
        t.sample(
            "audits_total",
            &format!("{{verdict=\"{}\"}}", verdict.as_str()),
            n as f64,
        );
    }
    let backlog = match s.meta.mirror_backlog() {
        Ok(b) => b,
        Err(e) => return internal(e),
    };
    for (name, help) in [
        (
            "mirror_queue_keys",
            "Keys of a hybrid bucket whose remote copy is behind.",
        ),
        (
            "mirror_lag_seconds",
            "Age of the oldest change not yet on the bucket's remote.",
        ),
    ] {
        t.family(name, "gauge", help);
        for (bucket, b) in &backlog {
            let value = match name {
                "mirror_queue_keys" => b.depth,
                _ => hybrid::Backlog::from(b).lag_secs,
            };
            t.sample(name, &format!("{{bucket=\"{bucket}\"}}"), value as f64);
        }
    }
    let r = &s.repairer.stats;
    let load =
        |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed) as f64;
    for (name, help, value) in [
        (
            "repaired_objects_total",
            "Objects repaired since start.",
            load(&r.objects_repaired),
        ),
        (
            "repaired_segments_total",
            "Segments repaired since start.",
            load(&r.segments_repaired),
        ),
        (
            "repair_pieces_placed_total",
            "Rebuilt pieces placed on nodes.",
            load(&r.pieces_placed),
        ),
        (
            "repair_fetched_bytes_total",
            "Piece bytes fetched to rebuild.",
            load(&r.bytes_fetched),
        ),
        (
            "repair_placed_bytes_total",
            "Rebuilt piece bytes placed.",
            load(&r.bytes_placed),
        ),
        (
            "repair_unrepairable_total",
            "Segment repairs put off: too few verified pieces.",
            load(&r.unrepairable),
        ),
        (
            "mirror_synced_total",
            "Remote copies of hybrid buckets brought up to date.",
            load(&s.mirror.stats.synced),
        ),
        (
            "mirror_failed_total",
            "Failed tries to update a remote copy (each is retried).",
            load(&s.mirror.stats.failed),
        ),
        (
            "tiered_objects_total",
            "Objects moved to their bucket's remote by its tier policy.",
            load(&s.tierer.stats.objects_tiered),
        ),
        (
            "tiered_bytes_total",
            "Bytes of objects moved to remotes by tier policies.",
            load(&s.tierer.stats.bytes_tiered),
        ),
    ] {
        t.single(name, "counter", help, value);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        t.0,
    )
        .into_response()
}

async fn nodes(State(s): State<AdminState>) -> Response {
    let mut out = Vec::new();
    for status in node_statuses(&s.nodes) {
        let Ok(peer) = status.id.parse::<libp2p::PeerId>() else {
            continue;
        };
        let id = node_id(&peer);
        let (reputation, pieces) = match (s.meta.reputation(&id), s.meta.held_count(&id)) {
            (Ok(r), Ok(p)) => (r, p),
            (Err(e), _) | (_, Err(e)) => return internal(e),
        };
        let r = reputation.unwrap_or_else(|| {
            crate::reputation::NodeReputation::new(&crate::reputation::Policy::default(), 0)
        });
        out.push(NodeDetail {
            status,
            reason: r.reason.clone(),
            audit_score: r.audit.score(),
            online_score: r.online.score(),
            audits_passed: r.passed,
            audits_failed: r.failed,
            audits_timed_out: r.timeouts,
            audits_offline: r.offline,
            pieces,
        });
    }
    Json(out).into_response()
}

/// Filters of the audit endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Only this node (its id).
    pub node: Option<String>,
    /// Only this verdict.
    pub verdict: Option<Verdict>,
    /// From this time on (ms since the epoch).
    pub since: Option<u64>,
    /// At most this many (the newest).
    pub limit: Option<usize>,
}

impl AuditQuery {
    fn matches(&self, r: &AuditRecord) -> bool {
        self.verdict.is_none_or(|v| v == r.verdict)
            && self
                .node
                .as_ref()
                .is_none_or(|n| crate::nodes::peer_of(&r.node).is_some_and(|p| p.to_string() == *n))
    }
}

/// One audit, summarized.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditSummary {
    pub time_ms: u64,
    pub node: String,
    pub piece: String,
    pub chunks: Vec<u32>,
    pub verdict: Verdict,
    pub detail: String,
}

async fn audits(State(s): State<AdminState>, Query(q): Query<AuditQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).min(10_000);
    let mut out = Vec::new();
    let scan = s.meta.audits_newest_first(q.since.unwrap_or(0), |r| {
        if q.matches(&r) {
            out.push(AuditSummary {
                time_ms: r.time_ms,
                node: crate::nodes::peer_of(&r.node).map_or_else(String::new, |p| p.to_string()),
                piece: r.challenge.piece_id().to_string(),
                chunks: r.challenge.indices().to_vec(),
                verdict: r.verdict,
                detail: r.detail,
            });
        }
        out.len() < limit
    });
    if let Err(e) = scan {
        return internal(e);
    }
    out.reverse();
    Json(out).into_response()
}

async fn export(State(s): State<AdminState>, Query(q): Query<AuditQuery>) -> Response {
    let mut body = String::new();
    let scan = s.meta.audits(q.since.unwrap_or(0), |r| {
        if q.matches(&r) {
            if let Ok(line) = serde_json::to_string(&ExportedAudit::from_record(&r)) {
                body.push_str(&line);
                body.push('\n');
            }
        }
        true
    });
    if let Err(e) = scan {
        return internal(e);
    }
    body.into_response()
}

/// What `GET /admin/v1/repair` returns.
#[derive(Debug, Serialize)]
struct RepairReport<'a> {
    queue_depth: u64,
    /// The most endangered entries (up to 100).
    queue: Vec<RepairEntry>,
    stats: &'a crate::repair::RepairStats,
    last_error: Option<String>,
}

async fn repair(State(s): State<AdminState>) -> Response {
    let (depth, queue) = match (s.meta.repair_depth(), s.meta.repair_queue(100)) {
        (Ok(d), Ok(q)) => (d, q),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    let last_error = s
        .repairer
        .stats
        .last_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Json(RepairReport {
        queue_depth: depth,
        queue,
        stats: &s.repairer.stats,
        last_error,
    })
    .into_response()
}

/// What `GET /admin/v1/objects/{bucket}/{key}` returns.
#[derive(Debug, Serialize)]
struct ObjectHealth {
    bucket: String,
    key: String,
    size: u64,
    /// Where its bytes are: `inline` (in the metadata), `nodes`, `remote` (the bucket's
    /// remote; also when the bucket mirrors and the mirror is up to date), `remote_parity`
    /// (parity pieces in the remote).
    locations: Vec<&'static str>,
    /// For a mirrored bucket: since when the remote copy is behind (`None`: up to date).
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror_behind_since_ms: Option<u64>,
    segments: Vec<SegmentHealth>,
}

async fn object_health(
    State(s): State<AdminState>,
    UrlPath((bucket, key)): UrlPath<(String, String)>,
) -> Response {
    let found = (|| {
        let Some(m) = s.meta.object(&bucket, &key)? else {
            return anyhow::Ok(None);
        };
        let mirrored = s.meta.remote(&bucket)?.is_some_and(|r| r.queue_writes);
        let behind = s.meta.mirror_entry(&bucket, &key)?;
        Ok(Some((m, mirrored, behind)))
    })();
    match found {
        Ok(Some((m, mirrored, behind))) => {
            let mut locations = vec![match m.body {
                chunker::manifest::Body::Inline { .. } => "inline",
                chunker::manifest::Body::Segments(_) => "nodes",
                chunker::manifest::Body::Remote { .. } => "remote",
            }];
            if mirrored && behind.is_none() && locations[0] != "remote" {
                locations.push("remote");
            }
            let stand_in = node_id(&crate::hybrid::parity_peer(&bucket));
            if crate::meta::placed_pieces(&m)
                .iter()
                .any(|p| p.node == stand_in)
            {
                locations.push("remote_parity");
            }
            Json(ObjectHealth {
                locations,
                mirror_behind_since_ms: behind.filter(|_| mirrored).map(|e| e.queued_ms),
                segments: s.health.report(&m),
                size: m.size,
                bucket,
                key,
            })
            .into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no such object\n").into_response(),
        Err(e) => internal(e),
    }
}

/// Fetches the status from a running gateway's admin endpoint.
pub async fn fetch_status(addr: std::net::SocketAddr, token: &str) -> anyhow::Result<Status> {
    let body = fetch(addr, token, "/admin/v1/status").await?;
    serde_json::from_str(&body).context("parse the status")
}

/// The body of a `GET` of `path` (with its query) from a running gateway's admin endpoint;
/// anything but 200 is an error.
pub async fn fetch(addr: std::net::SocketAddr, token: &str, path: &str) -> anyhow::Result<String> {
    let (status, body) = request(addr, token, "GET", path, None).await?;
    if status != 200 {
        anyhow::bail!("the admin endpoint answered {status}: {}", body.trim());
    }
    Ok(body)
}

/// Sends one request (a JSON body, if any) to a running gateway's admin endpoint (plain
/// HTTP/1.1); returns the status and the body (at most 1 GiB).
pub async fn request(
    addr: std::net::SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| {
            format!("connect to the admin endpoint {addr} (is the gateway running?)")
        })?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    conn.take(1 << 30).read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the admin endpoint sent no HTTP response")?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| {
            format!(
                "not an HTTP response: {}",
                head.lines().next().unwrap_or("")
            )
        })?;
    Ok((status, body.to_string()))
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
