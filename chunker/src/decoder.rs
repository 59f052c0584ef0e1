//! Decoding: verified pieces in, plaintext out; rebuilding lost pieces for repair; decrypting the
//! blocks of a range read.

use std::ops::Range;
use std::sync::Arc;

use crate::crypto::{BlockPosition, CryptoError, DataKey};
use crate::erasure::Coder;
use crate::layout::{LayoutError, PieceSlice, SegmentLayout, BLOCK_PLAINTEXT_LEN, TAG_LEN};
use crate::{Params, PieceId};

/// Why a segment could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("expected {expected} pieces (k + m), got {got}")]
    PieceCount { expected: usize, got: usize },
    #[error("need {needed} intact pieces, have {available} (rejected as corrupt: {rejected:?})")]
    TooFewPieces {
        needed: usize,
        available: usize,
        rejected: Vec<usize>,
    },
    #[error("the segment was coded with {segment:?}, this decoder with {decoder:?}")]
    ParamsMismatch { segment: Params, decoder: Params },
    #[error("rebuilt piece {index} does not match its recorded id")]
    RebuiltMismatch { index: usize },
    #[error("the ciphertext for blocks {blocks:?} is {got} bytes, expected {expected}")]
    CiphertextLength {
        blocks: Range<usize>,
        expected: usize,
        got: usize,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// What the decoder must know of a segment: where it sits (for the nonces), its geometry, and the
/// ids of its `k + m` pieces. All of it comes from the manifest.
#[derive(Debug, Clone, Copy)]
pub struct SegmentInfo<'a> {
    pub stream: u32,
    pub index: u32,
    pub layout: SegmentLayout,
    pub ids: &'a [PieceId],
}

/// A decoded segment.
#[derive(Debug)]
pub struct DecodedSegment {
    /// The segment's plaintext.
    pub plaintext: Vec<u8>,
    /// Indices of the pieces handed in whose bytes did not match their ids. They were not used;
    /// the caller should report them for repair.
    pub rejected: Vec<usize>,
}

/// All `k + m` pieces of a segment, rebuilt and verified.
#[derive(Debug)]
pub struct RebuiltSegment {
    pieces: Vec<u8>,
    piece_len: usize,
    /// Indices of the pieces handed in whose bytes did not match their ids.
    pub rejected: Vec<usize>,
}

impl RebuiltSegment {
    /// Piece `i` (panics if `i ≥ k + m`).
    pub fn piece(&self, i: usize) -> &[u8] {
        &self.pieces[i * self.piece_len..(i + 1) * self.piece_len]
    }
}

/// Exactly which bytes a range read of one segment needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    /// The requested plaintext range within the segment.
    pub plain: Range<usize>,
    /// The cipher blocks covering it.
    pub blocks: Range<usize>,
    /// Where those blocks' ciphertext lives, in order; concatenated it is what
    /// [`SegmentDecoder::decrypt_range`] takes.
    pub slices: Vec<PieceSlice>,
}

impl RangePlan {
    /// Plans a read of `plain` (non-empty, inside the segment).
    pub fn new(layout: &SegmentLayout, plain: Range<usize>) -> Result<Self, LayoutError> {
        let blocks = layout.blocks_for(plain.clone())?;
        let slices = layout.data_slices(layout.cipher_range_of_blocks(blocks.clone()));
        Ok(RangePlan {
            plain,
            blocks,
            slices,
        })
    }
}

/// Decodes the segments of one object (one data key). Cheap to clone.
#[derive(Debug, Clone)]
pub struct SegmentDecoder {
    coder: Arc<Coder>,
    key: DataKey,
}

impl SegmentDecoder {
    /// A decoder for segments coded with `params` and sealed with `key`.
    pub fn new(params: Params, key: DataKey) -> Self {
        Self::with_coder(Arc::new(Coder::new(params)), key)
    }

    /// Like [`SegmentDecoder::new`], sharing an already built code.
    pub fn with_coder(coder: Arc<Coder>, key: DataKey) -> Self {
        SegmentDecoder { coder, key }
    }

    /// Decodes a segment from whichever of its pieces are at hand (`pieces[i]` is piece `i` or
    /// `None`). Every piece is checked against its id first; wrong ones are set aside and listed
    /// in [`DecodedSegment::rejected`]. Any `k` intact pieces suffice.
    pub fn decode(
        &self,
        seg: &SegmentInfo<'_>,
        pieces: &[Option<&[u8]>],
    ) -> Result<DecodedSegment, DecodeError> {
        let (mut buf, rejected) = self.gather(seg, pieces, true)?;
        let layout = seg.layout;
        buf.truncate(layout.ciphertext_len());
        let plaintext = self.open_blocks(seg, 0..layout.block_count(), buf)?;
        Ok(DecodedSegment {
            plaintext,
            rejected,
        })
    }

    /// Rebuilds all `k + m` pieces of a segment from any `k` intact ones, for repair. The
    /// rebuilt pieces are checked against their recorded ids.
    pub fn rebuild(
        &self,
        seg: &SegmentInfo<'_>,
        pieces: &[Option<&[u8]>],
    ) -> Result<RebuiltSegment, DecodeError> {
        let (buf, rejected) = self.gather(seg, pieces, false)?;
        let piece_len = seg.layout.piece_len();
        for (index, (piece, id)) in buf.chunks_exact(piece_len).zip(seg.ids).enumerate() {
            if id.verify(piece).is_err() {
                return Err(DecodeError::RebuiltMismatch { index });
            }
        }
        Ok(RebuiltSegment {
            pieces: buf,
            piece_len,
            rejected,
        })
    }

    /// Decrypts the blocks a [`RangePlan`] names and returns exactly the planned plaintext.
    /// `ciphertext` is the concatenation of the plan's slices, as fetched from the data pieces;
    /// each block's tag authenticates it, so a changed byte is an error rather than wrong data.
    pub fn decrypt_range(
        &self,
        seg: &SegmentInfo<'_>,
        plan: &RangePlan,
        ciphertext: Vec<u8>,
    ) -> Result<Vec<u8>, DecodeError> {
        if seg.layout.blocks_for(plan.plain.clone())? != plan.blocks {
            return Err(DecodeError::Layout(LayoutError::Range {
                start: plan.plain.start as u64,
                end: plan.plain.end as u64,
                len: seg.layout.plain_len(),
            }));
        }
        let expected = seg.layout.cipher_range_of_blocks(plan.blocks.clone()).len();
        if ciphertext.len() != expected {
            return Err(DecodeError::CiphertextLength {
                blocks: plan.blocks.clone(),
                expected,
                got: ciphertext.len(),
            });
        }
        let mut plain = self.open_blocks(seg, plan.blocks.clone(), ciphertext)?;
        let first = plan.blocks.start * BLOCK_PLAINTEXT_LEN;
        plain.truncate(plan.plain.end - first);
        plain.drain(..plan.plain.start - first);
        Ok(plain)
    }

    /// Verifies the pieces, copies them into one buffer and rebuilds the missing ones (only data
    /// pieces when `data_only`).
    fn gather(
        &self,
        seg: &SegmentInfo<'_>,
        pieces: &[Option<&[u8]>],
        data_only: bool,
    ) -> Result<(Vec<u8>, Vec<usize>), DecodeError> {
        let params = self.coder.params();
        if seg.layout.params() != params {
            return Err(DecodeError::ParamsMismatch {
                segment: seg.layout.params(),
                decoder: params,
            });
        }
        let total = params.total();
        if pieces.len() != total || seg.ids.len() != total {
            return Err(DecodeError::PieceCount {
                expected: total,
                got: pieces.len().min(seg.ids.len()),
            });
        }
        let piece_len = seg.layout.piece_len();
        let mut buf = vec![0u8; total * piece_len];
        let mut present = vec![false; total];
        let mut rejected = Vec::new();
        // Data pieces first: if all k are intact, parity is never hashed or copied.
        let mut intact_data = 0;
        for (i, piece) in pieces.iter().enumerate() {
            let Some(piece) = piece else { continue };
            if i >= params.k() && intact_data == params.k() && data_only {
                break;
            }
            if piece.len() != piece_len || seg.ids[i].verify(piece).is_err() {
                rejected.push(i);
                continue;
            }
            buf[i * piece_len..(i + 1) * piece_len].copy_from_slice(piece);
            present[i] = true;
            if i < params.k() {
                intact_data += 1;
            }
        }
        self.coder
            .reconstruct(&mut buf, piece_len, &present, data_only)
            .map_err(|e| DecodeError::TooFewPieces {
                needed: e.needed,
                available: e.available,
                rejected: rejected.clone(),
            })?;
        Ok((buf, rejected))
    }

    /// Opens blocks `blocks` whose ciphertext is laid end to end in `buf`, and packs their
    /// plaintext to the front.
    fn open_blocks(
        &self,
        seg: &SegmentInfo<'_>,
        blocks: Range<usize>,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, DecodeError> {
        let layout = &seg.layout;
        let base = layout.block_cipher_range(blocks.start).start;
        let mut plain_end = 0;
        for b in blocks {
            let range = layout.block_cipher_range(b);
            let (start, end) = (range.start - base, range.end - base);
            let at = BlockPosition {
                stream: seg.stream,
                segment: seg.index,
                block: b as u32,
            };
            self.key.open_block(at, &mut buf[start..end])?;
            let n = end - start - TAG_LEN;
            buf.copy_within(start..start + n, plain_end);
            plain_end += n;
        }
        buf.truncate(plain_end);
        Ok(buf)
    }
}
