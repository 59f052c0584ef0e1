//! Which key may do what to which bucket: every signed request's operation is checked against
//! the bucket's grants (`crate::meta::grants`) before s3s reads its input. Anonymous requests
//! are refused; CopyObject and UploadPartCopy also need `Read` on the source bucket.

use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};

use crate::meta::{Grant, Meta};

/// The grant an operation needs on its bucket (`None`: it names no bucket to check, or checks
/// its own: ListBuckets shows only what the key may read, CreateBucket refuses a taken name).
pub fn needed(operation: &str) -> Option<Grant> {
    const WRITES: &[&str] = &[
        "PutObject",
        "DeleteObject",
        "DeleteObjects",
        "CopyObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "PutObjectTagging",
        "DeleteObjectTagging",
        "PutObjectAcl",
        "PutObjectRetention",
        "PutObjectLegalHold",
        "RestoreObject",
    ];
    match operation {
        "ListBuckets" | "CreateBucket" => None,
        op if WRITES.contains(&op) => Some(Grant::Write),
        op if op.starts_with("Get") || op.starts_with("List") || op.starts_with("Head") => {
            Some(Grant::Read)
        }
        // Everything else changes the bucket itself (its configuration, its existence).
        _ => Some(Grant::Owner),
    }
}

/// The bucket an `x-amz-copy-source` names (`bucket/key` or `/bucket/key`, URL-encoded).
fn copy_source_bucket(header: &str) -> Option<String> {
    let path = header.split('?').next()?.trim_start_matches('/');
    let bucket = path.split('/').next()?;
    (!bucket.is_empty()).then(|| crate::s3::gate::percent_decode(bucket))
}

/// The access check s3s runs on every request.
#[derive(Debug, Clone)]
pub struct Grants {
    pub meta: Arc<Meta>,
}

impl Grants {
    fn require(&self, bucket: &str, key: &str, grant: Grant) -> S3Result<()> {
        let grants = self.meta.grants(bucket).map_err(|e| {
            tracing::error!(error = %e, "reading a bucket's grants failed");
            s3_error!(InternalError)
        })?;
        if grants.allows(key, grant) {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "Access Denied"))
        }
    }
}

#[async_trait::async_trait]
impl S3Access for Grants {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(key) = cx.credentials().map(|c| c.access_key.clone()) else {
            return Err(s3_error!(AccessDenied, "Signed requests only"));
        };
        let op = cx.s3_op().name().to_string();
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket.to_string()),
        };
        if let (Some(bucket), Some(grant)) = (bucket, needed(&op)) {
            self.require(&bucket, &key, grant)?;
        }
        if op == "CopyObject" || op == "UploadPartCopy" {
            let source = cx
                .headers()
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok())
                .and_then(copy_source_bucket);
            if let Some(source) = source {
                self.require(&source, &key, Grant::Read)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_need_what_they_touch() {
        assert_eq!(needed("GetObject"), Some(Grant::Read));
        assert_eq!(needed("ListObjectsV2"), Some(Grant::Read));
        assert_eq!(needed("HeadBucket"), Some(Grant::Read));
        assert_eq!(needed("PutObject"), Some(Grant::Write));
        assert_eq!(needed("DeleteObjects"), Some(Grant::Write));
        assert_eq!(needed("DeleteBucket"), Some(Grant::Owner));
        assert_eq!(needed("PutBucketVersioning"), Some(Grant::Owner));
        assert_eq!(needed("SomethingNew"), Some(Grant::Owner));
        assert_eq!(needed("ListBuckets"), None);
        assert_eq!(
            copy_source_bucket("/src/a/b.txt?versionId=1").as_deref(),
            Some("src")
        );
        assert_eq!(copy_source_bucket("src%2Dx/k").as_deref(), Some("src-x"));
        assert_eq!(copy_source_bucket("/"), None);
    }
}
