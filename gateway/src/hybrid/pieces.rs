//! Parity in the cloud: a [`PieceNet`] that stores the pieces whose "node" is a remote's
//! stand-in peer ([`super::parity_peer`]) as objects in that remote, under
//! `<prefix>.pieces/<piece id>`, and hands every other piece to the node network.
//!
//! A remote piece is as untrusted as a node's: readers verify it against its id like any other.
//! The remote cannot answer audit challenges (its integrity is the provider's promise and every
//! read's hash check), so stand-in peers are never audited.

use std::sync::Arc;

use bytes::Bytes;
use chunker::{Challenge, PieceId, Proof};
use futures::future::BoxFuture;
use futures::TryStreamExt;
use libp2p::PeerId;

use super::{RemoteError, Remotes, UploadMeta};
use crate::nodes::RemotePeers;
use crate::pieces::{PieceError, PieceNet};

/// Largest piece fetched from a remote (a piece is at most a few MiB).
const MAX_PIECE: u64 = 64 << 20;

/// Routes piece operations to the node network or to a bucket's remote.
pub struct RoutedPieces {
    nodes: Arc<dyn PieceNet>,
    remotes: Arc<Remotes>,
    peers: Arc<RemotePeers>,
}

impl std::fmt::Debug for RoutedPieces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedPieces").finish_non_exhaustive()
    }
}

impl RoutedPieces {
    /// Pieces of `peers` go to their bucket's remote in `remotes`, the rest through `nodes`.
    pub fn new(nodes: Arc<dyn PieceNet>, remotes: Arc<Remotes>, peers: Arc<RemotePeers>) -> Self {
        RoutedPieces {
            nodes,
            remotes,
            peers,
        }
    }

    /// The remote store and key of piece `id` if `peer` stands for a remote.
    async fn remote_of(
        &self,
        peer: PeerId,
        id: PieceId,
    ) -> Option<Result<(super::Remote, String), PieceError>> {
        let bucket = self.peers.bucket(&peer)?;
        Some(match self.remotes.get(&bucket).await {
            Ok(Some(remote)) => {
                let key = piece_key(&remote, id);
                Ok((remote, key))
            }
            Ok(None) => Err(PieceError::Unreachable {
                node: peer,
                reason: format!("bucket {bucket} has no remote"),
            }),
            Err(e) => Err(PieceError::Unreachable {
                node: peer,
                reason: e.to_string(),
            }),
        })
    }
}

/// Where piece `id` lives in `remote`.
/// Where parity pieces live in a remote, under its prefix: user keys here are refused in a
/// bucket with a remote, and never mirrored, so neither can touch a piece.
pub const PIECES_PREFIX: &str = ".pieces/";

fn piece_key(remote: &super::Remote, id: PieceId) -> String {
    remote.config.remote_key(&format!("{PIECES_PREFIX}{id}"))
}

fn piece_error(peer: PeerId, piece: PieceId, e: RemoteError) -> PieceError {
    match e {
        RemoteError::NotFound => PieceError::NotFound { node: peer, piece },
        RemoteError::Unavailable(reason) => PieceError::Unreachable { node: peer, reason },
        RemoteError::Refused(reason) | RemoteError::Unsupported(reason) => {
            PieceError::Refused { node: peer, reason }
        }
        e @ (RemoteError::Corrupt(_) | RemoteError::Source(_)) => PieceError::BadAnswer {
            node: peer,
            reason: e.to_string(),
        },
    }
}

impl PieceNet for RoutedPieces {
    fn put(
        &self,
        node: PeerId,
        id: PieceId,
        piece: Bytes,
    ) -> BoxFuture<'_, Result<(), PieceError>> {
        Box::pin(async move {
            let Some(remote) = self.remote_of(node, id).await else {
                return self.nodes.put(node, id, piece).await;
            };
            let (remote, key) = remote?;
            let len = piece.len() as u64;
            let body = futures::stream::once(async move { Ok(piece) });
            remote
                .store
                .put(&key, &UploadMeta::default(), len, Box::pin(body))
                .await
                .map_err(|e| piece_error(node, id, e))
        })
    }

    fn get(
        &self,
        node: PeerId,
        id: PieceId,
        range: Option<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<u8>, PieceError>> {
        Box::pin(async move {
            let Some(remote) = self.remote_of(node, id).await else {
                return self.nodes.get(node, id, range).await;
            };
            let (remote, key) = remote?;
            let fail = |e| piece_error(node, id, e);
            let range = match range {
                Some(r) => r,
                None => {
                    let found = remote.store.head(&key).await.map_err(fail)?;
                    let size = found.ok_or(PieceError::NotFound { node, piece: id })?.size;
                    0..size
                }
            };
            if range.end.saturating_sub(range.start) > MAX_PIECE {
                return Err(PieceError::BadAnswer {
                    node,
                    reason: format!("a piece of {} bytes is too large", range.end - range.start),
                });
            }
            let mut stream = remote.store.get(&key, range.clone()).await.map_err(fail)?;
            let mut out = Vec::with_capacity((range.end - range.start) as usize);
            while let Some(chunk) = stream.try_next().await.map_err(fail)? {
                if (out.len() + chunk.len()) as u64 > range.end - range.start {
                    return Err(fail(RemoteError::Corrupt(
                        "more bytes than asked for".into(),
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        })
    }

    fn delete(&self, node: PeerId, ids: Vec<PieceId>) -> BoxFuture<'_, Result<(), PieceError>> {
        Box::pin(async move {
            let Some(&first) = ids.first() else {
                return Ok(());
            };
            if self.peers.bucket(&node).is_none() {
                return self.nodes.delete(node, ids).await;
            }
            let bucket = self.peers.bucket(&node).unwrap_or_default();
            let remote = match self.remotes.get(&bucket).await {
                Ok(Some(remote)) => remote,
                // Unpaired (or the bucket deleted) since: its pieces there cannot be reached
                // any more, and retrying forever would not change that.
                Ok(None) => {
                    tracing::warn!(bucket, pieces = ids.len(), "the bucket has no remote any more; its parity pieces there are left behind");
                    return Ok(());
                }
                Err(e) => {
                    return Err(PieceError::Unreachable {
                        node,
                        reason: e.to_string(),
                    })
                }
            };
            for id in ids {
                remote
                    .store
                    .delete(&piece_key(&remote, id))
                    .await
                    .map_err(|e| piece_error(node, first, e))?;
            }
            Ok(())
        })
    }

    fn challenge(
        &self,
        node: PeerId,
        challenge: Challenge,
        deadline: std::time::Duration,
    ) -> BoxFuture<'_, Result<(Proof, Vec<u8>), PieceError>> {
        if self.peers.bucket(&node).is_some() {
            return Box::pin(async move {
                Err(PieceError::Refused {
                    node,
                    reason: "a remote bucket answers no challenges".into(),
                })
            });
        }
        self.nodes.challenge(node, challenge, deadline)
    }

    fn scrub_report(
        &self,
        node: PeerId,
        acknowledged: Vec<PieceId>,
    ) -> BoxFuture<'_, Result<Vec<PieceId>, PieceError>> {
        if self.peers.bucket(&node).is_some() {
            return Box::pin(async { Ok(Vec::new()) });
        }
        self.nodes.scrub_report(node, acknowledged)
    }
}
