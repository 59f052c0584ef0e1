//! An in-memory [`PieceStore`] for tests of the logic above the store. Same rules as the disk
//! store (verification, capacity, idempotent puts), none of the durability.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::RwLock;

use chunker::{Challenge, Outboard, PieceId, Proof};

use super::{
    check_incoming, check_range, now_ms, PieceInfo, PieceStore, PutOutcome, Rot, ScrubResult,
    StateEntry, StateStore, StoreError, StoreStats,
};

#[derive(Debug)]
struct Held {
    data: Vec<u8>,
    outboard: Outboard,
    info: PieceInfo,
}

/// Pieces in a map, with a capacity.
#[derive(Debug)]
pub struct MemoryStore {
    capacity: u64,
    pieces: RwLock<BTreeMap<PieceId, Held>>,
    state: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store that holds up to `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        MemoryStore {
            capacity,
            pieces: RwLock::new(BTreeMap::new()),
            state: RwLock::new(BTreeMap::new()),
        }
    }

    /// Changes a stored byte behind the store's back, as disk rot would (for tests).
    pub fn corrupt(&self, id: &PieceId, offset: usize) -> bool {
        let mut pieces = self.pieces.write().unwrap_or_else(|p| p.into_inner());
        match pieces.get_mut(id).and_then(|h| h.data.get_mut(offset)) {
            Some(b) => {
                *b ^= 0x01;
                true
            }
            None => false,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<PieceId, Held>> {
        self.pieces.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl PieceStore for MemoryStore {
    fn put(&self, id: PieceId, data: &[u8]) -> Result<PutOutcome, StoreError> {
        let outboard = check_incoming(&id, data)?;
        let mut pieces = self.pieces.write().unwrap_or_else(|p| p.into_inner());
        if pieces.contains_key(&id) {
            return Ok(PutOutcome::AlreadyStored);
        }
        let used: u64 = pieces.values().map(|h| h.info.len).sum();
        let len = data.len() as u64;
        if used + len > self.capacity {
            return Err(StoreError::CapacityFull {
                needed: len,
                free: self.capacity.saturating_sub(used),
                capacity: self.capacity,
            });
        }
        let now = now_ms();
        pieces.insert(
            id,
            Held {
                data: data.to_vec(),
                outboard,
                info: PieceInfo {
                    id,
                    len,
                    stored_ms: now,
                    verified_ms: now,
                },
            },
        );
        Ok(PutOutcome::Stored)
    }

    fn get(&self, id: &PieceId, range: Option<Range<u64>>) -> Result<Vec<u8>, StoreError> {
        let pieces = self.read();
        let held = pieces.get(id).ok_or(StoreError::NotFound { id: *id })?;
        match range {
            None => {
                id.verify(&held.data).map_err(|_| StoreError::Corrupt {
                    id: *id,
                    rot: Rot::Hash,
                })?;
                Ok(held.data.clone())
            }
            Some(range) => {
                check_range(id, held.info.len, &range)?;
                let span = held.outboard.covering_blocks(range.clone());
                let bytes = &held.data[span.start as usize..span.end as usize];
                held.outboard
                    .verify_span(id, span.start, bytes)
                    .map_err(|e| StoreError::corrupt_span(*id, e))?;
                Ok(held.data[range.start as usize..range.end as usize].to_vec())
            }
        }
    }

    fn delete(&self, id: &PieceId) -> Result<bool, StoreError> {
        let mut pieces = self.pieces.write().unwrap_or_else(|p| p.into_inner());
        Ok(pieces.remove(id).is_some())
    }

    fn info(&self, id: &PieceId) -> Result<Option<PieceInfo>, StoreError> {
        Ok(self.read().get(id).map(|h| h.info.clone()))
    }

    fn list(&self, after: Option<PieceId>, limit: usize) -> Result<Vec<PieceInfo>, StoreError> {
        let pieces = self.read();
        let iter: Box<dyn Iterator<Item = &Held>> = match after {
            Some(a) => Box::new(
                pieces
                    .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                    .map(|(_, h)| h),
            ),
            None => Box::new(pieces.values()),
        };
        Ok(iter.take(limit).map(|h| h.info.clone()).collect())
    }

    fn prove(&self, challenge: &Challenge) -> Result<Proof, StoreError> {
        let id = challenge.piece_id();
        let pieces = self.read();
        let held = pieces.get(&id).ok_or(StoreError::NotFound { id })?;
        let read = |r: Range<u64>| {
            Ok::<_, StoreError>(held.data[r.start as usize..r.end as usize].to_vec())
        };
        held.outboard
            .prove(challenge, read)?
            .map_err(|source| StoreError::Challenge { id, source })
    }

    fn scrub(&self, id: &PieceId, now: u64) -> Result<ScrubResult, StoreError> {
        let mut pieces = self.pieces.write().unwrap_or_else(|p| p.into_inner());
        let Some(held) = pieces.get_mut(id) else {
            return Ok(ScrubResult::Missing);
        };
        if id.verify(&held.data).is_ok() {
            held.info.verified_ms = now;
            Ok(ScrubResult::Intact)
        } else {
            Ok(ScrubResult::Corrupt(Rot::Hash))
        }
    }

    fn stats(&self) -> StoreStats {
        let pieces = self.read();
        StoreStats {
            pieces: pieces.len() as u64,
            used_bytes: pieces.values().map(|h| h.info.len).sum(),
            capacity_bytes: self.capacity,
        }
    }
}

impl StateStore for MemoryStore {
    fn load_state(&self, prefix: &[u8]) -> Result<Vec<StateEntry>, StoreError> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        Ok(state
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn save_state(&self, entries: &[StateEntry]) -> Result<(), StoreError> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.extend(entries.iter().cloned());
        Ok(())
    }
}
