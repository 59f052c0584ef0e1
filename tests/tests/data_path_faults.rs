//! The data path under failure: lost nodes, corrupted piece files, a node that hangs while
//! another has lost a piece, too few nodes, and pieces of deleted or abandoned objects collected
//! from the nodes.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chunker::manifest::{Body, PieceLocation};
use gateway::nodes::node_id;
use tests::faulty::Fault;
use tests::{test_bytes, Cluster};

async fn get(s3: &aws_sdk_s3::Client, key: &str) -> Result<Vec<u8>, String> {
    let out = s3
        .get_object()
        .bucket("bkt")
        .key(key)
        .send()
        .await
        .map_err(|e| format!("{:?}", e.into_service_error()))?;
    out.body
        .collect()
        .await
        .map(|b| b.into_bytes().to_vec())
        .map_err(|e| e.to_string())
}

async fn put(s3: &aws_sdk_s3::Client, key: &str, data: &[u8]) {
    s3.put_object()
        .bucket("bkt")
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_survive_m_lost_nodes_and_fail_cleanly_beyond() {
    let mut cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let data = test_bytes(9_000_000, 1);
    put(&s3, "obj", &data).await;

    // With k=4, m=2 on exactly 6 nodes every segment has a piece on every node.
    cluster.stop_node(0).await;
    assert_eq!(get(&s3, "obj").await.unwrap(), data, "one node lost");
    cluster.stop_node(3).await;
    assert_eq!(get(&s3, "obj").await.unwrap(), data, "two nodes lost");
    // Ranged reads take the degraded path too.
    let out = s3
        .get_object()
        .bucket("bkt")
        .key("obj")
        .range("bytes=4193000-4194000")
        .send()
        .await
        .unwrap();
    let got = out.body.collect().await.unwrap().into_bytes();
    assert_eq!(&got[..], &data[4_193_000..4_194_001]);

    // Writes need k + m nodes: refused with 503, not stored weaker.
    let e = s3
        .put_object()
        .bucket("bkt")
        .key("weak")
        .body(ByteStream::from(test_bytes(100_000, 2)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 503);

    cluster.stop_node(5).await;
    let err = get(&s3, "obj").await.unwrap_err();
    assert!(err.contains("ServiceUnavailable"), "{err}");

    // The nodes come back: everything is readable again.
    for i in [0, 3, 5] {
        cluster.start_node(i);
    }
    cluster.wait_online(6).await;
    assert_eq!(get(&s3, "obj").await.unwrap(), data);
    cluster.stop().await;
}

/// A segment whose data piece 1 is lost reads from parity at once; if the node of data piece 0
/// hangs meanwhile, the read asks a spare node after the hedge delay rather than waiting out
/// the hung node's call timeout (60 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_hedges_past_a_hung_node_when_another_piece_is_lost() {
    let mut cluster = Cluster::start(6, |c| c.node_timeout = "60s".into()).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let data = test_bytes(3_000_000, 9);
    put(&s3, "obj", &data).await;

    let manifest = cluster.gateway.meta.object("bkt", "obj").unwrap().unwrap();
    let Body::Segments(segments) = &manifest.body else {
        panic!("a 3 MB object has segments")
    };
    let node_of = |loc: &PieceLocation| {
        cluster
            .nodes
            .iter()
            .position(|n| loc.node.as_ref() == Some(&node_id(&n.peer)))
            .unwrap()
    };
    let (hung, lost) = (
        node_of(&segments[0].pieces[0]),
        node_of(&segments[0].pieces[1]),
    );
    let lost_id = segments[0].pieces[1].id.to_string();
    let file = cluster.nodes[lost]
        .piece_files()
        .into_iter()
        .find(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy() == lost_id)
        })
        .unwrap();
    std::fs::remove_file(file).unwrap();

    let hold = Arc::new(AtomicBool::new(true));
    cluster.stop_node(hung).await;
    cluster.nodes[hung].wrap = Some(Fault::HangReads(hold.clone()).wrap());
    cluster.start_node(hung);
    cluster.wait_online(6).await;

    let got = tokio::time::timeout(Duration::from_secs(30), get(&s3, "obj")).await;
    hold.store(false, Ordering::SeqCst);
    let got = got.expect("the read waited for the hung node");
    assert_eq!(got.unwrap(), data);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupted_piece_files_never_change_what_a_get_returns() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let data = test_bytes(5_000_000, 4);
    put(&s3, "obj", &data).await;

    // Flip bytes in every piece file of two nodes (m = 2).
    for node in &cluster.nodes[..2] {
        let files = node.piece_files();
        assert!(!files.is_empty());
        for f in files {
            let mut bytes = std::fs::read(&f).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            bytes[0] ^= 0x01;
            std::fs::write(&f, bytes).unwrap();
        }
    }
    assert_eq!(get(&s3, "obj").await.unwrap(), data);
    let out = s3
        .get_object()
        .bucket("bkt")
        .key("obj")
        .range("bytes=1000-2000000")
        .send()
        .await
        .unwrap();
    let got = out.body.collect().await.unwrap().into_bytes();
    assert_eq!(&got[..], &data[1000..2_000_001]);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pieces_of_deleted_and_overwritten_objects_are_removed_from_nodes() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let count = |c: &Cluster| c.nodes.iter().map(|n| n.piece_files().len()).sum::<usize>();

    put(&s3, "obj", &test_bytes(6_000_000, 5)).await;
    let after_first = count(&cluster);
    assert_eq!(after_first, 12, "two segments × six pieces");
    put(&s3, "obj", &test_bytes(5_000_000, 6)).await; // overwrite
    put(&s3, "other", &test_bytes(2_000_000, 7)).await;
    s3.delete_object()
        .bucket("bkt")
        .key("other")
        .send()
        .await
        .unwrap();

    let mut left = 0;
    for _ in 0..100 {
        left = count(&cluster);
        if left == 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 12, "only the current version's pieces remain");
    assert_eq!(get(&s3, "obj").await.unwrap(), test_bytes(5_000_000, 6));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_census_counts_segments_by_health() {
    use chunker::manifest::Body;
    use gateway::meta::PieceRef;
    // Threshold k + 1 = 5 of 6: one lost piece is "degraded", two are "repair_due". The
    // repairer waits an hour so the census sees the losses as marked.
    let cluster = Cluster::start(6, |c| {
        c.repair_margin = 1;
        c.repair_interval = "1h".into();
    })
    .await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    put(&s3, "big", &test_bytes(9_000_000, 1)).await;
    put(&s3, "small", b"inline").await;
    let census = cluster.gateway.census.pass().unwrap();
    assert_eq!(
        (census.objects, census.objects_without_segments, census.full),
        (2, 1, 3)
    );

    let gw = &cluster.gateway;
    let manifest = gw.meta.object("bkt", "big").unwrap().unwrap();
    let Body::Segments(segments) = &manifest.body else {
        panic!("a 9 MB object has segments");
    };
    // Segment i loses i + 1 pieces: degraded, repair_due, unreadable.
    for (i, seg) in segments.iter().enumerate() {
        for p in &seg.pieces[..=i] {
            let piece = PieceRef {
                node: p.node.clone().unwrap(),
                piece: p.id,
            };
            gw.meta.mark_bad(&piece, "test").unwrap().unwrap();
        }
    }
    let census = gw.census.pass().unwrap();
    assert_eq!(
        census.by_health(),
        [
            ("full", 0),
            ("degraded", 1),
            ("repair_due", 1),
            ("unreadable", 1)
        ]
    );

    // /metrics and /admin/v1/status show the last census.
    let (_, metrics) = gateway::admin::request(gw.admin_addr, "", "GET", "/metrics", None)
        .await
        .unwrap();
    for line in [
        "gateway_segments{health=\"degraded\"} 1",
        "gateway_segments{health=\"unreadable\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let (_, status) = gateway::admin::request(
        gw.admin_addr,
        &gw.admin_token,
        "GET",
        "/admin/v1/status",
        None,
    )
    .await
    .unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["segments"]["repair_due"], 1, "{status}");
    cluster.stop().await;
}
