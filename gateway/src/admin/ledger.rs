//! Admin endpoints of the usage ledger (`gateway ledger` reads them):
//!
//! - `GET /admin/v1/ledger?from=MS&to=MS`: per node, the periods starting in `[from, to)`
//!   summed ([`crate::ledger::Report`]): measured, claimed and credited figures, how many
//!   periods are settled and how many with a receipt the node signed.
//! - `GET /admin/v1/ledger/statements?from=MS&to=MS&node=ID`: the signed statements themselves,
//!   one JSON object per line, for anyone to verify offline.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::{internal, AdminState};
use crate::nodes::node_id;

/// Most statements one export returns.
const MAX_STATEMENTS: usize = 1_000_000;

/// The range (and node) a ledger request covers.
#[derive(Debug, Deserialize)]
pub struct LedgerQuery {
    /// Periods starting at or after this (ms since the epoch; 0 if absent).
    pub from: Option<u64>,
    /// Periods starting before this (ms; unbounded if absent).
    pub to: Option<u64>,
    /// Only this node (peer id).
    pub node: Option<String>,
}

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/ledger", get(report))
        .route("/admin/v1/ledger/statements", get(statements))
}

async fn report(State(s): State<AdminState>, Query(q): Query<LedgerQuery>) -> Response {
    let (from, to) = (q.from.unwrap_or(0), q.to.unwrap_or(u64::MAX));
    let meta = s.meta.clone();
    match tokio::task::spawn_blocking(move || crate::ledger::report(&meta, from, to)).await {
        Ok(Ok(mut report)) => {
            if let Some(node) = &q.node {
                report.nodes.retain(|n| &n.node == node);
            }
            Json(report).into_response()
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn statements(State(s): State<AdminState>, Query(q): Query<LedgerQuery>) -> Response {
    let node = match q.node.as_deref().map(str::parse::<libp2p::PeerId>) {
        None => None,
        Some(Ok(peer)) => Some(node_id(&peer)),
        Some(Err(_)) => {
            return (StatusCode::BAD_REQUEST, "node: not a peer id\n").into_response();
        }
    };
    let (from, to) = (q.from.unwrap_or(0), q.to.unwrap_or(u64::MAX));
    let meta = s.meta.clone();
    let found = tokio::task::spawn_blocking(move || {
        crate::ledger::statements(&meta, from, to, node.as_ref(), MAX_STATEMENTS)
    })
    .await;
    match found {
        Ok(Ok(list)) => {
            let mut body = String::new();
            for statement in &list {
                if let Ok(line) = serde_json::to_string(statement) {
                    body.push_str(&line);
                    body.push('\n');
                }
            }
            body.into_response()
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}
