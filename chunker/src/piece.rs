//! Piece ids: the BLAKE3 hash of a piece's bytes, which is also the root of its storage proofs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The content address of a piece: `blake3(piece bytes)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PieceId([u8; 32]);

/// A piece whose bytes do not hash to the id they were expected to have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("piece {expected} is corrupt: its bytes hash to {actual}")]
pub struct CorruptPiece {
    pub expected: PieceId,
    pub actual: PieceId,
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a piece id is 64 hex digits")]
pub struct BadPieceId;

impl PieceId {
    /// Hashes the piece.
    pub fn of(piece: &[u8]) -> Self {
        PieceId(*blake3::hash(piece).as_bytes())
    }

    /// The id from its 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        PieceId(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Checks that `piece` is the piece this id names.
    pub fn verify(&self, piece: &[u8]) -> Result<(), CorruptPiece> {
        let actual = PieceId::of(piece);
        // blake3::Hash compares in constant time; the id is public, but there is no reason not to.
        if blake3::Hash::from_bytes(actual.0) == blake3::Hash::from_bytes(self.0) {
            Ok(())
        } else {
            Err(CorruptPiece {
                expected: *self,
                actual,
            })
        }
    }
}

impl fmt::Display for PieceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PieceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PieceId({self})")
    }
}

impl FromStr for PieceId {
    type Err = BadPieceId;
    fn from_str(s: &str) -> Result<Self, BadPieceId> {
        let hash = blake3::Hash::from_hex(s).map_err(|_| BadPieceId)?;
        Ok(PieceId(*hash.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_blake3_and_round_trips_as_hex() {
        let id = PieceId::of(b"abc");
        assert_eq!(id.as_bytes(), blake3::hash(b"abc").as_bytes());
        assert_eq!(id.to_string().parse::<PieceId>().unwrap(), id);
        assert!("xyz".parse::<PieceId>().is_err());
        assert!(id.verify(b"abc").is_ok());
        let err = id.verify(b"abd").unwrap_err();
        assert_eq!(err.expected, id);
        assert_eq!(err.actual, PieceId::of(b"abd"));
    }
}
