//! Conditional reads, response header overrides, DeleteObjects and presigned URLs, through the
//! real `aws-sdk-s3` client (and plain HTTP for the presigned URLs).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use tests::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn status<E>(e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> u16 {
    e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0)
}

/// A plain HTTP/1.1 request; returns the status code and the body.
async fn http(addr: std::net::SocketAddr, method: &str, uri: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let url: &str = uri.split_once("://").map(|(_, rest)| rest).unwrap_or(uri);
    let path = &url[url.find('/').unwrap()..];
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    (status, out[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditions_overrides_batch_deletes_and_presigned_urls() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("cond").send().await.unwrap();
    let put = s3
        .put_object()
        .bucket("cond")
        .key("k")
        .content_type("text/plain")
        .body(ByteStream::from_static(b"conditional body"))
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_string();
    let head = s3
        .head_object()
        .bucket("cond")
        .key("k")
        .send()
        .await
        .unwrap();
    let modified = *head.last_modified().unwrap();
    let before = DateTime::from_secs(modified.secs() - 3600);
    let after = DateTime::from_secs(modified.secs() + 3600);

    // If-Match / If-Unmodified-Since → 412; If-None-Match / If-Modified-Since → 304.
    let e = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 412);
    let e = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .if_unmodified_since(before)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 412);
    let e = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 304);
    let e = s3
        .head_object()
        .bucket("cond")
        .key("k")
        .if_modified_since(after)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 304);
    // Conditions that hold, and S3's precedence (If-Match wins over a failing date).
    let ok = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .if_match(&etag)
        .if_unmodified_since(before)
        .if_modified_since(before)
        .send()
        .await
        .unwrap();
    assert_eq!(
        &ok.body.collect().await.unwrap().into_bytes()[..],
        b"conditional body"
    );

    // response-* overrides.
    let o = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .response_content_type("application/x-override")
        .response_content_disposition("attachment; filename=\"x.txt\"")
        .response_cache_control("no-store")
        .send()
        .await
        .unwrap();
    assert_eq!(o.content_type(), Some("application/x-override"));
    assert_eq!(
        o.content_disposition(),
        Some("attachment; filename=\"x.txt\"")
    );
    assert_eq!(o.cache_control(), Some("no-store"));

    // Presigned GET and PUT over plain HTTP; an expired URL is refused.
    let addr = cluster.gateway.s3_addr;
    let get = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        http(addr, "GET", get.uri(), b"").await,
        (200, b"conditional body".to_vec())
    );
    let put = s3
        .put_object()
        .bucket("cond")
        .key("presigned")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        http(addr, "PUT", put.uri(), b"via a presigned URL").await.0,
        200
    );
    let got = s3
        .get_object()
        .bucket("cond")
        .key("presigned")
        .send()
        .await
        .unwrap();
    assert_eq!(
        &got.body.collect().await.unwrap().into_bytes()[..],
        b"via a presigned URL"
    );
    let expired = PresigningConfig::builder()
        .start_time(SystemTime::now() - Duration::from_secs(7200))
        .expires_in(Duration::from_secs(60))
        .build()
        .unwrap();
    let old = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .presigned(expired)
        .await
        .unwrap();
    assert_eq!(http(addr, "GET", old.uri(), b"").await.0, 403);

    // Conditional writes: create-only and replace-this-version.
    let e = s3
        .put_object()
        .bucket("cond")
        .key("k")
        .if_none_match("*")
        .body(ByteStream::from_static(b"clobber"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 412);
    s3.put_object()
        .bucket("cond")
        .key("fresh")
        .if_none_match("*")
        .body(ByteStream::from_static(b"new"))
        .send()
        .await
        .unwrap();
    let e = s3
        .put_object()
        .bucket("cond")
        .key("k")
        .if_match("\"0123\"")
        .body(ByteStream::from_static(b"clobber"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 412);
    s3.put_object()
        .bucket("cond")
        .key("k")
        .if_match(&etag)
        .body(ByteStream::from_static(b"conditional body"))
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket("cond")
        .key("fresh")
        .send()
        .await
        .unwrap();

    // DeleteObjects, verbose then quiet.
    for k in ["a", "b", "c"] {
        s3.put_object()
            .bucket("cond")
            .key(k)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    let ids = |keys: &[&str]| {
        Delete::builder().set_objects(Some(
            keys.iter()
                .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                .collect(),
        ))
    };
    let verbose = s3
        .delete_objects()
        .bucket("cond")
        .delete(ids(&["a", "b", "never-existed"]).build().unwrap())
        .send()
        .await
        .unwrap();
    let mut gone: Vec<&str> = verbose.deleted().iter().filter_map(|d| d.key()).collect();
    gone.sort();
    assert_eq!(gone, ["a", "b", "never-existed"]);
    let quiet = s3
        .delete_objects()
        .bucket("cond")
        .delete(ids(&["c"]).quiet(true).build().unwrap())
        .send()
        .await
        .unwrap();
    assert!(quiet.deleted().is_empty() && quiet.errors().is_empty());
    let left: Vec<String> = s3
        .list_objects_v2()
        .bucket("cond")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(left, ["k", "presigned"]);
    cluster.stop().await;
}
