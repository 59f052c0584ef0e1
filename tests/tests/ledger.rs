//! The usage ledger against real nodes: every node is credited the bytes it stored and served,
//! its storage time and its audits, in statements the gateway signs over receipts the node
//! signed; the node keeps its copies; a node that stops is still settled; every exported
//! statement verifies offline.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chunker::manifest::Body;
use gateway::ledger::{report, statements, NodeReport};
use gateway::nodes::peer_of;
use storage_node::store::DiskStore;
use tests::{test_bytes, Cluster};

const BUCKET: &str = "ledger";

/// Piece bytes each node was sent for `key`, by the manifest.
fn stored_per_node(cluster: &Cluster, key: &str) -> BTreeMap<String, u64> {
    let manifest = cluster.gateway.meta.object(BUCKET, key).unwrap().unwrap();
    let Body::Segments(segments) = &manifest.body else {
        panic!("not on nodes");
    };
    let mut out = BTreeMap::new();
    for seg in segments {
        let len = seg.layout().unwrap().piece_len() as u64;
        for piece in &seg.pieces {
            let peer = peer_of(piece.node.as_ref().unwrap()).unwrap();
            *out.entry(peer.to_string()).or_default() += len;
        }
    }
    out
}

fn by_node(cluster: &Cluster) -> BTreeMap<String, NodeReport> {
    report(&cluster.gateway.meta, 0, u64::MAX)
        .unwrap()
        .nodes
        .into_iter()
        .map(|n| (n.node.clone(), n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_is_credited_what_it_did_in_statements_both_sides_keep() {
    let mut cluster = Cluster::start(6, |raw| {
        raw.ledger_period = "2s".into();
        raw.audit_interval = "300ms".into();
        raw.vetting_audits = 0;
    })
    .await;
    let s3 = cluster.client();
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let body = test_bytes(3_000_000, 7);
    s3.put_object()
        .bucket(BUCKET)
        .key("obj")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    for _ in 0..2 {
        let got = s3.get_object().bucket(BUCKET).key("obj").send().await;
        let got = got.unwrap().body.collect().await.unwrap().into_bytes();
        assert_eq!(got[..], body[..]);
    }
    let stored = stored_per_node(&cluster, "obj");
    assert_eq!(stored.len(), 6, "one piece per node");

    // One node goes away: its periods are settled all the same (on the measurement alone if it
    // gave no receipt before it stopped).
    let gone = cluster.nodes[5].peer.to_string();
    cluster.stop_node(5).await;

    // Wait until every live node was settled with receipts, audited, and credited its storage
    // time, and the stopped node was settled.
    let mut nodes = BTreeMap::new();
    for _ in 0..80 {
        nodes = by_node(&cluster);
        let live_done = cluster.nodes[..5].iter().all(|n| {
            nodes.get(&n.peer.to_string()).is_some_and(|r| {
                r.receipts >= 2 && r.credited.audits_passed > 0 && r.credited.byte_seconds > 0
            })
        });
        let gone_done = nodes.get(&gone).is_some_and(|r| r.settled >= 1);
        if live_done && gone_done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (node, bytes) in &stored {
        let r = nodes
            .get(node)
            .unwrap_or_else(|| panic!("{node}: no ledger"));
        // What it stored, as both sides counted it.
        assert_eq!(r.credited.ingress_bytes, *bytes, "{node}: {r:?}");
        assert!(r.credited.ingress_bytes <= r.measured.ingress_bytes);
        assert_eq!(r.credited.audits_failed, 0, "{node}: {r:?}");
        // (The stopped node has a receipt only if a period closed before it stopped.)
        if *node != gone {
            assert!(r.receipts >= 2, "{node}: {r:?}");
            assert!(r.claimed.ingress_bytes >= r.credited.ingress_bytes);
            assert!(r.credited.audits_passed > 0, "{node}: {r:?}");
            assert!(r.credited.byte_seconds > 0, "{node}: {r:?}");
        }
    }
    // Reads fetched data pieces: served bytes were credited as both sides counted them.
    let egress: u64 = nodes.values().map(|r| r.credited.egress_bytes).sum();
    let measured: u64 = nodes.values().map(|r| r.measured.egress_bytes).sum();
    assert!(
        egress >= 2 * 3_000_000,
        "{egress} bytes credited for two reads"
    );
    assert!(egress <= measured);

    // Every statement verifies with nothing but the peer ids.
    let all = statements(&cluster.gateway.meta, 0, u64::MAX, None, usize::MAX).unwrap();
    assert!(all.len() >= 6);
    for s in &all {
        s.verify().unwrap();
    }

    // The node kept its copies: each is one the gateway signed.
    let keeper = cluster.nodes[0].peer;
    cluster.stop_node(0).await;
    let seen = DiskStore::inspect(&cluster.nodes[0].dir).unwrap();
    let accounts = storage_node::ledger::accounts_from(seen.state);
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].gateway, cluster.gateway.peer_id.to_string());
    assert!(accounts[0].statements >= 1, "{:?}", accounts[0]);
    let kept = accounts[0].last.clone().unwrap();
    assert_eq!(kept.verify().unwrap().0, keeper);
    let all = statements(&cluster.gateway.meta, 0, u64::MAX, None, usize::MAX).unwrap();
    assert!(all.contains(&kept));
    assert!(accounts[0].totals.ingress_bytes >= stored[&keeper.to_string()]);
    cluster.stop().await;
}
