//! The nodes the gateway knows: who registered, with what capacity and labels, and who is
//! online now; and what placement may believe about each.
//!
//! A node is online while its connection is up and its last registration is younger than three
//! heartbeats. Registrations are remembered in the metadata, so a restarted gateway still knows
//! which nodes hold its pieces before they come back.
//!
//! What a node says about itself (labels, capacity, free space) is shown, never trusted: its
//! failure domain is the operator's word for it ([`Admission::trusted`]) or else the network its
//! connection comes from as this gateway sees it, and a stranger's placement weight is capped by
//! what it has been seen to store, not by the room it claims.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chunker::manifest::{NodeId, PieceLocation};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use storage_node::net::HostHandle;
use storage_node::protocol::{LaneKey, LaneOffer, Registration, RegistrationReply};

use crate::meta::{Meta, NodeRecord};
use crate::placement::{Candidate, Plan, Rules, Shortfall, Taken, Trust};
use crate::reputation::NodeState;
use crate::time::now_ms;

/// Who may register, and how far placement trusts whom: the gateway's own configuration.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// Node ids allowed to register (empty: any node with a valid identity).
    pub allowed: Vec<PeerId>,
    /// Nodes the operator vouches for, each with its failure domain.
    pub trusted: BTreeMap<PeerId, String>,
    /// The placement rules for everyone else.
    pub rules: Rules,
}

/// A node as the gateway sees it now.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub peer: PeerId,
    pub registration: Registration,
    pub last_seen: Option<Instant>,
    pub online: bool,
    pub state: NodeState,
    /// The network its connection comes from (`a.b.c.0/24`, `x:y:z::/48`), while connected.
    pub network: Option<String>,
    /// Its failure domain, if the operator listed it.
    pub trusted_domain: Option<String>,
    /// Bytes of pieces it has taken from this gateway (what it has shown it can store).
    pub stored: u64,
}

/// A stranger's weight is at most what it stores plus as much again (at least this much): its
/// share grows with what it has shown, not with what it claims.
const PROVEN_FLOOR: u64 = 1 << 30;

impl NodeView {
    /// Bytes it says it can still take: the smaller of its unused capacity and its disk's free
    /// space (a claim: placement caps it for strangers).
    pub fn free(&self) -> u64 {
        let r = &self.registration;
        r.capacity_bytes
            .saturating_sub(r.used_bytes)
            .min(r.disk_free_bytes)
    }

    /// How placement trusts it.
    pub fn trust(&self) -> Trust {
        match (&self.trusted_domain, self.state) {
            (Some(_), _) => Trust::Operator,
            (None, NodeState::Vetting) => Trust::Unvetted,
            (None, _) => Trust::Vetted,
        }
    }

    /// Its failure domain for placement: the operator's name for it, else its observed
    /// network (`None`: a stranger that is not connected, so not locatable).
    pub fn domain(&self) -> Option<String> {
        match (&self.trusted_domain, &self.network) {
            (Some(d), _) => Some(format!("operator:{d}")),
            (None, Some(net)) => Some(format!("network:{net}")),
            (None, None) => None,
        }
    }

    /// What placement may weigh it by: an operator's node by the room it reports; a stranger
    /// by that room capped at twice what it stores (at least [`PROVEN_FLOOR`]).
    fn weight(&self) -> u64 {
        match self.trust() {
            Trust::Operator => self.free(),
            Trust::Vetted | Trust::Unvetted => self
                .free()
                .min(self.stored.saturating_add(self.stored.max(PROVEN_FLOOR))),
        }
    }
}

/// The network an address lies in, as placement counts strangers: the /24 of an IPv4 address,
/// the /48 of an IPv6 one (an IPv4-mapped IPv6 address counts as IPv4).
pub fn network_of(addr: &Multiaddr) -> Option<String> {
    let ip = addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    })?;
    Some(match ip.to_canonical() {
        IpAddr::V4(a) => {
            let [x, y, z, _] = a.octets();
            format!("{x}.{y}.{z}.0/24")
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    })
}

struct Entry {
    registration: Registration,
    last_seen: Option<Instant>,
    first_seen_ms: u64,
    state: NodeState,
    stored: u64,
}

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
    trusted: RwLock<BTreeMap<PeerId, String>>,
    rules: Rules,
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
        admission: Admission,
        first_state: NodeState,
        lanes: Option<Lanes>,
    ) -> anyhow::Result<Self> {
        let mut entries = HashMap::new();
        let stored = meta.held_bytes_by_node()?;
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
                        stored: stored.get(&id).copied().unwrap_or(0),
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
            allowed: admission.allowed,
            trusted: RwLock::new(admission.trusted),
            rules: admission.rules,
            first_state,
            lanes,
            remote_peers: Arc::new(RemotePeers::default()),
        })
    }

    /// Vouches for `peer` from now on, with failure domain `domain` (as if it were listed in
    /// the configuration's `trusted_nodes`; for a process that starts its own nodes).
    pub fn trust(&self, peer: PeerId, domain: &str) {
        self.trusted
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, domain.to_string());
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
        // Read before the entries' lock (locks are taken trusted → entries, never the reverse).
        let network = self.host.remote_addr(&peer).as_ref().and_then(network_of);
        let trusted = self
            .trusted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .cloned();
        let (first_seen_ms, changed) = {
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            let entry = entries.entry(peer).or_insert_with(|| Entry {
                registration: registration.clone(),
                last_seen: None,
                first_seen_ms: now,
                state: self.first_state,
                stored: 0,
            });
            if entry.state == NodeState::Disqualified {
                return RegistrationReply::Refused {
                    reason: format!("node {peer} is disqualified"),
                };
            }
            if entry.last_seen.is_none() {
                tracing::info!(
                    %peer,
                    software = %registration.software,
                    network = network.as_deref().unwrap_or("unknown"),
                    trusted_domain = trusted.as_deref().unwrap_or("none (a stranger)"),
                    "node registered"
                );
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

    fn view(&self, peer: &PeerId, e: &Entry, trusted: &BTreeMap<PeerId, String>) -> NodeView {
        NodeView {
            peer: *peer,
            registration: e.registration.clone(),
            last_seen: e.last_seen,
            online: self.entry_online(peer, e),
            state: e.state,
            network: self.host.remote_addr(peer).as_ref().and_then(network_of),
            trusted_domain: trusted.get(peer).cloned(),
            stored: e.stored,
        }
    }

    /// Every known node.
    pub fn all(&self) -> Vec<NodeView> {
        let trusted = self.trusted.read().unwrap_or_else(|p| p.into_inner());
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<NodeView> = entries
            .iter()
            .map(|(peer, e)| self.view(peer, e, &trusted))
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

    /// A piece on `peer`, as placement counts it around new ones (`None`: a node not known or
    /// not locatable now).
    pub fn taken(&self, peer: &PeerId) -> Option<Taken> {
        let trusted = self.trusted.read().unwrap_or_else(|p| p.into_inner());
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let view = self.view(peer, entries.get(peer)?, &trusted);
        Some(Taken {
            domain: view.domain()?,
            trust: view.trust(),
        })
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
    /// piece of `piece_len` bytes and a failure domain placement can name, as candidates.
    pub fn candidates(&self, piece_len: u64) -> Vec<Candidate<PeerIdBytes>> {
        self.online()
            .into_iter()
            .filter(|n| matches!(n.state, NodeState::Vetting | NodeState::Active))
            .filter(|n| n.free() >= piece_len)
            .filter_map(|n| {
                Some(Candidate {
                    weight: n.weight(),
                    domain: n.domain()?,
                    trust: n.trust(),
                    node: PeerIdBytes::new(n.peer),
                })
            })
            .collect()
    }

    /// Where `count` pieces of the segment `seed` go, around the pieces `taken` already in
    /// place, among `candidates` (from [`Nodes::candidates`]), under this gateway's rules.
    pub fn plan(
        &self,
        candidates: &[Candidate<PeerIdBytes>],
        seed: &[u8],
        count: usize,
        taken: &[Taken],
    ) -> Result<Plan<PeerIdBytes>, Shortfall> {
        Plan::new(candidates, seed, count, taken, self.rules)
    }

    /// Whether a segment of `count` pieces of `piece_len` bytes can be placed now, and if not,
    /// why: what status, metrics and refused writes report.
    pub fn writable(&self, count: usize, piece_len: u64) -> Result<(), Shortfall> {
        self.plan(&self.candidates(piece_len), b"writable?", count, &[])
            .map(|_| ())
    }

    /// Notes that `peer` took `bytes` more (so placement does not wait for its next
    /// registration to see it filling up, and a stranger's proven share grows).
    pub fn charge(&self, peer: &PeerId, bytes: u64) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get_mut(peer) {
            e.registration.used_bytes = e.registration.used_bytes.saturating_add(bytes);
            e.registration.disk_free_bytes = e.registration.disk_free_bytes.saturating_sub(bytes);
            e.stored = e.stored.saturating_add(bytes);
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
