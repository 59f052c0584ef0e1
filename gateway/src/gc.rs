//! The delete worker: drains the metadata's delete queue to the nodes that are reachable.
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
    cancel: CancellationToken,
) {
    loop {
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
