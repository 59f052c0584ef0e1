//! Proofs of storage on BLAKE3's own Merkle tree.
//!
//! BLAKE3 hashes its input as a binary tree over 1 KiB chunks, so a piece id (the BLAKE3 hash of
//! the piece) is already a Merkle root. A [`Challenge`] names a piece by id and length and asks for
//! a few chunks chosen at random; the [`Proof`] carries each chunk with the chaining values of the
//! sibling subtrees on its path to the root. [`verify`] needs nothing but the challenge: it rehashes
//! the chunk, folds the siblings in and compares the result with the piece id.
//!
//! A node answers from the piece and a small [`Outboard`] (one chaining value per 16 KiB block,
//! 0.2 % of the piece), hashing only the 16 KiB block around each challenged chunk.
//!
//! What a passed challenge shows: whoever answered had the challenged chunks' exact bytes at the
//! time, and the tree binds them to the piece id. It does not show *where* the bytes were: a node
//! could fetch them from another holder, or rebuild them from other pieces of the segment, within
//! the deadline. Random chunks per challenge, fresh nonces in the signed audit transcript and
//! tight deadlines make that expensive, not impossible; see `docs/proofs.md`.

use std::ops::Range;

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use serde::{Deserialize, Serialize};

use crate::params::MAX_PIECE_SIZE;
use crate::PieceId;

/// Bytes per proof chunk (BLAKE3's chunk).
pub const CHUNK_LEN: usize = blake3::CHUNK_LEN;
/// Chunks per outboard block.
pub const OUTBOARD_BLOCK_CHUNKS: u64 = 16;
const OUTBOARD_BLOCK_LEN: u64 = OUTBOARD_BLOCK_CHUNKS * CHUNK_LEN as u64;
/// Most chunks one challenge may ask for.
pub const MAX_CHALLENGE_CHUNKS: usize = 64;
/// Longest piece a challenge may name.
pub const MAX_PROVABLE_LEN: u64 = MAX_PIECE_SIZE as u64;

/// A challenge that is malformed in itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("a piece of {len} bytes can't be challenged (1 ..= {MAX_PROVABLE_LEN} bytes)")]
    PieceLength { len: u64 },
    #[error("a challenge asks for 1 ..= {MAX_CHALLENGE_CHUNKS} chunks, not {count}")]
    ChunkCount { count: usize },
    #[error("chunk {index} is outside the piece's {chunks} chunks")]
    IndexOutOfRange { index: u32, chunks: u64 },
    #[error("challenged chunk indices must be strictly increasing")]
    Unsorted,
    #[error("the system random generator failed")]
    Random,
}

/// A proof that does not answer its challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    #[error("the proof answers {got} chunks, the challenge asked for {expected}")]
    ChunkCount { expected: usize, got: usize },
    #[error("proof entry {position} is for chunk {got}, the challenge asked for chunk {expected}")]
    WrongIndex {
        position: usize,
        expected: u32,
        got: u32,
    },
    #[error("chunk {index} is {got} bytes, expected {expected}")]
    ChunkLength {
        index: u32,
        expected: usize,
        got: usize,
    },
    #[error("chunk {index} comes with {got} sibling hashes, its path needs {expected}")]
    SiblingCount {
        index: u32,
        expected: usize,
        got: usize,
    },
    #[error("chunk {index} does not hash up to the piece id")]
    RootMismatch { index: u32 },
    #[error("the piece is {got} bytes, the challenge says {expected}")]
    PieceLength { expected: u64, got: u64 },
    #[error("the outboard is {got} bytes, a {piece_len}-byte piece needs {expected}")]
    OutboardLength {
        piece_len: u64,
        expected: usize,
        got: usize,
    },
}

/// Bytes read from a piece that do not match its outboard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error("bytes {start}..{end} are not a run of whole outboard blocks")]
    NotBlocks { start: u64, end: u64 },
    #[error("block {block} of the piece does not match its outboard: the piece is corrupt")]
    Corrupt { block: u64 },
}

/// "Prove you hold these chunks of this piece." The nonce makes every challenge, and so every
/// signed answer, unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawChallenge")]
pub struct Challenge {
    piece_id: PieceId,
    piece_len: u64,
    indices: Vec<u32>,
    nonce: [u8; 32],
}

#[derive(Deserialize)]
struct RawChallenge {
    piece_id: PieceId,
    piece_len: u64,
    indices: Vec<u32>,
    nonce: [u8; 32],
}

impl TryFrom<RawChallenge> for Challenge {
    type Error = ChallengeError;
    fn try_from(r: RawChallenge) -> Result<Self, ChallengeError> {
        Challenge::new(r.piece_id, r.piece_len, r.indices, r.nonce)
    }
}

/// Number of chunks of a piece (a piece of at most one chunk has one).
pub fn chunk_count(piece_len: u64) -> u64 {
    piece_len.div_ceil(CHUNK_LEN as u64).max(1)
}

impl Challenge {
    /// A challenge for the given chunks (strictly increasing, inside the piece).
    pub fn new(
        piece_id: PieceId,
        piece_len: u64,
        indices: Vec<u32>,
        nonce: [u8; 32],
    ) -> Result<Self, ChallengeError> {
        if piece_len == 0 || piece_len > MAX_PROVABLE_LEN {
            return Err(ChallengeError::PieceLength { len: piece_len });
        }
        if indices.is_empty() || indices.len() > MAX_CHALLENGE_CHUNKS {
            return Err(ChallengeError::ChunkCount {
                count: indices.len(),
            });
        }
        let chunks = chunk_count(piece_len);
        if let Some(&index) = indices.iter().find(|&&i| u64::from(i) >= chunks) {
            return Err(ChallengeError::IndexOutOfRange { index, chunks });
        }
        if indices.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ChallengeError::Unsorted);
        }
        Ok(Challenge {
            piece_id,
            piece_len,
            indices,
            nonce,
        })
    }

    /// A challenge for `count` distinct chunks drawn uniformly by the system CSPRNG (all chunks if
    /// the piece has fewer), with a fresh random nonce.
    pub fn random(piece_id: PieceId, piece_len: u64, count: usize) -> Result<Self, ChallengeError> {
        if piece_len == 0 || piece_len > MAX_PROVABLE_LEN {
            return Err(ChallengeError::PieceLength { len: piece_len });
        }
        if count == 0 || count > MAX_CHALLENGE_CHUNKS {
            return Err(ChallengeError::ChunkCount { count });
        }
        let chunks = chunk_count(piece_len);
        let mut indices: Vec<u32> = Vec::with_capacity(count);
        if chunks <= count as u64 {
            indices.extend(0..chunks as u32);
        } else {
            while indices.len() < count {
                let i = uniform_below(chunks)? as u32;
                if !indices.contains(&i) {
                    indices.push(i);
                }
            }
            indices.sort_unstable();
        }
        let mut nonce = [0u8; 32];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| ChallengeError::Random)?;
        Challenge::new(piece_id, piece_len, indices, nonce)
    }

    /// The challenged piece.
    pub fn piece_id(&self) -> PieceId {
        self.piece_id
    }

    /// Its length in bytes.
    pub fn piece_len(&self) -> u64 {
        self.piece_len
    }

    /// The challenged chunk indices, increasing.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// The challenge's nonce.
    pub fn nonce(&self) -> &[u8; 32] {
        &self.nonce
    }
}

/// A uniform integer in `0..n` from the system CSPRNG (rejection sampling, no modulo bias).
fn uniform_below(n: u64) -> Result<u64, ChallengeError> {
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let mut b = [0u8; 8];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| ChallengeError::Random)?;
        let v = u64::from_le_bytes(b);
        if v < zone {
            return Ok(v % n);
        }
    }
}

/// One challenged chunk and the chaining values of the sibling subtrees on its path, from the
/// bottom of the tree to the top.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkProof {
    pub index: u32,
    #[serde(with = "crate::serde_bytes_vec")]
    pub data: Vec<u8>,
    pub siblings: Vec<[u8; 32]>,
}

/// The answer to a [`Challenge`]: one [`ChunkProof`] per challenged chunk, in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub chunks: Vec<ChunkProof>,
}

/// Largest power of two strictly below `n` (`n ≥ 2`): the chunk count of a subtree's left child.
fn left_chunks(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The path from the root to chunk `i` in a tree of `n` chunks, top down: for each level, whether
/// the path goes left, and the chunk range of the sibling subtree.
fn path(n: u64, i: u64) -> Vec<(bool, Range<u64>)> {
    let mut out = Vec::new();
    let (mut start, mut len) = (0u64, n);
    while len > 1 {
        let left = left_chunks(len);
        if i < start + left {
            out.push((true, start + left..start + len));
            len = left;
        } else {
            out.push((false, start..start + left));
            start += left;
            len -= left;
        }
    }
    out
}

fn chunk_range(piece_len: u64, index: u64) -> Range<u64> {
    let start = index * CHUNK_LEN as u64;
    start..(start + CHUNK_LEN as u64).min(piece_len)
}

/// The chaining value of the subtree whose bytes are `bytes`, starting at byte `offset`.
fn subtree_cv(offset: u64, bytes: &[u8]) -> ChainingValue {
    blake3::Hasher::new()
        .set_input_offset(offset)
        .update(bytes)
        .finalize_non_root()
}

/// Checks a proof against its challenge, using nothing but the challenge.
pub fn verify(challenge: &Challenge, proof: &Proof) -> Result<(), ProofError> {
    if proof.chunks.len() != challenge.indices.len() {
        return Err(ProofError::ChunkCount {
            expected: challenge.indices.len(),
            got: proof.chunks.len(),
        });
    }
    let n = chunk_count(challenge.piece_len);
    let root = blake3::Hash::from_bytes(*challenge.piece_id.as_bytes());
    for (position, (chunk, &expected)) in proof.chunks.iter().zip(&challenge.indices).enumerate() {
        if chunk.index != expected {
            return Err(ProofError::WrongIndex {
                position,
                expected,
                got: chunk.index,
            });
        }
        let index = u64::from(expected);
        let range = chunk_range(challenge.piece_len, index);
        if chunk.data.len() as u64 != range.end - range.start {
            return Err(ProofError::ChunkLength {
                index: expected,
                expected: (range.end - range.start) as usize,
                got: chunk.data.len(),
            });
        }
        let path = path(n, index);
        if chunk.siblings.len() != path.len() {
            return Err(ProofError::SiblingCount {
                index: expected,
                expected: path.len(),
                got: chunk.siblings.len(),
            });
        }
        let computed = if path.is_empty() {
            blake3::hash(&chunk.data)
        } else {
            let mut cv = subtree_cv(range.start, &chunk.data);
            let levels = path.len();
            let mut top = None;
            for (depth, ((went_left, _), sibling)) in
                path.iter().rev().zip(&chunk.siblings).enumerate()
            {
                let (l, r) = if *went_left {
                    (&cv, sibling)
                } else {
                    (sibling, &cv)
                };
                if depth + 1 == levels {
                    top = Some(merge_subtrees_root(l, r, Mode::Hash));
                } else {
                    cv = merge_subtrees_non_root(l, r, Mode::Hash);
                }
            }
            match top {
                Some(h) => h,
                None => unreachable!("a non-empty path has a top level"),
            }
        };
        // blake3::Hash equality is constant-time.
        if computed != root {
            return Err(ProofError::RootMismatch { index: expected });
        }
    }
    Ok(())
}

/// The chaining values of a piece's 16 KiB blocks: with it a node proves any chunk by hashing only
/// the block around it. 32 bytes per 16 KiB; empty for pieces of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outboard {
    piece_len: u64,
    blocks: Vec<ChainingValue>,
}

impl Outboard {
    /// Hashes a piece's blocks.
    pub fn new(piece: &[u8]) -> Self {
        let piece_len = piece.len() as u64;
        let blocks = if piece_len <= OUTBOARD_BLOCK_LEN {
            Vec::new()
        } else {
            piece
                .chunks(OUTBOARD_BLOCK_LEN as usize)
                .enumerate()
                .map(|(j, block)| subtree_cv(j as u64 * OUTBOARD_BLOCK_LEN, block))
                .collect()
        };
        Outboard { piece_len, blocks }
    }

    fn block_count(piece_len: u64) -> u64 {
        if piece_len <= OUTBOARD_BLOCK_LEN {
            0
        } else {
            piece_len.div_ceil(OUTBOARD_BLOCK_LEN)
        }
    }

    /// The stored form: the block chaining values back to back.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.blocks.concat()
    }

    /// Reads the stored form for a piece of `piece_len` bytes, checking its length.
    pub fn from_bytes(piece_len: u64, bytes: &[u8]) -> Result<Self, ProofError> {
        let expected = Self::block_count(piece_len) as usize * 32;
        if bytes.len() != expected {
            return Err(ProofError::OutboardLength {
                piece_len,
                expected,
                got: bytes.len(),
            });
        }
        let blocks = bytes
            .chunks_exact(32)
            .map(|c| {
                let mut cv = [0u8; 32];
                cv.copy_from_slice(c);
                cv
            })
            .collect();
        Ok(Outboard { piece_len, blocks })
    }

    /// The length of the piece it describes.
    pub fn piece_len(&self) -> u64 {
        self.piece_len
    }

    /// Hashes a piece once into its outboard and checks it against `id` on the way: the same
    /// work as [`PieceId::verify`] alone, where verifying and then building the outboard would
    /// hash the piece twice.
    pub fn verified(id: &PieceId, piece: &[u8]) -> Result<Self, crate::CorruptPiece> {
        let outboard = Outboard::new(piece);
        match outboard.root() {
            Some(actual) if actual == *id => Ok(outboard),
            Some(actual) => Err(crate::CorruptPiece {
                expected: *id,
                actual,
            }),
            // One block or less: no tree above the block, hash the (small) piece itself.
            None => id.verify(piece).map(|()| outboard),
        }
    }

    /// The root the blocks hash up to, i.e. the piece id, when the piece is longer than one block
    /// (`None` otherwise: a one-block piece has no outboard to check).
    pub fn root(&self) -> Option<PieceId> {
        if self.blocks.len() < 2 {
            return None;
        }
        let n = self.blocks.len() as u64;
        let left = left_chunks(n);
        let l = self.blocks_cv(0..left);
        let r = self.blocks_cv(left..n);
        Some(PieceId::from_bytes(
            *merge_subtrees_root(&l, &r, Mode::Hash).as_bytes(),
        ))
    }

    /// Chaining value of the subtree made of whole blocks `range`.
    fn blocks_cv(&self, range: Range<u64>) -> ChainingValue {
        let len = range.end - range.start;
        if len == 1 {
            return self.blocks[range.start as usize];
        }
        let left = left_chunks(len);
        merge_subtrees_non_root(
            &self.blocks_cv(range.start..range.start + left),
            &self.blocks_cv(range.start + left..range.end),
            Mode::Hash,
        )
    }

    /// The bytes of the piece a node must read to prove chunk `index`: the block holding it.
    pub fn block_range(&self, index: u32) -> Range<u64> {
        let start = u64::from(index) / OUTBOARD_BLOCK_CHUNKS * OUTBOARD_BLOCK_LEN;
        start.min(self.piece_len)..(start + OUTBOARD_BLOCK_LEN).min(self.piece_len)
    }

    /// The byte range of the whole blocks covering `range` of the piece (clamped to the piece):
    /// what a node reads to serve `range` verified by [`Outboard::verify_span`].
    pub fn covering_blocks(&self, range: Range<u64>) -> Range<u64> {
        if self.blocks.is_empty() {
            return 0..self.piece_len;
        }
        let start = (range.start / OUTBOARD_BLOCK_LEN * OUTBOARD_BLOCK_LEN).min(self.piece_len);
        let end = range
            .end
            .div_ceil(OUTBOARD_BLOCK_LEN)
            .saturating_mul(OUTBOARD_BLOCK_LEN)
            .min(self.piece_len);
        start..end.max(start)
    }

    /// Checks bytes read from the piece at `start` (a span from [`Outboard::covering_blocks`])
    /// against the outboard, or, for a piece of one block, against the piece id. Used to serve
    /// ranges without rehashing the whole piece; the outboard itself must have been checked
    /// against the id ([`Outboard::root`]) when it was made.
    pub fn verify_span(&self, id: &PieceId, start: u64, bytes: &[u8]) -> Result<(), SpanError> {
        let end = start.saturating_add(bytes.len() as u64);
        if self.blocks.is_empty() {
            if start != 0 || end != self.piece_len {
                return Err(SpanError::NotBlocks { start, end });
            }
            return id
                .verify(bytes)
                .map_err(|_| SpanError::Corrupt { block: 0 });
        }
        if start % OUTBOARD_BLOCK_LEN != 0
            || end > self.piece_len
            || (end % OUTBOARD_BLOCK_LEN != 0 && end != self.piece_len)
        {
            return Err(SpanError::NotBlocks { start, end });
        }
        for (i, block) in bytes.chunks(OUTBOARD_BLOCK_LEN as usize).enumerate() {
            let j = start / OUTBOARD_BLOCK_LEN + i as u64;
            let cv = subtree_cv(j * OUTBOARD_BLOCK_LEN, block);
            // Chaining values are not secret; a plain comparison is fine.
            if self.blocks.get(j as usize) != Some(&cv) {
                return Err(SpanError::Corrupt { block: j });
            }
        }
        Ok(())
    }

    /// Proves chunk `index` from the bytes of its block (as named by [`Outboard::block_range`]).
    pub fn prove_chunk(&self, index: u32, block: &[u8]) -> Result<ChunkProof, ProofError> {
        let n = chunk_count(self.piece_len);
        if u64::from(index) >= n {
            return Err(ChallengeError::IndexOutOfRange { index, chunks: n }.into());
        }
        let block_range = self.block_range(index);
        let block_len = (block_range.end - block_range.start) as usize;
        if block.len() != block_len {
            return Err(ProofError::ChunkLength {
                index,
                expected: block_len,
                got: block.len(),
            });
        }
        let block_first_chunk = block_range.start / CHUNK_LEN as u64;
        let block_chunks = block_first_chunk..block_first_chunk + chunk_count(block_len as u64);
        let cv_of = |chunks: &Range<u64>| -> ChainingValue {
            if chunks.start >= block_chunks.start && chunks.end <= block_chunks.end {
                let bytes = chunk_range(self.piece_len, chunks.start).start
                    ..chunk_range(self.piece_len, chunks.end - 1).end;
                subtree_cv(
                    bytes.start,
                    &block[(bytes.start - block_range.start) as usize
                        ..(bytes.end - block_range.start) as usize],
                )
            } else {
                // Above block level every sibling is a run of whole blocks (BLAKE3's left
                // subtrees are powers of two, so they split on block boundaries).
                self.blocks_cv(
                    chunks.start / OUTBOARD_BLOCK_CHUNKS
                        ..chunks.end.div_ceil(OUTBOARD_BLOCK_CHUNKS),
                )
            }
        };
        let path = path(n, u64::from(index));
        let siblings = path.iter().rev().map(|(_, sib)| cv_of(sib)).collect();
        let data_range = chunk_range(self.piece_len, u64::from(index));
        let data = block[(data_range.start - block_range.start) as usize
            ..(data_range.end - block_range.start) as usize]
            .to_vec();
        Ok(ChunkProof {
            index,
            data,
            siblings,
        })
    }

    /// Answers a challenge, reading each needed block through `read` (a byte range of the piece).
    pub fn prove<E>(
        &self,
        challenge: &Challenge,
        mut read: impl FnMut(Range<u64>) -> Result<Vec<u8>, E>,
    ) -> Result<Result<Proof, ProofError>, E> {
        if challenge.piece_len != self.piece_len {
            return Ok(Err(ProofError::PieceLength {
                expected: challenge.piece_len,
                got: self.piece_len,
            }));
        }
        let mut chunks = Vec::with_capacity(challenge.indices.len());
        for &index in &challenge.indices {
            let block = read(self.block_range(index))?;
            match self.prove_chunk(index, &block) {
                Ok(c) => chunks.push(c),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(Proof { chunks }))
    }
}

/// Answers a challenge from the whole piece in memory (hashing all of it once).
pub fn prove(challenge: &Challenge, piece: &[u8]) -> Result<Proof, ProofError> {
    let outboard = Outboard::new(piece);
    let read = |r: Range<u64>| {
        Ok::<_, std::convert::Infallible>(piece[r.start as usize..r.end as usize].to_vec())
    };
    match outboard.prove(challenge, read) {
        Ok(result) => result,
        Err(never) => match never {},
    }
}

/// A 32-byte digest of a challenge and its proof, for the signed audit transcript.
pub fn transcript_hash(challenge: &Challenge, proof: &Proof) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("chunker audit transcript v1");
    for part in [postcard::to_stdvec(challenge), postcard::to_stdvec(proof)] {
        match part {
            Ok(bytes) => {
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(e) => unreachable!("serializing to a Vec can't fail: {e}"),
        }
    }
    *h.finalize().as_bytes()
}
