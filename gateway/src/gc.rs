//! The delete worker: drains the metadata's delete queue to the nodes that are reachable, and
//! aborts multipart uploads abandoned for longer than `upload_ttl` (their parts' pieces join the
//! queue).
//!
//! Pieces become garbage in the same metadata write that stops referencing them (an overwrite, a
//! delete, an abandoned upload); this worker carries that decision out, with two guards:
//! - a piece that was readable until it was queued ([`Garbage::Dropped`]) waits out `grace`, so
//!   a GET, copy or mirror upload that read the old manifest can still fetch it;
//! - just before a deletion is sent, the piece is looked up in the index of pieces committed
//!   manifests place (`held`): one found there is live again and is not deleted. (Writes that
//!   reference a piece also cancel its queued deletion in the same batch, so the look-up is a
//!   second check. Piece ids cannot recur across uploads, since no two attempts share a key and
//!   nonce; only a repair can place a piece on a node that once held it.)
//!
//! A node that is offline keeps its queue until it comes back.
//!
//! [`Garbage::Dropped`]: crate::meta::Garbage::Dropped

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::meta::{Meta, PieceRef};
use crate::nodes::{peer_of, Nodes};
use crate::pieces::PieceNet;

/// Pieces per delete request (the protocol's batch limit).
const BATCH: usize = storage_node::protocol::MAX_DELETE_BATCH;

/// The delete worker's settings.
#[derive(Debug, Clone, Copy)]
pub struct GcConfig {
    /// Pause between passes.
    pub interval: Duration,
    /// Multipart uploads older than this are aborted.
    pub upload_ttl: Duration,
    /// How long a piece that was readable waits before it is deleted.
    pub grace: Duration,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Pieces deleted from nodes.
    pub deleted: usize,
    /// Queued deletions dropped because a committed manifest places the piece again.
    pub kept: usize,
}

/// Runs until `cancel` fires, one pass every `interval`.
pub async fn run(
    meta: Arc<Meta>,
    nodes: Arc<Nodes>,
    net: Arc<dyn PieceNet>,
    config: GcConfig,
    cancel: CancellationToken,
) {
    loop {
        match expire_uploads(&meta, config.upload_ttl) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(uploads = n, ttl = ?config.upload_ttl, "aborted abandoned multipart uploads")
            }
            Err(e) => tracing::warn!(error = %e, "expiring multipart uploads failed"),
        }
        match pass(&meta, &nodes, net.as_ref(), config.grace).await {
            Ok(r) if r == PassReport::default() => {}
            Ok(r) => tracing::info!(
                pieces = r.deleted,
                kept = r.kept,
                "deleted unreferenced pieces from nodes"
            ),
            Err(e) => tracing::warn!(error = %e, "delete pass failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(config.interval) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Aborts every multipart upload started more than `ttl` ago; returns how many.
pub fn expire_uploads(meta: &Meta, ttl: Duration) -> anyhow::Result<usize> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let before = crate::time::now_ms().saturating_sub(ttl_ms);
    let mut aborted = 0;
    for (bucket, key, id) in meta.stale_uploads(before)? {
        if meta.abort_upload(&bucket, &key, &id)? {
            aborted += 1;
        }
    }
    Ok(aborted)
}

/// One pass over the queue: every due deletion of every reachable node.
pub async fn pass(
    meta: &Meta,
    nodes: &Nodes,
    net: &dyn PieceNet,
    grace: Duration,
) -> anyhow::Result<PassReport> {
    let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    let now = crate::time::now_ms();
    let mut report = PassReport::default();
    for (node, _count) in meta.gc_nodes()? {
        let Some(peer) = peer_of(&node) else {
            continue;
        };
        if !nodes.is_online(&peer) {
            continue;
        }
        let mut after = None;
        loop {
            let due = meta.gc_due(&node, after.as_ref(), BATCH, now, grace_ms)?;
            let Some(last) = due.last().copied() else {
                break;
            };
            after = Some(last);
            let mut batch = Vec::with_capacity(due.len());
            let mut live = Vec::new();
            for piece in due {
                let r = PieceRef {
                    node: node.clone(),
                    piece,
                };
                if meta.is_held(&r)? {
                    live.push(piece);
                } else {
                    batch.push(piece);
                }
            }
            if !live.is_empty() {
                tracing::warn!(%peer, pieces = live.len(), "queued deletions name pieces a committed object places; kept");
                meta.gc_done(&node, &live)?;
                report.kept += live.len();
            }
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = net.delete(peer, batch.clone()).await {
                tracing::debug!(%peer, error = %e, "delete batch failed; will retry");
                break;
            }
            meta.gc_done(&node, &batch)?;
            report.deleted += batch.len();
        }
    }
    Ok(report)
}
