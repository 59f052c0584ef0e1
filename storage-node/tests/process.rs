//! The real `storage-node` binary: `init`, `run` against an in-process gateway, a kill -9 in the
//! middle of its life, a restart, and a clean SIGTERM shutdown.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chunker::PieceId;
use libp2p::identity::Keypair;
use libp2p::PeerId;
use storage_node::client::{serve_registrations, NodeClient};
use storage_node::net::{self, HostHandle};
use storage_node::protocol::{RegistrationReply, Request, Response};

const BIN: &str = env!("CARGO_BIN_EXE_storage-node");
const T: Duration = Duration::from_secs(10);

fn init(dir: &Path, gateway: &str) -> PeerId {
    let out = Command::new(BIN)
        .args(["init", "--data-dir"])
        .arg(dir)
        .args([
            "--capacity",
            "64MiB",
            "--gateway",
            gateway,
            "--label",
            "region=test",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn run(dir: &Path, metrics: SocketAddr) -> Child {
    Command::new(BIN)
        .args(["run", "--data-dir"])
        .arg(dir)
        .args(["--metrics-listen", &metrics.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// `storage-node status --json` for `dir`.
fn status_json(dir: &Path) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["status", "--json", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The body of a plain HTTP/1.1 GET.
fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// A node process killed when the test ends, passed or failed (SIGKILL ends a stopped one too).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (e.g. "STOP") to `child`.
fn signal(child: &Child, signal: &str) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap()
        .success());
}

/// A gateway host that counts registrations per node.
async fn gateway() -> (HostHandle, String, Arc<Mutex<Vec<PeerId>>>) {
    let host = net::spawn(Keypair::generate_ed25519()).unwrap();
    host.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .await
        .unwrap();
    let addr = format!(
        "{}/p2p/{}",
        host.listen_addrs(1, T).await[0],
        host.peer_id()
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(serve_registrations(
        host.clone(),
        Arc::new(move |peer, _| {
            s.lock().unwrap().push(peer);
            RegistrationReply::Accepted {
                heartbeat_secs: 1,
                lanes: None,
            }
        }),
        16,
    ));
    (host, addr, seen)
}

async fn wait_for(host: &HostHandle, seen: &Mutex<Vec<PeerId>>, node: PeerId, after: usize) {
    for _ in 0..150 {
        if seen.lock().unwrap().iter().filter(|p| **p == node).count() > after
            && host.is_connected(&node)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node {node} did not (re)register");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_pieces_survive_kill_9_and_sigterm_stops_cleanly() {
    let (host, addr, seen) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let node = init(dir.path(), &addr);

    let metrics = free_addr();
    let mut child = run(dir.path(), metrics);
    wait_for(&host, &seen, node, 0).await;
    let client = NodeClient::new(host.clone());
    let mut held = Vec::new();
    for i in 0..6u8 {
        let data: Vec<u8> = (0..(100_000 + i as usize * 50_000))
            .map(|j| (j as u8) ^ i)
            .collect();
        let id = PieceId::of(&data);
        let req = Request::PutPiece {
            id,
            len: data.len() as u64,
        };
        assert_eq!(
            client.call(node, &req, &data, T).await.unwrap().0,
            Response::Stored { already: false }
        );
        held.push((id, data));
    }
    child.kill().unwrap(); // SIGKILL: no chance to flush anything
    child.wait().unwrap();
    host.wait_disconnected(&node).await;

    let registered = seen.lock().unwrap().iter().filter(|p| **p == node).count();
    let mut child = run(dir.path(), metrics);
    wait_for(&host, &seen, node, registered).await;
    for (id, data) in &held {
        let (resp, bytes) = client
            .call(
                node,
                &Request::GetPiece {
                    id: *id,
                    range: None,
                },
                &[],
                T,
            )
            .await
            .unwrap();
        assert_eq!(
            resp,
            Response::Piece {
                len: data.len() as u64
            }
        );
        assert_eq!(&bytes, data);
    }

    // An operator's view: /health and /metrics, including the scrub that ran at start.
    assert!(http_get(metrics, "/health").ends_with("ok\n"));
    let mut text = String::new();
    for _ in 0..100 {
        text = http_get(metrics, "/metrics");
        // The pass at start is over once its end time is set.
        if !text.contains("storage_node_last_scrub_finished_seconds 0\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for line in [
        "storage_node_pieces 6",
        "storage_node_capacity_bytes 67108864",
        "storage_node_requests_total{kind=\"get\",result=\"ok\"} 6",
        "storage_node_scrubbed_pieces_total 6",
        "storage_node_scrub_corrupt_total 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }

    // While it runs, `status` (read-only on the store) sees the scrub too, once the node has
    // saved its counters (every 10 s).
    let mut running = serde_json::Value::Null;
    for _ in 0..150 {
        running = status_json(dir.path());
        if running["last_scrub_finished_ms"].as_u64().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        running["last_scrub_finished_ms"].as_u64().is_some(),
        "{running}"
    );

    // SIGTERM: a clean exit, and the status command reads what the node left.
    signal(&child, "TERM");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let report = status_json(dir.path());
    assert_eq!(report["pieces"], 6);
    assert!(
        report["last_scrub_finished_ms"].as_u64().is_some(),
        "{report}"
    );
    assert_eq!(report["node_id"], node.to_string());
}

#[test]
fn scrub_rehashes_every_piece_of_a_stopped_node_and_names_the_rotten_one() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Keypair::generate_ed25519().public().to_peer_id();
    init(dir.path(), &format!("/ip4/127.0.0.1/tcp/9/p2p/{gateway}"));
    // Pieces as a run would have left them: two in files, one inline in the index.
    let mut ids = Vec::new();
    {
        use storage_node::store::{DiskStore, DiskStoreOptions, PieceStore};
        let store = DiskStore::open(dir.path(), DiskStoreOptions::new(64 << 20)).unwrap();
        for (seed, len) in [(1u8, 300_000), (2, 200_000), (3, 1_000)] {
            let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ seed).collect();
            let id = PieceId::of(&data);
            store.put(id, &data).unwrap();
            ids.push(id);
        }
    }
    let scrub = || {
        Command::new(BIN)
            .args(["scrub", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = scrub();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("3 pieces re-hashed"), "{stdout}");
    assert!(stdout.contains(", 0 corrupt"), "{stdout}");

    // Rot in the first piece's file.
    let name = ids[0].to_string();
    let mut files = Vec::new();
    let mut stack = vec![dir.path().join("pieces")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy() == name {
                files.push(e.path());
            }
        }
    }
    assert_eq!(files.len(), 1, "the piece file of {name}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[123_456] ^= 0x40;
    std::fs::write(&files[0], bytes).unwrap();

    let out = scrub();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("3 pieces re-hashed"), "{stdout}");
    assert!(stdout.contains(&format!("corrupt: {name}")), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 pieces are corrupt"));
    let report = status_json(dir.path());
    assert_eq!(report["scrub_corrupt_found"], 1, "{report}");
    assert!(report["last_scrub_finished_ms"].as_u64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_hung_node_ends_after_one_timeout_and_the_node_answers_once_resumed() {
    let (host, addr, seen) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let node = init(dir.path(), &addr);
    let child = Reaped(run(dir.path(), free_addr()));
    wait_for(&host, &seen, node, 0).await;
    let ping = Request::Ping { nonce: 7 };

    // SIGSTOP: the connection stays up, the node reads nothing. A client with no pooled stream
    // has to open one, which cannot finish; one with a pooled stream sends and hears nothing.
    let pooled = NodeClient::new(host.clone());
    pooled.call(node, &ping, &[], T).await.unwrap();
    signal(&child.0, "STOP");
    let timeout = Duration::from_secs(1);
    for client in [NodeClient::new(host.clone()), pooled.clone()] {
        let started = std::time::Instant::now();
        let err = client.call(node, &ping, &[], timeout).await.unwrap_err();
        let waited = started.elapsed();
        // One timeout, not one per try: a node that let a whole timeout pass is not tried again.
        assert!(
            waited < 2 * timeout,
            "waited {waited:?} for the hung node: {err}"
        );
    }

    signal(&child.0, "CONT");
    let (resp, _) = NodeClient::new(host.clone())
        .call(node, &ping, &[], T)
        .await
        .unwrap();
    assert_eq!(resp, Response::Pong { nonce: 7 });
}
