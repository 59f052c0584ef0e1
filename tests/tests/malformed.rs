//! Malformed S3 requests get S3's error (a 4xx with the right code), never a 500 or a hang:
//! invalid bucket names, bad XML bodies (signed correctly, so the parser is what refuses them),
//! oversized metadata and keys, bad part numbers and list arguments, garbage on the socket; request
//! ids on every answer; storage classes, encryption, versions and ACLs the gateway cannot honour;
//! an upload whose body stalls.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::time::Duration;

use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use tests::Cluster;

fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("(none)").to_string()
}

/// The HTTP status of a failed call.
fn status<E>(e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> u16 {
    e.raw_response().map_or(0, |r| r.status().as_u16())
}

/// Writes `request` to a new connection to `addr` and reads until the server closes it (at
/// most 20 s).
async fn raw(addr: &str, request: String) -> String {
    let addr = addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = conn.write_all(request.as_bytes());
        let mut out = Vec::new();
        let _ = conn.read_to_end(&mut out);
        String::from_utf8_lossy(&out).to_string()
    })
    .await
    .unwrap()
}

/// Replaces a request's body with `body` after the SDK built it (before signing, so the
/// signature covers the replacement) and drops the SDK's checksum of the original.
fn with_body(
    body: &'static str,
) -> impl Fn(&mut aws_sdk_s3::config::http::HttpRequest) + Send + Sync + 'static {
    move |req| {
        let names: Vec<String> = req
            .headers()
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| k.starts_with("x-amz-checksum-") || k == "content-md5")
            .collect();
        for name in names {
            req.headers_mut().remove(name);
        }
        req.headers_mut()
            .insert("content-length", body.len().to_string());
        *req.body_mut() = SdkBody::from(body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_get_s3_errors_not_500s() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("good").send().await.unwrap();
    s3.put_object()
        .bucket("good")
        .key("k")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();

    // Bucket names outside S3's rules.
    let too_long = "a".repeat(64);
    for bad in [
        "ab",
        "UPPER",
        "-lead",
        "trail-",
        "a..b",
        "192.168.5.4",
        "under_score",
        too_long.as_str(),
    ] {
        let e = s3.create_bucket().bucket(bad).send().await.unwrap_err();
        assert_eq!(code(&e.into_service_error()), "InvalidBucketName", "{bad}");
    }

    // Bodies that are not the XML the operation takes.
    let e = s3
        .delete_objects()
        .bucket("good")
        .delete(
            aws_sdk_s3::types::Delete::builder()
                .objects(
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key("k")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .customize()
        .mutate_request(with_body("<Delete><Object><Key>k</Key>"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 400, "{e:?}");
    assert_eq!(code(&e.into_service_error()), "MalformedXML");

    let upload = s3
        .create_multipart_upload()
        .bucket("good")
        .key("mp")
        .send()
        .await
        .unwrap();
    let e = s3
        .complete_multipart_upload()
        .bucket("good")
        .key("mp")
        .upload_id(upload.upload_id().unwrap())
        .customize()
        .mutate_request(with_body("this is not XML"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 400, "{e:?}");
    assert_eq!(code(&e.into_service_error()), "MalformedXML");

    let e = s3
        .put_object_tagging()
        .bucket("good")
        .key("k")
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .set_tag_set(Some(Vec::new()))
                .build()
                .unwrap(),
        )
        .customize()
        .mutate_request(with_body("<Tagging><TagSet><Tag><Key>a"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 400, "{e:?}");
    assert_eq!(code(&e.into_service_error()), "MalformedXML");

    // User metadata over S3's 2 KB, a key over 1024 bytes.
    let e = s3
        .put_object()
        .bucket("good")
        .key("meta")
        .metadata("big", "x".repeat(2100))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "MetadataTooLarge");
    let e = s3
        .put_object()
        .bucket("good")
        .key("k".repeat(1025))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "KeyTooLongError");

    // Part numbers outside 1..=10000; a part number an object does not have.
    for n in [0, 10_001] {
        let e = s3
            .upload_part()
            .bucket("good")
            .key("mp")
            .upload_id(upload.upload_id().unwrap())
            .part_number(n)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e.into_service_error()), "InvalidArgument", "part {n}");
    }
    let e = s3
        .get_object()
        .bucket("good")
        .key("k")
        .part_number(2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidPartNumber");

    // A negative max-keys.
    let e = s3
        .list_objects_v2()
        .bucket("good")
        .max_keys(-1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidArgument");

    // Garbage and oversized headers on the socket: an HTTP 4xx, the connection closed, and
    // the gateway still serves.
    let addr = cluster.endpoint().trim_start_matches("http://").to_string();
    let huge = format!(
        "GET /good/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    for request in [
        "GARBAGE\r\n\r\n".to_string(),
        "GET /good/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        huge,
    ] {
        let answer = raw(&addr, request).await;
        let status: u16 = answer
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(
            (400..500).contains(&status),
            "answered {status}: {}",
            answer.lines().next().unwrap_or("")
        );
    }
    let got = s3
        .get_object()
        .bucket("good")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(
        &got.body.collect().await.unwrap().into_bytes()[..],
        b"hello"
    );
    cluster.stop().await;
}

/// The request id and host id of a failed call, as the SDK read them from the response.
fn ids<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> (String, String) {
    let headers = e.raw_response().unwrap().headers();
    (
        headers
            .get("x-amz-request-id")
            .unwrap_or_default()
            .to_string(),
        headers.get("x-amz-id-2").unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_answer_names_its_request_and_options_the_gateway_cannot_honour_are_refused() {
    use aws_sdk_s3::operation::{RequestId, RequestIdExt};
    use aws_sdk_s3::types::{ObjectCannedAcl, ServerSideEncryption, StorageClass};

    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("opts").send().await.unwrap();

    // Request ids: every answer has its own, errors name it in their document too.
    let put = s3
        .put_object()
        .bucket("opts")
        .key("k")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    let first = put.request_id().unwrap().to_string();
    assert_eq!(first.len(), 16, "{first}");
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
    let host = put.extended_request_id().unwrap().to_string();
    let e = s3
        .get_object()
        .bucket("opts")
        .key("missing")
        .send()
        .await
        .unwrap_err();
    let (id, host_id) = ids(&e);
    assert_eq!(host_id, host);
    assert_ne!(id, first);
    let service = e.into_service_error();
    assert_eq!(code(&service), "NoSuchKey");
    assert_eq!(service.request_id(), Some(id.as_str()));
    // An unsigned request's 403, read off the socket: the header and the document agree.
    let addr = cluster.endpoint().trim_start_matches("http://").to_string();
    let answer = raw(
        &addr,
        "GET /opts/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let header = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-amz-request-id: "))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        answer.contains(&format!(
            "<RequestId>{header}</RequestId><HostId>{host}</HostId></Error>"
        )),
        "{answer}"
    );

    // Storage classes: S3's are taken (all stored alike), others refused.
    s3.put_object()
        .bucket("opts")
        .key("cold")
        .storage_class(StorageClass::StandardIa)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let e = s3
        .put_object()
        .bucket("opts")
        .key("cold")
        .storage_class(StorageClass::from("BOGUS"))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidStorageClass");

    // Encryption: AES256 is what the gateway does anyway; KMS and customer keys are refused,
    // on writes and on reads, rather than ignored.
    s3.put_object()
        .bucket("opts")
        .key("sse")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let e = s3
        .create_multipart_upload()
        .bucket("opts")
        .key("sse")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 501);
    assert_eq!(code(&e.into_service_error()), "NotImplemented");
    // A 256-bit key and its MD5, base64.
    let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let key_md5 = "y4HAEFCYWuvAXWFTtA1Qpg==";
    let e = s3
        .put_object()
        .bucket("opts")
        .key("ssec")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(key)
        .sse_customer_key_md5(key_md5)
        .body(ByteStream::from_static(b"secret"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NotImplemented");
    let e = s3
        .head_object()
        .bucket("opts")
        .key("ssec")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 404, "nothing was stored");
    let e = s3
        .get_object()
        .bucket("opts")
        .key("k")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(key)
        .sse_customer_key_md5(key_md5)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NotImplemented");

    // Versions: buckets are unversioned, so only the `null` version exists.
    s3.get_object()
        .bucket("opts")
        .key("k")
        .version_id("null")
        .send()
        .await
        .unwrap();
    let e = s3
        .get_object()
        .bucket("opts")
        .key("k")
        .version_id("3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 404);
    assert_eq!(code(&e.into_service_error()), "NoSuchVersion");
    let e = s3
        .delete_object()
        .bucket("opts")
        .key("k")
        .version_id("3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NoSuchVersion");

    // ACLs: as an S3 bucket with "bucket owner enforced" ownership: the owner has full
    // control, an ACL saying so is taken, any other is refused.
    let acl = s3
        .get_object_acl()
        .bucket("opts")
        .key("k")
        .send()
        .await
        .unwrap();
    let grants = acl.grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(
        grants[0].permission().map(|p| p.as_str()),
        Some("FULL_CONTROL")
    );
    assert_eq!(
        grants[0].grantee().and_then(|g| g.id()),
        acl.owner().and_then(|o| o.id())
    );
    assert_eq!(
        s3.get_bucket_acl()
            .bucket("opts")
            .send()
            .await
            .unwrap()
            .grants()
            .len(),
        1
    );
    s3.put_object_acl()
        .bucket("opts")
        .key("k")
        .acl(ObjectCannedAcl::Private)
        .send()
        .await
        .unwrap();
    let e = s3
        .put_object()
        .bucket("opts")
        .key("public")
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&e.into_service_error()),
        "AccessControlListNotSupported"
    );
    let e = s3
        .create_bucket()
        .bucket("public")
        .acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&e.into_service_error()),
        "InvalidBucketAclWithObjectOwnership"
    );

    // CompleteMultipartUpload without parts fails S3's schema.
    let upload = s3
        .create_multipart_upload()
        .bucket("opts")
        .key("mp")
        .send()
        .await
        .unwrap();
    let e = s3
        .complete_multipart_upload()
        .bucket("opts")
        .key("mp")
        .upload_id(upload.upload_id().unwrap())
        .multipart_upload(aws_sdk_s3::types::CompletedMultipartUpload::builder().build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "MalformedXML");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_whose_body_stalls_is_cut_off_and_leaves_nothing() {
    let cluster = Cluster::start(6, |c| c.body_timeout = "1s".into()).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("slow").send().await.unwrap();
    let url = s3
        .put_object()
        .bucket("slow")
        .key("stalled")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap(),
        )
        .await
        .unwrap();
    let uri: axum::http::Uri = url.uri().parse().unwrap();
    let addr = cluster.endpoint().trim_start_matches("http://").to_string();
    let path = uri.path_and_query().unwrap().to_string();
    // 10 of the 100 bytes announced, then silence (the connection stays open).
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0123456789"
    );
    let answer = raw(&addr, head).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>RequestTimeout</Code>"), "{answer}");
    let e = s3
        .head_object()
        .bucket("slow")
        .key("stalled")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 404);
    cluster.stop().await;
}
