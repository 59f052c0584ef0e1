//! The gate in front of s3s: requests refused from their head alone, before any byte of their
//! body is read or buffered, and before s3s looks for a key.
//!
//! - HTML-form POST uploads (`multipart/form-data`): s3s reads (up to gigabytes of) the form to
//!   find the policy that authenticates it. This gateway does not take them: `403 AccessDenied`
//!   at once, whoever sends them.
//! - Signature Version 2 (`Authorization: AWS …`, `?AWSAccessKeyId=`): refused as S3 refuses it
//!   where only SigV4 works (`400 InvalidRequest`).
//! - A SigV4 scope naming another region than this gateway's: `400 AuthorizationHeaderMalformed`
//!   (header) or `AuthorizationQueryParametersError` (presigned URL), as S3 answers.
//! - A presigned URL valid for more than 7 days (`X-Amz-Expires` > 604800):
//!   `400 AuthorizationQueryParametersError`.
//! - Request heads over 8 KiB (`400 RequestHeaderSectionTooLarge`), and a PUT declaring more
//!   than 5 GiB of body (`400 EntityTooLarge`).
//!
//! And one check on the body as it streams by: s3s gathers each aws-chunked chunk whole before it
//! checks the chunk's signature, so a chunk announcing more than [`MAX_CHUNK`] bytes ends the
//! body with an error ([`ChunkFraming`]) before it is buffered.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;

/// S3's limits on what a request head may be.
pub const MAX_HEADER_BYTES: usize = 8 << 10;
/// Largest body of one PutObject or UploadPart (the object service also counts what arrives).
pub const MAX_PUT_BYTES: u64 = crate::objects::put::MAX_BODY;
/// Longest validity of a presigned URL (7 days).
pub const MAX_PRESIGNED_SECS: u64 = 7 * 24 * 3600;

/// Largest aws-chunked chunk accepted (the SDKs send 64 KiB chunks, the aws cli up to 8 MiB).
pub const MAX_CHUNK: u64 = 16 << 20;
/// Longest chunk-size line (`<hex size>;chunk-signature=<64 hex>`, well under this).
const MAX_CHUNK_LINE: usize = 1024;

/// Follows the framing of an aws-chunked body as it streams past, without changing a byte, and
/// fails once a chunk announces more than [`MAX_CHUNK`] bytes or a size line is malformed.
#[derive(Debug, Default)]
pub struct ChunkFraming {
    state: Framing,
}

#[derive(Debug)]
enum Framing {
    /// Reading a size line.
    Line(Vec<u8>),
    /// Inside a chunk's data, this many bytes (and its CRLF) still to come.
    Data(u64),
    /// After the last (empty) chunk: trailers, checked by s3s.
    Trailers,
}

impl Default for Framing {
    fn default() -> Self {
        Framing::Line(Vec::new())
    }
}

impl ChunkFraming {
    /// Follows `bytes`; an error names what is wrong.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            match &mut self.state {
                Framing::Trailers => return Ok(()),
                Framing::Data(left) => {
                    let take = (*left).min(bytes.len() as u64) as usize;
                    *left -= take as u64;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        self.state = Framing::Line(Vec::new());
                    }
                }
                Framing::Line(line) => {
                    let end = bytes.iter().position(|&b| b == b'\n');
                    let (part, rest) = match end {
                        Some(i) => (&bytes[..=i], &bytes[i + 1..]),
                        None => (bytes, &[][..]),
                    };
                    line.extend_from_slice(part);
                    bytes = rest;
                    if line.len() > MAX_CHUNK_LINE {
                        return Err("an aws-chunked size line is too long".into());
                    }
                    if end.is_none() {
                        continue;
                    }
                    let text = String::from_utf8_lossy(line);
                    let text = text.trim_end_matches(['\r', '\n']);
                    if text.is_empty() {
                        // The CRLF that ends a chunk's data.
                        line.clear();
                        continue;
                    }
                    let hex = text.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(hex, 16)
                        .map_err(|_| format!("{hex:?} is not an aws-chunked chunk size"))?;
                    if size > MAX_CHUNK {
                        return Err(format!(
                            "an aws-chunked chunk of {size} bytes exceeds the {MAX_CHUNK}-byte limit"
                        ));
                    }
                    self.state = if size == 0 {
                        Framing::Trailers
                    } else {
                        Framing::Data(size)
                    };
                }
            }
        }
        Ok(())
    }
}

/// Whether a request's body is aws-chunked.
fn is_aws_chunked(headers: &HeaderMap) -> bool {
    headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"))
}

/// What the gate knows.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The region clients must sign for.
    pub region: Arc<str>,
}

/// A refusal: status, S3 code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

/// The region of a SigV4 credential scope `AKID/date/region/service/aws4_request`.
fn scope_region(credential: &str) -> Option<&str> {
    credential.split('/').nth(2)
}

fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Gate {
    /// Whether a request with this head must be refused without reading its body.
    pub fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let head_bytes: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + uri.path().len()
            + uri.query().map_or(0, str::len);
        if head_bytes > MAX_HEADER_BYTES {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "RequestHeaderSectionTooLarge",
                format!("Your request header section exceeds the maximum allowed size of {MAX_HEADER_BYTES} bytes."),
            ));
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if method == Method::POST
            && content_type
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Browser-based (HTML form) POST uploads are not accepted by this gateway; use a signed PUT.",
            ));
        }
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth.starts_with("AWS ") || query_param(uri, "AWSAccessKeyId").is_some() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
            ));
        }
        if let Some(cred) = auth
            .strip_prefix("AWS4-HMAC-SHA256")
            .and_then(|rest| rest.split("Credential=").nth(1))
            .and_then(|rest| rest.split([',', ' ']).next())
        {
            if let Some(region) = scope_region(cred).filter(|r| *r != &*self.region) {
                return Err(self.wrong_region(region, "AuthorizationHeaderMalformed"));
            }
        }
        if let Some(cred) = query_param(uri, "X-Amz-Credential") {
            let cred = percent_decode(cred);
            if let Some(region) = scope_region(&cred).filter(|r| *r != &*self.region) {
                return Err(self.wrong_region(region, "AuthorizationQueryParametersError"));
            }
            let expires = query_param(uri, "X-Amz-Expires").and_then(|e| e.parse::<u64>().ok());
            if expires.is_some_and(|e| e > MAX_PRESIGNED_SECS) {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "AuthorizationQueryParametersError",
                    format!("X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_SECS}"),
                ));
            }
        }
        if method == Method::PUT && headers.get("x-amz-copy-source").is_none() {
            let declared = ["x-amz-decoded-content-length", "content-length"]
                .iter()
                .find_map(|h| headers.get(*h))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_PUT_BYTES) {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "EntityTooLarge",
                    "Your proposed upload exceeds the maximum allowed size",
                ));
            }
        }
        Ok(())
    }

    fn wrong_region(&self, region: &str, code: &'static str) -> Refusal {
        refuse(
            StatusCode::BAD_REQUEST,
            code,
            format!(
                "the region '{}' is wrong; expecting '{}'",
                xml_escape(region),
                self.region
            ),
        )
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The layer: refuses what [`Gate::check`] refuses, with an S3 error document, and closes the
/// connection (the body that may follow is never read).
pub async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    match gate.check(request.method(), request.uri(), request.headers()) {
        Ok(()) if is_aws_chunked(request.headers()) => {
            let (parts, body) = request.into_parts();
            let mut framing = ChunkFraming::default();
            let body = futures::StreamExt::map(body.into_data_stream(), move |chunk| {
                let chunk = chunk.map_err(std::io::Error::other)?;
                framing
                    .feed(&chunk)
                    .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidData, why))?;
                Ok::<_, std::io::Error>(chunk)
            });
            next.run(Request::from_parts(parts, Body::from_stream(body)))
                .await
        }
        Ok(()) => next.run(request).await,
        Err(r) => {
            tracing::info!(code = r.code, method = %request.method(), "refused from the request head");
            let doc = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>{}</Message></Error>",
                r.code,
                xml_escape(&r.message)
            );
            let mut response = Response::new(Body::from(doc));
            *response.status_mut() = r.status;
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/xml"),
            );
            h.insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_framing_passes_real_bodies_and_stops_oversized_chunks() {
        let sig = format!(";chunk-signature={}", "a".repeat(64));
        let body = format!(
            "5{sig}\r\nhello\r\n3{sig}\r\nabc\r\n0{sig}\r\nx-amz-checksum-crc32:AAAA\r\n\r\n"
        );
        // Whole, and split at every byte.
        assert_eq!(ChunkFraming::default().feed(body.as_bytes()), Ok(()));
        let mut f = ChunkFraming::default();
        for b in body.as_bytes() {
            assert_eq!(f.feed(std::slice::from_ref(b)), Ok(()));
        }
        let huge = format!("{:x}{sig}\r\n", MAX_CHUNK + 1);
        assert!(ChunkFraming::default().feed(huge.as_bytes()).is_err());
        let ok = format!("{MAX_CHUNK:x}{sig}\r\n");
        assert_eq!(ChunkFraming::default().feed(ok.as_bytes()), Ok(()));
        assert!(ChunkFraming::default()
            .feed(b"zz;chunk-signature=00\r\n")
            .is_err());
        assert!(ChunkFraming::default().feed(&[b'1'; 2000]).is_err());
    }

    fn check(method: Method, uri: &str, headers: &[(&str, &str)]) -> Result<(), &'static str> {
        let gate = Gate {
            region: "us-east-1".into(),
        };
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        gate.check(&method, &uri.parse().unwrap(), &h)
            .map_err(|r| r.code)
    }

    #[test]
    fn refuses_from_the_head_alone() {
        let v4 = "AWS4-HMAC-SHA256 Credential=AK/20261207/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(check(Method::GET, "/b/k", &[("authorization", v4)]), Ok(()));
        let other = v4.replace("us-east-1", "eu-west-1");
        assert_eq!(
            check(Method::GET, "/b/k", &[("authorization", &other)]),
            Err("AuthorizationHeaderMalformed")
        );
        assert_eq!(
            check(
                Method::POST,
                "/b",
                &[("content-type", "multipart/form-data; boundary=x")]
            ),
            Err("AccessDenied")
        );
        assert_eq!(
            check(
                Method::POST,
                "/b?delete",
                &[("content-type", "application/xml")]
            ),
            Ok(())
        );
        assert_eq!(
            check(Method::GET, "/b/k", &[("authorization", "AWS AK:c2ln")]),
            Err("InvalidRequest")
        );
        assert_eq!(
            check(
                Method::GET,
                "/b/k?AWSAccessKeyId=AK&Expires=1&Signature=x",
                &[]
            ),
            Err("InvalidRequest")
        );
        let presigned = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20261207%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261207T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature=00&X-Amz-Expires=";
        assert_eq!(
            check(Method::GET, &format!("{presigned}604800"), &[]),
            Ok(())
        );
        assert_eq!(
            check(Method::GET, &format!("{presigned}604801"), &[]),
            Err("AuthorizationQueryParametersError")
        );
        assert_eq!(
            check(
                Method::GET,
                &format!("{}3600", presigned.replace("us-east-1", "mars-1")),
                &[]
            ),
            Err("AuthorizationQueryParametersError")
        );
        assert_eq!(
            check(Method::PUT, "/b/k", &[("content-length", "5368709121")]),
            Err("EntityTooLarge")
        );
        assert_eq!(
            check(Method::PUT, "/b/k", &[("content-length", "5368709120")]),
            Ok(())
        );
        let big = "x".repeat(9000);
        assert_eq!(
            check(Method::GET, "/b/k", &[("x-amz-meta-a", &big)]),
            Err("RequestHeaderSectionTooLarge")
        );
    }
}
