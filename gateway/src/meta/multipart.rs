//! Multipart uploads in the metadata: the upload records, their parts, and the atomic
//! transitions (part stored, upload completed, upload aborted) with their piece bookkeeping.

use std::collections::{BTreeMap, HashSet};

use chunker::manifest::{Checksum, ChecksumAlgorithm};
use chunker::{ObjectManifest, SegmentRecord, WrappedKey};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{
    decode, encode, object_key, placed_pieces, Expect, Garbage, Meta, MetaError, PieceRef,
    CF_PARTS, CF_UPLOADS,
};

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub created_ms: u64,
    pub content_type: Option<String>,
    pub user_metadata: BTreeMap<String, String>,
    /// The checksum algorithm the client chose at creation, if any.
    pub checksum: Option<ChecksumAlgorithm>,
    /// One data key for all parts. Every part attempt seals its segments under a stream of its
    /// own (see [`Meta::next_part_stream`]), so no two attempts share a nonce.
    pub wrapped_key: WrappedKey,
    /// The object's stored response headers and tags (see [`ObjectManifest`]).
    pub headers: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// Part attempts that have been handed a stream so far.
    pub attempts: u32,
}

/// The stream of an upload's first part attempt. Records before format 3 sealed part `n` as
/// stream `n` (at most 10,000, S3's highest part number); every stream handed out since lies
/// above all of those, so an upload that spans an upgrade never reuses one either.
pub const FIRST_ATTEMPT_STREAM: u32 = 10_001;

/// Format of upload records this build writes; format 1 lacks `headers` and `tags`, format 2
/// lacks `attempts`.
const UPLOAD_FORMAT: u8 = 3;

/// Format 1 of [`UploadRecord`].
#[derive(Deserialize)]
struct UploadRecordV1 {
    created_ms: u64,
    content_type: Option<String>,
    user_metadata: BTreeMap<String, String>,
    checksum: Option<ChecksumAlgorithm>,
    wrapped_key: WrappedKey,
}

/// Format 2 of [`UploadRecord`]: format 1's fields, then the two maps (postcard lays a nested
/// struct's fields out in place, so this reads the flat record).
#[derive(Deserialize)]
struct UploadRecordV2 {
    base: UploadRecordV1,
    headers: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
}

impl UploadRecordV1 {
    fn upgrade(
        self,
        headers: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> UploadRecord {
        UploadRecord {
            created_ms: self.created_ms,
            content_type: self.content_type,
            user_metadata: self.user_metadata,
            checksum: self.checksum,
            wrapped_key: self.wrapped_key,
            headers,
            tags,
            attempts: 0,
        }
    }
}

fn encode_upload(record: &UploadRecord) -> Vec<u8> {
    match postcard::to_extend(record, vec![UPLOAD_FORMAT]) {
        Ok(v) => v,
        Err(e) => unreachable!("serializing to a Vec can't fail: {e}"),
    }
}

fn decode_upload(bytes: &[u8]) -> Result<UploadRecord, MetaError> {
    match bytes.split_first() {
        Some((&UPLOAD_FORMAT, body)) => {
            let mut v = vec![super::RECORD_FORMAT];
            v.extend_from_slice(body);
            decode("upload", &v)
        }
        Some((2, body)) => {
            let mut v = vec![super::RECORD_FORMAT];
            v.extend_from_slice(body);
            let old: UploadRecordV2 = decode("upload", &v)?;
            Ok(old.base.upgrade(old.headers, old.tags))
        }
        Some((1, _)) => {
            let old: UploadRecordV1 = decode("upload", bytes)?;
            Ok(old.upgrade(BTreeMap::new(), BTreeMap::new()))
        }
        _ => decode("upload", bytes),
    }
}

/// An uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPart {
    pub number: u32,
    pub size: u64,
    pub md5: [u8; 16],
    pub checksums: Vec<Checksum>,
    pub created_ms: u64,
    pub segments: Vec<SegmentRecord>,
}

impl StoredPart {
    fn pieces(&self) -> impl Iterator<Item = PieceRef> + '_ {
        self.segments.iter().flat_map(|s| {
            s.pieces
                .iter()
                .filter_map(|p| p.node.clone().map(|node| PieceRef { node, piece: p.id }))
        })
    }
}

fn upload_key(bucket: &str, key: &str, id: &[u8; 16]) -> Vec<u8> {
    let mut k = object_key(bucket, key);
    k.push(0);
    k.extend_from_slice(id);
    k
}

fn part_key(id: &[u8; 16], number: u32) -> Vec<u8> {
    let mut k = id.to_vec();
    k.extend_from_slice(&number.to_be_bytes());
    k
}

/// Where a listing of multipart uploads starts (uploads are ordered by key, then id).
#[derive(Debug, Clone, Copy)]
pub enum UploadsFrom<'a> {
    /// At the prefix.
    Start,
    /// Past every upload of this key.
    AfterKey(&'a str),
    /// Past this upload.
    AfterUpload(&'a str, &'a [u8; 16]),
    /// At the first key not below these bytes (the successor of a common prefix, which need
    /// not be UTF-8).
    AtKey(&'a [u8]),
}

impl Meta {
    /// Records a new upload. [`MetaError::NoSuchBucket`] if the bucket does not exist.
    pub fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        id: &[u8; 16],
        record: &UploadRecord,
    ) -> Result<(), MetaError> {
        let _guard = self.lock();
        if self.bucket(bucket)?.is_none() {
            return Err(MetaError::NoSuchBucket);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_UPLOADS),
            upload_key(bucket, key, id),
            encode_upload(record),
        );
        self.write(batch)
    }

    /// An upload in progress.
    pub fn upload(
        &self,
        bucket: &str,
        key: &str,
        id: &[u8; 16],
    ) -> Result<Option<UploadRecord>, MetaError> {
        self.db
            .get_cf(self.cf(CF_UPLOADS), upload_key(bucket, key, id))?
            .map(|v| decode_upload(&v))
            .transpose()
    }

    /// Hands out the stream a new part attempt seals its segments under: a number no earlier
    /// attempt of this upload was given, durable before the attempt encrypts anything (so not
    /// even a crash and a retry can reuse one).
    pub fn next_part_stream(
        &self,
        bucket: &str,
        key: &str,
        id: &[u8; 16],
    ) -> Result<u32, MetaError> {
        let _guard = self.lock();
        let mut record = self
            .upload(bucket, key, id)?
            .ok_or(MetaError::NoSuchUpload)?;
        let stream = FIRST_ATTEMPT_STREAM
            .checked_add(record.attempts)
            .ok_or(MetaError::AttemptsExhausted(record.attempts))?;
        record.attempts += 1;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_UPLOADS),
            upload_key(bucket, key, id),
            encode_upload(&record),
        );
        self.write(batch)?;
        Ok(stream)
    }

    /// Stores a part (replacing an earlier upload of the same number), settling the pending
    /// pieces of the request that sent it, in one write.
    pub fn commit_part(
        &self,
        bucket: &str,
        key: &str,
        id: &[u8; 16],
        part: &StoredPart,
        pending: &[u8; 16],
    ) -> Result<(), MetaError> {
        let _guard = self.lock();
        if self.upload(bucket, key, id)?.is_none() {
            return Err(MetaError::NoSuchUpload);
        }
        let used: HashSet<PieceRef> = part.pieces().collect();
        let mut batch = WriteBatch::default();
        self.settle_pending(&mut batch, pending, &used)?;
        let pk = part_key(id, part.number);
        if let Some(old) = self.db.get_cf(self.cf(CF_PARTS), &pk)? {
            let old: StoredPart = decode("part", &old)?;
            for p in old.pieces().filter(|p| !used.contains(p)) {
                self.queue_gc(&mut batch, &p, Garbage::Dropped);
            }
        }
        self.unqueue_gc(&mut batch, &used);
        batch.put_cf(self.cf(CF_PARTS), pk, encode(part));
        self.write(batch)
    }

    /// The parts of an upload, by number.
    pub fn parts(&self, id: &[u8; 16]) -> Result<Vec<StoredPart>, MetaError> {
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_PARTS),
            IteratorMode::From(id, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(id) {
                break;
            }
            out.push(decode("part", &v)?);
        }
        Ok(out)
    }

    /// Ends an upload by committing `manifest` (built from `parts`, as read before) as the
    /// object, queueing the pieces of unused parts and of the replaced version, in one write.
    /// [`MetaError::PartReplaced`] if one of `parts` is no longer what is stored (an UploadPart
    /// of that number committed meanwhile and queued its pieces for deletion).
    pub fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        id: &[u8; 16],
        parts: &[&StoredPart],
        manifest: &ObjectManifest,
        expect: &Expect,
    ) -> Result<(), MetaError> {
        let _guard = self.lock();
        if self.upload(bucket, key, id)?.is_none() {
            return Err(MetaError::NoSuchUpload);
        }
        for part in parts {
            let stored = self
                .db
                .get_cf(self.cf(CF_PARTS), part_key(id, part.number))?;
            let same = match stored {
                Some(v) => decode::<StoredPart>("part", &v)? == **part,
                None => false,
            };
            if !same {
                return Err(MetaError::PartReplaced {
                    number: part.number,
                });
            }
        }
        let used: HashSet<PieceRef> = placed_pieces(manifest).into_iter().collect();
        let mut batch = WriteBatch::default();
        self.replace_object(&mut batch, bucket, key, manifest, &used, expect)?;
        self.queue_mirror(&mut batch, bucket, key, super::Queued::Write)?;
        self.drop_upload(&mut batch, bucket, key, id, &used)?;
        self.write(batch)
    }

    /// Aborts an upload: its parts' pieces are queued for deletion. `false` if there was none.
    pub fn abort_upload(&self, bucket: &str, key: &str, id: &[u8; 16]) -> Result<bool, MetaError> {
        let _guard = self.lock();
        if self.upload(bucket, key, id)?.is_none() {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        self.drop_upload(&mut batch, bucket, key, id, &HashSet::new())?;
        self.write(batch)?;
        Ok(true)
    }

    fn drop_upload(
        &self,
        batch: &mut WriteBatch,
        bucket: &str,
        key: &str,
        id: &[u8; 16],
        keep: &HashSet<PieceRef>,
    ) -> Result<(), MetaError> {
        for part in self.parts(id)? {
            for p in part.pieces().filter(|p| !keep.contains(p)) {
                self.queue_gc(batch, &p, Garbage::Unseen);
            }
            batch.delete_cf(self.cf(CF_PARTS), part_key(id, part.number));
        }
        batch.delete_cf(self.cf(CF_UPLOADS), upload_key(bucket, key, id));
        Ok(())
    }

    /// Uploads in `bucket` whose keys start with `prefix`, in key order (then creation order),
    /// starting after `after` (a key and, optionally, an upload id of that key), at most `limit`.
    pub fn uploads(
        &self,
        bucket: &str,
        prefix: &str,
        from: UploadsFrom<'_>,
        limit: usize,
    ) -> Result<Vec<(String, [u8; 16], UploadRecord)>, MetaError> {
        let base = object_key(bucket, "");
        let full_prefix = object_key(bucket, prefix);
        let start = match from {
            UploadsFrom::Start => full_prefix.clone(),
            UploadsFrom::AfterKey(key) => {
                // Past every upload of `key`: its entries are `key 0x00 id`.
                let mut k = object_key(bucket, key);
                k.push(1);
                k
            }
            UploadsFrom::AfterUpload(key, id) => {
                let mut k = upload_key(bucket, key, id);
                k.push(0);
                k
            }
            UploadsFrom::AtKey(key) => {
                let mut k = base.clone();
                k.extend_from_slice(key);
                k
            }
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_UPLOADS),
            IteratorMode::From(&start.max(full_prefix.clone()), Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&full_prefix) || out.len() >= limit {
                break;
            }
            let Some(rest) = k.get(base.len()..) else {
                continue;
            };
            let Some((name, id)) = rest
                .len()
                .checked_sub(17)
                .map(|cut| (&rest[..cut], &rest[cut + 1..]))
            else {
                continue;
            };
            let (Ok(name), Ok(id)) = (std::str::from_utf8(name), <[u8; 16]>::try_from(id)) else {
                continue;
            };
            out.push((name.to_string(), id, decode_upload(&v)?));
        }
        Ok(out)
    }

    /// Every upload older than `before_ms`, as (bucket, key, id): candidates for cleanup.
    pub fn stale_uploads(
        &self,
        before_ms: u64,
    ) -> Result<Vec<(String, String, [u8; 16])>, MetaError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_UPLOADS), IteratorMode::Start)
        {
            let (k, v) = item?;
            let record: UploadRecord = decode_upload(&v)?;
            if record.created_ms >= before_ms || k.len() < 18 {
                continue;
            }
            let (head, id) = k.split_at(k.len() - 16);
            let head = &head[..head.len() - 1];
            let Some(zero) = head.iter().position(|&b| b == 0) else {
                continue;
            };
            let (Ok(bucket), Ok(key), Ok(id)) = (
                std::str::from_utf8(&head[..zero]),
                std::str::from_utf8(&head[zero + 1..]),
                <[u8; 16]>::try_from(id),
            ) else {
                continue;
            };
            out.push((bucket.to_string(), key.to_string(), id));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_upload_records_still_decode() {
        let master = chunker::MasterKey::from_bytes(&[3; 32]).unwrap();
        let record = UploadRecord {
            created_ms: 7,
            content_type: Some("text/plain".into()),
            user_metadata: BTreeMap::from([("a".into(), "b".into())]),
            checksum: Some(ChecksumAlgorithm::Crc32c),
            wrapped_key: master.wrap(&chunker::DataKey::generate().unwrap()).unwrap(),
            headers: BTreeMap::new(),
            tags: BTreeMap::new(),
            attempts: 0,
        };
        let v3 = encode_upload(&record);
        assert_eq!(v3[0], UPLOAD_FORMAT);
        assert_eq!(decode_upload(&v3).unwrap(), record);
        // Format 2: the same fields without `attempts` (here 0, one byte) at the end.
        assert_eq!(v3[v3.len() - 1], 0);
        let mut v2 = vec![2];
        v2.extend_from_slice(&v3[1..v3.len() - 1]);
        assert_eq!(decode_upload(&v2).unwrap(), record);
        // Format 1: without the two (here empty) maps either.
        assert_eq!(&v2[v2.len() - 2..], &[0, 0]);
        let mut v1 = vec![1];
        v1.extend_from_slice(&v2[1..v2.len() - 2]);
        assert_eq!(decode_upload(&v1).unwrap(), record);
        assert!(decode_upload(&[9, 1, 2]).is_err());
        let attempted = UploadRecord {
            attempts: 7,
            ..record
        };
        assert_eq!(
            decode_upload(&encode_upload(&attempted)).unwrap(),
            attempted
        );
    }
}
