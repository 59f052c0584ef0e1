//! The one place where the object service's errors become S3 errors.

use s3s::{S3Error, S3ErrorCode};

use crate::objects::ObjectError;

/// The S3 error (code, status, message) for an object-service error. Internal details are
/// logged here, not sent to the client.
pub fn to_s3(e: ObjectError) -> S3Error {
    use ObjectError as E;
    let (code, message): (S3ErrorCode, String) = match &e {
        E::NoSuchBucket => (
            S3ErrorCode::NoSuchBucket,
            "The specified bucket does not exist".into(),
        ),
        E::NoSuchKey => (
            S3ErrorCode::NoSuchKey,
            "The specified key does not exist.".into(),
        ),
        E::BucketExists => (
            S3ErrorCode::BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
                .into(),
        ),
        E::BucketTaken => (
            S3ErrorCode::BucketAlreadyExists,
            "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.".into(),
        ),
        E::BucketNotEmpty => (
            S3ErrorCode::BucketNotEmpty,
            "The bucket you tried to delete is not empty".into(),
        ),
        E::NotEnoughNodes(_) | E::QuorumFailed { .. } | E::Unreadable { .. } => {
            tracing::warn!(error = %e, "storage network cannot serve the request");
            (S3ErrorCode::ServiceUnavailable, e.to_string())
        }
        E::Remote(_) => {
            // The details name the remote's endpoint and bucket: logged, not sent.
            tracing::warn!(error = %e, "the bucket's remote failed");
            (
                S3ErrorCode::ServiceUnavailable,
                "The bucket's remote storage could not complete the request. Please try again."
                    .into(),
            )
        }
        E::NoSuchUpload => (
            S3ErrorCode::NoSuchUpload,
            "The specified multipart upload does not exist.".into(),
        ),
        E::InvalidPart(_) => (S3ErrorCode::InvalidPart, e.to_string()),
        E::InvalidPartOrder => (S3ErrorCode::InvalidPartOrder, e.to_string()),
        E::EntityTooSmall { .. } => (S3ErrorCode::EntityTooSmall, e.to_string()),
        E::EntityTooLarge { .. } => (
            S3ErrorCode::EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size".into(),
        ),
        E::Busy => (
            S3ErrorCode::SlowDown,
            "Please reduce your request rate.".into(),
        ),
        // s3s' SigV4 body check fails the stream with an error of a private type; its text
        // (s3s 0.14: "UploadStreamError: Sha256Mismatch") is all there is to tell it by.
        E::Body(reason) if reason.contains("Sha256Mismatch") => {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            );
            e.set_status_code(axum::http::StatusCode::BAD_REQUEST);
            return e;
        }
        E::Body(_) => (S3ErrorCode::IncompleteBody, e.to_string()),
        E::BodyTimeout(_) => (
            S3ErrorCode::RequestTimeout,
            "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.".into(),
        ),
        E::BadDigest(_) => (S3ErrorCode::BadDigest, e.to_string()),
        E::Invalid(_) => (S3ErrorCode::InvalidArgument, e.to_string()),
        E::InvalidRange => (S3ErrorCode::InvalidRange, e.to_string()),
        E::PreconditionFailed => (S3ErrorCode::PreconditionFailed, e.to_string()),
        E::Meta(_) | E::Crypto(_) | E::Encode(_) | E::Task(_) => {
            tracing::error!(error = %e, "internal error");
            (
                S3ErrorCode::InternalError,
                "We encountered an internal error. Please try again.".into(),
            )
        }
    };
    S3Error::with_message(code, message)
}

impl From<ObjectError> for S3Error {
    fn from(e: ObjectError) -> Self {
        to_s3(e)
    }
}
