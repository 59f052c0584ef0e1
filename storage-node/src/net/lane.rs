//! Data lanes: TCP connections a node dials to its gateway that carry node-protocol exchanges
//! (put piece, get piece, …) without the stream multiplexer and without re-encrypting pieces,
//! one exchange at a time each.
//!
//! Why: piece bytes on a Yamux stream are handed, frame by frame, between the task that reads
//! or writes the stream and the task that drives the connection, and TLS seals every byte and
//! copies it twice more. Pieces need neither: they are ciphertext already (the gateway seals
//! every block with AES-GCM before coding), and what the transport must add is authenticity.
//!
//! How:
//! - **Key.** The gateway gives each registered node a 32-byte [`LaneKey`] in its registration
//!   reply, over the libp2p registration stream (encrypted, and authenticated by both peer ids).
//! - **Handshake.** The node connects and sends `hello`: its peer id and a fresh random nonce;
//!   the gateway answers with its own nonce, if it takes lanes from that node. Each direction's
//!   AES-128-GCM key is `blake3::derive_key(context of the direction, key ‖ node nonce ‖
//!   gateway nonce)`, so every lane has fresh keys and a recorded lane cannot be replayed.
//!   Each side then sends a sealed `ready` frame and checks the other's, so neither trusts a
//!   lane (nor reads a large frame on it) before the other end has proven it holds the key.
//! - **Frames.** `u32 sealed header length ‖ u64 payload length ‖ sealed header ‖ payload`:
//!   the protocol header (the same postcard header streams carry) is sealed with AES-GCM, its
//!   nonce a per-direction frame counter, and the payload travels as it is, authenticated as the
//!   seal's associated data (GHASH alone, about twice AES-GCM's speed, and no copies). Any
//!   frame that fails to open, arrives out of order or repeats one ends the lane.
//!
//! The node dials (so lanes work from behind NAT, like its libp2p connection) to the host part
//! of its configured gateway address at the port the gateway offers. The libp2p connection
//! stays the control plane (registration, the online state) and carries exchanges while no
//! lane is free.

use std::io;
use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, NONCE_LEN};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::{
    decode_header, frame_header, invalid, Frames, LaneKey, Message, ProtocolError, MAX_HEADER_LEN,
    MAX_PAYLOAD_LEN,
};

/// Longest a lane's handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive of a lane: probes after this much silence, …
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// … then every this often, …
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// … and the connection is dead after this many unanswered.
const KEEPALIVE_PROBES: u32 = 3;

const TO_GATEWAY: &str = "dsg 2026-12-04 data lane v1: node to gateway";
const TO_NODE: &str = "dsg 2026-12-04 data lane v1: gateway to node";
const READY: &[u8] = b"dsg lane ready";
const HANDSHAKE_NONCE: usize = 32;
/// Longest peer id in a hello (an ed25519 peer id is 38 bytes).
const MAX_PEER_ID: usize = 64;
const TAG: usize = 16;
/// Frame prefix: sealed header length (u32) and payload length (u64), big-endian.
const PREFIX: usize = 12;

/// Why a lane could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("lane handshake: {0}")]
    Handshake(#[from] ProtocolError),
    #[error("no lane handshake within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    #[error("the hello names no valid peer id")]
    BadHello,
    #[error("the gateway takes no lanes from {0}")]
    NotAdmitted(PeerId),
    #[error("{0} names no host to dial a lane to")]
    NoHost(Multiaddr),
    #[error("no randomness for the lane's nonce")]
    Random,
}

fn io_error(problem: &'static str) -> ProtocolError {
    ProtocolError::Io(io::Error::new(io::ErrorKind::InvalidData, problem))
}

/// One direction of a lane: its key and the counter that numbers its frames.
struct Direction {
    key: LessSafeKey,
    frames: u64,
}

impl Direction {
    fn new(context: &str, key: &LaneKey, node_nonce: &[u8], gateway_nonce: &[u8]) -> Self {
        let mut material = Vec::with_capacity(32 + 2 * HANDSHAKE_NONCE);
        material.extend_from_slice(&key.0);
        material.extend_from_slice(node_nonce);
        material.extend_from_slice(gateway_nonce);
        let derived = blake3::derive_key(context, &material);
        let key =
            UnboundKey::new(&AES_128_GCM, &derived[..16]).expect("16 bytes are an AES-128 key");
        Direction {
            key: LessSafeKey::new(key),
            frames: 0,
        }
    }

    /// The nonce of the next frame: its number, never reused (a lane ends long before 2^64).
    fn next_nonce(&mut self) -> Result<Nonce, ProtocolError> {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[4..].copy_from_slice(&self.frames.to_be_bytes());
        self.frames = self
            .frames
            .checked_add(1)
            .ok_or_else(|| io_error("the lane ran out of frame numbers"))?;
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

/// A data lane, either end.
pub struct Lane {
    socket: TcpStream,
    send: Direction,
    receive: Direction,
    /// The payload of the frame whose header [`Frames::read_header`] returned last.
    payload: Option<Vec<u8>>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("peer", &self.socket.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Lane {
    /// Seals `header` (payload authenticated with it) into the bytes that precede the payload.
    fn seal(&mut self, mut header: Vec<u8>, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let nonce = self.send.next_nonce()?;
        self.send
            .key
            .seal_in_place_append_tag(nonce, Aad::from(payload), &mut header)
            .map_err(|_| io_error("the frame could not be sealed"))?;
        let mut head = Vec::with_capacity(PREFIX + header.len());
        head.extend_from_slice(&(header.len() as u32).to_be_bytes());
        head.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        head.extend_from_slice(&header);
        Ok(head)
    }

    async fn send_sealed(&mut self, header: Vec<u8>, payload: &[u8]) -> Result<(), ProtocolError> {
        let head = self.seal(header, payload)?;
        self.socket.write_all(&head).await?;
        if !payload.is_empty() {
            self.socket.write_all(payload).await?;
        }
        Ok(())
    }

    /// Reads and opens one frame with a payload of at most `max_payload` bytes.
    async fn receive_sealed(
        &mut self,
        max_payload: u64,
    ) -> Result<(Vec<u8>, Vec<u8>), ProtocolError> {
        let mut prefix = [0u8; PREFIX];
        self.socket.read_exact(&mut prefix).await?;
        let [a, b, c, d, payload_len @ ..] = prefix;
        let sealed_len = u32::from_be_bytes([a, b, c, d]) as usize;
        let payload_len = u64::from_be_bytes(payload_len);
        if sealed_len > MAX_HEADER_LEN + TAG {
            return Err(ProtocolError::HeaderTooLarge { len: sealed_len });
        }
        if sealed_len < TAG {
            return Err(io_error("a lane frame is shorter than its tag"));
        }
        if payload_len > max_payload {
            return Err(ProtocolError::PayloadTooLarge { len: payload_len });
        }
        // The rest of a frame that has begun is due within the payload deadline, as on streams.
        let rest = async {
            let mut sealed = vec![0u8; sealed_len];
            self.socket.read_exact(&mut sealed).await?;
            // Read into spare capacity: the bytes are not zeroed first.
            let mut payload = Vec::with_capacity(payload_len as usize);
            (&mut self.socket)
                .take(payload_len)
                .read_to_end(&mut payload)
                .await?;
            Ok::<_, io::Error>((sealed, payload))
        };
        let (mut sealed, payload) = tokio::time::timeout(crate::node::PAYLOAD_TIMEOUT, rest)
            .await
            .map_err(|_| ProtocolError::Io(io::ErrorKind::TimedOut.into()))??;
        if payload.len() as u64 != payload_len {
            return Err(ProtocolError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let nonce = self.receive.next_nonce()?;
        let header = self
            .receive
            .key
            .open_in_place(nonce, Aad::from(&payload[..]), &mut sealed)
            .map_err(|_| io_error("a lane frame failed authentication"))?
            .len();
        sealed.truncate(header);
        Ok((sealed, payload))
    }

    /// Whether the other end has closed (or reset) this idle lane, or sent something it
    /// should not have: between exchanges nothing arrives. Looks without waiting.
    pub fn is_closed(&self) -> bool {
        let mut byte = [0u8; 1];
        !matches!(self.socket.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Both ends prove they hold the key: the node sends a sealed `ready` frame and then
    /// checks the gateway's, the gateway checks first. Neither reads a frame with a payload
    /// before the other end's proof.
    async fn confirm(mut self, node: bool) -> Result<Lane, ProtocolError> {
        if node {
            self.send_sealed(READY.to_vec(), &[]).await?;
        }
        let (theirs, _) = self.receive_sealed(0).await?;
        if theirs != READY {
            return Err(io_error("the lane's ready frame is wrong"));
        }
        if !node {
            self.send_sealed(READY.to_vec(), &[]).await?;
        }
        Ok(self)
    }
}

impl Frames for Lane {
    /// Sends one frame: `message`, then `payload` (exactly `message.payload()` bytes).
    async fn write_frame<M: Message + Sync>(
        &mut self,
        message: &M,
        payload: &[u8],
    ) -> Result<(), ProtocolError> {
        let header = frame_header(message, payload)?;
        self.send_sealed(header, payload).await
    }

    /// Reads one whole frame and returns its header; [`Frames::read_payload`] then hands over
    /// the payload, which was authenticated with it.
    async fn read_header<M: Message + Send>(&mut self) -> Result<M, ProtocolError> {
        let (header, payload) = self.receive_sealed(MAX_PAYLOAD_LEN).await?;
        let message: M = decode_header(&header)?;
        if message.payload() != payload.len() as u64 {
            return Err(invalid("payload", "length differs from the header's"));
        }
        self.payload = Some(payload);
        Ok(message)
    }

    /// The payload of the frame just read (`len` bytes, as its header said).
    async fn read_payload(&mut self, len: u64) -> Result<Vec<u8>, ProtocolError> {
        match self.payload.take() {
            Some(p) if p.len() as u64 == len => Ok(p),
            _ => Err(invalid("payload", "no payload of that length was read")),
        }
    }
}

/// Socket options of both ends. Exchanges end in small writes (a response header) that Nagle
/// would hold back. A lane sits idle between exchanges, for hours on a quiet node: keepalive
/// probes keep a home router's NAT mapping open and turn a peer that vanished into a socket
/// error within half a minute, rather than an exchange that waits for its whole timeout.
fn tune(socket: &TcpStream) {
    use rustix::net::sockopt;
    let set = || -> io::Result<()> {
        socket.set_nodelay(true)?;
        sockopt::set_socket_keepalive(socket, true)?;
        sockopt::set_tcp_keepidle(socket, KEEPALIVE_IDLE)?;
        sockopt::set_tcp_keepintvl(socket, KEEPALIVE_INTERVAL)?;
        sockopt::set_tcp_keepcnt(socket, KEEPALIVE_PROBES)?;
        Ok(())
    };
    if let Err(e) = set() {
        tracing::debug!(error = %e, "could not set a lane's socket options");
    }
}

fn random_nonce() -> Result<[u8; HANDSHAKE_NONCE], LaneError> {
    let mut nonce = [0u8; HANDSHAKE_NONCE];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| LaneError::Random)?;
    Ok(nonce)
}

async fn bounded<T>(
    handshake: impl std::future::Future<Output = Result<T, LaneError>>,
) -> Result<T, LaneError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| LaneError::Timeout)?
}

/// The host part of a gateway's libp2p address (`/ip4`, `/ip6` or `/dns*`), joined with `port`:
/// where that gateway's lanes are.
pub fn lane_host(gateway: &Multiaddr, port: u16) -> Result<String, LaneError> {
    match gateway.iter().next() {
        Some(Protocol::Ip4(ip)) => Ok(std::net::SocketAddr::from((ip, port)).to_string()),
        Some(Protocol::Ip6(ip)) => Ok(std::net::SocketAddr::from((ip, port)).to_string()),
        Some(Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h)) => Ok(format!("{h}:{port}")),
        _ => Err(LaneError::NoHost(gateway.clone())),
    }
}

/// Dials a lane to `addr` (`host:port`) as node `node`, keyed with the `key` its gateway gave.
pub async fn dial(addr: &str, node: PeerId, key: &LaneKey) -> Result<Lane, LaneError> {
    bounded(async {
        let mut socket = TcpStream::connect(addr)
            .await
            .map_err(|source| LaneError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        tune(&socket);
        let node_nonce = random_nonce()?;
        let id = node.to_bytes();
        let mut hello = Vec::with_capacity(1 + id.len() + HANDSHAKE_NONCE);
        hello.push(id.len() as u8);
        hello.extend_from_slice(&id);
        hello.extend_from_slice(&node_nonce);
        socket.write_all(&hello).await.map_err(ProtocolError::Io)?;
        let mut gateway_nonce = [0u8; HANDSHAKE_NONCE];
        socket
            .read_exact(&mut gateway_nonce)
            .await
            .map_err(ProtocolError::Io)?;
        let lane = Lane {
            socket,
            send: Direction::new(TO_GATEWAY, key, &node_nonce, &gateway_nonce),
            receive: Direction::new(TO_NODE, key, &node_nonce, &gateway_nonce),
            payload: None,
        };
        Ok(lane.confirm(true).await?)
    })
    .await
}

/// Runs the handshake of a socket the gateway accepted: `key_of` gives the key of a node the
/// gateway takes lanes from (and `None` for any other peer). Returns the node and its lane.
pub async fn accept(
    mut socket: TcpStream,
    key_of: impl Fn(&PeerId) -> Option<LaneKey>,
) -> Result<(PeerId, Lane), LaneError> {
    bounded(async {
        tune(&socket);
        let mut len = [0u8; 1];
        socket
            .read_exact(&mut len)
            .await
            .map_err(ProtocolError::Io)?;
        let len = usize::from(len[0]);
        if len == 0 || len > MAX_PEER_ID {
            return Err(LaneError::BadHello);
        }
        let mut rest = vec![0u8; len + HANDSHAKE_NONCE];
        socket
            .read_exact(&mut rest)
            .await
            .map_err(ProtocolError::Io)?;
        let (id, node_nonce) = rest.split_at(len);
        let peer = PeerId::from_bytes(id).map_err(|_| LaneError::BadHello)?;
        let key = key_of(&peer).ok_or(LaneError::NotAdmitted(peer))?;
        let gateway_nonce = random_nonce()?;
        socket
            .write_all(&gateway_nonce)
            .await
            .map_err(ProtocolError::Io)?;
        let lane = Lane {
            socket,
            send: Direction::new(TO_NODE, &key, node_nonce, &gateway_nonce),
            receive: Direction::new(TO_GATEWAY, &key, node_nonce, &gateway_nonce),
            payload: None,
        };
        Ok((peer, lane.confirm(false).await?))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode_header, Request, Response};
    use chunker::PieceId;
    use libp2p::identity::Keypair;

    #[test]
    fn a_lane_goes_to_the_gateways_host() {
        let at = |a: &str| lane_host(&a.parse().unwrap(), 9011);
        let gw = "/ip4/10.0.0.1/tcp/9010/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        assert_eq!(at(gw).unwrap(), "10.0.0.1:9011");
        assert_eq!(at("/ip6/::1/udp/9010/quic-v1").unwrap(), "[::1]:9011");
        assert_eq!(at("/dns4/gw.example/tcp/9010").unwrap(), "gw.example:9011");
        assert!(at("/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN").is_err());
    }

    /// A gateway end on an ephemeral port that takes lanes keyed with `key` from anyone; each
    /// accepted lane (or handshake error) is sent back.
    async fn gateway(
        key: LaneKey,
    ) -> (
        String,
        tokio::sync::mpsc::Receiver<Result<(PeerId, Lane), LaneError>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = tx.send(accept(socket, |_| Some(key)).await).await;
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn frames_cross_a_lane_both_ways_with_their_payloads() {
        let key = LaneKey([3; 32]);
        let (addr, mut accepted) = gateway(key).await;
        let node = Keypair::generate_ed25519().public().to_peer_id();
        let mut ours = dial(&addr, node, &key).await.unwrap();
        let (peer, mut theirs) = accepted.recv().await.unwrap().unwrap();
        assert_eq!(peer, node);
        let data: Vec<u8> = (0..300_001u32).map(|i| (i % 251) as u8).collect();
        let put = Request::PutPiece {
            id: PieceId::of(&data),
            len: data.len() as u64,
        };
        for _ in 0..3 {
            theirs.write_frame(&put, &data).await.unwrap();
            let got: Request = ours.read_header().await.unwrap();
            assert_eq!(got, put);
            assert_eq!(ours.read_payload(data.len() as u64).await.unwrap(), data);
            let stored = Response::Stored { already: false };
            ours.write_frame(&stored, &[]).await.unwrap();
            assert_eq!(theirs.read_header::<Response>().await.unwrap(), stored);
        }
        assert!(!theirs.is_closed());
        drop(ours);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(theirs.is_closed());
    }

    #[tokio::test]
    async fn a_node_without_the_key_gets_no_lane_and_a_gateway_without_it_none_either() {
        let (addr, mut accepted) = gateway(LaneKey([3; 32])).await;
        let node = Keypair::generate_ed25519().public().to_peer_id();
        assert!(dial(&addr, node, &LaneKey([4; 32])).await.is_err());
        assert!(accepted.recv().await.unwrap().is_err());
    }

    /// A lane pair over loopback: (node end, gateway end).
    async fn pair(key: LaneKey) -> (Lane, Lane) {
        let (addr, mut accepted) = gateway(key).await;
        let node = Keypair::generate_ed25519().public().to_peer_id();
        let ours = dial(&addr, node, &key).await.unwrap();
        let (_, theirs) = accepted.recv().await.unwrap().unwrap();
        (ours, theirs)
    }

    #[tokio::test]
    async fn a_tampered_payload_ends_the_lane() {
        let (mut node, mut gw) = pair(LaneKey([5; 32])).await;
        let payload = vec![1u8; 1000];
        let put = Request::PutPiece {
            id: PieceId::of(&payload),
            len: 1000,
        };
        let head = gw.seal(encode_header(&put), &payload).unwrap();
        let mut tampered = payload.clone();
        tampered[500] ^= 1;
        gw.socket.write_all(&head).await.unwrap();
        gw.socket.write_all(&tampered).await.unwrap();
        assert!(node.read_header::<Request>().await.is_err());
    }

    #[tokio::test]
    async fn a_replayed_frame_ends_the_lane() {
        let (mut node, mut gw) = pair(LaneKey([6; 32])).await;
        let head = gw.seal(encode_header(&Request::Stats), &[]).unwrap();
        gw.socket.write_all(&head).await.unwrap();
        assert_eq!(node.read_header::<Request>().await.unwrap(), Request::Stats);
        gw.socket.write_all(&head).await.unwrap();
        assert!(node.read_header::<Request>().await.is_err());
    }

    /// Bytes from a simple generator: garbage of every length up to `max`.
    fn garbage(seed: u64, max: usize) -> Vec<u8> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let len = (next() as usize) % (max + 1);
        (0..len).map(|_| next() as u8).collect()
    }

    #[tokio::test]
    async fn garbage_hellos_and_frames_end_the_lane_without_a_panic() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for seed in 0..64 {
            let mut hello = garbage(seed, 120);
            if seed % 2 == 0 && !hello.is_empty() {
                hello[0] = (hello.len() as u8).saturating_sub(1).min(64); // a plausible length
            }
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (socket, _) = listener.accept().await.unwrap();
            client.write_all(&hello).await.unwrap();
            drop(client.shutdown().await);
            assert!(accept(socket, |_| Some(LaneKey([1; 32]))).await.is_err());
        }
        for seed in 100..132 {
            let (mut node, mut gw) = pair(LaneKey([8; 32])).await;
            let mut frame = garbage(seed, 4096);
            if seed % 2 == 0 && frame.len() >= PREFIX + TAG {
                // Lengths that fit what follows: the seal is what refuses it.
                let sealed = (frame.len() - PREFIX) as u32;
                frame[..4].copy_from_slice(&sealed.to_be_bytes());
                frame[4..PREFIX].copy_from_slice(&0u64.to_be_bytes());
            }
            gw.socket.write_all(&frame).await.unwrap();
            gw.socket.shutdown().await.unwrap();
            assert!(node.read_header::<Request>().await.is_err());
        }
    }

    #[tokio::test]
    async fn a_frame_announcing_too_much_is_refused_before_it_is_read() {
        let (mut node, mut gw) = pair(LaneKey([7; 32])).await;
        let mut prefix = Vec::new();
        prefix.extend_from_slice(&64u32.to_be_bytes());
        prefix.extend_from_slice(&(MAX_PAYLOAD_LEN + 1).to_be_bytes());
        gw.socket.write_all(&prefix).await.unwrap();
        assert!(matches!(
            node.read_header::<Request>().await,
            Err(ProtocolError::PayloadTooLarge { .. })
        ));
    }
}
