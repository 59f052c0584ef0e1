//! End-to-end load bench: `gateway dev` (the gateway and six `storage-node` processes) on
//! loopback, driven by `aws-sdk-s3` from this process.
//!
//! ```sh
//! cargo build --workspace && cargo bench -p benches --bench e2e --profile dev
//! ```
//!
//! Phases: 4 KiB objects at concurrency 16 (ops/s), one 64 MiB stream, one 1 GiB stream,
//! 64 MiB objects at concurrency 4 (MB/s up and down). After each phase it reports the gateway's
//! peak RSS (VmHWM) and the CPU seconds per GB the gateway and the nodes spent. Every process
//! shares this machine's cores with the client, so the figures are for the whole system on one
//! box, not for a gateway with its own hardware.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tokio::sync::Semaphore;

const MIB: usize = 1 << 20;

fn target_dir() -> PathBuf {
    // target/<profile>/deps/e2e-<hash> → target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

struct Network {
    child: Child,
    gateway_pid: u32,
    node_pids: Vec<u32>,
    client: aws_sdk_s3::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let _ = self.child.wait();
    }
}

async fn start() -> Network {
    let bin = target_dir().join("gateway");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&bin)
        .args(["dev", "--nodes", "6", "--data"])
        .arg(&data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .env("GATEWAY_MAX_REQUESTS", "256")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let cluster: serde_json::Value = loop {
        if let Ok(t) = std::fs::read_to_string(data.join("cluster.json")) {
            if let Ok(v) = serde_json::from_str(&t) {
                break v;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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
            "b",
        ))
        .force_path_style(true)
        .build();
    Network {
        child,
        gateway_pid: cluster["gateway_pid"].as_u64().unwrap() as u32,
        node_pids: cluster["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["pid"].as_u64().unwrap() as u32)
            .collect(),
        client: aws_sdk_s3::Client::from_conf(config),
        _dir: dir,
    }
}

fn proc_file(pid: u32, name: &str) -> String {
    std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join(name)).unwrap_or_default()
}

/// Peak resident set size in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    proc_file(pid, "status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// User + system CPU seconds of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = proc_file(pid, "stat");
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command name: state is 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

struct Cpu {
    gateway: f64,
    nodes: f64,
}

fn cpu(net: &Network) -> Cpu {
    Cpu {
        gateway: cpu_secs(net.gateway_pid),
        nodes: net.node_pids.iter().map(|&p| cpu_secs(p)).sum(),
    }
}

fn report(net: &Network, name: &str, bytes: usize, ops: usize, elapsed: Duration, before: Cpu) {
    let after = cpu(net);
    let secs = elapsed.as_secs_f64();
    let gb = bytes as f64 / 1e9;
    println!(
        "{name:<34} {:>9.1} MB/s {:>9.0} ops/s   gateway {:>5.2} CPU-s/GB  nodes {:>5.2} CPU-s/GB   gateway peak RSS {:>6.1} MiB",
        bytes as f64 / 1e6 / secs,
        ops as f64 / secs,
        (after.gateway - before.gateway) / gb,
        (after.nodes - before.nodes) / gb,
        peak_rss_mib(net.gateway_pid),
    );
}

async fn put_many(net: &Network, prefix: &str, count: usize, body: Bytes, concurrency: usize) {
    let limit = Arc::new(Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for i in 0..count {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let (s3, body, key) = (net.client.clone(), body.clone(), format!("{prefix}/{i}"));
        tasks.push(tokio::spawn(async move {
            s3.put_object()
                .bucket("bench")
                .key(key)
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap();
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn get_many(net: &Network, prefix: &str, count: usize, concurrency: usize) -> usize {
    let limit = Arc::new(Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for i in 0..count {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let (s3, key) = (net.client.clone(), format!("{prefix}/{i}"));
        tasks.push(tokio::spawn(async move {
            let mut out = s3
                .get_object()
                .bucket("bench")
                .key(key)
                .send()
                .await
                .unwrap();
            let mut n = 0;
            while let Some(chunk) = out.body.next().await {
                n += chunk.unwrap().len();
            }
            drop(permit);
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

#[tokio::main]
async fn main() {
    let net = start().await;
    net.client
        .create_bucket()
        .bucket("bench")
        .send()
        .await
        .unwrap();
    println!(
        "gateway dev: 6 nodes, k=4 m=2, 1 MiB pieces; client, gateway and nodes share this machine"
    );

    let small = Bytes::from(tests::test_bytes(4096, 1));
    let (n, c) = (2000, 16);
    let (before, t) = (cpu(&net), Instant::now());
    put_many(&net, "small", n, small, c).await;
    report(
        &net,
        "PUT 4 KiB x2000, c=16",
        n * 4096,
        n,
        t.elapsed(),
        before,
    );
    let (before, t) = (cpu(&net), Instant::now());
    let got = get_many(&net, "small", n, c).await;
    report(&net, "GET 4 KiB x2000, c=16", got, n, t.elapsed(), before);

    for (name, size, count, c) in [
        ("64 MiB, one stream", 64 * MIB, 1, 1),
        ("1 GiB, one stream", 1024 * MIB, 1, 1),
        ("64 MiB x16, c=4", 64 * MIB, 16, 4),
    ] {
        let body = Bytes::from(tests::test_bytes(size, size as u64));
        let prefix = format!("obj-{size}-{count}");
        let (before, t) = (cpu(&net), Instant::now());
        put_many(&net, &prefix, count, body, c).await;
        report(
            &net,
            &format!("PUT {name}"),
            size * count,
            count,
            t.elapsed(),
            before,
        );
        let (before, t) = (cpu(&net), Instant::now());
        let got = get_many(&net, &prefix, count, c).await;
        assert_eq!(got, size * count);
        report(
            &net,
            &format!("GET {name}"),
            got,
            count,
            t.elapsed(),
            before,
        );
    }
}
