//! What a bucket's remote (see [`crate::hybrid`]) adds to the object service:
//!
//! - **fallback**: a key the bucket does not have is looked up in the remote; if it is there,
//!   a manifest with a [`Body::Remote`] body describes it and reads stream from the remote. With
//!   `copy_in`, such a read also queues the object to be copied into the bucket (a bounded
//!   queue drained by [`ObjectService::run_copy_in`]; when it is full the copy waits for a later
//!   read).
//! - **mirror**: [`ObjectService::sync_remote`] makes the remote's copy of a key match the local
//!   state (upload or delete); the mirror worker ([`crate::mirror`]) calls it for queued keys,
//!   and a write to a bucket mirrored synchronously calls it before it is acknowledged.
//! - **mirror reads**: an object the node network cannot serve (fewer than `k` pieces of a
//!   segment reachable) is served from the mirror when the mirror holds the same version (no
//!   change of the key is still queued, and the sizes agree).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use chunker::manifest::Body;
use chunker::{ObjectManifest, WrappedKey};
use futures::{stream, StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::get::ObjectStream;
use super::list::{ListPage, ListQuery};
use super::put::PutObject;
use super::{ObjectError, ObjectInfo, ObjectService};
use crate::digest::BodyDigest;
use crate::hybrid::{MirrorMode, Remote, RemoteError, RemoteObject, UploadMeta};
use crate::meta::Expect;

/// Objects waiting to be copied in from remotes.
const COPY_IN_QUEUE: usize = 64;

/// The bounded queue of objects to copy in: `(bucket, key)`.
#[derive(Debug)]
pub(super) struct CopyInQueue {
    tx: mpsc::Sender<(String, String)>,
    rx: Mutex<Option<mpsc::Receiver<(String, String)>>>,
}

impl CopyInQueue {
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::channel(COPY_IN_QUEUE);
        CopyInQueue {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

/// A stream that must yield exactly `size` bytes: more or fewer is an error (a remote that
/// sends the wrong length is not trusted).
fn exact_length(stream: ObjectStream, size: u64) -> ObjectStream {
    let wrong = |what: String| ObjectError::from(RemoteError::Corrupt(what));
    stream::unfold(
        (stream, 0u64, false),
        move |(mut s, seen, done)| async move {
            if done {
                return None;
            }
            match s.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > size {
                        let e = wrong(format!("more than the {size} bytes announced"));
                        Some((Err(e), (s, seen, true)))
                    } else {
                        Some((Ok(chunk), (s, seen, false)))
                    }
                }
                Some(Err(e)) => Some((Err(e), (s, seen, true))),
                None if seen != size => {
                    let e = wrong(format!("{seen} of the {size} bytes announced"));
                    Some((Err(e), (s, seen, true)))
                }
                None => None,
            }
        },
    )
    .boxed()
}

/// A manifest describing a remote's object (not stored: it says where the bytes are).
/// Checks a whole object read from a remote against the ETag this gateway computed when the
/// object was written (the MD5, or for a multipart object the MD5 of its parts' MD5s): a
/// remote whose bytes differ ends the stream with an error instead of a clean end, so a client
/// never receives a complete answer with wrong bytes.
fn verified(stream: ObjectStream, manifest: &ObjectManifest) -> ObjectStream {
    /// Digests a stream part by part.
    struct Parts {
        inner: ObjectStream,
        /// Sizes of the parts still to come, next last.
        sizes: Vec<u64>,
        /// The part being read: its digest and the bytes it still lacks.
        open: Option<(BodyDigest, u64)>,
        md5s: Vec<u8>,
        done: bool,
    }
    impl Parts {
        fn next_part(&mut self) {
            self.open = self.sizes.pop().map(|n| (BodyDigest::new(&[]), n));
        }
        /// Closes every part that has all its bytes (a zero-length part has them at once).
        fn close_full(&mut self) {
            while let Some((_, 0)) = &self.open {
                if let Some((d, _)) = self.open.take() {
                    self.md5s.extend_from_slice(&d.finish().md5);
                }
                self.next_part();
            }
        }
        fn feed(&mut self, mut rest: &[u8]) -> bool {
            while !rest.is_empty() {
                self.close_full();
                let Some((digest, left)) = &mut self.open else {
                    return false; // more bytes than the parts hold
                };
                let take = (*left).min(rest.len() as u64) as usize;
                digest.update(&rest[..take]);
                *left -= take as u64;
                rest = &rest[take..];
            }
            self.close_full();
            true
        }
    }
    let wrong = |what: String| ObjectError::from(RemoteError::Corrupt(what));
    let expected = manifest.etag.trim_matches('"').to_string();
    let multipart = !manifest.parts.is_empty();
    let mut sizes: Vec<u64> = if multipart {
        manifest.parts.iter().map(|p| p.size).collect()
    } else {
        vec![manifest.size]
    };
    sizes.reverse();
    let mut parts = Parts {
        inner: stream,
        sizes,
        open: None,
        md5s: Vec::new(),
        done: false,
    };
    parts.next_part();
    parts.close_full();
    stream::unfold(parts, move |mut st| {
        let expected = expected.clone();
        async move {
            if st.done {
                return None;
            }
            match st.inner.next().await {
                Some(Ok(chunk)) => {
                    if st.feed(&chunk) {
                        Some((Ok(chunk), st))
                    } else {
                        st.done = true;
                        Some((Err(wrong("more bytes than the object holds".into())), st))
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    Some((Err(e), st))
                }
                None => {
                    st.done = true;
                    let got = if multipart {
                        let mut d = BodyDigest::new(&[]);
                        d.update(&st.md5s);
                        format!("{}-{}", d.finish().etag(), st.md5s.len() / 16)
                    } else {
                        crate::digest::hex(st.md5s.get(..16).unwrap_or(&[]))
                    };
                    if st.open.is_none() && got == expected {
                        None
                    } else {
                        let e = wrong(format!("its content hashes to ETag {got}, not {expected}"));
                        Some((Err(e), st))
                    }
                }
            }
        }
    })
    .boxed()
}

fn described(found: RemoteObject, remote_key: String) -> ObjectManifest {
    ObjectManifest {
        size: found.size,
        etag: found.etag,
        content_type: found.content_type,
        user_metadata: found.user_metadata,
        checksums: Vec::new(),
        created_ms: found.last_modified_ms,
        wrapped_key: WrappedKey::from_bytes(Vec::new()),
        parts: Vec::new(),
        body: Body::Remote { key: remote_key },
        headers: found.headers,
        tags: Default::default(),
    }
}

impl ObjectService {
    /// A manifest for `key` in the remote of `bucket`, if the bucket falls back to it and the
    /// remote has it; [`ObjectError::NoSuchKey`] otherwise. Queues a copy-in if configured.
    pub(super) async fn fallback_head(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectManifest, ObjectError> {
        let (manifest, copy_in) = self.remote_manifest(bucket, key).await?;
        if copy_in
            && self
                .copy_in
                .tx
                .try_send((bucket.to_string(), key.to_string()))
                .is_err()
        {
            tracing::debug!(bucket, key, "copy-in queue full; a later read will copy it");
        }
        Ok(manifest)
    }

    /// A manifest describing `key` in `bucket`'s remote, and whether the bucket copies such
    /// objects in; [`ObjectError::NoSuchKey`] unless the bucket falls back and the remote has it.
    async fn remote_manifest(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectManifest, bool), ObjectError> {
        let remote = self.remotes.get(bucket).await?;
        let Some(remote) = remote.filter(|r| r.config.fallback) else {
            return Err(ObjectError::NoSuchKey);
        };
        let remote_key = remote.config.remote_key(key);
        let found = remote
            .store
            .head(&remote_key)
            .await?
            .ok_or(ObjectError::NoSuchKey)?;
        Ok((described(found, remote_key), remote.config.copy_in))
    }

    /// For a bucket that falls back to a remote: the remote's page of listing `q` (its keys
    /// without the remote's prefix, nothing at or before `q.after`).
    pub(super) async fn list_remote(
        &self,
        bucket: &str,
        q: &ListQuery,
    ) -> Result<Option<ListPage>, ObjectError> {
        let remote = self.remotes.get(bucket).await?;
        let Some(remote) = remote.filter(|r| r.config.fallback) else {
            return Ok(None);
        };
        if q.max_keys == 0 {
            return Ok(Some(ListPage::default()));
        }
        let rp = &remote.config.prefix;
        let after = q.after.as_ref().map(|a| format!("{rp}{a}"));
        let listing = remote
            .store
            .list(
                &format!("{rp}{}", q.prefix),
                q.delimiter.as_deref().filter(|d| !d.is_empty()),
                after.as_deref(),
                q.max_keys,
            )
            .await?;
        let ours = |name: &str| {
            let name = name.strip_prefix(rp.as_str())?;
            let past = q.after.as_deref().is_none_or(|a| name > a);
            (past && name.starts_with(&q.prefix)).then(|| name.to_string())
        };
        let mut page = ListPage {
            truncated: listing.truncated,
            ..ListPage::default()
        };
        for (remote_key, found) in listing.objects {
            if let Some(key) = ours(&remote_key) {
                page.objects.push(ObjectInfo {
                    key,
                    manifest: described(found, remote_key),
                });
            }
        }
        page.common_prefixes = listing
            .common_prefixes
            .iter()
            .filter_map(|p| ours(p))
            .collect();
        Ok(Some(page))
    }

    /// Streams `range` of the object `remote_key` in `bucket`'s remote, checked against its
    /// length, and a whole read of an object this gateway wrote (`ours`) against its ETag.
    pub(super) async fn read_remote(
        &self,
        bucket: &str,
        remote_key: &str,
        range: Range<u64>,
        ours: Option<&ObjectManifest>,
    ) -> Result<ObjectStream, ObjectError> {
        let remote = self.remotes.get(bucket).await?.ok_or_else(|| {
            ObjectError::Remote(RemoteError::Refused(format!(
                "bucket {bucket} has no remote any more"
            )))
        })?;
        let want = range.end - range.start;
        let whole = ours.filter(|m| range.start == 0 && range.end == m.size);
        let body = remote
            .store
            .get(remote_key, range)
            .await?
            .map_err(ObjectError::from)
            .boxed();
        let body = exact_length(body, want);
        Ok(match whole {
            Some(m) => verified(body, m),
            None => body,
        })
    }

    /// For an object of `bucket` the nodes cannot serve: the same bytes from the bucket's
    /// mirror, if it holds this version (nothing queued for the key, same size).
    pub(super) async fn read_mirror(
        &self,
        bucket: &str,
        key: &str,
        manifest: &ObjectManifest,
        range: Range<u64>,
    ) -> Option<ObjectStream> {
        let remote = self.remotes.get(bucket).await.ok()??;
        if remote.config.mirror == MirrorMode::Off {
            return None;
        }
        if !matches!(self.meta.mirror_entry(bucket, key), Ok(None)) {
            tracing::info!(
                bucket,
                key,
                "unreadable from nodes; the mirror is not up to date"
            );
            return None;
        }
        let remote_key = remote.config.remote_key(key);
        match remote.store.head(&remote_key).await {
            Ok(Some(o)) if o.size == manifest.size => {}
            other => {
                tracing::info!(bucket, key, found = ?other.map(|o| o.map(|o| o.size)), "unreadable from nodes; the mirror does not have it");
                return None;
            }
        }
        let mut stream = self
            .read_remote(bucket, &remote_key, range, Some(manifest))
            .await
            .ok()?;
        let first = stream.next().await;
        match first {
            Some(Err(e)) => {
                tracing::warn!(bucket, key, error = %e, "the mirror failed too");
                None
            }
            first => {
                tracing::info!(bucket, key, "unreadable from nodes; served from the mirror");
                Some(stream::iter(first).chain(stream).boxed())
            }
        }
    }

    /// Makes `bucket`/`key`'s copy in `remote` match the local state: with mirroring, the
    /// remote holds what the bucket holds (uploaded, or deleted if the key is gone here); a
    /// tiered bucket's remote holds only its tiered objects (a stale copy of an object that was
    /// overwritten here is deleted); a fallback-only remote loses only what is deleted here.
    pub async fn sync_remote(
        &self,
        remote: &Remote,
        bucket: &str,
        key: &str,
        tags_only: bool,
    ) -> Result<(), RemoteError> {
        if key.starts_with(crate::hybrid::pieces::PIECES_PREFIX) {
            // Written before the bucket had its remote: mirroring it could overwrite a piece.
            tracing::warn!(
                bucket,
                key,
                "not mirrored: the key lies where the remote keeps parity pieces"
            );
            return Ok(());
        }
        let remote_key = remote.config.remote_key(key);
        let local = self
            .meta
            .object(bucket, key)
            .map_err(|e| RemoteError::Source(e.to_string()))?;
        match local {
            None => remote.store.delete(&remote_key).await,
            // Its bytes live in the remote.
            Some(ObjectManifest {
                body: Body::Remote { .. },
                ..
            }) => Ok(()),
            Some(m) if remote.config.mirror != MirrorMode::Off => {
                if tags_only {
                    match remote.store.put_tags(&remote_key, &m.tags).await {
                        // The remote copy is missing (never copied, or deleted there).
                        Err(RemoteError::NotFound) => {}
                        Err(RemoteError::Unsupported(e)) => {
                            tracing::warn!(bucket, key, error = %e, "the remote keeps no tags; the mirrored copy keeps its old ones");
                            return Ok(());
                        }
                        done => return done,
                    }
                }
                self.upload_to_remote(remote, bucket, key, &m).await
            }
            Some(_) if remote.config.tier.is_some() => remote.store.delete(&remote_key).await,
            Some(_) => Ok(()),
        }
    }

    /// Copies the object `m` of `bucket`/`key` (its plaintext, content type, user metadata,
    /// stored headers and tags) to `remote`.
    pub(crate) async fn upload_to_remote(
        &self,
        remote: &Remote,
        bucket: &str,
        key: &str,
        m: &ObjectManifest,
    ) -> Result<(), RemoteError> {
        let source = |e: ObjectError| RemoteError::Source(e.to_string());
        let body = self
            .read_object(bucket, m, 0..m.size)
            .await
            .map_err(source)?
            .map_err(source)
            .boxed();
        let meta = UploadMeta {
            content_type: m.content_type.clone(),
            user_metadata: m.user_metadata.clone(),
            headers: m.headers.clone(),
            tags: m.tags.clone(),
        };
        remote
            .store
            .put(&remote.config.remote_key(key), &meta, m.size, body)
            .await
    }

    /// Where new segments of `bucket` put their parity pieces instead of nodes: its remote's
    /// stand-in peer when the bucket keeps parity in the cloud.
    /// Refuses a new key of `bucket` that lies where its remote keeps parity pieces.
    pub(super) async fn check_new_key(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        if key.starts_with(crate::hybrid::pieces::PIECES_PREFIX)
            && self.remotes.get(bucket).await?.is_some()
        {
            return Err(ObjectError::Invalid(format!(
                "keys under {} are reserved in a bucket paired with a remote",
                crate::hybrid::pieces::PIECES_PREFIX
            )));
        }
        Ok(())
    }

    pub(super) async fn parity_target(
        &self,
        bucket: &str,
    ) -> Result<Option<libp2p::PeerId>, ObjectError> {
        let remote = self.remotes.get(bucket).await?;
        Ok(remote
            .filter(|r| r.config.parity)
            .map(|_| crate::hybrid::parity_peer(bucket)))
    }

    /// After a committed write or delete of `bucket`/`key`: a bucket mirrored synchronously
    /// acknowledges only once its remote matches. On failure the change stays queued (the
    /// worker retries) and the client is told the remote is unavailable.
    pub(super) async fn after_write(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        let Some(remote) = self.remotes.get(bucket).await? else {
            return Ok(());
        };
        if remote.config.mirror != MirrorMode::Sync {
            return Ok(());
        }
        let Some(entry) = self.meta.mirror_entry(bucket, key)? else {
            return Ok(());
        };
        self.sync_remote(&remote, bucket, key, entry.tags_only)
            .await?;
        self.meta.mirror_done(bucket, key, entry.seq)?;
        Ok(())
    }

    /// Copies objects that fallback reads found only in remotes into their buckets, until
    /// `cancel` fires. An object written here meanwhile is left alone.
    pub async fn run_copy_in(self: Arc<Self>, cancel: CancellationToken) {
        let rx = self
            .copy_in
            .rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut rx) = rx else { return };
        loop {
            let next = tokio::select! {
                n = rx.recv() => n,
                () = cancel.cancelled() => return,
            };
            let Some((bucket, key)) = next else { return };
            match self.copy_in(&bucket, &key).await {
                Ok(true) => tracing::info!(bucket, key, "copied in from the remote"),
                Ok(false) => {}
                Err(e) => tracing::warn!(bucket, key, error = %e, "copy-in failed"),
            }
        }
    }

    /// The tag set of the remote object `m` describes, checked against S3's rules; none if
    /// the remote keeps no tags.
    async fn remote_tags(
        &self,
        bucket: &str,
        m: &ObjectManifest,
    ) -> Result<BTreeMap<String, String>, ObjectError> {
        let (Body::Remote { key }, Some(remote)) = (&m.body, self.remotes.get(bucket).await?)
        else {
            return Ok(m.tags.clone());
        };
        match remote.store.tags(key).await {
            Ok(pairs) => super::tags::checked(pairs)
                .map_err(|e| RemoteError::Corrupt(format!("its tag set: {e}")).into()),
            Err(RemoteError::Unsupported(_)) => Ok(BTreeMap::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Copies `bucket`/`key` in from the bucket's remote; `false` if there was nothing to do.
    async fn copy_in(&self, bucket: &str, key: &str) -> Result<bool, ObjectError> {
        if self.meta.object(bucket, key)?.is_some() {
            return Ok(false);
        }
        let m = match self.remote_manifest(bucket, key).await {
            Ok((m, _)) => m,
            Err(ObjectError::NoSuchKey) => return Ok(false),
            Err(e) => return Err(e),
        };
        let tags = self.remote_tags(bucket, &m).await?;
        let body = self.read_object(bucket, &m, 0..m.size).await?;
        // A plain MD5 ETag (not a multipart one) lets the copy be checked end to end.
        let etag = m.etag.clone();
        let checkable = etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit());
        let put = PutObject {
            bucket: bucket.to_string(),
            key: key.to_string(),
            content_type: m.content_type.clone(),
            user_metadata: m.user_metadata.clone(),
            headers: m.headers.clone(),
            tags,
            checksums: Vec::new(),
            expect: Expect::Absent,
        };
        let verify = move |d: &crate::digest::Digests| {
            if checkable && !d.etag().eq_ignore_ascii_case(&etag) {
                Err(ObjectError::from(RemoteError::Corrupt(format!(
                    "the remote's bytes hash to {}, its ETag says {etag}",
                    d.etag()
                ))))
            } else {
                Ok(())
            }
        };
        match self.put_object(put, body, verify).await {
            Ok(_) => Ok(true),
            Err(ObjectError::PreconditionFailed) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chunker::manifest::PartRecord;

    fn md5_hex(data: &[u8]) -> String {
        let mut d = BodyDigest::new(&[]);
        d.update(data);
        d.finish().etag()
    }

    fn manifest(size: u64, etag: String, parts: Vec<PartRecord>) -> ObjectManifest {
        ObjectManifest {
            size,
            etag,
            content_type: None,
            user_metadata: BTreeMap::new(),
            checksums: Vec::new(),
            created_ms: 0,
            wrapped_key: WrappedKey::from_bytes(vec![1]),
            parts,
            body: Body::Remote { key: "k".into() },
            headers: BTreeMap::new(),
            tags: BTreeMap::new(),
        }
    }

    async fn read(chunks: Vec<&'static [u8]>, m: &ObjectManifest) -> Result<Vec<u8>, ObjectError> {
        let s = stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))).boxed();
        let mut out = Vec::new();
        let mut v = verified(s, m);
        while let Some(c) = v.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn whole_reads_from_a_remote_are_checked_against_the_etag() {
        let m = manifest(11, md5_hex(b"hello world"), Vec::new());
        assert_eq!(
            read(vec![b"hello", b" world"], &m).await.unwrap(),
            b"hello world"
        );
        assert!(
            read(vec![b"hello", b" worle"], &m).await.is_err(),
            "one byte changed"
        );
        let empty = manifest(0, md5_hex(b""), Vec::new());
        assert!(read(vec![], &empty).await.is_ok());
        // Multipart: the MD5 of the parts' MD5s, whatever the chunks' boundaries.
        let mut both = Vec::new();
        let mut d = BodyDigest::new(&[]);
        d.update(b"abc");
        both.extend_from_slice(&d.finish().md5);
        let mut d = BodyDigest::new(&[]);
        d.update(b"defg");
        both.extend_from_slice(&d.finish().md5);
        let parts = vec![
            PartRecord {
                number: 1,
                size: 3,
                etag: String::new(),
            },
            PartRecord {
                number: 2,
                size: 4,
                etag: String::new(),
            },
        ];
        let m = manifest(7, format!("{}-2", md5_hex(&both)), parts);
        assert_eq!(read(vec![b"ab", b"cdefg"], &m).await.unwrap(), b"abcdefg");
        assert!(read(vec![b"abcdefh"], &m).await.is_err());
        assert!(
            read(vec![b"abcdefgh"], &m).await.is_err(),
            "a byte too many"
        );
    }
}
