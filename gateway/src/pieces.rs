//! Moving pieces between the gateway and nodes, behind a small trait so the object service can
//! run against the real network or an in-memory stand-in.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chunker::{Challenge, PieceId, Proof, SegmentRecord};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::PeerId;
use storage_node::client::{ClientError, NodeClient};

use crate::ledger::Meter;
use crate::nodes::peer_of;
use storage_node::protocol::{ByteRange, ErrorKind, Request, Response};

/// Why a piece operation failed, as the data path needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PieceError {
    #[error("node {node} does not hold piece {piece}")]
    NotFound { node: PeerId, piece: PieceId },
    #[error("node {node} is full")]
    Full { node: PeerId },
    #[error("node {node} holds piece {piece} but it is corrupt")]
    Corrupt { node: PeerId, piece: PieceId },
    #[error("node {node} is unreachable: {reason}")]
    Unreachable { node: PeerId, reason: String },
    #[error("node {node} did not answer within {after:?}")]
    Timeout { node: PeerId, after: Duration },
    #[error("node {node} refused: {reason}")]
    Refused { node: PeerId, reason: String },
    #[error("node {node} answered out of protocol: {reason}")]
    BadAnswer { node: PeerId, reason: String },
}

/// Piece transfers with nodes.
pub trait PieceNet: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `piece` (whose id is `id`) on `node`.
    fn put(&self, node: PeerId, id: PieceId, piece: Bytes)
        -> BoxFuture<'_, Result<(), PieceError>>;
    /// Reads `range` of a piece (the whole piece for `None`).
    fn get(
        &self,
        node: PeerId,
        id: PieceId,
        range: Option<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<u8>, PieceError>>;
    /// Deletes pieces; `Ok` once the node no longer has them.
    fn delete(&self, node: PeerId, ids: Vec<PieceId>) -> BoxFuture<'_, Result<(), PieceError>>;
    /// Sends an audit challenge; the answer (proof and the node's signature over the
    /// transcript) is not checked here. Fails with [`PieceError::Timeout`] after `deadline`.
    fn challenge(
        &self,
        node: PeerId,
        challenge: Challenge,
        deadline: Duration,
    ) -> BoxFuture<'_, Result<(Proof, Vec<u8>), PieceError>>;
    /// Asks for the pieces the node's scrub found corrupt, acknowledging the last answer.
    fn scrub_report(
        &self,
        node: PeerId,
        acknowledged: Vec<PieceId>,
    ) -> BoxFuture<'_, Result<Vec<PieceId>, PieceError>>;
}

/// [`PieceNet`] over libp2p with the node protocol.
#[derive(Debug, Clone)]
pub struct Libp2pPieces {
    client: NodeClient,
    timeout: Duration,
    /// Counts the piece bytes each node sends and stores (the usage ledger).
    meter: Arc<Meter>,
}

impl Libp2pPieces {
    /// Transfers through `client`, each with `timeout`, counted in `meter`.
    pub fn new(client: NodeClient, timeout: Duration, meter: Arc<Meter>) -> Self {
        Libp2pPieces {
            client,
            timeout,
            meter,
        }
    }

    async fn call(
        &self,
        node: PeerId,
        request: Request,
        payload: &[u8],
        piece: PieceId,
        timeout: Duration,
    ) -> Result<(Response, Vec<u8>), PieceError> {
        self.client
            .call(node, &request, payload, timeout)
            .await
            .map_err(|e| match e {
                ClientError::Node { kind, message, .. } => match kind {
                    ErrorKind::NotFound => PieceError::NotFound { node, piece },
                    ErrorKind::CapacityFull => PieceError::Full { node },
                    ErrorKind::Corrupt => PieceError::Corrupt { node, piece },
                    ErrorKind::Internal => PieceError::Unreachable {
                        node,
                        reason: message,
                    },
                    ErrorKind::Unauthorized
                    | ErrorKind::BadRequest
                    | ErrorKind::UnsupportedVersion => PieceError::Refused {
                        node,
                        reason: format!("{kind:?}: {message}"),
                    },
                },
                ClientError::Protocol { source, .. } => PieceError::BadAnswer {
                    node,
                    reason: source.to_string(),
                },
                ClientError::Timeout { .. } => PieceError::Timeout {
                    node,
                    after: timeout,
                },
                e @ ClientError::Open { .. } => PieceError::Unreachable {
                    node,
                    reason: e.to_string(),
                },
            })
    }
}

fn unexpected(node: PeerId, response: &Response) -> PieceError {
    PieceError::BadAnswer {
        node,
        reason: format!("unexpected answer {response:?}"),
    }
}

impl PieceNet for Libp2pPieces {
    fn put(
        &self,
        node: PeerId,
        id: PieceId,
        piece: Bytes,
    ) -> BoxFuture<'_, Result<(), PieceError>> {
        Box::pin(async move {
            let request = Request::PutPiece {
                id,
                len: piece.len() as u64,
            };
            match self.call(node, request, &piece, id, self.timeout).await? {
                (Response::Stored { already }, _) => {
                    if !already {
                        self.meter.traffic(node, 0, piece.len() as u64);
                    }
                    Ok(())
                }
                (other, _) => Err(unexpected(node, &other)),
            }
        })
    }

    fn get(
        &self,
        node: PeerId,
        id: PieceId,
        range: Option<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<u8>, PieceError>> {
        Box::pin(async move {
            let want = range.clone();
            let request = Request::GetPiece {
                id,
                range: range.map(|r| ByteRange {
                    start: r.start,
                    end: r.end,
                }),
            };
            match self.call(node, request, &[], id, self.timeout).await? {
                (Response::Piece { .. }, data) => {
                    if let Some(r) = want {
                        if data.len() as u64 != r.end - r.start {
                            return Err(PieceError::BadAnswer {
                                node,
                                reason: format!(
                                    "asked for {} bytes, got {}",
                                    r.end - r.start,
                                    data.len()
                                ),
                            });
                        }
                    }
                    self.meter.traffic(node, data.len() as u64, 0);
                    Ok(data)
                }
                (other, _) => Err(unexpected(node, &other)),
            }
        })
    }

    fn delete(&self, node: PeerId, ids: Vec<PieceId>) -> BoxFuture<'_, Result<(), PieceError>> {
        Box::pin(async move {
            let Some(&first) = ids.first() else {
                return Ok(());
            };
            match self
                .call(
                    node,
                    Request::DeletePieces { ids },
                    &[],
                    first,
                    self.timeout,
                )
                .await?
            {
                (Response::Deleted { .. }, _) => Ok(()),
                (other, _) => Err(unexpected(node, &other)),
            }
        })
    }

    fn challenge(
        &self,
        node: PeerId,
        challenge: Challenge,
        deadline: Duration,
    ) -> BoxFuture<'_, Result<(Proof, Vec<u8>), PieceError>> {
        Box::pin(async move {
            let piece = challenge.piece_id();
            match self
                .call(node, Request::Challenge { challenge }, &[], piece, deadline)
                .await?
            {
                (Response::Proof { proof, signature }, _) => Ok((proof, signature)),
                (other, _) => Err(unexpected(node, &other)),
            }
        })
    }

    fn scrub_report(
        &self,
        node: PeerId,
        acknowledged: Vec<PieceId>,
    ) -> BoxFuture<'_, Result<Vec<PieceId>, PieceError>> {
        Box::pin(async move {
            let any = acknowledged
                .first()
                .copied()
                .unwrap_or(PieceId::from_bytes([0; 32]));
            match self
                .call(
                    node,
                    Request::ScrubReport { acknowledged },
                    &[],
                    any,
                    self.timeout,
                )
                .await?
            {
                (Response::ScrubReport { corrupt }, _) => Ok(corrupt),
                (other, _) => Err(unexpected(node, &other)),
            }
        })
    }
}

/// Whole pieces of a segment, fetched until `k` verify against their ids.
#[derive(Debug)]
pub struct Gathered {
    /// `pieces[i]`: piece `i`, if it was fetched and verified.
    pub pieces: Vec<Option<Vec<u8>>>,
    /// How many there are.
    pub good: usize,
    /// What went wrong with the others, for error messages.
    pub problems: Vec<String>,
    /// Pieces whose node lacks them or holds them damaged (not merely unreachable): index and
    /// why. The caller reports them for repair.
    pub damaged: Vec<(usize, String)>,
}

/// Fetches whole pieces of `seg` in `order` (starting `width` at once, at least `k`, one more
/// for each that fails) until `k` of them match their ids, or `order` runs out. With
/// `hedge_after`, a spare fetch also starts whenever none has finished for that long, so a
/// node that hangs (connected, but silent) costs one hedge delay, not its call timeout.
pub async fn gather_verified(
    net: &dyn PieceNet,
    seg: &SegmentRecord,
    order: Vec<usize>,
    width: usize,
    hedge_after: Option<Duration>,
) -> Gathered {
    let k = seg.params.k();
    let mut order = order.into_iter();
    let mut out = Gathered {
        pieces: vec![None; seg.pieces.len()],
        good: 0,
        problems: Vec::new(),
        damaged: Vec::new(),
    };
    let fetch = |i: usize| {
        let loc = &seg.pieces[i];
        async move {
            let Some(peer) = loc.node.as_ref().and_then(peer_of) else {
                return (i, Err(("no node holds it".to_string(), false)));
            };
            let checked = match net.get(peer, loc.id, None).await {
                Ok(bytes) => loc.id.verify(&bytes).map(|()| bytes).map_err(|_| {
                    tracing::warn!(piece = %loc.id, node = %peer, "node sent a corrupt piece");
                    (
                        format!("node {peer} sent a copy that does not match its id"),
                        true,
                    )
                }),
                Err(e @ (PieceError::NotFound { .. } | PieceError::Corrupt { .. })) => {
                    Err((e.to_string(), true))
                }
                Err(e) => Err((e.to_string(), false)),
            };
            (i, checked)
        }
    };
    let mut inflight: FuturesUnordered<_> = order.by_ref().take(width.max(k)).map(fetch).collect();
    loop {
        // While pieces are left to ask, a silence of `hedge_after` starts a spare fetch.
        let hedge = hedge_after.filter(|_| !order.as_slice().is_empty());
        let next = match hedge {
            Some(after) => match tokio::time::timeout(after, inflight.next()).await {
                Ok(next) => next,
                Err(_) => {
                    inflight.extend(order.next().map(fetch));
                    continue;
                }
            },
            None => inflight.next().await,
        };
        let Some((i, result)) = next else { break };
        match result {
            Ok(bytes) => {
                out.pieces[i] = Some(bytes);
                out.good += 1;
                if out.good == k {
                    break;
                }
            }
            Err((reason, damaged)) => {
                out.problems.push(format!("piece {i}: {reason}"));
                if damaged {
                    out.damaged.push((i, reason));
                }
                if let Some(next) = order.next() {
                    inflight.push(fetch(next));
                }
            }
        }
    }
    out
}
