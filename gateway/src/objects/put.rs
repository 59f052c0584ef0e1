//! The PUT path: body → digests → segments (sealed, coded, hashed off the async threads) →
//! `k + m` nodes per segment in parallel → one atomic manifest commit.
//!
//! Memory per upload is bounded whatever the object's size: the plaintext of the segment being
//! gathered (held as the body's own chunks, not copied), the encoder's segment buffer, one coded
//! segment waiting in a channel of capacity 1, and the segment being sent.
//!
//! Crash safety: every piece is recorded as pending under the upload's id *before* it is sent.
//! The commit turns pending entries into the manifest (and queues any piece the manifest does
//! not use for deletion) in one write; an upload that fails, is dropped by a disconnecting
//! client, or dies with the process leaves only pending entries, which become deletions.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chunker::manifest::{Body, ChecksumAlgorithm, PieceLocation};
use chunker::{DataKey, EncodedSegment, ObjectManifest, SegmentEncoder, SegmentRecord};
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ObjectError, ObjectService};
use crate::digest::{BodyDigest, Digests};
use crate::meta::{Expect, Meta, PieceRef};
use crate::nodes::node_id;
use crate::time::now_ms;

/// Largest body of one PutObject or UploadPart (S3's limit).
pub const MAX_BODY: u64 = 5 << 30;
/// Largest object a multipart upload may complete into (S3's limit).
pub const MAX_OBJECT: u64 = 5 << 40;

/// What describes a new object besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct PutObject {
    pub bucket: String,
    pub key: String,
    pub content_type: Option<String>,
    pub user_metadata: BTreeMap<String, String>,
    /// Stored response headers and tags (see [`ObjectManifest`]).
    pub headers: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// Checksums to compute and store besides MD5.
    pub checksums: Vec<ChecksumAlgorithm>,
    /// What the key's current version must be (conditional writes).
    pub expect: Expect,
}

/// How a body is stored.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodySpec<'a> {
    pub stream: u32,
    pub allow_inline: bool,
    pub checksums: &'a [ChecksumAlgorithm],
    /// Where parity pieces go instead of nodes (a remote's stand-in peer: parity in the cloud).
    pub parity_to: Option<PeerId>,
}

/// The digests and the segment encoder travel together into blocking tasks and back.
struct Encoding {
    digest: BodyDigest,
    /// `None` once the stream is finished.
    encoder: Option<SegmentEncoder>,
}

/// Abandons an upload's pieces unless it was committed: runs on errors and also when the
/// request future is dropped (a client that disconnects mid-upload).
pub(super) struct UploadGuard {
    meta: Arc<Meta>,
    pub id: [u8; 16],
    pub committed: bool,
}

impl UploadGuard {
    pub(super) fn new(meta: Arc<Meta>) -> Result<Self, ObjectError> {
        Ok(UploadGuard {
            meta,
            id: random_upload_id()?,
            committed: false,
        })
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = self.meta.abandon_upload(&self.id) {
                tracing::warn!(error = %e, "could not queue an abandoned upload's pieces for deletion (they are collected at the next start)");
            }
        }
    }
}

pub(super) fn random_upload_id() -> Result<[u8; 16], ObjectError> {
    let mut id = [0u8; 16];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| chunker::CryptoError::Random)?;
    Ok(id)
}

impl ObjectService {
    /// Stores an object from `body` and commits it. `verify` sees the body's digests once it has
    /// been read completely and may refuse it (e.g. a checksum the client sent does not match);
    /// nothing is visible unless it accepts. Returns the committed manifest.
    pub async fn put_object<S, E>(
        &self,
        req: PutObject,
        body: S,
        verify: impl FnOnce(&Digests) -> Result<(), ObjectError> + Send,
    ) -> Result<ObjectManifest, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        self.check_expect(&req.bucket, &req.key, &req.expect)?;
        self.check_new_key(&req.bucket, &req.key).await?;
        let mut guard = UploadGuard::new(self.meta.clone())?;
        let data_key = DataKey::generate()?;
        let wrapped_key = self.master.wrap(&data_key)?;
        let spec = BodySpec {
            stream: 0,
            allow_inline: true,
            checksums: &req.checksums,
            parity_to: self.parity_target(&req.bucket).await?,
        };
        let (body, digests) = self.store_body(&guard.id, spec, data_key, body).await?;
        verify(&digests)?;
        let manifest = ObjectManifest {
            size: digests.size,
            etag: digests.etag(),
            content_type: req.content_type,
            user_metadata: req.user_metadata,
            checksums: digests.checksums,
            created_ms: now_ms(),
            wrapped_key,
            parts: Vec::new(),
            body,
            headers: req.headers,
            tags: req.tags,
        };
        self.meta
            .commit_object(&req.bucket, &req.key, &manifest, &guard.id, &req.expect)
            .map_err(|e| match e {
                crate::meta::MetaError::NoSuchBucket => ObjectError::NoSuchBucket,
                crate::meta::MetaError::PreconditionFailed => ObjectError::PreconditionFailed,
                e => e.into(),
            })?;
        guard.committed = true;
        self.after_write(&req.bucket, &req.key).await?;
        Ok(manifest)
    }

    /// Reads the body, placing its segments as they fill; small bodies come back inline.
    /// `stream` numbers the segments' nonces (0 for an object, the part number for a part);
    /// with `allow_inline`, a body up to the inline threshold comes back as [`Body::Inline`].
    pub(super) async fn store_body<S, E>(
        &self,
        upload: &[u8; 16],
        spec: BodySpec<'_>,
        data_key: DataKey,
        mut body: S,
    ) -> Result<(Body, Digests), ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let seg_len = self.cfg.params.segment_plaintext_len();
        let (tx, mut rx) = mpsc::channel::<EncodedSegment>(1);
        let mut encoding = Some(Encoding {
            digest: BodyDigest::new(spec.checksums),
            encoder: Some(SegmentEncoder::with_coder(
                self.coder.clone(),
                data_key.clone(),
                spec.stream,
            )),
        });

        let produce = async move {
            let mut held: Vec<Bytes> = Vec::new();
            let mut held_len = 0usize;
            let mut emitted = false;
            let mut total = 0u64;
            let idle = self.cfg.body_timeout;
            loop {
                let next = tokio::time::timeout(idle, body.next()).await;
                let Some(chunk) = next.map_err(|_| ObjectError::BodyTimeout(idle))? else {
                    break;
                };
                let mut chunk = chunk.map_err(|e| ObjectError::Body(e.to_string()))?;
                // Whatever the request declared: one PUT or part is at most S3's 5 GiB.
                total = total.saturating_add(chunk.len() as u64);
                if total > MAX_BODY {
                    return Err(ObjectError::EntityTooLarge { limit: MAX_BODY });
                }
                while !chunk.is_empty() {
                    let take = (seg_len - held_len).min(chunk.len());
                    held.push(chunk.split_to(take));
                    held_len += take;
                    if held_len == seg_len {
                        let segments =
                            encode(&mut encoding, std::mem::take(&mut held), false).await?;
                        held_len = 0;
                        emitted = true;
                        for s in segments {
                            tx.send(s).await.map_err(|_| {
                                ObjectError::Task("the segment sender stopped".into())
                            })?;
                        }
                    }
                }
            }
            if spec.allow_inline && !emitted && held_len as u64 <= self.cfg.inline_threshold {
                let Some(mut enc) = encoding.take() else {
                    return Err(ObjectError::Task("encoder lost".into()));
                };
                let plain: Vec<u8> = held.concat();
                enc.digest.update(&plain);
                let ciphertext = data_key.seal_inline(&plain)?;
                return Ok(Some((Body::Inline { ciphertext }, enc.digest.finish())));
            }
            for s in encode(&mut encoding, held, true).await? {
                tx.send(s)
                    .await
                    .map_err(|_| ObjectError::Task("the segment sender stopped".into()))?;
            }
            let Some(enc) = encoding.take() else {
                return Err(ObjectError::Task("encoder lost".into()));
            };
            Ok::<_, ObjectError>(Some((Body::Segments(Vec::new()), enc.digest.finish())))
        };

        let consume = async {
            let mut records = Vec::new();
            while let Some(segment) = rx.recv().await {
                records.push(self.store_segment(upload, segment, spec.parity_to).await?);
            }
            Ok::<_, ObjectError>(records)
        };

        let (produced, records) = tokio::try_join!(produce, consume)?;
        match produced {
            Some((Body::Segments(_), digests)) => Ok((Body::Segments(records), digests)),
            Some((inline, digests)) => Ok((inline, digests)),
            None => Err(ObjectError::Task("no body produced".into())),
        }
    }

    /// Places one segment's `k + m` pieces on distinct nodes (or its data pieces on nodes and
    /// its parity pieces at `parity_to`), replacing a node that fails with the next in
    /// placement order, and returns once the write quorum holds them (waiting up to the write
    /// grace for the rest).
    async fn store_segment(
        &self,
        upload: &[u8; 16],
        segment: EncodedSegment,
        parity_to: Option<PeerId>,
    ) -> Result<SegmentRecord, ObjectError> {
        let params = self.cfg.params;
        let total = params.total();
        let on_nodes = if parity_to.is_some() {
            params.k()
        } else {
            total
        };
        let layout = segment.layout();
        let piece_len = layout.piece_len() as u64;
        let ids = segment.ids().to_vec();
        let candidates = self.nodes.candidates(piece_len);
        let mut plan = self
            .nodes
            .plan(&candidates, ids[0].as_bytes(), on_nodes, &[])?;
        let mut ranked: Vec<PeerId> = plan.nodes().into_iter().map(|n| n.peer).collect();
        ranked.extend(parity_to.into_iter().cycle().take(total - on_nodes));
        let first: Vec<PieceRef> = (0..total)
            .map(|i| PieceRef {
                node: node_id(&ranked[i]),
                piece: ids[i],
            })
            .collect();
        self.meta.add_pending(upload, &first)?;

        let send = |i: usize, peer: PeerId| {
            let piece = segment.piece(i);
            let id = ids[i];
            async move { (i, peer, self.net.put(peer, id, piece).await) }
        };
        let mut inflight = FuturesUnordered::new();
        for (i, peer) in ranked.iter().take(total).enumerate() {
            inflight.push(send(i, *peer));
        }
        let quorum = self.cfg.write_quorum;
        let mut placed: Vec<Option<PeerId>> = vec![None; total];
        let mut stored = 0usize;
        let mut grace_until: Option<Instant> = None;
        loop {
            let next = match grace_until {
                Some(t) => match tokio::time::timeout_at(t, inflight.next()).await {
                    Ok(n) => n,
                    Err(_) => break,
                },
                None => inflight.next().await,
            };
            let Some((i, peer, result)) = next else { break };
            match result {
                Ok(()) => {
                    placed[i] = Some(peer);
                    stored += 1;
                    self.nodes.charge(&peer, piece_len);
                    if stored == total {
                        break;
                    }
                    if stored >= quorum && grace_until.is_none() {
                        grace_until = Some(Instant::now() + self.cfg.write_grace);
                    }
                }
                Err(e) => {
                    tracing::warn!(piece = i, error = %e, "piece upload failed; trying another node");
                    // A parity piece bound for the remote has no other home.
                    let spare = (i < on_nodes).then(|| plan.replace(i)).flatten();
                    if let Some(spare) = spare.map(|n| n.peer) {
                        self.meta.add_pending(
                            upload,
                            &[PieceRef {
                                node: node_id(&spare),
                                piece: ids[i],
                            }],
                        )?;
                        inflight.push(send(i, spare));
                    }
                }
            }
        }
        drop(inflight);
        if stored < quorum {
            return Err(ObjectError::QuorumFailed {
                needed: quorum,
                stored,
            });
        }
        Ok(SegmentRecord {
            stream: segment.stream(),
            index: segment.index(),
            plain_len: layout.plain_len() as u64,
            params,
            pieces: ids
                .iter()
                .zip(placed)
                .map(|(id, p)| PieceLocation {
                    id: *id,
                    node: p.map(|p| node_id(&p)),
                })
                .collect(),
        })
    }
}

/// Digests and encodes `chunks` on a blocking thread; with `last`, also ends the stream.
async fn encode(
    state: &mut Option<Encoding>,
    chunks: Vec<Bytes>,
    last: bool,
) -> Result<Vec<EncodedSegment>, ObjectError> {
    let Some(mut enc) = state.take() else {
        return Err(ObjectError::Task("encoder lost".into()));
    };
    let (enc, result) = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut run = || -> Result<(), ObjectError> {
            let encoder = enc
                .encoder
                .as_mut()
                .ok_or_else(|| ObjectError::Task("the stream was already finished".into()))?;
            for chunk in &chunks {
                enc.digest.update(chunk);
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    out.extend(encoder.push(&mut rest)?);
                }
            }
            if last {
                if let Some(encoder) = enc.encoder.take() {
                    out.extend(encoder.finish()?);
                }
            }
            Ok(())
        };
        let result = run();
        (enc, result.map(|()| out))
    })
    .await?;
    *state = Some(enc);
    result
}
