//! Server-side copies: the source's plaintext streams out of the GET path straight into the PUT
//! path (new data key, new pieces), so a copy costs what a download plus an upload cost inside
//! the gateway and holds no more memory than either.

use std::ops::Range;

use chunker::ObjectManifest;

use super::multipart::PartInfo;
use super::put::PutObject;
use super::{ObjectError, ObjectService};

impl ObjectService {
    /// Copies `src_bucket`/`src_key` to `dst` (whose metadata the caller has resolved). The new
    /// object keeps the source's checksum algorithms.
    pub async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        source: &ObjectManifest,
        mut dst: PutObject,
    ) -> Result<ObjectManifest, ObjectError> {
        self.head_bucket(src_bucket)?;
        dst.checksums = source
            .checksums
            .iter()
            .filter(|c| !c.composite)
            .map(|c| c.algorithm)
            .collect();
        tracing::debug!(src_bucket, src_key, dst_key = %dst.key, "copying");
        let body = self.read_object(src_bucket, source, 0..source.size).await?;
        self.put_object(dst, body, |_| Ok(())).await
    }

    /// Uploads part `number` of an upload from `range` of an existing object of `src_bucket`.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        src_bucket: &str,
        source: &ObjectManifest,
        range: Option<Range<u64>>,
    ) -> Result<PartInfo, ObjectError> {
        let range = range.unwrap_or(0..source.size);
        if range.start > range.end || range.end > source.size {
            return Err(ObjectError::InvalidRange);
        }
        let body = self.read_object(src_bucket, source, range).await?;
        self.upload_part(bucket, key, upload_id, number, &[], body, |_| Ok(()))
            .await
    }
}
