//! The hostile suite: strangers who lie about themselves and leave together, and clients whose
//! retries race their own uploads. Nothing they do may cost a committed byte.
//!
//! Strangers are real in-process nodes that connect over QUIC from loopback addresses of their
//! own (`127.0.x.1`, so the gateway sees them in networks `127.0.x.0/24`), with made-up labels
//! and inflated capacities. Figures go to `target/tmp/hostile-*.txt`, which `.ci/run` prints.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use chunker::manifest::Body;
use libp2p::PeerId;
use tests::{code, get, put, test_bytes, Cluster, Stranger};

const MIB: usize = 1 << 20;

/// Writes one test's figures to `target/tmp/hostile-<name>.txt` (`.ci/run` prints them all).
fn figures(name: &str, text: &str) {
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{name}.txt"));
    std::fs::write(path, format!("{name}: {text}\n")).unwrap();
}

/// A cluster whose gateway also listens on QUIC, where strangers connect.
async fn cluster(nodes: usize) -> Cluster {
    Cluster::start(nodes, |c| {
        c.p2p_listen = vec![
            "/ip4/127.0.0.1/tcp/0".into(),
            "/ip4/127.0.0.1/udp/0/quic-v1".into(),
        ];
    })
    .await
}

fn stranger(ip: &str, n: usize) -> Stranger {
    Stranger {
        ip: ip.into(),
        labels: BTreeMap::from([
            ("region".to_string(), format!("x{n}")),
            ("zone".to_string(), format!("x{n}-a")),
            ("operator".to_string(), format!("honest-{n}")),
        ]),
        capacity: "1000TiB".into(),
    }
}

/// Who holds each piece of each segment of `key`.
fn holders(c: &Cluster, bucket: &str, key: &str) -> Vec<Vec<Option<PeerId>>> {
    let m = c.gateway.meta.object(bucket, key).unwrap().unwrap();
    let Body::Segments(segments) = m.body else {
        panic!("{key} is not on nodes")
    };
    segments
        .iter()
        .map(|s| {
            s.pieces
                .iter()
                .map(|p| p.node.as_ref().and_then(gateway::nodes::peer_of))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strangers_that_lie_and_leave_together_cost_no_object() {
    let mut c = cluster(6).await;
    // Twelve strangers: eight behind one network (a Sybil crowd), four in networks of their own,
    // all with made-up failure-domain labels and a thousand TiB each.
    let mut strangers = Vec::new();
    for n in 0..8 {
        strangers.push(c.add_stranger(stranger(&format!("127.0.40.{}", n + 1), n)));
    }
    for n in 0..4 {
        strangers.push(c.add_stranger(stranger(&format!("127.0.{}.1", 41 + n), 8 + n)));
    }
    c.wait_online(6 + strangers.len()).await;
    let views: HashMap<PeerId, gateway::nodes::NodeView> = c
        .gateway
        .nodes
        .all()
        .into_iter()
        .map(|n| (n.peer, n))
        .collect();
    for &i in &strangers {
        let v = &views[&c.nodes[i].peer];
        assert!(v.trusted_domain.is_none());
        let net = v.network.as_deref().unwrap();
        assert!(
            net.starts_with("127.0.4") && net.ends_with(".0/24"),
            "{net}"
        );
    }
    assert_eq!(
        views[&c.nodes[0].peer].trusted_domain.as_deref(),
        Some("z0")
    );

    let s3 = c.client();
    s3.create_bucket().bucket("crowd").send().await.unwrap();
    let objects = 24;
    let len = 5_000_000;
    for i in 0..objects {
        put(&s3, "crowd", &format!("o{i}"), &test_bytes(len, i as u64)).await;
    }
    let stranger_peers: BTreeSet<PeerId> = strangers.iter().map(|&i| c.nodes[i].peer).collect();
    let mut segments = 0;
    let mut with_stranger = 0;
    for i in 0..objects {
        for seg in holders(&c, "crowd", &format!("o{i}")) {
            segments += 1;
            let on_strangers = seg
                .iter()
                .filter(|p| p.is_some_and(|p| stranger_peers.contains(&p)))
                .count();
            assert!(
                on_strangers <= 1,
                "a segment has {on_strangers} pieces on strangers"
            );
            with_stranger += usize::from(on_strangers == 1);
        }
    }
    // Every stranger leaves at once.
    for &i in &strangers {
        c.stop_node(i).await;
    }
    let mut unreadable = 0;
    for i in 0..objects {
        let got = s3
            .get_object()
            .bucket("crowd")
            .key(format!("o{i}"))
            .send()
            .await;
        match got {
            Ok(o) => {
                let bytes = o.body.collect().await.unwrap().into_bytes();
                if bytes.as_ref() != test_bytes(len, i as u64).as_slice() {
                    unreadable += 1;
                }
            }
            Err(_) => unreadable += 1,
        }
    }
    let text = format!(
        "6 operator nodes + 12 strangers (8 behind 127.0.40.0/24, 4 in networks of their own; \
         labels made up, 1000 TiB claimed each); {objects} objects of {len} B, {segments} \
         segments; segments with a piece on a stranger: {with_stranger} (at most 1 each); \
         after every stranger was stopped: {unreadable} objects unreadable"
    );
    figures("strangers", &text);
    assert_eq!(unreadable, 0, "{text}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_network_of_strangers_in_vetting_refuses_writes_and_says_why() {
    let mut c = cluster(0).await;
    for n in 0..8 {
        c.add_stranger(stranger(&format!("127.0.{}.1", 50 + n), n));
    }
    c.wait_online(8).await;
    let s3 = c.client();
    s3.create_bucket().bucket("young").send().await.unwrap();
    let err = s3
        .put_object()
        .bucket("young")
        .key("big")
        .body(ByteStream::from(test_bytes(2 * MIB, 1)))
        .send()
        .await
        .unwrap_err();
    let service = err.into_service_error();
    let meta = aws_sdk_s3::error::ProvideErrorMetadata::meta(&service);
    assert_eq!(meta.code(), Some("ServiceUnavailable"));
    let message = meta.message().unwrap_or_default().to_string();
    assert!(message.contains("8 stranger(s) in vetting"), "{message}");
    let why = c
        .gateway
        .nodes
        .writable(6, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(why.contains("0 operator-listed"), "{why}");
    // A small object lives in the metadata and is still taken.
    put(&s3, "young", "small", &[7u8; 100]).await;
    figures("young-network", &format!("8 strangers in vetting, no operator nodes: PUT 2 MiB → 503 ServiceUnavailable: {message}"));
    c.stop().await;
}

async fn part(
    s3: &aws_sdk_s3::Client,
    upload: &str,
    number: i32,
    body: &[u8],
    md5: Option<&str>,
) -> Result<String, String> {
    let mut req = s3
        .upload_part()
        .bucket("parts")
        .key("k")
        .upload_id(upload)
        .part_number(number)
        .body(ByteStream::from(body.to_vec()));
    if let Some(md5) = md5 {
        req = req.content_md5(md5);
    }
    match req.send().await {
        Ok(out) => Ok(out.e_tag().unwrap().to_string()),
        Err(e) => Err(code(&e.into_service_error())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_part_neither_reuses_a_nonce_nor_deletes_the_committed_part() {
    let c = Cluster::start(6, |_| {}).await;
    let s3 = c.client();
    s3.create_bucket().bucket("parts").send().await.unwrap();
    let upload = s3
        .create_multipart_upload()
        .bucket("parts")
        .key("k")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let id = gateway::objects::multipart::parse_upload_id(&upload).unwrap();
    let one = test_bytes(6 * MIB, 1);
    let last = test_bytes(MIB, 2);
    let etag = part(&s3, &upload, 1, &one, None).await.unwrap();
    let first = c.gateway.meta.parts(&id).unwrap().remove(0);

    // The same bytes again, with a Content-MD5 that does not match: refused, four times (as
    // the aws cli retries it), each attempt cleaned up after itself.
    let wrong = "AAAAAAAAAAAAAAAAAAAAAA==";
    for _ in 0..4 {
        assert_eq!(
            part(&s3, &upload, 1, &one, Some(wrong)).await,
            Err("BadDigest".into())
        );
    }
    // Let the delete worker run over everything those attempts queued.
    let report = gateway::gc::pass(
        &c.gateway.meta,
        &c.gateway.nodes,
        c.gateway.net.as_ref(),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(c.gateway.meta.parts(&id).unwrap(), vec![first.clone()]);

    // A successful re-upload of the same bytes seals under a stream of its own: every piece
    // differs from the first attempt's.
    let etag_again = part(&s3, &upload, 1, &one, None).await.unwrap();
    assert_eq!(etag, etag_again, "same bytes, same MD5");
    let again = c.gateway.meta.parts(&id).unwrap().remove(0);
    let streams = |p: &gateway::meta::StoredPart| -> BTreeSet<u32> {
        p.segments.iter().map(|s| s.stream).collect()
    };
    assert!(
        streams(&first).is_disjoint(&streams(&again)),
        "two attempts, one stream"
    );
    let ids = |p: &gateway::meta::StoredPart| -> BTreeSet<chunker::PieceId> {
        p.segments.iter().flat_map(|s| s.ids()).collect()
    };
    assert!(
        ids(&first).is_disjoint(&ids(&again)),
        "two attempts share a piece"
    );

    let etag_last = part(&s3, &upload, 2, &last, None).await.unwrap();
    let parts = [(1, etag_again), (2, etag_last)]
        .into_iter()
        .map(|(n, e)| CompletedPart::builder().part_number(n).e_tag(e).build())
        .collect();
    s3.complete_multipart_upload()
        .bucket("parts")
        .key("k")
        .upload_id(&upload)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    gateway::gc::pass(
        &c.gateway.meta,
        &c.gateway.nodes,
        c.gateway.net.as_ref(),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert!(
        get(&s3, "parts", "k").await == [one.as_slice(), last.as_slice()].concat(),
        "the object reads back whole"
    );
    figures(
        "part-retry",
        &format!(
            "part 1 uploaded, then 4 retries with a wrong Content-MD5 (BadDigest) and a delete pass \
             ({} pieces deleted, {} kept as referenced), a re-upload of the same bytes (streams {:?} → {:?}, \
             0 shared pieces), complete: the object reads back whole",
            report.deleted,
            report.kept,
            streams(&first),
            streams(&again),
        ),
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_objects_pieces_wait_out_the_delete_grace() {
    let c = Cluster::start(6, |c| c.delete_grace = "1h".into()).await;
    let s3 = c.client();
    s3.create_bucket().bucket("grace").send().await.unwrap();
    put(&s3, "grace", "k", &test_bytes(3 * MIB, 3)).await;
    let files = |c: &Cluster| c.nodes.iter().map(|n| n.piece_files().len()).sum::<usize>();
    let stored = files(&c);
    assert!(stored >= 6);
    s3.delete_object()
        .bucket("grace")
        .key("k")
        .send()
        .await
        .unwrap();
    let net = c.gateway.net.as_ref();
    let r = gateway::gc::pass(
        &c.gateway.meta,
        &c.gateway.nodes,
        net,
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.deleted, files(&c)),
        (0, stored),
        "within the grace nothing goes"
    );
    let r = gateway::gc::pass(&c.gateway.meta, &c.gateway.nodes, net, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(r.deleted, stored);
    let mut left = files(&c);
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = files(&c);
    }
    assert_eq!(left, 0);
    c.stop().await;
}

fn denied<E: aws_sdk_s3::error::ProvideErrorMetadata, R: std::fmt::Debug>(r: Result<R, E>) -> bool {
    match r {
        Ok(v) => panic!("allowed: {v:?}"),
        Err(e) => e.code() == Some("AccessDenied"),
    }
}

/// `s3` may neither write nor delete in `bucket`.
async fn writes_denied(s3: &aws_sdk_s3::Client, bucket: &str) {
    assert!(denied(
        s3.put_object()
            .bucket(bucket)
            .key("x")
            .body(ByteStream::from(vec![2u8; 10]))
            .send()
            .await
            .map_err(|e| e.into_service_error())
    ));
    assert!(denied(
        s3.delete_object()
            .bucket(bucket)
            .key("k")
            .send()
            .await
            .map_err(|e| e.into_service_error())
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_reaches_only_the_buckets_it_was_granted() {
    let c = Cluster::start(6, |_| {}).await;
    let a = c.client();
    let b_key = gateway::keys::create(&c.gateway.meta, &c.gateway.master, "b").unwrap();
    let b = c.client_with(&b_key.id, &b_key.secret);
    a.create_bucket().bucket("mine").send().await.unwrap();
    put(&a, "mine", "k", &[1u8; 10_000]).await;

    // B sees nothing of A's bucket and can touch none of it.
    let listed = b.list_buckets().send().await.unwrap();
    assert!(listed.buckets().is_empty(), "{listed:?}");
    assert!(denied(
        b.list_objects_v2()
            .bucket("mine")
            .send()
            .await
            .map_err(|e| e.into_service_error())
    ));
    assert!(denied(
        b.get_object()
            .bucket("mine")
            .key("k")
            .send()
            .await
            .map_err(|e| e.into_service_error())
    ));
    writes_denied(&b, "mine").await;
    assert!(denied(
        b.delete_bucket()
            .bucket("mine")
            .send()
            .await
            .map_err(|e| e.into_service_error())
    ));
    // Copying A's object into a bucket of B's own needs a read of A's.
    b.create_bucket().bucket("theirs").send().await.unwrap();
    assert!(denied(
        b.copy_object()
            .bucket("theirs")
            .key("stolen")
            .copy_source("mine/k")
            .send()
            .await
            .map_err(|e| e.into_service_error())
    ));
    // The name is taken.
    let taken = b.create_bucket().bucket("mine").send().await.unwrap_err();
    assert_eq!(code(&taken.into_service_error()), "BucketAlreadyExists");

    // A read grant lets B read, and only read.
    c.gateway
        .meta
        .set_grant("mine", &b_key.id, Some(gateway::meta::Grant::Read))
        .unwrap();
    let names: Vec<String> = b
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|x| x.name().map(str::to_string))
        .collect();
    assert_eq!(names, ["mine", "theirs"]);
    let got = b.get_object().bucket("mine").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().len(), 10_000);
    assert_eq!(
        b.list_objects_v2()
            .bucket("mine")
            .send()
            .await
            .unwrap()
            .key_count(),
        Some(1)
    );
    writes_denied(&b, "mine").await;

    // Disabled, then deleted: refused at once, while the gateway runs.
    assert!(gateway::keys::set_disabled(&c.gateway.meta, &b_key.id, true).unwrap());
    let refused = b.list_buckets().send().await.unwrap_err();
    assert_eq!(code(&refused.into_service_error()), "InvalidAccessKeyId");
    assert!(gateway::keys::set_disabled(&c.gateway.meta, &b_key.id, false).unwrap());
    b.get_object().bucket("mine").key("k").send().await.unwrap();
    assert!(c.gateway.meta.delete_access_key(&b_key.id).unwrap());
    assert!(b.get_object().bucket("mine").key("k").send().await.is_err());
    assert!(!c
        .gateway
        .meta
        .grants("mine")
        .unwrap()
        .0
        .iter()
        .any(|(k, _)| *k == b_key.id));
    // A, the owner, still does everything.
    a.delete_object()
        .bucket("mine")
        .key("k")
        .send()
        .await
        .unwrap();
    a.delete_bucket().bucket("mine").send().await.unwrap();
    figures(
        "keys",
        "two keys: B lists none of A's buckets and gets 403 AccessDenied on list, get, put, delete, \
         delete-bucket and copy-from; BucketAlreadyExists on A's name; after a read grant B lists \
         and reads, and put and delete stay 403; disabled → InvalidAccessKeyId at once, enabled → \
         served, deleted → refused and its grants gone",
    );
    c.stop().await;
}

/// A connection from `ip` that sends nothing. It is reset when dropped, not closed, so it
/// leaves no TIME_WAIT behind: thousands of those would hold ports in the ephemeral range that
/// nodes of the next test (whose libp2p dials reuse their listening port) could then not bind.
async fn idle_connection(
    ip: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // Deprecated because a non-zero linger blocks the dropping thread; a zero one resets at once.
    #[allow(deprecated)]
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    socket.bind((ip, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_on_the_s3_port_are_shed_before_they_cost_memory_or_service() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Cluster::start(6, |_| {}).await;
    let s3 = c.client();
    s3.create_bucket().bucket("flood").send().await.unwrap();
    put(&s3, "flood", "k", &[5u8; 1000]).await;
    let addr = c.gateway.s3_addr;

    // An anonymous 1 GiB form POST: refused from its head, its body never read.
    let before = rss_bytes();
    let mut post = tokio::net::TcpStream::connect(addr).await.unwrap();
    post.write_all(
        b"POST /flood HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\n\
          Content-Length: 1073741824\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), post.read_exact(&mut head))
        .await
        .expect("answered before the body was sent")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 403");
    // Whatever of the body is pushed after the answer goes nowhere.
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    for _ in 0..1024 {
        match tokio::time::timeout(Duration::from_secs(2), post.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => break,
        }
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 32 << 20, "RSS grew {grown} bytes");
    drop(post);

    // 2,000 idle connections from eight other addresses, and 600 more from one: signed GETs
    // are still answered.
    let mut idle = Vec::new();
    for i in 0..2000u32 {
        let ip = std::net::Ipv4Addr::new(127, 0, 70, 1 + (i % 8) as u8);
        idle.push(idle_connection(ip, addr).await);
    }
    for _ in 0..600 {
        idle.push(idle_connection([127, 0, 71, 1].into(), addr).await);
    }
    let started = std::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(get(&s3, "flood", "k").await.len(), 1000);
    }
    let took = started.elapsed();
    figures(
        "floods",
        &format!(
            "anonymous 1 GiB multipart/form-data POST: 403 before any body byte, {} MiB pushed after it \
             went nowhere, process RSS grew {:.1} MiB; 2,000 idle connections from 8 addresses + 600 \
             from one (512 held per address): 20 signed GETs answered in {took:.2?}",
            sent >> 20,
            grown as f64 / (1u64 << 20) as f64,
        ),
    );
    drop(idle);
    c.stop().await;
}
