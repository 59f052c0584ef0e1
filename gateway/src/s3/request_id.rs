//! Request ids, as S3 gives them: every response carries `x-amz-request-id` (unique per
//! request) and `x-amz-id-2` (this gateway's host id); every error document names both in
//! `<RequestId>` and `<HostId>`; every log line written while the request runs carries the id,
//! so a client's error report leads to the gateway's log.
//!
//! s3s writes error documents without a request id and offers no hook for one, so this layer,
//! around the whole S3 service, adds them to the (small, already serialized) error body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Error documents larger than this are passed on as they are (s3s' are a few hundred bytes).
const MAX_ERROR_BODY: u64 = 64 << 10;

/// Where request ids come from.
#[derive(Debug)]
pub struct RequestIds {
    /// Random at start, so ids do not repeat across restarts.
    base: u64,
    next: AtomicU64,
    host_id: String,
    host_header: HeaderValue,
}

impl RequestIds {
    /// Ids for the gateway whose stable host id is `host_id` (printable ASCII).
    pub fn new(host_id: &str) -> anyhow::Result<RequestIds> {
        let mut seed = [0u8; 8];
        aws_lc_rs::rand::fill(&mut seed)
            .map_err(|_| anyhow::anyhow!("no randomness for request ids"))?;
        Ok(RequestIds {
            base: u64::from_le_bytes(seed),
            next: AtomicU64::new(0),
            host_id: host_id.to_string(),
            host_header: HeaderValue::from_str(host_id)?,
        })
    }

    /// A new id: 16 upper-case hex digits, as S3's.
    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:016X}", self.base.wrapping_add(n))
    }
}

/// The layer: gives the request an id, runs it inside a span that carries the id, and stamps
/// the response.
pub async fn stamp(State(ids): State<Arc<RequestIds>>, request: Request, next: Next) -> Response {
    let id = ids.next();
    let head = request.method() == Method::HEAD;
    let span = tracing::info_span!("s3", request_id = %id);
    let response = next.run(request).instrument(span).await;
    let (mut parts, body) = response.into_parts();
    let body = if parts.status.as_u16() >= 400 && !head && is_xml(&parts.headers) {
        match body.size_hint().exact() {
            Some(len) if len <= MAX_ERROR_BODY => {
                match axum::body::to_bytes(body, MAX_ERROR_BODY as usize).await {
                    Ok(bytes) => {
                        let stamped = with_ids(&bytes, &id, &ids.host_id);
                        parts
                            .headers
                            .insert(header::CONTENT_LENGTH, stamped.len().into());
                        Body::from(stamped)
                    }
                    // The body failed while being read: the client sees the same failure.
                    Err(e) => Body::from_stream(futures::stream::once(async move {
                        Err::<bytes::Bytes, _>(e)
                    })),
                }
            }
            _ => body,
        }
    } else {
        body
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        parts.headers.insert("x-amz-request-id", v);
    }
    parts.headers.insert("x-amz-id-2", ids.host_header.clone());
    Response::from_parts(parts, body)
}

fn is_xml(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("xml"))
}

/// `doc` with `<RequestId>` and `<HostId>` added at the end of its `<Error>` element (if it is
/// one and does not name them yet); any other document unchanged.
fn with_ids(doc: &[u8], id: &str, host_id: &str) -> Vec<u8> {
    const CLOSE: &[u8] = b"</Error>";
    let Some(at) = doc.windows(CLOSE.len()).rposition(|w| w == CLOSE) else {
        return doc.to_vec();
    };
    if doc.windows(11).any(|w| w == b"<RequestId>") {
        return doc.to_vec();
    }
    let mut out = Vec::with_capacity(doc.len() + 96);
    out.extend_from_slice(&doc[..at]);
    out.extend_from_slice(
        format!("<RequestId>{id}</RequestId><HostId>{host_id}</HostId>").as_bytes(),
    );
    out.extend_from_slice(&doc[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_get_the_ids_and_others_stay_as_they_are() {
        let doc = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>m</Message></Error>";
        assert_eq!(
            String::from_utf8(with_ids(doc, "00000000000000AB", "host")).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>m</Message><RequestId>00000000000000AB</RequestId><HostId>host</HostId></Error>"
        );
        let named = b"<Error><Code>X</Code><RequestId>1</RequestId></Error>";
        assert_eq!(with_ids(named, "2", "h"), named.to_vec());
        let other = b"<ListBucketResult></ListBucketResult>";
        assert_eq!(with_ids(other, "2", "h"), other.to_vec());
    }

    #[test]
    fn ids_are_sixteen_hex_digits_and_never_repeat() {
        let ids = RequestIds::new("host").unwrap();
        let a = ids.next();
        let b = ids.next();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
