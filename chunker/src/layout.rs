//! Where every byte of a segment lives: plaintext ↔ cipher blocks ↔ ciphertext ↔ data pieces.
//!
//! A segment's plaintext is cut into blocks of [`BLOCK_PLAINTEXT_LEN`] bytes; each block is sealed
//! on its own and becomes [`CIPHER_BLOCK_LEN`] bytes of ciphertext (the last block may be
//! shorter). The ciphertext blocks are laid end to end and the result is cut into `k` equal data
//! pieces of [`SegmentLayout::piece_len`] bytes (the last one zero-padded). With the default
//! parameters a full segment is exactly 64 blocks and every block sits inside one 1 MiB piece.

use std::ops::Range;

use crate::Params;

/// Ciphertext bytes of one full cipher block (plaintext plus tag).
pub const CIPHER_BLOCK_LEN: usize = 64 * 1024;
/// AEAD tag bytes per block.
pub const TAG_LEN: usize = 16;
/// Plaintext bytes of one full cipher block.
pub const BLOCK_PLAINTEXT_LEN: usize = CIPHER_BLOCK_LEN - TAG_LEN;

/// Ciphertext length of `plain_len` bytes of plaintext (every block, even a short last one, adds
/// a tag). Zero bytes of plaintext have no blocks and no ciphertext.
pub fn ciphertext_len(plain_len: usize) -> usize {
    plain_len + TAG_LEN * plain_len.div_ceil(BLOCK_PLAINTEXT_LEN)
}

/// The largest plaintext whose ciphertext fits in `capacity` bytes.
pub(crate) fn max_plaintext_for(capacity: usize) -> usize {
    let full = capacity / CIPHER_BLOCK_LEN;
    let rest = capacity % CIPHER_BLOCK_LEN;
    full * BLOCK_PLAINTEXT_LEN + rest.saturating_sub(TAG_LEN)
}

/// A segment length that does not fit the parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("a segment holds between 1 and {max} plaintext bytes, not {len}")]
    SegmentLength { len: u64, max: usize },
    #[error("range {start}..{end} is not inside the segment's {len} bytes")]
    Range { start: u64, end: u64, len: usize },
}

/// One contiguous slice of one piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceSlice {
    /// Piece index within the segment (`0..k` for data pieces).
    pub piece: usize,
    /// Byte range within that piece.
    pub range: Range<usize>,
}

/// The geometry of one segment of a given plaintext length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentLayout {
    params: Params,
    plain_len: usize,
}

impl SegmentLayout {
    /// The layout of a segment holding `plain_len` bytes (`1 ..= params.segment_plaintext_len()`).
    pub fn new(params: Params, plain_len: u64) -> Result<Self, LayoutError> {
        let max = params.segment_plaintext_len();
        match usize::try_from(plain_len) {
            Ok(len) if len >= 1 && len <= max => Ok(SegmentLayout {
                params,
                plain_len: len,
            }),
            _ => Err(LayoutError::SegmentLength {
                len: plain_len,
                max,
            }),
        }
    }

    /// The coding parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Plaintext bytes.
    pub fn plain_len(&self) -> usize {
        self.plain_len
    }

    /// Ciphertext bytes (plaintext plus one tag per block).
    pub fn ciphertext_len(&self) -> usize {
        ciphertext_len(self.plain_len)
    }

    /// Length of each of the `k + m` pieces: the ciphertext split in `k`, rounded up. Equal to the
    /// parameters' piece size for a full segment.
    pub fn piece_len(&self) -> usize {
        self.ciphertext_len().div_ceil(self.params.k())
    }

    /// Number of cipher blocks.
    pub fn block_count(&self) -> usize {
        self.plain_len.div_ceil(BLOCK_PLAINTEXT_LEN)
    }

    /// Plaintext range of block `b`.
    pub fn block_plain_range(&self, b: usize) -> Range<usize> {
        let start = (b * BLOCK_PLAINTEXT_LEN).min(self.plain_len);
        start..(start + BLOCK_PLAINTEXT_LEN).min(self.plain_len)
    }

    /// Ciphertext range of block `b` (its plaintext followed by its tag).
    pub fn block_cipher_range(&self, b: usize) -> Range<usize> {
        let plain = self.block_plain_range(b);
        let start = b * CIPHER_BLOCK_LEN;
        start..start + plain.len() + TAG_LEN
    }

    /// The blocks that hold the plaintext `range` (which must be non-empty and inside the segment).
    pub fn blocks_for(&self, range: Range<usize>) -> Result<Range<usize>, LayoutError> {
        if range.start >= range.end || range.end > self.plain_len {
            return Err(LayoutError::Range {
                start: range.start as u64,
                end: range.end as u64,
                len: self.plain_len,
            });
        }
        Ok(range.start / BLOCK_PLAINTEXT_LEN..(range.end - 1) / BLOCK_PLAINTEXT_LEN + 1)
    }

    /// The ciphertext bytes of a run of blocks.
    pub fn cipher_range_of_blocks(&self, blocks: Range<usize>) -> Range<usize> {
        if blocks.is_empty() {
            return 0..0;
        }
        self.block_cipher_range(blocks.start).start..self.block_cipher_range(blocks.end - 1).end
    }

    /// The data-piece slices that hold the ciphertext `range`, in order. Concatenated, they are
    /// exactly that ciphertext.
    pub fn data_slices(&self, range: Range<usize>) -> Vec<PieceSlice> {
        let piece_len = self.piece_len();
        let mut out = Vec::new();
        let mut pos = range.start;
        while pos < range.end {
            let piece = pos / piece_len;
            let piece_start = piece * piece_len;
            let end = range.end.min(piece_start + piece_len);
            out.push(PieceSlice {
                piece,
                range: pos - piece_start..end - piece_start,
            });
            pos = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_full_segment_blocks_sit_inside_pieces() {
        let p = Params::default();
        let l = SegmentLayout::new(p, p.segment_plaintext_len() as u64).unwrap();
        assert_eq!(l.ciphertext_len(), 4 << 20);
        assert_eq!(l.piece_len(), 1 << 20);
        assert_eq!(l.block_count(), 64);
        for b in 0..64 {
            let slices = l.data_slices(l.block_cipher_range(b));
            assert_eq!(slices.len(), 1, "block {b}");
            assert_eq!(slices[0].piece, b / 16);
        }
    }

    #[test]
    fn lengths_outside_the_segment_are_refused() {
        let p = Params::default();
        assert!(SegmentLayout::new(p, 0).is_err());
        assert!(SegmentLayout::new(p, p.segment_plaintext_len() as u64 + 1).is_err());
        assert!(SegmentLayout::new(p, u64::MAX).is_err());
        let l = SegmentLayout::new(p, 10).unwrap();
        assert!(l.blocks_for(5..5).is_err());
        assert!(l.blocks_for(5..11).is_err());
        assert_eq!(l.blocks_for(0..10).unwrap(), 0..1);
    }

    #[test]
    fn small_pieces_let_blocks_straddle_pieces() {
        let p = Params::new(3, 1, 1024).unwrap();
        assert_eq!(p.segment_plaintext_len(), 3 * 1024 - TAG_LEN);
        let l = SegmentLayout::new(p, 2000).unwrap();
        assert_eq!(l.ciphertext_len(), 2016);
        assert_eq!(l.piece_len(), 672);
        let slices = l.data_slices(l.cipher_range_of_blocks(0..1));
        let pieces: Vec<usize> = slices.iter().map(|s| s.piece).collect();
        assert_eq!(pieces, vec![0, 1, 2]);
        assert_eq!(slices.iter().map(|s| s.range.len()).sum::<usize>(), 2016);
    }

    #[test]
    fn max_plaintext_matches_ciphertext_len() {
        for cap in [17, 1024, 65535, 65536, 65537, 65552, 65553, 3 * 65536 + 5] {
            let max = max_plaintext_for(cap);
            assert!(ciphertext_len(max) <= cap, "cap {cap}");
            assert!(ciphertext_len(max + 1) > cap, "cap {cap}");
        }
    }
}
