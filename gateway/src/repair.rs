//! Segment health and the repair worker.
//!
//! A piece is **healthy** while its node is not disqualified, has not been missing for longer
//! than `offline_grace`, and the piece is not known bad (a failed audit, a corrupt or missing
//! piece seen on a read). A segment with fewer than `k + margin` healthy pieces is repaired: the
//! worker fetches `k` pieces that verify against their ids, rebuilds the others
//! ([`chunker::SegmentDecoder::rebuild`]), places the unhealthy ones on new nodes (spread over
//! failure domains around the healthy ones) and swaps them into the manifest in one write that
//! succeeds only if the object is still the version that was read ([`Meta::commit_repair`]).
//! Readers see the old manifest or the new one, both complete.
//!
//! What gets queued (`repair` table, most endangered first): objects with a piece marked bad
//! (a failed audit, a read, a node's scrub report, collected here every interval), and — once per loss — every object with a piece on a node that went missing past the grace
//! period or was disqualified. The queue is in the metadata, and a repair commits every few
//! segments, so a restart resumes where it stopped. The worker moves at most `rate` bytes per
//! second.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunker::manifest::{Body, NodeId, PieceLocation, SegmentRecord};
use chunker::{DataKey, MasterKey, ObjectManifest, PieceId, SegmentDecoder};
use futures::StreamExt;
use libp2p::PeerId;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::meta::{Meta, PieceRef, RepairEntry};
use crate::nodes::{node_id, peer_of, Nodes};
use crate::pieces::{gather_verified, PieceNet};
use crate::placement::Taken;
use crate::reputation::NodeState;

/// Queue entries looked at per pass.
const PASS_LIMIT: usize = 1024;
/// Segments repaired between manifest commits.
const SEGMENTS_PER_COMMIT: usize = 16;

/// How repair runs.
#[derive(Debug, Clone)]
pub struct RepairConfig {
    /// A segment with fewer than `k + margin` healthy pieces is repaired.
    pub margin: usize,
    /// A node missing this long has its pieces rebuilt elsewhere.
    pub offline_grace: Duration,
    /// How often the queue is worked through.
    pub interval: Duration,
    /// Most bytes per second moved (fetched plus placed).
    pub rate: u64,
}

/// Judges piece and segment health, and records bad pieces.
pub struct Health {
    meta: Arc<Meta>,
    nodes: Arc<Nodes>,
    config: RepairConfig,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

/// A segment's health, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentHealth {
    pub index: usize,
    pub healthy: usize,
    pub needed: usize,
    pub total: usize,
    pub pieces: Vec<PieceHealth>,
}

/// One piece's health.
#[derive(Debug, Clone, Serialize)]
pub struct PieceHealth {
    pub piece: String,
    pub node: Option<String>,
    pub healthy: bool,
    /// Why not, if not.
    pub problem: Option<String>,
}

impl Health {
    pub fn new(meta: Arc<Meta>, nodes: Arc<Nodes>, config: RepairConfig) -> Self {
        Health {
            meta,
            nodes,
            config,
        }
    }

    /// Why a piece is not healthy (`None`: it is).
    fn problem(&self, loc: &PieceLocation) -> Option<String> {
        let Some(node) = &loc.node else {
            return Some("no node holds it".into());
        };
        let Some(peer) = peer_of(node) else {
            return Some("its node id is not a peer id".into());
        };
        if self.nodes.state(&peer) == NodeState::Disqualified {
            return Some(format!("node {peer} is disqualified"));
        }
        if let Some(missing) = self.nodes.missing_for(&peer) {
            if missing > self.config.offline_grace {
                return Some(format!("node {peer} missing for {} s", missing.as_secs()));
            }
        }
        let piece = PieceRef {
            node: node.clone(),
            piece: loc.id,
        };
        match self.meta.is_bad(&piece) {
            Ok(false) => None,
            Ok(true) => Some("known bad on its node".into()),
            Err(e) => Some(format!("unknown: {e}")),
        }
    }

    /// Healthy pieces of a segment.
    pub fn healthy(&self, seg: &SegmentRecord) -> usize {
        seg.pieces
            .iter()
            .filter(|p| self.problem(p).is_none())
            .count()
    }

    /// Below this many healthy pieces a segment is repaired.
    pub fn threshold(&self, seg: &SegmentRecord) -> usize {
        seg.params.k() + self.config.margin.min(seg.params.m())
    }

    /// The fewest healthy pieces of any segment of `manifest` (`None` for inline objects).
    pub fn worst(&self, manifest: &ObjectManifest) -> Option<usize> {
        match &manifest.body {
            Body::Segments(segs) => segs.iter().map(|s| self.healthy(s)).min(),
            Body::Inline { .. } | Body::Remote { .. } => None,
        }
    }

    /// Every segment's health.
    pub fn report(&self, manifest: &ObjectManifest) -> Vec<SegmentHealth> {
        let Body::Segments(segs) = &manifest.body else {
            return Vec::new();
        };
        segs.iter()
            .enumerate()
            .map(|(index, seg)| {
                let pieces: Vec<PieceHealth> = seg
                    .pieces
                    .iter()
                    .map(|p| {
                        let problem = self.problem(p);
                        PieceHealth {
                            piece: p.id.to_string(),
                            node: p.node.as_ref().and_then(peer_of).map(|p| p.to_string()),
                            healthy: problem.is_none(),
                            problem,
                        }
                    })
                    .collect();
                SegmentHealth {
                    index,
                    healthy: pieces.iter().filter(|p| p.healthy).count(),
                    needed: seg.params.k(),
                    total: seg.pieces.len(),
                    pieces,
                }
            })
            .collect()
    }

    /// Queues `bucket`/`key` if a segment is below the threshold.
    pub fn check(&self, bucket: &str, key: &str) -> anyhow::Result<bool> {
        let Some(manifest) = self.meta.object(bucket, key)? else {
            return Ok(false);
        };
        let Body::Segments(segs) = &manifest.body else {
            return Ok(false);
        };
        let mut worst = usize::MAX;
        let mut below = false;
        for seg in segs {
            let healthy = self.healthy(seg);
            worst = worst.min(healthy);
            below |= healthy < self.threshold(seg);
        }
        if below {
            self.meta
                .queue_repair(bucket, key, u8::try_from(worst).unwrap_or(u8::MAX))?;
        }
        Ok(below)
    }

    /// Records that a piece is lost or corrupt on its node and queues its object.
    pub fn report_bad(&self, piece: &PieceRef, reason: &str) -> anyhow::Result<()> {
        if let Some(held) = self.meta.mark_bad(piece, reason)? {
            self.check(&held.bucket, &held.key)?;
        }
        Ok(())
    }

    /// Queues, once per loss, the objects of nodes that are disqualified or missing past the
    /// grace period; re-arms for nodes that are back. Returns how many objects were queued.
    pub fn sweep(&self) -> anyhow::Result<usize> {
        let mut queued = 0;
        for view in self.nodes.all() {
            let id = node_id(&view.peer);
            let lost = view.state == NodeState::Disqualified
                || self
                    .nodes
                    .missing_for(&view.peer)
                    .is_some_and(|d| d > self.config.offline_grace);
            let swept = self.meta.is_swept(&id)?;
            if lost && !swept {
                tracing::info!(peer = %view.peer, state = view.state.as_str(), "node lost; queueing its objects for repair");
                let mut objects = Vec::new();
                self.meta.objects_on(&id, |b, k| {
                    objects.push((b.to_string(), k.to_string()));
                    Ok(())
                })?;
                for (bucket, key) in objects {
                    if self.check(&bucket, &key)? {
                        queued += 1;
                    }
                }
                self.meta.set_swept(&id, true)?;
            } else if !lost && swept {
                self.meta.set_swept(&id, false)?;
            }
        }
        Ok(queued)
    }
}

/// Repair counters since start, for the admin API.
#[derive(Debug, Default, Serialize)]
pub struct RepairStats {
    pub objects_repaired: AtomicU64,
    pub segments_repaired: AtomicU64,
    pub pieces_placed: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub bytes_placed: AtomicU64,
    pub unrepairable: AtomicU64,
    #[serde(skip)]
    pub last_error: Mutex<Option<String>>,
}

/// The repair worker.
pub struct Repairer {
    meta: Arc<Meta>,
    nodes: Arc<Nodes>,
    net: Arc<dyn PieceNet>,
    master: Arc<MasterKey>,
    health: Arc<Health>,
    pub stats: RepairStats,
    /// Moved bytes and when the budget started, for the rate limit.
    budget: Mutex<(Instant, u64)>,
    /// Per node, the corrupt pieces it last reported, acknowledged with the next request.
    scrub_acks: Mutex<HashMap<PeerId, Vec<PieceId>>>,
}

impl std::fmt::Debug for Repairer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repairer").finish_non_exhaustive()
    }
}

/// Why a segment could not be repaired now.
#[derive(Debug, thiserror::Error)]
enum SegmentError {
    #[error("only {good} of the {k} pieces needed verify ({problems})")]
    TooFew {
        good: usize,
        k: usize,
        problems: String,
    },
    #[error("no node can take the rebuilt pieces: {0}")]
    NoNodes(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Repairer {
    pub fn new(
        meta: Arc<Meta>,
        nodes: Arc<Nodes>,
        net: Arc<dyn PieceNet>,
        master: Arc<MasterKey>,
        health: Arc<Health>,
    ) -> Self {
        Repairer {
            meta,
            nodes,
            net,
            master,
            health,
            stats: RepairStats::default(),
            budget: Mutex::new((Instant::now(), 0)),
            scrub_acks: Mutex::new(HashMap::new()),
        }
    }

    /// Collects scrub reports, sweeps for lost nodes and works through the queue every
    /// interval until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            self.collect_scrub_reports().await;
            match self.health.sweep() {
                Ok(0) => {}
                Ok(n) => tracing::info!(objects = n, "queued for repair"),
                Err(e) => tracing::warn!(error = %e, "repair sweep failed"),
            }
            if let Err(e) = self.pass(&cancel).await {
                tracing::warn!(error = %e, "repair pass failed");
            }
            tokio::select! {
                () = tokio::time::sleep(self.health.config.interval) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// Asks every online node for the pieces its scrub found corrupt and marks them bad (which
    /// queues their repair). A report is acknowledged with the next request, so nothing is lost
    /// if this gateway stops in between.
    pub async fn collect_scrub_reports(&self) {
        futures::stream::iter(self.nodes.online())
            .for_each_concurrent(16, |view| async move {
                let peer = view.peer;
                let ack = self
                    .scrub_acks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&peer)
                    .unwrap_or_default();
                match self.net.scrub_report(peer, ack.clone()).await {
                    Ok(corrupt) => {
                        for &id in &corrupt {
                            let piece = PieceRef {
                                node: node_id(&peer),
                                piece: id,
                            };
                            tracing::warn!(%peer, piece = %id, "node's scrub found a corrupt piece");
                            if let Err(e) = self
                                .health
                                .report_bad(&piece, "scrub: the node found it corrupt")
                            {
                                tracing::warn!(error = %e, "could not record a bad piece");
                            }
                        }
                        if !corrupt.is_empty() {
                            self.scrub_acks
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(peer, corrupt);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "scrub report failed");
                        if !ack.is_empty() {
                            self.scrub_acks
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(peer, ack);
                        }
                    }
                }
            })
            .await;
    }

    /// Works through the queue once, most endangered first. Objects that cannot be repaired
    /// now stay queued for the next pass.
    pub async fn pass(&self, cancel: &CancellationToken) -> anyhow::Result<usize> {
        let mut repaired = 0;
        for entry in self.meta.repair_queue(PASS_LIMIT)? {
            if cancel.is_cancelled() {
                break;
            }
            match self.repair_object(&entry).await {
                Ok(true) => {
                    self.meta.repair_done(&entry)?;
                    repaired += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(bucket = %entry.bucket, key = %entry.key, error = %e, "repair failed");
                    *self
                        .stats
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("{}/{}: {e:#}", entry.bucket, entry.key));
                }
            }
        }
        Ok(repaired)
    }

    /// Repairs every segment of an object below the threshold. `Ok(true)`: nothing is left to
    /// do (repaired, healthy, or gone); `Ok(false)`: some segment can't be repaired yet.
    async fn repair_object(&self, entry: &RepairEntry) -> anyhow::Result<bool> {
        let Some(mut current) = self.meta.object(&entry.bucket, &entry.key)? else {
            return Ok(true);
        };
        let Body::Segments(segs) = &current.body else {
            return Ok(true);
        };
        let todo: Vec<usize> = segs
            .iter()
            .enumerate()
            .filter(|(_, s)| self.health.healthy(s) < self.health.threshold(s))
            .map(|(i, _)| i)
            .collect();
        if todo.is_empty() {
            return Ok(true);
        }
        let key = self.master.unwrap(&current.wrapped_key)?;
        let mut complete = true;
        for group in todo.chunks(SEGMENTS_PER_COMMIT) {
            let mut upload = [0u8; 16];
            aws_lc_rs::rand::fill(&mut upload)
                .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
            let mut next = current.clone();
            let Body::Segments(next_segs) = &mut next.body else {
                unreachable!("cloned from a segmented body");
            };
            for &i in group {
                match self.repair_segment(&mut next_segs[i], &key, &upload).await {
                    Ok(()) => {
                        self.stats.segments_repaired.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        complete = false;
                        if matches!(e, SegmentError::TooFew { .. }) {
                            self.stats.unrepairable.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::warn!(bucket = %entry.bucket, key = %entry.key, segment = i, error = %e, "segment not repaired");
                    }
                }
            }
            if next == current {
                self.meta.abandon_upload(&upload)?;
                continue;
            }
            if !self
                .meta
                .commit_repair(&entry.bucket, &entry.key, &current, &next, &upload)?
            {
                // Overwritten or deleted meanwhile: the new version was written whole.
                return Ok(true);
            }
            current = next;
        }
        if complete {
            self.stats.objects_repaired.fetch_add(1, Ordering::Relaxed);
            tracing::info!(bucket = %entry.bucket, key = %entry.key, "object repaired");
        }
        Ok(complete)
    }

    /// Rebuilds a segment's unhealthy pieces and places them on new nodes, updating `seg`.
    async fn repair_segment(
        &self,
        seg: &mut SegmentRecord,
        key: &DataKey,
        upload: &[u8; 16],
    ) -> Result<(), SegmentError> {
        let k = seg.params.k();
        let healthy: Vec<bool> = seg
            .pieces
            .iter()
            .map(|p| self.health.problem(p).is_none())
            .collect();
        if healthy.iter().all(|&h| h) {
            return Ok(()); // healthy again (a node came back)
        }
        // Whole pieces from healthy holders, online ones first, until k verify.
        let mut order: Vec<usize> = (0..seg.pieces.len()).filter(|&i| healthy[i]).collect();
        order.sort_by_key(|&i| self.nodes.online_holder(&seg.pieces[i]).is_none());
        let gathered = gather_verified(self.net.as_ref(), seg, order, k, None).await;
        let fetched: u64 = gathered
            .pieces
            .iter()
            .flatten()
            .map(|p| p.len() as u64)
            .sum();
        self.spend(fetched).await;
        self.stats
            .bytes_fetched
            .fetch_add(fetched, Ordering::Relaxed);
        // Pieces found missing or damaged on the way are bad too: rebuild them now as well.
        let mut healthy = healthy;
        for (i, reason) in &gathered.damaged {
            healthy[*i] = false;
            if let Some(node) = &seg.pieces[*i].node {
                let piece = PieceRef {
                    node: node.clone(),
                    piece: seg.pieces[*i].id,
                };
                self.health
                    .report_bad(&piece, &format!("repair: {reason}"))?;
            }
        }
        if gathered.good < k {
            return Err(SegmentError::TooFew {
                good: gathered.good,
                k,
                problems: gathered.problems.join("; "),
            });
        }
        let have = gathered.pieces;
        let decoder = SegmentDecoder::new(seg.params, key.clone());
        let record = seg.clone();
        let rebuilt = tokio::task::spawn_blocking(move || {
            let ids = record.ids();
            let info = record.info(&ids)?;
            let refs: Vec<Option<&[u8]>> = have.iter().map(|p| p.as_deref()).collect();
            anyhow::Ok(decoder.rebuild(&info, &refs)?)
        })
        .await
        .map_err(anyhow::Error::from)??;

        // New homes: online nodes that may take pieces and hold none of this segment's.
        let missing: Vec<usize> = (0..seg.pieces.len()).filter(|&i| !healthy[i]).collect();
        let Some(&first_missing) = missing.first() else {
            return Ok(()); // healthy again (a node came back)
        };
        let piece_len = rebuilt.piece(0).len() as u64;
        let occupied: HashSet<NodeId> = seg.pieces.iter().filter_map(|p| p.node.clone()).collect();
        let candidates: Vec<_> = self
            .nodes
            .candidates(piece_len)
            .into_iter()
            .filter(|c| !occupied.contains(&node_id(&c.node.peer)))
            .collect();
        let taken: Vec<Taken> = (0..seg.pieces.len())
            .filter(|&i| healthy[i])
            .filter_map(|i| seg.pieces[i].node.as_ref().and_then(peer_of))
            .filter_map(|peer| self.nodes.taken(&peer))
            .collect();
        let mut plan = self
            .nodes
            .plan(
                &candidates,
                seg.pieces[first_missing].id.as_bytes(),
                missing.len(),
                &taken,
            )
            .map_err(|e| SegmentError::NoNodes(e.to_string()))?;
        for (slot, &i) in missing.iter().enumerate() {
            let id = seg.pieces[i].id;
            let bytes = Bytes::copy_from_slice(rebuilt.piece(i));
            let mut next = plan.node(slot).map(|n| n.peer);
            let mut placed = false;
            while let Some(peer) = next {
                let target = PieceRef {
                    node: node_id(&peer),
                    piece: id,
                };
                self.meta
                    .add_pending(upload, std::slice::from_ref(&target))
                    .map_err(anyhow::Error::from)?;
                self.spend(piece_len).await;
                match self.net.put(peer, id, bytes.clone()).await {
                    Ok(()) => {
                        self.nodes.charge(&peer, piece_len);
                        self.stats.pieces_placed.fetch_add(1, Ordering::Relaxed);
                        self.stats
                            .bytes_placed
                            .fetch_add(piece_len, Ordering::Relaxed);
                        seg.pieces[i].node = Some(target.node);
                        placed = true;
                        break;
                    }
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "placing a rebuilt piece failed; trying the next node");
                        next = plan.replace(slot).map(|n| n.peer);
                    }
                }
            }
            if !placed {
                return Err(SegmentError::NoNodes(format!(
                    "every node placement allows for piece {i} failed"
                )));
            }
        }
        Ok(())
    }

    /// Waits until moving `bytes` more keeps the rate (a token bucket with one second of burst).
    async fn spend(&self, bytes: u64) {
        let rate = self.health.config.rate as f64;
        let wait = {
            let mut budget = self.budget.lock().unwrap_or_else(|p| p.into_inner());
            let (since, spent) = &mut *budget;
            let due = Duration::from_secs_f64(*spent as f64 / rate);
            if since.elapsed() > due + Duration::from_secs(1) {
                *since = Instant::now();
                *spent = 0;
            }
            *spent += bytes;
            Duration::from_secs_f64(*spent as f64 / rate).saturating_sub(since.elapsed())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
