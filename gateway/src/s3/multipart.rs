//! The multipart operations of the S3 adapter (the `S3` trait methods delegate here).

use chunker::manifest::ChecksumAlgorithm;
use s3s::dto::{self, ETag};
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::body::{algorithm_named, BodyClaims, ClaimedSums};
use super::{checksum_fields, timestamp, S3Api, MAX_KEYS};
use crate::objects::multipart::{ChosenPart, CreateUpload, UploadsQuery};

fn etag_text(e: &ETag) -> &str {
    match e {
        ETag::Strong(s) | ETag::Weak(s) => s,
    }
}

/// A part number from a request, as S3 bounds it.
pub(super) fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=crate::objects::multipart::MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000"
            )
        })
}

fn page_size(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(
            InvalidArgument,
            "the page size must be 0 or more"
        )),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

pub(super) async fn create(
    api: &S3Api,
    req: S3Request<dto::CreateMultipartUploadInput>,
) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
    let input = req.input;
    super::features::write_options!(input).check()?;
    let checksum = match &input.checksum_algorithm {
        Some(a) => Some(algorithm_named(a.as_str()).ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Checksum algorithm {} is not supported",
                a.as_str()
            )
        })?),
        None => None,
    };
    let upload_id = api
        .objects
        .create_upload(CreateUpload {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            content_type: input.content_type,
            user_metadata: super::attrs::user_metadata(input.metadata)?,
            headers: super::attrs::stored_headers!(input),
            tags: super::attrs::from_header(&input.tagging)?,
            checksum,
        })
        .await?;
    Ok(S3Response::new(dto::CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        checksum_algorithm: input.checksum_algorithm,
        ..Default::default()
    }))
}

pub(super) async fn upload_part(
    api: &S3Api,
    req: S3Request<dto::UploadPartInput>,
) -> S3Result<S3Response<dto::UploadPartOutput>> {
    let _permit = api.permit()?;
    let input = req.input;
    super::features::customer_key(&input.sse_customer_algorithm)?;
    let number = part_number(input.part_number)?;
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
    let verify = move |d: &crate::digest::Digests| claims.check(d);
    let (bucket, key, upload_id) = (&input.bucket, &input.key, &input.upload_id);
    let info = match input.body {
        Some(body) => {
            api.objects
                .upload_part(bucket, key, upload_id, number, &algorithms, body, verify)
                .await?
        }
        None => {
            let empty = futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
            api.objects
                .upload_part(bucket, key, upload_id, number, &algorithms, empty, verify)
                .await?
        }
    };
    let sums = checksum_fields(&info.checksums, 0);
    Ok(S3Response::new(dto::UploadPartOutput {
        e_tag: Some(ETag::Strong(info.etag)),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        ..Default::default()
    }))
}

fn chosen_part(p: &dto::CompletedPart) -> S3Result<ChosenPart> {
    let number = p
        .part_number
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| s3_error!(InvalidPart, "every part needs a part number"))?;
    let etag = p
        .e_tag
        .as_ref()
        .map(|e| etag_text(e).to_string())
        .ok_or_else(|| s3_error!(InvalidPart, "part {number} has no ETag"))?;
    let mut checksums = Vec::new();
    for (algorithm, value) in [
        (ChecksumAlgorithm::Crc32, &p.checksum_crc32),
        (ChecksumAlgorithm::Crc32c, &p.checksum_crc32c),
        (ChecksumAlgorithm::Crc64Nvme, &p.checksum_crc64nvme),
        (ChecksumAlgorithm::Sha1, &p.checksum_sha1),
        (ChecksumAlgorithm::Sha256, &p.checksum_sha256),
    ] {
        if let Some(v) = value {
            let raw = base64_simd::STANDARD
                .decode_to_vec(v)
                .map_err(|_| s3_error!(InvalidPart, "part {number}'s checksum is not base64"))?;
            checksums.push((algorithm, raw));
        }
    }
    Ok(ChosenPart {
        number,
        etag,
        checksums,
    })
}

pub(super) async fn complete(
    api: &S3Api,
    req: S3Request<dto::CompleteMultipartUploadInput>,
) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
    let input = req.input;
    let parts = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    if parts.is_empty() {
        // What S3 answers: a CompleteMultipartUpload without parts fails its schema.
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    }
    let chosen = parts
        .iter()
        .map(chosen_part)
        .collect::<S3Result<Vec<_>>>()?;
    let expect = super::conditions::write_expectation(&input.if_match, &input.if_none_match)?;
    let m = api
        .objects
        .complete_upload(
            &input.bucket,
            &input.key,
            &input.upload_id,
            &chosen,
            &expect,
        )
        .await?;
    let sums = checksum_fields(&m.checksums, m.parts.len());
    Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        bucket: Some(input.bucket),
        key: Some(input.key),
        e_tag: Some(ETag::Strong(m.etag)),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_type: sums.checksum_type,
        ..Default::default()
    }))
}

pub(super) async fn abort(
    api: &S3Api,
    req: S3Request<dto::AbortMultipartUploadInput>,
) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
    let input = req.input;
    api.objects
        .abort_upload(&input.bucket, &input.key, &input.upload_id)?;
    Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
}

pub(super) async fn list_parts(
    api: &S3Api,
    req: S3Request<dto::ListPartsInput>,
) -> S3Result<S3Response<dto::ListPartsOutput>> {
    let input = req.input;
    let max = page_size(input.max_parts)?;
    let after = input
        .part_number_marker
        .map(|m| u32::try_from(m).unwrap_or(0))
        .unwrap_or(0);
    let (parts, truncated) =
        api.objects
            .list_parts(&input.bucket, &input.key, &input.upload_id, after, max)?;
    let next = truncated
        .then(|| parts.last().map(|p| p.number as i32))
        .flatten();
    let parts = parts
        .into_iter()
        .map(|p| {
            let sums = checksum_fields(&p.checksums, 0);
            dto::Part {
                part_number: Some(p.number as i32),
                size: Some(p.size as i64),
                e_tag: Some(ETag::Strong(p.etag)),
                last_modified: Some(timestamp(p.created_ms)),
                checksum_crc32: sums.crc32,
                checksum_crc32c: sums.crc32c,
                checksum_crc64nvme: sums.crc64nvme,
                checksum_sha1: sums.sha1,
                checksum_sha256: sums.sha256,
            }
        })
        .collect();
    Ok(S3Response::new(dto::ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        max_parts: Some(max as i32),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: next,
        is_truncated: Some(truncated),
        parts: Some(parts),
        ..Default::default()
    }))
}

pub(super) async fn list_uploads(
    api: &S3Api,
    req: S3Request<dto::ListMultipartUploadsInput>,
) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
    let input = req.input;
    let max = page_size(input.max_uploads)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let page = api.objects.list_uploads(
        &input.bucket,
        &UploadsQuery {
            prefix: &prefix,
            delimiter: input.delimiter.as_deref(),
            key_marker: input.key_marker.as_deref().filter(|m| !m.is_empty()),
            upload_id_marker: input.upload_id_marker.as_deref().filter(|m| !m.is_empty()),
            max,
        },
    )?;
    let (next_key, next_id) = match page.truncated {
        true => (page.next_key_marker, page.next_upload_id_marker),
        false => (None, None),
    };
    let uploads = page
        .uploads
        .into_iter()
        .map(|u| dto::MultipartUpload {
            key: Some(u.key),
            upload_id: Some(u.upload_id),
            initiated: Some(timestamp(u.created_ms)),
            storage_class: Some(dto::StorageClass::from_static(dto::StorageClass::STANDARD)),
            ..Default::default()
        })
        .collect();
    let common_prefixes = page
        .common_prefixes
        .into_iter()
        .map(|p| dto::CommonPrefix { prefix: Some(p) })
        .collect();
    Ok(S3Response::new(dto::ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max as i32),
        is_truncated: Some(page.truncated),
        next_key_marker: next_key,
        next_upload_id_marker: next_id,
        uploads: Some(uploads),
        common_prefixes: Some(common_prefixes),
        delimiter: input.delimiter,
        ..Default::default()
    }))
}
