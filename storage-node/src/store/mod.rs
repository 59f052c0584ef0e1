//! The piece store: where a node keeps the pieces it was given.
//!
//! [`PieceStore`] is the small trait everything above it is written against; [`DiskStore`] is the
//! real one (a rocksdb index, small pieces inline, large ones as files) and [`MemoryStore`] stands
//! in for it in tests of the logic above. Both pass the same conformance suite (`store::tests`).
//!
//! Every piece is checked against its id when it is stored and again when it is read: a store
//! never acknowledges a piece it did not verify and never serves bytes as good that are not.

use std::ops::Range;

use chunker::proof::{ProofError, SpanError};
use chunker::{Challenge, Outboard, PieceId, Proof};

mod disk;
mod memory;
#[cfg(test)]
mod tests;

pub use disk::{disk_free, DiskStore, DiskStoreOptions, Inspection, NodeCounters, DISK_RESERVE};
pub use memory::MemoryStore;

/// Largest piece a store accepts (the chunker's largest piece size).
pub const MAX_PIECE_LEN: u64 = chunker::params::MAX_PIECE_SIZE as u64;

/// Why a store operation failed. The variants are the facts the protocol reports to a gateway.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("piece {id} is not stored here")]
    NotFound { id: PieceId },
    #[error("piece {id} is corrupt on disk: {rot}")]
    Corrupt { id: PieceId, rot: Rot },
    #[error("the bytes sent as piece {expected} hash to {actual}: refused")]
    IdMismatch { expected: PieceId, actual: PieceId },
    #[error("storing {needed} bytes would exceed the capacity: {free} of {capacity} bytes free")]
    CapacityFull {
        needed: u64,
        free: u64,
        capacity: u64,
    },
    #[error("the disk is full")]
    DiskFull,
    #[error("a piece is 1 ..= {MAX_PIECE_LEN} bytes, not {len}")]
    PieceLength { len: u64 },
    #[error("range {start}..{end} is not inside piece {id} of {len} bytes")]
    Range {
        id: PieceId,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("challenge for piece {id} does not fit it: {source}")]
    Challenge {
        id: PieceId,
        #[source]
        source: ProofError,
    },
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the piece index lacks a column family (not a store directory?)")]
    MissingColumnFamily,
    #[error("piece index: {0}")]
    Index(rocksdb::Error),
    #[error(
        "the piece index could not be reopened after a full disk; retried on the next request"
    )]
    IndexClosed,
    #[error("index record for piece {id} is unreadable: {rot}")]
    BadRecord { id: PieceId, rot: Rot },
}

/// What is wrong with stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rot {
    #[error("its bytes no longer hash to its id")]
    Hash,
    #[error("block {block} no longer matches its outboard")]
    Block { block: u64 },
    #[error("{found} bytes on disk, {expected} expected")]
    Length { expected: u64, found: u64 },
    #[error("its file is gone")]
    FileMissing,
    #[error("the index record does not decode")]
    Record,
    #[error("the stored outboard does not fit the piece")]
    Outboard,
}

impl From<rocksdb::Error> for StoreError {
    /// A full disk is [`StoreError::DiskFull`] wherever it shows, in the index too (rocksdb
    /// reports it only in its message: "IO error: No space left on device: …").
    fn from(e: rocksdb::Error) -> Self {
        if e.kind() == rocksdb::ErrorKind::IOError && e.as_ref().contains("No space left") {
            StoreError::DiskFull
        } else {
            StoreError::Index(e)
        }
    }
}

impl StoreError {
    /// Wraps an I/O error, telling a full disk apart.
    pub(crate) fn io(op: &'static str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::StorageFull {
            StoreError::DiskFull
        } else {
            StoreError::Io { op, source }
        }
    }

    pub(crate) fn corrupt_span(id: PieceId, e: SpanError) -> Self {
        let rot = match e {
            SpanError::Corrupt { block } => Rot::Block { block },
            SpanError::NotBlocks { .. } => Rot::Outboard,
        };
        StoreError::Corrupt { id, rot }
    }
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The piece is now stored.
    Stored,
    /// The piece was already here; nothing changed.
    AlreadyStored,
}

/// What the store knows of one piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceInfo {
    pub id: PieceId,
    pub len: u64,
    /// When it was stored, milliseconds since the Unix epoch.
    pub stored_ms: u64,
    /// When its bytes were last hashed and found intact (at store time, then by scrubs).
    pub verified_ms: u64,
}

/// Totals for status and registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    pub pieces: u64,
    pub used_bytes: u64,
    pub capacity_bytes: u64,
}

/// The outcome of re-hashing one piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrubResult {
    Intact,
    Corrupt(Rot),
    Missing,
}

/// A place to keep pieces. Methods block (disk I/O): async callers use `spawn_blocking`.
pub trait PieceStore: Send + Sync + 'static {
    /// Stores a piece after checking `data` against `id`. Storing a piece that is already held
    /// succeeds without writing. Refuses when the capacity would be exceeded.
    fn put(&self, id: PieceId, data: &[u8]) -> Result<PutOutcome, StoreError>;

    /// Reads a whole piece (`range: None`) or a byte range of it. Whole pieces are checked against
    /// the id, ranges against the piece's outboard; rot is [`StoreError::Corrupt`], never data.
    fn get(&self, id: &PieceId, range: Option<Range<u64>>) -> Result<Vec<u8>, StoreError>;

    /// Removes a piece; `Ok(false)` if it was not here.
    fn delete(&self, id: &PieceId) -> Result<bool, StoreError>;

    /// What is known of a piece, if it is here.
    fn info(&self, id: &PieceId) -> Result<Option<PieceInfo>, StoreError>;

    /// Up to `limit` pieces with ids greater than `after`, in id order (for scrubbing and
    /// reconciliation with the gateway).
    fn list(&self, after: Option<PieceId>, limit: usize) -> Result<Vec<PieceInfo>, StoreError>;

    /// Answers a storage challenge, reading only the blocks around the challenged chunks.
    fn prove(&self, challenge: &Challenge) -> Result<Proof, StoreError>;

    /// Re-hashes a piece fully and records the time if it is intact.
    fn scrub(&self, id: &PieceId, now_ms: u64) -> Result<ScrubResult, StoreError>;

    /// Pieces held, bytes used and the configured capacity.
    fn stats(&self) -> StoreStats;
}

/// Format byte of every record the store (and the ledger in its state) writes.
pub(crate) const RECORD_FORMAT: u8 = 1;

/// A record as the store keeps it: the format byte, then postcard.
pub(crate) fn encode_record<T: serde::Serialize>(value: &T) -> Vec<u8> {
    match postcard::to_extend(value, vec![RECORD_FORMAT]) {
        Ok(v) => v,
        Err(e) => unreachable!("serializing to a Vec can't fail: {e}"),
    }
}

/// A record [`encode_record`] wrote; `None` for another format or bytes that do not decode.
pub(crate) fn decode_record<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match bytes.split_first() {
        Some((&RECORD_FORMAT, body)) => postcard::from_bytes(body).ok(),
        _ => None,
    }
}

/// One [`StateStore`] record: key, value.
pub type StateEntry = (Vec<u8>, Vec<u8>);

/// Small records a node keeps beside its pieces (the usage ledger), by key: the stores keep them
/// in the same database as the piece index, so they share its durability.
pub trait StateStore: Send + Sync + 'static {
    /// Every entry whose key starts with `prefix`, in key order.
    fn load_state(&self, prefix: &[u8]) -> Result<Vec<StateEntry>, StoreError>;

    /// Writes `entries` in one atomic, durable write.
    fn save_state(&self, entries: &[StateEntry]) -> Result<(), StoreError>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Checks a range against a piece length.
pub(crate) fn check_range(id: &PieceId, len: u64, range: &Range<u64>) -> Result<(), StoreError> {
    if range.start >= range.end || range.end > len {
        return Err(StoreError::Range {
            id: *id,
            start: range.start,
            end: range.end,
            len,
        });
    }
    Ok(())
}

/// Checks the length and the id of a piece offered for storage, and returns its outboard
/// (computed in the same single pass over the bytes).
pub(crate) fn check_incoming(id: &PieceId, data: &[u8]) -> Result<Outboard, StoreError> {
    let len = data.len() as u64;
    if len == 0 || len > MAX_PIECE_LEN {
        return Err(StoreError::PieceLength { len });
    }
    Outboard::verified(id, data).map_err(|e| StoreError::IdMismatch {
        expected: e.expected,
        actual: e.actual,
    })
}
