//! What the process tests share: starting `gateway dev` on a data directory, reading its
//! `cluster.json`, an S3 client for it, an upload that stays in flight, and signalling processes
//! by pid.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use rustix::process::Pid;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_gateway");

/// The `storage-node` binary cargo built next to the gateway.
pub fn storage_node_bin() -> PathBuf {
    let path = Path::new(BIN).with_file_name("storage-node");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so it is built",
        path.display()
    );
    path
}

/// A port for `gateway dev`'s S3 endpoint. It also takes the next one (admin) and +10 (libp2p,
/// TCP or UDP), so all of them must be free, and they are picked below the kernel's ephemeral
/// range (32768 up): a port the system hands out, for another test's listener or connection,
/// could otherwise take one of them before the gateway binds it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let free = |port: u16| {
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
    };
    for _ in 0..1000 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 20_000 + (random % 12_000) as u16;
        if [port, port + 1, port + 10].into_iter().all(free) {
            return port;
        }
    }
    panic!("no free ports for gateway dev");
}

/// Starts `gateway dev` with `nodes` nodes; `env` reaches the gateway and, inherited, its nodes
/// (`RUST_LOG` is `warn` unless `env` says otherwise).
pub fn spawn_dev(data: &Path, port: u16, nodes: usize, env: &[(&str, &str)]) -> Child {
    storage_node_bin();
    Command::new(BIN)
        .args(["dev", "--nodes", &nodes.to_string(), "--data"])
        .arg(data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Waits for `gateway dev` to write `cluster.json` (the network is up) and returns it.
pub async fn wait_cluster(data: &Path) -> serde_json::Value {
    let path = data.join("cluster.json");
    for _ in 0..1200 {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(v) = serde_json::from_str(&text) {
                // It holds a secret key and the admin token.
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(
                    mode & 0o077,
                    0,
                    "cluster.json is readable by others: {mode:o}"
                );
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway dev did not write {}", path.display());
}

/// An S3 client for the network `cluster.json` describes.
pub fn client(cluster: &serde_json::Value) -> aws_sdk_s3::Client {
    let s = |k: &str| cluster[k].as_str().unwrap().to_string();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(s("region")))
        .endpoint_url(s("endpoint"))
        .credentials_provider(Credentials::new(
            s("access_key"),
            s("secret_key"),
            None,
            None,
            "t",
        ))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Starts a PUT of `body` to `bucket/key` (presigned, over a raw connection) that announces the
/// whole body, sends only its first `sent` bytes and then waits: an upload that cannot finish,
/// however fast the network, until something kills the connection. The task returns whatever
/// the gateway answered by then (nothing, when the gateway died first).
pub async fn stalled_upload(
    s3: &aws_sdk_s3::Client,
    cluster: &serde_json::Value,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    sent: usize,
) -> JoinHandle<String> {
    assert!(
        sent < body.len(),
        "a stalled upload leaves part of its body unsent"
    );
    let presigned = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(3600))
                .unwrap(),
        )
        .await
        .unwrap();
    let uri: axum::http::Uri = presigned.uri().parse().unwrap();
    let addr = cluster["endpoint"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        uri.path_and_query().unwrap(),
        body.len()
    );
    tokio::spawn(async move {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let sending = async {
            conn.write_all(head.as_bytes()).await?;
            conn.write_all(&body[..sent]).await
        };
        // A write cut off by the kill ends here too; the answer, if any, is still read.
        let _ = sending.await;
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    })
}

pub fn pid(raw: u32) -> Pid {
    Pid::from_raw(i32::try_from(raw).unwrap()).unwrap()
}

/// Whether process `raw` has ended (gone, or a zombie nobody has reaped yet).
pub fn is_dead(raw: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{raw}/stat")) {
        // The state follows the command name in parentheses, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    }
}

pub async fn wait_gone(raw: u32) {
    for _ in 0..400 {
        if is_dead(raw) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("process {raw} did not exit");
}

pub fn node_pids(cluster: &serde_json::Value) -> Vec<u32> {
    cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| u32::try_from(n["pid"].as_u64().unwrap()).unwrap())
        .collect()
}

/// `len` bytes that differ for each `seed`.
pub fn data(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((seed * 31 + j * 7) % 251) as u8)
        .collect()
}

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() {
                files(&p)
            } else {
                vec![p]
            }
        })
        .collect()
}
