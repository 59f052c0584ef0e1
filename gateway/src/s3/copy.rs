//! CopyObject and UploadPartCopy (the `S3` trait methods delegate here), with the
//! `x-amz-copy-source-if-*` conditions.

use s3s::dto::{self, CopySource, ETag};
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::conditions::Conditions;
use super::{attrs, features};
use super::{checksum_fields, timestamp, S3Api};
use crate::objects::put::PutObject;

fn source(cs: &CopySource) -> S3Result<(String, String)> {
    match cs {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            features::version(version_id.as_deref())?;
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(s3_error!(
            NotImplemented,
            "only bucket/key copy sources are supported"
        )),
    }
}

/// `bytes=first-last` (inclusive, both required) as a half-open range.
fn copy_range(spec: &str) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last"
        )
    };
    let (first, last) = spec
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = first.trim().parse().map_err(|_| bad())?;
    let last: u64 = last.trim().parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    // `last` of u64::MAX has no half-open end (and no object is that large).
    let end = last.checked_add(1).ok_or_else(bad)?;
    Ok(first..end)
}

/// The source of a CopyObject or UploadPartCopy (their inputs share these fields): bucket, key
/// and manifest, once its `x-amz-copy-source-if-*` conditions hold.
macro_rules! copy_source {
    ($api:expr, $input:expr) => {{
        features::customer_key(&$input.copy_source_sse_customer_algorithm)?;
        let (bucket, key) = source(&$input.copy_source)?;
        let src = $api.objects.head_object(&bucket, &key).await?;
        Conditions {
            if_match: &$input.copy_source_if_match,
            if_none_match: &$input.copy_source_if_none_match,
            if_modified_since: &$input.copy_source_if_modified_since,
            if_unmodified_since: &$input.copy_source_if_unmodified_since,
        }
        .check_copy_source(&src)?;
        (bucket, key, src)
    }};
}

pub(super) async fn copy_object(
    api: &S3Api,
    req: S3Request<dto::CopyObjectInput>,
) -> S3Result<S3Response<dto::CopyObjectOutput>> {
    let _permit = api.permit()?;
    let input = req.input;
    features::write_options!(input).check()?;
    let (src_bucket, src_key, src) = copy_source!(api, input);
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == dto::MetadataDirective::REPLACE);
    if !replace && src_bucket == input.bucket && src_key == input.key {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let (content_type, user_metadata, headers) = if replace {
        (
            input.content_type,
            attrs::user_metadata(input.metadata)?,
            attrs::stored_headers!(input),
        )
    } else {
        (
            src.content_type.clone(),
            src.user_metadata.clone(),
            src.headers.clone(),
        )
    };
    let replace_tags = input
        .tagging_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == dto::TaggingDirective::REPLACE);
    let tags = if replace_tags {
        attrs::from_header(&input.tagging)?
    } else {
        src.tags.clone()
    };
    let dst = PutObject {
        bucket: input.bucket,
        key: input.key,
        content_type,
        user_metadata,
        headers,
        tags,
        checksums: Vec::new(),
        expect: crate::meta::Expect::Anything,
    };
    let m = api
        .objects
        .copy_object(&src_bucket, &src_key, &src, dst)
        .await?;
    let sums = checksum_fields(&m.checksums, m.parts.len());
    Ok(S3Response::new(dto::CopyObjectOutput {
        copy_object_result: Some(dto::CopyObjectResult {
            e_tag: Some(ETag::Strong(m.etag)),
            last_modified: Some(timestamp(m.created_ms)),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_type: sums.checksum_type,
        }),
        ..Default::default()
    }))
}

pub(super) async fn upload_part_copy(
    api: &S3Api,
    req: S3Request<dto::UploadPartCopyInput>,
) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
    let _permit = api.permit()?;
    let input = req.input;
    let number = super::multipart::part_number(input.part_number)?;
    features::customer_key(&input.sse_customer_algorithm)?;
    let (src_bucket, _, src) = copy_source!(api, input);
    let range = input
        .copy_source_range
        .as_deref()
        .map(copy_range)
        .transpose()?;
    let info = api
        .objects
        .upload_part_copy(
            &input.bucket,
            &input.key,
            &input.upload_id,
            number,
            &src_bucket,
            &src,
            range,
        )
        .await?;
    Ok(S3Response::new(dto::UploadPartCopyOutput {
        copy_part_result: Some(dto::CopyPartResult {
            e_tag: Some(ETag::Strong(info.etag)),
            last_modified: Some(timestamp(info.created_ms)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_are_inclusive_and_strict() {
        assert_eq!(copy_range("bytes=0-0").unwrap(), 0..1);
        assert_eq!(copy_range("bytes=10-19").unwrap(), 10..20);
        for bad in ["0-1", "bytes=5-4", "bytes=-5", "bytes=1-", "bytes=a-b"] {
            assert!(copy_range(bad).is_err(), "{bad}");
        }
    }
}
