//! Malformed S3 requests get S3's error (a 4xx with the right code), never a 500 or a hang:
//! invalid bucket names, bad XML bodies (signed correctly, so the parser is what refuses them),
//! oversized metadata and keys, bad part numbers and list arguments, garbage on the socket.

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
    for raw in [
        "GARBAGE\r\n\r\n".to_string(),
        "GET /good/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        huge,
    ] {
        let addr = addr.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut conn = std::net::TcpStream::connect(addr).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = conn.write_all(raw.as_bytes());
            let mut out = Vec::new();
            let _ = conn.read_to_end(&mut out);
            String::from_utf8_lossy(&out).to_string()
        })
        .await
        .unwrap();
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
