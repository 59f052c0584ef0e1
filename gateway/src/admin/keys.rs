//! Admin endpoints of access keys and bucket grants (`gateway keys` uses them while the gateway
//! runs; every change is effective for the next request):
//!
//! - `GET /admin/v1/keys`: every key (no secrets) with its grants.
//! - `POST /admin/v1/keys` with `{"description": "…"}`: a new key; the answer holds its secret,
//!   shown this once.
//! - `POST /admin/v1/keys/{id}/disable`, `…/enable`; `DELETE /admin/v1/keys/{id}` (its grants go
//!   with it).
//! - `PUT /admin/v1/buckets/{bucket}/grants/{key}` with `{"grant": "read" | "write" | "owner"}`;
//!   `DELETE` of the same path takes the grant away.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{internal, AdminState};
use crate::meta::{Grant, MetaError};

/// A key as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub description: String,
    pub created_ms: u64,
    pub disabled: bool,
    /// `(bucket, grant)`, by bucket.
    pub grants: Vec<(String, Grant)>,
}

/// A new key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedKey {
    pub id: String,
    pub secret: String,
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
struct GrantBody {
    grant: Grant,
}

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/keys", axum::routing::get(list).post(create))
        .route("/admin/v1/keys/{id}", delete(remove))
        .route("/admin/v1/keys/{id}/disable", post(disable))
        .route("/admin/v1/keys/{id}/enable", post(enable))
        .route(
            "/admin/v1/buckets/{bucket}/grants/{key}",
            put(grant).delete(revoke),
        )
}

/// Every key with its grants.
pub fn key_infos(meta: &crate::meta::Meta) -> Result<Vec<KeyInfo>, MetaError> {
    let buckets = meta.buckets()?;
    let mut grants = Vec::with_capacity(buckets.len());
    for (name, _) in &buckets {
        grants.push((name.clone(), meta.grants(name)?));
    }
    Ok(meta
        .access_keys()?
        .into_iter()
        .map(|(id, r)| KeyInfo {
            grants: grants
                .iter()
                .flat_map(|(b, g)| {
                    g.0.iter()
                        .filter(|(k, _)| *k == id)
                        .map(move |(_, g)| (b.clone(), *g))
                })
                .collect(),
            id,
            description: r.description,
            created_ms: r.created_ms,
            disabled: r.disabled,
        })
        .collect())
}

async fn list(State(s): State<AdminState>) -> Response {
    match key_infos(&s.meta) {
        Ok(keys) => Json(keys).into_response(),
        Err(e) => internal(e),
    }
}

async fn create(State(s): State<AdminState>, body: axum::body::Bytes) -> Response {
    let body: CreateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("the body is not {{\"description\": …}}: {e}\n"),
            )
                .into_response()
        }
    };
    match crate::keys::create(&s.meta, &s.master, &body.description) {
        Ok(k) => {
            tracing::info!(key = %k.id, "access key created");
            Json(CreatedKey {
                id: k.id,
                secret: k.secret,
            })
            .into_response()
        }
        Err(e) => internal(e),
    }
}

fn no_key() -> Response {
    (StatusCode::NOT_FOUND, "no such access key\n").into_response()
}

async fn set_disabled(s: AdminState, id: String, disabled: bool) -> Response {
    match crate::keys::set_disabled(&s.meta, &id, disabled) {
        Ok(true) => {
            tracing::info!(key = %id, disabled, "access key changed");
            (
                StatusCode::OK,
                if disabled { "disabled\n" } else { "enabled\n" },
            )
                .into_response()
        }
        Ok(false) => no_key(),
        Err(e) => internal(e),
    }
}

async fn disable(State(s): State<AdminState>, UrlPath(id): UrlPath<String>) -> Response {
    set_disabled(s, id, true).await
}

async fn enable(State(s): State<AdminState>, UrlPath(id): UrlPath<String>) -> Response {
    set_disabled(s, id, false).await
}

async fn remove(State(s): State<AdminState>, UrlPath(id): UrlPath<String>) -> Response {
    match s.meta.delete_access_key(&id) {
        Ok(true) => {
            tracing::info!(key = %id, "access key deleted");
            (StatusCode::OK, "deleted\n").into_response()
        }
        Ok(false) => no_key(),
        Err(e) => internal(e),
    }
}

async fn set_grant(s: AdminState, bucket: String, key: String, grant: Option<Grant>) -> Response {
    match s.meta.access_key(&key) {
        Ok(Some(_)) => {}
        Ok(None) => return no_key(),
        Err(e) => return internal(e),
    }
    match s.meta.set_grant(&bucket, &key, grant) {
        Ok(()) => {
            tracing::info!(
                bucket,
                key,
                grant = grant.map_or("none", Grant::as_str),
                "bucket grant changed"
            );
            (StatusCode::OK, "ok\n").into_response()
        }
        Err(MetaError::NoSuchBucket) => (StatusCode::NOT_FOUND, "no such bucket\n").into_response(),
        Err(e) => internal(e),
    }
}

async fn grant(
    State(s): State<AdminState>,
    UrlPath((bucket, key)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    match serde_json::from_slice::<GrantBody>(&body) {
        Ok(b) => set_grant(s, bucket, key, Some(b.grant)).await,
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("the body is not {{\"grant\": \"read\" | \"write\" | \"owner\"}}: {e}\n"),
        )
            .into_response(),
    }
}

async fn revoke(
    State(s): State<AdminState>,
    UrlPath((bucket, key)): UrlPath<(String, String)>,
) -> Response {
    set_grant(s, bucket, key, None).await
}
