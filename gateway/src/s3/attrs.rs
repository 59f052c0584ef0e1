//! What an object carries besides its bytes and user metadata: the response headers S3 stores
//! with it (Content-Encoding, Content-Disposition, Cache-Control, Content-Language, Expires)
//! and its tag set, with S3's rules for tags.

use std::collections::BTreeMap;

use s3s::dto::{self, Timestamp, TimestampFormat};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};

const CONTENT_ENCODING: &str = "content-encoding";
const CONTENT_DISPOSITION: &str = "content-disposition";
const CACHE_CONTROL: &str = "cache-control";
const CONTENT_LANGUAGE: &str = "content-language";
const EXPIRES: &str = "expires";

/// The stored headers of a write request's input (PutObject, CreateMultipartUpload and
/// CopyObject inputs all have the five fields).
macro_rules! stored_headers {
    ($input:expr) => {
        $crate::s3::attrs::Headers {
            content_encoding: &$input.content_encoding,
            content_disposition: &$input.content_disposition,
            cache_control: &$input.cache_control,
            content_language: &$input.content_language,
            expires: &$input.expires,
        }
        .stored()
    };
}
pub(super) use stored_headers;

/// The stored headers of a write, by lower-case name.
#[derive(Debug)]
pub(super) struct Headers<'a> {
    pub content_encoding: &'a Option<String>,
    pub content_disposition: &'a Option<String>,
    pub cache_control: &'a Option<String>,
    pub content_language: &'a Option<String>,
    pub expires: &'a Option<Timestamp>,
}

impl Headers<'_> {
    pub(super) fn stored(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        // `aws-chunked` describes the request's framing, not the object (S3 drops it too).
        let encoding = self.content_encoding.as_deref().and_then(|e| {
            let kept: Vec<&str> = e
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
                .collect();
            (!kept.is_empty()).then(|| kept.join(", "))
        });
        for (name, value) in [
            (CONTENT_ENCODING, &encoding),
            (CONTENT_DISPOSITION, self.content_disposition),
            (CACHE_CONTROL, self.cache_control),
            (CONTENT_LANGUAGE, self.content_language),
        ] {
            if let Some(v) = value {
                out.insert(name.to_string(), v.clone());
            }
        }
        if let Some(t) = self.expires {
            let mut text = Vec::new();
            if t.format(TimestampFormat::HttpDate, &mut text).is_ok() {
                out.insert(
                    EXPIRES.to_string(),
                    String::from_utf8_lossy(&text).into_owned(),
                );
            }
        }
        out
    }
}

/// The stored headers of an object, for a GET or HEAD response.
#[derive(Debug, Default)]
pub(super) struct Shown {
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub cache_control: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<Timestamp>,
}

pub(super) fn shown(headers: &BTreeMap<String, String>) -> Shown {
    let get = |name: &str| headers.get(name).cloned();
    Shown {
        content_encoding: get(CONTENT_ENCODING),
        content_disposition: get(CONTENT_DISPOSITION),
        cache_control: get(CACHE_CONTROL),
        content_language: get(CONTENT_LANGUAGE),
        expires: headers
            .get(EXPIRES)
            .and_then(|t| Timestamp::parse(TimestampFormat::HttpDate, t).ok()),
    }
}

/// S3's limit on user metadata: the UTF-8 bytes of every key and value together.
const MAX_USER_METADATA: usize = 2048;

/// A request's `x-amz-meta-*` headers, within S3's 2 KB (`MetadataTooLarge` beyond).
pub(super) fn user_metadata(
    metadata: Option<s3s::dto::Metadata>,
) -> S3Result<BTreeMap<String, String>> {
    let metadata: BTreeMap<String, String> = metadata.unwrap_or_default().into_iter().collect();
    let size: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_USER_METADATA {
        return Err(bad(
            "MetadataTooLarge",
            format!(
                "Your metadata headers exceed the maximum allowed metadata size: {size} bytes of {MAX_USER_METADATA}."
            ),
        ));
    }
    Ok(metadata)
}

/// A 400 with a code s3s does not name.
fn bad(code: &'static str, message: String) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), message);
    e.set_status_code(axum::http::StatusCode::BAD_REQUEST);
    e
}

fn invalid_tag(message: String) -> S3Error {
    bad("InvalidTag", message)
}

/// A tag set from a client, checked against S3's rules (`crate::objects::tags`), with S3's
/// error codes.
fn checked(pairs: Vec<(String, String)>) -> S3Result<BTreeMap<String, String>> {
    use crate::objects::tags::TagError;
    crate::objects::tags::checked(pairs).map_err(|e| match e {
        TagError::TooMany => bad("BadRequest", e.to_string()),
        TagError::Key | TagError::Value | TagError::Duplicate => invalid_tag(e.to_string()),
    })
}

/// The tag set of an `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded).
pub(super) fn from_header(header: &Option<String>) -> S3Result<BTreeMap<String, String>> {
    let Some(text) = header else {
        return Ok(BTreeMap::new());
    };
    let mut pairs = Vec::new();
    for item in text.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        pairs.push((url_decode(k)?, url_decode(v)?));
    }
    checked(pairs)
}

/// The tag set of a PutObjectTagging body.
pub(super) fn from_tagging(tagging: dto::Tagging) -> S3Result<BTreeMap<String, String>> {
    checked(
        tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect(),
    )
}

/// A tag set as S3 returns it.
pub(super) fn to_tag_set(tags: &BTreeMap<String, String>) -> dto::TagSet {
    tags.iter()
        .map(|(k, v)| dto::Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

/// `x-amz-tagging-count` for a GET or HEAD (absent for an untagged object, as in S3).
pub(super) fn count(tags: &BTreeMap<String, String>) -> Option<i32> {
    (!tags.is_empty()).then(|| i32::try_from(tags.len()).unwrap_or(i32::MAX))
}

/// Decodes `%XX` escapes and `+` (a space, as in form encoding).
fn url_decode(s: &str) -> S3Result<String> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-tagging header is not URL-encoded"
        )
    };
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(|c| char::from(c).to_digit(16));
                let lo = bytes.next().and_then(|c| char::from(c).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(bad()),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_headers_decode_and_tag_rules_hold() {
        let tags = from_header(&Some("a=1&b%20c=d+e&empty=".into())).unwrap();
        assert_eq!(tags.get("b c").map(String::as_str), Some("d e"));
        assert_eq!(tags.get("empty").map(String::as_str), Some(""));
        assert!(from_header(&Some("a=1&a=2".into())).is_err());
        assert!(from_header(&Some("%zz=1".into())).is_err());
        assert!(from_header(&Some("=1".into())).is_err());
        let many = (0..11)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join("&");
        assert!(from_header(&Some(many)).is_err());
        let long = format!("{}=v", "k".repeat(129));
        assert!(from_header(&Some(long)).is_err());
    }

    #[test]
    fn stored_headers_come_back() {
        let (enc, cc) = (Some("gzip".to_string()), Some("no-cache".to_string()));
        let expires = Some(
            Timestamp::parse(TimestampFormat::HttpDate, "Wed, 21 Oct 2026 07:28:00 GMT").unwrap(),
        );
        let stored = Headers {
            content_encoding: &enc,
            content_disposition: &None,
            cache_control: &cc,
            content_language: &None,
            expires: &expires,
        }
        .stored();
        let back = shown(&stored);
        assert_eq!(back.content_encoding, enc);
        assert_eq!(back.cache_control, cc);
        assert_eq!(back.expires, expires);
        assert_eq!(back.content_disposition, None);
        let framing = Some("aws-chunked".to_string());
        let both = Some("aws-chunked, gzip".to_string());
        for (given, kept) in [(&framing, None), (&both, Some("gzip"))] {
            let stored = Headers {
                content_encoding: given,
                content_disposition: &None,
                cache_control: &None,
                content_language: &None,
                expires: &None,
            }
            .stored();
            assert_eq!(stored.get("content-encoding").map(String::as_str), kept);
        }
    }
}
