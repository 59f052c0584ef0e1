//! Encryption: per-object data keys, wrapped by the gateway's master key, sealing fixed-size
//! blocks with AES-256-GCM.
//!
//! Every block of every segment has its own nonce, derived from where it sits: `(stream, segment,
//! block)`, each a big-endian `u32`. A *stream* is one independently uploaded byte stream of an
//! object (0 for a plain PUT, which has a data key of its own; for a multipart upload, a number
//! handed out once per part attempt), so nonces never repeat under one data key, and any block
//! can be opened on its own for a range read. A block moved to
//! another position, another segment or another object fails authentication.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};

use crate::layout::{BLOCK_PLAINTEXT_LEN, CIPHER_BLOCK_LEN, TAG_LEN};

/// Length of master and data keys.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const WRAP_FORMAT: u8 = 1;
const WRAP_AAD: &[u8] = b"chunker wrapped data key v1";
/// Length of a [`WrappedKey`].
pub const WRAPPED_KEY_LEN: usize = 1 + NONCE_LEN + KEY_LEN + TAG_LEN;

/// Failures of encryption and decryption. Authentication failures say where, never why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the system random generator failed")]
    Random,
    #[error("block {block} of segment {segment} (stream {stream}) failed authentication")]
    BlockTampered {
        stream: u32,
        segment: u32,
        block: u32,
    },
    #[error("the wrapped data key is {len} bytes, expected {WRAPPED_KEY_LEN}")]
    WrappedKeyLength { len: usize },
    #[error("the wrapped data key has format {found}, this build reads {WRAP_FORMAT}")]
    WrappedKeyFormat { found: u8 },
    #[error("the wrapped data key failed authentication (wrong master key or tampered)")]
    UnwrapFailed,
    #[error("a key must be {KEY_LEN} bytes, got {len}")]
    KeyLength { len: usize },
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey, CryptoError> {
    let key = UnboundKey::new(&AES_256_GCM, bytes)
        .map_err(|_| CryptoError::KeyLength { len: bytes.len() })?;
    Ok(LessSafeKey::new(key))
}

/// The gateway's long-lived key. It only wraps and unwraps data keys.
pub struct MasterKey {
    key: LessSafeKey,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A master key from its 32 raw bytes (as read from the key file).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(MasterKey {
            key: aes_key(bytes)?,
        })
    }

    /// Fresh random key bytes for a new master key file.
    pub fn generate_bytes() -> Result<[u8; KEY_LEN], CryptoError> {
        random_bytes()
    }

    /// Seals a data key under this master key with a random nonce.
    pub fn wrap(&self, data_key: &DataKey) -> Result<WrappedKey, CryptoError> {
        let nonce = random_bytes::<NONCE_LEN>()?;
        let mut sealed = data_key.raw.to_vec();
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(WRAP_AAD),
                &mut sealed,
            )
            .map_err(|_| CryptoError::Random)?;
        let mut out = Vec::with_capacity(WRAPPED_KEY_LEN);
        out.push(WRAP_FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out.extend_from_slice(tag.as_ref());
        Ok(WrappedKey(out))
    }

    /// Opens a wrapped data key. A wrong master key or any changed byte is an error.
    pub fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, CryptoError> {
        let bytes = &wrapped.0;
        if bytes.len() != WRAPPED_KEY_LEN {
            return Err(CryptoError::WrappedKeyLength { len: bytes.len() });
        }
        if bytes[0] != WRAP_FORMAT {
            return Err(CryptoError::WrappedKeyFormat { found: bytes[0] });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[1..1 + NONCE_LEN]);
        let mut sealed = bytes[1 + NONCE_LEN..].to_vec();
        let raw = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(WRAP_AAD),
                &mut sealed,
            )
            .map_err(|_| CryptoError::UnwrapFailed)?;
        DataKey::from_bytes(raw)
    }
}

/// A data key sealed by the master key, as stored in a manifest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey(#[serde(with = "crate::serde_bytes_vec")] Vec<u8>);

impl WrappedKey {
    /// The stored bytes (format byte, nonce, sealed key, tag).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Takes stored bytes as they are; [`MasterKey::unwrap`] validates them.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        WrappedKey(bytes)
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

/// A random per-object key that seals the object's blocks. Cheap to clone.
#[derive(Clone)]
pub struct DataKey {
    raw: [u8; KEY_LEN],
    key: Arc<LessSafeKey>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Where a block sits, which is also its nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPosition {
    pub stream: u32,
    pub segment: u32,
    pub block: u32,
}

impl BlockPosition {
    fn nonce(&self) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n[0..4].copy_from_slice(&self.stream.to_be_bytes());
        n[4..8].copy_from_slice(&self.segment.to_be_bytes());
        n[8..12].copy_from_slice(&self.block.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        Self::from_bytes(&random_bytes::<KEY_LEN>()?)
    }

    /// A key from raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let raw: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::KeyLength { len: bytes.len() })?;
        Ok(DataKey {
            raw,
            key: Arc::new(aes_key(&raw)?),
        })
    }

    /// Seals a whole small body as blocks of stream 0, segment 0 (the layout of a
    /// [`crate::manifest::Body::Inline`] body): `ciphertext_len(plaintext.len())` bytes.
    pub fn seal_inline(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(crate::layout::ciphertext_len(plaintext.len()));
        for (b, chunk) in plaintext.chunks(BLOCK_PLAINTEXT_LEN).enumerate() {
            let start = out.len();
            out.extend_from_slice(chunk);
            out.resize(start + chunk.len() + TAG_LEN, 0);
            self.seal_block(inline_position(b), &mut out[start..])?;
        }
        Ok(out)
    }

    /// Opens what [`DataKey::seal_inline`] sealed; any changed byte is an error.
    pub fn open_inline(&self, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut plain = Vec::with_capacity(ciphertext.len());
        for (b, chunk) in ciphertext.chunks(CIPHER_BLOCK_LEN).enumerate() {
            let mut block = chunk.to_vec();
            self.open_block(inline_position(b), &mut block)?;
            plain.extend_from_slice(&block[..block.len() - TAG_LEN]);
        }
        Ok(plain)
    }

    /// The raw key bytes. Only for keys that are themselves secrets handed to a user (an S3
    /// access key's secret is a data key wrapped by the master key); object data keys never
    /// leave their wrapping.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.raw
    }

    /// Encrypts `block` (the plaintext followed by [`TAG_LEN`] bytes of room) in place.
    pub(crate) fn seal_block(
        &self,
        at: BlockPosition,
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        let (plain, tag_room) = block.split_at_mut(block.len() - TAG_LEN);
        let tag = self
            .key
            .seal_in_place_separate_tag(at.nonce(), Aad::empty(), plain)
            .map_err(|_| CryptoError::Random)?;
        tag_room.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts a sealed block (ciphertext then tag) in place; on success the first
    /// `block.len() - TAG_LEN` bytes are the plaintext.
    pub(crate) fn open_block(
        &self,
        at: BlockPosition,
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        if block.len() < TAG_LEN {
            return Err(CryptoError::BlockTampered {
                stream: at.stream,
                segment: at.segment,
                block: at.block,
            });
        }
        self.key
            .open_in_place(at.nonce(), Aad::empty(), block)
            .map(|_| ())
            .map_err(|_| CryptoError::BlockTampered {
                stream: at.stream,
                segment: at.segment,
                block: at.block,
            })
    }
}

fn inline_position(block: usize) -> BlockPosition {
    BlockPosition {
        stream: 0,
        segment: 0,
        block: u32::try_from(block).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(block: u32) -> BlockPosition {
        BlockPosition {
            stream: 1,
            segment: 2,
            block,
        }
    }

    #[test]
    fn wrap_round_trips_and_detects_every_flipped_byte() {
        let master = MasterKey::from_bytes(&MasterKey::generate_bytes().unwrap()).unwrap();
        let key = DataKey::generate().unwrap();
        let wrapped = master.wrap(&key).unwrap();
        assert_eq!(wrapped.as_bytes().len(), WRAPPED_KEY_LEN);
        assert_eq!(master.unwrap(&wrapped).unwrap().raw, key.raw);
        for i in 0..WRAPPED_KEY_LEN {
            let mut bad = wrapped.as_bytes().to_vec();
            bad[i] ^= 0x40;
            assert!(
                master.unwrap(&WrappedKey::from_bytes(bad)).is_err(),
                "byte {i}"
            );
        }
        let other = MasterKey::from_bytes(&[7; 32]).unwrap();
        assert_eq!(
            other.unwrap(&wrapped).unwrap_err(),
            CryptoError::UnwrapFailed
        );
        assert!(master.unwrap(&WrappedKey::from_bytes(vec![1; 3])).is_err());
        assert!(MasterKey::from_bytes(&[0; 31]).is_err());
    }

    #[test]
    fn inline_bodies_round_trip_and_detect_tampering() {
        let key = DataKey::generate().unwrap();
        for len in [
            0,
            1,
            BLOCK_PLAINTEXT_LEN,
            BLOCK_PLAINTEXT_LEN + 1,
            3 * BLOCK_PLAINTEXT_LEN - 7,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = key.seal_inline(&plain).unwrap();
            assert_eq!(sealed.len(), crate::layout::ciphertext_len(len));
            assert_eq!(key.open_inline(&sealed).unwrap(), plain);
            if len > 0 {
                let mut bad = sealed.clone();
                bad[len / 2] ^= 1;
                assert!(key.open_inline(&bad).is_err());
            }
        }
    }

    #[test]
    fn blocks_are_bound_to_their_position() {
        let key = DataKey::generate().unwrap();
        let mut block = b"hello, block".to_vec();
        block.extend_from_slice(&[0; TAG_LEN]);
        key.seal_block(at(3), &mut block).unwrap();
        let sealed = block.clone();
        key.open_block(at(3), &mut block).unwrap();
        assert_eq!(&block[..12], b"hello, block");
        for other in [
            at(4),
            BlockPosition { stream: 0, ..at(3) },
            BlockPosition {
                segment: 9,
                ..at(3)
            },
        ] {
            let mut b = sealed.clone();
            assert!(key.open_block(other, &mut b).is_err());
        }
        let mut short = vec![0u8; 3];
        assert!(key.open_block(at(0), &mut short).is_err());
    }
}
