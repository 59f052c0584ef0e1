//! The S3 basics through the real `aws-sdk-s3` client against a gateway with real nodes.

#![allow(clippy::unwrap_used)]

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use tests::{test_bytes, Cluster};

async fn get_bytes(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = c.get_object().bucket(bucket).key(key).send().await.unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("(none)").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buckets_objects_ranges_and_listings() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();

    s3.create_bucket().bucket("photos").send().await.unwrap();
    let again = s3
        .create_bucket()
        .bucket("photos")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&again.into_service_error()), "BucketAlreadyOwnedByYou");
    s3.head_bucket().bucket("photos").send().await.unwrap();
    let missing = s3.head_bucket().bucket("nope").send().await.unwrap_err();
    assert_eq!(missing.raw_response().unwrap().status().as_u16(), 404);
    let names: Vec<String> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    assert_eq!(names, ["photos"]);

    // Sizes around the inline threshold and the segment size (4 × 1 MiB pieces hold
    // 4,193,280 plaintext bytes per segment).
    let seg = 4_193_280;
    let sizes = [0, 1, 4096, 4097, seg - 1, seg, seg + 1, 2 * seg + 12_345];
    for (i, &size) in sizes.iter().enumerate() {
        let data = test_bytes(size, i as u64);
        let key = format!("sized/{size}");
        let put = s3
            .put_object()
            .bucket("photos")
            .key(&key)
            .content_type("application/x-test")
            .metadata("origin", "tests")
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        let md5 = format!("\"{}\"", gateway::digest::hex(&md5_of(&data)));
        assert_eq!(put.e_tag(), Some(md5.as_str()), "size {size}");
        assert_eq!(get_bytes(&s3, "photos", &key).await, data, "size {size}");
        let head = s3
            .head_object()
            .bucket("photos")
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(size as i64));
        assert_eq!(head.content_type(), Some("application/x-test"));
        assert_eq!(head.metadata().unwrap().get("origin").unwrap(), "tests");
    }

    // Ranges, including ones across segment boundaries and suffixes.
    let key = format!("sized/{}", 2 * seg + 12_345);
    let data = test_bytes(2 * seg + 12_345, 7);
    for (spec, lo, hi) in [
        ("bytes=0-0", 0, 1),
        ("bytes=100-70000", 100, 70_001),
        (
            &*format!("bytes={}-{}", seg - 10, seg + 10),
            seg - 10,
            seg + 11,
        ),
        ("bytes=-5", data.len() - 5, data.len()),
        (&*format!("bytes={}-", 2 * seg), 2 * seg, data.len()),
    ] {
        let out = s3
            .get_object()
            .bucket("photos")
            .key(&key)
            .range(spec)
            .send()
            .await
            .unwrap();
        assert_eq!(out.content_length(), Some((hi - lo) as i64), "{spec}");
        let got = out.body.collect().await.unwrap().into_bytes();
        assert_eq!(&got[..], &data[lo..hi], "{spec}");
    }
    let bad = s3
        .get_object()
        .bucket("photos")
        .key(&key)
        .range(format!("bytes={}-", data.len() + 10))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&bad.into_service_error()), "InvalidRange");

    // Listing: prefix, delimiter, pages.
    for k in ["a/1", "a/2", "a/b/3", "c", "é"] {
        s3.put_object()
            .bucket("photos")
            .key(k)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    let top = s3
        .list_objects_v2()
        .bucket("photos")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = top
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    let keys: Vec<_> = top.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(prefixes, ["a/", "sized/"]);
    assert_eq!(keys, ["c", "é"]);
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("photos")
            .prefix("a/")
            .max_keys(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        all.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(all, ["a/1", "a/2", "a/b/3"]);
    let v1 = s3
        .list_objects()
        .bucket("photos")
        .prefix("a/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(v1.contents().len(), 2);
    assert_eq!(v1.common_prefixes()[0].prefix(), Some("a/b/"));

    // Deletes and the errors around them.
    let not_empty = s3
        .delete_bucket()
        .bucket("photos")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&not_empty.into_service_error()), "BucketNotEmpty");
    s3.delete_object()
        .bucket("photos")
        .key("c")
        .send()
        .await
        .unwrap();
    let gone = s3
        .get_object()
        .bucket("photos")
        .key("c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&gone.into_service_error()), "NoSuchKey");
    let no_bucket = s3
        .get_object()
        .bucket("nope")
        .key("c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&no_bucket.into_service_error()), "NoSuchBucket");
    cluster.stop().await;
}

fn md5_of(data: &[u8]) -> [u8; 16] {
    let mut d = gateway::digest::BodyDigest::new(&[]);
    d.update(data);
    d.finish().md5
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checksums_are_checked_stored_and_returned() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("sums").send().await.unwrap();
    let data = test_bytes(3_000_000, 3);
    for algorithm in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("k-{}", algorithm.as_str());
        let put = s3
            .put_object()
            .bucket("sums")
            .key(&key)
            .checksum_algorithm(algorithm.clone())
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        let got = s3
            .get_object()
            .bucket("sums")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let (sent, returned) = match algorithm {
            ChecksumAlgorithm::Crc32 => (put.checksum_crc32(), got.checksum_crc32()),
            ChecksumAlgorithm::Crc32C => (put.checksum_crc32_c(), got.checksum_crc32_c()),
            ChecksumAlgorithm::Crc64Nvme => (put.checksum_crc64_nvme(), got.checksum_crc64_nvme()),
            ChecksumAlgorithm::Sha1 => (put.checksum_sha1(), got.checksum_sha1()),
            _ => (put.checksum_sha256(), got.checksum_sha256()),
        };
        assert!(sent.is_some(), "{algorithm:?}");
        assert_eq!(sent.map(str::to_string), returned.map(str::to_string));
        // The SDK validates the returned checksum while reading the body.
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().len(),
            data.len()
        );
    }

    // A wrong Content-MD5 or claimed checksum is refused and leaves nothing behind.
    let bad_md5 = s3
        .put_object()
        .bucket("sums")
        .key("bad")
        .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
        .body(ByteStream::from_static(b"not empty"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&bad_md5.into_service_error()), "BadDigest");
    let bad_crc = s3
        .put_object()
        .bucket("sums")
        .key("bad")
        .checksum_crc32("AAAAAA==")
        .body(ByteStream::from(test_bytes(5_000_000, 9)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&bad_crc.into_service_error()), "BadDigest");
    let head = s3.head_object().bucket("sums").key("bad").send().await;
    assert!(head.is_err(), "a refused upload must not be visible");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_without_a_valid_signature_are_refused() {
    let cluster = Cluster::start(6, |_| {}).await;
    cluster
        .client()
        .create_bucket()
        .bucket("private")
        .send()
        .await
        .unwrap();

    let wrong_secret = cluster.client_with(
        &cluster.access_key,
        "0000000000000000000000000000000000000000",
    );
    let e = wrong_secret.list_buckets().send().await.unwrap_err();
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 403);
    assert_eq!(code(&e.into_service_error()), "SignatureDoesNotMatch");

    let unknown = cluster.client_with("GKNOSUCHKEY", "whatever");
    let e = unknown.list_buckets().send().await.unwrap_err();
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 403);
    assert_eq!(code(&e.into_service_error()), "InvalidAccessKeyId");

    // No signature at all.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(cluster.gateway.s3_addr)
        .await
        .unwrap();
    conn.write_all(b"GET /private HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("AccessDenied"), "{answer}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_beyond_the_concurrency_limit_get_slow_down() {
    let cluster = Cluster::start(6, |c| c.max_requests = 1).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("busy").send().await.unwrap();
    s3.put_object()
        .bucket("busy")
        .key("big")
        .body(ByteStream::from(test_bytes(20_000_000, 8)))
        .send()
        .await
        .unwrap();

    // A download whose body is not read holds the only slot.
    let held = s3
        .get_object()
        .bucket("busy")
        .key("big")
        .send()
        .await
        .unwrap();
    let no_retries = aws_sdk_s3::Client::from_conf(
        s3.config()
            .to_builder()
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build(),
    );
    let e = no_retries
        .get_object()
        .bucket("busy")
        .key("big")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.raw_response().unwrap().status().as_u16(), 503);
    assert_eq!(code(&e.into_service_error()), "SlowDown");

    // Once the first download is done, the slot is free again.
    let body = held.body.collect().await.unwrap().into_bytes();
    assert_eq!(body.len(), 20_000_000);
    let again = s3
        .get_object()
        .bucket("busy")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.body.collect().await.unwrap().into_bytes().len(),
        20_000_000
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_name_the_owner_as_s3_does() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("owned").send().await.unwrap();
    s3.put_object()
        .bucket("owned")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let v2 = s3.list_objects_v2().bucket("owned").send().await.unwrap();
    assert!(v2.contents()[0].owner().is_none(), "v2 without fetch-owner");
    let v2 = s3
        .list_objects_v2()
        .bucket("owned")
        .fetch_owner(true)
        .send()
        .await
        .unwrap();
    let id = v2.contents()[0].owner().unwrap().id().unwrap().to_string();
    assert_eq!(id.len(), 64);
    let v1 = s3.list_objects().bucket("owned").send().await.unwrap();
    assert_eq!(v1.contents()[0].owner().unwrap().id(), Some(id.as_str()));
    let buckets = s3.list_buckets().send().await.unwrap();
    assert_eq!(buckets.owner().unwrap().id(), Some(id.as_str()));
    cluster.stop().await;
}
