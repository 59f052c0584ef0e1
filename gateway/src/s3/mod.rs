//! The S3 endpoint: a thin adapter from s3s's typed operations to the [`ObjectService`].
//!
//! s3s parses requests, checks SigV4 (headers and presigned), decodes aws-chunked bodies and
//! their trailers, and writes XML. Each method here translates one operation's input, calls one
//! object-service method, and translates the result; [`error`] maps failures to S3 codes.

pub mod access;
mod attrs;
pub mod auth;
mod body;
mod conditions;
mod copy;
pub mod error;
mod features;
pub mod gate;
mod multipart;
pub mod request_id;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use chunker::manifest::ChecksumAlgorithm;
use chunker::ObjectManifest;
use futures::StreamExt;
use s3s::dto::{self, ETag, StreamingBlob, Timestamp};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::digest::Digests;
use crate::objects::list::{ListPage, ListQuery};
use crate::objects::put::PutObject;
use crate::objects::{ObjectError, ObjectService};
use body::{b64, BodyClaims, ClaimedSums};

/// Keys per listing page when the client does not say (S3's default and maximum).
pub(crate) const MAX_KEYS: usize = 1000;

/// The S3 API over an object service.
#[derive(Debug, Clone)]
pub struct S3Api {
    objects: Arc<ObjectService>,
    limit: Arc<Semaphore>,
    region: String,
    /// The one owner of every bucket and object (a gateway is one account).
    owner: dto::Owner,
}

impl S3Api {
    /// Serves `objects`, at most `max_requests` at once (more get `SlowDown`). Listings name
    /// `owner_id` (stable for the gateway) as every object's owner.
    pub fn new(
        objects: Arc<ObjectService>,
        max_requests: usize,
        region: String,
        owner_id: String,
    ) -> Self {
        S3Api {
            objects,
            limit: Arc::new(Semaphore::new(max_requests)),
            region,
            owner: dto::Owner {
                display_name: Some("gateway".into()),
                id: Some(owner_id),
            },
        }
    }

    /// Takes an ACL that changes nothing (see [`features::Acl`]).
    fn check_acl(
        &self,
        acl: features::Acl<'_>,
        policy: Option<&dto::AccessControlPolicy>,
    ) -> S3Result<()> {
        let owner_id = self.owner.id.as_deref().unwrap_or_default();
        acl.check(policy.map(|p| (p, owner_id)))
    }

    fn permit(&self) -> S3Result<OwnedSemaphorePermit> {
        self.limit
            .clone()
            .try_acquire_owned()
            .map_err(|_| error::to_s3(ObjectError::Busy))
    }
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

/// The S3 checksum fields of a manifest, as base64 (what GET/HEAD/PUT responses carry).
#[derive(Default)]
struct ChecksumFields {
    crc32: Option<String>,
    crc32c: Option<String>,
    crc64nvme: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
    /// `FULL_OBJECT`, or `COMPOSITE` for a checksum of part checksums (`None`: no checksum).
    checksum_type: Option<dto::ChecksumType>,
}

/// `parts` is the object's part count, which a composite checksum shows as `value-N`.
fn checksum_fields(sums: &[chunker::manifest::Checksum], parts: usize) -> ChecksumFields {
    let mut f = ChecksumFields::default();
    for c in sums {
        f.checksum_type = Some(dto::ChecksumType::from_static(if c.composite {
            dto::ChecksumType::COMPOSITE
        } else {
            dto::ChecksumType::FULL_OBJECT
        }));
        let v = Some(if c.composite {
            format!("{}-{parts}", b64(&c.value))
        } else {
            b64(&c.value)
        });
        match c.algorithm {
            ChecksumAlgorithm::Crc32 => f.crc32 = v,
            ChecksumAlgorithm::Crc32c => f.crc32c = v,
            ChecksumAlgorithm::Crc64Nvme => f.crc64nvme = v,
            ChecksumAlgorithm::Sha1 => f.sha1 = v,
            ChecksumAlgorithm::Sha256 => f.sha256 = v,
        }
    }
    f
}

fn key_or_empty(s: Option<String>) -> String {
    s.unwrap_or_default()
}

/// Continuation tokens are the hex of the key (or prefix) to resume after.
fn encode_token(after: &str) -> String {
    crate::digest::hex(after.as_bytes())
}

/// The bytes of part `n` (1-based, in the order the parts make up the object) and their
/// `Content-Range`, for a GET or HEAD with `partNumber`. An object uploaded in one piece has one
/// part, the whole object (and no `Content-Range`).
fn part_range(m: &ObjectManifest, n: i32) -> S3Result<(std::ops::Range<u64>, Option<String>)> {
    let invalid = || {
        let mut e = S3Error::with_message(
            S3ErrorCode::Custom("InvalidPartNumber".into()),
            "The requested partnumber is not satisfiable",
        );
        e.set_status_code(axum::http::StatusCode::RANGE_NOT_SATISFIABLE);
        e
    };
    let index = usize::try_from(n).ok().and_then(|n| n.checked_sub(1));
    if m.parts.is_empty() {
        return match index {
            Some(0) => Ok((0..m.size, None)),
            _ => Err(invalid()),
        };
    }
    let index = index.filter(|&i| i < m.parts.len()).ok_or_else(invalid)?;
    let start: u64 = m.parts[..index].iter().map(|p| p.size).sum();
    let end = start + m.parts[index].size;
    let content_range = (end > start).then(|| format!("bytes {}-{}/{}", start, end - 1, m.size));
    Ok((start..end, content_range))
}

/// `x-amz-mp-parts-count` for a read by part number of a multipart object.
fn parts_count(m: &ObjectManifest, part_number: Option<i32>) -> Option<i32> {
    (part_number.is_some() && !m.parts.is_empty())
        .then(|| i32::try_from(m.parts.len()).unwrap_or(i32::MAX))
}

fn decode_token(token: &str) -> S3Result<String> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The continuation token provided is incorrect"
        )
    };
    let bytes = crate::digest::unhex(token).ok_or_else(bad)?;
    String::from_utf8(bytes).map_err(|_| bad())
}

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must be 0 or more")),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

/// S3's `encoding-type=url`: percent-encodes everything but unreserved characters and `/`.
fn url_encode(s: &str) -> String {
    percent_encode(s, b"/")
}

/// Percent-encodes everything but unreserved characters (RFC 3986) and those in `keep`.
pub(crate) fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `owner`: shown on every object (ListObjects always, ListObjectsV2 with `fetch-owner`).
fn listed_objects(
    page: &ListPage,
    encode: KeyEncoder,
    owner: Option<&dto::Owner>,
) -> Option<Vec<dto::Object>> {
    let objects: Vec<dto::Object> = page
        .objects
        .iter()
        .map(|o| dto::Object {
            owner: owner.cloned(),
            key: Some(encode(&o.key)),
            size: Some(o.manifest.size as i64),
            e_tag: Some(ETag::Strong(o.manifest.etag.clone())),
            last_modified: Some(timestamp(o.manifest.created_ms)),
            storage_class: Some(dto::ObjectStorageClass::from_static(
                dto::ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect();
    (!objects.is_empty()).then_some(objects)
}

fn listed_prefixes(page: &ListPage, encode: KeyEncoder) -> Option<Vec<dto::CommonPrefix>> {
    let prefixes: Vec<dto::CommonPrefix> = page
        .common_prefixes
        .iter()
        .map(|p| dto::CommonPrefix {
            prefix: Some(encode(p)),
        })
        .collect();
    (!prefixes.is_empty()).then_some(prefixes)
}

/// How listed keys are written: as they are, or URL-encoded.
type KeyEncoder = fn(&str) -> String;

fn encoder(encoding_type: &Option<dto::EncodingType>) -> S3Result<KeyEncoder> {
    match encoding_type.as_ref().map(|e| e.as_str()) {
        None => Ok(|s: &str| s.to_string()),
        Some(dto::EncodingType::URL) => Ok(url_encode),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request: {other}"
        )),
    }
}

fn user_metadata(m: &ObjectManifest) -> Option<dto::Metadata> {
    (!m.user_metadata.is_empty()).then(|| {
        m.user_metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// s3s wants a `Sync` body; the object stream is only `Send`. Polling needs `&mut`, so the
/// mutex is never locked, only there to make the type `Sync`.
struct SyncBody(
    std::sync::Mutex<futures::stream::BoxStream<'static, Result<bytes::Bytes, ObjectError>>>,
);

impl futures::Stream for SyncBody {
    type Item = Result<bytes::Bytes, ObjectError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let inner = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(|p| p.into_inner());
        inner.poll_next_unpin(cx)
    }
}

#[async_trait::async_trait]
impl S3 for S3Api {
    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let key = req.credentials.as_ref().map(|c| c.access_key.as_str());
        let buckets = self
            .objects
            .list_buckets(key)?
            .into_iter()
            .map(|(name, created)| dto::Bucket {
                name: Some(name),
                creation_date: Some(timestamp(created)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(dto::ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner.clone()),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let input = req.input;
        let acl = features::acl_of!(input, grant_write);
        if acl.check(None).is_err() {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("InvalidBucketAclWithObjectOwnership".into()),
                "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
            );
            e.set_status_code(axum::http::StatusCode::BAD_REQUEST);
            return Err(e);
        }
        let bucket = input.bucket;
        let owner = req.credentials.as_ref().map(|c| c.access_key.as_str());
        self.objects.create_bucket(&bucket, owner)?;
        Ok(S3Response::new(dto::CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.objects.head_bucket(&req.input.bucket)?;
        Ok(S3Response::new(dto::HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.objects.head_bucket(&req.input.bucket)?;
        // us-east-1 is reported as an empty constraint, as S3 does.
        let location = (self.region != "us-east-1")
            .then(|| dto::BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(dto::GetBucketLocationOutput {
            location_constraint: location,
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        self.objects.delete_bucket(&req.input.bucket)?;
        Ok(S3Response::new(dto::DeleteBucketOutput {}))
    }

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let _permit = self.permit()?;
        let input = req.input;
        features::write_options!(input).check()?;

        let claims = BodyClaims::new(
            &req.headers,
            input.content_length,
            &input.content_md5,
            ClaimedSums {
                crc32: &input.checksum_crc32,
                crc32c: &input.checksum_crc32c,
                crc64nvme: &input.checksum_crc64nvme,
                sha1: &input.checksum_sha1,
                sha256: &input.checksum_sha256,
                algorithm: &input.checksum_algorithm,
            },
            req.trailing_headers,
        )?;
        let algorithms = claims.algorithms.clone();
        let verify = move |d: &Digests| claims.check(d);

        let expect = conditions::write_expectation(&input.if_match, &input.if_none_match)?;
        let put = PutObject {
            expect,
            bucket: input.bucket,
            key: input.key,
            content_type: input.content_type,
            user_metadata: attrs::user_metadata(input.metadata)?,
            headers: attrs::stored_headers!(input),
            tags: attrs::from_header(&input.tagging)?,
            checksums: algorithms,
        };
        let manifest = match input.body {
            Some(body) => self.objects.put_object(put, body, verify).await?,
            None => {
                let empty = futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
                self.objects.put_object(put, empty, verify).await?
            }
        };
        let sums = checksum_fields(&manifest.checksums, manifest.parts.len());
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: Some(ETag::Strong(manifest.etag)),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_type: sums.checksum_type,
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let permit = self.permit()?;
        let input = req.input;
        features::version(input.version_id.as_deref())?;
        features::customer_key(&input.sse_customer_algorithm)?;
        let m = self.objects.head_object(&input.bucket, &input.key).await?;
        conditions::Conditions {
            if_match: &input.if_match,
            if_none_match: &input.if_none_match,
            if_modified_since: &input.if_modified_since,
            if_unmodified_since: &input.if_unmodified_since,
        }
        .check(&m)?;
        let (range, content_range) = match (&input.range, input.part_number) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Cannot specify both Range header and partNumber query parameter"
                ))
            }
            (Some(r), None) => {
                let range = r.check(m.size).map_err(|_| {
                    s3_error!(InvalidRange, "The requested range is not satisfiable")
                })?;
                let cr = format!("bytes {}-{}/{}", range.start, range.end - 1, m.size);
                (range, Some(cr))
            }
            (None, Some(n)) => part_range(&m, n)?,
            (None, None) => (0..m.size, None),
        };
        let whole = range.start == 0 && range.end == m.size;
        let length = range.end - range.start;
        // The first segment is read before answering, so an object that cannot be served
        // gets a clean S3 error rather than a 200 with a broken body. A later segment that
        // fails can only cut the body short (the client sees a truncated transfer, never
        // wrong bytes).
        let stream = self
            .objects
            .open_read(&input.bucket, &input.key, &m, range)
            .await?
            .map(move |chunk| {
                let _held = &permit; // the request counts until its body is sent
                chunk
            });
        let sums = if whole && input.checksum_mode.is_some() {
            checksum_fields(&m.checksums, m.parts.len())
        } else {
            ChecksumFields::default()
        };
        let shown = attrs::shown(&m.headers);
        Ok(S3Response::new(dto::GetObjectOutput {
            body: Some(StreamingBlob::wrap(SyncBody(std::sync::Mutex::new(
                stream.boxed(),
            )))),
            content_length: Some(length as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(m.etag.clone())),
            last_modified: Some(timestamp(m.created_ms)),
            content_type: input
                .response_content_type
                .or_else(|| m.content_type.clone()),
            cache_control: input.response_cache_control.or(shown.cache_control),
            content_disposition: input
                .response_content_disposition
                .or(shown.content_disposition),
            content_encoding: input.response_content_encoding.or(shown.content_encoding),
            content_language: input.response_content_language.or(shown.content_language),
            expires: input.response_expires.or(shown.expires),
            tag_count: attrs::count(&m.tags),
            metadata: user_metadata(&m),
            parts_count: parts_count(&m, input.part_number),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_type: sums.checksum_type,
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let input = req.input;
        features::version(input.version_id.as_deref())?;
        features::customer_key(&input.sse_customer_algorithm)?;
        let m = self.objects.head_object(&input.bucket, &input.key).await?;
        conditions::Conditions {
            if_match: &input.if_match,
            if_none_match: &input.if_none_match,
            if_modified_since: &input.if_modified_since,
            if_unmodified_since: &input.if_unmodified_since,
        }
        .check(&m)?;
        let (range, content_range) = match input.part_number {
            Some(n) => part_range(&m, n)?,
            None => (0..m.size, None),
        };
        let sums = if input.checksum_mode.is_some() && content_range.is_none() {
            checksum_fields(&m.checksums, m.parts.len())
        } else {
            ChecksumFields::default()
        };
        let shown = attrs::shown(&m.headers);
        Ok(S3Response::new(dto::HeadObjectOutput {
            content_length: Some((range.end - range.start) as i64),
            content_range,
            parts_count: parts_count(&m, input.part_number),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(m.etag.clone())),
            last_modified: Some(timestamp(m.created_ms)),
            content_type: m.content_type.clone(),
            cache_control: shown.cache_control,
            content_disposition: shown.content_disposition,
            content_encoding: shown.content_encoding,
            content_language: shown.content_language,
            expires: shown.expires,
            metadata: user_metadata(&m),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_type: sums.checksum_type,
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        features::version(req.input.version_id.as_deref())?;
        self.objects
            .delete_object(&req.input.bucket, &req.input.key)
            .await?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let input = req.input;
        if input.delete.objects.len() > MAX_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "DeleteObjects takes at most 1000 keys"
            ));
        }
        self.objects.head_bucket(&input.bucket)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            let done = match features::version(object.version_id.as_deref()) {
                Ok(()) => self
                    .objects
                    .delete_object(&input.bucket, &object.key)
                    .await
                    .map_err(error::to_s3),
                Err(e) => Err(e),
            };
            match done {
                Ok(()) => {
                    if !quiet {
                        deleted.push(dto::DeletedObject {
                            key: Some(object.key),
                            ..Default::default()
                        });
                    }
                }
                Err(e) => {
                    errors.push(dto::Error {
                        code: Some(e.code().as_str().to_string()),
                        message: e.message().map(str::to_string),
                        key: Some(object.key),
                        version_id: object.version_id,
                    });
                }
            }
        }
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: (!deleted.is_empty()).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            request_charged: None,
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let input = req.input;
        let encode = encoder(&input.encoding_type)?;
        let after = match &input.continuation_token {
            Some(t) => Some(decode_token(t)?),
            None => input.start_after.clone(),
        };
        let max_keys = max_keys(input.max_keys)?;
        let q = ListQuery {
            prefix: key_or_empty(input.prefix.clone()),
            delimiter: input.delimiter.clone(),
            after,
            max_keys,
        };
        let page = self.objects.list_objects(&input.bucket, &q).await?;
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix.as_deref().map(encode),
            delimiter: input.delimiter.as_deref().map(encode),
            start_after: input.start_after.as_deref().map(encode),
            max_keys: Some(max_keys as i32),
            key_count: Some((page.objects.len() + page.common_prefixes.len()) as i32),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next_after.as_deref().map(encode_token),
            contents: listed_objects(
                &page,
                encode,
                input.fetch_owner.unwrap_or(false).then_some(&self.owner),
            ),
            common_prefixes: listed_prefixes(&page, encode),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let input = req.input;
        let encode = encoder(&input.encoding_type)?;
        let max_keys = max_keys(input.max_keys)?;
        let q = ListQuery {
            prefix: key_or_empty(input.prefix.clone()),
            delimiter: input.delimiter.clone(),
            after: input.marker.clone().filter(|m| !m.is_empty()),
            max_keys,
        };
        let page = self.objects.list_objects(&input.bucket, &q).await?;
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(input.bucket),
            prefix: input.prefix.as_deref().map(encode),
            delimiter: input.delimiter.as_deref().map(encode),
            marker: input.marker.as_deref().map(encode),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(page.truncated),
            next_marker: page.next_after.as_deref().map(encode),
            contents: listed_objects(&page, encode, Some(&self.owner)),
            common_prefixes: listed_prefixes(&page, encode),
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        copy::copy_object(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        copy::upload_part_copy(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        multipart::create(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        multipart::complete(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        multipart::abort(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<dto::PutObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::PutObjectTaggingOutput>> {
        let input = req.input;
        features::version(input.version_id.as_deref())?;
        let tags = attrs::from_tagging(input.tagging)?;
        self.objects
            .set_tags(&input.bucket, &input.key, tags)
            .await?;
        Ok(S3Response::new(dto::PutObjectTaggingOutput::default()))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<dto::GetObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        let input = req.input;
        features::version(input.version_id.as_deref())?;
        let m = self.objects.head_object(&input.bucket, &input.key).await?;
        Ok(S3Response::new(dto::GetObjectTaggingOutput {
            tag_set: attrs::to_tag_set(&m.tags),
            version_id: None,
        }))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<dto::DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        let input = req.input;
        features::version(input.version_id.as_deref())?;
        self.objects
            .set_tags(&input.bucket, &input.key, BTreeMap::new())
            .await?;
        Ok(S3Response::new(dto::DeleteObjectTaggingOutput::default()))
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<dto::GetBucketAclInput>,
    ) -> S3Result<S3Response<dto::GetBucketAclOutput>> {
        self.objects.head_bucket(&req.input.bucket)?;
        Ok(S3Response::new(dto::GetBucketAclOutput {
            grants: Some(features::owner_acl(&self.owner)),
            owner: Some(self.owner.clone()),
        }))
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<dto::PutBucketAclInput>,
    ) -> S3Result<S3Response<dto::PutBucketAclOutput>> {
        let input = req.input;
        self.objects.head_bucket(&input.bucket)?;
        let acl = features::acl_of!(input, grant_write);
        self.check_acl(acl, input.access_control_policy.as_ref())?;
        Ok(S3Response::new(dto::PutBucketAclOutput {}))
    }

    async fn get_object_acl(
        &self,
        req: S3Request<dto::GetObjectAclInput>,
    ) -> S3Result<S3Response<dto::GetObjectAclOutput>> {
        let input = req.input;
        features::version(input.version_id.as_deref())?;
        self.objects.head_object(&input.bucket, &input.key).await?;
        Ok(S3Response::new(dto::GetObjectAclOutput {
            grants: Some(features::owner_acl(&self.owner)),
            owner: Some(self.owner.clone()),
            request_charged: None,
        }))
    }

    async fn put_object_acl(
        &self,
        req: S3Request<dto::PutObjectAclInput>,
    ) -> S3Result<S3Response<dto::PutObjectAclOutput>> {
        let input = req.input;
        features::version(input.version_id.as_deref())?;
        self.objects.head_object(&input.bucket, &input.key).await?;
        let acl = features::acl_of!(input, grant_write);
        self.check_acl(acl, input.access_control_policy.as_ref())?;
        Ok(S3Response::new(dto::PutObjectAclOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        multipart::list_uploads(self, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        for key in ["", "a/b", "ключ", "x\u{0}y"] {
            assert_eq!(decode_token(&encode_token(key)).unwrap(), key);
        }
        for bad in ["abc", "zz", "ff"] {
            assert!(decode_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn url_encoding_keeps_slashes() {
        assert_eq!(url_encode("a b/c+d"), "a%20b/c%2Bd");
        assert_eq!(url_encode("é"), "%C3%A9");
    }
}
