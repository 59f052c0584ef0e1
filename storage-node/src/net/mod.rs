//! The libp2p host shared by nodes and gateways: one task owns the `Swarm`; everything else holds
//! a cloneable [`HostHandle`] that sends it commands over a bounded channel and opens or accepts
//! streams through `libp2p_stream`.
//!
//! Transports: TCP with TLS 1.3 ([`tls`]: AES-GCM, hardware-accelerated) preferred over Noise, and
//! Yamux ([`mux`]: large frames, bounded windows); or QUIC (`/udp/<port>/quic-v1` addresses:
//! TLS 1.3 and streams built in, one UDP port, friendlier to NAT hole punching). A host listens and dials on whichever its addresses name.
//! Connections stay up while idle (a node behind NAT must keep the connection it opened), and
//! `ping` detects dead peers. Piece bytes travel on [`lane`]s, node-dialed TCP connections of
//! their own beside the libp2p connection, when the gateway offers them.

use std::collections::HashSet;
use std::time::Duration;

pub mod lane;
pub mod mux;
pub mod tls;

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identity::Keypair, noise, ping, tcp, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, watch};

/// The behaviours every host runs.
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)]
pub struct Behaviour {
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// Builds a swarm with our transport stack for `keypair`.
pub fn build_swarm(keypair: Keypair) -> anyhow::Result<Swarm<Behaviour>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            (tls::Config::new, noise::Config::new),
            mux::Config::new,
        )?
        .with_quic()
        .with_behaviour(|_| Behaviour {
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            stream: libp2p_stream::Behaviour::new(),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
        .build();
    Ok(swarm)
}

enum Command {
    Listen(Multiaddr, oneshot::Sender<anyhow::Result<()>>),
    Dial(Multiaddr, oneshot::Sender<anyhow::Result<()>>),
    Shutdown,
}

/// A handle on a running host. Cheap to clone.
#[derive(Clone)]
pub struct HostHandle {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    connected: watch::Receiver<HashSet<PeerId>>,
    listening: watch::Receiver<Vec<Multiaddr>>,
}

impl std::fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostHandle")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

/// Starts the host task; it runs until every handle is dropped or [`HostHandle::shutdown`].
pub fn spawn(keypair: Keypair) -> anyhow::Result<HostHandle> {
    let peer_id = keypair.public().to_peer_id();
    let mut swarm = build_swarm(keypair)?;
    let control = swarm.behaviour().stream.new_control();
    let (commands, mut rx) = mpsc::channel::<Command>(32);
    let (connected_tx, connected) = watch::channel(HashSet::new());
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
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        connected_tx.send_modify(|set| { set.insert(peer_id); });
                    }
                    SwarmEvent::ConnectionClosed { peer_id, num_established: 0, cause, .. } => {
                        tracing::debug!(%peer_id, ?cause, "disconnected");
                        connected_tx.send_modify(|set| { set.remove(&peer_id); });
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
        self.connected.borrow().contains(peer)
    }

    /// Waits until `peer` is connected or `timeout` passes.
    pub async fn wait_connected(&self, peer: &PeerId, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|set| set.contains(peer)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until `peer` is disconnected.
    pub async fn wait_disconnected(&self, peer: &PeerId) {
        let mut rx = self.connected.clone();
        let _ = rx.wait_for(|set| !set.contains(peer)).await;
    }

    /// The addresses the host listens on now.
    pub fn listen_addrs_now(&self) -> Vec<Multiaddr> {
        self.listening.borrow().clone()
    }

    /// The addresses the host listens on, waiting up to `timeout` for at least one.
    pub async fn listen_addrs(&self, timeout: Duration) -> Vec<Multiaddr> {
        let mut rx = self.listening.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|a| !a.is_empty())).await;
        let addrs = rx.borrow().clone();
        addrs
    }
}
