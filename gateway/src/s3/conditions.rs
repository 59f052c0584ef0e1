//! Conditional reads (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since) with S3's
//! precedence: a failing If-Match is 412 whatever the dates say, a matching If-None-Match is 304
//! whatever the dates say, and the date conditions only count without their ETag counterpart.

use chunker::ObjectManifest;
use s3s::dto::{ETag, ETagCondition, Timestamp};
use s3s::{s3_error, S3Result};

use super::timestamp;

/// The conditions of a GET or HEAD.
pub(super) struct Conditions<'a> {
    pub if_match: &'a Option<ETagCondition>,
    pub if_none_match: &'a Option<ETagCondition>,
    pub if_modified_since: &'a Option<Timestamp>,
    pub if_unmodified_since: &'a Option<Timestamp>,
}

fn matches(condition: &ETagCondition, etag: &ETag) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag.value(),
    }
}

/// HTTP dates have whole seconds: compare the object's time at that precision.
fn last_modified(m: &ObjectManifest) -> Timestamp {
    timestamp(m.created_ms / 1000 * 1000)
}

impl Conditions<'_> {
    /// `Err(PreconditionFailed)` (412) or `Err(NotModified)` (304) when a condition says so.
    pub(super) fn check(&self, m: &ObjectManifest) -> S3Result<()> {
        let etag = ETag::Strong(m.etag.clone());
        let modified = last_modified(m);
        match self.if_match {
            Some(c) if !matches(c, &etag) => return Err(s3_error!(PreconditionFailed)),
            Some(_) => {}
            None => {
                if let Some(t) = self.if_unmodified_since {
                    if modified > *t {
                        return Err(s3_error!(PreconditionFailed));
                    }
                }
            }
        }
        match self.if_none_match {
            Some(c) if matches(c, &etag) => return Err(s3_error!(NotModified)),
            Some(_) => {}
            None => {
                if let Some(t) = self.if_modified_since {
                    if modified <= *t {
                        return Err(s3_error!(NotModified));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Conditions<'_> {
    /// The `x-amz-copy-source-if-*` conditions of a copy: the same rules, but a copy either
    /// happens or fails with 412 (there is nothing "not modified" to answer).
    pub(super) fn check_copy_source(&self, source: &ObjectManifest) -> S3Result<()> {
        self.check(source).map_err(|e| {
            if *e.code() == s3s::S3ErrorCode::NotModified {
                s3_error!(PreconditionFailed)
            } else {
                e
            }
        })
    }
}

/// S3's conditional writes (PutObject, CompleteMultipartUpload): `If-None-Match: *` (create
/// only) and `If-Match: <etag>` (replace only that version).
pub(super) fn write_expectation(
    if_match: &Option<ETagCondition>,
    if_none_match: &Option<ETagCondition>,
) -> S3Result<crate::meta::Expect> {
    use crate::meta::Expect;
    match (if_match, if_none_match) {
        (None, None) => Ok(Expect::Anything),
        (None, Some(ETagCondition::Any)) => Ok(Expect::Absent),
        (Some(ETagCondition::Any), None) => Ok(Expect::Present),
        (Some(ETagCondition::ETag(e)), None) => Ok(Expect::ETag(e.value().to_string())),
        (None, Some(ETagCondition::ETag(_))) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on writes only supports *"
        )),
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "If-Match and If-None-Match cannot be combined on a write"
        )),
    }
}
