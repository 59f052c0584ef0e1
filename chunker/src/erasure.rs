//! Reed-Solomon over GF(2^8), on pieces laid out back to back in one buffer.
//!
//! Whole pieces are coded in one call. Coding in 16 KiB or 128 KiB column stripes (to keep each
//! stripe in cache) was measured here and was no faster for 4+2 and 8+4 and 25 % slower for 16+8
//! (`docs/performance.md`), so there is no striping.

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::Params;

/// Too few pieces to rebuild a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("need {needed} intact pieces to decode, have {available}")]
pub struct TooFewPieces {
    pub needed: usize,
    pub available: usize,
}

/// The Reed-Solomon code for one set of parameters. Build once, use for many segments.
#[derive(Debug)]
pub struct Coder {
    rs: ReedSolomon,
    params: Params,
}

impl Coder {
    /// The code for `params` (always valid: `Params` guarantees `1 ≤ k, m` and `k + m ≤ 256`).
    pub fn new(params: Params) -> Self {
        let rs = match ReedSolomon::new(params.k(), params.m()) {
            Ok(rs) => rs,
            // Params::new enforces exactly the library's preconditions.
            Err(e) => unreachable!("validated params {params:?} refused: {e:?}"),
        };
        Coder { rs, params }
    }

    /// The parameters this code was built for.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Computes the parity pieces. `pieces` holds `k + m` pieces of `piece_len` bytes back to back;
    /// the first `k` are the data, the last `m` are overwritten.
    pub fn encode(&self, pieces: &mut [u8], piece_len: usize) {
        let k = self.params.k();
        let m = self.params.m();
        assert_eq!(
            pieces.len(),
            (k + m) * piece_len,
            "buffer is not k + m pieces"
        );
        let (data, parity) = pieces.split_at_mut(k * piece_len);
        let inputs: Vec<&[u8]> = data.chunks_exact(piece_len).collect();
        let mut outputs: Vec<&mut [u8]> = parity.chunks_exact_mut(piece_len).collect();
        if let Err(e) = self.rs.encode_sep(&inputs, &mut outputs) {
            unreachable!("slices are k and m of equal non-zero length: {e:?}");
        }
    }

    /// Rebuilds missing pieces in place. `pieces` holds `k + m` pieces of `piece_len` bytes;
    /// `present[i]` says whether piece `i` holds good bytes. With `data_only`, only missing data
    /// pieces are rebuilt (enough to decrypt); otherwise every missing piece is.
    pub fn reconstruct(
        &self,
        pieces: &mut [u8],
        piece_len: usize,
        present: &[bool],
        data_only: bool,
    ) -> Result<(), TooFewPieces> {
        let total = self.params.total();
        assert_eq!(
            pieces.len(),
            total * piece_len,
            "buffer is not k + m pieces"
        );
        assert_eq!(present.len(), total, "one presence flag per piece");
        let available = present.iter().filter(|p| **p).count();
        if available < self.params.k() {
            return Err(TooFewPieces {
                needed: self.params.k(),
                available,
            });
        }
        if present.iter().all(|p| *p) {
            return Ok(());
        }
        let mut shards: Vec<(&mut [u8], bool)> = pieces
            .chunks_exact_mut(piece_len)
            .zip(present.iter().copied())
            .collect();
        let result = if data_only {
            self.rs.reconstruct_data(&mut shards)
        } else {
            self.rs.reconstruct(&mut shards)
        };
        result.map_err(|_| TooFewPieces {
            needed: self.params.k(),
            available,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_encoding_equals_the_library_on_separate_pieces() {
        let params = Params::new(3, 2, 40 * 1024).unwrap();
        let coder = Coder::new(params);
        let piece_len = 40 * 1024 - 7;
        let mut buf: Vec<u8> = (0..5 * piece_len).map(|i| (i * 31 % 251) as u8).collect();
        coder.encode(&mut buf, piece_len);
        let mut whole: Vec<Vec<u8>> = buf.chunks(piece_len).map(|c| c.to_vec()).collect();
        for p in &mut whole[3..] {
            p.fill(0);
        }
        coder.rs.encode(&mut whole).unwrap();
        assert_eq!(whole.concat(), buf);
    }

    #[test]
    fn rebuilds_any_two_lost_pieces_and_refuses_three() {
        let params = Params::new(3, 2, 1024).unwrap();
        let coder = Coder::new(params);
        let mut buf: Vec<u8> = (0..5 * 100).map(|i| (i % 256) as u8).collect();
        coder.encode(&mut buf, 100);
        let good = buf.clone();
        for a in 0..5 {
            for b in a + 1..5 {
                let mut damaged = good.clone();
                damaged[a * 100..a * 100 + 100].fill(0xAA);
                damaged[b * 100..b * 100 + 100].fill(0x55);
                let mut present = [true; 5];
                present[a] = false;
                present[b] = false;
                coder
                    .reconstruct(&mut damaged, 100, &present, false)
                    .unwrap();
                assert_eq!(damaged, good, "lost {a} and {b}");
            }
        }
        let present = [true, false, false, false, true];
        let err = coder
            .reconstruct(&mut buf, 100, &present, true)
            .unwrap_err();
        assert_eq!(
            err,
            TooFewPieces {
                needed: 3,
                available: 2
            }
        );
    }
}
