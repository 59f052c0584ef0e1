//! Hybrid buckets against an independent S3 implementation (`s3s-fs`, in this process, see
//! `tests::remote`): asynchronous mirroring through a remote outage and a gateway restart,
//! synchronous mirroring, reads served by the mirror when every node is gone, and fallback
//! reads with copy-in. One test runs against real AWS S3 when `HYBRID_TEST_AWS_BUCKET` and AWS
//! credentials are in the environment, and is skipped otherwise.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Tag, Tagging};
use gateway::hybrid::{MirrorMode, RemoteConfig};
use tests::remote::RemoteS3;
use tests::{code, get, test_bytes, Cluster};

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/x-test")
        .metadata("origin", "gateway")
        .cache_control("max-age=5")
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap();
}

/// Pairs `bucket` through the admin API, as `gateway remote set` does.
async fn pair(cluster: &Cluster, bucket: &str, config: &RemoteConfig) -> String {
    let (status, body) = gateway::admin::request(
        cluster.gateway.admin_addr,
        &cluster.gateway.admin_token,
        "PUT",
        &format!("/admin/v1/buckets/{bucket}/remote"),
        Some(&serde_json::to_string(config).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// Keys of `bucket` waiting for the mirror.
fn backlog(cluster: &Cluster, bucket: &str) -> u64 {
    cluster
        .gateway
        .meta
        .mirror_backlog()
        .unwrap()
        .get(bucket)
        .map_or(0, |b| b.depth)
}

async fn wait_drained(cluster: &Cluster, bucket: &str, limit: Duration) {
    let start = std::time::Instant::now();
    while backlog(cluster, bucket) > 0 {
        assert!(
            start.elapsed() < limit,
            "mirror queue of {bucket} still holds {} keys after {limit:?}",
            backlog(cluster, bucket)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_mirror_copies_everything_and_loses_nothing_in_an_outage() {
    let mut remote = RemoteS3::start().await;
    remote.create_bucket("offsite").await;
    let cluster = Cluster::start(6, |c| c.mirror_interval = "100ms".into()).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("photos").send().await.unwrap();
    // Already there when the bucket is paired: copied by the backfill.
    let before = test_bytes(100_000, 1);
    put(&s3, "photos", "before", &before).await;

    let shown = pair(
        &cluster,
        "photos",
        &remote.config("offsite", MirrorMode::Async, false),
    )
    .await;
    assert!(
        !shown.contains(tests::remote::REMOTE_SECRET),
        "the admin API shows the secret: {shown}"
    );
    assert!(shown.contains("\"access_key_id\""), "{shown}");

    // Inline, one-segment, many-segment (a multipart upload to the remote) objects, and one
    // uploaded here in parts.
    let objects = [
        ("tiny", test_bytes(1_000, 2)),
        ("medium", test_bytes(3_000_000, 3)),
        ("large", test_bytes(20_000_000, 4)),
    ];
    for (key, data) in &objects {
        put(&s3, "photos", key, data).await;
    }
    let parts = [test_bytes(5 << 20, 5), test_bytes(1_000_000, 6)];
    let up = s3
        .create_multipart_upload()
        .bucket("photos")
        .key("parts")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let r = s3
            .upload_part()
            .bucket("photos")
            .key("parts")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(p.clone()))
            .send()
            .await
            .unwrap();
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket("photos")
        .key("parts")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    wait_drained(&cluster, "photos", Duration::from_secs(60)).await;

    assert_eq!(remote.object("offsite", "before").await.unwrap(), before);
    for (key, data) in &objects {
        assert_eq!(&remote.object("offsite", key).await.unwrap(), data, "{key}");
    }
    assert_eq!(
        remote.object("offsite", "parts").await.unwrap(),
        parts.concat()
    );
    let head = remote
        .client()
        .head_object()
        .bucket("offsite")
        .key("medium")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/x-test"));
    assert_eq!(head.cache_control(), Some("max-age=5"));
    assert_eq!(
        head.metadata().unwrap().get("origin").map(String::as_str),
        Some("gateway")
    );
    // Where the bytes are, per the admin API.
    let health = gateway::admin::fetch(
        cluster.gateway.admin_addr,
        &cluster.gateway.admin_token,
        "/admin/v1/objects/photos/large",
    )
    .await
    .unwrap();
    assert!(
        health.contains(r#""locations":["nodes","remote"]"#),
        "{health}"
    );

    // Deletes follow.
    s3.delete_object()
        .bucket("photos")
        .key("tiny")
        .send()
        .await
        .unwrap();
    wait_drained(&cluster, "photos", Duration::from_secs(30)).await;
    assert!(remote.object("offsite", "tiny").await.is_none());

    // The remote goes down: writes still succeed, the queue grows and says why.
    remote.stop().await;
    let during: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            (
                format!("during/{i}"),
                test_bytes(200_000 + i * 1000, 10 + i as u64),
            )
        })
        .collect();
    for (key, data) in &during {
        put(&s3, "photos", key, data).await;
    }
    put(&s3, "photos", "medium", &objects[0].1).await; // overwritten while down
    s3.delete_object()
        .bucket("photos")
        .key("before")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(backlog(&cluster, "photos"), 7);
    let report = gateway::admin::fetch(
        cluster.gateway.admin_addr,
        &cluster.gateway.admin_token,
        "/admin/v1/remotes",
    )
    .await
    .unwrap();
    assert!(report.contains(r#""queued":7"#), "{report}");
    let metrics = gateway::admin::fetch(cluster.gateway.admin_addr, "", "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains("gateway_mirror_queue_keys{bucket=\"photos\"} 7"),
        "{metrics}"
    );

    // The gateway restarts while the remote is still down: the queue is in the metadata.
    let cluster = cluster.restart_gateway().await;
    assert_eq!(backlog(&cluster, "photos"), 7);
    remote.restart().await;
    wait_drained(&cluster, "photos", Duration::from_secs(90)).await;
    for (key, data) in &during {
        assert_eq!(&remote.object("offsite", key).await.unwrap(), data, "{key}");
    }
    assert_eq!(
        remote.object("offsite", "medium").await.unwrap(),
        objects[0].1
    );
    assert!(remote.object("offsite", "before").await.is_none());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_mirror_acknowledges_only_what_the_remote_holds_and_serves_reads_without_nodes() {
    let mut remote = RemoteS3::start().await;
    remote.create_bucket("copy").await;
    let mut cluster = Cluster::start(6, |c| c.mirror_interval = "100ms".into()).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("docs").send().await.unwrap();
    cluster
        .gateway
        .objects
        .remotes()
        .set("docs", &remote.config("copy", MirrorMode::Sync, false))
        .unwrap();

    // Acknowledged = on the remote, with no waiting.
    let a = test_bytes(10_000_000, 20);
    put(&s3, "docs", "a", &a).await;
    assert_eq!(remote.object("copy", "a").await.unwrap(), a);
    assert_eq!(backlog(&cluster, "docs"), 0);

    // A tag change goes to the remote as a tag change. This remote (s3s-fs) keeps no tags and
    // answers NotImplemented: the change is acknowledged and leaves nothing queued, rather than
    // holding the bucket's queue up forever. (The smoke test checks tags on a remote that
    // keeps them.)
    s3.put_object_tagging()
        .bucket("docs")
        .key("a")
        .tagging(
            Tagging::builder()
                .tag_set(Tag::builder().key("team").value("blue").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(backlog(&cluster, "docs"), 0);
    assert_eq!(remote.object("copy", "a").await.unwrap(), a);

    // The remote is down: the write is refused as unavailable, stays queued, and gets there
    // once the remote is back.
    remote.stop().await;
    let b = test_bytes(50_000, 21);
    let e = s3
        .put_object()
        .bucket("docs")
        .key("b")
        .body(ByteStream::from(b.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "ServiceUnavailable");
    remote.restart().await;
    wait_drained(&cluster, "docs", Duration::from_secs(60)).await;
    assert_eq!(remote.object("copy", "b").await.unwrap(), b);

    // Every node is gone: reads (whole and ranged) come from the mirror, byte for byte.
    for i in 0..cluster.nodes.len() {
        cluster.stop_node(i).await;
    }
    assert_eq!(get(&s3, "docs", "a").await, a);
    let part = s3
        .get_object()
        .bucket("docs")
        .key("a")
        .range("bytes=4000000-4999999")
        .send()
        .await
        .unwrap();
    assert_eq!(
        part.body.collect().await.unwrap().into_bytes().as_ref(),
        &a[4_000_000..5_000_000]
    );
    assert_eq!(get(&s3, "docs", "b").await, b);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fallback_serves_missing_keys_and_copies_them_in() {
    let mut remote = RemoteS3::start().await;
    remote.create_bucket("legacy").await;
    let old_a = test_bytes(3_000_000, 30);
    let old_b = test_bytes(2_000, 31);
    for (key, data) in [("old/a", &old_a), ("old/b", &old_b)] {
        remote
            .client()
            .put_object()
            .bucket("legacy")
            .key(key)
            .content_type("image/png")
            .metadata("camera", "x100")
            .content_disposition("inline")
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
    }
    let cluster = Cluster::start(6, |c| c.mirror_interval = "100ms".into()).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("site").send().await.unwrap();
    let mut config = remote.config("legacy", MirrorMode::Off, true);
    config.copy_in = true;
    pair(&cluster, "site", &config).await;

    // Served from the remote: metadata, whole and ranged reads.
    let head = s3
        .head_object()
        .bucket("site")
        .key("old/a")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(old_a.len() as i64));
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(head.content_disposition(), Some("inline"));
    assert_eq!(
        head.metadata().unwrap().get("camera").map(String::as_str),
        Some("x100")
    );
    assert_eq!(get(&s3, "site", "old/a").await, old_a);
    let part = s3
        .get_object()
        .bucket("site")
        .key("old/a")
        .range("bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(
        part.body.collect().await.unwrap().into_bytes().as_ref(),
        &old_a[100..200]
    );
    let e = s3
        .get_object()
        .bucket("site")
        .key("nowhere")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NoSuchKey");

    // The read queued a copy-in: the object becomes the bucket's own, same bytes and ETag.
    let start = std::time::Instant::now();
    while cluster
        .gateway
        .meta
        .object("site", "old/a")
        .unwrap()
        .is_none()
    {
        assert!(start.elapsed() < Duration::from_secs(30), "no copy-in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let local = cluster
        .gateway
        .meta
        .object("site", "old/a")
        .unwrap()
        .unwrap();
    assert_eq!(Some(format!("\"{}\"", local.etag).as_str()), head.e_tag());
    assert_eq!(local.content_type.as_deref(), Some("image/png"));

    // Local writes stay local (no mirroring); a delete removes the remote's copy too, so the
    // key does not come back through the fallback.
    put(&s3, "site", "new", b"fresh").await;

    // Listings show both sides (once each), in order, with delimiters and pages.
    let all = s3.list_objects_v2().bucket("site").send().await.unwrap();
    let keys: Vec<&str> = all.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["new", "old/a", "old/b"]);
    assert_eq!(all.contents()[2].size(), Some(old_b.len() as i64));
    let rolled = s3
        .list_objects_v2()
        .bucket("site")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = rolled.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<&str> = rolled
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!((keys, prefixes), (vec!["new"], vec!["old/"]));
    let mut paged = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("site")
            .max_keys(1)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        paged.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(paged, ["new", "old/a", "old/b"]);

    s3.delete_object()
        .bucket("site")
        .key("old/b")
        .send()
        .await
        .unwrap();
    wait_drained(&cluster, "site", Duration::from_secs(30)).await;
    assert!(remote.object("legacy", "new").await.is_none());
    assert!(remote.object("legacy", "old/b").await.is_none());
    let e = s3
        .get_object()
        .bucket("site")
        .key("old/b")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NoSuchKey");

    // The copied-in object no longer needs the remote.
    remote.stop().await;
    assert_eq!(get(&s3, "site", "old/a").await, old_a);
    cluster.stop().await;
}

/// Real AWS S3: set `HYBRID_TEST_AWS_BUCKET` (an existing bucket the credentials may write),
/// optionally `HYBRID_TEST_AWS_REGION` (default us-east-1), and AWS credentials in the standard
/// environment. Objects go under a fresh prefix and are deleted at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_aws_mirror_round_trip_when_configured() {
    let Ok(bucket) = std::env::var("HYBRID_TEST_AWS_BUCKET") else {
        eprintln!("skipped: HYBRID_TEST_AWS_BUCKET is not set");
        return;
    };
    let region = std::env::var("HYBRID_TEST_AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let prefix = format!("gateway-test-{}/", gateway::time::now_ms());
    let cluster = Cluster::start(6, |c| c.mirror_interval = "200ms".into()).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("real").send().await.unwrap();
    let config = RemoteConfig {
        endpoint: None,
        region,
        bucket,
        prefix,
        path_style: false,
        credentials: gateway::hybrid::Credentials::Environment { profile: None },
        mirror: MirrorMode::Sync,
        fallback: true,
        copy_in: false,
        tier: None,
        parity: false,
    };
    pair(&cluster, "real", &config).await;
    let data = test_bytes(12_000_000, 40);
    put(&s3, "real", "object", &data).await;
    let remote = cluster
        .gateway
        .objects
        .remotes()
        .get("real")
        .await
        .unwrap()
        .unwrap();
    let found = remote
        .store
        .head(&config.remote_key("object"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.size, data.len() as u64);
    s3.delete_object()
        .bucket("real")
        .key("object")
        .send()
        .await
        .unwrap();
    assert!(remote
        .store
        .head(&config.remote_key("object"))
        .await
        .unwrap()
        .is_none());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiering_moves_objects_to_the_remote_and_reads_follow_them() {
    let mut remote = RemoteS3::start().await;
    remote.create_bucket("cold").await;
    let mut cluster = Cluster::start(6, |c| {
        c.mirror_interval = "100ms".into();
        c.tier_interval = "200ms".into();
    })
    .await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("archive").send().await.unwrap();
    let mut config = remote.config("cold", MirrorMode::Off, false);
    config.tier = Some(gateway::hybrid::TierPolicy {
        older_than: None,
        larger_than: Some("1MiB".into()),
        // Nearly all of the test nodes' space is free: nothing moves yet.
        when_free_below: Some("0.0001%".into()),
    });
    pair(&cluster, "archive", &config).await;

    let big: Vec<Vec<u8>> = (0..3).map(|i| test_bytes(3_000_000, 50 + i)).collect();
    let small = test_bytes(100_000, 60);
    let mut etags = Vec::new();
    for (i, data) in big.iter().enumerate() {
        let out = s3
            .put_object()
            .bucket("archive")
            .key(format!("big{i}"))
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        etags.push(out.e_tag().unwrap().to_string());
    }
    put(&s3, "archive", "small", &small).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(cluster
        .gateway
        .meta
        .object("archive", "big0")
        .unwrap()
        .is_some_and(|m| matches!(m.body, chunker::manifest::Body::Segments(_))));
    // Short of space (any used byte is below 100 % free): the large objects move; the small
    // one stays on the nodes.
    if let Some(t) = config.tier.as_mut() {
        t.when_free_below = Some("100%".into());
    }
    pair(&cluster, "archive", &config).await;
    let tiered = |key: &str| {
        matches!(
            cluster
                .gateway
                .meta
                .object("archive", key)
                .unwrap()
                .map(|m| m.body),
            Some(chunker::manifest::Body::Remote { .. })
        )
    };
    let start = std::time::Instant::now();
    while !(0..3).all(|i| tiered(&format!("big{i}"))) {
        assert!(start.elapsed() < Duration::from_secs(60), "not tiered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!tiered("small"));
    for (i, data) in big.iter().enumerate() {
        let key = format!("big{i}");
        assert_eq!(&remote.object("cold", &key).await.unwrap(), data);
        let out = s3
            .get_object()
            .bucket("archive")
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(out.e_tag(), Some(etags[i].as_str()), "the ETag stays");
        assert_eq!(
            &out.body.collect().await.unwrap().into_bytes().to_vec(),
            data
        );
    }
    let part = s3
        .get_object()
        .bucket("archive")
        .key("big0")
        .range("bytes=1000000-1000099")
        .send()
        .await
        .unwrap();
    assert_eq!(
        part.body.collect().await.unwrap().into_bytes().as_ref(),
        &big[0][1_000_000..1_000_100]
    );
    let health = gateway::admin::fetch(
        cluster.gateway.admin_addr,
        &cluster.gateway.admin_token,
        "/admin/v1/objects/archive/big0",
    )
    .await
    .unwrap();
    assert!(health.contains(r#""locations":["remote"]"#), "{health}");

    // A remote that changes a tiered object's bytes (same length) is caught: the read ends in
    // an error, never a complete answer with other bytes.
    let mut forged = big[1].clone();
    forged[12345] ^= 1;
    remote
        .client()
        .put_object()
        .bucket("cold")
        .key("big1")
        .body(ByteStream::from(forged))
        .send()
        .await
        .unwrap();
    let read = async {
        let out = s3.get_object().bucket("archive").key("big1").send().await?;
        let bytes = out.body.collect().await?;
        anyhow::Ok(bytes.into_bytes().to_vec())
    };
    assert!(read.await.is_err(), "a forged remote copy was served whole");

    // While objects live in the remote, it cannot be dropped.
    let (status, body) = gateway::admin::request(
        cluster.gateway.admin_addr,
        &cluster.gateway.admin_token,
        "DELETE",
        "/admin/v1/buckets/archive/remote",
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");

    // Overwritten here: back on the nodes, the stale remote copy goes; deleted: gone there too.
    put(&s3, "archive", "big0", b"now small").await;
    s3.delete_object()
        .bucket("archive")
        .key("big1")
        .send()
        .await
        .unwrap();
    wait_drained(&cluster, "archive", Duration::from_secs(30)).await;
    assert!(remote.object("cold", "big0").await.is_none());
    assert!(remote.object("cold", "big1").await.is_none());
    assert_eq!(get(&s3, "archive", "big0").await, b"now small");

    // Every node gone: the tiered object is still there, the one on nodes is not.
    for i in 0..cluster.nodes.len() {
        cluster.stop_node(i).await;
    }
    assert_eq!(get(&s3, "archive", "big2").await, big[2]);
    let e = s3
        .get_object()
        .bucket("archive")
        .key("small")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "ServiceUnavailable");
    remote.stop().await;
    cluster.stop().await;
}

/// The piece objects in the remote bucket `parity`.
async fn parity_pieces(remote: &RemoteS3) -> Vec<String> {
    let listed = remote
        .client()
        .list_objects_v2()
        .bucket("parity")
        .prefix(".pieces/")
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parity_in_the_cloud_keeps_objects_readable_and_repairable_without_m_data_nodes() {
    let mut remote = RemoteS3::start().await;
    remote.create_bucket("parity").await;
    let mut cluster = Cluster::start(6, |c| {
        c.vetting_audits = 0;
        c.offline_grace = "1s".into();
        c.repair_interval = "200ms".into();
    })
    .await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("vault").send().await.unwrap();
    let mut config = remote.config("parity", MirrorMode::Off, false);
    config.parity = true;
    pair(&cluster, "vault", &config).await;
    // Where the remote keeps parity pieces, no user key may go.
    let refused = s3
        .put_object()
        .bucket("vault")
        .key(".pieces/forged")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&refused.into_service_error()),
        Some("InvalidArgument")
    );

    let data = test_bytes(10_000_000, 70);
    put(&s3, "vault", "doc", &data).await;
    let manifest = cluster
        .gateway
        .meta
        .object("vault", "doc")
        .unwrap()
        .unwrap();
    let chunker::manifest::Body::Segments(segments) = &manifest.body else {
        panic!("not on nodes");
    };
    let stand_in = gateway::nodes::node_id(&gateway::hybrid::parity_peer("vault"));
    for seg in segments {
        let k = seg.params.k();
        assert!(seg.pieces[..k]
            .iter()
            .all(|p| p.node.as_ref() != Some(&stand_in)));
        assert!(seg.pieces[k..]
            .iter()
            .all(|p| p.node.as_ref() == Some(&stand_in)));
    }
    // The remote holds the parity pieces, and nothing readable.
    let stored = parity_pieces(&remote).await;
    assert_eq!(stored.len(), 2 * segments.len());
    for key in &stored {
        let bytes = remote.object("parity", key).await.unwrap();
        assert!(
            !bytes.windows(64).any(|w| w == &data[..64]),
            "plaintext in {key}"
        );
    }
    assert_eq!(get(&s3, "vault", "doc").await, data);
    let health = gateway::admin::fetch(
        cluster.gateway.admin_addr,
        &cluster.gateway.admin_token,
        "/admin/v1/objects/vault/doc",
    )
    .await
    .unwrap();
    assert!(
        health.contains(r#""locations":["nodes","remote_parity"]"#),
        "{health}"
    );

    // Two nodes holding data pieces of the first segment stop: reads use the cloud's parity,
    // and repair rebuilds the lost data pieces on the remaining nodes.
    let holders: Vec<usize> = segments[0].pieces[..2]
        .iter()
        .map(|p| {
            let peer = gateway::nodes::peer_of(p.node.as_ref().unwrap()).unwrap();
            cluster.nodes.iter().position(|n| n.peer == peer).unwrap()
        })
        .collect();
    let stopped: Vec<_> = holders
        .iter()
        .map(|&i| gateway::nodes::node_id(&cluster.nodes[i].peer))
        .collect();
    for &i in &holders {
        cluster.stop_node(i).await;
    }
    assert_eq!(get(&s3, "vault", "doc").await, data);
    let start = std::time::Instant::now();
    loop {
        let m = cluster
            .gateway
            .meta
            .object("vault", "doc")
            .unwrap()
            .unwrap();
        let on_stopped = gateway::meta::placed_pieces(&m)
            .iter()
            .any(|p| stopped.contains(&p.node));
        if !on_stopped && cluster.gateway.health.worst(&m) == Some(6) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "not repaired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Repaired: the nodes alone serve it again, even with the remote down.
    remote.stop().await;
    assert_eq!(get(&s3, "vault", "doc").await, data);
    remote.restart().await;

    // Deleting the object deletes its pieces in the cloud too.
    s3.delete_object()
        .bucket("vault")
        .key("doc")
        .send()
        .await
        .unwrap();
    let start = std::time::Instant::now();
    while !parity_pieces(&remote).await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "parity pieces left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Pieces whose deletion waits for a remote that is down, and then the pairing is removed:
    // the delete queue lets go of them instead of retrying forever.
    put(&s3, "vault", "doc2", &test_bytes(100_000, 71)).await;
    remote.stop().await;
    s3.delete_object()
        .bucket("vault")
        .key("doc2")
        .send()
        .await
        .unwrap();
    let queued = || {
        cluster
            .gateway
            .meta
            .gc_nodes()
            .unwrap()
            .iter()
            .any(|(n, _)| *n == stand_in)
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(queued(), "the deletion waits for the remote");
    let (status, body) = gateway::admin::request(
        cluster.gateway.admin_addr,
        &cluster.gateway.admin_token,
        "DELETE",
        "/admin/v1/buckets/vault/remote",
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let start = std::time::Instant::now();
    while queued() {
        assert!(start.elapsed() < Duration::from_secs(30), "still queued");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.stop().await;
}
