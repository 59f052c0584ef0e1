//! Server-side copies: CopyObject with both metadata directives (and onto itself), and
//! UploadPartCopy with ranges, through the real `aws-sdk-s3` client.

#![allow(clippy::unwrap_used)]

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use tests::{test_bytes, Cluster};

fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("(none)").to_string()
}

async fn get(
    s3: &aws_sdk_s3::Client,
    key: &str,
) -> (
    Vec<u8>,
    aws_sdk_s3::operation::head_object::HeadObjectOutput,
) {
    let head = s3
        .head_object()
        .bucket("copies")
        .key(key)
        .send()
        .await
        .unwrap();
    let out = s3
        .get_object()
        .bucket("copies")
        .key(key)
        .send()
        .await
        .unwrap();
    (
        out.body.collect().await.unwrap().into_bytes().to_vec(),
        head,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_keep_or_replace_metadata_and_parts_copy_ranges() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("copies").send().await.unwrap();
    let data = test_bytes(9_000_000, 1);
    s3.put_object()
        .bucket("copies")
        .key("src")
        .content_type("text/plain")
        .metadata("color", "blue")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();

    // COPY (the default) keeps the metadata.
    s3.copy_object()
        .bucket("copies")
        .key("kept")
        .copy_source("copies/src")
        .send()
        .await
        .unwrap();
    let (bytes, head) = get(&s3, "kept").await;
    assert_eq!(bytes, data);
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(head.metadata().unwrap().get("color").unwrap(), "blue");

    // REPLACE takes the request's.
    s3.copy_object()
        .bucket("copies")
        .key("replaced")
        .copy_source("copies/src")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/json")
        .metadata("color", "red")
        .send()
        .await
        .unwrap();
    let (bytes, head) = get(&s3, "replaced").await;
    assert_eq!(bytes, data);
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(head.metadata().unwrap().get("color").unwrap(), "red");

    // Onto itself: refused unless the metadata is replaced.
    let e = s3
        .copy_object()
        .bucket("copies")
        .key("src")
        .copy_source("copies/src")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidRequest");
    s3.copy_object()
        .bucket("copies")
        .key("src")
        .copy_source("copies/src")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("color", "green")
        .send()
        .await
        .unwrap();
    let (bytes, head) = get(&s3, "src").await;
    assert_eq!(bytes, data);
    assert_eq!(head.metadata().unwrap().get("color").unwrap(), "green");

    let e = s3
        .copy_object()
        .bucket("copies")
        .key("x")
        .copy_source("copies/missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NoSuchKey");

    // A multipart object assembled from ranges of the source.
    let upload = s3
        .create_multipart_upload()
        .bucket("copies")
        .key("assembled")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    let cut = 6_000_000u64;
    for (n, range) in [
        (1, format!("bytes=0-{}", cut - 1)),
        (2, format!("bytes={cut}-8999999")),
    ] {
        let out = s3
            .upload_part_copy()
            .bucket("copies")
            .key("assembled")
            .upload_id(id)
            .part_number(n)
            .copy_source("copies/src")
            .copy_source_range(range)
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.copy_part_result().unwrap().e_tag().unwrap())
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket("copies")
        .key("assembled")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (bytes, _) = get(&s3, "assembled").await;
    assert_eq!(bytes, data);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_source_conditions_copy_or_fail_with_412() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("copies").send().await.unwrap();
    let put = s3
        .put_object()
        .bucket("copies")
        .key("src")
        .body(ByteStream::from(test_bytes(10_000, 2)))
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_string();
    let past = aws_sdk_s3::primitives::DateTime::from_secs(1_000_000_000);
    let future = aws_sdk_s3::primitives::DateTime::from_secs(4_000_000_000);

    // Conditions that hold: the copy happens.
    s3.copy_object()
        .bucket("copies")
        .key("a")
        .copy_source("copies/src")
        .copy_source_if_match(&etag)
        .copy_source_if_modified_since(past)
        .send()
        .await
        .unwrap();
    s3.copy_object()
        .bucket("copies")
        .key("b")
        .copy_source("copies/src")
        .copy_source_if_none_match("\"0123\"")
        .copy_source_if_unmodified_since(future)
        .send()
        .await
        .unwrap();
    // If-Match holding wins over If-Unmodified-Since failing, as in S3.
    s3.copy_object()
        .bucket("copies")
        .key("c")
        .copy_source("copies/src")
        .copy_source_if_match(&etag)
        .copy_source_if_unmodified_since(past)
        .send()
        .await
        .unwrap();

    // Conditions that fail: 412, nothing written (a "not modified" source is a failure too).
    let failing = [
        s3.copy_object().copy_source_if_match("\"0123\""),
        s3.copy_object().copy_source_if_none_match(&etag),
        s3.copy_object().copy_source_if_modified_since(future),
        s3.copy_object().copy_source_if_unmodified_since(past),
    ];
    for (i, request) in failing.into_iter().enumerate() {
        let e = request
            .bucket("copies")
            .key("refused")
            .copy_source("copies/src")
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            code(&e.into_service_error()),
            "PreconditionFailed",
            "case {i}"
        );
    }
    let e = s3
        .head_object()
        .bucket("copies")
        .key("refused")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_not_found());

    // UploadPartCopy takes the same conditions.
    let up = s3
        .create_multipart_upload()
        .bucket("copies")
        .key("parts")
        .send()
        .await
        .unwrap();
    let e = s3
        .upload_part_copy()
        .bucket("copies")
        .key("parts")
        .upload_id(up.upload_id().unwrap())
        .part_number(1)
        .copy_source("copies/src")
        .copy_source_if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "PreconditionFailed");
    cluster.stop().await;
}
