//! Hybrid-bucket bench: how fast the mirror worker copies a bucket to a remote, and what a
//! synchronous mirror costs a PUT. An in-process network (gateway + 6 nodes, `tests::Cluster`)
//! and an in-process `s3s-fs` remote (`tests::remote::RemoteS3`) on loopback.
//!
//! ```sh
//! cargo bench -p benches --bench mirror --profile dev
//! ```
//!
//! Phases: 16 objects of 16 MiB stored, then the bucket paired (async): time until the backfill
//! has drained (MB/s of objects copied: read back from the nodes, decrypted, uploaded as
//! multipart). Then 64 MiB PUTs into a bucket without a remote and into one mirrored
//! synchronously (MB/s as the client sees it).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use gateway::hybrid::MirrorMode;
use tests::remote::RemoteS3;
use tests::{test_bytes, Cluster};

const MIB: usize = 1 << 20;

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let remote = RemoteS3::start().await;
        remote.create_bucket("offsite").await;
        remote.create_bucket("sync").await;
        let cluster = Cluster::start(6, |c| c.mirror_interval = "50ms".into()).await;
        let s3 = cluster.client();
        for b in ["bulk", "plain", "mirrored"] {
            s3.create_bucket().bucket(b).send().await.unwrap();
        }

        let (count, size) = (16, 16 * MIB);
        let data = test_bytes(size, 1);
        for i in 0..count {
            put(&s3, "bulk", &format!("o{i}"), &data).await;
        }
        let start = Instant::now();
        cluster
            .gateway
            .objects
            .remotes()
            .set("bulk", &remote.config("offsite", MirrorMode::Async, false))
            .unwrap();
        loop {
            let left = cluster
                .gateway
                .meta
                .mirror_backlog()
                .unwrap()
                .get("bulk")
                .map_or(0, |b| b.depth);
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = start.elapsed();
        println!(
            "mirror backfill: {count} × {} MiB in {:.2} s = {:.0} MB/s",
            size / MIB,
            took.as_secs_f64(),
            mbps(count * size, took)
        );

        cluster
            .gateway
            .objects
            .remotes()
            .set("mirrored", &remote.config("sync", MirrorMode::Sync, false))
            .unwrap();
        let big = test_bytes(64 * MIB, 2);
        for bucket in ["plain", "mirrored", "plain", "mirrored"] {
            let start = Instant::now();
            put(&s3, bucket, "big", &big).await;
            let took = start.elapsed();
            println!(
                "PUT 64 MiB into {bucket:<8}: {:.2} s = {:.0} MB/s",
                took.as_secs_f64(),
                mbps(big.len(), took)
            );
        }
        cluster.stop().await;
    });
}
