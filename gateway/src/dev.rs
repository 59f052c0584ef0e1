//! `gateway dev`: a complete local network in one command: this process runs the gateway, and
//! `N` `storage-node` processes each get their own data directory, identity and ports on
//! loopback. Running it again reuses the same data; Ctrl-C stops everything cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::config::RawConfig;
use crate::server::Gateway;

/// What `gateway dev` was asked for.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub nodes: usize,
    pub data: PathBuf,
    pub listen: SocketAddr,
    /// Nodes and gateway talk QUIC instead of TCP.
    pub quic: bool,
}

/// What `cluster.json` holds: everything a script or test needs to use the network.
#[derive(Debug, Serialize)]
pub struct ClusterFile {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub admin: AdminInfo,
    pub gateway_pid: u32,
    pub gateway_peer_id: String,
    pub nodes: Vec<NodeInfo>,
}

/// The gateway's admin endpoint.
#[derive(Debug, Serialize)]
pub struct AdminInfo {
    pub address: String,
    pub token: String,
}

/// One node process.
#[derive(Debug, Serialize)]
pub struct NodeInfo {
    pub pid: u32,
    pub id: String,
    pub data_dir: PathBuf,
    pub listen: Vec<String>,
}

/// The `storage-node` binary: next to this executable (a cargo build puts both there), else on
/// `PATH`.
fn storage_node_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("storage-node")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("storage-node"))
}

/// Runs the network until `cancel` fires.
pub async fn run(opts: DevOptions, cancel: CancellationToken) -> anyhow::Result<()> {
    if opts.nodes == 0 {
        bail!("--nodes: at least one node");
    }
    std::fs::create_dir_all(&opts.data)
        .with_context(|| format!("create {}", opts.data.display()))?;
    let data = std::fs::canonicalize(&opts.data)?;
    let port = opts.listen.port();
    let ip = opts.listen.ip();
    let mut raw = RawConfig::load(None)?;
    raw.data_dir = data.join("gateway").display().to_string();
    raw.s3_listen = opts.listen.to_string();
    raw.admin_listen = SocketAddr::new(ip, port.wrapping_add(1)).to_string();
    let p2p_port = port.wrapping_add(10);
    let (p2p_listen, node_listen) = if opts.quic {
        (
            format!("/ip4/127.0.0.1/udp/{p2p_port}/quic-v1"),
            "/ip4/127.0.0.1/udp/0/quic-v1",
        )
    } else {
        (
            format!("/ip4/127.0.0.1/tcp/{p2p_port}"),
            "/ip4/127.0.0.1/tcp/0",
        )
    };
    raw.p2p_listen = vec![p2p_listen];
    // Lanes on a port of the system's choosing: nodes learn it in every registration reply,
    // so unlike the libp2p port (which node.toml names) it need not survive a restart, and a
    // fixed port next to the others could be taken.
    raw.lane_listen = "127.0.0.1:0".to_string();
    let config = raw.validate()?;
    if config.params.total() > opts.nodes {
        bail!(
            "--nodes {}: a segment needs {} distinct nodes ({} data + {} parity)",
            opts.nodes,
            config.params.total(),
            config.params.k(),
            config.params.m()
        );
    }
    let region = config.region.clone();
    let mut gateway = Gateway::start(config).await?;
    let gateway_addr = gateway
        .p2p_addrs
        .first()
        .context("the gateway listens on no libp2p address")?
        .to_string();

    let (access_key, secret_key) = dev_key(&gateway)?;

    let binary = storage_node_binary();
    let mut children: Vec<(Child, PathBuf)> = Vec::new();
    let started = start_nodes(
        &binary,
        &data,
        &gateway,
        &gateway_addr,
        node_listen,
        opts.nodes,
        &mut children,
    )
    .await;
    if let Err(e) = started {
        stop_nodes(&mut children).await;
        gateway.stop().await;
        return Err(e);
    }

    // Wait until every node has registered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while gateway.nodes.online().len() < opts.nodes {
        if tokio::time::Instant::now() > deadline || cancel.is_cancelled() {
            let online = gateway.nodes.online().len();
            let dirs: Vec<PathBuf> = children.iter().map(|(_, dir)| dir.clone()).collect();
            stop_nodes(&mut children).await;
            gateway.stop().await;
            let logs: Vec<String> = dirs
                .iter()
                .map(|dir| log_tail(&dir.join("node.log"), 3))
                .collect();
            bail!(
                "only {online} of {} nodes registered within 60 s; the end of each node.log:\n{}",
                opts.nodes,
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let online = gateway.nodes.all();
    let nodes = children
        .iter()
        .map(|(child, dir)| {
            let id = storage_node::identity::load(dir)
                .map(|k| k.public().to_peer_id())
                .ok();
            let listen = online
                .iter()
                .find(|n| Some(n.peer) == id)
                .map(|n| n.registration.listen.clone())
                .unwrap_or_default();
            NodeInfo {
                pid: child.id().unwrap_or(0),
                id: id.map(|p| p.to_string()).unwrap_or_default(),
                data_dir: dir.clone(),
                listen,
            }
        })
        .collect();
    let endpoint = format!("http://{}", gateway.s3_addr);
    let cluster = ClusterFile {
        endpoint: endpoint.clone(),
        region: region.clone(),
        access_key: access_key.clone(),
        secret_key: secret_key.clone(),
        admin: AdminInfo {
            address: format!("http://{}", gateway.admin_addr),
            token: gateway.admin_token.clone(),
        },
        gateway_pid: std::process::id(),
        gateway_peer_id: gateway.peer_id.to_string(),
        nodes,
    };
    let cluster_path = data.join("cluster.json");
    // It holds a secret key and the admin token: owner-only, like the token file itself.
    crate::secrets::write_private(
        &cluster_path,
        serde_json::to_string_pretty(&cluster)?.as_bytes(),
    )?;

    eprintln!(
        "\nlocal network up: gateway + {n} storage nodes\n\
         \n  S3 endpoint   {endpoint}\n  region        {region}\n  access key    {access_key}\n  secret key    {secret_key}\n  dashboard     {admin}/dashboard#token={token}\n  cluster file  {path}\n\
         \nTry it:\n\n  export AWS_ACCESS_KEY_ID={access_key} AWS_SECRET_ACCESS_KEY={secret_key} AWS_DEFAULT_REGION={region}\n  aws --endpoint-url {endpoint} s3 mb s3://demo\n  aws --endpoint-url {endpoint} s3 cp ./some-file s3://demo/\n  aws --endpoint-url {endpoint} s3 ls s3://demo\n\
         \nCtrl-C stops the gateway and the nodes.\n",
        n = opts.nodes,
        admin = cluster.admin.address,
        token = cluster.admin.token,
        path = cluster_path.display(),
    );

    cancel.cancelled().await;
    eprintln!("stopping…");
    stop_nodes(&mut children).await;
    gateway.stop().await;
    Ok(())
}

/// The first stored access key, or a new one on the first run.
fn dev_key(gateway: &Gateway) -> anyhow::Result<(String, String)> {
    let keys = gateway.meta.access_keys()?;
    if let Some((id, record)) = keys.first() {
        return Ok((id.clone(), crate::keys::secret(&gateway.master, record)?));
    }
    let key = crate::keys::create(&gateway.meta, &gateway.master, "gateway dev")?;
    Ok((key.id, key.secret))
}

/// Initializes (on the first run) and starts the nodes. The gateway vouches for each, as an
/// operator lists their own nodes in `trusted_nodes`: they share one loopback address, which
/// would make strangers one failure domain.
async fn start_nodes(
    binary: &Path,
    data: &Path,
    gateway: &Gateway,
    gateway_addr: &str,
    listen: &str,
    count: usize,
    children: &mut Vec<(Child, PathBuf)>,
) -> anyhow::Result<()> {
    for i in 0..count {
        let dir = data.join(format!("node-{i}"));
        if !dir.join(storage_node::config::CONFIG_FILE).exists() {
            std::fs::create_dir_all(&dir)?;
            let status = Command::new(binary)
                .arg("init")
                .arg("--data-dir")
                .arg(&dir)
                .args(["--capacity", "10GiB", "--gateway", gateway_addr])
                .args(["--listen", listen])
                .arg("--label")
                .arg(format!("zone=dev-{}", i % 3))
                // An ephemeral port: a fixed one could be taken (the node would not start);
                // each node logs the address it got.
                .args(["--metrics-listen", "127.0.0.1:0"])
                .stdout(Stdio::null())
                .status()
                .await
                .with_context(|| format!("run {} init", binary.display()))?;
            if !status.success() {
                bail!(
                    "{} init for {} failed: {status}",
                    binary.display(),
                    dir.display()
                );
            }
        }
        let peer = storage_node::identity::load(&dir)
            .with_context(|| format!("read the identity in {}", dir.display()))?
            .public()
            .to_peer_id();
        gateway.nodes.trust(peer, &format!("dev/node-{i}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))?;
        let child = Command::new(binary)
            .arg("run")
            .arg("--data-dir")
            .arg(&dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        children.push((child, dir));
    }
    Ok(())
}

/// The last `lines` lines of a log file, prefixed with its path.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    format!("{}:\n  {}", path.display(), tail.join("\n  "))
}

/// SIGTERM to every node, then waits for them (killing any that take too long).
async fn stop_nodes(children: &mut Vec<(Child, PathBuf)>) {
    for (child, _) in children.iter() {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
    }
    for (child, dir) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(dir = %dir.display(), "node did not stop in 30 s; killing it");
                let _ = child.kill().await;
            }
        }
    }
    children.clear();
}
