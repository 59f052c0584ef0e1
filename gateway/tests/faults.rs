//! The fault suite: a `gateway dev` network of separate processes (the gateway and eight
//! `storage-node`s, k = 4, m = 2) under concurrent PUT/GET load while nodes are killed, hung,
//! corrupted and filled up, and the gateway itself is killed. Every committed object must read
//! back byte-identical throughout. The figures of the run go to `target/tmp/fault-suite.txt`
//! (`.ci/run` prints them); `FAULT_SEED` replays a run's random choices.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::primitives::ByteStream;
use common::{
    client, data, free_port, is_dead, pid, spawn_dev, stalled_upload, wait_cluster, wait_gone,
};
use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use rustix::process::{kill_process, Signal};
use serde_json::Value;

const NODES: usize = 8;
/// Parity pieces per segment: the most nodes that may be down at once.
const M: usize = 2;
const BUCKET: &str = "faults";
/// Object sizes the writers cycle through: inline, one small segment, one segment, three.
const SIZES: [usize; 4] = [1_500, 300_000, 2_500_000, 9_000_000];
/// How long the nodes are churned under load, and how long one node hangs.
const CHURN: Duration = Duration::from_secs(20);
const HANG: Duration = Duration::from_secs(6);
/// Piece files corrupted in place.
const FLIPS: usize = 12;
/// A node whose data directory is a small filesystem of its own, filled up in one phase.
const FULL_NODE: usize = 7;

/// Quick failure detection, hedging, scrubbing, repair and garbage collection.
fn env() -> Vec<(&'static str, String)> {
    [
        ("GATEWAY_HEARTBEAT", "1s"),
        ("GATEWAY_NODE_TIMEOUT", "5s"),
        ("GATEWAY_HEDGE_AFTER", "200ms"),
        ("GATEWAY_GC_INTERVAL", "300ms"),
        // Pieces of overwritten objects and repaired segments wait a second, not minutes.
        ("GATEWAY_DELETE_GRACE", "1s"),
        ("GATEWAY_REPAIR_INTERVAL", "500ms"),
        ("GATEWAY_OFFLINE_GRACE", "4s"),
        ("GATEWAY_CENSUS_INTERVAL", "1s"),
        ("STORAGE_NODE_SCRUB_INTERVAL", "1s"),
        ("STORAGE_NODE_SCRUB_RATE", "256MiB"),
        // Nodes log where their /metrics is.
        ("RUST_LOG", "warn,storage_node::daemon=info"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// xorshift64*: reproducible random choices from one printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One object a writer created (or tried to).
#[derive(Clone)]
struct Obj {
    key: String,
    seed: usize,
    len: usize,
}

impl Obj {
    fn new(seed: usize) -> Obj {
        Obj {
            key: format!("obj-{seed:05}"),
            seed,
            len: SIZES[seed % SIZES.len()],
        }
    }

    fn bytes(&self) -> Vec<u8> {
        data(self.seed, self.len)
    }
}

/// The load generators' shared state and tallies.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    next_seed: AtomicUsize,
    puts: AtomicU64,
    puts_failed: AtomicU64,
    gets: AtomicU64,
    gets_failed: AtomicU64,
    wrong_bytes: AtomicU64,
    slowest_get_ms: AtomicU64,
    acked: Mutex<Vec<Obj>>,
    /// Writes that failed: each must be absent or whole afterwards.
    unacked: Mutex<Vec<Obj>>,
    errors: Mutex<Vec<String>>,
}

impl Load {
    fn error(&self, what: String) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 20 {
            errors.push(what);
        }
    }

    fn acked(&self) -> Vec<Obj> {
        self.acked.lock().unwrap().clone()
    }

    /// GETs `obj` and compares; counts the outcome.
    async fn check(&self, s3: &aws_sdk_s3::Client, obj: &Obj) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let read = async {
            let got = s3.get_object().bucket(BUCKET).key(&obj.key).send().await?;
            Ok::<_, anyhow::Error>(got.body.collect().await?.into_bytes())
        };
        let result = tokio::time::timeout(Duration::from_secs(60), read).await;
        let ms = started.elapsed().as_millis() as u64;
        self.slowest_get_ms.fetch_max(ms, Ordering::Relaxed);
        match result {
            Ok(Ok(body)) if body[..] == obj.bytes()[..] => {}
            Ok(Ok(body)) => {
                self.wrong_bytes.fetch_add(1, Ordering::Relaxed);
                self.error(format!("GET {}: {} wrong bytes", obj.key, body.len()));
            }
            Ok(Err(e)) => {
                self.gets_failed.fetch_add(1, Ordering::Relaxed);
                self.error(format!("GET {}: {e:#}", obj.key));
            }
            Err(_) => {
                self.gets_failed.fetch_add(1, Ordering::Relaxed);
                self.error(format!("GET {}: no answer in 60 s", obj.key));
            }
        }
    }

    /// Checks every write that failed: absent, or (the commit happened, the answer was lost)
    /// whole. Returns how many are visible.
    async fn check_failed_writes(&self, s3: &aws_sdk_s3::Client) -> usize {
        let unacked = self.unacked.lock().unwrap().clone();
        let mut visible = 0;
        for obj in &unacked {
            let head = s3.head_object().bucket(BUCKET).key(&obj.key).send().await;
            if head.is_ok() {
                visible += 1;
                self.check(s3, obj).await;
            }
        }
        visible
    }

    fn reset_gets(&self) {
        self.gets.store(0, Ordering::Relaxed);
        self.gets_failed.store(0, Ordering::Relaxed);
        self.slowest_get_ms.store(0, Ordering::Relaxed);
    }
}

async fn writer(s3: aws_sdk_s3::Client, load: Arc<Load>) {
    while !load.stop.load(Ordering::Relaxed) {
        let obj = Obj::new(load.next_seed.fetch_add(1, Ordering::Relaxed));
        load.puts.fetch_add(1, Ordering::Relaxed);
        let put = s3
            .put_object()
            .bucket(BUCKET)
            .key(&obj.key)
            .body(ByteStream::from(obj.bytes()))
            .send();
        match tokio::time::timeout(Duration::from_secs(60), put).await {
            Ok(Ok(_)) => load.acked.lock().unwrap().push(obj),
            failed => {
                load.puts_failed.fetch_add(1, Ordering::Relaxed);
                let why = match failed {
                    Ok(Err(e)) => format!("{:#}", anyhow::Error::from(e)),
                    _ => "no answer in 60 s".into(),
                };
                load.error(format!("PUT {}: {why}", obj.key));
                load.unacked.lock().unwrap().push(obj);
            }
        }
    }
}

/// PUTs `n` more 2.5 MB objects (keys `full-…`), adding each acknowledged one to `done`;
/// returns how many failed.
async fn put_all(s3: &aws_sdk_s3::Client, done: &mut Vec<Obj>, n: usize) -> usize {
    let mut failed = 0;
    for _ in 0..n {
        let at = done.len() + failed;
        let obj = Obj {
            key: format!("full-{at:03}"),
            seed: 500_000 + at,
            len: 2_500_000,
        };
        let put = s3
            .put_object()
            .bucket(BUCKET)
            .key(&obj.key)
            .body(ByteStream::from(obj.bytes()))
            .send()
            .await;
        match put {
            Ok(_) => done.push(obj),
            Err(e) => {
                failed += 1;
                eprintln!("PUT {}: {:#}", obj.key, anyhow::Error::from(e));
            }
        }
    }
    failed
}

async fn reader(s3: aws_sdk_s3::Client, load: Arc<Load>, seed: u64) {
    let mut rng = Rng(seed | 1);
    while !load.stop.load(Ordering::Relaxed) {
        let pick = {
            let acked = load.acked.lock().unwrap();
            (!acked.is_empty()).then(|| acked[rng.below(acked.len())].clone())
        };
        match pick {
            Some(obj) => load.check(&s3, &obj).await,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The running network and every process of it this test knows.
struct Net {
    dev: PathBuf,
    port: u16,
    env: Vec<(&'static str, String)>,
    gateway: Child,
    cluster: Value,
    /// The client of the load: no retries, so every failure counts.
    s3: aws_sdk_s3::Client,
    ids: Vec<String>,
    /// The current process of each node.
    pids: Vec<u32>,
    /// Node processes this test started (restarts after a kill).
    restarted: Vec<Child>,
    /// The small filesystem under the full node's directory, if one could be mounted.
    mounted: Option<PathBuf>,
}

impl Net {
    async fn start(dev: &Path, port: u16, env: Vec<(&'static str, String)>) -> Net {
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let gateway = spawn_dev(dev, port, NODES, &pairs);
        let cluster = wait_cluster(dev).await;
        let s3 = client(&cluster);
        let s3 = aws_sdk_s3::Client::from_conf(
            s3.config()
                .to_builder()
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        let nodes = cluster["nodes"].as_array().unwrap();
        Net {
            dev: dev.to_path_buf(),
            port,
            env,
            gateway,
            ids: nodes
                .iter()
                .map(|n| n["id"].as_str().unwrap().to_string())
                .collect(),
            pids: common::node_pids(&cluster),
            cluster,
            s3,
            restarted: Vec::new(),
            mounted: None,
        }
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dev.join(format!("node-{i}"))
    }

    async fn admin(&self, path: &str) -> Value {
        let address = self.cluster["admin"]["address"].as_str().unwrap();
        let addr: SocketAddr = address.trim_start_matches("http://").parse().unwrap();
        let token = self.cluster["admin"]["token"].as_str().unwrap();
        let (status, body) = gateway::admin::request(addr, token, "GET", path, None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn online(&self) -> BTreeSet<String> {
        let nodes = self.admin("/admin/v1/nodes").await;
        nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["online"] == true)
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn kill_node(&mut self, i: usize) {
        let _ = kill_process(pid(self.pids[i]), Signal::KILL);
    }

    /// Starts node `i` again on its data and waits until the gateway has it online.
    async fn restart_node(&mut self, i: usize) {
        wait_gone(self.pids[i]).await;
        let dir = self.node_dir(i);
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("node.log"))
            .unwrap();
        let child = Command::new(common::storage_node_bin())
            .arg("run")
            .arg("--data-dir")
            .arg(&dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.pids[i] = child.id();
        self.restarted.push(child);
        for _ in 0..300 {
            if self.online().await.contains(&self.ids[i]) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {i} did not come back online in 30 s");
    }

    /// Every object of the bucket and where the manifests say its pieces are: piece id (hex)
    /// → node id; and how many segments are below full health.
    async fn placement(&self) -> (Vec<String>, BTreeMap<String, String>, usize) {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = client(&self.cluster)
                .list_objects_v2()
                .bucket(BUCKET)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
            token = page.next_continuation_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        let mut pieces = BTreeMap::new();
        let mut degraded = 0;
        for key in &keys {
            let health = self
                .admin(&format!("/admin/v1/objects/{BUCKET}/{key}"))
                .await;
            for segment in health["segments"].as_array().unwrap() {
                if segment["healthy"] != segment["total"] {
                    degraded += 1;
                }
                for piece in segment["pieces"].as_array().unwrap() {
                    if let Some(node) = piece["node"].as_str() {
                        pieces.insert(
                            piece["piece"].as_str().unwrap().to_string(),
                            node.to_string(),
                        );
                    }
                }
            }
        }
        (keys, pieces, degraded)
    }

    /// Piece files on each node's disk: (node index, piece id hex, path).
    fn piece_files(&self) -> Vec<(usize, String, PathBuf)> {
        (0..NODES)
            .flat_map(|i| {
                common::files(&self.node_dir(i).join("pieces"))
                    .into_iter()
                    .map(move |p| {
                        let name = p.file_name().unwrap().to_string_lossy().to_string();
                        (i, name, p)
                    })
            })
            .collect()
    }

    /// A node's own counter from its `/metrics` (its address is in its log).
    async fn node_metric(&self, i: usize, series: &str) -> u64 {
        let log = std::fs::read_to_string(self.node_dir(i).join("node.log")).unwrap();
        let addr = log
            .lines()
            .rev()
            .filter(|l| l.contains("serving /metrics"))
            .filter_map(|l| l.split("127.0.0.1:").nth(1))
            .filter_map(|rest| {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                format!("127.0.0.1:{port}").parse::<SocketAddr>().ok()
            })
            .next()
            .expect("the node logs its metrics address");
        let (_, text) = gateway::admin::request(addr, "", "GET", "/metrics", None)
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }
}

impl Drop for Net {
    /// Whatever happened, no process of this test outlives it and nothing stays mounted.
    fn drop(&mut self) {
        let _ = self.gateway.kill();
        let _ = self.gateway.wait();
        for &p in &self.pids {
            let _ = kill_process(pid(p), Signal::KILL);
        }
        for child in &mut self.restarted {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.mounted.take() {
            for _ in 0..50 {
                let out = Command::new("umount").arg(&dir).output();
                if out.is_ok_and(|o| o.status.success()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Mounts a 1 GiB tmpfs at `dir`; `false` (and why, on stderr) where that is not allowed.
fn mount_small_disk(dir: &Path) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1g", "tmpfs"])
        .arg(dir)
        .output();
    match out {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr);
            eprintln!("fault suite: no full-disk phase: cannot mount a tmpfs: {why}");
            false
        }
        Err(e) => {
            eprintln!("fault suite: no full-disk phase: cannot run mount: {e}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_committed_is_lost_under_faults() {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let mut rng = Rng(seed | 1);
    let mut report = format!(
        "fault suite: gateway dev, {NODES} storage-node processes, k=4 m={M}, FAULT_SEED={seed}\n"
    );
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    let full_dir = dev.join(format!("node-{FULL_NODE}"));
    let small_disk = mount_small_disk(&full_dir);
    let mut net = Net::start(&dev, free_port(), env()).await;
    if small_disk {
        net.mounted = Some(full_dir.clone());
    }
    net.s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let load = Arc::new(Load::default());
    let spawn_load = |net: &Net, load: &Arc<Load>, writers: usize, readers: usize| {
        let mut tasks = Vec::new();
        for _ in 0..writers {
            tasks.push(tokio::spawn(writer(net.s3.clone(), load.clone())));
        }
        for r in 0..readers {
            tasks.push(tokio::spawn(reader(
                net.s3.clone(),
                load.clone(),
                seed.wrapping_add(r as u64 + 1),
            )));
        }
        tasks
    };

    // 1. Churn: kill -9 random nodes at random moments (never more than m down at once) and
    //    start them again, under two writers and two readers.
    let tasks = spawn_load(&net, &load, 2, 2);
    let (mut kills, mut restarts) = (0, 0);
    let mut down: Vec<usize> = Vec::new();
    let until = Instant::now() + CHURN;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500 + rng.below(1500) as u64)).await;
        if down.len() < M && (down.is_empty() || rng.below(2) == 0) {
            let up: Vec<usize> = (0..NODES).filter(|i| !down.contains(i)).collect();
            let victim = up[rng.below(up.len())];
            net.kill_node(victim);
            down.push(victim);
            kills += 1;
        } else {
            let back = down.remove(rng.below(down.len()));
            net.restart_node(back).await;
            restarts += 1;
        }
    }
    for back in std::mem::take(&mut down) {
        net.restart_node(back).await;
        restarts += 1;
    }
    let churn_gets = load.gets.load(Ordering::Relaxed);
    let churn_gets_failed = load.gets_failed.load(Ordering::Relaxed);
    writeln!(
        report,
        "churn ({} s): {kills} nodes killed with SIGKILL, {restarts} restarted; \
         PUT {} attempted, {} failed; GET {churn_gets} attempted, {churn_gets_failed} failed, {} wrong bytes",
        CHURN.as_secs(),
        load.puts.load(Ordering::Relaxed),
        load.puts_failed.load(Ordering::Relaxed),
        load.wrong_bytes.load(Ordering::Relaxed),
    )
    .unwrap();

    // 2. A hung peer: SIGSTOP one node while the load goes on; reads hedge around it.
    load.reset_gets();
    let hung = rng.below(NODES);
    let _ = kill_process(pid(net.pids[hung]), Signal::STOP);
    tokio::time::sleep(HANG).await;
    let _ = kill_process(pid(net.pids[hung]), Signal::CONT);
    let hang_gets = load.gets.load(Ordering::Relaxed);
    let hang_failed = load.gets_failed.load(Ordering::Relaxed);
    let slowest = load.slowest_get_ms.load(Ordering::Relaxed);
    writeln!(
        report,
        "hung node (SIGSTOP {} s): GET {hang_gets} attempted, {hang_failed} failed, slowest {slowest} ms",
        HANG.as_secs()
    )
    .unwrap();
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let report_so_far = report.clone();
    let errors = load.errors.lock().unwrap().clone();
    assert_eq!(
        (
            churn_gets_failed,
            hang_failed,
            load.wrong_bytes.load(Ordering::Relaxed)
        ),
        (0, 0, 0),
        "{report_so_far}{errors:#?}"
    );
    assert!(
        slowest < 20_000,
        "a read waited {slowest} ms for the hung node"
    );
    let acked = load.acked();
    assert!(acked.len() >= 10, "only {} objects written", acked.len());
    // A write that failed is absent or whole, never partial.
    load.check_failed_writes(&net.s3).await;

    // 3. Bit rot: flip one byte in piece files of committed objects; the read path or the
    //    nodes' scrub finds every one, and repair replaces them.
    let (_, pieces, _) = net.placement().await;
    let mut candidates: Vec<(usize, String, PathBuf)> = net
        .piece_files()
        .into_iter()
        .filter(|(i, name, _)| pieces.get(name) == Some(&net.ids[*i]))
        .collect();
    // (piece id, node id): a repaired piece keeps its id (it is the hash of its bytes) and
    // moves to another node.
    let mut flipped = BTreeSet::new();
    while flipped.len() < FLIPS && !candidates.is_empty() {
        let (i, name, path) = candidates.swap_remove(rng.below(candidates.len()));
        let mut bytes = std::fs::read(&path).unwrap();
        let at = rng.below(bytes.len());
        bytes[at] ^= 0x5a;
        std::fs::write(&path, bytes).unwrap();
        flipped.insert((name, net.ids[i].clone()));
    }
    load.reset_gets();
    for obj in &acked {
        load.check(&net.s3, obj).await;
    }
    let rot_gets_failed = load.gets_failed.load(Ordering::Relaxed);
    let mut left = flipped.len();
    let mut degraded = usize::MAX;
    for _ in 0..120 {
        let (_, pieces, d) = net.placement().await;
        left = flipped
            .iter()
            .filter(|(piece, node)| pieces.get(piece) == Some(node))
            .count();
        degraded = d;
        if left == 0 && degraded == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The census (every second here) agrees: every segment full again.
    let mut census = Value::Null;
    for _ in 0..100 {
        census = net.admin("/admin/v1/status").await["segments"].clone();
        let full = census["full"].as_u64().unwrap_or(0);
        let lacking: u64 = ["degraded", "repair_due", "unreadable"]
            .iter()
            .map(|h| census[h].as_u64().unwrap_or(1))
            .sum();
        if full > 0 && lacking == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let repair = net.admin("/admin/v1/repair").await;
    for obj in &acked {
        load.check(&net.s3, obj).await;
    }
    writeln!(
        report,
        "bit rot: {} piece files flipped, {} still in place after repair; {} GETs, {} failed, {} wrong bytes; \
         repair: {} objects, {} segments, {} pieces placed; census: {census}",
        flipped.len(),
        left,
        load.gets.load(Ordering::Relaxed),
        load.gets_failed.load(Ordering::Relaxed),
        load.wrong_bytes.load(Ordering::Relaxed),
        repair["stats"]["objects_repaired"],
        repair["stats"]["segments_repaired"],
        repair["stats"]["pieces_placed"],
    )
    .unwrap();
    assert_eq!(rot_gets_failed, 0, "{report}");
    assert_eq!((left, degraded), (0, 0), "{report}");
    assert_eq!(load.wrong_bytes.load(Ordering::Relaxed), 0, "{report}");
    assert_eq!(census["unreadable"], 0, "{report}");
    assert_eq!(census["repair_due"], 0, "{report}");
    assert_eq!(census["degraded"], 0, "{report}");

    // 4. A full disk: something else fills the full node's filesystem to the last byte; it
    //    refuses pieces cleanly, the gateway places them elsewhere, and once space is freed the
    //    node takes pieces again.
    let mut extra = Vec::new();
    if small_disk {
        let on_full_node = |net: &Net| {
            net.piece_files()
                .iter()
                .filter(|(i, ..)| *i == FULL_NODE)
                .count()
        };
        let before = on_full_node(&net);
        let filler = full_dir.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        drop(f);
        let failed = put_all(&net.s3, &mut extra, 8).await;
        let gained = on_full_node(&net).saturating_sub(before);
        let refused = net
            .node_metric(
                FULL_NODE,
                "storage_node_requests_total{kind=\"put\",result=\"capacity_full\"}",
            )
            .await;
        assert!(!is_dead(net.pids[FULL_NODE]), "the full node crashed");
        std::fs::remove_file(&filler).unwrap();
        // Space again: the node's heartbeats report it, and it takes pieces again when
        // placement picks it (placement weighs free space, so a small disk is picked rarely).
        // (A heartbeat sent while the disk was filling can still be the latest: wait for one
        // that shows most of the freed space.)
        let disk_free = storage_node::store::disk_free(&full_dir).unwrap_or(0);
        let mut free_again = 0;
        for _ in 0..100 {
            let nodes = net.admin("/admin/v1/nodes").await;
            free_again = nodes
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["id"] == net.ids[FULL_NODE].as_str())
                .and_then(|n| n["free_bytes"].as_u64())
                .unwrap_or(0);
            if free_again > disk_free / 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let failed_after = put_all(&net.s3, &mut extra, 8).await;
        let regained = on_full_node(&net).saturating_sub(before + gained);
        writeln!(
            report,
            "full disk: node {FULL_NODE}'s filesystem filled to the last byte: 8 PUTs of 2.5 MB, \
             {failed} failed; the node refused {refused} pieces and took {gained}; space freed \
             ({} MiB reported free, {} MiB free on the disk): 8 more PUTs, {failed_after} failed, it took {regained} pieces",
            free_again >> 20,
            disk_free >> 20,
        )
        .unwrap();
        assert_eq!((failed, failed_after, gained), (0, 0, 0), "{report}");
        assert!(free_again > disk_free / 2, "{report}");
        for obj in &extra {
            load.check(&net.s3, obj).await;
        }
    } else {
        writeln!(report, "full disk: skipped (cannot mount a tmpfs here)").unwrap();
    }

    // 5. kill -9 the gateway (and, with it, every node) in the middle of uploads; restart with
    //    only the known nodes allowed.
    let torn = Obj {
        key: "torn".into(),
        seed: 999_999,
        len: 64 << 20,
    };
    // The big upload first, until some of its pieces are on the nodes (nothing else writes
    // yet, so new piece files are its own); then the writers join, and everything is killed.
    // Only half its body is sent, so it is still in flight at the kill however fast the
    // network stores the rest.
    let files_before = net.piece_files().len();
    let uploader = stalled_upload(
        &net.s3,
        &net.cluster,
        BUCKET,
        &torn.key,
        torn.bytes(),
        torn.len / 2,
    )
    .await;
    let mut torn_files = 0;
    for _ in 0..2000 {
        torn_files = net.piece_files().len().saturating_sub(files_before);
        if torn_files >= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        torn_files >= 12,
        "the 64 MiB upload never reached the nodes"
    );
    load.stop.store(false, Ordering::Relaxed);
    let tasks = spawn_load(&net, &load, 2, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = kill_process(pid(net.gateway.id()), Signal::KILL);
    let _ = net.gateway.wait();
    load.stop.store(true, Ordering::Relaxed);
    for i in 0..NODES {
        net.kill_node(i);
    }
    for &p in &net.pids.clone() {
        wait_gone(p).await;
    }
    for child in &mut net.restarted {
        let _ = child.wait();
    }
    net.restarted.clear();
    let on_disk_at_kill: Vec<(usize, String)> = net
        .piece_files()
        .into_iter()
        .map(|(i, name, _)| (i, name))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let answer = uploader.await.unwrap();
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "the torn upload cannot have succeeded: {answer}"
    );

    let mut allowed = net.env.clone();
    allowed.push(("GATEWAY_ALLOWED_NODES", net.ids.join(",")));
    std::fs::remove_file(dev.join("cluster.json")).unwrap();
    let mounted = net.mounted.take();
    let port = net.port;
    net.pids.clear(); // all gone: nothing for the drop to signal
    drop(net);
    let mut net = Net::start(&dev, port, allowed).await;
    net.mounted = mounted;
    let torn_visible = net
        .s3
        .head_object()
        .bucket(BUCKET)
        .key(&torn.key)
        .send()
        .await
        .is_ok();
    load.reset_gets();
    let acked = load.acked();
    for obj in acked.iter().chain(&extra) {
        load.check(&net.s3, obj).await;
    }
    let visible_unacked = load.check_failed_writes(&net.s3).await;
    // Collected: files that were on the disks at the kill and belong to no object (the torn
    // upload's and the failed writes' pieces). None may be left.
    let mut orphans = usize::MAX;
    let mut collected = 0;
    for _ in 0..120 {
        let (_, pieces, _) = net.placement().await;
        let orphan = |i: usize, name: &String| pieces.get(name) != Some(&net.ids[i]);
        orphans = net
            .piece_files()
            .iter()
            .filter(|(i, name, _)| orphan(*i, name))
            .count();
        collected = on_disk_at_kill
            .iter()
            .filter(|(i, name)| orphan(*i, name))
            .count();
        if orphans == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    writeln!(
        report,
        "gateway SIGKILL mid-upload: torn 64 MiB upload visible: {torn_visible}; {} acknowledged objects read back, \
         {} failed, {} wrong bytes; failed writes visible afterwards (whole): {visible_unacked} of {}; \
         orphan piece files collected: {collected} (at least {torn_files} of the torn upload's), left: {orphans}",
        acked.len() + extra.len(),
        load.gets_failed.load(Ordering::Relaxed),
        load.wrong_bytes.load(Ordering::Relaxed),
        load.unacked.lock().unwrap().len(),
    )
    .unwrap();
    assert!(!torn_visible, "{report}");
    assert_eq!(load.gets_failed.load(Ordering::Relaxed), 0, "{report}");
    assert_eq!(load.wrong_bytes.load(Ordering::Relaxed), 0, "{report}");
    assert_eq!(orphans, 0, "{report}");
    assert!(collected >= torn_files, "{report}");

    // 6. Refused with a clear reason: a node the gateway does not know, and a peer that speaks
    //    another protocol version.
    let gateway_addr = format!(
        "/ip4/127.0.0.1/tcp/{}/p2p/{}",
        port + 10,
        net.cluster["gateway_peer_id"].as_str().unwrap()
    );
    let stranger = dir.path().join("stranger");
    let init = Command::new(common::storage_node_bin())
        .arg("init")
        .arg("--data-dir")
        .arg(&stranger)
        .args(["--capacity", "1GiB", "--gateway", &gateway_addr])
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let stranger_id = String::from_utf8_lossy(&init.stdout)
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    let log = std::fs::File::create(stranger.join("node.log")).unwrap();
    let mut stranger_node = Command::new(common::storage_node_bin())
        .arg("run")
        .arg("--data-dir")
        .arg(&stranger)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut refusal = None;
    for _ in 0..300 {
        let text = std::fs::read_to_string(stranger.join("node.log")).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("refused us")) {
            refusal = Some(line.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stranger_node.kill();
    let _ = stranger_node.wait();
    let refusal = refusal.expect("the unknown node is told why it is refused");
    assert!(
        refusal.contains("not in this gateway's allowed_nodes"),
        "{refusal}"
    );
    let listed = net.admin("/admin/v1/nodes").await;
    assert!(
        !listed.to_string().contains(&stranger_id),
        "the refused node is not registered"
    );

    let version_reason = register_with_version(&gateway_addr, 99).await;
    assert!(
        version_reason.contains("protocol version 99"),
        "{version_reason}"
    );
    writeln!(
        report,
        "unknown node: refused ({}); protocol version 99: refused ({version_reason})",
        refusal
            .split("refused us: ")
            .nth(1)
            .unwrap_or(&refusal)
            .trim()
    )
    .unwrap();

    // Ctrl-C stops the network cleanly.
    let nodes = net.pids.clone();
    let _ = kill_process(pid(net.gateway.id()), Signal::INT);
    assert!(net.gateway.wait().unwrap().success());
    for node in nodes {
        wait_gone(node).await;
    }
    writeln!(report, "total: {} s", started.elapsed().as_secs()).unwrap();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-suite.txt");
    std::fs::write(&out, &report).unwrap();
    eprint!("{report}");
}

/// Opens a registration stream to the gateway and sends a header of protocol `version`;
/// returns the reason the gateway gives for refusing it.
async fn register_with_version(gateway: &str, version: u8) -> String {
    use storage_node::protocol::{read_header, RegistrationReply, REGISTER_PROTOCOL};
    let addr: libp2p::Multiaddr = gateway.parse().unwrap();
    let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() else {
        panic!("{gateway} names no peer");
    };
    let host = storage_node::net::spawn(libp2p::identity::Keypair::generate_ed25519()).unwrap();
    host.dial(addr).await.unwrap();
    assert!(host.wait_connected(&peer, Duration::from_secs(10)).await);
    let mut stream = host
        .control()
        .open_stream(peer, libp2p::StreamProtocol::new(REGISTER_PROTOCOL))
        .await
        .unwrap();
    // A postcard header starts with the version (a varint: one byte below 128).
    let header = [version, 0, 0, 0];
    stream
        .write_all(&(header.len() as u32).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&header).await.unwrap();
    stream.flush().await.unwrap();
    let reply: RegistrationReply = read_header(&mut stream).await.unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    host.shutdown().await;
    match reply {
        RegistrationReply::Refused { reason } => reason,
        other => panic!("a header of version {version} was accepted: {other:?}"),
    }
}
