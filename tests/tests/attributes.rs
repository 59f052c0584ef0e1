//! What objects carry besides bytes and user metadata: stored response headers
//! (Content-Encoding, Content-Disposition, Cache-Control, Content-Language, Expires) and tag
//! sets (x-amz-tagging, Put/Get/DeleteObjectTagging), through PUT, multipart, copy and GET/HEAD.

#![allow(clippy::unwrap_used)]

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, MetadataDirective, Tag, Tagging, TaggingDirective,
};
use tests::{test_bytes, Cluster};

fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("(none)").to_string()
}

async fn tags(s3: &aws_sdk_s3::Client, key: &str) -> Vec<(String, String)> {
    let out = s3
        .get_object_tagging()
        .bucket("attrs")
        .key(key)
        .send()
        .await
        .unwrap();
    let mut t: Vec<(String, String)> = out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    t.sort();
    t
}

fn tagging(pairs: &[(&str, &str)]) -> Tagging {
    Tagging::builder()
        .set_tag_set(Some(
            pairs
                .iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap())
                .collect(),
        ))
        .build()
        .unwrap()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn headers_and_tags_are_stored_returned_copied_and_replaced() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("attrs").send().await.unwrap();
    let expires = DateTime::from_secs(1_900_000_000);
    let data = test_bytes(300_000, 1);
    let put = s3
        .put_object()
        .bucket("attrs")
        .key("doc")
        .content_encoding("gzip")
        .content_disposition("attachment; filename=\"a.txt\"")
        .cache_control("max-age=60")
        .content_language("sv")
        .expires(expires)
        .tagging("project=blue&owner=ann%20b")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();

    let head = s3
        .head_object()
        .bucket("attrs")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_encoding(), Some("gzip"));
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=\"a.txt\"")
    );
    assert_eq!(head.cache_control(), Some("max-age=60"));
    assert_eq!(head.content_language(), Some("sv"));
    assert_eq!(head.expires_string(), Some("Sun, 17 Mar 2030 17:46:40 GMT"));
    let got = s3
        .get_object()
        .bucket("attrs")
        .key("doc")
        .response_cache_control("no-store")
        .send()
        .await
        .unwrap();
    assert_eq!(got.cache_control(), Some("no-store"), "response-* wins");
    assert_eq!(got.content_language(), Some("sv"));
    assert_eq!(got.tag_count(), Some(2));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        &data[..]
    );
    assert_eq!(
        tags(&s3, "doc").await,
        pairs(&[("owner", "ann b"), ("project", "blue")])
    );

    // Tagging replaces the set and leaves the object alone.
    s3.put_object_tagging()
        .bucket("attrs")
        .key("doc")
        .tagging(tagging(&[("a", "1"), ("b", "2"), ("c", "")]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags(&s3, "doc").await,
        pairs(&[("a", "1"), ("b", "2"), ("c", "")])
    );
    let head = s3
        .head_object()
        .bucket("attrs")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(head.e_tag(), put.e_tag());
    assert_eq!(head.cache_control(), Some("max-age=60"));

    // Copies keep headers and tags by default, or take new ones.
    s3.copy_object()
        .bucket("attrs")
        .key("kept")
        .copy_source("attrs/doc")
        .send()
        .await
        .unwrap();
    let kept = s3
        .head_object()
        .bucket("attrs")
        .key("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(
        kept.content_disposition(),
        Some("attachment; filename=\"a.txt\"")
    );
    assert_eq!(tags(&s3, "kept").await, tags(&s3, "doc").await);
    s3.copy_object()
        .bucket("attrs")
        .key("replaced")
        .copy_source("attrs/doc")
        .metadata_directive(MetadataDirective::Replace)
        .cache_control("no-cache")
        .tagging_directive(TaggingDirective::Replace)
        .tagging("x=y")
        .send()
        .await
        .unwrap();
    let replaced = s3
        .head_object()
        .bucket("attrs")
        .key("replaced")
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.cache_control(), Some("no-cache"));
    assert_eq!(replaced.content_encoding(), None);
    assert_eq!(tags(&s3, "replaced").await, pairs(&[("x", "y")]));

    // Deleting the tag set.
    s3.delete_object_tagging()
        .bucket("attrs")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert!(tags(&s3, "doc").await.is_empty());
    let got = s3
        .get_object()
        .bucket("attrs")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(got.tag_count(), None);

    // Multipart uploads carry them from creation to the object.
    let up = s3
        .create_multipart_upload()
        .bucket("attrs")
        .key("parts")
        .cache_control("private")
        .tagging("stage=raw")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let part = s3
        .upload_part()
        .bucket("attrs")
        .key("parts")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(test_bytes(1000, 2)))
        .send()
        .await
        .unwrap();
    s3.complete_multipart_upload()
        .bucket("attrs")
        .key("parts")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("attrs")
        .key("parts")
        .send()
        .await
        .unwrap();
    assert_eq!(head.cache_control(), Some("private"));
    assert_eq!(tags(&s3, "parts").await, pairs(&[("stage", "raw")]));

    // S3's tag rules, and tagging what is not there.
    let dup = s3
        .put_object_tagging()
        .bucket("attrs")
        .key("doc")
        .tagging(tagging(&[("a", "1"), ("a", "2")]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&dup.into_service_error()), "InvalidTag");
    let eleven: Vec<(String, String)> = (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
    let eleven: Vec<(&str, &str)> = eleven
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let many = s3
        .put_object_tagging()
        .bucket("attrs")
        .key("doc")
        .tagging(tagging(&eleven))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&many.into_service_error()), "BadRequest");
    let bad = s3
        .put_object()
        .bucket("attrs")
        .key("bad")
        .tagging("a=1&a=2")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&bad.into_service_error()), "InvalidTag");
    let missing = s3
        .get_object_tagging()
        .bucket("attrs")
        .key("nothing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing.into_service_error()), "NoSuchKey");
    cluster.stop().await;
}
