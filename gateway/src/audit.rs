//! The audit worker: challenges every node at least once per interval and turns the answers into
//! verdicts, transcripts and reputation.
//!
//! One round per `interval`: for each known node that is not disqualified, a piece it should
//! hold is picked at random ([`Meta::random_held`]), a [`Challenge`] for a few CSPRNG-chosen
//! 1 KiB chunks with a fresh nonce is sent, and the answer must arrive within `deadline`. The
//! proof is checked with nothing but the piece id and length, and the node's signature over the
//! transcript with nothing but its node id. The transcript and the node's updated reputation are
//! stored in one write; a failed piece is marked bad and its object queued for repair.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chunker::Challenge;
use futures::StreamExt;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::meta::{AuditRecord, Meta, PieceRef, Verdict};
use crate::nodes::{node_id, NodeView, Nodes};
use crate::pieces::{PieceError, PieceNet};
use crate::repair::Health;
use crate::reputation::{NodeReputation, NodeState, Policy};
use crate::time::now_ms;

/// Nodes audited at once.
const CONCURRENCY: usize = 16;

/// How audits run.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Every node is challenged at least once per interval.
    pub interval: Duration,
    /// How long a node has to answer.
    pub deadline: Duration,
    /// Chunks per challenge.
    pub chunks: usize,
    /// Transcripts older than this are deleted.
    pub retention: Duration,
}

/// Audits run since start, by verdict.
#[derive(Debug, Default)]
pub struct AuditCounts {
    pub pass: AtomicU64,
    pub fail: AtomicU64,
    pub timeout: AtomicU64,
    pub offline: AtomicU64,
}

impl AuditCounts {
    fn count(&self, verdict: Verdict) {
        let counter = match verdict {
            Verdict::Pass => &self.pass,
            Verdict::Fail => &self.fail,
            Verdict::Timeout => &self.timeout,
            Verdict::Offline => &self.offline,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Each verdict with its count.
    pub fn by_verdict(&self) -> [(Verdict, u64); 4] {
        [
            (Verdict::Pass, self.pass.load(Ordering::Relaxed)),
            (Verdict::Fail, self.fail.load(Ordering::Relaxed)),
            (Verdict::Timeout, self.timeout.load(Ordering::Relaxed)),
            (Verdict::Offline, self.offline.load(Ordering::Relaxed)),
        ]
    }
}

/// Audits nodes and keeps their reputation.
pub struct Auditor {
    /// Audits since start, by verdict.
    pub counts: AuditCounts,
    meta: Arc<Meta>,
    nodes: Arc<Nodes>,
    net: Arc<dyn PieceNet>,
    health: Arc<Health>,
    config: AuditConfig,
    policy: Policy,
    /// Verdicts per node for the usage ledger.
    meter: Arc<crate::ledger::Meter>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The verdict on one answer, with the proof and signature to keep.
struct Answer {
    verdict: Verdict,
    proof: Option<chunker::Proof>,
    signature: Vec<u8>,
    detail: String,
}

impl Answer {
    fn without_proof(verdict: Verdict, detail: String) -> Self {
        Answer {
            verdict,
            proof: None,
            signature: Vec::new(),
            detail,
        }
    }
}

impl Auditor {
    pub fn new(
        meta: Arc<Meta>,
        nodes: Arc<Nodes>,
        net: Arc<dyn PieceNet>,
        health: Arc<Health>,
        config: AuditConfig,
        policy: Policy,
        meter: Arc<crate::ledger::Meter>,
    ) -> Self {
        Auditor {
            counts: AuditCounts::default(),
            meta,
            nodes,
            net,
            health,
            config,
            policy,
            meter,
        }
    }

    /// Runs rounds until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let started = Instant::now();
            tokio::select! {
                () = self.round() => {}
                () = cancel.cancelled() => return,
            }
            let retention = u64::try_from(self.config.retention.as_millis()).unwrap_or(u64::MAX);
            if let Err(e) = self.meta.prune_audits(now_ms().saturating_sub(retention)) {
                tracing::warn!(error = %e, "pruning old audit transcripts failed");
            }
            let rest = self.config.interval.saturating_sub(started.elapsed());
            tokio::select! {
                () = tokio::time::sleep(rest) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// Audits every node once.
    pub async fn round(&self) {
        futures::stream::iter(self.nodes.all())
            .for_each_concurrent(CONCURRENCY, |node| async move {
                let peer = node.peer;
                if let Err(e) = self.audit(node).await {
                    tracing::warn!(%peer, error = %e, "audit failed to run");
                }
            })
            .await;
    }

    /// Audits one node; returns its verdict (`None`: nothing to audit, or disqualified).
    pub async fn audit(&self, node: NodeView) -> anyhow::Result<Option<Verdict>> {
        let id = node_id(&node.peer);
        let now = now_ms();
        let mut reputation = self
            .meta
            .reputation(&id)?
            .unwrap_or_else(|| NodeReputation::new(&self.policy, now));
        if reputation.state == NodeState::Disqualified {
            self.nodes.set_state(&node.peer, NodeState::Disqualified);
            return Ok(None);
        }
        let Some(held) = self.meta.random_held(&id)? else {
            // Holds nothing yet: only its availability can be scored.
            if !node.online {
                let change = reputation.observe_offline(now, &self.policy);
                self.meta.put_reputation(&id, &reputation)?;
                self.apply(&node.peer, &reputation, change)?;
            }
            return Ok(None);
        };
        let challenge = Challenge::random(held.piece, held.len, self.config.chunks)?;
        let answer = if node.online {
            self.ask(node.peer, &challenge).await
        } else {
            Answer::without_proof(Verdict::Offline, "not connected".into())
        };
        let piece = PieceRef {
            node: id.clone(),
            piece: held.piece,
        };
        if answer.verdict == Verdict::Fail && !self.meta.is_held(&piece)? {
            // Replaced or deleted while the challenge was out: the node may rightly have
            // dropped it. No verdict.
            return Ok(None);
        }
        let change = reputation.observe(answer.verdict, now, &self.policy);
        let record = AuditRecord {
            time_ms: now,
            node: id.clone(),
            challenge,
            proof: answer.proof,
            signature: answer.signature,
            verdict: answer.verdict,
            detail: answer.detail,
        };
        self.meta.record_audit(&record, &reputation)?;
        self.counts.count(record.verdict);
        match record.verdict {
            Verdict::Pass => self.meter.audit(node.peer, true),
            Verdict::Fail | Verdict::Timeout => self.meter.audit(node.peer, false),
            Verdict::Offline => {}
        }
        if record.verdict == Verdict::Fail {
            tracing::warn!(peer = %node.peer, piece = %held.piece, detail = %record.detail, "audit failed");
            self.health
                .report_bad(&piece, &format!("audit: {}", record.detail))?;
        }
        self.apply(&node.peer, &reputation, change)?;
        Ok(Some(record.verdict))
    }

    /// Sends the challenge and judges the answer.
    async fn ask(&self, peer: PeerId, challenge: &Challenge) -> Answer {
        match self
            .net
            .challenge(peer, challenge.clone(), self.config.deadline)
            .await
        {
            Ok((proof, signature)) => {
                let checked = chunker::proof::verify(challenge, &proof)
                    .map_err(|e| format!("proof does not verify: {e}"))
                    .and_then(|()| {
                        if storage_node::client::verify_proof_signature(
                            &peer, challenge, &proof, &signature,
                        ) {
                            Ok(())
                        } else {
                            Err("the node's signature over the transcript does not verify".into())
                        }
                    });
                let (verdict, detail) = match checked {
                    Ok(()) => (Verdict::Pass, String::new()),
                    Err(detail) => (Verdict::Fail, detail),
                };
                Answer {
                    verdict,
                    proof: Some(proof),
                    signature,
                    detail,
                }
            }
            Err(e) => {
                let verdict = match e {
                    PieceError::Timeout { .. } => Verdict::Timeout,
                    PieceError::Unreachable { .. } => Verdict::Offline,
                    PieceError::NotFound { .. }
                    | PieceError::Corrupt { .. }
                    | PieceError::Full { .. }
                    | PieceError::Refused { .. }
                    | PieceError::BadAnswer { .. } => Verdict::Fail,
                };
                Answer::without_proof(verdict, e.to_string())
            }
        }
    }

    /// Carries out a state change.
    fn apply(
        &self,
        peer: &PeerId,
        reputation: &NodeReputation,
        change: Option<NodeState>,
    ) -> anyhow::Result<()> {
        self.nodes.set_state(peer, reputation.state);
        let Some(state) = change else { return Ok(()) };
        if state == NodeState::Disqualified {
            tracing::warn!(%peer, reason = %reputation.reason, "node disqualified");
            self.meta.gc_forget(&node_id(peer))?;
        } else {
            tracing::info!(%peer, state = state.as_str(), reason = %reputation.reason, "node state changed");
        }
        Ok(())
    }
}

/// An audit transcript as exported: everything needed to re-check it offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedAudit {
    pub time_ms: u64,
    /// The node's id (its libp2p peer id, which embeds its public key).
    pub node: String,
    /// Piece id, hex.
    pub piece: String,
    pub piece_len: u64,
    /// Challenged chunk indices.
    pub chunks: Vec<u32>,
    /// The challenge's nonce, hex.
    pub nonce: String,
    /// The node's proof: hex of its postcard encoding (`chunker::Proof`); empty if none came.
    pub proof: String,
    /// The node's ed25519 signature over the transcript hash, hex.
    pub signature: String,
    pub verdict: Verdict,
    pub detail: String,
}

impl ExportedAudit {
    /// The exported form of a stored transcript.
    pub fn from_record(r: &AuditRecord) -> Self {
        let hex = crate::digest::hex;
        ExportedAudit {
            time_ms: r.time_ms,
            node: crate::nodes::peer_of(&r.node).map_or_else(String::new, |p| p.to_string()),
            piece: r.challenge.piece_id().to_string(),
            piece_len: r.challenge.piece_len(),
            chunks: r.challenge.indices().to_vec(),
            nonce: hex(r.challenge.nonce()),
            proof: r
                .proof
                .as_ref()
                .and_then(|p| postcard::to_extend(p, Vec::new()).ok())
                .map_or_else(String::new, |b| hex(&b)),
            signature: hex(&r.signature),
            verdict: r.verdict,
            detail: r.detail.clone(),
        }
    }
}

/// What re-checking an export found.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Transcripts read.
    pub audits: usize,
    /// Passes whose proof and signature verify.
    pub passes_confirmed: usize,
    /// Failures whose (signed) proof indeed does not verify.
    pub failures_confirmed: usize,
    /// Verdicts without a proof to check (no answer, "not found", offline, timeout).
    pub unprovable: usize,
    /// Lines whose verdict the proof contradicts, or that do not parse: `(line, why)`.
    pub mismatches: Vec<(usize, String)>,
}

/// Re-checks every transcript of an export (JSON lines of [`ExportedAudit`]) with nothing but
/// what it contains: each proof against its piece id and length, each signature against the
/// node id, and each verdict against those results.
pub fn verify_export(text: &str) -> VerifyReport {
    match verify_export_from(text.as_bytes(), |_, _| {}) {
        Ok(report) => report,
        Err(e) => unreachable!("reading from memory cannot fail: {e}"),
    }
}

/// [`verify_export`] over a reader, one line in memory at a time, calling `progress` with the
/// audits and bytes read so far after each line (how `gateway audit verify` shows progress on a
/// large export).
pub fn verify_export_from(
    mut input: impl std::io::BufRead,
    mut progress: impl FnMut(u64, u64),
) -> std::io::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let (mut buf, mut line_no, mut read) = (Vec::new(), 0usize, 0u64);
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(report);
        }
        line_no += 1;
        read += n as u64;
        let line = std::str::from_utf8(&buf).map(str::trim);
        if line.is_ok_and(str::is_empty) {
            continue;
        }
        report.audits += 1;
        match line
            .map_err(|_| "not UTF-8".to_string())
            .and_then(check_exported)
        {
            Ok(Checked::PassConfirmed) => report.passes_confirmed += 1,
            Ok(Checked::FailConfirmed) => report.failures_confirmed += 1,
            Ok(Checked::Unprovable) => report.unprovable += 1,
            Err(why) => report.mismatches.push((line_no, why)),
        }
        progress(report.audits as u64, read);
    }
}

enum Checked {
    PassConfirmed,
    FailConfirmed,
    Unprovable,
}

fn check_exported(line: &str) -> Result<Checked, String> {
    let a: ExportedAudit = serde_json::from_str(line).map_err(|e| format!("unreadable: {e}"))?;
    let unhex =
        |what: &str, s: &str| crate::digest::unhex(s).ok_or_else(|| format!("{what} is not hex"));
    let piece: [u8; 32] = unhex("piece", &a.piece)?
        .try_into()
        .map_err(|_| "piece id is not 32 bytes".to_string())?;
    let nonce: [u8; 32] = unhex("nonce", &a.nonce)?
        .try_into()
        .map_err(|_| "nonce is not 32 bytes".to_string())?;
    let challenge = Challenge::new(
        chunker::PieceId::from_bytes(piece),
        a.piece_len,
        a.chunks.clone(),
        nonce,
    )
    .map_err(|e| format!("challenge: {e}"))?;
    if a.proof.is_empty() {
        return match a.verdict {
            Verdict::Pass => Err("a pass without a proof".into()),
            _ => Ok(Checked::Unprovable),
        };
    }
    let proof: chunker::Proof = postcard::from_bytes(&unhex("proof", &a.proof)?)
        .map_err(|e| format!("proof does not decode: {e}"))?;
    let node: PeerId = a
        .node
        .parse()
        .map_err(|_| "node is not a node id".to_string())?;
    let signature = unhex("signature", &a.signature)?;
    let signed =
        storage_node::client::verify_proof_signature(&node, &challenge, &proof, &signature);
    let valid = chunker::proof::verify(&challenge, &proof).is_ok();
    match (a.verdict, valid && signed) {
        (Verdict::Pass, true) => Ok(Checked::PassConfirmed),
        (Verdict::Pass, false) => Err(format!(
            "recorded as a pass, but the proof {} and the signature {}",
            if valid { "verifies" } else { "does not verify" },
            if signed {
                "verifies"
            } else {
                "does not verify"
            }
        )),
        (_, false) => Ok(Checked::FailConfirmed),
        (v, true) => Err(format!(
            "recorded as {}, but the proof and signature verify",
            v.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_of_a_full_piece_is_a_few_kilobytes_and_round_trips_through_export() {
        let piece: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let id = chunker::PieceId::of(&piece);
        let challenge = Challenge::random(id, piece.len() as u64, 4).unwrap();
        let proof = chunker::proof::prove(&challenge, &piece).unwrap();
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let signature = keypair
            .sign(&chunker::proof::transcript_hash(&challenge, &proof))
            .unwrap();
        let record = AuditRecord {
            time_ms: 1,
            node: crate::nodes::node_id(&keypair.public().to_peer_id()),
            challenge,
            proof: Some(proof),
            signature,
            verdict: Verdict::Pass,
            detail: String::new(),
        };
        let stored = postcard::to_extend(&record, Vec::new()).unwrap().len();
        // 4 × (1 KiB + 10 sibling hashes) plus challenge and signature: 5.5 KiB.
        assert!((5000..6000).contains(&stored), "{stored} bytes");
        let line = serde_json::to_string(&ExportedAudit::from_record(&record)).unwrap();
        let report = verify_export(&line);
        assert_eq!(report.passes_confirmed, 1, "{report:?}");

        // Read from a stream: progress per transcript; a line of bytes that are not UTF-8 is
        // a contradiction of its own, not the end of the check.
        let mut file = format!("{line}\n\n").into_bytes();
        file.extend_from_slice(b"\xff\xfe{\n");
        file.extend_from_slice(format!("{line}\n").as_bytes());
        let mut seen = Vec::new();
        let report = verify_export_from(&file[..], |n, _| seen.push(n)).unwrap();
        assert_eq!(seen, [1, 2, 3]);
        assert_eq!(report.passes_confirmed, 2);
        assert_eq!(report.mismatches, [(3, "not UTF-8".to_string())]);
    }
}
