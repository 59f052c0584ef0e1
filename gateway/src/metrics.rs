//! Prometheus metrics of the gateway, served at `/metrics` on the admin port (no token: bind
//! `admin_listen` where only your monitoring reaches it).
//!
//! S3 requests are counted by a layer around the S3 service: operation (from the method, path
//! and query, as S3 routes them), status, time to the response head, and bytes in and out (from
//! the `Content-Length` headers; for aws-chunked uploads the decoded length). The rest is read
//! from the parts that own it when scraped: nodes by state, queues, audits by verdict, repair
//! counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One operation's latency histogram.
#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Cumulative counts per bucket of [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counts by (operation, status) and latency by operation, under one lock.
#[derive(Debug, Default)]
struct Tallies {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
}

/// S3 request metrics, filled by [`track`].
#[derive(Debug, Default)]
pub struct S3Metrics {
    tallies: Mutex<Tallies>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl S3Metrics {
    fn record(&self, op: &'static str, status: u16, seconds: f64, bytes_in: u64, bytes_out: u64) {
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        *tallies.requests.entry((op, status)).or_default() += 1;
        let h = tallies.latency.entry(op).or_default();
        for (bound, n) in BUCKETS.iter().zip(h.buckets.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
        drop(tallies);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// Appends the S3 request metrics to `out`.
    pub fn render(&self, out: &mut Text) {
        let tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        out.family(
            "s3_requests_total",
            "counter",
            "S3 requests by operation and status.",
        );
        for ((op, status), n) in tallies.requests.iter() {
            out.sample(
                "s3_requests_total",
                &format!("{{operation=\"{op}\",status=\"{status}\"}}"),
                *n as f64,
            );
        }
        out.family(
            "s3_request_duration_seconds",
            "histogram",
            "Time from an S3 request to its response head, by operation.",
        );
        for (op, h) in tallies.latency.iter() {
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                out.sample(
                    "s3_request_duration_seconds_bucket",
                    &format!("{{operation=\"{op}\",le=\"{bound}\"}}"),
                    n as f64,
                );
            }
            let labels = format!("{{operation=\"{op}\"}}");
            out.sample(
                "s3_request_duration_seconds_bucket",
                &format!("{{operation=\"{op}\",le=\"+Inf\"}}"),
                h.count as f64,
            );
            out.sample("s3_request_duration_seconds_sum", &labels, h.sum);
            out.sample("s3_request_duration_seconds_count", &labels, h.count as f64);
        }
        drop(tallies);
        out.single(
            "s3_received_bytes_total",
            "counter",
            "Body bytes received from S3 clients.",
            self.bytes_in.load(Ordering::Relaxed) as f64,
        );
        out.single(
            "s3_sent_bytes_total",
            "counter",
            "Body bytes sent to S3 clients.",
            self.bytes_out.load(Ordering::Relaxed) as f64,
        );
    }
}

/// Prometheus text being written, every name prefixed with `gateway_`.
#[derive(Debug, Default)]
pub struct Text(pub String);

impl Text {
    /// `# HELP` and `# TYPE` of a family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP gateway_{name} {help}");
        let _ = writeln!(self.0, "# TYPE gateway_{name} {kind}");
    }

    /// One sample; `labels` is empty or `{a="b",…}`.
    pub fn sample(&mut self, name: &str, labels: &str, value: f64) {
        let _ = writeln!(self.0, "gateway_{name}{labels} {value}");
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }
}

/// The layer around the S3 service: classifies, times and counts every request.
pub async fn track(
    axum::extract::State(metrics): axum::extract::State<std::sync::Arc<S3Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let op = operation(request.method(), request.uri(), request.headers());
    let bytes_in = body_len(request.headers(), true);
    let started = Instant::now();
    let response = next.run(request).await;
    let bytes_out = if op == "HeadObject" {
        0
    } else {
        body_len(response.headers(), false)
    };
    metrics.record(
        op,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
        bytes_in,
        bytes_out,
    );
    response
}

/// A message's body length from its headers (for aws-chunked uploads, the decoded length).
fn body_len(headers: &HeaderMap, request: bool) -> u64 {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let decoded = if request {
        get("x-amz-decoded-content-length")
    } else {
        None
    };
    decoded.or_else(|| get("content-length")).unwrap_or(0)
}

/// The S3 operation a path-style request names, as S3 routes it.
pub fn operation(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> &'static str {
    let path = uri.path().trim_start_matches('/');
    let query = uri.query().unwrap_or("");
    let has = |name: &str| {
        query
            .split('&')
            .any(|kv| kv.split('=').next() == Some(name))
    };
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) if !k.is_empty() => (b, Some(k)),
        Some((b, _)) => (b, None),
        None => (path, None),
    };
    let copy = headers.contains_key("x-amz-copy-source");
    match (bucket.is_empty(), key.is_some(), method.as_str()) {
        (true, _, "GET") => "ListBuckets",
        (false, false, "GET") if has("location") => "GetBucketLocation",
        (false, false, "GET") if has("uploads") => "ListMultipartUploads",
        (false, false, "GET") if has("list-type") => "ListObjectsV2",
        (false, false, "GET") => "ListObjects",
        (false, false, "PUT") => "CreateBucket",
        (false, false, "DELETE") => "DeleteBucket",
        (false, false, "HEAD") => "HeadBucket",
        (false, false, "POST") if has("delete") => "DeleteObjects",
        (false, true, "GET") if has("uploadId") => "ListParts",
        (false, true, "GET") => "GetObject",
        (false, true, "HEAD") => "HeadObject",
        (false, true, "PUT") if has("uploadId") && copy => "UploadPartCopy",
        (false, true, "PUT") if has("uploadId") => "UploadPart",
        (false, true, "PUT") if copy => "CopyObject",
        (false, true, "PUT") => "PutObject",
        (false, true, "DELETE") if has("uploadId") => "AbortMultipartUpload",
        (false, true, "DELETE") => "DeleteObject",
        (false, true, "POST") if has("uploads") => "CreateMultipartUpload",
        (false, true, "POST") if has("uploadId") => "CompleteMultipartUpload",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_as_s3_routes_them() {
        let op = |method: &str, uri: &str, copy: bool| {
            let mut h = HeaderMap::new();
            if copy {
                h.insert("x-amz-copy-source", "b/k".parse().unwrap());
            }
            operation(&method.parse().unwrap(), &uri.parse().unwrap(), &h)
        };
        assert_eq!(op("GET", "/", false), "ListBuckets");
        assert_eq!(op("GET", "/b?list-type=2&prefix=a", false), "ListObjectsV2");
        assert_eq!(op("GET", "/b/", false), "ListObjects");
        assert_eq!(op("PUT", "/b", false), "CreateBucket");
        assert_eq!(op("POST", "/b?delete", false), "DeleteObjects");
        assert_eq!(op("GET", "/b/a/b/c", false), "GetObject");
        assert_eq!(
            op("PUT", "/b/k?partNumber=2&uploadId=x", false),
            "UploadPart"
        );
        assert_eq!(
            op("PUT", "/b/k?partNumber=2&uploadId=x", true),
            "UploadPartCopy"
        );
        assert_eq!(op("PUT", "/b/k", true), "CopyObject");
        assert_eq!(op("POST", "/b/k?uploads", false), "CreateMultipartUpload");
        assert_eq!(
            op("POST", "/b/k?uploadId=x", false),
            "CompleteMultipartUpload"
        );
        assert_eq!(
            op("DELETE", "/b/k?uploadId=x", false),
            "AbortMultipartUpload"
        );
        assert_eq!(op("PATCH", "/b/k", false), "Other");
    }
}
