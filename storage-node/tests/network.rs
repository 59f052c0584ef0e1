//! Two real libp2p peers on loopback: a gateway (the client side of the protocol) and a node
//! serving a real disk store. The node dials the gateway, as a node behind NAT does, and every
//! order travels over that connection, or over the data lanes the node dials beside it. A third
//! peer that is not a configured gateway is refused.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chunker::proof::verify;
use chunker::{Challenge, PieceId};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use storage_node::client::{
    serve_registrations, verify_proof_signature, ClientError, LaneAdmission, NodeClient, ATTEMPTS,
    MAX_IDLE_STREAMS,
};
use storage_node::config::GatewayAddr;
use storage_node::ledger::{NodeLedger, SignedStatement, Statement, Usage};
use storage_node::net::{self, HostHandle};
use storage_node::node::{keep_registered, NodeService};
use storage_node::protocol::{
    ByteRange, ErrorKind, LaneKey, LaneOffer, Registration, RegistrationReply, Request, Response,
};
use storage_node::store::{DiskStore, DiskStoreOptions};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(10);
/// The lane key the test gateway gives every node.
const LANE_KEY: LaneKey = LaneKey([42; 32]);

fn piece(len: usize, seed: u8) -> (PieceId, Vec<u8>) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    (PieceId::of(&data), data)
}

/// The error kind a node answered with, if the failure was a node's answer.
fn node_error(err: &ClientError) -> Option<ErrorKind> {
    match err {
        ClientError::Node { kind, .. } => Some(*kind),
        _ => None,
    }
}

struct Gateway {
    keypair: Keypair,
    host: HostHandle,
    addr: Multiaddr,
    registrations: Arc<Mutex<Vec<(PeerId, Registration)>>>,
    /// The client that holds the lanes nodes dial (when the gateway offers lanes).
    client: NodeClient,
    /// Lanes whose admission was decided.
    lanes_judged: Arc<AtomicUsize>,
}

async fn gateway() -> Gateway {
    gateway_with("/ip4/127.0.0.1/tcp/0", None).await
}

/// A gateway listening on `listen` only; with `lanes` = `(count, admit)` it offers `count`
/// data lanes to every node and keeps them if `admit`.
async fn gateway_with(listen: &str, lanes: Option<(u8, bool)>) -> Gateway {
    let keypair = Keypair::generate_ed25519();
    let host = net::spawn(keypair.clone()).unwrap();
    host.listen(listen.parse().unwrap()).await.unwrap();
    let addr = host.listen_addrs(1, T).await.remove(0);
    let client = NodeClient::new(host.clone());
    let lanes_judged = Arc::new(AtomicUsize::new(0));
    let offer = match lanes {
        Some((count, admit)) => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let judged = lanes_judged.clone();
            let admission: LaneAdmission = Arc::new(move |_| {
                judged.fetch_add(1, Ordering::SeqCst);
                admit.then_some(LANE_KEY)
            });
            let client = client.clone();
            tokio::spawn(async move { client.serve_lanes(listener, admission).await });
            Some(LaneOffer {
                port,
                count,
                key: LANE_KEY,
            })
        }
        None => None,
    };
    let registrations = Arc::new(Mutex::new(Vec::new()));
    let seen = registrations.clone();
    tokio::spawn(serve_registrations(
        host.clone(),
        Arc::new(move |peer, reg| {
            seen.lock().unwrap().push((peer, reg));
            RegistrationReply::Accepted {
                heartbeat_secs: 1,
                lanes: offer,
            }
        }),
        64,
    ));
    Gateway {
        keypair,
        host,
        addr,
        registrations,
        client,
        lanes_judged,
    }
}

/// Waits (up to 10 s) until `holds`; false if it never did.
async fn eventually(holds: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if holds() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    holds()
}

/// Waits until `client` pools `count` lanes to `node`.
async fn wait_lanes(client: &NodeClient, node: &PeerId, count: usize) {
    let pooled = || client.idle_lanes(node);
    assert!(
        eventually(|| pooled() == count).await,
        "{} lanes to {node} pooled, not {count}",
        pooled()
    );
}

/// Pings `peer` through `client`; the answer must carry `nonce`.
async fn ping(client: &NodeClient, peer: PeerId, nonce: u64) {
    let (answer, _) = client
        .call(peer, &Request::Ping { nonce }, &[], T)
        .await
        .unwrap();
    assert_eq!(answer, Response::Pong { nonce });
}

struct Node {
    peer: PeerId,
    host: HostHandle,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
    keypair: Keypair,
    store: Arc<DiskStore>,
    service: Arc<NodeService>,
}

async fn node(gateway: &Gateway, capacity: u64) -> Node {
    node_at(
        gateway,
        capacity,
        tempfile::tempdir().unwrap(),
        Keypair::generate_ed25519(),
    )
    .await
}

/// A node with `keypair` serving the store in `dir` (a restarted node keeps both).
async fn node_at(
    gateway: &Gateway,
    capacity: u64,
    dir: tempfile::TempDir,
    keypair: Keypair,
) -> Node {
    let peer = keypair.public().to_peer_id();
    let store = Arc::new(DiskStore::open(dir.path(), DiskStoreOptions::new(capacity)).unwrap());
    let host = net::spawn(keypair.clone()).unwrap();
    host.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .await
        .unwrap();
    let ledger = NodeLedger::open(store.clone()).unwrap();
    let disk = store.clone();
    let service = Arc::new(NodeService::new(
        store,
        keypair.clone(),
        [gateway.host.peer_id()],
        Box::new(|| None),
        ledger,
    ));
    let cancel = CancellationToken::new();
    let gw = GatewayAddr {
        addr: gateway
            .addr
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(gateway.host.peer_id())),
        peer: gateway.host.peer_id(),
    };
    let s = service.clone();
    let registration = move || {
        let st = s.stats();
        Registration {
            software: "storage-node test".into(),
            capacity_bytes: st.capacity_bytes,
            used_bytes: st.used_bytes,
            disk_free_bytes: st.disk_free_bytes,
            labels: [("region".to_string(), "test".to_string())].into(),
            listen: vec![],
        }
    };
    tokio::spawn(keep_registered(
        service.clone(),
        host.clone(),
        gw,
        registration,
        cancel.clone(),
    ));
    let (h, c, s) = (host.clone(), cancel.clone(), service.clone());
    tokio::spawn(async move { s.serve(&h, c, Duration::from_secs(5)).await });
    Node {
        peer,
        host,
        cancel,
        _dir: dir,
        keypair,
        store: disk,
        service,
    }
}

async fn wait_registered(gateway: &Gateway, node: &PeerId) -> Registration {
    for _ in 0..100 {
        if let Some((_, r)) = gateway
            .registrations
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _)| p == node)
        {
            return r.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node {node} never registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_drives_every_message_over_the_connection_the_node_opened() {
    let gw = gateway().await;
    let n = node(&gw, 64 << 20).await;
    let reg = wait_registered(&gw, &n.peer).await;
    assert_eq!(reg.capacity_bytes, 64 << 20);
    assert_eq!(reg.labels["region"], "test");
    // The gateway never dialed: the connection is the node's.
    assert!(gw.host.is_connected(&n.peer));
    every_message(&gw, &n).await;
    assert_eq!(gw.client.idle_lanes(&n.peer), 0);
    assert!(gw.client.idle_streams(&n.peer) > 0);
    n.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_travels_on_the_lanes_the_node_dialed() {
    let gw = gateway_with("/ip4/127.0.0.1/tcp/0", Some((3, true))).await;
    let n = node(&gw, 64 << 20).await;
    wait_registered(&gw, &n.peer).await;
    wait_lanes(&gw.client, &n.peer, 3).await;
    // The node counts a lane once it has the gateway's proof, a moment after the gateway.
    let lanes_up = || n.service.counters.lanes_up.load(Ordering::SeqCst);
    assert!(
        eventually(|| lanes_up() == 3).await,
        "{} lanes up",
        lanes_up()
    );
    every_message(&gw, &n).await;
    // No stream was needed. The lane the refused put went on was closed (the node closes a
    // stream after refusing a request); the node dials it again.
    assert_eq!(gw.client.idle_streams(&n.peer), 0);
    wait_lanes(&gw.client, &n.peer, 3).await;

    // More calls at once than lanes: the rest go on streams, and all land.
    let puts = (0..12u8).map(|i| {
        let (id, data) = piece(100_000 + usize::from(i), i);
        let client = gw.client.clone();
        let peer = n.peer;
        async move {
            let put = Request::PutPiece {
                id,
                len: data.len() as u64,
            };
            client.call(peer, &put, &data, T).await
        }
    });
    for r in futures::future::join_all(puts).await {
        assert_eq!(r.unwrap().0, Response::Stored { already: false });
    }
    assert_eq!(gw.client.idle_lanes(&n.peer), 3);
    assert!(gw.client.idle_streams(&n.peer) > 0);
    n.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_keeps_no_lane_from_a_peer_it_does_not_admit() {
    let gw = gateway_with("/ip4/127.0.0.1/tcp/0", Some((4, false))).await;
    let n = node(&gw, 1 << 20).await;
    wait_registered(&gw, &n.peer).await;
    assert!(eventually(|| gw.lanes_judged.load(Ordering::SeqCst) >= 4).await);
    assert_eq!(gw.client.idle_lanes(&n.peer), 0);
    // Orders still reach the node, on streams.
    ping(&gw.client, n.peer, 1).await;
    n.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_reached_past_its_dead_lanes_and_dials_new_ones() {
    let gw = gateway_with("/ip4/127.0.0.1/tcp/0", Some((4, true))).await;
    let n = node(&gw, 1 << 20).await;
    wait_registered(&gw, &n.peer).await;
    wait_lanes(&gw.client, &n.peer, 4).await;

    n.cancel.cancel();
    n.host.shutdown().await;
    gw.registrations.lock().unwrap().clear();
    let again = node_at(
        &gw,
        1 << 20,
        tempfile::tempdir().unwrap(),
        n.keypair.clone(),
    )
    .await;
    wait_registered(&gw, &again.peer).await;
    // The old lanes are dead: calls skip them (found closed, or failing and retried).
    ping(&gw.client, again.peer, 5).await;
    // The node's new lanes replace the dead ones in the pool, and calls take them.
    wait_lanes(&gw.client, &again.peer, 4).await;
    for nonce in 0..8 {
        ping(&gw.client, again.peer, nonce).await;
    }
    assert_eq!(gw.client.idle_lanes(&again.peer), 4);
    again.cancel.cancel();
}

/// Drives every message of the protocol through the gateway's client to `n`: put (twice), get,
/// a range, a challenge, stats, a refused put, delete.
async fn every_message(gw: &Gateway, n: &Node) {
    let call = |req: Request, payload: Vec<u8>| {
        let client = gw.client.clone();
        let peer = n.peer;
        async move { client.call(peer, &req, &payload, T).await }
    };

    assert_eq!(
        call(Request::Ping { nonce: 7 }, vec![]).await.unwrap().0,
        Response::Pong { nonce: 7 }
    );

    let (id, data) = piece(300_000, 1);
    let put = Request::PutPiece {
        id,
        len: data.len() as u64,
    };
    assert_eq!(
        call(put.clone(), data.clone()).await.unwrap().0,
        Response::Stored { already: false }
    );
    assert_eq!(
        call(put, data.clone()).await.unwrap().0,
        Response::Stored { already: true }
    );

    let (resp, bytes) = call(Request::GetPiece { id, range: None }, vec![])
        .await
        .unwrap();
    assert_eq!(resp, Response::Piece { len: 300_000 });
    assert_eq!(bytes, data);
    let range = ByteRange {
        start: 70_000,
        end: 70_100,
    };
    let (_, bytes) = call(
        Request::GetPiece {
            id,
            range: Some(range),
        },
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(bytes, data[70_000..70_100]);

    let challenge = Challenge::random(id, 300_000, 4).unwrap();
    match call(
        Request::Challenge {
            challenge: challenge.clone(),
        },
        vec![],
    )
    .await
    .unwrap()
    .0
    {
        Response::Proof { proof, signature } => {
            verify(&challenge, &proof).unwrap();
            assert!(verify_proof_signature(
                &n.peer, &challenge, &proof, &signature
            ));
            assert!(!verify_proof_signature(
                &gw.host.peer_id(),
                &challenge,
                &proof,
                &signature
            ));
        }
        other => panic!("expected a proof, got {other:?}"),
    }

    match call(Request::Stats, vec![]).await.unwrap().0 {
        Response::Stats(s) => assert_eq!((s.pieces, s.used_bytes), (1, 300_000)),
        other => panic!("expected stats, got {other:?}"),
    }

    // Wrong bytes for an id: refused, nothing kept.
    let (other_id, _) = piece(1000, 2);
    let err = call(
        Request::PutPiece {
            id: other_id,
            len: 5,
        },
        vec![1, 2, 3, 4, 5],
    )
    .await
    .unwrap_err();
    assert_eq!(node_error(&err), Some(ErrorKind::BadRequest), "{err}");

    let deleted = call(
        Request::DeletePieces {
            ids: vec![id, other_id],
        },
        vec![],
    )
    .await
    .unwrap()
    .0;
    assert_eq!(
        deleted,
        Response::Deleted {
            deleted: 1,
            absent: 1
        }
    );
    let err = call(Request::GetPiece { id, range: None }, vec![])
        .await
        .unwrap_err();
    assert_eq!(node_error(&err), Some(ErrorKind::NotFound), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_registers_and_serves_over_quic() {
    let gw = gateway_with("/ip4/127.0.0.1/udp/0/quic-v1", None).await;
    assert!(gw.addr.to_string().contains("/quic-v1"), "{}", gw.addr);
    let n = node(&gw, 64 << 20).await;
    wait_registered(&gw, &n.peer).await;
    assert!(gw.host.is_connected(&n.peer));
    let client = NodeClient::new(gw.host.clone());
    // A piece of several frames, and many at once: QUIC streams carry them as TCP's do.
    let pieces: Vec<_> = (0..8).map(|i| piece(3 << 20, 40 + i)).collect();
    let puts = pieces.iter().map(|(id, data)| {
        let req = Request::PutPiece {
            id: *id,
            len: data.len() as u64,
        };
        let client = client.clone();
        async move { client.call(n.peer, &req, data, T).await.unwrap().0 }
    });
    for answer in futures::future::join_all(puts).await {
        assert_eq!(answer, Response::Stored { already: false });
    }
    for (id, data) in &pieces {
        let (resp, bytes) = client
            .call(
                n.peer,
                &Request::GetPiece {
                    id: *id,
                    range: None,
                },
                &[],
                T,
            )
            .await
            .unwrap();
        assert_eq!(resp, Response::Piece { len: 3 << 20 });
        assert_eq!(&bytes, data);
    }
    n.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_all_land_and_capacity_is_refused_cleanly() {
    let gw = gateway().await;
    let n = node(&gw, 20 * 1024 * 1024).await;
    wait_registered(&gw, &n.peer).await;
    let client = NodeClient::new(gw.host.clone());
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let client = client.clone();
            let peer = n.peer;
            tokio::spawn(async move {
                let (id, data) = piece(1 << 20, i);
                let req = Request::PutPiece {
                    id,
                    len: data.len() as u64,
                };
                client.call(peer, &req, &data, T).await.map(|r| r.0)
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap(),
            Response::Stored { already: false }
        );
    }
    // 16 MiB held of 20: five more MiB do not fit.
    let results: Vec<_> = futures::future::join_all((16..21u8).map(|i| {
        let client = client.clone();
        async move {
            let (id, data) = piece(1 << 20, i);
            client
                .call(n.peer, &Request::PutPiece { id, len: 1 << 20 }, &data, T)
                .await
        }
    }))
    .await;
    let full = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(ClientError::Node {
                    kind: ErrorKind::CapacityFull,
                    ..
                })
            )
        })
        .count();
    assert_eq!((results.len() - full, full), (4, 1));
    n.cancel.cancel();
}

/// A peer that is not one of `n`'s gateways, connected to it.
async fn stranger_of(n: &Node) -> HostHandle {
    let node_addr = n.host.listen_addrs(1, T).await.remove(0);
    let stranger = net::spawn(Keypair::generate_ed25519()).unwrap();
    stranger
        .dial(node_addr.with(libp2p::multiaddr::Protocol::P2p(n.peer)))
        .await
        .unwrap();
    assert!(stranger.wait_connected(&n.peer, T).await);
    stranger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_not_a_configured_gateway_is_refused() {
    let gw = gateway().await;
    let n = node(&gw, 1 << 20).await;
    wait_registered(&gw, &n.peer).await;
    let stranger = stranger_of(&n).await;
    let client = NodeClient::new(stranger);
    for req in [Request::Ping { nonce: 1 }, Request::Stats] {
        let err = client.call(n.peer, &req, &[], T).await.unwrap_err();
        assert_eq!(node_error(&err), Some(ErrorKind::Unauthorized), "{err}");
    }
    let (id, data) = piece(5000, 3);
    let err = client
        .call(n.peer, &Request::PutPiece { id, len: 5000 }, &data, T)
        .await
        .unwrap_err();
    assert_eq!(node_error(&err), Some(ErrorKind::Unauthorized), "{err}");
    n.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_holding_hundreds_of_streams_cannot_starve_the_gateway() {
    let gw = gateway().await;
    let n = node(&gw, 1 << 20).await;
    wait_registered(&gw, &n.peer).await;
    let mut held_hosts = Vec::new();
    // Two strangers open 200 streams each and hold them, never sending a request: more than the
    // node serves for its gateways (one connection carries at most about 256 streams, and the
    // node's accept loop drops some opens, so each tries until it holds 200).
    let mut held = Vec::new();
    for _ in 0..2 {
        let stranger = stranger_of(&n).await;
        let mut control = stranger.control();
        let mut mine = 0;
        for _ in 0..1000 {
            if mine >= 200 {
                break;
            }
            let open = control.open_stream(
                n.peer,
                libp2p::StreamProtocol::new(storage_node::protocol::NODE_PROTOCOL),
            );
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), open).await {
                held.push(s);
                mine += 1;
            }
        }
        assert_eq!(mine, 200, "a stranger could not open its streams");
        held_hosts.push(stranger);
    }
    // The gateway is served all the while.
    let client = NodeClient::new(gw.host.clone());
    for nonce in 0..50 {
        let r = client.call(n.peer, &Request::Ping { nonce }, &[], T).await;
        assert!(
            r.is_ok(),
            "ping {nonce} while strangers hold {} streams: {r:?}",
            held.len()
        );
    }
    let (id, data) = piece(5000, 9);
    client
        .call(n.peer, &Request::PutPiece { id, len: 5000 }, &data, T)
        .await
        .unwrap();
    n.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_registration_streams_do_not_keep_their_slots() {
    use futures::AsyncReadExt;
    let gw = gateway().await;
    let stranger = net::spawn(Keypair::generate_ed25519()).unwrap();
    let gw_peer = gw.host.peer_id();
    stranger
        .dial(
            gw.addr
                .clone()
                .with(libp2p::multiaddr::Protocol::P2p(gw_peer)),
        )
        .await
        .unwrap();
    assert!(stranger.wait_connected(&gw_peer, T).await);
    let mut control = stranger.control();
    let mut streams = Vec::new();
    for _ in 0..40 {
        if streams.len() == 6 {
            break;
        }
        let open = control.open_stream(
            gw_peer,
            libp2p::StreamProtocol::new(storage_node::protocol::REGISTER_PROTOCOL),
        );
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(500), open).await {
            streams.push(s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(streams.len(), 6);
    // Reads end (0 bytes, or an error) once the gateway has let a stream go.
    async fn closed_within(s: &mut libp2p::Stream, within: Duration) -> bool {
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(within, s.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }
    // One peer holds at most four: the fifth and sixth are let go at once.
    assert!(closed_within(&mut streams[4], Duration::from_secs(3)).await);
    assert!(closed_within(&mut streams[5], Duration::from_secs(3)).await);
    // The first four, silent, are let go once their first registration is overdue.
    let deadline = storage_node::client::FIRST_REGISTRATION_WITHIN + Duration::from_secs(5);
    for s in &mut streams[..4] {
        assert!(
            closed_within(s, deadline).await,
            "a silent registration stream was kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_reached_on_fresh_streams_not_the_dead_pooled_ones() {
    let gw = gateway().await;
    let n = node(&gw, 1 << 20).await;
    wait_registered(&gw, &n.peer).await;
    let client = NodeClient::new(gw.host.clone());
    // Calls at once each take a pooled stream or open one, and leave it in the pool. (A fresh
    // stream the node's accept loop dropped is retried after a pause, when others may have
    // come back to the pool: a burst can pool fewer streams than it made calls, so bursts
    // repeat until the pool holds more than a call's tries.)
    let mut pooled = 0;
    for round in 0..20u64 {
        let pings = (0..MAX_IDLE_STREAMS as u64).map(|i| {
            let client = client.clone();
            let nonce = round << 32 | i;
            async move { client.call(n.peer, &Request::Ping { nonce }, &[], T).await }
        });
        futures::future::join_all(pings).await;
        pooled = client.idle_streams(&n.peer);
        if pooled > ATTEMPTS as usize {
            break;
        }
    }
    assert!(pooled > ATTEMPTS as usize, "only {pooled} streams pooled");

    // The node dies (its connection with it) and comes back with the same identity.
    n.cancel.cancel();
    n.host.shutdown().await;
    for _ in 0..100 {
        if !gw.host.is_connected(&n.peer) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!gw.host.is_connected(&n.peer));
    gw.registrations.lock().unwrap().clear();
    let again = node_at(
        &gw,
        1 << 20,
        tempfile::tempdir().unwrap(),
        n.keypair.clone(),
    )
    .await;
    wait_registered(&gw, &again.peer).await;

    // Every pooled stream is dead; the first call finds out and the rest of the pool goes.
    for nonce in 0..3 {
        ping(&client, again.peer, nonce).await;
    }
    again.cancel.cancel();
}

/// A burst of new streams outruns the node's accept loop (libp2p-stream hands a protocol's
/// inbound streams over one slot and drops those that find it taken): every call still lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_calls_on_fresh_streams_all_land() {
    let gw = gateway().await;
    let n = node(&gw, 1 << 20).await;
    wait_registered(&gw, &n.peer).await;
    for round in 0..4u64 {
        // A fresh client each round: no pooled streams, so every call opens one.
        let client = NodeClient::new(gw.host.clone());
        let pings = (0..64u64).map(|i| {
            let client = client.clone();
            let nonce = round << 32 | i;
            async move { client.call(n.peer, &Request::Ping { nonce }, &[], T).await }
        });
        let failed: Vec<String> = futures::future::join_all(pings)
            .await
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        assert!(
            failed.is_empty(),
            "round {round}: {} failed: {failed:?}",
            failed.len()
        );
    }
    n.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_signs_what_it_did_and_keeps_the_countersigned_statement() {
    let gw = gateway().await;
    let n = node(&gw, 64 << 20).await;
    wait_registered(&gw, &n.peer).await;
    let client = NodeClient::new(gw.host.clone());
    let (id, data) = piece(200_000, 9);
    let put = Request::PutPiece { id, len: 200_000 };
    client.call(n.peer, &put, &data, T).await.unwrap();
    client.call(n.peer, &put, &data, T).await.unwrap(); // already held: not stored again
    let get = Request::GetPiece {
        id,
        range: Some(ByteRange {
            start: 0,
            end: 1000,
        }),
    };
    client.call(n.peer, &get, &[], T).await.unwrap();
    let challenge = Challenge::random(id, 200_000, 2).unwrap();
    client
        .call(n.peer, &Request::Challenge { challenge }, &[], T)
        .await
        .unwrap();

    let Response::UsageReceipt { receipt } = client
        .call(n.peer, &Request::UsageReceipt, &[], T)
        .await
        .unwrap()
        .0
    else {
        panic!("not a receipt");
    };
    assert_eq!(receipt.verify(), Ok((n.peer, gw.host.peer_id())));
    let totals = receipt.receipt.totals;
    assert_eq!(
        (
            totals.ingress_bytes,
            totals.egress_bytes,
            totals.audits_passed,
            totals.audits_failed
        ),
        (200_000, 1000, 1, 0)
    );

    // The gateway countersigns a statement closed by that receipt; the node keeps it.
    let mut statement = Statement {
        node: n.peer.to_bytes(),
        gateway: gw.host.peer_id().to_bytes(),
        period_start_ms: 0,
        period_end_ms: 1_000,
        opening: None,
        closing: Some(*receipt.clone()),
        measured: totals,
        measured_before: Usage::default(),
        credited_before: Usage::default(),
        credited: Usage::default(),
    };
    statement.credited = statement.rule();
    let signed = SignedStatement::sign(&gw.keypair, statement.clone()).unwrap();
    let record = Request::RecordStatement {
        statement: Box::new(signed),
    };
    assert_eq!(
        client.call(n.peer, &record, &[], T).await.unwrap().0,
        Response::Recorded
    );
    // One the gateway did not sign is refused, and not kept.
    let forged = SignedStatement::sign(&Keypair::generate_ed25519(), statement).unwrap();
    let err = client
        .call(
            n.peer,
            &Request::RecordStatement {
                statement: Box::new(forged),
            },
            &[],
            T,
        )
        .await
        .unwrap_err();
    assert_eq!(node_error(&err), Some(ErrorKind::BadRequest), "{err}");
    let accounts = NodeLedger::accounts(n.store.as_ref()).unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].statements, 1);
    assert_eq!(accounts[0].credited.ingress_bytes, 200_000);
    assert_eq!(accounts[0].totals, totals); // saved before it was signed
    n.cancel.cancel();
}
