//! Multipart uploads through the real `aws-sdk-s3` client: the happy path with checksums, the
//! S3 errors of CompleteMultipartUpload, replaced parts, aborts, and the pieces of unused parts
//! removed from the nodes.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use tests::{test_bytes, Cluster};

const MIB: usize = 1 << 20;

fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("(none)").to_string()
}

async fn upload_part(
    s3: &aws_sdk_s3::Client,
    key: &str,
    upload: &str,
    number: i32,
    data: &[u8],
) -> CompletedPart {
    upload_part_with(s3, key, upload, number, data, ChecksumAlgorithm::Crc32).await
}

/// Uploads part `number` with a checksum of `algorithm`; the completed part carries it.
async fn upload_part_with(
    s3: &aws_sdk_s3::Client,
    key: &str,
    upload: &str,
    number: i32,
    data: &[u8],
    algorithm: ChecksumAlgorithm,
) -> CompletedPart {
    let out = s3
        .upload_part()
        .bucket("parts")
        .key(key)
        .upload_id(upload)
        .part_number(number)
        .checksum_algorithm(algorithm.clone())
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap();
    let part = CompletedPart::builder()
        .part_number(number)
        .e_tag(out.e_tag().unwrap());
    match algorithm {
        ChecksumAlgorithm::Crc64Nvme => {
            part.set_checksum_crc64_nvme(out.checksum_crc64_nvme().map(str::to_string))
        }
        _ => part.set_checksum_crc32(out.checksum_crc32().map(str::to_string)),
    }
    .build()
}

fn md5(data: &[u8]) -> [u8; 16] {
    let mut d = gateway::digest::BodyDigest::new(&[]);
    d.update(data);
    d.finish().md5
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multipart_uploads_complete_abort_and_fail_like_s3() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("parts").send().await.unwrap();

    let create = s3
        .create_multipart_upload()
        .bucket("parts")
        .key("big")
        .content_type("video/mp4")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .unwrap();
    let upload = create.upload_id().unwrap().to_string();
    let p1 = test_bytes(5 * MIB, 1);
    let p2_first = test_bytes(5 * MIB + 3, 2);
    let p2 = test_bytes(5 * MIB + 7, 22);
    let p3 = test_bytes(MIB + 11, 3);
    let c1 = upload_part(&s3, "big", &upload, 1, &p1).await;
    let _replaced = upload_part(&s3, "big", &upload, 2, &p2_first).await;
    let c2 = upload_part(&s3, "big", &upload, 2, &p2).await;
    let c3 = upload_part(&s3, "big", &upload, 3, &p3).await;

    let listed = s3
        .list_parts()
        .bucket("parts")
        .key("big")
        .upload_id(&upload)
        .send()
        .await
        .unwrap();
    let sizes: Vec<i64> = listed.parts().iter().filter_map(|p| p.size()).collect();
    assert_eq!(sizes, [p1.len() as i64, p2.len() as i64, p3.len() as i64]);
    let uploads = s3
        .list_multipart_uploads()
        .bucket("parts")
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1);
    assert_eq!(uploads.uploads()[0].upload_id(), Some(upload.as_str()));

    // The errors CompleteMultipartUpload owes its callers.
    let complete = |parts: Vec<CompletedPart>| {
        s3.complete_multipart_upload()
            .bucket("parts")
            .key("big")
            .upload_id(&upload)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
    };
    let wrong_etag = CompletedPart::builder()
        .part_number(1)
        .e_tag("\"00\"")
        .build();
    let e = complete(vec![wrong_etag, c2.clone()]).await.unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidPart");
    let e = complete(vec![c2.clone(), c1.clone()]).await.unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidPartOrder");
    let e = complete(vec![
        c3.clone(),
        CompletedPart::builder().part_number(4).e_tag("x").build(),
    ])
    .await
    .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidPart");
    let small = test_bytes(MIB, 5);
    let c5 = upload_part(&s3, "big", &upload, 5, &small).await;
    let e = complete(vec![c1.clone(), c3.clone(), c5])
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "EntityTooSmall");

    let done = complete(vec![c1, c2, c3]).await.unwrap();
    let mut md5s = Vec::new();
    for p in [&p1, &p2, &p3] {
        md5s.extend_from_slice(&md5(p));
    }
    let want_etag = format!("\"{}-3\"", gateway::digest::hex(&md5(&md5s)));
    assert_eq!(done.e_tag(), Some(want_etag.as_str()));

    let whole: Vec<u8> = [p1.clone(), p2.clone(), p3.clone()].concat();
    let got = s3
        .get_object()
        .bucket("parts")
        .key("big")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("video/mp4"));
    assert!(
        got.checksum_crc32().unwrap().ends_with("-3"),
        "composite checksum"
    );
    assert_eq!(
        got.checksum_type(),
        Some(&aws_sdk_s3::types::ChecksumType::Composite)
    );
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().to_vec(),
        whole
    );
    // A range across the boundary between parts 1 and 2 (two different nonce streams).
    let lo = 5 * MIB - 100;
    let ranged = s3
        .get_object()
        .bucket("parts")
        .key("big")
        .range(format!("bytes={lo}-{}", lo + 200))
        .send()
        .await
        .unwrap();
    let bytes = ranged.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], &whole[lo..lo + 201]);

    // Reads by part number (how transfer managers download in parallel): one part's bytes and
    // the parts count, the parts numbered in the order they make up the object.
    for (n, part) in [(1, &p1), (2, &p2), (3, &p3)] {
        let got = s3
            .get_object()
            .bucket("parts")
            .key("big")
            .part_number(n)
            .send()
            .await
            .unwrap();
        assert_eq!(got.parts_count(), Some(3));
        assert_eq!(got.content_length(), Some(part.len() as i64));
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().to_vec(),
            *part
        );
        let head = s3
            .head_object()
            .bucket("parts")
            .key("big")
            .part_number(n)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(part.len() as i64));
        assert_eq!(head.parts_count(), Some(3));
    }
    let by_part = |n: i32| s3.get_object().bucket("parts").key("big").part_number(n);
    let e = by_part(4).send().await.unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidPartNumber");
    let e = by_part(0).send().await.unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidPartNumber");
    let e = by_part(1).range("bytes=0-9").send().await.unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidRequest");
    // An object uploaded whole is one part.
    let single = test_bytes(10_000, 7);
    s3.put_object()
        .bucket("parts")
        .key("single")
        .body(ByteStream::from(single.clone()))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("parts")
        .key("single")
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(got.parts_count(), None);
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().to_vec(),
        single
    );
    let e = s3
        .get_object()
        .bucket("parts")
        .key("single")
        .part_number(2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "InvalidPartNumber");
    let after = s3
        .list_multipart_uploads()
        .bucket("parts")
        .send()
        .await
        .unwrap();
    assert!(after.uploads().is_empty());

    // Unknown or aborted uploads.
    let e = s3
        .upload_part()
        .bucket("parts")
        .key("big")
        .upload_id("0123456789abcdef0123456789abcdef")
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NoSuchUpload");
    let other = s3
        .create_multipart_upload()
        .bucket("parts")
        .key("dropped")
        .send()
        .await
        .unwrap();
    let other_id = other.upload_id().unwrap();
    upload_part(&s3, "dropped", other_id, 1, &test_bytes(2 * MIB, 9)).await;
    s3.abort_multipart_upload()
        .bucket("parts")
        .key("dropped")
        .upload_id(other_id)
        .send()
        .await
        .unwrap();
    let e = s3
        .list_parts()
        .bucket("parts")
        .key("dropped")
        .upload_id(other_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NoSuchUpload");

    // Only the completed object's pieces stay on the nodes as files: 2 + 2 + 1 segments of 6
    // pieces ("single"'s 2.5 KB pieces live in the nodes' index, not in files).
    let count = || {
        cluster
            .nodes
            .iter()
            .map(|n| n.piece_files().len())
            .sum::<usize>()
    };
    let mut left = 0;
    for _ in 0..100 {
        left = count();
        if left == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 30);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_uploads_are_aborted_after_their_ttl() {
    let cluster = Cluster::start(6, |c| c.upload_ttl = "2s".into()).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("parts").send().await.unwrap();
    let upload = s3
        .create_multipart_upload()
        .bucket("parts")
        .key("left")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    upload_part(&s3, "left", id, 1, &test_bytes(2 * MIB, 4)).await;
    let count = || {
        cluster
            .nodes
            .iter()
            .map(|n| n.piece_files().len())
            .sum::<usize>()
    };
    assert_eq!(count(), 6);

    let mut listed = 1;
    for _ in 0..100 {
        let uploads = s3
            .list_multipart_uploads()
            .bucket("parts")
            .send()
            .await
            .unwrap();
        listed = uploads.uploads().len();
        if listed == 0 && count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed, 0, "the upload is aborted");
    assert_eq!(count(), 0, "its part's pieces are deleted from the nodes");
    let e = s3
        .list_parts()
        .bucket("parts")
        .key("left")
        .upload_id(id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e.into_service_error()), "NoSuchUpload");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_list_with_delimiter_prefix_and_markers_as_s3_does() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("parts").send().await.unwrap();
    let mut ids = std::collections::BTreeMap::new();
    for key in ["a/1", "a/2", "b", "c/x/1", "c/x/2", "c/y", "d"] {
        let up = s3
            .create_multipart_upload()
            .bucket("parts")
            .key(key)
            .send()
            .await
            .unwrap();
        ids.insert(key, up.upload_id().unwrap().to_string());
    }
    // "b" has two uploads.
    let second_b = s3
        .create_multipart_upload()
        .bucket("parts")
        .key("b")
        .send()
        .await
        .unwrap();
    let second_b = second_b.upload_id().unwrap().to_string();

    // One page: uploads of b (both) and d; a/ and c/ rolled up.
    let page = s3
        .list_multipart_uploads()
        .bucket("parts")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = page.uploads().iter().filter_map(|u| u.key()).collect();
    let prefixes: Vec<&str> = page
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(keys, ["b", "b", "d"]);
    assert_eq!(prefixes, ["a/", "c/"]);
    assert_eq!(page.delimiter(), Some("/"));
    assert_eq!(page.is_truncated(), Some(false));

    // Under a prefix.
    let page = s3
        .list_multipart_uploads()
        .bucket("parts")
        .prefix("c/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = page.uploads().iter().filter_map(|u| u.key()).collect();
    let prefixes: Vec<&str> = page
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!((keys, prefixes), (vec!["c/y"], vec!["c/x/"]));

    // Pages of one entry each, following the markers: a/, b, b, c/, d.
    let mut seen = Vec::new();
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    for _ in 0..10 {
        let page = s3
            .list_multipart_uploads()
            .bucket("parts")
            .delimiter("/")
            .max_uploads(1)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await
            .unwrap();
        for p in page.common_prefixes() {
            seen.push(p.prefix().unwrap().to_string());
        }
        for u in page.uploads() {
            seen.push(format!("{}#{}", u.key().unwrap(), u.upload_id().unwrap()));
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(String::from);
        id_marker = page.next_upload_id_marker().map(String::from);
    }
    let expected = vec![
        "a/".to_string(),
        format!("b#{}", ids["b"]),
        format!("b#{second_b}"),
        "c/".to_string(),
        format!("d#{}", ids["d"]),
    ];
    assert_eq!(seen, expected);

    // Without a delimiter every upload is listed, in key then id order.
    let page = s3
        .list_multipart_uploads()
        .bucket("parts")
        .send()
        .await
        .unwrap();
    assert_eq!(page.uploads().len(), 8);
    assert!(page.common_prefixes().is_empty());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crc64nvme_upload_gets_the_full_object_checksum() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("parts").send().await.unwrap();
    let create = s3
        .create_multipart_upload()
        .bucket("parts")
        .key("whole")
        .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
        .send()
        .await
        .unwrap();
    let upload = create.upload_id().unwrap();
    let parts = [test_bytes(5 * MIB + 5, 7), test_bytes(MIB + 3, 8)];
    let mut completed = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let number = i as i32 + 1;
        let part = upload_part_with(
            &s3,
            "whole",
            upload,
            number,
            data,
            ChecksumAlgorithm::Crc64Nvme,
        );
        completed.push(part.await);
    }
    let done = s3
        .complete_multipart_upload()
        .bucket("parts")
        .key("whole")
        .upload_id(upload)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let whole_sum = done.checksum_crc64_nvme().unwrap().to_string();
    assert!(
        !whole_sum.contains('-'),
        "a full-object checksum: {whole_sum}"
    );

    // What a single PUT of the same bytes gets.
    let whole: Vec<u8> = parts.concat();
    let single = s3
        .put_object()
        .bucket("parts")
        .key("single")
        .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
        .body(ByteStream::from(whole.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(single.checksum_crc64_nvme(), Some(whole_sum.as_str()));

    // A GET with checksum mode returns it, and the SDK checks the body against it.
    let got = s3
        .get_object()
        .bucket("parts")
        .key("whole")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.checksum_crc64_nvme(), Some(whole_sum.as_str()));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().to_vec(),
        whole
    );
    cluster.stop().await;
}
