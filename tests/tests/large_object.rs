//! A large object streams up and down byte-identical without ever being held whole.

#![allow(clippy::unwrap_used)]

use std::io::Write;

use aws_sdk_s3::primitives::ByteStream;
use tests::{test_bytes, Cluster};

const MIB: usize = 1 << 20;
const SIZE_MIB: usize = 512;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_512_mib_object_streams_up_and_down_identical() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("large").send().await.unwrap();

    // The source lives in a file, written and hashed one MiB at a time.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("source");
    let mut sent = blake3::Hasher::new();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..SIZE_MIB {
            let chunk = test_bytes(MIB, i as u64);
            sent.update(&chunk);
            f.write_all(&chunk).unwrap();
        }
        f.flush().unwrap();
    }
    s3.put_object()
        .bucket("large")
        .key("big")
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .unwrap();
    std::fs::remove_file(&path).unwrap();

    let mut out = s3
        .get_object()
        .bucket("large")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_length(), Some((SIZE_MIB * MIB) as i64));
    let mut received = blake3::Hasher::new();
    let mut len = 0usize;
    while let Some(chunk) = out.body.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len();
        received.update(&chunk);
    }
    assert_eq!(len, SIZE_MIB * MIB);
    assert_eq!(received.finalize(), sent.finalize());
    cluster.stop().await;
}
