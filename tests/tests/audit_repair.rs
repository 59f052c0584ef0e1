//! Audits, reputation and repair against real nodes: nodes that drop pieces, corrupt them, forge
//! proofs or go offline are caught, scored and disqualified with a reason; their segments are
//! rebuilt elsewhere; objects stay readable; repair resumes after a gateway restart; an exported
//! audit log re-verifies offline.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use chunker::manifest::Body;
use gateway::config::RawConfig;
use gateway::meta::Verdict;
use gateway::nodes::node_id;
use gateway::reputation::NodeState;
use tests::faulty::Fault;
use tests::{test_bytes, Cluster};

/// Fast audits and repair for tests.
fn fast(raw: &mut RawConfig) {
    raw.piece_size = "64KiB".into();
    raw.audit_interval = "200ms".into();
    raw.audit_deadline = "5s".into();
    // Vetting (a new node's small share) is unit-tested; here every node takes its share from
    // the start, so each holds pieces of enough objects to be tested with.
    raw.vetting_audits = 0;
    raw.offline_grace = "2s".into();
    raw.offline_disqualify = "6s".into();
    raw.repair_interval = "200ms".into();
}

async fn put_objects(cluster: &Cluster, bucket: &str, count: usize, size: usize) -> Vec<String> {
    let s3 = cluster.client();
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let mut keys = Vec::new();
    for i in 0..count {
        let key = format!("obj-{i:03}");
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .body(ByteStream::from(test_bytes(size, i as u64)))
            .send()
            .await
            .unwrap();
        keys.push(key);
    }
    keys
}

async fn read_all(cluster: &Cluster, bucket: &str, keys: &[String], size: usize) {
    let s3 = cluster.client();
    for (i, key) in keys.iter().enumerate() {
        let got = s3.get_object().bucket(bucket).key(key).send().await;
        let body = got.unwrap().body.collect().await.unwrap().into_bytes();
        assert!(
            body.as_ref() == test_bytes(size, i as u64).as_slice(),
            "{key} differs"
        );
    }
}

/// Polls `done` every 100 ms for up to `limit`.
async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether every segment of every object has all its pieces healthy and none on `gone`.
fn fully_redundant(cluster: &Cluster, bucket: &str, keys: &[String], gone: &[usize]) -> bool {
    let gone: Vec<_> = gone
        .iter()
        .map(|&i| node_id(&cluster.nodes[i].peer))
        .collect();
    keys.iter().all(|key| {
        let Some(m) = cluster.gateway.meta.object(bucket, key).unwrap() else {
            return false;
        };
        let Body::Segments(segs) = &m.body else {
            return true;
        };
        segs.iter().all(|s| {
            cluster.gateway.health.healthy(s) == s.pieces.len()
                && s.pieces
                    .iter()
                    .all(|p| p.node.as_ref().is_some_and(|n| !gone.contains(n)))
        })
    })
}

/// Node `i`'s reputation (a node not audited yet has a fresh one).
fn reputation(cluster: &Cluster, i: usize) -> gateway::reputation::NodeReputation {
    cluster
        .gateway
        .meta
        .reputation(&node_id(&cluster.nodes[i].peer))
        .unwrap()
        .unwrap_or_else(|| {
            gateway::reputation::NodeReputation::new(&gateway::reputation::Policy::default(), 0)
        })
}

fn state(cluster: &Cluster, i: usize) -> NodeState {
    cluster.gateway.nodes.state(&cluster.nodes[i].peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn misbehaving_nodes_are_caught_disqualified_and_repaired_around() {
    let mut cluster = Cluster::start(10, fast).await;
    let size = 200 << 10; // one segment of 4 × 64 KiB pieces each
    let keys = put_objects(&cluster, "bad-nodes", 20, size).await;
    assert!((0..10).all(|i| state(&cluster, i) == NodeState::Active));

    // 1. Node 0 silently deletes half its pieces: caught by audits (and reads), its lost pieces
    //    rebuilt elsewhere. Not necessarily disqualified: that depends on how many it lost.
    let files = cluster.nodes[0].piece_files();
    assert!(files.len() >= 4, "node 0 holds {} pieces", files.len());
    for f in files.iter().step_by(2) {
        std::fs::remove_file(f).unwrap();
    }
    wait_for("a failed audit of node 0", Duration::from_secs(30), || {
        reputation(&cluster, 0).failed > 0
    })
    .await;
    let r = reputation(&cluster, 0);
    assert!(r.audit.score() < 1.0);
    read_all(&cluster, "bad-nodes", &keys, size).await;
    wait_for(
        "node 0's lost pieces repaired",
        Duration::from_secs(30),
        || cluster.gateway.meta.bad_count().unwrap() == 0,
    )
    .await;

    // 2. Node 1 corrupts every piece it holds: disqualified, its pieces counted lost and
    //    rebuilt elsewhere.
    for f in cluster.nodes[1].piece_files() {
        let mut bytes = std::fs::read(&f).unwrap();
        for b in bytes.iter_mut().step_by(97) {
            *b ^= 0x5a;
        }
        std::fs::write(&f, bytes).unwrap();
    }
    wait_for("node 1 disqualified", Duration::from_secs(30), || {
        state(&cluster, 1) == NodeState::Disqualified
    })
    .await;
    let r = reputation(&cluster, 1);
    assert!(r.reason.contains("audit score"), "{}", r.reason);
    assert!(r.reason.contains("failed"), "{}", r.reason);
    wait_for(
        "node 1's segments repaired",
        Duration::from_secs(60),
        || fully_redundant(&cluster, "bad-nodes", &keys, &[1]),
    )
    .await;
    read_all(&cluster, "bad-nodes", &keys, size).await;

    // 3. Node 2 comes back forging its proofs: every answer fails verification.
    cluster.stop_node(2).await;
    cluster.nodes[2].wrap = Some(Fault::ForgeProofs.wrap());
    cluster.start_node(2);
    wait_for("node 2 disqualified", Duration::from_secs(30), || {
        state(&cluster, 2) == NodeState::Disqualified
    })
    .await;
    let failed_proofs = {
        let mut n = 0;
        cluster
            .gateway
            .meta
            .audits(0, |a| {
                if a.node == node_id(&cluster.nodes[2].peer)
                    && a.verdict == Verdict::Fail
                    && a.detail.contains("proof does not verify")
                {
                    n += 1;
                }
                true
            })
            .unwrap();
        n
    };
    assert!(failed_proofs >= 4, "{failed_proofs} forged proofs caught");
    wait_for(
        "node 2's segments repaired",
        Duration::from_secs(60),
        || fully_redundant(&cluster, "bad-nodes", &keys, &[1, 2]),
    )
    .await;

    // 4. Node 3 goes offline: its pieces are rebuilt after the grace period, and it is
    //    disqualified once it has been gone too long.
    cluster.stop_node(3).await;
    wait_for(
        "node 3's segments repaired",
        Duration::from_secs(60),
        || fully_redundant(&cluster, "bad-nodes", &keys, &[1, 2, 3]),
    )
    .await;
    read_all(&cluster, "bad-nodes", &keys, size).await;
    wait_for("node 3 disqualified", Duration::from_secs(30), || {
        state(&cluster, 3) == NodeState::Disqualified
    })
    .await;
    assert!(
        reputation(&cluster, 3).reason.contains("offline for"),
        "{}",
        reputation(&cluster, 3).reason
    );

    // The healthy nodes stay active; the audit log re-verifies offline.
    for i in 4..10 {
        assert_eq!(state(&cluster, i), NodeState::Active, "node {i}");
    }
    admin_api_shows_it(&cluster).await;
    let mut export = String::new();
    cluster
        .gateway
        .meta
        .audits(0, |a| {
            let line = gateway::audit::ExportedAudit::from_record(&a);
            export.push_str(&serde_json::to_string(&line).unwrap());
            export.push('\n');
            true
        })
        .unwrap();
    let report = gateway::audit::verify_export(&export);
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    assert!(
        report.passes_confirmed > 0 && report.failures_confirmed >= 4,
        "{report:?}"
    );
    // A pass whose proof was tampered with afterwards is caught.
    let tampered = export
        .lines()
        .find(|l| l.contains("\"verdict\":\"pass\""))
        .unwrap()
        .replace("\"verdict\":\"pass\"", "\"verdict\":\"fail\"");
    assert_eq!(gateway::audit::verify_export(&tampered).mismatches.len(), 1);
    cluster.stop().await;
}

/// The admin API, as an operator sees the aftermath.
async fn admin_api_shows_it(cluster: &Cluster) {
    let g = &cluster.gateway;
    let get = |path: String| async move {
        let body = gateway::admin::fetch(g.admin_addr, &g.admin_token, &path)
            .await
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    };
    let nodes = get("/admin/v1/nodes".into()).await;
    let forger = cluster.nodes[2].peer.to_string();
    let entry = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == forger.as_str())
        .unwrap();
    assert_eq!(entry["state"], "disqualified");
    assert!(entry["reason"].as_str().unwrap().contains("audit score"));
    assert!(entry["audit_score"].as_f64().unwrap() < 0.96);
    assert!(entry["audits_failed"].as_u64().unwrap() >= 4);

    let failed = get(format!("/admin/v1/audits?node={forger}&verdict=fail")).await;
    let failed = failed.as_array().unwrap();
    assert!(failed.len() >= 4);
    assert!(failed
        .iter()
        .all(|a| a["verdict"] == "fail" && a["node"] == forger.as_str()));

    let repair = get("/admin/v1/repair".into()).await;
    assert!(
        repair["stats"]["pieces_placed"].as_u64().unwrap() > 0,
        "{repair}"
    );

    let object = get("/admin/v1/objects/bad-nodes/obj-000".into()).await;
    let seg = &object["segments"][0];
    assert_eq!(seg["healthy"], 6, "{object}");
    assert_eq!(seg["pieces"].as_array().unwrap().len(), 6);
    let missing = gateway::admin::fetch(
        g.admin_addr,
        &g.admin_token,
        "/admin/v1/objects/bad-nodes/nope",
    )
    .await;
    assert!(missing.is_err());
    let unauthorized = gateway::admin::fetch(g.admin_addr, "wrong", "/admin/v1/nodes").await;
    assert!(unauthorized.unwrap_err().to_string().contains("401"));

    // Prometheus metrics need no token.
    let text = gateway::admin::fetch(g.admin_addr, "", "/metrics")
        .await
        .unwrap();
    for expected in [
        "gateway_s3_requests_total{operation=\"PutObject\",status=\"200\"} 20\n",
        "gateway_s3_request_duration_seconds_count{operation=\"PutObject\"} 20\n",
        "gateway_s3_requests_total{operation=\"GetObject\",status=\"200\"}",
        "gateway_nodes{state=\"disqualified\",online=\"false\"}",
        "gateway_nodes{state=\"active\",online=\"true\"}",
        "gateway_audits_total{verdict=\"fail\"}",
        "gateway_repair_pieces_placed_total",
        "gateway_repair_queue_objects",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    let received: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("gateway_s3_received_bytes_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(received >= (20 * 200 * 1024) as f64, "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_node_is_repaired_and_repair_resumes_after_a_gateway_restart() {
    let mut cluster = Cluster::start(7, |raw| {
        fast(raw);
        raw.offline_grace = "1s".into();
        raw.offline_disqualify = "7d".into();
        // Slow enough to restart the gateway halfway.
        raw.repair_rate = "1MiB".into();
    })
    .await;
    // Objects until node 0 holds pieces of 100 of them.
    let size = 100 << 10;
    let s3 = cluster.client();
    s3.create_bucket().bucket("restart").send().await.unwrap();
    let node_0 = node_id(&cluster.nodes[0].peer);
    let (mut keys, mut on_node_0) = (Vec::new(), 0);
    while on_node_0 < 100 {
        let key = format!("obj-{:03}", keys.len());
        s3.put_object()
            .bucket("restart")
            .key(&key)
            .body(ByteStream::from(test_bytes(size, keys.len() as u64)))
            .send()
            .await
            .unwrap();
        let m = cluster
            .gateway
            .meta
            .object("restart", &key)
            .unwrap()
            .unwrap();
        if matches!(&m.body, Body::Segments(segs) if segs.iter().any(|s| s.pieces.iter().any(|p| p.node.as_ref() == Some(&node_0))))
        {
            on_node_0 += 1;
        }
        keys.push(key);
    }

    cluster.stop_node(0).await;
    let started = Instant::now();
    wait_for("repair under way", Duration::from_secs(60), || {
        cluster
            .gateway
            .repairer
            .stats
            .objects_repaired
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 10
    })
    .await;
    let left = cluster.gateway.meta.repair_depth().unwrap();
    assert!(left > 0, "repair finished before the restart");
    let cluster = cluster.restart_gateway().await;
    cluster.wait_online(6).await;
    wait_for(
        "every object fully redundant",
        Duration::from_secs(120),
        || fully_redundant(&cluster, "restart", &keys, &[0]),
    )
    .await;
    let took = started.elapsed();
    eprintln!(
        "repaired {on_node_0} objects (restart with {left} queued) in {:.1} s",
        took.as_secs_f64()
    );
    read_all(&cluster, "restart", &keys, size).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_throughput_after_a_node_loss() {
    let mut cluster = Cluster::start(7, |raw| {
        fast(raw);
        raw.piece_size = "1MiB".into();
        raw.offline_grace = "1s".into();
        raw.repair_rate = "1GiB".into();
    })
    .await;
    let size = 1 << 20;
    let keys = put_objects(&cluster, "throughput", 100, size).await;
    cluster.stop_node(0).await;
    // From the moment the loss is noticed (after the grace period) …
    let mut polls = 0;
    while cluster.gateway.meta.repair_depth().unwrap() == 0 {
        polls += 1;
        assert!(polls < 3000, "the lost node's objects were never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    // … until every object is whole again.
    wait_for(
        "every object fully redundant",
        Duration::from_secs(120),
        || fully_redundant(&cluster, "throughput", &keys, &[0]),
    )
    .await;
    let took = started.elapsed().as_secs_f64();
    let stats = &cluster.gateway.repairer.stats;
    let fetched = stats
        .bytes_fetched
        .load(std::sync::atomic::Ordering::Relaxed);
    let placed = stats
        .bytes_placed
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "repair: {} objects, {} pieces placed, {:.1} MB fetched + {:.1} MB placed in {took:.2} s \
         from the loss being noticed: {:.1} MB/s of rebuilt pieces, {:.1} objects/s",
        stats
            .objects_repaired
            .load(std::sync::atomic::Ordering::Relaxed),
        stats
            .pieces_placed
            .load(std::sync::atomic::Ordering::Relaxed),
        fetched as f64 / 1e6,
        placed as f64 / 1e6,
        placed as f64 / 1e6 / took,
        stats
            .objects_repaired
            .load(std::sync::atomic::Ordering::Relaxed) as f64
            / took
    );
    read_all(&cluster, "throughput", &keys, size).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pieces_a_nodes_scrub_finds_corrupt_are_rebuilt_elsewhere() {
    // No audits: only the node's own scrub can notice.
    let mut cluster = Cluster::start(7, |raw| {
        fast(raw);
        raw.audit_interval = "1h".into();
    })
    .await;
    let size = 200 << 10;
    let keys = put_objects(&cluster, "scrubbed", 10, size).await;
    let files = cluster.nodes[6].piece_files();
    assert!(!files.is_empty());
    for f in &files {
        let mut bytes = std::fs::read(f).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(f, bytes).unwrap();
    }
    // Node 6 comes back scrubbing every 300 ms.
    cluster.stop_node(6).await;
    cluster.scrub_interval = "300ms".into();
    cluster.start_node(6);
    cluster.wait_online(7).await;
    wait_for(
        "the corrupt pieces rebuilt",
        Duration::from_secs(60),
        || {
            cluster
                .gateway
                .repairer
                .stats
                .pieces_placed
                .load(std::sync::atomic::Ordering::Relaxed)
                >= files.len() as u64
                && fully_redundant(&cluster, "scrubbed", &keys, &[])
        },
    )
    .await;
    // Node 6 was not penalized for reporting its own rot (no audits ran).
    assert_ne!(state(&cluster, 6), NodeState::Disqualified);
    read_all(&cluster, "scrubbed", &keys, size).await;
    cluster.stop().await;
}
