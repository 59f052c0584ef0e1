//! A PUT with a *signed* aws-chunked body (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: a seed
//! signature over the headers, then one signature per chunk chained to the previous one), as
//! older SDKs and some tools send it. None of our client libraries chose this mode over plain
//! HTTP, so the request is built and signed here by hand, following the SigV4 streaming spec.
//! A tampered chunk must be refused and leave nothing behind.

#![allow(clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, hmac};
use tests::{test_bytes, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STREAMING: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const CHUNK: usize = 64 * 1024;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// `YYYYMMDDTHHMMSSZ` for now (civil-from-days, proleptic Gregorian).
fn amz_date() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The raw HTTP request for a signed, chunked PUT of `body`; `tamper` flips a byte of the
/// second chunk after it was signed.
fn signed_chunked_put(
    host: &str,
    path: &str,
    body: &[u8],
    access_key: &str,
    secret_key: &str,
    tamper: bool,
) -> Vec<u8> {
    let date = amz_date();
    let day = &date[..8];
    let scope = format!("{day}/us-east-1/s3/aws4_request");
    let mut signing_key = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), day.as_bytes());
    for part in ["us-east-1", "s3", "aws4_request"] {
        signing_key = hmac_sha256(&signing_key, part.as_bytes());
    }

    let chunks: Vec<&[u8]> = body.chunks(CHUNK).chain(std::iter::once(&[][..])).collect();
    let encoded_len: usize = chunks
        .iter()
        .map(|c| format!("{:x}", c.len()).len() + ";chunk-signature=".len() + 64 + 2 + c.len() + 2)
        .sum();

    let signed_headers =
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length";
    let canonical = format!(
        "PUT\n{path}\n\ncontent-encoding:aws-chunked\ncontent-length:{encoded_len}\nhost:{host}\n\
         x-amz-content-sha256:{STREAMING}\nx-amz-date:{date}\nx-amz-decoded-content-length:{}\n\n\
         {signed_headers}\n{STREAMING}",
        body.len()
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut previous = hex(&hmac_sha256(&signing_key, to_sign.as_bytes()));

    let mut request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Encoding: aws-chunked\r\n\
         Content-Length: {encoded_len}\r\nX-Amz-Content-Sha256: {STREAMING}\r\nX-Amz-Date: {date}\r\n\
         X-Amz-Decoded-Content-Length: {}\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential={access_key}/{scope}, SignedHeaders={signed_headers}, Signature={previous}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let empty_hash = sha256_hex(b"");
    for (i, chunk) in chunks.iter().enumerate() {
        let chunk_to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{date}\n{scope}\n{previous}\n{empty_hash}\n{}",
            sha256_hex(chunk)
        );
        let signature = hex(&hmac_sha256(&signing_key, chunk_to_sign.as_bytes()));
        request.extend_from_slice(
            format!("{:x};chunk-signature={signature}\r\n", chunk.len()).as_bytes(),
        );
        let start = request.len();
        request.extend_from_slice(chunk);
        if tamper && i == 1 {
            request[start + 10] ^= 1;
        }
        request.extend_from_slice(b"\r\n");
        previous = signature;
    }
    request
}

async fn send(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_aws_chunked_bodies_are_verified_chunk_by_chunk() {
    let cluster = Cluster::start(6, |_| {}).await;
    let s3 = cluster.client();
    s3.create_bucket().bucket("signed").send().await.unwrap();
    let addr = cluster.gateway.s3_addr;
    let host = addr.to_string();
    let body = test_bytes(5 * CHUNK + 1234, 7);

    let good = signed_chunked_put(
        &host,
        "/signed/good",
        &body,
        &cluster.access_key,
        &cluster.secret_key,
        false,
    );
    let answer = send(addr, &good).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = s3
        .get_object()
        .bucket("signed")
        .key("good")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().to_vec(),
        body
    );

    let bad = signed_chunked_put(
        &host,
        "/signed/bad",
        &body,
        &cluster.access_key,
        &cluster.secret_key,
        true,
    );
    let answer = send(addr, &bad).await;
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "a tampered chunk was accepted: {answer}"
    );
    assert!(
        s3.head_object()
            .bucket("signed")
            .key("bad")
            .send()
            .await
            .is_err(),
        "a refused upload must not be visible"
    );
    cluster.stop().await;
}
