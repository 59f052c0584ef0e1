//! Data lanes: TCP connections a node dials to its gateway that carry node-protocol exchanges
//! (put piece, get piece, …) without the stream multiplexer, one exchange at a time each.
//!
//! Piece bytes on a Yamux stream are handed, frame by frame, between the task that reads or
//! writes the stream and the task that drives the connection; on two cores those hand-offs, not
//! the bytes, were the transport's largest cost (docs/performance.md). A lane is a socket under
//! our TLS upgrade ([`super::tls`], the libp2p handshake: each end proves its peer id) that the
//! task doing the exchange reads and writes itself.
//!
//! The node dials, as it dials the gateway's libp2p address, so lanes work from behind NAT.
//! The gateway offers lanes in its registration reply ([`crate::protocol::LaneOffer`]: a port
//! and a count) and keeps only lanes whose peer is a registered node; the node keeps only lanes
//! whose other end proves the gateway's peer id, and obeys them as it obeys streams (only its
//! configured gateways). The libp2p connection stays the control plane (registration, the
//! online state) and carries exchanges while no lane is free.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::multiaddr::Protocol;
use libp2p::tcp::tokio::TcpStream;
use libp2p::{Multiaddr, PeerId};

use super::tls;

/// One lane: TLS over TCP.
pub type Lane = tls::TlsStream<TcpStream>;

/// Longest a lane's TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a lane could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsUpgradeError),
    #[error("no TLS handshake within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    #[error("the other end is {found}, not the gateway")]
    WrongPeer { found: PeerId },
    #[error("{0} names no host to dial a lane to")]
    NoHost(Multiaddr),
}

async fn bounded<T>(
    handshake: impl std::future::Future<Output = Result<T, tls::TlsUpgradeError>>,
) -> Result<T, LaneError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| LaneError::Timeout)?
        .map_err(LaneError::Tls)
}

/// TCP keepalive of a lane: probes after this much silence, …
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// … then every this often, …
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// … and the connection is dead after this many unanswered.
const KEEPALIVE_PROBES: u32 = 3;

/// Socket options of both ends. Exchanges end in small writes (a response header) that Nagle
/// would hold back. A lane sits idle between exchanges, for hours on a quiet node: keepalive
/// probes keep a home router's NAT mapping open and turn a peer that vanished into a socket
/// error within half a minute, rather than an exchange that waits for its whole timeout.
fn tune(socket: &tokio::net::TcpStream) {
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

/// The host part of a gateway's libp2p address (`/ip4`, `/ip6` or `/dns*`), joined with `port`:
/// where that gateway's lanes are.
pub fn lane_host(gateway: &Multiaddr, port: u16) -> Result<String, LaneError> {
    match gateway.iter().next() {
        Some(Protocol::Ip4(ip)) => Ok(SocketAddr::from((ip, port)).to_string()),
        Some(Protocol::Ip6(ip)) => Ok(SocketAddr::from((ip, port)).to_string()),
        Some(Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h)) => Ok(format!("{h}:{port}")),
        _ => Err(LaneError::NoHost(gateway.clone())),
    }
}

/// Dials a lane to `addr` (`host:port`); the other end must prove it is `gateway`.
pub async fn dial(config: &tls::Config, addr: &str, gateway: PeerId) -> Result<Lane, LaneError> {
    let connect = |source| LaneError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let socket = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| connect(io::ErrorKind::TimedOut.into()))?
        .map_err(connect)?;
    tune(&socket);
    let (found, lane) = bounded(
        config
            .clone()
            .upgrade_outbound(TcpStream(socket), "/tls/1.0.0"),
    )
    .await?;
    if found != gateway {
        return Err(LaneError::WrongPeer { found });
    }
    Ok(lane)
}

/// Runs the handshake of a socket the gateway accepted; returns the node it proves to be.
pub async fn accept(
    config: &tls::Config,
    socket: tokio::net::TcpStream,
) -> Result<(PeerId, Lane), LaneError> {
    tune(&socket);
    bounded(
        config
            .clone()
            .upgrade_inbound(TcpStream(socket), "/tls/1.0.0"),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_goes_to_the_gateways_host() {
        let at = |a: &str| lane_host(&a.parse().unwrap(), 9011);
        assert_eq!(
            at("/ip4/10.0.0.1/tcp/9010/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN")
                .unwrap(),
            "10.0.0.1:9011"
        );
        assert_eq!(at("/ip6/::1/udp/9010/quic-v1").unwrap(), "[::1]:9011");
        assert_eq!(at("/dns4/gw.example/tcp/9010").unwrap(), "gw.example:9011");
        assert!(at("/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN").is_err());
    }
}
