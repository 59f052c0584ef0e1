//! The real `gateway` binary running `gateway dev` (the gateway plus `storage-node` processes):
//! a kill -9 in the middle of an upload leaves no visible object, loses nothing committed, and
//! the restarted network collects the abandoned pieces from the nodes.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use common::{
    client, data, free_port, node_pids, pid, stalled_upload, wait_cluster, wait_gone, BIN,
};
use rustix::process::{kill_process, Signal};

/// Quick failure detection and garbage collection.
const FAST_GC: &[(&str, &str)] = &[
    ("GATEWAY_HEARTBEAT", "1s"),
    ("GATEWAY_GC_INTERVAL", "300ms"),
    ("GATEWAY_DELETE_GRACE", "1s"),
];

fn spawn_dev(data: &Path, port: u16, env: &[(&str, &str)]) -> std::process::Child {
    common::spawn_dev(data, port, 6, env)
}

fn piece_files(data: &Path) -> usize {
    (0..6)
        .map(|i| common::files(&data.join(format!("node-{i}")).join("pieces")).len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_upload_leaves_no_object_and_the_restart_collects_its_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("dev");
    let port = free_port();
    let mut gateway = spawn_dev(&data_dir, port, FAST_GC);
    let cluster = wait_cluster(&data_dir).await;
    let s3 = client(&cluster);
    s3.create_bucket().bucket("crash").send().await.unwrap();
    let kept = data(1, 9_000_000);
    s3.put_object()
        .bucket("crash")
        .key("kept")
        .body(ByteStream::from(kept.clone()))
        .send()
        .await
        .unwrap();
    let committed_files = piece_files(&data_dir);
    assert_eq!(committed_files, 18, "three segments of six pieces");

    // A large upload, half of whose body is sent; kill everything once its first pieces reach
    // the nodes.
    let uploader =
        stalled_upload(&s3, &cluster, "crash", "torn", data(2, 64 << 20), 32 << 20).await;
    let mut seen = committed_files;
    for _ in 0..4000 {
        seen = piece_files(&data_dir);
        if seen > committed_files {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(seen > committed_files, "the upload never reached the nodes");
    let _ = kill_process(pid(gateway.id()), Signal::KILL);
    let _ = gateway.wait();
    for node in node_pids(&cluster) {
        let _ = kill_process(pid(node), Signal::KILL);
        wait_gone(node).await;
    }
    let answer = uploader.await.unwrap();
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "the torn upload cannot have succeeded: {answer}"
    );

    // Restart on the same data.
    std::fs::remove_file(data_dir.join("cluster.json")).unwrap();
    let mut gateway = spawn_dev(&data_dir, port, FAST_GC);
    let cluster = wait_cluster(&data_dir).await;
    let s3 = client(&cluster);
    let torn = s3.head_object().bucket("crash").key("torn").send().await;
    assert!(torn.is_err(), "a torn upload must not be visible");
    let got = s3
        .get_object()
        .bucket("crash")
        .key("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().to_vec(),
        kept
    );

    let mut left = 0;
    for _ in 0..200 {
        left = piece_files(&data_dir);
        if left == committed_files {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        left, committed_files,
        "the torn upload's pieces are collected"
    );

    // Ctrl-C stops the gateway and its nodes cleanly.
    let nodes = node_pids(&cluster);
    let _ = kill_process(pid(gateway.id()), Signal::INT);
    let status = gateway.wait().unwrap();
    assert!(status.success(), "{status}");
    for node in nodes {
        wait_gone(node).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_hedge_around_a_hung_node() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("dev");
    // A node that hangs keeps its connection and stays "online" for three heartbeats (30 s
    // here), and a transfer with it would wait for the node timeout (10 minutes here): only
    // hedging can finish the read while it hangs.
    let env = [
        ("GATEWAY_NODE_TIMEOUT", "600s"),
        ("GATEWAY_HEDGE_AFTER", "200ms"),
    ];
    let port = free_port();
    let mut gateway = spawn_dev(&data_dir, port, &env);
    let cluster = wait_cluster(&data_dir).await;
    let s3 = client(&cluster);
    s3.create_bucket().bucket("hung").send().await.unwrap();

    // `gateway status` reads the running gateway's admin API.
    let out = Command::new(BIN)
        .args(["status", "--json"])
        .env("GATEWAY_DATA_DIR", data_dir.join("gateway"))
        .env("GATEWAY_ADMIN_LISTEN", format!("127.0.0.1:{}", port + 1))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["nodes_online"], 6);
    assert_eq!(status["buckets"], 1);
    let body = data(3, 9_000_000);
    s3.put_object()
        .bucket("hung")
        .key("obj")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();

    let nodes = node_pids(&cluster);
    let _ = kill_process(pid(nodes[0]), Signal::STOP);
    let read = async {
        let got = s3
            .get_object()
            .bucket("hung")
            .key("obj")
            .send()
            .await
            .unwrap();
        got.body.collect().await.unwrap().into_bytes().to_vec()
    };
    let got = tokio::time::timeout(Duration::from_secs(60), read).await;
    let _ = kill_process(pid(nodes[0]), Signal::CONT);
    assert_eq!(got.expect("the read must not wait for the hung node"), body);

    let _ = kill_process(pid(gateway.id()), Signal::INT);
    assert!(gateway.wait().unwrap().success());
    for node in nodes {
        wait_gone(node).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audits_ledger_and_remotes_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("dev");
    let port = free_port();
    let env = [
        ("GATEWAY_AUDIT_INTERVAL", "300ms"),
        ("GATEWAY_LEDGER_PERIOD", "2s"),
    ];
    let mut gateway = spawn_dev(&data_dir, port, &env);
    let cluster = wait_cluster(&data_dir).await;
    let s3 = client(&cluster);
    s3.create_bucket().bucket("audited").send().await.unwrap();
    s3.put_object()
        .bucket("audited")
        .key("obj")
        .body(ByteStream::from(data(4, 300_000)))
        .send()
        .await
        .unwrap();

    // `gateway audit export` reads the running gateway's admin API.
    let export = dir.path().join("audits.jsonl");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("GATEWAY_DATA_DIR", data_dir.join("gateway"))
            .env("GATEWAY_ADMIN_LISTEN", format!("127.0.0.1:{}", port + 1))
            .output()
            .unwrap()
    };
    let mut lines = 0;
    for _ in 0..100 {
        let out = run(&[
            "audit",
            "export",
            "--since",
            "1h",
            "-o",
            export.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines = std::fs::read_to_string(&export).unwrap().lines().count();
        if lines >= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(lines >= 12, "only {lines} audits after 30 s");

    // `gateway audit verify` re-checks them offline: every node passed.
    let out = run(&["audit", "verify", export.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{lines} audits: {lines} passes confirmed")),
        "{stdout}"
    );
    // A verdict changed after the fact is caught.
    let text = std::fs::read_to_string(&export).unwrap();
    std::fs::write(
        &export,
        text.replacen("\"verdict\":\"pass\"", "\"verdict\":\"fail\"", 1),
    )
    .unwrap();
    let out = run(&["audit", "verify", export.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 contradicted"));

    // `gateway remote` pairs a bucket through the admin API; the secret comes from the
    // environment and is never shown. (Nothing listens at the remote: the backfilled object
    // stays queued.)
    let remote = |args: &[&str]| {
        Command::new(BIN)
            .arg("remote")
            .args(args)
            .env("GATEWAY_DATA_DIR", data_dir.join("gateway"))
            .env("GATEWAY_ADMIN_LISTEN", format!("127.0.0.1:{}", port + 1))
            .env("REMOTE_SECRET_ACCESS_KEY", "the-remote-secret")
            .output()
            .unwrap()
    };
    let set = [
        "set",
        "audited",
        "--remote-bucket",
        "offsite",
        "--endpoint",
        "http://127.0.0.1:9",
        "--path-style",
        "--access-key-id",
        "AKREMOTE",
        "--mirror",
        "async",
    ];
    let out = remote(&set);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("audited -> http://127.0.0.1:9 offsite/"),
        "{stdout}"
    );
    let out = remote(&["show"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("1 queued"), "{stdout}");
    assert!(!stdout.contains("the-remote-secret"), "{stdout}");
    let out = remote(&["set", "nosuchbucket", "--remote-bucket", "x", "--fallback"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such bucket"));
    let out = remote(&[
        "set",
        "audited",
        "--remote-bucket",
        "x",
        "--endpoint",
        "ftp://x",
        "--fallback",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("http:// or https://"));
    let out = remote(&["remove", "audited"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `gateway ledger`: every node settled with its own receipt, credited what it stored.
    let mut rows = Vec::new();
    for _ in 0..100 {
        let out = run(&["ledger", "--from", "1h", "--format", "csv"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let csv = String::from_utf8_lossy(&out.stdout).to_string();
        rows = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect::<Vec<_>>())
            .collect();
        let receipted = |r: &Vec<String>| r[3].parse::<u64>().unwrap() >= 1;
        if rows.len() == 6 && rows.iter().all(receipted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(rows.len(), 6, "{rows:?}");
    for row in &rows {
        assert!(row[3].parse::<u64>().unwrap() >= 1, "no receipt: {row:?}");
        assert!(
            row[6].parse::<u64>().unwrap() > 0,
            "nothing stored: {row:?}"
        );
    }
    let statements = dir.path().join("statements.jsonl");
    let out = run(&["ledger", "--statements"]);
    std::fs::write(&statements, &out.stdout).unwrap();
    let count = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(count >= 6);
    let out = run(&["ledger", "--verify", statements.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{count} statements verify, 0 do not")),
        "{stdout}"
    );
    // A credit changed after the fact is caught.
    let text = std::fs::read_to_string(&statements).unwrap();
    std::fs::write(
        &statements,
        text.replacen(
            "\"credited\":{\"egress_bytes\":",
            "\"credited\":{\"egress_bytes\":1",
            1,
        ),
    )
    .unwrap();
    let out = run(&["ledger", "--verify", statements.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 do not"));

    let nodes = node_pids(&cluster);
    let _ = kill_process(pid(gateway.id()), Signal::INT);
    assert!(gateway.wait().unwrap().success());
    for node in nodes {
        wait_gone(node).await;
    }
    // The node's side, read while it is stopped: what it did and its countersigned statements.
    let out = Command::new(common::storage_node_bin())
        .args(["status", "--data-dir"])
        .arg(data_dir.join("node-0"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    let gateway_id = cluster["gateway_peer_id"].as_str().unwrap();
    assert!(
        stdout.contains(&format!("ledger     gateway {gateway_id}")),
        "{stdout}"
    );
    assert!(!stdout.contains(" 0 countersigned statements"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_over_quic_stores_and_serves_objects() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("dev");
    let mut gateway = spawn_dev(&data_dir, free_port(), &[("GATEWAY_DEV_TRANSPORT", "quic")]);
    let cluster = wait_cluster(&data_dir).await;
    for node in cluster["nodes"].as_array().unwrap() {
        let listen = node["listen"].to_string();
        assert!(
            listen.contains("/udp/") && listen.contains("/quic-v1"),
            "{listen}"
        );
    }
    let s3 = client(&cluster);
    s3.create_bucket().bucket("quic").send().await.unwrap();
    let body = data(7, 9_000_000);
    s3.put_object()
        .bucket("quic")
        .key("object")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(piece_files(&data_dir), 18, "three segments of six pieces");
    let got = s3
        .get_object()
        .bucket("quic")
        .key("object")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().to_vec(),
        body
    );
    let nodes = node_pids(&cluster);
    let _ = kill_process(pid(gateway.id()), Signal::INT);
    assert!(gateway.wait().unwrap().success());
    for node in nodes {
        wait_gone(node).await;
    }
}
