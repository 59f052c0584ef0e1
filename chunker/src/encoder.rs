//! The streaming encoder: plaintext in, encrypted and erasure-coded segments out.

use std::sync::Arc;

use bytes::Bytes;

use crate::crypto::{BlockPosition, CryptoError, DataKey};
use crate::erasure::Coder;
use crate::layout::{SegmentLayout, BLOCK_PLAINTEXT_LEN, CIPHER_BLOCK_LEN};
use crate::{Params, PieceId};

/// Why encoding stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("a stream holds at most 2^32 segments")]
    TooManySegments,
}

/// One segment, encrypted and coded: `k` data pieces and `m` parity pieces, each with its id.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    stream: u32,
    index: u32,
    layout: SegmentLayout,
    pieces: Bytes,
    ids: Vec<PieceId>,
}

impl EncodedSegment {
    /// The stream (0 for a plain upload, the number a multipart part attempt was handed).
    pub fn stream(&self) -> u32 {
        self.stream
    }

    /// The segment's index within its stream.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The segment's geometry (plaintext length, piece length, blocks).
    pub fn layout(&self) -> SegmentLayout {
        self.layout
    }

    /// Piece `i` (`0..k` data, `k..k+m` parity). Cheap: shares the segment's buffer.
    ///
    /// # Panics
    /// If `i ≥ k + m`.
    pub fn piece(&self, i: usize) -> Bytes {
        let len = self.layout.piece_len();
        self.pieces.slice(i * len..(i + 1) * len)
    }

    /// The pieces in order.
    pub fn pieces(&self) -> impl Iterator<Item = Bytes> + '_ {
        (0..self.ids.len()).map(|i| self.piece(i))
    }

    /// The ids of the pieces, in order.
    pub fn ids(&self) -> &[PieceId] {
        &self.ids
    }
}

/// Turns a byte stream of any length into encoded segments, holding at most one segment's worth
/// of bytes (`(k + m) × piece_size`) however long the stream is.
///
/// ```
/// use chunker::{DataKey, Params, SegmentEncoder};
/// let params = Params::new(2, 1, 4096).unwrap();
/// let mut enc = SegmentEncoder::new(params, DataKey::generate().unwrap(), 0);
/// let mut segments = Vec::new();
/// let mut input: &[u8] = &[7u8; 20_000];
/// while !input.is_empty() {
///     segments.extend(enc.push(&mut input).unwrap());
/// }
/// segments.extend(enc.finish().unwrap());
/// let total: usize = segments.iter().map(|s| s.layout().plain_len()).sum();
/// assert_eq!(total, 20_000);
/// assert!(segments.iter().all(|s| s.ids().len() == 3));
/// ```
#[derive(Debug)]
pub struct SegmentEncoder {
    coder: Arc<Coder>,
    key: DataKey,
    stream: u32,
    next_index: Option<u32>,
    /// Room for `k + m` full pieces. Plaintext is written at its block's position, leaving a
    /// tag's room after each block, so sealing happens in place.
    buf: Vec<u8>,
    plain_len: usize,
    max_plain: usize,
}

impl SegmentEncoder {
    /// An encoder for one stream of an object, sealing with `key`.
    pub fn new(params: Params, key: DataKey, stream: u32) -> Self {
        Self::with_coder(Arc::new(Coder::new(params)), key, stream)
    }

    /// Like [`SegmentEncoder::new`], sharing an already built code.
    pub fn with_coder(coder: Arc<Coder>, key: DataKey, stream: u32) -> Self {
        let params = coder.params();
        SegmentEncoder {
            coder,
            key,
            stream,
            next_index: Some(0),
            buf: Vec::new(),
            plain_len: 0,
            max_plain: params.segment_plaintext_len(),
        }
    }

    /// Takes bytes from the front of `input` until it is empty or a segment is full; returns the
    /// segment when it is. Call again while `input` is not empty.
    pub fn push(&mut self, input: &mut &[u8]) -> Result<Option<EncodedSegment>, EncodeError> {
        while !input.is_empty() && self.plain_len < self.max_plain {
            if self.buf.is_empty() {
                let params = self.coder.params();
                // Zeroed memory from the allocator costs nothing until touched.
                self.buf = vec![0u8; params.total() * params.piece_size()];
            }
            let within = self.plain_len % BLOCK_PLAINTEXT_LEN;
            let room = (BLOCK_PLAINTEXT_LEN - within).min(self.max_plain - self.plain_len);
            let n = room.min(input.len());
            let dst = (self.plain_len / BLOCK_PLAINTEXT_LEN) * CIPHER_BLOCK_LEN + within;
            self.buf[dst..dst + n].copy_from_slice(&input[..n]);
            self.plain_len += n;
            *input = &input[n..];
        }
        if self.plain_len == self.max_plain {
            return self.seal().map(Some);
        }
        Ok(None)
    }

    /// Ends the stream: returns the last, short segment if any bytes are pending. A stream of
    /// zero bytes has no segments.
    pub fn finish(mut self) -> Result<Option<EncodedSegment>, EncodeError> {
        if self.plain_len == 0 {
            return Ok(None);
        }
        self.seal().map(Some)
    }

    fn seal(&mut self) -> Result<EncodedSegment, EncodeError> {
        let index = self.next_index.ok_or(EncodeError::TooManySegments)?;
        let params = self.coder.params();
        let layout = match SegmentLayout::new(params, self.plain_len as u64) {
            Ok(l) => l,
            Err(e) => unreachable!("encoder holds 1..=max plaintext bytes: {e}"),
        };
        let mut buf = std::mem::take(&mut self.buf);
        self.plain_len = 0;
        for b in 0..layout.block_count() {
            let at = BlockPosition {
                stream: self.stream,
                segment: index,
                block: b as u32,
            };
            self.key
                .seal_block(at, &mut buf[layout.block_cipher_range(b)])?;
        }
        let piece_len = layout.piece_len();
        let data_len = params.k() * piece_len;
        buf[layout.ciphertext_len()..data_len].fill(0);
        buf.truncate(params.total() * piece_len);
        self.coder.encode(&mut buf, piece_len);
        let ids = buf.chunks_exact(piece_len).map(PieceId::of).collect();
        self.next_index = index.checked_add(1);
        Ok(EncodedSegment {
            stream: self.stream,
            index,
            layout,
            pieces: Bytes::from(buf),
            ids,
        })
    }
}

/// Encodes a whole in-memory stream. For tests, examples and small objects; large objects go
/// through [`SegmentEncoder`] piece by piece.
pub fn encode_all(
    params: Params,
    key: &DataKey,
    stream: u32,
    mut input: &[u8],
) -> Result<Vec<EncodedSegment>, EncodeError> {
    let mut enc = SegmentEncoder::new(params, key.clone(), stream);
    let mut out = Vec::new();
    while !input.is_empty() {
        out.extend(enc.push(&mut input)?);
    }
    out.extend(enc.finish()?);
    Ok(out)
}
