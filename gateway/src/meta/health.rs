//! The tables behind audits, reputation and repair.
//!
//! - `held`: `node ‖ order(piece)` → [`HeldPiece`]: every piece a committed manifest places on a
//!   node, kept in the same write batch as the manifest change. `order` is a keyed BLAKE3 hash of
//!   the piece id under a random key that never leaves the gateway, so a node cannot tell which
//!   of its pieces sit after wide gaps in this order (and would be audited more often when the
//!   auditor seeks to a random point); see [`Meta::random_held`].
//! - `bad`: `node ‖ piece` → [`BadPiece`]: pieces known to be lost or corrupt on their node (a
//!   failed audit, a corrupt read, a scrub report). Cleared when the reference goes away.
//! - `audits`: `time ms ‖ sequence` → [`AuditRecord`]: every audit's transcript.
//! - `reputation`: node id → [`NodeReputation`].
//! - `repair`: `healthy pieces ‖ bucket 0x00 key` → queue time: objects with a segment below the
//!   repair threshold, most endangered first. An object may be queued at several levels; the
//!   repairer re-checks the manifest, so a stale entry costs a look, nothing more.
//! - `settings`: the audit order key, the version of the `held` index, and `swept/<node>` for
//!   lost nodes whose objects were queued for repair.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chunker::manifest::{Body, NodeId};
use chunker::{Challenge, ObjectManifest, PieceId, Proof};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{
    decode, encode, node_piece_key, node_prefix, object_key, split_node_prefix, Meta, MetaError,
    PieceRef,
};
use crate::reputation::NodeReputation;

pub(super) const CF_HELD: &str = "held";
pub(super) const CF_BAD: &str = "bad";
pub(super) const CF_AUDITS: &str = "audits";
pub(super) const CF_REPUTATION: &str = "reputation";
pub(super) const CF_REPAIR: &str = "repair";
pub(super) const CF_SETTINGS: &str = "settings";

const ORDER_KEY: &[u8] = b"audit-order-key";
const HELD_INDEX: &[u8] = b"held-index";
/// Version of the `held` index; a database without it is indexed from its manifests on open.
const HELD_INDEX_VERSION: u8 = 1;

/// A piece a node should hold, as the auditor and repairer need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldPiece {
    pub piece: PieceId,
    pub len: u64,
    pub bucket: String,
    pub key: String,
}

/// Why a piece is known to be bad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadPiece {
    pub reason: String,
    pub since_ms: u64,
}

/// What an audit concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A proof that verifies against the piece id, signed by the node.
    Pass,
    /// Missing or wrong data: the node said it lacks the piece, or its proof or signature does
    /// not verify.
    Fail,
    /// No answer within the deadline.
    Timeout,
    /// The node was not reachable.
    Offline,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Timeout => "timeout",
            Verdict::Offline => "offline",
        }
    }
}

/// One audit's transcript: what was asked, what came back, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time_ms: u64,
    pub node: NodeId,
    pub challenge: Challenge,
    /// The node's proof, if it sent one.
    pub proof: Option<Proof>,
    /// Its signature over the transcript hash of (challenge, proof).
    pub signature: Vec<u8>,
    pub verdict: Verdict,
    /// What went wrong, for anything but a pass.
    pub detail: String,
}

/// Pieces of `manifest` on nodes, with their lengths.
pub fn held_pieces(manifest: &ObjectManifest) -> Vec<(PieceRef, u64)> {
    let Body::Segments(segments) = &manifest.body else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for seg in segments {
        let Ok(layout) = seg.layout() else { continue };
        let len = layout.piece_len() as u64;
        for p in &seg.pieces {
            if let Some(node) = &p.node {
                out.push((
                    PieceRef {
                        node: node.clone(),
                        piece: p.id,
                    },
                    len,
                ));
            }
        }
    }
    out
}

static AUDIT_SEQ: AtomicU64 = AtomicU64::new(0);

fn swept_key(node: &NodeId) -> Vec<u8> {
    let mut k = b"swept/".to_vec();
    k.extend_from_slice(node.as_bytes());
    k
}

fn repair_key(healthy: u8, bucket: &str, key: &str) -> Vec<u8> {
    let mut k = vec![healthy];
    k.extend_from_slice(&object_key(bucket, key));
    k
}

impl Meta {
    /// Loads (or creates) the audit order key and indexes existing manifests if the `held`
    /// index is missing. Called by [`Meta::open`].
    pub(super) fn open_health(&mut self) -> Result<(), MetaError> {
        let settings = self.cf(CF_SETTINGS);
        let key = match self.db.get_cf(settings, ORDER_KEY)? {
            Some(k) if k.len() == 32 => k,
            _ => {
                let mut k = [0u8; 32];
                aws_lc_rs::rand::fill(&mut k).map_err(|_| MetaError::Corrupt {
                    what: "audit order key",
                    reason: "the system random generator failed".into(),
                })?;
                self.db.put_cf(settings, ORDER_KEY, k)?;
                k.to_vec()
            }
        };
        self.order_key.copy_from_slice(&key);
        if self.db.get_cf(self.cf(CF_SETTINGS), HELD_INDEX)?.as_deref()
            != Some(&[HELD_INDEX_VERSION])
        {
            let mut batch = WriteBatch::default();
            let mut n = 0usize;
            for item in self
                .db
                .iterator_cf(self.cf(super::CF_OBJECTS), IteratorMode::Start)
            {
                let (k, v) = item?;
                let Some(split) = k.iter().position(|&b| b == 0) else {
                    continue;
                };
                let (Ok(bucket), Ok(key)) = (
                    std::str::from_utf8(&k[..split]),
                    std::str::from_utf8(&k[split + 1..]),
                ) else {
                    continue;
                };
                let Ok(manifest) = ObjectManifest::decode(&v) else {
                    continue;
                };
                n += 1;
                self.add_held(&mut batch, bucket, key, &manifest);
            }
            batch.put_cf(self.cf(CF_SETTINGS), HELD_INDEX, [HELD_INDEX_VERSION]);
            self.write(batch)?;
            if n > 0 {
                tracing::info!(objects = n, "indexed the pieces each node holds");
            }
        }
        Ok(())
    }

    fn held_key(&self, node: &NodeId, piece: &PieceId) -> Vec<u8> {
        let mut k = node_prefix(node);
        k.extend_from_slice(blake3::keyed_hash(&self.order_key, piece.as_bytes()).as_bytes());
        k
    }

    /// Adds to `batch`: index every piece `manifest` places.
    pub(super) fn add_held(
        &self,
        batch: &mut WriteBatch,
        bucket: &str,
        key: &str,
        manifest: &ObjectManifest,
    ) {
        for (p, len) in held_pieces(manifest) {
            let record = HeldPiece {
                piece: p.piece,
                len,
                bucket: bucket.to_string(),
                key: key.to_string(),
            };
            batch.put_cf(
                self.cf(CF_HELD),
                self.held_key(&p.node, &p.piece),
                encode(&record),
            );
        }
    }

    /// Adds to `batch`: forget that `piece` is held (and any note that it is bad).
    pub(super) fn drop_held(&self, batch: &mut WriteBatch, piece: &PieceRef) {
        batch.delete_cf(self.cf(CF_HELD), self.held_key(&piece.node, &piece.piece));
        batch.delete_cf(self.cf(CF_BAD), node_piece_key(&piece.node, &piece.piece));
    }

    /// A piece `node` should hold, picked at random: the first entry at or after a random point
    /// of the node's (secretly keyed) order, wrapping around. `None` if it should hold nothing.
    pub fn random_held(&self, node: &NodeId) -> Result<Option<HeldPiece>, MetaError> {
        let prefix = node_prefix(node);
        let mut point = [0u8; 32];
        aws_lc_rs::rand::fill(&mut point).map_err(|_| MetaError::Corrupt {
            what: "random point",
            reason: "the system random generator failed".into(),
        })?;
        let mut start = prefix.clone();
        start.extend_from_slice(&point);
        for from in [start, prefix.clone()] {
            let mut it = self.db.iterator_cf(
                self.cf(CF_HELD),
                IteratorMode::From(&from, Direction::Forward),
            );
            if let Some(item) = it.next() {
                let (k, v) = item?;
                if k.starts_with(&prefix) {
                    return Ok(Some(decode("held piece", &v)?));
                }
            }
        }
        Ok(None)
    }

    /// Whether a committed manifest still places `piece` on its node.
    pub fn is_held(&self, piece: &PieceRef) -> Result<bool, MetaError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_HELD), self.held_key(&piece.node, &piece.piece))?
            .is_some())
    }

    /// Every object with a piece on `node`, in no particular order, calling
    /// `visit(bucket, key)`. An object with many pieces there is visited once as a rule, but
    /// may come up again (the set of objects already visited is bounded).
    pub fn objects_on(
        &self,
        node: &NodeId,
        mut visit: impl FnMut(&str, &str) -> Result<(), MetaError>,
    ) -> Result<(), MetaError> {
        const REMEMBERED: usize = 4096;
        let prefix = node_prefix(node);
        let mut seen = std::collections::HashSet::new();
        let it = self.db.iterator_cf(
            self.cf(CF_HELD),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let held: HeldPiece = decode("held piece", &v)?;
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
            if seen.insert((held.bucket.clone(), held.key.clone())) {
                visit(&held.bucket, &held.key)?;
            }
        }
        Ok(())
    }

    /// How many pieces `node` should hold.
    pub fn held_count(&self, node: &NodeId) -> Result<u64, MetaError> {
        let prefix = node_prefix(node);
        let mut n = 0;
        let it = self.db.iterator_cf(
            self.cf(CF_HELD),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in it {
            if !item?.0.starts_with(&prefix) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Bytes each node should hold, by this index (one scan of it).
    pub fn held_bytes_by_node(&self) -> Result<BTreeMap<NodeId, u64>, MetaError> {
        let mut out: BTreeMap<NodeId, u64> = BTreeMap::new();
        for item in self.db.iterator_cf(self.cf(CF_HELD), IteratorMode::Start) {
            let (key, value) = item?;
            let Some((node, _)) = split_node_prefix(&key) else {
                continue;
            };
            let held: HeldPiece = decode("held piece", &value)?;
            *out.entry(node).or_default() += held.len;
        }
        Ok(out)
    }

    // --- bad pieces and the repair queue ---

    /// Records that `piece` is lost or corrupt on its node. Returns where it belongs, or
    /// `None` (and records nothing) if no manifest references it any more.
    pub fn mark_bad(&self, piece: &PieceRef, reason: &str) -> Result<Option<HeldPiece>, MetaError> {
        let _guard = self.lock();
        let Some(held) = self
            .db
            .get_cf(self.cf(CF_HELD), self.held_key(&piece.node, &piece.piece))?
        else {
            return Ok(None);
        };
        let held: HeldPiece = decode("held piece", &held)?;
        let record = BadPiece {
            reason: reason.to_string(),
            since_ms: crate::time::now_ms(),
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_BAD),
            node_piece_key(&piece.node, &piece.piece),
            encode(&record),
        );
        self.write(batch)?;
        Ok(Some(held))
    }

    /// Whether `node`'s pieces were queued for repair after it went missing.
    pub fn is_swept(&self, node: &NodeId) -> Result<bool, MetaError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_SETTINGS), swept_key(node))?
            .is_some())
    }

    /// Notes whether `node`'s pieces were queued for repair after it went missing.
    pub fn set_swept(&self, node: &NodeId, swept: bool) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        if swept {
            batch.put_cf(self.cf(CF_SETTINGS), swept_key(node), []);
        } else {
            batch.delete_cf(self.cf(CF_SETTINGS), swept_key(node));
        }
        self.write(batch)
    }

    /// Whether `piece` is known bad on its node.
    pub fn is_bad(&self, piece: &PieceRef) -> Result<bool, MetaError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_BAD), node_piece_key(&piece.node, &piece.piece))?
            .is_some())
    }

    /// Number of pieces known bad.
    pub fn bad_count(&self) -> Result<u64, MetaError> {
        let mut n = 0;
        for item in self.db.iterator_cf(self.cf(CF_BAD), IteratorMode::Start) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Queues `bucket`/`key` for repair; `healthy` (its worst segment's healthy pieces) orders
    /// the queue.
    pub fn queue_repair(&self, bucket: &str, key: &str, healthy: u8) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_REPAIR),
            repair_key(healthy, bucket, key),
            crate::time::now_ms().to_be_bytes(),
        );
        self.write(batch)
    }

    /// Up to `limit` queue entries, most endangered first: (healthy, bucket, key, queued ms).
    pub fn repair_queue(&self, limit: usize) -> Result<Vec<RepairEntry>, MetaError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_REPAIR), IteratorMode::Start) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let Some((&healthy, rest)) = k.split_first() else {
                continue;
            };
            let Some(split) = rest.iter().position(|&b| b == 0) else {
                continue;
            };
            let (Ok(bucket), Ok(key)) = (
                std::str::from_utf8(&rest[..split]),
                std::str::from_utf8(&rest[split + 1..]),
            ) else {
                continue;
            };
            let queued_ms = v
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or_default();
            out.push(RepairEntry {
                healthy,
                bucket: bucket.to_string(),
                key: key.to_string(),
                queued_ms,
            });
        }
        Ok(out)
    }

    /// Entries in the repair queue.
    pub fn repair_depth(&self) -> Result<u64, MetaError> {
        let mut n = 0;
        for item in self.db.iterator_cf(self.cf(CF_REPAIR), IteratorMode::Start) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Removes a queue entry.
    pub fn repair_done(&self, entry: &RepairEntry) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(
            self.cf(CF_REPAIR),
            repair_key(entry.healthy, &entry.bucket, &entry.key),
        );
        self.write(batch)
    }

    /// Swaps a repaired manifest in, if the object is still exactly `old`: the pieces it
    /// replaces are queued for deletion, the repair's pending pieces settled. `false` (and the
    /// repair's pieces queued for deletion) if the object changed or went away meanwhile.
    pub fn commit_repair(
        &self,
        bucket: &str,
        key: &str,
        old: &ObjectManifest,
        new: &ObjectManifest,
        upload: &[u8; 16],
    ) -> Result<bool, MetaError> {
        let swapped = self.swap(
            bucket,
            key,
            old,
            new,
            Some(upload),
            super::Change::Placement,
        )?;
        if !swapped {
            self.abandon_upload(upload)?;
        }
        Ok(swapped)
    }

    // --- audits and reputation ---

    /// Stores an audit transcript and the node's updated reputation in one write.
    pub fn record_audit(
        &self,
        record: &AuditRecord,
        reputation: &NodeReputation,
    ) -> Result<(), MetaError> {
        let mut k = record.time_ms.to_be_bytes().to_vec();
        k.extend_from_slice(&AUDIT_SEQ.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_AUDITS), k, encode(record));
        batch.put_cf(
            self.cf(CF_REPUTATION),
            record.node.as_bytes(),
            encode(reputation),
        );
        self.write(batch)
    }

    /// Audit transcripts from `since_ms` on, oldest first, calling `visit` on each until it
    /// returns `false`.
    pub fn audits(
        &self,
        since_ms: u64,
        mut visit: impl FnMut(AuditRecord) -> bool,
    ) -> Result<(), MetaError> {
        let from = since_ms.to_be_bytes();
        let it = self.db.iterator_cf(
            self.cf(CF_AUDITS),
            IteratorMode::From(&from, Direction::Forward),
        );
        for item in it {
            let (_, v) = item?;
            if !visit(decode("audit", &v)?) {
                break;
            }
        }
        Ok(())
    }

    /// The newest audit transcripts back to `since_ms`, newest first, calling `visit` on each
    /// until it returns `false`.
    pub fn audits_newest_first(
        &self,
        since_ms: u64,
        mut visit: impl FnMut(AuditRecord) -> bool,
    ) -> Result<(), MetaError> {
        for item in self.db.iterator_cf(self.cf(CF_AUDITS), IteratorMode::End) {
            let (k, v) = item?;
            let time = k
                .get(..8)
                .and_then(|t| t.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            if time < since_ms || !visit(decode("audit", &v)?) {
                break;
            }
        }
        Ok(())
    }

    /// Deletes audit transcripts older than `before_ms`.
    pub fn prune_audits(&self, before_ms: u64) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_AUDITS), [0u8; 8], before_ms.to_be_bytes());
        self.write(batch)
    }

    /// A node's reputation (`None` before its first audit).
    pub fn reputation(&self, node: &NodeId) -> Result<Option<NodeReputation>, MetaError> {
        self.db
            .get_cf(self.cf(CF_REPUTATION), node.as_bytes())?
            .map(|v| decode("reputation", &v))
            .transpose()
    }

    /// Stores a node's reputation.
    pub fn put_reputation(
        &self,
        node: &NodeId,
        reputation: &NodeReputation,
    ) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_REPUTATION), node.as_bytes(), encode(reputation));
        self.write(batch)
    }

    /// Drops every queued deletion for `node` (a disqualified node is never asked again).
    pub fn gc_forget(&self, node: &NodeId) -> Result<(), MetaError> {
        let prefix = node_prefix(node);
        let mut batch = WriteBatch::default();
        let it = self.db.iterator_cf(
            self.cf(super::CF_GC),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in it {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            batch.delete_cf(self.cf(super::CF_GC), k);
        }
        self.write(batch)
    }
}

/// An entry of the repair queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairEntry {
    pub healthy: u8,
    pub bucket: String,
    pub key: String,
    pub queued_ms: u64,
}
