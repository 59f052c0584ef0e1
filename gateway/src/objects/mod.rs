//! The object service: buckets and objects on top of the metadata and the node network. It
//! knows nothing of HTTP or S3's wire format; the S3 layer calls one method per operation.
//!
//! - [`put`]: a byte stream → encrypted, coded segments on nodes → one atomic manifest commit.
//! - [`get`]: a manifest and a byte range → the plaintext, as a stream, repairing reads from
//!   parity when pieces are missing or wrong.
//! - [`list`]: S3 listings with prefixes, delimiters and markers over the ordered metadata.
//! - [`copy`]: server-side copies, GET path into PUT path.
//! - [`multipart`]: uploads in parts, each part through the PUT path, stitched on completion.
//! - [`hybrid`]: what a bucket's remote adds: reads that fall back to it, writes mirrored to
//!   it, objects copied in from it.

pub mod copy;
pub mod get;
pub mod hybrid;
pub mod list;
pub mod multipart;
pub mod put;
pub mod tags;

use std::sync::Arc;
use std::time::Duration;

use chunker::{Coder, CryptoError, MasterKey, ObjectManifest, Params};

use crate::hybrid::Remotes;
use crate::meta::{Meta, MetaError};
use crate::nodes::Nodes;
use crate::pieces::PieceNet;
use crate::repair::Health;
use crate::time::now_ms;

/// How objects are stored.
#[derive(Debug, Clone)]
pub struct DataConfig {
    pub params: Params,
    /// Bodies up to this size are kept inline in the metadata.
    pub inline_threshold: u64,
    /// Pieces of a segment that must be stored before the upload goes on.
    pub write_quorum: usize,
    /// After the quorum, how long the remaining pieces may still take.
    pub write_grace: Duration,
    /// A segment read slower than this is hedged with a read from every piece's node.
    pub hedge_after: Duration,
    /// An upload body that yields nothing for this long fails with [`ObjectError::BodyTimeout`].
    pub body_timeout: Duration,
}

/// Why an object operation failed, in terms the S3 layer maps to S3 errors.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("no such key")]
    NoSuchKey,
    #[error("the bucket already exists")]
    BucketExists,
    #[error("the bucket name is taken")]
    BucketTaken,
    #[error("the bucket is not empty")]
    BucketNotEmpty,
    #[error("no such multipart upload")]
    NoSuchUpload,
    #[error("{0}")]
    InvalidPart(String),
    #[error("the parts must be listed in ascending order")]
    InvalidPartOrder,
    #[error("part {part} is {size} bytes; every part but the last must be at least 5 MiB")]
    EntityTooSmall { part: u32, size: u64 },
    #[error("the body exceeds the {limit}-byte limit")]
    EntityTooLarge { limit: u64 },
    #[error("the storage network cannot place a segment safely now: {0}")]
    NotEnoughNodes(#[from] crate::placement::Shortfall),
    #[error("only {stored} of a segment's pieces could be stored, {needed} are required")]
    QuorumFailed { needed: usize, stored: usize },
    #[error("segment {segment} is unreadable: {reason}")]
    Unreadable { segment: usize, reason: String },
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("the request body sent nothing for {0:?}")]
    BodyTimeout(Duration),
    #[error("the body does not match its digest: {0}")]
    BadDigest(String),
    #[error("the request is invalid: {0}")]
    Invalid(String),
    #[error("the requested range is not satisfiable")]
    InvalidRange,
    #[error("at least one of the preconditions you specified did not hold")]
    PreconditionFailed,
    #[error("the server is busy")]
    Busy,
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("encryption: {0}")]
    Crypto(#[from] CryptoError),
    #[error("encoding: {0}")]
    Encode(#[from] chunker::EncodeError),
    #[error("a worker task failed: {0}")]
    Task(String),
    /// The bucket's remote (hybrid) failed.
    #[error("the bucket's remote: {0}")]
    Remote(#[from] crate::hybrid::RemoteError),
}

impl From<crate::hybrid::ConfigError> for ObjectError {
    fn from(e: crate::hybrid::ConfigError) -> Self {
        match e {
            crate::hybrid::ConfigError::Meta(e) => ObjectError::Meta(e),
            e => ObjectError::Remote(crate::hybrid::RemoteError::Refused(e.to_string())),
        }
    }
}

impl From<tokio::task::JoinError> for ObjectError {
    fn from(e: tokio::task::JoinError) -> Self {
        ObjectError::Task(e.to_string())
    }
}

/// What an object is, for responses that need no bytes.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub key: String,
    pub manifest: ObjectManifest,
}

/// Buckets and objects.
pub struct ObjectService {
    meta: Arc<Meta>,
    nodes: Arc<Nodes>,
    net: Arc<dyn PieceNet>,
    master: Arc<MasterKey>,
    coder: Arc<Coder>,
    cfg: DataConfig,
    /// Where reads report pieces they found missing or corrupt.
    health: Arc<Health>,
    /// Buckets' remotes (hybrid).
    remotes: Arc<Remotes>,
    /// Objects read from a remote that should be copied in (see [`hybrid`]).
    copy_in: hybrid::CopyInQueue,
}

impl std::fmt::Debug for ObjectService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectService")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl ObjectService {
    /// A service storing objects with `cfg` on `nodes` through `net`; reads report damaged
    /// pieces to `health`; hybrid buckets reach their remotes through `remotes`.
    pub fn new(
        meta: Arc<Meta>,
        nodes: Arc<Nodes>,
        net: Arc<dyn PieceNet>,
        master: Arc<MasterKey>,
        cfg: DataConfig,
        health: Arc<Health>,
        remotes: Arc<Remotes>,
    ) -> Self {
        ObjectService {
            coder: Arc::new(Coder::new(cfg.params)),
            meta,
            nodes,
            net,
            master,
            cfg,
            health,
            remotes,
            copy_in: hybrid::CopyInQueue::new(),
        }
    }

    /// Buckets' remotes.
    pub fn remotes(&self) -> &Arc<Remotes> {
        &self.remotes
    }

    /// The metadata this service writes.
    pub fn meta(&self) -> &Arc<Meta> {
        &self.meta
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, name: &str, owner: Option<&str>) -> Result<(), ObjectError> {
        self.meta
            .create_bucket(name, now_ms(), owner)
            .map_err(|e| match e {
                MetaError::BucketExists => {
                    // Yours already, or somebody else's (whom it does not concern you).
                    match (owner, self.meta.grants(name)) {
                        (Some(k), Ok(g)) if !g.allows(k, crate::meta::Grant::Owner) => {
                            ObjectError::BucketTaken
                        }
                        _ => ObjectError::BucketExists,
                    }
                }
                e => e.into(),
            })
    }

    /// `Ok` if the bucket exists.
    pub fn head_bucket(&self, name: &str) -> Result<u64, ObjectError> {
        match self.meta.bucket(name)? {
            Some(b) => Ok(b.created_ms),
            None => Err(ObjectError::NoSuchBucket),
        }
    }

    /// Every bucket with its creation time.
    pub fn list_buckets(&self, key: Option<&str>) -> Result<Vec<(String, u64)>, ObjectError> {
        let mut out = Vec::new();
        for (name, b) in self.meta.buckets()? {
            let visible = match key {
                Some(k) => self.meta.grants(&name)?.allows(k, crate::meta::Grant::Read),
                None => true,
            };
            if visible {
                out.push((name, b.created_ms));
            }
        }
        Ok(out)
    }

    /// Removes an empty bucket.
    pub fn delete_bucket(&self, name: &str) -> Result<(), ObjectError> {
        self.meta.delete_bucket(name).map_err(|e| match e {
            MetaError::NoSuchBucket => ObjectError::NoSuchBucket,
            MetaError::BucketNotEmpty => ObjectError::BucketNotEmpty,
            e => e.into(),
        })?;
        // Deleting a bucket unpairs it from its remote.
        self.remotes.forget(name);
        Ok(())
    }

    /// An object's manifest: the bucket's own, or (for a bucket that falls back to its
    /// remote) one describing the remote's object.
    pub async fn head_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectManifest, ObjectError> {
        self.head_bucket(bucket)?;
        match self.meta.object(bucket, key)? {
            Some(m) => Ok(m),
            None => self.fallback_head(bucket, key).await,
        }
    }

    /// Replaces an object's tag set (the object itself is unchanged); a mirrored bucket's
    /// remote copy gets the new set.
    pub async fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: std::collections::BTreeMap<String, String>,
    ) -> Result<(), ObjectError> {
        self.head_bucket(bucket)?;
        // A concurrent change of the object (a repair, say) makes the swap fail: read again.
        for _ in 0..8 {
            let current = self
                .meta
                .object(bucket, key)?
                .ok_or(ObjectError::NoSuchKey)?;
            let mut next = current.clone();
            next.tags = tags.clone();
            if self.meta.commit_attributes(bucket, key, &current, &next)? {
                return self.after_write(bucket, key).await;
            }
        }
        Err(ObjectError::Busy)
    }

    /// Fails early (before any byte is stored) when a conditional write cannot succeed; the
    /// commit checks again atomically.
    pub fn check_expect(
        &self,
        bucket: &str,
        key: &str,
        expect: &crate::meta::Expect,
    ) -> Result<(), ObjectError> {
        self.head_bucket(bucket)?;
        if *expect == crate::meta::Expect::Anything
            || expect.holds(self.meta.object(bucket, key)?.as_ref())
        {
            Ok(())
        } else {
            Err(ObjectError::PreconditionFailed)
        }
    }

    /// Deletes an object; deleting a missing key succeeds, as in S3. Its pieces are queued for
    /// deletion from their nodes (and the key for the bucket's remote, if it has one).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        self.head_bucket(bucket)?;
        self.meta.delete_object(bucket, key)?;
        self.after_write(bucket, key).await
    }
}
