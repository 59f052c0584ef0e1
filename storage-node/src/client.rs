//! The gateway side of the protocol: send orders to nodes and accept their registrations.
//!
//! [`NodeClient`] keeps a small pool of long-lived streams per node and runs one exchange at a
//! time on each. Streams are reused rather than opened per request: a fresh Yamux stream starts
//! with a small window, and `libp2p_stream` drops inbound streams that arrive faster than the
//! node accepts them, so a stream per request would lose requests under concurrency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::Semaphore;

use crate::net::HostHandle;
use crate::protocol::{
    read_header, read_payload, write_frame, ErrorKind, ProtocolError, Registration,
    RegistrationReply, Request, Response, NODE_PROTOCOL, REGISTER_PROTOCOL,
};

/// Idle streams kept per node.
pub const MAX_IDLE_STREAMS: usize = 16;
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

/// Sends requests to nodes over pooled streams.
#[derive(Clone)]
pub struct NodeClient {
    host: HostHandle,
    idle: Arc<Mutex<HashMap<PeerId, Vec<Stream>>>>,
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

    fn take_idle(&self, peer: &PeerId) -> Option<Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get_mut(peer).and_then(Vec::pop)
    }

    fn put_idle(&self, peer: PeerId, stream: Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let streams = idle.entry(peer).or_default();
        if streams.len() < MAX_IDLE_STREAMS {
            streams.push(stream);
        }
    }

    /// Idle streams pooled for `peer`.
    pub fn idle_streams(&self, peer: &PeerId) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get(peer).map_or(0, Vec::len)
    }

    fn forget_idle(&self, peer: &PeerId) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.remove(peer);
    }

    async fn open(&self, peer: PeerId) -> Result<Stream, ClientError> {
        self.host
            .control()
            .open_stream(peer, StreamProtocol::new(NODE_PROTOCOL))
            .await
            .map_err(|e| ClientError::Open {
                peer,
                reason: e.to_string(),
            })
    }

    /// Sends `request` (with `payload`, exactly `request.payload_len()` bytes) and returns the
    /// node's response and its payload. A node's `Error` response is [`ClientError::Node`].
    ///
    /// A stream that dies before the answer (a stale pooled stream, or a new one the node
    /// dropped while busy accepting others) is replaced by a fresh one, up to
    /// [`ATTEMPTS`] tries in all; every request of the protocol is idempotent, so a retry is safe.
    /// When a pooled stream dies, the node's other idle streams are dropped with it and the next
    /// try follows at once; after a fresh stream dies, or one could not be opened, the next try
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
            let (stream, pooled) = match self.take_idle(&peer) {
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
            match self.exchange(peer, stream, request, payload, timeout).await {
                Err(
                    e @ ClientError::Protocol {
                        source: ProtocolError::Io(_),
                        ..
                    },
                ) => {
                    // A pooled stream that died usually died with its connection (the node
                    // restarted, or the link dropped), and so did every other idle stream to
                    // that node: drop them all, so the next try opens a fresh stream instead of
                    // spending the remaining tries on dead ones.
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
        mut stream: Stream,
        request: &Request,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(Response, Vec<u8>), ClientError> {
        let protocol = |source| ClientError::Protocol { peer, source };
        let round_trip = async {
            let written = write_frame(&mut stream, request, payload).await;
            // A node may answer (e.g. `Unauthorized`) and close before taking the whole payload:
            // its answer is still worth reading when the write failed.
            let response: Response = match read_header(&mut stream).await {
                Ok(r) => r,
                Err(e) => return Err(protocol(written.err().unwrap_or(e))),
            };
            if written.is_err() && !matches!(response, Response::Error { .. }) {
                return Err(protocol(ProtocolError::Io(std::io::Error::other(
                    "the node answered a request it did not fully receive",
                ))));
            }
            let data = read_payload(&mut stream, response.payload_len())
                .await
                .map_err(protocol)?;
            Ok::<_, ClientError>((response, data))
        };
        let (response, data) = tokio::time::timeout(timeout, round_trip)
            .await
            .map_err(|_| ClientError::Timeout { peer, timeout })??;
        match response {
            Response::Error { kind, message } => Err(ClientError::Node {
                peer,
                kind,
                message,
            }),
            ok => {
                self.put_idle(peer, stream);
                Ok((ok, data))
            }
        }
    }
}

/// Decides on a node's registration.
pub type RegistrationHandler = Arc<dyn Fn(PeerId, Registration) -> RegistrationReply + Send + Sync>;

/// Accepts registration streams from nodes and answers each registration with `handler`, until
/// the host stops. At most `max_streams` nodes are served at once.
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
    while let Some((peer, mut stream)) = incoming.next().await {
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many registration streams; refusing one");
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            loop {
                let registration: Registration = match read_header(&mut stream).await {
                    Ok(r) => r,
                    Err(ProtocolError::Io(_)) => break,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "bad registration");
                        let reply = RegistrationReply::Refused {
                            reason: e.to_string(),
                        };
                        let _ = write_frame(&mut stream, &reply, &[]).await;
                        break;
                    }
                };
                let reply = handler(peer, registration);
                if write_frame(&mut stream, &reply, &[]).await.is_err() {
                    break;
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
