//! What a client claims about an upload body (length, Content-MD5, checksums in headers or
//! trailers), and the check of those claims against what the body hashed to. Shared by
//! PutObject and UploadPart.

use chunker::manifest::ChecksumAlgorithm;
use s3s::dto;
use s3s::{s3_error, S3Result, TrailingHeaders};

use crate::digest::Digests;
use crate::objects::ObjectError;

pub(super) fn b64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// The algorithm S3 names `name` (`CRC32`, `crc64nvme`, …).
pub(super) fn algorithm_named(name: &str) -> Option<ChecksumAlgorithm> {
    Some(match name.to_ascii_uppercase().as_str() {
        "CRC32" => ChecksumAlgorithm::Crc32,
        "CRC32C" => ChecksumAlgorithm::Crc32c,
        "CRC64NVME" => ChecksumAlgorithm::Crc64Nvme,
        "SHA1" => ChecksumAlgorithm::Sha1,
        "SHA256" => ChecksumAlgorithm::Sha256,
        _ => return None,
    })
}

/// The algorithm of an `x-amz-checksum-*` header name.
fn algorithm_of_header(name: &str) -> Option<ChecksumAlgorithm> {
    algorithm_named(name.strip_prefix("x-amz-checksum-")?)
}

/// The checksum fields every body-carrying input has, in one place.
pub(super) struct ClaimedSums<'a> {
    pub crc32: &'a Option<String>,
    pub crc32c: &'a Option<String>,
    pub crc64nvme: &'a Option<String>,
    pub sha1: &'a Option<String>,
    pub sha256: &'a Option<String>,
    pub algorithm: &'a Option<dto::ChecksumAlgorithm>,
}

/// Claims to check once the body has been read.
pub(super) struct BodyClaims {
    content_length: Option<i64>,
    content_md5: Option<Vec<u8>>,
    sums: Vec<(ChecksumAlgorithm, String)>,
    trailers: Option<TrailingHeaders>,
    /// Every algorithm the body must be hashed with (claimed, announced, or asked for).
    pub algorithms: Vec<ChecksumAlgorithm>,
}

impl BodyClaims {
    pub(super) fn new(
        headers: &axum::http::HeaderMap,
        content_length: Option<i64>,
        content_md5: &Option<String>,
        sums: ClaimedSums<'_>,
        trailers: Option<TrailingHeaders>,
    ) -> S3Result<Self> {
        let claimed: Vec<(ChecksumAlgorithm, String)> = [
            (ChecksumAlgorithm::Crc32, sums.crc32),
            (ChecksumAlgorithm::Crc32c, sums.crc32c),
            (ChecksumAlgorithm::Crc64Nvme, sums.crc64nvme),
            (ChecksumAlgorithm::Sha1, sums.sha1),
            (ChecksumAlgorithm::Sha256, sums.sha256),
        ]
        .into_iter()
        .filter_map(|(a, v)| v.clone().map(|v| (a, v)))
        .collect();
        let mut algorithms: Vec<ChecksumAlgorithm> = claimed.iter().map(|c| c.0).collect();
        if let Some(a) = sums.algorithm {
            algorithms.push(algorithm_named(a.as_str()).ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "Checksum algorithm {} is not supported",
                    a.as_str()
                )
            })?);
        }
        // A trailer announced in `x-amz-trailer` arrives after the body.
        if let Some(t) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
            for name in t.split(',').map(str::trim) {
                if let Some(a) = algorithm_of_header(&name.to_ascii_lowercase()) {
                    algorithms.push(a);
                }
            }
        }
        let content_md5 = match content_md5 {
            Some(v) => Some(
                base64_simd::STANDARD
                    .decode_to_vec(v)
                    .ok()
                    .filter(|d| d.len() == 16)
                    .ok_or_else(|| {
                        s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid")
                    })?,
            ),
            None => None,
        };
        Ok(BodyClaims {
            content_length,
            content_md5,
            sums: claimed,
            trailers,
            algorithms,
        })
    }

    /// Checks every claim against the body's digests.
    pub(super) fn check(mut self, d: &Digests) -> Result<(), ObjectError> {
        if let Some(len) = self.content_length {
            if u64::try_from(len).ok() != Some(d.size) {
                return Err(ObjectError::Body(format!(
                    "expected {len} bytes, received {}",
                    d.size
                )));
            }
        }
        if let Some(md5) = &self.content_md5 {
            if md5[..] != d.md5[..] {
                return Err(ObjectError::BadDigest(
                    "The Content-MD5 you specified did not match what we received".into(),
                ));
            }
        }
        if let Some(trailers) = self.trailers.take().and_then(|t| t.take()) {
            for (name, value) in &trailers {
                if let Some(a) = algorithm_of_header(name.as_str()) {
                    let value = value.to_str().map_err(|_| {
                        ObjectError::BadDigest(format!("trailer {name} is not text"))
                    })?;
                    self.sums.push((a, value.to_string()));
                }
            }
        }
        for (algorithm, claimed) in &self.sums {
            let actual = d.checksum(*algorithm).map(b64).unwrap_or_default();
            if actual != *claimed {
                return Err(ObjectError::BadDigest(format!(
                    "the {algorithm:?} checksum you specified did not match what we received (you sent {claimed}, we computed {actual})"
                )));
            }
        }
        Ok(())
    }
}
