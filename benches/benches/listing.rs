//! Listing bench: a bucket of 100,000 keys (`d00/k000000` … `d99/k099999`: 100 "directories" of
//! 1,000 keys, small bodies kept inline) on an in-process network (gateway + 6 nodes), listed
//! through the S3 API with `aws-sdk-s3`.
//!
//! ```sh
//! cargo bench -p benches --bench listing --profile dev
//! ```
//!
//! Figures: PUT rate of the 100k small objects (32 at once); a full ListObjectsV2 walk (pages
//! of 1,000); the root with delimiter `/` (100 common prefixes); one directory (1,000 keys);
//! one page resumed from a start-after deep in the bucket; a ListObjects v1 page with a marker.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use tests::Cluster;

const KEYS: usize = 100_000;
const DIRS: usize = 100;

fn key(i: usize) -> String {
    format!("d{:02}/k{i:06}", i % DIRS)
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Walks a whole ListObjectsV2 listing; returns (keys, common prefixes, pages).
async fn walk(
    s3: &aws_sdk_s3::Client,
    prefix: Option<&str>,
    delimiter: Option<&str>,
) -> (usize, usize, usize) {
    let (mut keys, mut prefixes, mut pages) = (0, 0, 0);
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("many")
            .set_prefix(prefix.map(String::from))
            .set_delimiter(delimiter.map(String::from))
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys += page.contents().len();
        prefixes += page.common_prefixes().len();
        pages += 1;
        token = page.next_continuation_token().map(String::from);
        if token.is_none() {
            return (keys, prefixes, pages);
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cluster = Cluster::start(6, |_| {}).await;
        let s3 = cluster.client();
        s3.create_bucket().bucket("many").send().await.unwrap();

        let start = Instant::now();
        futures::stream::iter(0..KEYS)
            .for_each_concurrent(32, |i| {
                let s3 = s3.clone();
                async move {
                    s3.put_object()
                        .bucket("many")
                        .key(key(i))
                        .body(ByteStream::from(format!("body of {i}").into_bytes()))
                        .send()
                        .await
                        .unwrap();
                }
            })
            .await;
        let took = start.elapsed();
        println!(
            "PUT {KEYS} small objects, 32 at once: {:.1} s = {:.0} objects/s",
            took.as_secs_f64(),
            per_sec(KEYS, took)
        );

        let start = Instant::now();
        let (keys, _, pages) = walk(&s3, None, None).await;
        let took = start.elapsed();
        assert_eq!(keys, KEYS);
        println!(
            "ListObjectsV2, all {keys} keys in {pages} pages: {:.2} s = {:.0} keys/s, {:.1} ms/page",
            took.as_secs_f64(),
            per_sec(keys, took),
            took.as_secs_f64() * 1000.0 / pages as f64
        );

        let start = Instant::now();
        let (keys, prefixes, _) = walk(&s3, None, Some("/")).await;
        let took = start.elapsed();
        assert_eq!((keys, prefixes), (0, DIRS));
        println!(
            "ListObjectsV2 delimiter '/' at the root: {prefixes} common prefixes in {:.1} ms",
            took.as_secs_f64() * 1000.0
        );

        let start = Instant::now();
        let (keys, _, _) = walk(&s3, Some("d42/"), Some("/")).await;
        let took = start.elapsed();
        assert_eq!(keys, KEYS / DIRS);
        println!(
            "ListObjectsV2 prefix 'd42/': {keys} keys in {:.1} ms",
            took.as_secs_f64() * 1000.0
        );

        let start = Instant::now();
        let page = s3
            .list_objects_v2()
            .bucket("many")
            .start_after(key(98_765))
            .send()
            .await
            .unwrap();
        let took = start.elapsed();
        assert_eq!(page.contents().len(), 1000);
        println!(
            "ListObjectsV2 one page of 1000 from start-after deep in the bucket: {:.1} ms",
            took.as_secs_f64() * 1000.0
        );

        let start = Instant::now();
        let page = s3
            .list_objects()
            .bucket("many")
            .marker(key(55_555))
            .send()
            .await
            .unwrap();
        let took = start.elapsed();
        assert_eq!(page.contents().len(), 1000);
        println!(
            "ListObjects (v1) one page of 1000 after a marker: {:.1} ms",
            took.as_secs_f64() * 1000.0
        );
        cluster.stop().await;
    });
}
