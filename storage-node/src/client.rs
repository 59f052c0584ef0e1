//! The gateway side of the protocol: send orders to nodes and accept their registrations.
//!
//! [`NodeClient`] keeps a small pool of connections per node and runs one exchange at a time on
//! each: the data lanes the node dialed ([`crate::net::lane`], taken first: no muxer between the
//! exchange and the socket), and long-lived libp2p streams. Streams are reused rather than
//! opened per request: a fresh Yamux stream starts with a small window, and `libp2p_stream`
//! drops inbound streams that arrive faster than the node accepts them, so a stream per request
//! would lose requests under concurrency.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use futures::{AsyncRead, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::Semaphore;

use crate::net::lane::{self, Lane};
use crate::net::HostHandle;
use crate::protocol::{
    read_header, write_frame, ErrorKind, Frames, LaneKey, Message, ProtocolError, Registration,
    RegistrationReply, Request, Response, NODE_PROTOCOL, REGISTER_PROTOCOL,
};

/// Idle streams kept per node.
pub const MAX_IDLE_STREAMS: usize = 16;
/// Idle lanes kept per node; a node that dials more has the extra ones closed.
pub const MAX_IDLE_LANES: usize = crate::protocol::MAX_LANES as usize;
/// Lane handshakes under way at once; more sockets are closed unanswered.
pub const MAX_LANE_HANDSHAKES: usize = 64;
/// Tries per call (see [`NodeClient::call`]).
pub const ATTEMPTS: u32 = 4;

/// Why a call to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not open a stream to node {peer}: {reason}")]
    Open { peer: PeerId, reason: String },
    #[error("node {peer} broke the protocol: {source}")]
    Protocol {
        peer: PeerId,
        #[source]
        source: ProtocolError,
    },
    #[error("node {peer} did not answer within {timeout:?}")]
    Timeout { peer: PeerId, timeout: Duration },
    #[error("node {peer} answered {kind:?}: {message}")]
    Node {
        peer: PeerId,
        kind: ErrorKind,
        message: String,
    },
}

/// The pause before the try after `attempt` (counted from 0): 10–30 ms, chosen at random so
/// that calls that failed together do not try again together, doubled with each try.
fn retry_pause(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // Each `RandomState` is freshly keyed: enough randomness for jitter, without a `rand` crate.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis((10 + random % 21) << attempt.min(4))
}

/// A connection to a node that one exchange runs on.
enum Conn {
    Lane(Box<Lane>),
    Stream(Stream),
}

impl Conn {
    /// Whether the node closed (or reset) this idle connection. Between exchanges a node sends
    /// nothing, so anything readable (end of stream, an error, or stray bytes) means it is
    /// unusable. Looks without waiting.
    fn is_closed(&mut self) -> bool {
        match self {
            Conn::Lane(l) => l.is_closed(),
            Conn::Stream(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut byte = [0u8; 1];
                Pin::new(s).poll_read(&mut cx, &mut byte).is_ready()
            }
        }
    }
}

impl Frames for Conn {
    async fn write_frame<M: Message + Sync>(
        &mut self,
        message: &M,
        payload: &[u8],
    ) -> Result<(), ProtocolError> {
        match self {
            Conn::Lane(l) => l.write_frame(message, payload).await,
            Conn::Stream(s) => s.write_frame(message, payload).await,
        }
    }

    async fn read_header<M: Message + Send>(&mut self) -> Result<M, ProtocolError> {
        match self {
            Conn::Lane(l) => l.read_header().await,
            Conn::Stream(s) => s.read_header().await,
        }
    }

    async fn read_payload(&mut self, len: u64) -> Result<Vec<u8>, ProtocolError> {
        match self {
            Conn::Lane(l) => l.read_payload(len).await,
            Conn::Stream(s) => s.read_payload(len).await,
        }
    }
}

/// A node's idle connections.
#[derive(Default)]
struct Idle {
    lanes: Vec<Lane>,
    streams: Vec<Stream>,
}

/// The lane key of a peer that may keep lanes (the gateway: a registered node), `None` for any
/// other peer.
pub type LaneAdmission = Arc<dyn Fn(&PeerId) -> Option<LaneKey> + Send + Sync>;

/// Sends requests to nodes over pooled lanes and streams.
#[derive(Clone)]
pub struct NodeClient {
    host: HostHandle,
    idle: Arc<Mutex<HashMap<PeerId, Idle>>>,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient").finish_non_exhaustive()
    }
}

impl NodeClient {
    /// A client using `host`'s connections.
    pub fn new(host: HostHandle) -> Self {
        NodeClient {
            host,
            idle: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// An idle connection to `peer` that is still open, a lane if there is one. Connections
    /// found closed (the node restarted, or closed them) are dropped on the way.
    fn take_idle(&self, peer: &PeerId) -> Option<Conn> {
        loop {
            let mut conn = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let idle = idle.get_mut(peer)?;
                idle.lanes
                    .pop()
                    .map(|l| Conn::Lane(Box::new(l)))
                    .or_else(|| idle.streams.pop().map(Conn::Stream))?
            };
            if !conn.is_closed() {
                return Some(conn);
            }
        }
    }

    /// Pools `conn` for reuse. When `peer` already has as many idle ones of its kind as kept,
    /// the oldest goes: a node that dials new lanes has usually lost the old ones.
    fn put_idle(&self, peer: PeerId, conn: Conn) {
        fn push<T>(pool: &mut Vec<T>, max: usize, item: T) {
            if pool.len() >= max {
                pool.remove(0);
            }
            pool.push(item);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let idle = idle.entry(peer).or_default();
        match conn {
            Conn::Lane(l) => push(&mut idle.lanes, MAX_IDLE_LANES, *l),
            Conn::Stream(s) => push(&mut idle.streams, MAX_IDLE_STREAMS, s),
        }
    }

    /// Pools a lane `peer` just dialed. A node dials lanes when it (re)connects, so the
    /// pool's lanes it has closed go first.
    fn add_lane(&self, peer: PeerId, lane: Lane) {
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(idle) = idle.get_mut(&peer) {
                idle.lanes.retain(|l| !l.is_closed());
            }
        }
        self.put_idle(peer, Conn::Lane(Box::new(lane)));
    }

    /// Idle streams pooled for `peer`.
    pub fn idle_streams(&self, peer: &PeerId) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get(peer).map_or(0, |i| i.streams.len())
    }

    /// Idle lanes pooled for `peer`.
    pub fn idle_lanes(&self, peer: &PeerId) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get(peer).map_or(0, |i| i.lanes.len())
    }

    /// Accepts the data lanes nodes dial to `listener` and pools each whose node `admit`
    /// gives a key (and that proves it holds that key); runs until dropped. At most
    /// [`MAX_LANE_HANDSHAKES`] handshakes run at once, each bounded by
    /// [`lane::HANDSHAKE_TIMEOUT`].
    pub async fn serve_lanes(&self, listener: tokio::net::TcpListener, admit: LaneAdmission) {
        let handshakes = Arc::new(Semaphore::new(MAX_LANE_HANDSHAKES));
        loop {
            let (socket, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: give the system a moment.
                    tracing::warn!(error = %e, "could not accept a lane");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                tracing::debug!(%from, "too many lane handshakes; closing one");
                continue;
            };
            let (client, admit) = (self.clone(), admit.clone());
            tokio::spawn(async move {
                match lane::accept(socket, |peer| admit(peer)).await {
                    Ok((peer, lane)) => client.add_lane(peer, lane),
                    Err(e @ lane::LaneError::NotAdmitted(_)) => {
                        tracing::warn!(%from, error = %e, "refused a lane");
                    }
                    Err(e) => tracing::debug!(%from, error = %e, "lane handshake failed"),
                }
                drop(permit);
            });
        }
    }

    fn forget_idle(&self, peer: &PeerId) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.remove(peer);
    }

    async fn open(&self, peer: PeerId) -> Result<Conn, ClientError> {
        self.host
            .control()
            .open_stream(peer, StreamProtocol::new(NODE_PROTOCOL))
            .await
            .map(Conn::Stream)
            .map_err(|e| ClientError::Open {
                peer,
                reason: e.to_string(),
            })
    }

    /// Sends `request` (with `payload`, exactly `request.payload_len()` bytes) and returns the
    /// node's response and its payload. A node's `Error` response is [`ClientError::Node`].
    ///
    /// The exchange runs on an idle lane, else an idle stream, else a new stream. A connection
    /// that dies before the answer (a stale pooled one, or a new stream the node dropped while
    /// busy accepting others) is replaced by a fresh stream, up to [`ATTEMPTS`] tries in all;
    /// every request of the protocol is idempotent, so a retry is safe. When a pooled
    /// connection dies, the node's other idle ones are dropped with it and the next try follows
    /// at once; after a fresh stream dies, or one could not be opened, the next try
    /// waits a short random pause. Opening a stream that takes the whole `timeout` ends the call.
    pub async fn call(
        &self,
        peer: PeerId,
        request: &Request,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(Response, Vec<u8>), ClientError> {
        let mut last = None;
        let mut pause = None;
        for attempt in 0..ATTEMPTS {
            if let Some(wait) = pause.take() {
                tokio::time::sleep(wait).await;
            }
            let (conn, pooled) = match self.take_idle(&peer) {
                Some(s) => (s, true),
                // Opening dials a peer that is not connected, which can take as long as the
                // network lets it: bounded like the exchange. A node that let a whole timeout
                // pass (hung, or its link is) is not tried again; a quick failure is.
                None => match tokio::time::timeout(timeout, self.open(peer)).await {
                    Ok(Ok(s)) => (s, false),
                    Ok(Err(e)) => {
                        last = Some(e);
                        pause = Some(retry_pause(attempt));
                        continue;
                    }
                    Err(_) => {
                        return Err(ClientError::Open {
                            peer,
                            reason: format!("no stream within {timeout:?}"),
                        })
                    }
                },
            };
            match self.exchange(peer, conn, request, payload, timeout).await {
                Err(
                    e @ ClientError::Protocol {
                        source: ProtocolError::Io(_),
                        ..
                    },
                ) => {
                    // A pooled connection that died usually died with the node (it restarted,
                    // or the link dropped), and so did every other idle one to that node: drop
                    // them all, so the next try opens a fresh stream instead of spending the
                    // remaining tries on dead ones (the node dials new lanes).
                    //
                    // A fresh stream that died was most likely dropped by the node's accept
                    // loop: `libp2p_stream` hands a protocol's inbound streams over a single
                    // slot and drops each one that finds it taken, so a burst of opens (a cold
                    // pool, or one just emptied) loses some. Opening again at once, together
                    // with the rest of the burst, loses again; a pause of random length spreads
                    // the retries, and by then other calls have put their streams back to reuse.
                    if pooled {
                        self.forget_idle(&peer);
                    } else {
                        pause = Some(retry_pause(attempt));
                    }
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or(ClientError::Open {
            peer,
            reason: "no attempt made".into(),
        }))
    }

    async fn exchange(
        &self,
        peer: PeerId,
        mut stream: Conn,
        request: &Request,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(Response, Vec<u8>), ClientError> {
        let protocol = |source| ClientError::Protocol { peer, source };
        let round_trip = async {
            let written = stream.write_frame(request, payload).await;
            // A node may answer (e.g. `Unauthorized`) and close before taking the whole payload:
            // its answer is still worth reading when the write failed.
            let response: Response = match stream.read_header().await {
                Ok(r) => r,
                Err(e) => return Err(protocol(written.err().unwrap_or(e))),
            };
            if written.is_err() && !matches!(response, Response::Error { .. }) {
                return Err(protocol(ProtocolError::Io(std::io::Error::other(
                    "the node answered a request it did not fully receive",
                ))));
            }
            let data = stream
                .read_payload(response.payload_len())
                .await
                .map_err(protocol)?;
            Ok::<_, ClientError>((response, data))
        };
        let (response, data) = tokio::time::timeout(timeout, round_trip)
            .await
            .map_err(|_| ClientError::Timeout { peer, timeout })??;
        match response {
            Response::Error { kind, message } => {
                // The node goes on serving a stream after an answer like "not found"; after
                // refusing the request itself, it closes the stream.
                if !matches!(
                    kind,
                    ErrorKind::Unauthorized | ErrorKind::BadRequest | ErrorKind::UnsupportedVersion
                ) {
                    self.put_idle(peer, stream);
                }
                Err(ClientError::Node {
                    peer,
                    kind,
                    message,
                })
            }
            ok => {
                self.put_idle(peer, stream);
                Ok((ok, data))
            }
        }
    }
}

/// Decides on a node's registration.
pub type RegistrationHandler = Arc<dyn Fn(PeerId, Registration) -> RegistrationReply + Send + Sync>;

/// How soon a registration stream must bring its first registration: a peer that opens one and
/// says nothing does not keep the slot.
pub const FIRST_REGISTRATION_WITHIN: Duration = Duration::from_secs(10);
/// How long a registration stream may go without one (nodes re-register every heartbeat, a few
/// seconds).
pub const REGISTRATION_IDLE: Duration = Duration::from_secs(600);
/// Registration streams one peer may hold at once (a node needs one; a reconnect may briefly
/// overlap the old one).
pub const MAX_REGISTRATION_STREAMS_PER_PEER: usize = 4;

/// Accepts registration streams from nodes and answers each registration with `handler`, until
/// the host stops. At most `max_streams` streams are served at once, at most
/// [`MAX_REGISTRATION_STREAMS_PER_PEER`] of one peer, and a stream that is silent for too long
/// ([`FIRST_REGISTRATION_WITHIN`], then [`REGISTRATION_IDLE`]) is closed.
pub async fn serve_registrations(
    host: HostHandle,
    handler: RegistrationHandler,
    max_streams: usize,
) -> anyhow::Result<()> {
    let mut incoming = host
        .control()
        .accept(StreamProtocol::new(REGISTER_PROTOCOL))
        .map_err(|_| anyhow::anyhow!("registrations are already being served"))?;
    let limit = Arc::new(Semaphore::new(max_streams));
    let per_peer: Arc<Mutex<HashMap<PeerId, usize>>> = Arc::default();
    while let Some((peer, mut stream)) = incoming.next().await {
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many registration streams; refusing one");
            continue;
        };
        {
            let mut held = per_peer.lock().unwrap_or_else(|p| p.into_inner());
            let n = held.entry(peer).or_default();
            if *n >= MAX_REGISTRATION_STREAMS_PER_PEER {
                tracing::debug!(%peer, "a peer's registration streams are at their limit; refusing one");
                continue;
            }
            *n += 1;
        }
        let handler = handler.clone();
        let per_peer = per_peer.clone();
        tokio::spawn(async move {
            let mut within = FIRST_REGISTRATION_WITHIN;
            loop {
                let registration: Registration =
                    match tokio::time::timeout(within, read_header(&mut stream)).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(ProtocolError::Io(_))) | Err(_) => break,
                        Ok(Err(e)) => {
                            tracing::warn!(%peer, error = %e, "bad registration");
                            let reply = RegistrationReply::Refused {
                                reason: e.to_string(),
                            };
                            let _ = write_frame(&mut stream, &reply, &[]).await;
                            break;
                        }
                    };
                within = REGISTRATION_IDLE;
                let reply = handler(peer, registration);
                if write_frame(&mut stream, &reply, &[]).await.is_err() {
                    break;
                }
            }
            let mut held = per_peer.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = held.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&peer);
                }
            }
            drop(permit);
        });
    }
    Ok(())
}

/// Checks a node's signature over a proof transcript, using only the node's peer id (an ed25519
/// peer id embeds its public key). `false` for any other kind of id or a bad signature.
pub fn verify_proof_signature(
    node: &PeerId,
    challenge: &chunker::Challenge,
    proof: &chunker::Proof,
    signature: &[u8],
) -> bool {
    let Some(key) = crate::ledger::public_key(node) else {
        return false;
    };
    key.verify(
        &chunker::proof::transcript_hash(challenge, proof),
        signature,
    )
}
