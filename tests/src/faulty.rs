//! A node's real store with one fault injected, for [`crate::TestNode::wrap`]: every call goes to
//! the disk store, except what the fault changes.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chunker::{Challenge, PieceId, Proof};
use storage_node::store::{
    DiskStore, PieceInfo, PieceStore, PutOutcome, ScrubResult, StoreError, StoreStats,
};

use crate::StoreWrap;

/// How a node misbehaves.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answers every challenge from its real store, with one bit of the first chunk flipped.
    ForgeProofs,
    /// Reads hang while the flag is set (at most a minute): the node stays connected and
    /// registered and answers everything else on time, like a node whose disk stalls.
    HangReads(Arc<AtomicBool>),
}

impl Fault {
    /// The wrap that gives a node's store this fault.
    pub fn wrap(self) -> StoreWrap {
        Arc::new(move |store| {
            Arc::new(Faulty {
                store,
                fault: self.clone(),
            })
        })
    }
}

struct Faulty {
    store: Arc<DiskStore>,
    fault: Fault,
}

impl PieceStore for Faulty {
    fn put(&self, id: PieceId, data: &[u8]) -> Result<PutOutcome, StoreError> {
        self.store.put(id, data)
    }
    fn get(&self, id: &PieceId, range: Option<Range<u64>>) -> Result<Vec<u8>, StoreError> {
        if let Fault::HangReads(hold) = &self.fault {
            let since = Instant::now();
            while hold.load(Ordering::SeqCst) && since.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.store.get(id, range)
    }
    fn delete(&self, id: &PieceId) -> Result<bool, StoreError> {
        self.store.delete(id)
    }
    fn info(&self, id: &PieceId) -> Result<Option<PieceInfo>, StoreError> {
        self.store.info(id)
    }
    fn list(&self, after: Option<PieceId>, limit: usize) -> Result<Vec<PieceInfo>, StoreError> {
        self.store.list(after, limit)
    }
    fn prove(&self, challenge: &Challenge) -> Result<Proof, StoreError> {
        let mut proof = self.store.prove(challenge)?;
        if let Fault::ForgeProofs = self.fault {
            if let Some(byte) = proof.chunks.first_mut().and_then(|c| c.data.first_mut()) {
                *byte ^= 1;
            }
        }
        Ok(proof)
    }
    fn scrub(&self, id: &PieceId, now_ms: u64) -> Result<ScrubResult, StoreError> {
        self.store.scrub(id, now_ms)
    }
    fn stats(&self) -> StoreStats {
        self.store.stats()
    }
}
