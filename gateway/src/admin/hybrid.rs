//! Admin endpoints of hybrid buckets (`gateway remote` reads and writes them):
//!
//! - `GET /admin/v1/remotes`: every paired bucket with its remote (secrets removed), its mirror
//!   backlog, and the mirror worker's counters.
//! - `GET /admin/v1/buckets/{bucket}/remote`: one bucket's remote and backlog.
//! - `PUT /admin/v1/buckets/{bucket}/remote` with a JSON [`RemoteConfig`]: pairs the bucket
//!   (replacing an earlier pairing); with mirroring, the bucket's objects are queued.
//! - `DELETE /admin/v1/buckets/{bucket}/remote`: unpairs it, dropping queued mirror work.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{internal, AdminState};
use crate::hybrid::{ConfigError, RemoteConfig};
use crate::meta::{MetaError, MirrorBacklog};
use crate::time::now_ms;

/// A bucket's remote as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketRemote {
    pub bucket: String,
    /// Secrets removed.
    pub remote: RemoteConfig,
    pub backlog: Backlog,
}

/// A bucket's mirror queue.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Backlog {
    /// Keys whose remote copy is behind.
    pub queued: u64,
    /// Age of the oldest change not yet on the remote (0: up to date).
    pub lag_secs: u64,
    /// Queued keys that failed at least once.
    pub failing: u64,
}

impl From<&MirrorBacklog> for Backlog {
    fn from(b: &MirrorBacklog) -> Self {
        Backlog {
            queued: b.depth,
            lag_secs: b.oldest_ms.map_or(0, |t| now_ms().saturating_sub(t) / 1000),
            failing: b.failing,
        }
    }
}

/// What `GET /admin/v1/remotes` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemotesReport {
    pub buckets: Vec<BucketRemote>,
    /// Remote copies brought up to date since start.
    pub synced: u64,
    /// Failed tries since start (each is retried).
    pub failed: u64,
    /// Objects moved to remotes by tier policies since start.
    #[serde(default)]
    pub tiered: u64,
}

pub(super) fn routes() -> Router<AdminState> {
    Router::new().route("/admin/v1/remotes", get(list)).route(
        "/admin/v1/buckets/{bucket}/remote",
        get(show).put(set).delete(remove),
    )
}

fn config_error(e: ConfigError) -> Response {
    match e {
        ConfigError::Invalid(m) => (StatusCode::BAD_REQUEST, format!("{m}\n")).into_response(),
        ConfigError::Meta(MetaError::NoSuchBucket) => {
            (StatusCode::NOT_FOUND, "no such bucket\n").into_response()
        }
        e => internal(e),
    }
}

/// Every paired bucket with its backlog.
pub(super) fn report(s: &AdminState) -> Result<RemotesReport, ConfigError> {
    let backlog = s.meta.mirror_backlog()?;
    let buckets = s
        .remotes
        .all()?
        .into_iter()
        .map(|(bucket, remote)| BucketRemote {
            backlog: backlog.get(&bucket).map(Backlog::from).unwrap_or_default(),
            bucket,
            remote,
        })
        .collect();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    Ok(RemotesReport {
        buckets,
        synced: load(&s.mirror.stats.synced),
        failed: load(&s.mirror.stats.failed),
        tiered: load(&s.tierer.stats.objects_tiered),
    })
}

async fn list(State(s): State<AdminState>) -> Response {
    match report(&s) {
        Ok(r) => Json(r).into_response(),
        Err(e) => config_error(e),
    }
}

async fn show(State(s): State<AdminState>, UrlPath(bucket): UrlPath<String>) -> Response {
    match report(&s) {
        Ok(r) => match r.buckets.into_iter().find(|b| b.bucket == bucket) {
            Some(b) => Json(b).into_response(),
            None => (StatusCode::NOT_FOUND, "the bucket has no remote\n").into_response(),
        },
        Err(e) => config_error(e),
    }
}

async fn set(
    State(s): State<AdminState>,
    UrlPath(bucket): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let config: RemoteConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("the body is not a remote configuration: {e}\n"),
            )
                .into_response()
        }
    };
    match s.remotes.set(&bucket, &config) {
        Ok(()) => {
            tracing::info!(bucket, remote = %config.bucket, mirror = ?config.mirror, fallback = config.fallback, "bucket paired with a remote");
            show(State(s), UrlPath(bucket)).await
        }
        Err(e) => config_error(e),
    }
}

async fn remove(State(s): State<AdminState>, UrlPath(bucket): UrlPath<String>) -> Response {
    match s.remotes.remove(&bucket) {
        Ok(true) => {
            tracing::info!(bucket, "bucket unpaired from its remote");
            (StatusCode::OK, "removed\n").into_response()
        }
        Ok(false) => (StatusCode::NOT_FOUND, "the bucket has no remote\n").into_response(),
        Err(e) => config_error(e),
    }
}
