//! `chunker`: how an object becomes pieces and pieces become an object again.
//!
//! Pure library: no async, no network, no disk. The gateway feeds it bytes and ships what it
//! returns; storage nodes use it to check pieces and answer storage proofs.
//!
//! The data model (see `ARCHITECTURE.md`):
//! - An object is a stream of plaintext cut into **segments** of at most
//!   [`Params::segment_plaintext_len`] bytes.
//! - Each segment is **encrypted** in fixed blocks with the object's [`DataKey`]
//!   (AES-256-GCM, nonce = where the block sits), then **Reed-Solomon coded** into `k` data pieces
//!   (contiguous slices of the ciphertext) and `m` parity pieces.
//! - A piece's id is its **BLAKE3 hash** ([`PieceId`]), which is also the Merkle root that storage
//!   [`proof`]s are checked against.
//! - The [`manifest`] records all of it, with a format version.
//!
//! ```
//! use chunker::{encode_all, DataKey, Params, SegmentDecoder, SegmentInfo};
//!
//! let params = Params::new(4, 2, 64 * 1024).unwrap();
//! let key = DataKey::generate().unwrap();
//! let object = vec![42u8; 600_000];
//! let segments = encode_all(params, &key, 0, &object).unwrap();
//!
//! // Lose any two pieces of every segment; the rest still decode.
//! let decoder = SegmentDecoder::new(params, key);
//! let mut out = Vec::new();
//! for seg in &segments {
//!     let pieces: Vec<_> = seg.pieces().collect();
//!     let mut have: Vec<Option<&[u8]>> = pieces.iter().map(|p| Some(&p[..])).collect();
//!     have[0] = None;
//!     have[3] = None;
//!     let info = SegmentInfo { stream: 0, index: seg.index(), layout: seg.layout(), ids: seg.ids() };
//!     out.extend(decoder.decode(&info, &have).unwrap().plaintext);
//! }
//! assert_eq!(out, object);
//! ```

pub mod crypto;
pub mod decoder;
pub mod encoder;
pub mod erasure;
pub mod layout;
pub mod manifest;
pub mod params;
pub mod piece;
pub mod proof;
mod serde_bytes_vec;

pub use crypto::{CryptoError, DataKey, MasterKey, WrappedKey};
pub use decoder::{
    DecodeError, DecodedSegment, RangePlan, RebuiltSegment, SegmentDecoder, SegmentInfo,
};
pub use encoder::{encode_all, EncodeError, EncodedSegment, SegmentEncoder};
pub use erasure::Coder;
pub use layout::{SegmentLayout, CIPHER_BLOCK_LEN};
pub use manifest::{ObjectManifest, SegmentRecord};
pub use params::{Params, ParamsError};
pub use piece::{CorruptPiece, PieceId};
pub use proof::{Challenge, Outboard, Proof};
