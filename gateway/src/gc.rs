//! The delete worker: drains the metadata's delete queue to the nodes that are reachable, and
//! aborts multipart uploads abandoned for longer than `upload_ttl` (their parts' pieces join the
//! queue).
//!
//! Pieces become garbage in the same metadata write that stops referencing them (an overwrite, a
//! delete, an abandoned upload); this worker only carries that decision out. A node that is
//! offline keeps its queue until it comes back.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::meta::Meta;
use crate::nodes::{peer_of, Nodes};
use crate::pieces::PieceNet;

/// Pieces per delete request (the protocol's batch limit).
const BATCH: usize = storage_node::protocol::MAX_DELETE_BATCH;

/// Runs until `cancel` fires, one pass every `interval`.
pub async fn run(
    meta: Arc<Meta>,
    nodes: Arc<Nodes>,
    net: Arc<dyn PieceNet>,
    interval: Duration,
    upload_ttl: Duration,
    cancel: CancellationToken,
) {
    loop {
        match expire_uploads(&meta, upload_ttl) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(uploads = n, ttl = ?upload_ttl, "aborted abandoned multipart uploads")
            }
            Err(e) => tracing::warn!(error = %e, "expiring multipart uploads failed"),
        }
        match pass(&meta, &nodes, net.as_ref()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pieces = n, "deleted unreferenced pieces from nodes"),
            Err(e) => tracing::warn!(error = %e, "delete pass failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
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

/// One pass over the queue; returns how many pieces were deleted.
pub async fn pass(meta: &Meta, nodes: &Nodes, net: &dyn PieceNet) -> anyhow::Result<usize> {
    let mut done = 0;
    for (node, _count) in meta.gc_nodes()? {
        let Some(peer) = peer_of(&node) else {
            continue;
        };
        if !nodes.is_online(&peer) {
            continue;
        }
        loop {
            let batch = meta.gc_batch(&node, BATCH)?;
            if batch.is_empty() {
                break;
            }
            if let Err(e) = net.delete(peer, batch.clone()).await {
                tracing::debug!(%peer, error = %e, "delete batch failed; will retry");
                break;
            }
            meta.gc_done(&node, &batch)?;
            done += batch.len();
        }
    }
    Ok(done)
}
