//! The nodes the gateway knows: who registered, with what capacity and labels, and who is
//! online now.
//!
//! A node is online while its connection is up and its last registration is younger than three
//! heartbeats. Registrations are remembered in the metadata, so a restarted gateway still knows
//! which nodes hold its pieces before they come back.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chunker::manifest::{NodeId, PieceLocation};
use libp2p::PeerId;
use storage_node::net::HostHandle;
use storage_node::protocol::{LaneKey, LaneOffer, Registration, RegistrationReply};

use crate::meta::{Meta, NodeRecord};
use crate::placement::Candidate;
use crate::reputation::NodeState;
use crate::time::now_ms;

/// A node as the gateway sees it now.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub peer: PeerId,
    pub registration: Registration,
    pub last_seen: Option<Instant>,
    pub online: bool,
    pub state: NodeState,
}

/// The failure domain placement spreads over: the `region`, `zone` and `operator` labels.
fn domain_of(registration: &Registration) -> String {
    let l = &registration.labels;
    let get = |k: &str| l.get(k).map(String::as_str).unwrap_or("");
    format!("{}/{}/{}", get("region"), get("zone"), get("operator"))
}

impl NodeView {
    /// The failure domain placement spreads over: the `region`, `zone` and `operator` labels.
    pub fn domain(&self) -> String {
        domain_of(&self.registration)
    }

    /// Bytes it can still take: the smaller of its unused capacity and its disk's free space.
    pub fn free(&self) -> u64 {
        let r = &self.registration;
        r.capacity_bytes
            .saturating_sub(r.used_bytes)
            .min(r.disk_free_bytes)
    }
}

struct Entry {
    registration: Registration,
    last_seen: Option<Instant>,
    first_seen_ms: u64,
    state: NodeState,
}

/// How much less likely a node in vetting is to be picked than a vetted one with as much room.
const VETTING_SHARE: u64 = 20;

/// The data lanes this gateway offers: where, how many per node, and the secret each node's
/// lane key is derived from (fresh at every start; nodes get theirs when they register).
#[derive(Clone)]
pub struct Lanes {
    pub port: u16,
    pub count: u8,
    secret: [u8; 32],
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("port", &self.port)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Lanes {
    /// Lanes on `port`, `count` per node, under a new random secret.
    pub fn new(port: u16, count: u8) -> anyhow::Result<Self> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| anyhow::anyhow!("no randomness for the lane secret"))?;
        Ok(Lanes {
            port,
            count,
            secret,
        })
    }

    /// The key of `peer`'s lanes.
    fn key(&self, peer: &PeerId) -> LaneKey {
        LaneKey(*blake3::keyed_hash(&self.secret, &peer.to_bytes()).as_bytes())
    }
}

/// The registry of nodes.
pub struct Nodes {
    entries: RwLock<HashMap<PeerId, Entry>>,
    /// When this registry started: nodes not seen since count as missing from then.
    loaded: Instant,
    meta: Arc<Meta>,
    host: HostHandle,
    heartbeat: Duration,
    allowed: Vec<PeerId>,
    /// The state of a node seen for the first time (vetting, unless vetting is off).
    first_state: NodeState,
    /// The data lanes registered nodes are asked to keep.
    lanes: Option<Lanes>,
    /// Stand-ins for buckets' remotes that hold parity pieces: always online, never placement
    /// candidates, never audited.
    remote_peers: Arc<RemotePeers>,
}

/// Stand-in peers of buckets' remotes that hold parity pieces (hybrid "parity in the cloud"):
/// peer → bucket. [`crate::hybrid::Remotes`] registers them, [`Nodes`] counts them online.
#[derive(Debug, Default)]
pub struct RemotePeers(RwLock<HashMap<PeerId, String>>);

impl RemotePeers {
    /// Registers `peer` as the stand-in for `bucket`'s remote.
    pub fn add(&self, peer: PeerId, bucket: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, bucket.to_string());
    }

    /// The bucket whose remote `peer` stands for, if it is such a stand-in.
    pub fn bucket(&self, peer: &PeerId) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .cloned()
    }
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes").finish_non_exhaustive()
    }
}

/// A node id as the manifest stores it.
pub fn node_id(peer: &PeerId) -> NodeId {
    match NodeId::new(peer.to_bytes()) {
        Ok(id) => id,
        // A PeerId is a multihash of at most 64 bytes of digest.
        Err(e) => unreachable!("peer ids fit a node id: {e}"),
    }
}

/// The peer a manifest's node id names, if it is one.
pub fn peer_of(node: &NodeId) -> Option<PeerId> {
    PeerId::from_bytes(node.as_bytes()).ok()
}

impl Nodes {
    /// The registry, loaded with the nodes remembered in `meta` (all offline until they
    /// register again). New nodes start in `first_state`; registered nodes are offered `lanes`.
    pub fn load(
        meta: Arc<Meta>,
        host: HostHandle,
        heartbeat: Duration,
        allowed: Vec<PeerId>,
        first_state: NodeState,
        lanes: Option<Lanes>,
    ) -> anyhow::Result<Self> {
        let mut entries = HashMap::new();
        for (id, record) in meta.nodes()? {
            if let Some(peer) = peer_of(&id) {
                let state = meta.reputation(&id)?.map_or(first_state, |r| r.state);
                entries.insert(
                    peer,
                    Entry {
                        registration: record.registration,
                        last_seen: None,
                        first_seen_ms: record.first_seen_ms,
                        state,
                    },
                );
            }
        }
        Ok(Nodes {
            entries: RwLock::new(entries),
            loaded: Instant::now(),
            meta,
            host,
            heartbeat,
            allowed,
            first_state,
            lanes,
            remote_peers: Arc::new(RemotePeers::default()),
        })
    }

    /// The stand-in peers of remotes (shared with [`crate::hybrid::Remotes`]).
    pub fn remote_peers(&self) -> Arc<RemotePeers> {
        self.remote_peers.clone()
    }

    /// The bucket whose remote `peer` stands for, if it is such a stand-in.
    pub fn remote_bucket(&self, peer: &PeerId) -> Option<String> {
        self.remote_peers.bucket(peer)
    }

    /// Handles a registration or heartbeat from `peer`.
    pub fn register(&self, peer: PeerId, registration: Registration) -> RegistrationReply {
        if !self.allowed.is_empty() && !self.allowed.contains(&peer) {
            tracing::warn!(%peer, "registration refused: not in allowed_nodes");
            return RegistrationReply::Refused {
                reason: format!("node {peer} is not in this gateway's allowed_nodes"),
            };
        }
        let now = now_ms();
        let (first_seen_ms, changed) = {
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            let entry = entries.entry(peer).or_insert_with(|| Entry {
                registration: registration.clone(),
                last_seen: None,
                first_seen_ms: now,
                state: self.first_state,
            });
            if entry.state == NodeState::Disqualified {
                return RegistrationReply::Refused {
                    reason: format!("node {peer} is disqualified"),
                };
            }
            if entry.last_seen.is_none() {
                tracing::info!(%peer, software = %registration.software, "node registered");
            }
            let changed = entry.registration != registration || entry.last_seen.is_none();
            entry.registration = registration.clone();
            entry.last_seen = Some(Instant::now());
            (entry.first_seen_ms, changed)
        };
        if changed {
            let record = NodeRecord {
                registration,
                first_seen_ms,
                last_seen_ms: now,
            };
            if let Err(e) = self.meta.put_node(&node_id(&peer), &record) {
                tracing::warn!(%peer, error = %e, "could not remember a node's registration");
            }
        }
        RegistrationReply::Accepted {
            heartbeat_secs: u32::try_from(self.heartbeat.as_secs().max(1)).unwrap_or(u32::MAX),
            lanes: self.lanes.as_ref().map(|l| LaneOffer {
                port: l.port,
                count: l.count,
                key: l.key(&peer),
            }),
        }
    }

    /// The key of the data lanes `peer` dials, if the gateway takes lanes from it: a node that
    /// registered, is online and is not disqualified.
    pub fn lane_key(&self, peer: &PeerId) -> Option<LaneKey> {
        let lanes = self.lanes.as_ref()?;
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(peer)
            .is_some_and(|e| e.state != NodeState::Disqualified && self.entry_online(peer, e))
            .then(|| lanes.key(peer))
    }

    /// The online rule: connected, and registered within the last three heartbeats.
    fn entry_online(&self, peer: &PeerId, e: &Entry) -> bool {
        e.last_seen
            .is_some_and(|t| t.elapsed() < self.heartbeat * 3)
            && self.host.is_connected(peer)
    }

    /// Every known node.
    pub fn all(&self) -> Vec<NodeView> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<NodeView> = entries
            .iter()
            .map(|(peer, e)| NodeView {
                peer: *peer,
                registration: e.registration.clone(),
                last_seen: e.last_seen,
                online: self.entry_online(peer, e),
                state: e.state,
            })
            .collect();
        out.sort_by_key(|n| n.peer.to_bytes());
        out
    }

    /// Nodes that are online now.
    pub fn online(&self) -> Vec<NodeView> {
        self.all().into_iter().filter(|n| n.online).collect()
    }

    /// Whether `peer` is online now (a remote's stand-in always is).
    pub fn is_online(&self, peer: &PeerId) -> bool {
        if self.remote_bucket(peer).is_some() {
            return true;
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(peer)
            .is_some_and(|e| self.entry_online(peer, e))
    }

    /// The node holding `piece`, if it is online now.
    pub fn online_holder(&self, piece: &PieceLocation) -> Option<PeerId> {
        piece
            .node
            .as_ref()
            .and_then(peer_of)
            .filter(|p| self.is_online(p))
    }

    /// How long `peer` has been unreachable: `None` while it is online, else the time since it
    /// was last seen (or since this registry started, for a node not seen since).
    pub fn missing_for(&self, peer: &PeerId) -> Option<Duration> {
        if self.remote_bucket(peer).is_some() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        match entries.get(peer) {
            Some(e) if self.entry_online(peer, e) => None,
            Some(e) => Some(e.last_seen.unwrap_or(self.loaded).elapsed()),
            None => Some(self.loaded.elapsed()),
        }
    }

    /// A known node's failure domain.
    pub fn domain(&self, peer: &PeerId) -> Option<String> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(peer).map(|e| domain_of(&e.registration))
    }

    /// A node's state (a node never seen is in its first state).
    pub fn state(&self, peer: &PeerId) -> NodeState {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(peer).map_or(self.first_state, |e| e.state)
    }

    /// Sets a node's state (decided by its reputation). A disqualified node is disconnected
    /// and refused from then on.
    pub fn set_state(&self, peer: &PeerId, state: NodeState) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get_mut(peer) {
            e.state = state;
            if state == NodeState::Disqualified {
                e.last_seen = None;
            }
        }
    }

    /// Online nodes that may take new pieces (not suspended or disqualified) with room for a
    /// piece of `piece_len` bytes, as placement candidates weighted by free space; nodes in
    /// vetting weigh a twentieth.
    pub fn candidates(&self, piece_len: u64) -> Vec<Candidate<PeerIdBytes>> {
        self.online()
            .into_iter()
            .filter(|n| matches!(n.state, NodeState::Vetting | NodeState::Active))
            .filter(|n| n.free() >= piece_len)
            .map(|n| Candidate {
                weight: match n.state {
                    NodeState::Vetting => (n.free() / VETTING_SHARE).max(1),
                    _ => n.free(),
                },
                domain: n.domain(),
                node: PeerIdBytes::new(n.peer),
            })
            .collect()
    }

    /// Notes that `peer` took `bytes` more (so placement does not wait for its next
    /// registration to see it filling up).
    pub fn charge(&self, peer: &PeerId, bytes: u64) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get_mut(peer) {
            e.registration.used_bytes = e.registration.used_bytes.saturating_add(bytes);
            e.registration.disk_free_bytes = e.registration.disk_free_bytes.saturating_sub(bytes);
        }
    }
}

/// A peer id with its bytes at hand, for hashing in placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdBytes {
    pub peer: PeerId,
    bytes: Vec<u8>,
}

impl PeerIdBytes {
    pub fn new(peer: PeerId) -> Self {
        PeerIdBytes {
            bytes: peer.to_bytes(),
            peer,
        }
    }
}

impl AsRef<[u8]> for PeerIdBytes {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}
