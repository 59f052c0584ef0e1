//! The node side of the protocol: serve authorized gateways from the piece store, and keep
//! registered with every configured gateway.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chunker::PieceId;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::GatewayAddr;
use crate::ledger::{NodeLedger, ReceiptError};
use crate::net::{lane, HostHandle};
use crate::protocol::{
    read_header, write_frame, ErrorKind, Frames, LaneOffer, NodeStats, ProtocolError, Registration,
    RegistrationReply, Request, Response, MAX_LANES, MAX_SCRUB_REPORT, NODE_PROTOCOL,
    REGISTER_PROTOCOL,
};
use crate::store::{PieceStore, PutOutcome, StoreError};

/// Most streams and lanes of configured gateways served at once; more are refused (the gateway
/// retries).
pub const MAX_STREAMS: usize = 256;
/// Streams of other peers held at once, just long enough to tell them `Unauthorized`: they can
/// never take a gateway's slot.
pub const MAX_STRANGER_STREAMS: usize = 8;
/// How long another peer's stream may take to send its first request before it is dropped.
pub const STRANGER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a peer may take to deliver a payload it announced.
pub const PAYLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Counters the node keeps while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub refused_unauthorized: AtomicU64,
    pub audits_answered: AtomicU64,
    pub audits_failed: AtomicU64,
    /// Pieces re-hashed by the scrub since start.
    pub scrubbed: AtomicU64,
    /// Corrupt pieces the scrub found since start.
    pub scrub_corrupt: AtomicU64,
    /// When the last full scrub pass ended (ms since the epoch; 0: none since start).
    pub last_scrub_finished_ms: AtomicU64,
    /// Piece bytes received in puts and sent in gets.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Data lanes to gateways that are up now.
    pub lanes_up: AtomicU64,
    /// Requests by (kind, result); a handful of keys.
    by_kind: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Counters {
    fn record(&self, kind: &'static str, result: &'static str) {
        let mut map = self.by_kind.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((kind, result)).or_default() += 1;
    }

    /// Requests served since start by (kind, result), in order.
    pub fn requests_by_kind(&self) -> Vec<((&'static str, &'static str), u64)> {
        let map = self.by_kind.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// Corrupt pieces kept for the gateway until it acknowledges them (more are found again by the
/// next scrub pass).
const MAX_ROT_KEPT: usize = 4096;

/// Serves the protocol from a store.
pub struct NodeService {
    store: Arc<dyn PieceStore>,
    keypair: Keypair,
    gateways: HashSet<PeerId>,
    streams: Arc<Semaphore>,
    strangers: Arc<Semaphore>,
    /// Free bytes on the disk holding the store (`None`: report capacity − used).
    disk_free: Box<dyn Fn() -> Option<u64> + Send + Sync>,
    pub counters: Counters,
    /// What this node did for each gateway (see [`crate::ledger`]).
    pub ledger: Arc<NodeLedger>,
    /// Pieces the scrub found corrupt, not yet acknowledged by the gateway.
    rot: Mutex<BTreeSet<PieceId>>,
}

impl std::fmt::Debug for NodeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeService")
            .field("gateways", &self.gateways)
            .finish()
    }
}

/// A store failure as the node answers it (logged when it is the node's own fault).
fn store_error(e: &StoreError) -> Response {
    let kind = error_kind(e);
    if kind == ErrorKind::Internal {
        tracing::error!(error = %e, "store failure");
    }
    Response::error(kind, e.to_string())
}

/// Runs blocking work off the async threads; a task that panicked is an `Internal` answer.
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Response> + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "store task failed");
        Err(Response::error(ErrorKind::Internal, "store task failed"))
    })
}

fn error_kind(e: &StoreError) -> ErrorKind {
    match e {
        StoreError::NotFound { .. } => ErrorKind::NotFound,
        StoreError::Corrupt { .. } => ErrorKind::Corrupt,
        StoreError::CapacityFull { .. } | StoreError::DiskFull => ErrorKind::CapacityFull,
        StoreError::IdMismatch { .. }
        | StoreError::PieceLength { .. }
        | StoreError::Range { .. }
        | StoreError::Challenge { .. } => ErrorKind::BadRequest,
        StoreError::Io { .. }
        | StoreError::Index(_)
        | StoreError::IndexClosed
        | StoreError::BadRecord { .. }
        | StoreError::MissingColumnFamily => ErrorKind::Internal,
    }
}

impl NodeService {
    /// A service answering only `gateways`, signing proofs and receipts with `keypair`, keeping
    /// its usage in `ledger`.
    pub fn new(
        store: Arc<dyn PieceStore>,
        keypair: Keypair,
        gateways: impl IntoIterator<Item = PeerId>,
        disk_free: Box<dyn Fn() -> Option<u64> + Send + Sync>,
        ledger: NodeLedger,
    ) -> Self {
        NodeService {
            store,
            keypair,
            gateways: gateways.into_iter().collect(),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            strangers: Arc::new(Semaphore::new(MAX_STRANGER_STREAMS)),
            disk_free,
            counters: Counters::default(),
            ledger: Arc::new(ledger),
            rot: Mutex::new(BTreeSet::new()),
        }
    }

    /// Accrues the bytes held now to every gateway's ledger (called on a schedule and before
    /// each receipt).
    pub fn accrue_storage(&self) {
        let gateways: Vec<PeerId> = self.gateways.iter().copied().collect();
        let held = self.store.stats().used_bytes;
        self.ledger.accrue(&gateways, held, crate::store::now_ms());
    }

    /// The store this service answers from.
    pub fn store(&self) -> &Arc<dyn PieceStore> {
        &self.store
    }

    /// Notes a piece the scrub found corrupt, for the gateway's next scrub report.
    pub fn report_rot(&self, id: PieceId) {
        let mut rot = self.rot.lock().unwrap_or_else(|p| p.into_inner());
        if rot.len() < MAX_ROT_KEPT {
            rot.insert(id);
        }
    }

    /// Current usage, as reported in stats and registrations.
    pub fn stats(&self) -> NodeStats {
        let s = self.store.stats();
        let headroom = s.capacity_bytes.saturating_sub(s.used_bytes);
        NodeStats {
            pieces: s.pieces,
            used_bytes: s.used_bytes,
            capacity_bytes: s.capacity_bytes,
            disk_free_bytes: (self.disk_free)().map_or(headroom, |free| free.min(headroom)),
        }
    }

    /// Runs one store call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn PieceStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Response> {
        let store = self.store.clone();
        off_thread(move || f(store.as_ref()).map_err(|e| store_error(&e))).await
    }

    /// Runs one ledger call (it writes to the store) off the async threads.
    async fn ledger_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&NodeLedger) -> Result<T, ReceiptError> + Send + 'static,
    ) -> Result<T, Response> {
        let ledger = self.ledger.clone();
        off_thread(move || {
            f(&ledger).map_err(|e| match e {
                ReceiptError::Store(e) => store_error(&e),
                ReceiptError::Ledger(e) => Response::error(ErrorKind::BadRequest, e.to_string()),
            })
        })
        .await
    }

    /// Answers one request of `gateway` (already authorized). Returns the response and its
    /// payload.
    pub async fn handle(
        &self,
        gateway: PeerId,
        request: Request,
        payload: Vec<u8>,
    ) -> (Response, Vec<u8>) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let kind = request.kind();
        self.counters
            .bytes_in
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let result = match request {
            Request::PutPiece { id, .. } => {
                let len = payload.len() as u64;
                self.blocking(move |s| s.put(id, &payload))
                    .await
                    .map(|outcome| {
                        let already = outcome == PutOutcome::AlreadyStored;
                        if !already {
                            self.ledger.traffic(gateway, 0, len);
                        }
                        (Response::Stored { already }, Vec::new())
                    })
            }
            Request::GetPiece { id, range } => self
                .blocking(move |s| s.get(&id, range.map(|r| r.range())))
                .await
                .map(|bytes| {
                    self.ledger.traffic(gateway, bytes.len() as u64, 0);
                    (
                        Response::Piece {
                            len: bytes.len() as u64,
                        },
                        bytes,
                    )
                }),
            Request::DeletePieces { ids } => self
                .blocking(move |s| {
                    let mut deleted = 0;
                    for id in &ids {
                        if s.delete(id)? {
                            deleted += 1;
                        }
                    }
                    Ok((deleted, ids.len() as u32 - deleted))
                })
                .await
                .map(|(deleted, absent)| (Response::Deleted { deleted, absent }, Vec::new())),
            Request::Challenge { challenge } => {
                let c = challenge.clone();
                match self.blocking(move |s| s.prove(&c)).await {
                    Ok(proof) => {
                        let digest = chunker::proof::transcript_hash(&challenge, &proof);
                        match self.keypair.sign(&digest) {
                            Ok(signature) => {
                                self.counters
                                    .audits_answered
                                    .fetch_add(1, Ordering::Relaxed);
                                self.ledger.audit(gateway, true);
                                Ok((Response::Proof { proof, signature }, Vec::new()))
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "signing a proof failed");
                                Err(Response::error(ErrorKind::Internal, "signing failed"))
                            }
                        }
                    }
                    Err(e) => {
                        self.counters.audits_failed.fetch_add(1, Ordering::Relaxed);
                        self.ledger.audit(gateway, false);
                        Err(e)
                    }
                }
            }
            Request::Stats => Ok((Response::Stats(self.stats()), Vec::new())),
            Request::ScrubReport { acknowledged } => {
                let mut rot = self.rot.lock().unwrap_or_else(|p| p.into_inner());
                for id in &acknowledged {
                    rot.remove(id);
                }
                let corrupt = rot.iter().take(MAX_SCRUB_REPORT).copied().collect();
                Ok((Response::ScrubReport { corrupt }, Vec::new()))
            }
            Request::Ping { nonce } => Ok((Response::Pong { nonce }, Vec::new())),
            Request::UsageReceipt => {
                self.accrue_storage();
                let (keypair, now) = (self.keypair.clone(), crate::store::now_ms());
                self.ledger_call(move |l| l.receipt(&keypair, gateway, now))
                    .await
                    .map(|receipt| {
                        let receipt = Box::new(receipt);
                        (Response::UsageReceipt { receipt }, Vec::new())
                    })
            }
            Request::RecordStatement { statement } => {
                let me = self.keypair.public().to_peer_id();
                self.ledger_call(move |l| l.record(&me, &gateway, &statement))
                    .await
                    .map(|()| (Response::Recorded, Vec::new()))
            }
        };
        let (response, payload) = result.unwrap_or_else(|error| (error, Vec::new()));
        let outcome = match &response {
            Response::Error { kind, .. } => kind.as_str(),
            _ => "ok",
        };
        self.counters.record(kind, outcome);
        self.counters
            .bytes_out
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        (response, payload)
    }

    /// Serves one stream (or lane) until the peer closes it: a sequence of request/response
    /// exchanges. Peers that are not configured gateways get `Unauthorized` and the stream is
    /// closed.
    pub async fn serve_stream<S: Frames>(
        &self,
        peer: PeerId,
        mut stream: S,
        cancel: &CancellationToken,
    ) {
        let authorized = self.gateways.contains(&peer);
        loop {
            let next = tokio::select! {
                next = stream.read_header() => next,
                // Between requests: stop serving when the node shuts down.
                () = cancel.cancelled() => return,
                // Another peer gets one request's worth of attention, promptly or never.
                () = tokio::time::sleep(STRANGER_TIMEOUT), if !authorized => return,
            };
            let request: Request = match next {
                Ok(r) => r,
                Err(ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return
                }
                Err(ProtocolError::Io(_)) => return,
                Err(ProtocolError::Version { found }) => {
                    let reply = Response::error(
                        ErrorKind::UnsupportedVersion,
                        format!(
                            "this node speaks protocol {}, not {found}",
                            crate::protocol::PROTOCOL_VERSION
                        ),
                    );
                    let _ = stream.write_frame(&reply, &[]).await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "bad request");
                    let reply = Response::error(ErrorKind::BadRequest, e.to_string());
                    let _ = stream.write_frame(&reply, &[]).await;
                    return;
                }
            };
            if !authorized {
                self.counters
                    .refused_unauthorized
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, kind = request.kind(), "refused a request from a peer that is not one of our gateways");
                let reply = Response::error(
                    ErrorKind::Unauthorized,
                    "this node takes orders only from its configured gateways",
                );
                let _ = stream.write_frame(&reply, &[]).await;
                return;
            }
            let len = request.payload_len();
            let payload = if len > 0 {
                match tokio::time::timeout(PAYLOAD_TIMEOUT, stream.read_payload(len)).await {
                    Ok(Ok(p)) => p,
                    _ => return,
                }
            } else {
                Vec::new()
            };
            let (response, data) = self.handle(peer, request, payload).await;
            if stream.write_frame(&response, &data).await.is_err() {
                return;
            }
        }
    }

    /// Accepts node-protocol streams until `cancel` fires, serving each in its own task (at most
    /// [`MAX_STREAMS`] at once). Returns once in-flight requests have finished or `grace` passed.
    pub async fn serve(
        self: Arc<Self>,
        host: &HostHandle,
        cancel: CancellationToken,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let mut incoming = host
            .control()
            .accept(StreamProtocol::new(NODE_PROTOCOL))
            .map_err(|_| anyhow::anyhow!("the node protocol is already being served"))?;
        loop {
            let (peer, stream) = tokio::select! {
                next = incoming.next() => match next {
                    Some(s) => s,
                    None => break,
                },
                () = cancel.cancelled() => break,
            };
            // Gateways and everyone else draw on budgets of their own.
            let authorized = self.gateways.contains(&peer);
            let budget = if authorized {
                &self.streams
            } else {
                &self.strangers
            };
            match budget.clone().try_acquire_owned() {
                Ok(permit) => {
                    let service = self.clone();
                    let cancel = cancel.clone();
                    tokio::spawn(async move {
                        service.serve_stream(peer, stream, &cancel).await;
                        drop(permit);
                    });
                }
                Err(_) if authorized => tracing::warn!(%peer, "too many streams; refusing one"),
                Err(_) => {
                    self.counters
                        .refused_unauthorized
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "another peer's streams are at their limit; dropping one");
                }
            }
        }
        drop(incoming);
        // Wait for the streams being served to finish (the stores' writes are atomic anyway).
        let all = MAX_STREAMS as u32;
        if tokio::time::timeout(grace, self.streams.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("shutting down with requests still in flight");
        }
        Ok(())
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The pause before a retry: `FIRST_BACKOFF`, doubling to `MAX_BACKOFF`.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(FIRST_BACKOFF)
    }

    fn reset(&mut self) {
        self.0 = FIRST_BACKOFF;
    }

    /// Waits out the pause, or until `wake` (which also resets it); `false` once `cancel` fires.
    async fn wait(
        &mut self,
        cancel: &CancellationToken,
        wake: impl std::future::Future<Output = ()>,
    ) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.0) => self.0 = (self.0 * 2).min(MAX_BACKOFF),
            () = wake => self.reset(),
            () = cancel.cancelled() => return false,
        }
        true
    }
}

/// Keeps the node registered with one gateway until `cancel` fires: dials it (the node's own
/// connection is what a node behind NAT is reached through), sends a registration, repeats it
/// at the heartbeat the gateway asks for, and starts over with backoff when anything fails.
/// Keeps the data lanes the gateway offers dialed too, and serves them with `service`.
pub async fn keep_registered(
    service: Arc<NodeService>,
    host: HostHandle,
    gateway: GatewayAddr,
    registration: impl Fn() -> Registration + Send + Sync,
    cancel: CancellationToken,
) {
    let (offers, offered) = watch::channel(None);
    for index in 0..MAX_LANES {
        tokio::spawn(keep_lane(
            index,
            service.clone(),
            gateway.clone(),
            offered.clone(),
            cancel.clone(),
        ));
    }
    let mut backoff = Backoff::new();
    while !cancel.is_cancelled() {
        match register_once(&host, &gateway, &registration, &offers, &cancel).await {
            Ok(()) => backoff.reset(),
            Err(e) => {
                tracing::warn!(gateway = %gateway.peer, error = %e, "registration failed; retrying in {:?}", backoff.0)
            }
        }
        if !backoff.wait(&cancel, std::future::pending()).await {
            return;
        }
    }
}

async fn register_once(
    host: &HostHandle,
    gateway: &GatewayAddr,
    registration: &(impl Fn() -> Registration + Send + Sync),
    offers: &watch::Sender<Option<LaneOffer>>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    if !host.is_connected(&gateway.peer) {
        host.dial(gateway.addr.clone()).await?;
        if !host
            .wait_connected(&gateway.peer, Duration::from_secs(10))
            .await
        {
            anyhow::bail!("could not connect to {}", gateway.addr);
        }
    }
    let mut stream = host
        .control()
        .open_stream(gateway.peer, StreamProtocol::new(REGISTER_PROTOCOL))
        .await
        .map_err(|e| anyhow::anyhow!("open a registration stream: {e}"))?;
    let mut announced = false;
    loop {
        write_frame(&mut stream, &registration(), &[]).await?;
        match read_header::<_, RegistrationReply>(&mut stream).await? {
            RegistrationReply::Accepted {
                heartbeat_secs,
                lanes,
            } => {
                offers.send_if_modified(|offer| std::mem::replace(offer, lanes) != lanes);
                if !announced {
                    tracing::info!(gateway = %gateway.peer, "registered");
                    announced = true;
                }
                let heartbeat = Duration::from_secs(u64::from(heartbeat_secs.clamp(1, 3600)));
                tokio::select! {
                    () = tokio::time::sleep(heartbeat) => {}
                    () = host.wait_disconnected(&gateway.peer) => anyhow::bail!("connection to the gateway lost"),
                    () = cancel.cancelled() => return Ok(()),
                }
            }
            RegistrationReply::Refused { reason } => {
                anyhow::bail!("the gateway refused us: {reason}")
            }
        }
    }
}

/// Keeps lane number `index` to `gateway` dialed while the gateway's latest offer covers it,
/// and serves the gateway's orders on it; redials with backoff when it closes or cannot be set
/// up, at once when the offer changes. A lane counts against [`MAX_STREAMS`] while it is up.
async fn keep_lane(
    index: u8,
    service: Arc<NodeService>,
    gateway: GatewayAddr,
    mut offered: watch::Receiver<Option<LaneOffer>>,
    cancel: CancellationToken,
) {
    let me = service.keypair.public().to_peer_id();
    let mut backoff = Backoff::new();
    loop {
        let offer = tokio::select! {
            offer = offered.wait_for(|o| o.is_some_and(|o| index < o.count)) => match offer {
                Ok(offer) => match *offer {
                    Some(offer) => offer,
                    None => continue,
                },
                Err(_) => return, // registration has stopped
            },
            () = cancel.cancelled() => return,
        };
        if let Ok(permit) = service.streams.clone().try_acquire_owned() {
            let dialed = match lane::lane_host(&gateway.addr, offer.port) {
                Ok(addr) => lane::dial(&addr, me, &offer.key).await,
                Err(e) => Err(e),
            };
            match dialed {
                Ok(lane) => {
                    let up = Instant::now();
                    service.counters.lanes_up.fetch_add(1, Ordering::Relaxed);
                    service.serve_stream(gateway.peer, lane, &cancel).await;
                    service.counters.lanes_up.fetch_sub(1, Ordering::Relaxed);
                    if up.elapsed() > MAX_BACKOFF {
                        backoff.reset();
                    }
                }
                // The first lane speaks for all (a closed port, a firewall): once per backoff.
                Err(e) if index == 0 => {
                    tracing::warn!(gateway = %gateway.peer, error = %e, "could not set up a data lane; pieces go over libp2p until one is up");
                }
                Err(e) => {
                    tracing::debug!(gateway = %gateway.peer, index, error = %e, "could not set up a lane");
                }
            }
            drop(permit);
        }
        // A new offer (the gateway restarted: a new port or key) is tried at once.
        offered.mark_unchanged();
        let changed = async {
            let _ = offered.changed().await;
        };
        if !backoff.wait(&cancel, changed).await {
            return;
        }
    }
}
