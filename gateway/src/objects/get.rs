//! The GET path: manifest → the segments a range touches → for each, the data-piece slices it
//! needs (healthy) or any `k` whole pieces (degraded) → verified, decrypted plaintext, streamed
//! with the next segment prefetched.
//!
//! Healthy reads fetch only the ciphertext the range needs; the node checks those bytes
//! against the piece's hash tree before sending, and every cipher block's GCM tag authenticates
//! it here, so a wrong byte is an error, never output. Any failure (a node offline, a missing or
//! corrupt piece, a tag that does not verify) falls back to the degraded read, which checks
//! every whole piece against its id and reconstructs from parity.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chunker::decoder::RangePlan;
use chunker::manifest::{Body, PieceLocation, SegmentSpan};
use chunker::{Coder, DataKey, ObjectManifest, SegmentDecoder, SegmentRecord};
use futures::stream::{self, BoxStream};
use futures::StreamExt;

use super::{ObjectError, ObjectService};
use crate::meta::PieceRef;
use crate::nodes::{peer_of, Nodes};
use crate::pieces::{gather_verified, PieceNet};

/// Segments fetched ahead of the one being sent.
const PREFETCH: usize = 1;

/// A stream of an object's plaintext.
pub type ObjectStream = BoxStream<'static, Result<Bytes, ObjectError>>;

impl ObjectService {
    /// Streams bytes `range` of the object of `bucket` that `manifest` describes (`range` must
    /// be inside it). The stream's first item is read before this returns, so an object that
    /// cannot be served is an error here, not a broken stream; when the node network cannot
    /// serve it and the bucket's mirror holds the same version, the mirror serves it.
    pub async fn open_read(
        &self,
        bucket: &str,
        key: &str,
        manifest: &ObjectManifest,
        range: Range<u64>,
    ) -> Result<ObjectStream, ObjectError> {
        let mut stream = self.read_object(bucket, manifest, range.clone()).await?;
        match stream.next().await {
            Some(Ok(first)) => Ok(stream::once(async { Ok(first) }).chain(stream).boxed()),
            Some(Err(e @ ObjectError::Unreadable { .. })) => {
                match self.read_mirror(bucket, key, manifest, range).await {
                    Some(s) => Ok(s),
                    None => Err(e),
                }
            }
            Some(Err(e)) => Err(e),
            None => Ok(stream::empty().boxed()),
        }
    }

    /// Streams bytes `range` of the object of `bucket` that `manifest` describes (`range` must
    /// be inside it).
    pub async fn read_object(
        &self,
        bucket: &str,
        manifest: &ObjectManifest,
        range: Range<u64>,
    ) -> Result<ObjectStream, ObjectError> {
        if range.start > range.end || range.end > manifest.size {
            return Err(ObjectError::Invalid(format!(
                "range {range:?} is outside the object's {} bytes",
                manifest.size
            )));
        }
        let segments = match &manifest.body {
            Body::Remote { key } => {
                // A tiered object is ours (it has its data key); one only described from the
                // remote's listing (a fallback read) has nothing of ours to check it against.
                let ours = (!manifest.wrapped_key.as_bytes().is_empty()).then_some(manifest);
                return self.read_remote(bucket, key, range, ours).await;
            }
            Body::Inline { ciphertext } => {
                let plain = self
                    .master
                    .unwrap(&manifest.wrapped_key)?
                    .open_inline(ciphertext)?;
                let part = plain
                    .get(range.start as usize..range.end as usize)
                    .map(Bytes::copy_from_slice)
                    .unwrap_or_default();
                return Ok(stream::once(async move { Ok(part) }).boxed());
            }
            Body::Segments(segments) => segments.clone(),
        };
        let key = self.master.unwrap(&manifest.wrapped_key)?;
        let reader = Arc::new(SegmentReader {
            net: self.net.clone(),
            nodes: self.nodes.clone(),
            coder: self.coder.clone(),
            key,
            segments,
            hedge_after: self.cfg.hedge_after,
            health: self.health.clone(),
        });
        let spans = manifest.segments_in(range);
        Ok(stream::iter(spans)
            .map(move |span| {
                let reader = reader.clone();
                async move { reader.read(span).await.map(Bytes::from) }
            })
            .buffered(PREFETCH + 1)
            .boxed())
    }
}

struct SegmentReader {
    net: Arc<dyn PieceNet>,
    nodes: Arc<Nodes>,
    coder: Arc<Coder>,
    key: DataKey,
    segments: Vec<SegmentRecord>,
    hedge_after: std::time::Duration,
    health: Arc<crate::repair::Health>,
}

impl SegmentReader {
    async fn read(&self, span: SegmentSpan) -> Result<Vec<u8>, ObjectError> {
        let unreadable = |reason: String| ObjectError::Unreadable {
            segment: span.segment,
            reason,
        };
        let seg = self
            .segments
            .get(span.segment)
            .ok_or_else(|| unreadable("no such segment".into()))?;
        let layout = seg.layout().map_err(|e| unreadable(e.to_string()))?;
        let plan =
            RangePlan::new(&layout, span.range.clone()).map_err(|e| unreadable(e.to_string()))?;
        let healthy = self.read_healthy(seg, &plan);
        tokio::pin!(healthy);
        tokio::select! {
            result = &mut healthy => match result {
                Ok(plain) => return Ok(plain),
                Err(reason) => {
                    tracing::info!(segment = span.segment, %reason, "healthy read failed; reading from parity");
                    return self.read_degraded(seg, span.range, span.segment, seg.params.k()).await;
                }
            },
            () = tokio::time::sleep(self.hedge_after) => {}
        }
        // Slow: hedge with a degraded read that asks every piece's node at once and takes the
        // first k that verify, so one slow node cannot hold the segment up. Whichever read
        // succeeds first wins.
        tracing::info!(segment = span.segment, after = ?self.hedge_after, "healthy read is slow; hedging");
        let degraded = self.read_degraded(seg, span.range, span.segment, seg.pieces.len());
        tokio::pin!(degraded);
        tokio::select! {
            result = &mut healthy => match result {
                Ok(plain) => Ok(plain),
                Err(_) => degraded.await,
            },
            result = &mut degraded => match result {
                Ok(plain) => Ok(plain),
                Err(e) => healthy.await.map_err(|_| e),
            },
        }
    }

    /// Fetches exactly the planned slices from the data pieces' nodes and decrypts them.
    async fn read_healthy(&self, seg: &SegmentRecord, plan: &RangePlan) -> Result<Vec<u8>, String> {
        let fetches = plan.slices.iter().map(|slice| {
            let piece = &seg.pieces[slice.piece];
            async move {
                let peer = piece
                    .node
                    .as_ref()
                    .and_then(peer_of)
                    .ok_or_else(|| format!("piece {} has no node", slice.piece))?;
                if !self.nodes.is_online(&peer) {
                    return Err(format!("the node of piece {} is offline", slice.piece));
                }
                let range = slice.range.start as u64..slice.range.end as u64;
                self.net
                    .get(peer, piece.id, Some(range))
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        let parts = futures::future::try_join_all(fetches).await?;
        let ciphertext = parts.concat();
        let (decoder, seg, plan) = (self.decoder(seg), seg.clone(), plan.clone());
        tokio::task::spawn_blocking(move || {
            let ids = seg.ids();
            let info = seg.info(&ids).map_err(|e| e.to_string())?;
            decoder
                .decrypt_range(&info, &plan, ciphertext)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Fetches whole pieces until `k` verify against their ids, then decodes.
    /// Starts with `width` (≥ k) fetches at once, more as fetches fail or (a hedge) when none
    /// has answered for `hedge_after`.
    async fn read_degraded(
        &self,
        seg: &SegmentRecord,
        range: Range<usize>,
        index: usize,
        width: usize,
    ) -> Result<Vec<u8>, ObjectError> {
        let k = seg.params.k();
        // Only nodes that are online (an offline one cannot be reached, and asking would cost
        // a timeout), data pieces before parity.
        let order: Vec<usize> = (0..seg.pieces.len())
            .filter(|&i| self.nodes.online_holder(&seg.pieces[i]).is_some())
            .collect();
        let offline = seg.pieces.len() - order.len();
        let gathered =
            gather_verified(self.net.as_ref(), seg, order, width, Some(self.hedge_after)).await;
        for (i, reason) in &gathered.damaged {
            self.report_bad(&seg.pieces[*i], &format!("read: {reason}"));
        }
        if gathered.good < k {
            return Err(ObjectError::Unreadable {
                segment: index,
                reason: format!(
                    "{} of the {k} pieces needed are available ({offline} on offline nodes{}{})",
                    gathered.good,
                    if gathered.problems.is_empty() {
                        ""
                    } else {
                        "; "
                    },
                    gathered.problems.join("; ")
                ),
            });
        }
        let pieces = gathered.pieces;
        let (decoder, seg) = (self.decoder(seg), seg.clone());
        tokio::task::spawn_blocking(move || {
            let ids = seg.ids();
            let info = seg.info(&ids).map_err(|e| e.to_string())?;
            let have: Vec<Option<&[u8]>> = pieces.iter().map(|p| p.as_deref()).collect();
            let decoded = decoder.decode(&info, &have).map_err(|e| e.to_string())?;
            decoded
                .plaintext
                .get(range.clone())
                .map(<[u8]>::to_vec)
                .ok_or_else(|| format!("range {range:?} is outside the segment"))
        })
        .await?
        .map_err(|reason| ObjectError::Unreadable {
            segment: index,
            reason,
        })
    }

    /// Marks a piece a read found missing or corrupt as bad, which queues its repair.
    fn report_bad(&self, loc: &PieceLocation, reason: &str) {
        let Some(node) = loc.node.clone() else { return };
        let piece = PieceRef {
            node,
            piece: loc.id,
        };
        if let Err(e) = self.health.report_bad(&piece, reason) {
            tracing::warn!(piece = %loc.id, error = %e, "could not record a bad piece");
        }
    }

    /// A decoder for `seg`'s code (objects written under older settings keep theirs).
    fn decoder(&self, seg: &SegmentRecord) -> SegmentDecoder {
        let coder = if seg.params == self.coder.params() {
            self.coder.clone()
        } else {
            Arc::new(Coder::new(seg.params))
        };
        SegmentDecoder::with_coder(coder, self.key.clone())
    }
}
