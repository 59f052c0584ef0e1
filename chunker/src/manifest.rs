//! Object manifests: everything needed to find, check and decode an object version.
//!
//! Stored as one format byte followed by a [postcard] body. Decoding any bytes either yields a
//! manifest that passed [`ObjectManifest::validate`] or an error; it never panics.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::crypto::WrappedKey;
use crate::decoder::SegmentInfo;
use crate::layout::{LayoutError, SegmentLayout};
use crate::{Params, PieceId};

/// The manifest format this build writes. Older formats stay readable: 1 lacks `headers` and
/// `tags` (read as empty).
pub const MANIFEST_FORMAT: u8 = 2;
/// Longest node id accepted (a libp2p PeerId of an ed25519 key is 38 bytes).
pub const MAX_NODE_ID_LEN: usize = 128;

/// Why stored bytes are not a valid manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("empty manifest record")]
    Empty,
    #[error("manifest format {found} is not known to this build (newest: {MANIFEST_FORMAT})")]
    UnknownFormat { found: u8 },
    #[error("manifest body does not decode: {0}")]
    Body(#[from] postcard::Error),
    #[error("{len} bytes follow the manifest body")]
    TrailingBytes { len: usize },
    #[error("segment {segment}: {source}")]
    Segment {
        segment: usize,
        #[source]
        source: LayoutError,
    },
    #[error("segment {segment} lists {got} pieces, its parameters need {expected}")]
    PieceCount {
        segment: usize,
        expected: usize,
        got: usize,
    },
    #[error("segments hold {segments} bytes but the object is {size}")]
    SizeMismatch { size: u64, segments: u64 },
    #[error(
        "the inline body has {ciphertext} ciphertext bytes, a {size}-byte object needs {expected}"
    )]
    InlineLength {
        size: u64,
        ciphertext: usize,
        expected: u64,
    },
    #[error("a node id is 1 ..= {MAX_NODE_ID_LEN} bytes, not {len}")]
    NodeIdLength { len: usize },
}

/// The identity of a storage node: the bytes of its libp2p PeerId.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawNodeId")]
pub struct NodeId(#[serde(with = "crate::serde_bytes_vec")] Vec<u8>);

#[derive(Deserialize)]
struct RawNodeId(#[serde(with = "crate::serde_bytes_vec")] Vec<u8>);

impl TryFrom<RawNodeId> for NodeId {
    type Error = ManifestError;
    fn try_from(raw: RawNodeId) -> Result<Self, ManifestError> {
        NodeId::new(raw.0)
    }
}

impl NodeId {
    /// A node id from its bytes (1 ..= 128 of them).
    pub fn new(bytes: Vec<u8>) -> Result<Self, ManifestError> {
        if bytes.is_empty() || bytes.len() > MAX_NODE_ID_LEN {
            return Err(ManifestError::NodeIdLength { len: bytes.len() });
        }
        Ok(NodeId(bytes))
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeId(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Where one piece is: its id and the node holding it (`None` while it has no holder, e.g. a
/// write that reached its quorum without this piece, or a piece whose node was lost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceLocation {
    pub id: PieceId,
    pub node: Option<NodeId>,
}

/// One segment: where it sits in its stream (for the nonces), its length, its code and its
/// `k + m` pieces in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub stream: u32,
    pub index: u32,
    pub plain_len: u64,
    pub params: Params,
    pub pieces: Vec<PieceLocation>,
}

impl SegmentRecord {
    /// The segment's geometry.
    pub fn layout(&self) -> Result<SegmentLayout, LayoutError> {
        SegmentLayout::new(self.params, self.plain_len)
    }

    /// The piece ids in order.
    pub fn ids(&self) -> Vec<PieceId> {
        self.pieces.iter().map(|p| p.id).collect()
    }

    /// What [`crate::SegmentDecoder`] needs, borrowing `ids` (from [`SegmentRecord::ids`]).
    pub fn info<'a>(&self, ids: &'a [PieceId]) -> Result<SegmentInfo<'a>, LayoutError> {
        Ok(SegmentInfo {
            stream: self.stream,
            index: self.index,
            layout: self.layout()?,
            ids,
        })
    }
}

/// Checksum algorithms S3 clients ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

/// A checksum of the whole object, or a checksum of checksums over multipart parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    /// `true` for a composite (checksum of the parts' checksums).
    pub composite: bool,
    #[serde(with = "crate::serde_bytes_vec")]
    pub value: Vec<u8>,
}

/// One part of a multipart object: its bytes are the segments of stream `number`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub number: u32,
    pub size: u64,
    pub etag: String,
}

/// Where an object's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A small object kept in the metadata itself: the ciphertext of stream 0, segment 0
    /// (sealed like any segment, but neither coded nor spread).
    Inline {
        #[serde(with = "crate::serde_bytes_vec")]
        ciphertext: Vec<u8>,
    },
    /// Erasure-coded segments in object order.
    Segments(Vec<SegmentRecord>),
    /// The bytes are a plain object under `key` in the bucket's remote (a hybrid bucket's
    /// paired S3 bucket); the wrapped key is unused.
    Remote { key: String },
}

/// One object version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectManifest {
    pub size: u64,
    pub etag: String,
    pub content_type: Option<String>,
    pub user_metadata: BTreeMap<String, String>,
    pub checksums: Vec<Checksum>,
    /// Commit time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub wrapped_key: WrappedKey,
    /// Empty unless the object was uploaded in parts.
    pub parts: Vec<PartRecord>,
    pub body: Body,
    /// Response headers stored with the object, by lower-case name (`content-encoding`,
    /// `content-disposition`, `cache-control`, `content-language`, `expires`).
    pub headers: BTreeMap<String, String>,
    /// The object's tag set.
    pub tags: BTreeMap<String, String>,
}

/// Format 1 of [`ObjectManifest`] (fields in their stored order).
#[derive(Deserialize)]
struct ManifestV1 {
    size: u64,
    etag: String,
    content_type: Option<String>,
    user_metadata: BTreeMap<String, String>,
    checksums: Vec<Checksum>,
    created_ms: u64,
    wrapped_key: WrappedKey,
    parts: Vec<PartRecord>,
    body: Body,
}

impl From<ManifestV1> for ObjectManifest {
    fn from(m: ManifestV1) -> Self {
        ObjectManifest {
            size: m.size,
            etag: m.etag,
            content_type: m.content_type,
            user_metadata: m.user_metadata,
            checksums: m.checksums,
            created_ms: m.created_ms,
            wrapped_key: m.wrapped_key,
            parts: m.parts,
            body: m.body,
            headers: BTreeMap::new(),
            tags: BTreeMap::new(),
        }
    }
}

/// A postcard body that must fill `bytes` exactly.
fn whole<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ManifestError> {
    match postcard::take_from_bytes(bytes)? {
        (v, []) => Ok(v),
        (_, rest) => Err(ManifestError::TrailingBytes { len: rest.len() }),
    }
}

/// A segment overlapping a byte range of the object, and the part of it that overlaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSpan {
    /// Index into [`Body::Segments`].
    pub segment: usize,
    /// The overlapping plaintext range within that segment.
    pub range: Range<usize>,
}

impl ObjectManifest {
    /// The stored form: format byte, then the postcard body.
    pub fn encode(&self) -> Vec<u8> {
        let out = vec![MANIFEST_FORMAT];
        match postcard::to_extend(self, out) {
            Ok(v) => v,
            Err(e) => unreachable!("serializing to a Vec can't fail: {e}"),
        }
    }

    /// Reads and validates a stored manifest.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let (&format, body) = bytes.split_first().ok_or(ManifestError::Empty)?;
        let manifest: ObjectManifest = match format {
            MANIFEST_FORMAT => whole(body)?,
            1 => whole::<ManifestV1>(body)?.into(),
            found => return Err(ManifestError::UnknownFormat { found }),
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks the invariants decoding relies on: every segment's length fits its parameters, it
    /// lists `k + m` pieces, node ids are well-formed, and the segments add up to the size.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let segments = match &self.body {
            Body::Segments(segments) => segments,
            Body::Inline { ciphertext } => {
                let expected = crate::layout::ciphertext_len(self.size as usize) as u64;
                if usize::try_from(self.size).is_err() || ciphertext.len() as u64 != expected {
                    return Err(ManifestError::InlineLength {
                        size: self.size,
                        ciphertext: ciphertext.len(),
                        expected,
                    });
                }
                return Ok(());
            }
            Body::Remote { .. } => return Ok(()),
        };
        let mut total = 0u64;
        for (i, seg) in segments.iter().enumerate() {
            seg.layout()
                .map_err(|source| ManifestError::Segment { segment: i, source })?;
            if seg.pieces.len() != seg.params.total() {
                return Err(ManifestError::PieceCount {
                    segment: i,
                    expected: seg.params.total(),
                    got: seg.pieces.len(),
                });
            }
            total = total.saturating_add(seg.plain_len);
        }
        if total != self.size {
            return Err(ManifestError::SizeMismatch {
                size: self.size,
                segments: total,
            });
        }
        Ok(())
    }

    /// The segments overlapping the object byte range `range`, in order, with the overlapping
    /// range within each. Empty for an inline or remote body or an empty range.
    pub fn segments_in(&self, range: Range<u64>) -> Vec<SegmentSpan> {
        let Body::Segments(segments) = &self.body else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if range.start >= range.end {
            return out;
        }
        let mut start = 0u64;
        for (i, seg) in segments.iter().enumerate() {
            let end = start + seg.plain_len;
            if end > range.start && start < range.end {
                let lo = range.start.max(start) - start;
                let hi = range.end.min(end) - start;
                out.push(SegmentSpan {
                    segment: i,
                    range: lo as usize..hi as usize,
                });
            }
            if end >= range.end {
                break;
            }
            start = end;
        }
        out
    }
}
