//! The libp2p host shared by nodes and gateways: one task owns the `Swarm`; everything else holds
//! a cloneable [`HostHandle`] that sends it commands over a bounded channel and opens or accepts
//! streams through `libp2p_stream`.
//!
//! Transports: TCP with TLS 1.3 ([`tls`]: AES-GCM, hardware-accelerated) preferred over Noise, and
//! Yamux ([`mux`]: large frames, bounded windows); or QUIC (`/udp/<port>/quic-v1` addresses:
//! TLS 1.3 and streams built in, one UDP port, friendlier to NAT hole punching). A host listens and dials on whichever its addresses name.
//! Connections are bounded ([`HostLimits`]: in total, per peer, and handshakes in flight), stay
//! up while idle for [`IDLE_TIMEOUT`] (a node behind NAT keeps the connection it opened busy with
//! its heartbeats), and `ping` detects dead peers. Piece bytes travel on [`lane`]s, node-dialed TCP connections of
//! their own beside the libp2p connection, when the gateway offers them.

use std::collections::HashMap;
use std::time::Duration;

pub mod lane;
pub mod mux;
pub mod tls;

use futures::StreamExt;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{connection_limits, identity::Keypair, noise, ping, tcp, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, watch};

/// The behaviours every host runs.
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)]
pub struct Behaviour {
    limits: connection_limits::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// How long a connection with no stream open is kept. Nodes register every heartbeat (seconds),
/// so their connections never sit idle this long; a peer that opens a connection and does
/// nothing with it is let go.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How many connections a host holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Established connections, in total.
    pub established: u32,
    /// Established connections with one peer (a redial or a simultaneous dial makes two).
    pub per_peer: u32,
    /// Incoming connections still in their handshake.
    pub pending_incoming: u32,
}

impl HostLimits {
    /// A gateway: connections from many nodes.
    pub const GATEWAY: HostLimits = HostLimits {
        established: 16_384,
        per_peer: 4,
        pending_incoming: 256,
    };
    /// A node: a few gateways (and whoever else dials it, who gets nothing).
    pub const NODE: HostLimits = HostLimits {
        established: 64,
        per_peer: 4,
        pending_incoming: 16,
    };
}

/// Builds a swarm with our transport stack for `keypair`.
pub fn build_swarm(keypair: Keypair, limits: HostLimits) -> anyhow::Result<Swarm<Behaviour>> {
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(limits.established))
        .with_max_established_per_peer(Some(limits.per_peer))
        .with_max_pending_incoming(Some(limits.pending_incoming));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            (tls::Config::new, noise::Config::new),
            mux::Config::new,
        )?
        .with_quic()
        .with_behaviour(|_| Behaviour {
            limits: connection_limits::Behaviour::new(limits),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            stream: libp2p_stream::Behaviour::new(),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    Ok(swarm)
}

enum Command {
    Listen(Multiaddr, oneshot::Sender<anyhow::Result<()>>),
    Dial(Multiaddr, oneshot::Sender<anyhow::Result<()>>),
    Shutdown,
}

/// The live connections of each connected peer, oldest first, with the address each one's
/// other end was seen at (for a connection the peer dialed, where it came from).
type Connections = HashMap<PeerId, Vec<(ConnectionId, Multiaddr)>>;

/// A handle on a running host. Cheap to clone.
#[derive(Clone)]
pub struct HostHandle {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    connected: watch::Receiver<Connections>,
    listening: watch::Receiver<Vec<Multiaddr>>,
}

impl std::fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostHandle")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

/// Starts a host with [`HostLimits::GATEWAY`] (see [`spawn_with`]).
pub fn spawn(keypair: Keypair) -> anyhow::Result<HostHandle> {
    spawn_with(keypair, HostLimits::GATEWAY)
}

/// Starts the host task; it runs until every handle is dropped or [`HostHandle::shutdown`].
pub fn spawn_with(keypair: Keypair, limits: HostLimits) -> anyhow::Result<HostHandle> {
    let peer_id = keypair.public().to_peer_id();
    let mut swarm = build_swarm(keypair, limits)?;
    let control = swarm.behaviour().stream.new_control();
    let (commands, mut rx) = mpsc::channel::<Command>(32);
    let (connected_tx, connected) = watch::channel(Connections::new());
    let (listening_tx, listening) = watch::channel(Vec::new());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Listen(addr, reply)) => {
                        let _ = reply.send(swarm.listen_on(addr).map(|_| ()).map_err(Into::into));
                    }
                    Some(Command::Dial(addr, reply)) => {
                        let _ = reply.send(swarm.dial(addr).map_err(Into::into));
                    }
                    Some(Command::Shutdown) | None => break,
                },
                event = swarm.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                        let remote = endpoint.get_remote_address().clone();
                        connected_tx.send_modify(|map| {
                            map.entry(peer_id).or_default().push((connection_id, remote));
                        });
                    }
                    SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, cause, .. } => {
                        if num_established == 0 {
                            tracing::debug!(%peer_id, ?cause, "disconnected");
                        }
                        connected_tx.send_modify(|map| {
                            if let Some(list) = map.get_mut(&peer_id) {
                                list.retain(|(id, _)| *id != connection_id);
                                if list.is_empty() || num_established == 0 {
                                    map.remove(&peer_id);
                                }
                            }
                        });
                    }
                    SwarmEvent::NewListenAddr { address, .. } => {
                        tracing::info!(%address, "listening");
                        listening_tx.send_modify(|addrs| addrs.push(address));
                    }
                    SwarmEvent::ExpiredListenAddr { address, .. } => {
                        listening_tx.send_modify(|addrs| addrs.retain(|a| a != &address));
                    }
                    SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                        tracing::debug!(?peer_id, %error, "dial failed");
                    }
                    _ => {}
                },
            }
        }
        tracing::debug!("host stopped");
    });
    Ok(HostHandle {
        peer_id,
        commands,
        control,
        connected,
        listening,
    })
}

impl HostHandle {
    /// This host's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// A control for opening and accepting streams.
    pub fn control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    async fn command(
        &self,
        make: impl FnOnce(oneshot::Sender<anyhow::Result<()>>) -> Command,
    ) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| anyhow::anyhow!("the host has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the host has stopped"))?
    }

    /// Stops the host: every connection and listener closes, even while handles (held, say, by
    /// tasks serving those connections) are still around.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    /// Starts listening on `addr`; [`HostHandle::listen_addrs`] shows the bound addresses.
    pub async fn listen(&self, addr: Multiaddr) -> anyhow::Result<()> {
        self.command(|tx| Command::Listen(addr, tx)).await
    }

    /// Starts dialing `addr` (which may name the peer with `/p2p/…`).
    pub async fn dial(&self, addr: Multiaddr) -> anyhow::Result<()> {
        self.command(|tx| Command::Dial(addr, tx)).await
    }

    /// Whether a connection to `peer` is up.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.connected.borrow().contains_key(peer)
    }

    /// Where `peer`'s oldest live connection comes from, as this host sees it (not what the
    /// peer says about itself): the address of the other end of the socket.
    pub fn remote_addr(&self, peer: &PeerId) -> Option<Multiaddr> {
        self.connected
            .borrow()
            .get(peer)
            .and_then(|list| list.first())
            .map(|(_, addr)| addr.clone())
    }

    /// Waits until `peer` is connected or `timeout` passes.
    pub async fn wait_connected(&self, peer: &PeerId, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|map| map.contains_key(peer)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until `peer` is disconnected.
    pub async fn wait_disconnected(&self, peer: &PeerId) {
        let mut rx = self.connected.clone();
        let _ = rx.wait_for(|map| !map.contains_key(peer)).await;
    }

    /// The addresses the host listens on now.
    pub fn listen_addrs_now(&self) -> Vec<Multiaddr> {
        self.listening.borrow().clone()
    }

    /// The addresses the host listens on, waiting up to `timeout` for at least `min` (one per
    /// listen call, say: a wildcard address may give more).
    pub async fn listen_addrs(&self, min: usize, timeout: Duration) -> Vec<Multiaddr> {
        let mut rx = self.listening.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|a| a.len() >= min.max(1))).await;
        let addrs = rx.borrow().clone();
        addrs
    }
}
