//! Integration tests across crates, and the harness they share.
//!
//! [`Cluster`] starts a real gateway (S3 on an ephemeral port, libp2p on another) and real
//! storage nodes (each its own libp2p host, rocksdb store and piece directory) in this process,
//! and hands out an `aws-sdk-s3` client signed with a real access key. Nodes can be stopped,
//! their piece files damaged and their stores made to misbehave ([`faulty::Fault`]) to test
//! failure paths.

#![allow(clippy::unwrap_used)]

pub mod faulty;
pub mod remote;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use gateway::config::RawConfig;
use gateway::server::Gateway;
use libp2p::PeerId;
use storage_node::store::{DiskStore, PieceStore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Wraps a node's real store (to make it misbehave).
pub type StoreWrap = Arc<dyn Fn(Arc<DiskStore>) -> Arc<dyn PieceStore> + Send + Sync>;

/// A storage node running in this process.
pub struct TestNode {
    pub dir: PathBuf,
    pub peer: PeerId,
    cancel: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// Wraps its store when it (re)starts.
    pub wrap: Option<StoreWrap>,
    /// `None` for the cluster's own nodes (operator-trusted, on TCP from 127.0.0.1).
    pub stranger: Option<Stranger>,
}

/// A node the gateway does not know: it connects over QUIC from an address of its own, with
/// whatever labels and capacity it likes to claim.
#[derive(Debug, Clone)]
pub struct Stranger {
    /// The loopback address it listens and dials from (e.g. `127.0.7.1`: network
    /// `127.0.7.0/24` to the gateway).
    pub ip: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub capacity: String,
}

impl std::fmt::Debug for TestNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNode")
            .field("dir", &self.dir)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl TestNode {
    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.task.is_some()
    }

    /// Every piece file it holds.
    pub fn piece_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.join("pieces"), &mut out);
        out
    }
}

/// A gateway and its nodes, with an S3 client.
#[derive(Debug)]
pub struct Cluster {
    pub gateway: Gateway,
    pub nodes: Vec<TestNode>,
    pub access_key: String,
    pub secret_key: String,
    /// The gateway's configuration (a restart reuses it, with the same node port).
    config: RawConfig,
    /// Pause between scrub passes of nodes (re)started from now on.
    pub scrub_interval: String,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A gateway with `nodes` nodes, all registered. `tweak` adjusts the gateway's configuration
    /// (whose defaults here are test-friendly: fast heartbeat and delete passes).
    pub async fn start(nodes: usize, tweak: impl FnOnce(&mut RawConfig)) -> Cluster {
        // Logs of the gateway and nodes, shown for failing tests (RUST_LOG=info, debug, …).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut raw = RawConfig {
            data_dir: dir.path().join("gateway").display().to_string(),
            s3_listen: "127.0.0.1:0".into(),
            admin_listen: "127.0.0.1:0".into(),
            p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            lane_listen: "127.0.0.1:0".into(),
            heartbeat: "1s".into(),
            gc_interval: "500ms".into(),
            delete_grace: "0s".into(),
            node_timeout: "10s".into(),
            ..RawConfig::default()
        };
        tweak(&mut raw);
        let gateway = Gateway::start(raw.validate().unwrap()).await.unwrap();
        let key = gateway::keys::create(&gateway.meta, &gateway.master, "tests").unwrap();
        // Restarts listen where the nodes were told to dial.
        raw.p2p_listen = gateway
            .p2p_addrs
            .iter()
            .map(|a| {
                let mut a = a.clone();
                a.pop(); // the /p2p/<id> suffix
                a.to_string()
            })
            .collect();
        let mut cluster = Cluster {
            gateway,
            nodes: Vec::new(),
            access_key: key.id,
            secret_key: key.secret,
            config: raw,
            scrub_interval: "24h".into(),
            dir,
        };
        for _ in 0..nodes {
            cluster.add_node().await;
        }
        cluster.wait_online(nodes).await;
        cluster
    }

    /// Starts one more node (not waiting for it to register).
    pub async fn add_node(&mut self) -> usize {
        self.add_node_wrapped(None).await
    }

    /// Starts one more node whose store is wrapped by `wrap` (not waiting for it to register).
    /// The cluster's own nodes are operator-trusted, in failure domains `z0`, `z1`, `z2` by turn.
    pub async fn add_node_wrapped(&mut self, wrap: Option<StoreWrap>) -> usize {
        let i = self.new_node(wrap, None);
        let domain = format!("z{}", i % 3);
        let peer = self.nodes[i].peer;
        self.gateway.nodes.trust(peer, &domain);
        self.config.trusted_nodes.push(format!("{peer}={domain}"));
        self.start_node(i);
        i
    }

    /// Starts a node the gateway does not know (not waiting for it to register); the gateway
    /// must listen on QUIC (`/ip4/127.0.0.1/udp/0/quic-v1` in `p2p_listen`).
    pub fn add_stranger(&mut self, stranger: Stranger) -> usize {
        let i = self.new_node(None, Some(stranger));
        self.start_node(i);
        i
    }

    fn new_node(&mut self, wrap: Option<StoreWrap>, stranger: Option<Stranger>) -> usize {
        let i = self.nodes.len();
        let dir = self.dir.path().join(format!("node-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let keypair = storage_node::identity::create(&dir).unwrap();
        let peer = keypair.public().to_peer_id();
        self.nodes.push(TestNode {
            dir,
            peer,
            cancel: CancellationToken::new(),
            task: None,
            wrap,
            stranger,
        });
        i
    }

    /// (Re)starts node `i`.
    pub fn start_node(&mut self, i: usize) {
        let quic = |a: &libp2p::Multiaddr| a.to_string().contains("/quic-v1");
        let node = &mut self.nodes[i];
        let (gateways, listen, labels, capacity) = match &node.stranger {
            None => (
                self.gateway
                    .p2p_addrs
                    .iter()
                    .find(|a| !quic(a))
                    .map(|a| a.to_string())
                    .into_iter()
                    .collect(),
                "/ip4/127.0.0.1/tcp/0".to_string(),
                [("zone".to_string(), format!("z{}", i % 3))].into(),
                "4GiB".to_string(),
            ),
            Some(s) => (
                self.gateway
                    .p2p_addrs
                    .iter()
                    .find(|a| quic(a))
                    .map(|a| a.to_string())
                    .into_iter()
                    .collect(),
                format!("/ip4/{}/udp/0/quic-v1", s.ip),
                s.labels.clone(),
                s.capacity.clone(),
            ),
        };
        let raw = storage_node::config::RawConfig {
            capacity,
            gateways,
            listen: vec![listen],
            labels,
            metrics_listen: "127.0.0.1:0".into(),
            scrub_rate: "16MiB".into(),
            scrub_interval: self.scrub_interval.clone(),
        };
        let config = raw.validate(&node.dir).unwrap();
        let keypair = storage_node::identity::load(&node.dir).unwrap();
        node.cancel = CancellationToken::new();
        let wrap = node.wrap.clone();
        node.task = Some(tokio::spawn(storage_node::daemon::run_wrapped(
            config,
            keypair,
            move |store| match wrap {
                Some(wrap) => wrap(store),
                None => store,
            },
            node.cancel.clone(),
        )));
    }

    /// Stops the gateway and starts it again on the same data (its node port too, so nodes
    /// reconnect on their own; S3 clients must be made anew: [`Cluster::client`]).
    pub async fn restart_gateway(self) -> Cluster {
        let Cluster {
            mut gateway,
            nodes,
            access_key,
            secret_key,
            config,
            scrub_interval,
            dir,
        } = self;
        gateway.stop().await;
        drop(gateway);
        // The metadata closes once the last task holding it has ended (the libp2p host winds
        // down when its last handle is gone).
        let mut tries = 0;
        let gateway = loop {
            match Gateway::start(config.validate().unwrap()).await {
                Ok(g) => break g,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e; // the old one has not let go of the metadata yet
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("gateway restart: {e:#}"),
            }
        };
        Cluster {
            gateway,
            nodes,
            access_key,
            secret_key,
            config,
            scrub_interval,
            dir,
        }
    }

    /// Stops node `i` and waits until the gateway sees it gone.
    pub async fn stop_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.cancel.cancel();
        if let Some(task) = node.task.take() {
            task.await.unwrap().unwrap();
        }
        let peer = node.peer;
        for _ in 0..200 {
            if !self.gateway.nodes.is_online(&peer) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {i} still online after stopping");
    }

    /// Waits until `count` nodes are online.
    pub async fn wait_online(&self, count: usize) {
        for _ in 0..600 {
            if self.gateway.nodes.online().len() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "only {} of {count} nodes came online",
            self.gateway.nodes.online().len()
        );
    }

    /// The S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.gateway.s3_addr)
    }

    /// An S3 client with the cluster's key and the SDK's default checksum behaviour.
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_with(&self.access_key, &self.secret_key)
    }

    /// An S3 client with other credentials.
    pub fn client_with(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(Credentials::new(
                access_key, secret_key, None, None, "tests",
            ))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Stops everything.
    pub async fn stop(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_running() {
                self.nodes[i].cancel.cancel();
                if let Some(t) = self.nodes[i].task.take() {
                    let _ = t.await;
                }
            }
        }
        self.gateway.stop().await;
    }
}

/// Deterministic pseudo-random bytes (xorshift), so tests need not keep copies to compare.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Puts `data` at `bucket`/`key`, which must succeed.
pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap();
}

/// The bytes of `bucket`/`key`, which must be readable.
pub async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// The S3 error code of a failed call (`(none)` if it had none).
pub fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("(none)").to_string()
}
