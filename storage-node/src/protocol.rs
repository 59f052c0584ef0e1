//! The wire protocol between gateways and nodes: message types, limits, validation and framing.
//!
//! Everything here is shared by both sides (the gateway links this module) and knows nothing of
//! the transport beyond "a byte stream": the framing functions work on any
//! `futures::io::{AsyncRead, AsyncWrite}`.
//!
//! A frame is `u32` big-endian header length, the header (postcard, at most
//! [`MAX_HEADER_LEN`] bytes), then as many payload bytes as the header announces (piece bytes for
//! a put or a get, at most [`MAX_PAYLOAD_LEN`]). Every header carries [`PROTOCOL_VERSION`]; a peer
//! that speaks another version gets [`ErrorKind::UnsupportedVersion`] and nothing else.
//! Decoding validates every field; no input makes it panic or allocate more than the limits.

use std::collections::BTreeMap;
use std::ops::Range;

use chunker::{Challenge, PieceId, Proof};

use crate::ledger::{SignedReceipt, SignedStatement};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 2;
/// libp2p protocol name of gateway → node orders.
pub const NODE_PROTOCOL: &str = "/dsg/node/1";
/// libp2p protocol name of node → gateway registration.
pub const REGISTER_PROTOCOL: &str = "/dsg/register/1";
/// Largest header (everything but piece bytes).
pub const MAX_HEADER_LEN: usize = 256 * 1024;
/// Largest payload: one piece.
pub const MAX_PAYLOAD_LEN: u64 = crate::store::MAX_PIECE_LEN;
/// Most piece ids in one delete.
pub const MAX_DELETE_BATCH: usize = 1024;
/// Most piece ids in one scrub report (either way).
pub const MAX_SCRUB_REPORT: usize = 1024;
/// Most failure-domain labels a node may declare.
pub const MAX_LABELS: usize = 16;
/// Most listen addresses a node may announce.
pub const MAX_LISTEN_ADDRS: usize = 16;
/// Most data lanes a gateway may ask a node for.
pub const MAX_LANES: u8 = 16;
const MAX_SHORT_TEXT: usize = 128;
const MAX_ADDR_TEXT: usize = 256;
const MAX_ERROR_TEXT: usize = 1024;

/// A message that breaks the protocol's rules. The peer gets [`ErrorKind::BadRequest`].
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("header of {len} bytes exceeds the limit of {MAX_HEADER_LEN}")]
    HeaderTooLarge { len: usize },
    #[error("payload of {len} bytes exceeds the limit of {MAX_PAYLOAD_LEN}")]
    PayloadTooLarge { len: u64 },
    #[error("header does not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("peer speaks protocol version {found}, this build speaks {PROTOCOL_VERSION}")]
    Version { found: u16 },
    #[error("invalid field {field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: &'static str,
    },
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn invalid(field: &'static str, problem: &'static str) -> ProtocolError {
    ProtocolError::Invalid { field, problem }
}

/// A byte range of a piece, `start..end`, validated non-empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// As a `Range`.
    pub fn range(&self) -> Range<u64> {
        self.start..self.end
    }
}

/// An order from a gateway to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Store a piece; its `len` bytes follow as the payload.
    PutPiece { id: PieceId, len: u64 },
    /// Send a piece, or a range of it.
    GetPiece {
        id: PieceId,
        range: Option<ByteRange>,
    },
    /// Remove pieces (no longer referenced by the gateway).
    DeletePieces { ids: Vec<PieceId> },
    /// Prove possession of chunks of a piece.
    Challenge { challenge: Challenge },
    /// Report capacity and usage.
    Stats,
    /// Liveness.
    Ping { nonce: u64 },
    /// List pieces the node's scrub found corrupt, forgetting the `acknowledged` ones (which
    /// the gateway took note of after the last report).
    ScrubReport { acknowledged: Vec<PieceId> },
    /// Save and sign the running usage totals for the asking gateway (see [`crate::ledger`]).
    UsageReceipt,
    /// Keep a statement the gateway countersigned.
    RecordStatement { statement: Box<SignedStatement> },
}

impl Request {
    /// The payload bytes that follow this header.
    pub fn payload_len(&self) -> u64 {
        match self {
            Request::PutPiece { len, .. } => *len,
            _ => 0,
        }
    }

    fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            Request::PutPiece { len, .. } if *len == 0 => {
                Err(invalid("len", "a piece is never empty"))
            }
            Request::PutPiece { len, .. } if *len > MAX_PAYLOAD_LEN => {
                Err(ProtocolError::PayloadTooLarge { len: *len })
            }
            Request::GetPiece { range: Some(r), .. }
                if r.start >= r.end || r.end > MAX_PAYLOAD_LEN =>
            {
                Err(invalid("range", "must be non-empty and inside a piece"))
            }
            Request::DeletePieces { ids } if ids.is_empty() || ids.len() > MAX_DELETE_BATCH => {
                Err(invalid("ids", "a delete names 1 ..= 1024 pieces"))
            }
            Request::ScrubReport { acknowledged } if acknowledged.len() > MAX_SCRUB_REPORT => {
                Err(invalid("acknowledged", "at most 1024 pieces"))
            }
            _ => Ok(()),
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::PutPiece { .. } => "put",
            Request::GetPiece { .. } => "get",
            Request::DeletePieces { .. } => "delete",
            Request::Challenge { .. } => "challenge",
            Request::Stats => "stats",
            Request::Ping { .. } => "ping",
            Request::ScrubReport { .. } => "scrub-report",
            Request::UsageReceipt => "usage-receipt",
            Request::RecordStatement { .. } => "record-statement",
        }
    }
}

/// Why a request failed, as the gateway needs to act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The piece is not held here.
    NotFound,
    /// The node's capacity (or disk) is full: place the piece elsewhere.
    CapacityFull,
    /// The piece is held but rotten: repair it.
    Corrupt,
    /// The requester is not one of this node's gateways.
    Unauthorized,
    /// The request broke the protocol (including piece bytes that do not match their id).
    BadRequest,
    /// The requester speaks another protocol version.
    UnsupportedVersion,
    /// The node failed for its own reasons (I/O, overload); try again or elsewhere.
    Internal,
}

impl ErrorKind {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::CapacityFull => "capacity_full",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Usage figures a node reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    pub pieces: u64,
    pub used_bytes: u64,
    pub capacity_bytes: u64,
    /// Free bytes on the node's disk (may be less than capacity − used).
    pub disk_free_bytes: u64,
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The piece is stored (`already`: it was there before).
    Stored {
        already: bool,
    },
    /// The piece (or range) follows as `len` payload bytes.
    Piece {
        len: u64,
    },
    /// The outcome of a delete.
    Deleted {
        deleted: u32,
        absent: u32,
    },
    /// A storage proof, and the node's ed25519 signature over
    /// `chunker::proof::transcript_hash(challenge, proof)`.
    Proof {
        proof: Proof,
        signature: Vec<u8>,
    },
    Stats(NodeStats),
    Pong {
        nonce: u64,
    },
    /// Pieces found corrupt by the node's scrub, not yet acknowledged (at most 1024).
    ScrubReport {
        corrupt: Vec<PieceId>,
    },
    /// The node's signed usage totals for the asking gateway.
    UsageReceipt {
        receipt: Box<SignedReceipt>,
    },
    /// The statement is kept.
    Recorded,
    Error {
        kind: ErrorKind,
        message: String,
    },
}

impl Response {
    /// The payload bytes that follow this header.
    pub fn payload_len(&self) -> u64 {
        match self {
            Response::Piece { len } => *len,
            _ => 0,
        }
    }

    /// An error response, its message cut to the protocol's limit.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        let mut message = message.into();
        truncate_text(&mut message, MAX_ERROR_TEXT);
        Response::Error { kind, message }
    }

    fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            Response::Piece { len } if *len == 0 || *len > MAX_PAYLOAD_LEN => {
                Err(ProtocolError::PayloadTooLarge { len: *len })
            }
            Response::Proof { signature, .. } if signature.len() > 128 => {
                Err(invalid("signature", "longer than any ed25519 signature"))
            }
            Response::ScrubReport { corrupt } if corrupt.len() > MAX_SCRUB_REPORT => {
                Err(invalid("corrupt", "at most 1024 pieces"))
            }
            Response::Error { message, .. } if message.len() > MAX_ERROR_TEXT => {
                Err(invalid("message", "too long"))
            }
            _ => Ok(()),
        }
    }
}

fn truncate_text(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// What a node tells a gateway when it connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The node's software, e.g. `storage-node 0.1.0`.
    pub software: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub disk_free_bytes: u64,
    /// Failure-domain labels: `region`, `zone`, `operator`, ….
    pub labels: BTreeMap<String, String>,
    /// Multiaddrs the node listens on, for gateways that can dial it.
    pub listen: Vec<String>,
}

impl Registration {
    fn validate(&self) -> Result<(), ProtocolError> {
        let short = |s: &str| !s.is_empty() && s.len() <= MAX_SHORT_TEXT;
        if !short(&self.software) {
            return Err(invalid("software", "1 ..= 128 bytes"));
        }
        if self.labels.len() > MAX_LABELS {
            return Err(invalid("labels", "at most 16"));
        }
        if !self
            .labels
            .iter()
            .all(|(k, v)| short(k) && v.len() <= MAX_SHORT_TEXT)
        {
            return Err(invalid(
                "labels",
                "keys 1 ..= 128 bytes, values ≤ 128 bytes",
            ));
        }
        if self.listen.len() > MAX_LISTEN_ADDRS
            || self
                .listen
                .iter()
                .any(|a| a.is_empty() || a.len() > MAX_ADDR_TEXT)
        {
            return Err(invalid("listen", "at most 16 addresses of ≤ 256 bytes"));
        }
        Ok(())
    }
}

/// The gateway's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistrationReply {
    /// Registered; send a fresh registration at least this often, and keep the data lanes
    /// the gateway offers (if it does) connected.
    Accepted {
        heartbeat_secs: u32,
        lanes: Option<LaneOffer>,
    },
    /// Refused, with the reason (unknown node, wrong version, …).
    Refused { reason: String },
}

/// Data lanes a gateway offers a node ([`crate::net::lane`]): the node keeps `count` TCP
/// connections to `port` on the host it reaches the gateway at, keyed with `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneOffer {
    pub port: u16,
    pub count: u8,
    pub key: LaneKey,
}

/// The secret a gateway shares with one node (over the registration stream, which libp2p
/// encrypts and authenticates) to key their data lanes. Never printed.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneKey(pub [u8; 32]);

impl std::fmt::Debug for LaneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LaneKey(…)")
    }
}

impl RegistrationReply {
    fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            RegistrationReply::Refused { reason } if reason.len() > MAX_ERROR_TEXT => {
                Err(invalid("reason", "too long"))
            }
            RegistrationReply::Accepted {
                lanes: Some(LaneOffer { port, count, .. }),
                ..
            } if *port == 0 || *count == 0 || *count > MAX_LANES => {
                Err(invalid("lanes", "a port other than 0 and 1 ..= 16 lanes"))
            }
            _ => Ok(()),
        }
    }
}

/// A message that can travel in a frame header.
pub trait Message: Serialize + for<'de> Deserialize<'de> {
    /// Checks the fields a decoded message must satisfy.
    fn check(&self) -> Result<(), ProtocolError>;
    /// The payload bytes that follow the header.
    fn payload(&self) -> u64 {
        0
    }
}

impl Message for Request {
    fn check(&self) -> Result<(), ProtocolError> {
        self.validate()
    }
    fn payload(&self) -> u64 {
        self.payload_len()
    }
}

impl Message for Response {
    fn check(&self) -> Result<(), ProtocolError> {
        self.validate()
    }
    fn payload(&self) -> u64 {
        self.payload_len()
    }
}

impl Message for Registration {
    fn check(&self) -> Result<(), ProtocolError> {
        self.validate()
    }
}

impl Message for RegistrationReply {
    fn check(&self) -> Result<(), ProtocolError> {
        self.validate()
    }
}

#[derive(Serialize)]
struct HeaderOut<'a, M> {
    version: u16,
    message: &'a M,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u16,
}

#[derive(Deserialize)]
struct HeaderIn<M> {
    #[allow(dead_code)]
    version: u16,
    message: M,
}

/// Encodes a header (version + message) as it goes on the wire, without the length prefix.
pub fn encode_header<M: Message>(message: &M) -> Vec<u8> {
    match postcard::to_stdvec(&HeaderOut {
        version: PROTOCOL_VERSION,
        message,
    }) {
        Ok(v) => v,
        Err(e) => unreachable!("serializing to a Vec can't fail: {e}"),
    }
}

/// Decodes and validates a header. The version is checked before the message is looked at, so
/// a peer of another version gets a clear [`ProtocolError::Version`].
pub fn decode_header<M: Message>(bytes: &[u8]) -> Result<M, ProtocolError> {
    let VersionOnly { version } = postcard::take_from_bytes::<VersionOnly>(bytes)?.0;
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version { found: version });
    }
    let message = match postcard::take_from_bytes::<HeaderIn<M>>(bytes)? {
        (h, []) => h.message,
        (_, _) => return Err(invalid("header", "trailing bytes")),
    };
    message.check()?;
    Ok(message)
}

/// The header of a frame that carries `payload`: checks that the payload is exactly
/// `message.payload()` bytes and that the header fits [`MAX_HEADER_LEN`]. Streams and lanes
/// both frame with it.
pub fn frame_header<M: Message>(message: &M, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    if payload.len() as u64 != message.payload() {
        return Err(invalid("payload", "length differs from the header's"));
    }
    let header = encode_header(message);
    if header.len() > MAX_HEADER_LEN {
        return Err(ProtocolError::HeaderTooLarge { len: header.len() });
    }
    Ok(header)
}

/// Writes one frame: the header, then `payload` (which must be exactly `message.payload()` bytes).
pub async fn write_frame<W: AsyncWrite + Unpin, M: Message>(
    w: &mut W,
    message: &M,
    payload: &[u8],
) -> Result<(), ProtocolError> {
    let header = frame_header(message, payload)?;
    w.write_all(&(header.len() as u32).to_be_bytes()).await?;
    w.write_all(&header).await?;
    if !payload.is_empty() {
        w.write_all(payload).await?;
    }
    w.flush().await?;
    Ok(())
}

/// Reads one frame's header. The caller then reads exactly `message.payload()` bytes with
/// [`read_payload`] (or drops the stream).
pub async fn read_header<R: AsyncRead + Unpin, M: Message>(r: &mut R) -> Result<M, ProtocolError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEADER_LEN {
        return Err(ProtocolError::HeaderTooLarge { len });
    }
    let mut header = vec![0u8; len];
    r.read_exact(&mut header).await?;
    decode_header(&header)
}

/// Reads a payload of `len` bytes (already validated against [`MAX_PAYLOAD_LEN`] by the header).
pub async fn read_payload<R: AsyncRead + Unpin>(
    r: &mut R,
    len: u64,
) -> Result<Vec<u8>, ProtocolError> {
    if len > MAX_PAYLOAD_LEN {
        return Err(ProtocolError::PayloadTooLarge { len });
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// A connection exchanges travel on: a libp2p stream (the framing functions above) or a data
/// lane ([`crate::net::lane::Lane`], which seals each header and authenticates its payload).
/// Both sides of the protocol run their exchanges through this.
pub trait Frames: Send {
    /// Sends one frame: `message`, then `payload` (exactly `message.payload()` bytes).
    fn write_frame<M: Message + Sync>(
        &mut self,
        message: &M,
        payload: &[u8],
    ) -> impl std::future::Future<Output = Result<(), ProtocolError>> + Send;
    /// Reads one frame's header; the caller then takes its payload with
    /// [`Frames::read_payload`] (or drops the connection).
    fn read_header<M: Message + Send>(
        &mut self,
    ) -> impl std::future::Future<Output = Result<M, ProtocolError>> + Send;
    /// Reads the payload of `len` bytes the header announced.
    fn read_payload(
        &mut self,
        len: u64,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, ProtocolError>> + Send;
}

impl Frames for libp2p::Stream {
    fn write_frame<M: Message + Sync>(
        &mut self,
        message: &M,
        payload: &[u8],
    ) -> impl std::future::Future<Output = Result<(), ProtocolError>> + Send {
        write_frame(self, message, payload)
    }

    fn read_header<M: Message + Send>(
        &mut self,
    ) -> impl std::future::Future<Output = Result<M, ProtocolError>> + Send {
        read_header(self)
    }

    fn read_payload(
        &mut self,
        len: u64,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, ProtocolError>> + Send {
        read_payload(self, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    fn sample_requests() -> Vec<Request> {
        let id = PieceId::of(b"piece");
        vec![
            Request::PutPiece { id, len: 5 },
            Request::GetPiece { id, range: None },
            Request::GetPiece {
                id,
                range: Some(ByteRange { start: 1, end: 3 }),
            },
            Request::DeletePieces { ids: vec![id; 3] },
            Request::Challenge {
                challenge: Challenge::new(id, 5000, vec![0, 4], [7; 32]).unwrap(),
            },
            Request::Stats,
            Request::Ping { nonce: 42 },
            Request::ScrubReport {
                acknowledged: vec![id; 2],
            },
            Request::UsageReceipt,
            Request::RecordStatement {
                statement: Box::new(sample_statement()),
            },
        ]
    }

    fn sample_statement() -> SignedStatement {
        use crate::ledger::{Statement, Usage};
        let key = libp2p::identity::Keypair::generate_ed25519();
        let me = key.public().to_peer_id().to_bytes();
        let statement = Statement {
            node: me.clone(),
            gateway: me,
            period_start_ms: 0,
            period_end_ms: 1,
            opening: None,
            closing: None,
            measured: Usage::default(),
            measured_before: Usage::default(),
            credited_before: Usage::default(),
            credited: Usage::default(),
        };
        SignedStatement::sign(&key, statement).unwrap()
    }

    #[test]
    fn frames_round_trip() {
        for req in sample_requests() {
            let payload = vec![9u8; req.payload_len() as usize];
            let mut wire = Vec::new();
            block_on(write_frame(&mut wire, &req, &payload)).unwrap();
            let mut r = &wire[..];
            let got: Request = block_on(read_header(&mut r)).unwrap();
            assert_eq!(got, req);
            assert_eq!(
                block_on(read_payload(&mut r, got.payload_len())).unwrap(),
                payload
            );
            assert!(r.is_empty());
        }
        let reply = Response::error(ErrorKind::CapacityFull, "é".repeat(2000));
        let Response::Error { message, .. } = &reply else {
            unreachable!()
        };
        assert!(message.len() <= MAX_ERROR_TEXT);
        let mut wire = Vec::new();
        block_on(write_frame(&mut wire, &reply, &[])).unwrap();
        assert_eq!(
            block_on(read_header::<_, Response>(&mut &wire[..])).unwrap(),
            reply
        );
    }

    #[test]
    fn invalid_messages_are_refused() {
        let id = PieceId::of(b"p");
        let bad = [
            Request::PutPiece { id, len: 0 },
            Request::PutPiece {
                id,
                len: MAX_PAYLOAD_LEN + 1,
            },
            Request::GetPiece {
                id,
                range: Some(ByteRange { start: 5, end: 5 }),
            },
            Request::DeletePieces { ids: vec![] },
            Request::DeletePieces {
                ids: vec![id; MAX_DELETE_BATCH + 1],
            },
        ];
        for req in bad {
            let header = encode_header(&req);
            assert!(decode_header::<Request>(&header).is_err(), "{req:?}");
        }
        let reg = Registration {
            software: String::new(),
            capacity_bytes: 1,
            used_bytes: 0,
            disk_free_bytes: 1,
            labels: BTreeMap::new(),
            listen: vec![],
        };
        assert!(decode_header::<Registration>(&encode_header(&reg)).is_err());
        let offer = |port, count| RegistrationReply::Accepted {
            heartbeat_secs: 10,
            lanes: Some(LaneOffer {
                port,
                count,
                key: LaneKey([9; 32]),
            }),
        };
        assert_eq!(format!("{:?}", LaneKey([9; 32])), "LaneKey(…)");
        for bad in [offer(0, 4), offer(9011, 0), offer(9011, MAX_LANES + 1)] {
            assert!(decode_header::<RegistrationReply>(&encode_header(&bad)).is_err());
        }
        let good = offer(9011, MAX_LANES);
        assert_eq!(
            decode_header::<RegistrationReply>(&encode_header(&good)).unwrap(),
            good
        );
    }

    #[test]
    fn another_version_is_named_as_such() {
        let mut header = encode_header(&Request::Stats);
        header[0] = 7; // postcard varint of the version
        assert!(matches!(
            decode_header::<Request>(&header),
            Err(ProtocolError::Version { found: 7 })
        ));
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&(MAX_HEADER_LEN as u32 + 1).to_be_bytes());
        assert!(matches!(
            block_on(read_header::<_, Request>(&mut &wire[..])),
            Err(ProtocolError::HeaderTooLarge { .. })
        ));
        let mut wire = Vec::new();
        block_on(write_frame(&mut wire, &Request::Ping { nonce: 1 }, &[])).unwrap();
        for cut in 0..wire.len() {
            assert!(block_on(read_header::<_, Request>(&mut &wire[..cut])).is_err());
        }
        // Payload length must match the header.
        let mut out = Vec::new();
        let put = Request::PutPiece {
            id: PieceId::of(b"x"),
            len: 3,
        };
        assert!(block_on(write_frame(&mut out, &put, &[1, 2])).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn arbitrary_headers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = decode_header::<Request>(&bytes);
            let _ = decode_header::<Response>(&bytes);
            let _ = decode_header::<Registration>(&bytes);
            let _ = decode_header::<RegistrationReply>(&bytes);
            let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
            framed.extend(&bytes);
            let _ = block_on(read_header::<_, Request>(&mut &framed[..]));
        }

        #[test]
        fn damaged_valid_headers_never_panic(which in 0usize..7, pos in proptest::prelude::any::<proptest::sample::Index>(), byte: u8) {
            let req = sample_requests().swap_remove(which);
            let mut header = encode_header(&req);
            let i = pos.index(header.len());
            header[i] = byte;
            if let Ok(decoded) = decode_header::<Request>(&header) {
                proptest::prop_assert!(decoded.validate().is_ok());
            }
        }
    }
}
