//! Erasure-coding parameters: `k` data pieces, `m` parity pieces and the piece size.

use serde::{Deserialize, Serialize};

/// The largest number of pieces a segment can have (GF(2^8) Reed-Solomon).
pub const MAX_PIECES: usize = 256;
/// Smallest allowed piece size: one proof chunk.
pub const MIN_PIECE_SIZE: u32 = 1024;
/// Largest allowed piece size.
pub const MAX_PIECE_SIZE: u32 = 64 * 1024 * 1024;
/// Upper bound on `k × piece_size`, the ciphertext bytes one segment holds. It bounds the memory
/// a segment in flight needs.
pub const MAX_SEGMENT_CAPACITY: u64 = 256 * 1024 * 1024;

/// Why a set of parameters was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("k (data pieces) must be at least 1")]
    NoDataPieces,
    #[error("m (parity pieces) must be at least 1")]
    NoParityPieces,
    #[error("k + m = {total} exceeds the limit of {MAX_PIECES} pieces")]
    TooManyPieces { total: usize },
    #[error(
        "piece size {size} must be a multiple of 1024 between {MIN_PIECE_SIZE} and {MAX_PIECE_SIZE}"
    )]
    PieceSize { size: u64 },
    #[error(
        "k × piece size = {capacity} bytes exceeds the segment limit of {MAX_SEGMENT_CAPACITY}"
    )]
    SegmentTooLarge { capacity: u64 },
}

/// Validated erasure parameters. Construct with [`Params::new`]; the fields can't be set to an
/// invalid combination afterwards.
///
/// ```
/// use chunker::Params;
/// let p = Params::new(4, 2, 1 << 20).unwrap();
/// assert_eq!((p.k(), p.m(), p.total()), (4, 2, 6));
/// assert!(Params::new(0, 2, 1 << 20).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawParams", into = "RawParams")]
pub struct Params {
    k: u16,
    m: u16,
    piece_size: u32,
}

/// The unvalidated wire form of [`Params`]: decoding goes through [`Params::new`].
#[derive(Serialize, Deserialize)]
struct RawParams {
    k: u16,
    m: u16,
    piece_size: u32,
}

impl TryFrom<RawParams> for Params {
    type Error = ParamsError;
    fn try_from(raw: RawParams) -> Result<Self, ParamsError> {
        Params::new(raw.k.into(), raw.m.into(), u64::from(raw.piece_size))
    }
}

impl From<Params> for RawParams {
    fn from(p: Params) -> Self {
        RawParams {
            k: p.k,
            m: p.m,
            piece_size: p.piece_size,
        }
    }
}

impl Default for Params {
    /// k = 4, m = 2, 1 MiB pieces.
    fn default() -> Self {
        Params {
            k: 4,
            m: 2,
            piece_size: 1 << 20,
        }
    }
}

impl Params {
    /// Validates `k ≥ 1`, `m ≥ 1`, `k + m ≤ 256`, a piece size that is a multiple of 1 KiB in
    /// `[1 KiB, 64 MiB]`, and `k × piece_size ≤ 256 MiB`.
    pub fn new(k: usize, m: usize, piece_size: u64) -> Result<Self, ParamsError> {
        if k == 0 {
            return Err(ParamsError::NoDataPieces);
        }
        if m == 0 {
            return Err(ParamsError::NoParityPieces);
        }
        let total = k.saturating_add(m);
        if total > MAX_PIECES {
            return Err(ParamsError::TooManyPieces { total });
        }
        if piece_size < u64::from(MIN_PIECE_SIZE)
            || piece_size > u64::from(MAX_PIECE_SIZE)
            || piece_size % 1024 != 0
        {
            return Err(ParamsError::PieceSize { size: piece_size });
        }
        let capacity = k as u64 * piece_size;
        if capacity > MAX_SEGMENT_CAPACITY {
            return Err(ParamsError::SegmentTooLarge { capacity });
        }
        // All three fit: k, m ≤ 256 and piece_size ≤ 64 MiB were checked above.
        Ok(Params {
            k: k as u16,
            m: m as u16,
            piece_size: piece_size as u32,
        })
    }

    /// Number of data pieces.
    pub fn k(&self) -> usize {
        usize::from(self.k)
    }

    /// Number of parity pieces.
    pub fn m(&self) -> usize {
        usize::from(self.m)
    }

    /// `k + m`.
    pub fn total(&self) -> usize {
        self.k() + self.m()
    }

    /// The size of the pieces of a full segment.
    pub fn piece_size(&self) -> usize {
        self.piece_size as usize
    }

    /// Ciphertext bytes in a full segment: `k × piece_size`.
    pub fn segment_capacity(&self) -> usize {
        self.k() * self.piece_size()
    }

    /// Plaintext bytes in a full segment (the capacity less one AEAD tag per cipher block).
    pub fn segment_plaintext_len(&self) -> usize {
        crate::layout::max_plaintext_for(self.segment_capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_invalid_values_with_typed_errors() {
        assert_eq!(Params::new(0, 1, 1024), Err(ParamsError::NoDataPieces));
        assert_eq!(Params::new(1, 0, 1024), Err(ParamsError::NoParityPieces));
        assert_eq!(
            Params::new(200, 57, 1024),
            Err(ParamsError::TooManyPieces { total: 257 })
        );
        assert_eq!(
            Params::new(usize::MAX, 1, 1024),
            Err(ParamsError::TooManyPieces { total: usize::MAX })
        );
        for size in [0, 1, 1023, 1025, 64 * 1024 * 1024 + 1024, u64::MAX] {
            assert_eq!(
                Params::new(4, 2, size),
                Err(ParamsError::PieceSize { size })
            );
        }
        assert!(matches!(
            Params::new(255, 1, 64 << 20),
            Err(ParamsError::SegmentTooLarge { .. })
        ));
        assert!(Params::new(256 - 1, 1, 1024).is_ok());
        assert!(Params::new(1, 255, 64 << 20).is_ok());
    }

    #[test]
    fn default_is_4_plus_2_with_1_mib_pieces() {
        let p = Params::default();
        assert_eq!(Params::new(4, 2, 1 << 20), Ok(p));
        assert_eq!(p.segment_capacity(), 4 << 20);
        // 64 cipher blocks of 64 KiB, each losing a 16-byte tag.
        assert_eq!(p.segment_plaintext_len(), (4 << 20) - 64 * 16);
    }

    #[test]
    fn deserialization_validates() {
        let bad = postcard::to_stdvec(&RawParams {
            k: 0,
            m: 2,
            piece_size: 1024,
        })
        .unwrap();
        assert!(postcard::from_bytes::<Params>(&bad).is_err());
        let good = postcard::to_stdvec(&Params::default()).unwrap();
        assert_eq!(
            postcard::from_bytes::<Params>(&good).unwrap(),
            Params::default()
        );
    }
}
