//! Multipart uploads. Each part streams through the same data path as an object and is
//! committed on its own; completing the upload stitches the chosen parts' segments into one
//! manifest in one metadata write. All parts share the upload's data key, and every part
//! *attempt* (a retry or re-upload of a number, a copy) seals under a stream the metadata hands
//! out once ([`crate::meta::Meta::next_part_stream`]): no two attempts share a nonce, and their
//! pieces differ, so the cleanup of a failed attempt can never name a committed part's pieces.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use chunker::manifest::{Body, Checksum, ChecksumAlgorithm, PartRecord};
use chunker::ObjectManifest;
use futures::Stream;

use super::put::{BodySpec, UploadGuard};
use super::{ObjectError, ObjectService};
use crate::digest::{hex, BodyDigest, Digests};
use crate::meta::{Expect, MetaError, StoredPart, UploadRecord, UploadsFrom};
use crate::time::now_ms;

/// Smallest part (except the last) S3 accepts in a completed upload.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// What describes the object a multipart upload will become.
#[derive(Debug, Clone, Default)]
pub struct CreateUpload {
    pub bucket: String,
    pub key: String,
    pub content_type: Option<String>,
    pub user_metadata: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub checksum: Option<ChecksumAlgorithm>,
}

/// A part as listed or just uploaded.
#[derive(Debug, Clone)]
pub struct PartInfo {
    pub number: u32,
    pub size: u64,
    /// The part's MD5 in hex (its ETag).
    pub etag: String,
    pub checksums: Vec<Checksum>,
    pub created_ms: u64,
}

impl From<&StoredPart> for PartInfo {
    fn from(p: &StoredPart) -> Self {
        PartInfo {
            number: p.number,
            size: p.size,
            etag: hex(&p.md5),
            checksums: p.checksums.clone(),
            created_ms: p.created_ms,
        }
    }
}

/// A part named in a complete request.
#[derive(Debug, Clone)]
pub struct ChosenPart {
    pub number: u32,
    /// The ETag the client got for it (quotes optional).
    pub etag: String,
    /// Checksums the client states for it (raw bytes).
    pub checksums: Vec<(ChecksumAlgorithm, Vec<u8>)>,
}

/// Where the next batch of an uploads listing starts.
enum Resume {
    Start,
    AfterKey(String),
    AfterUpload(String, [u8; 16]),
    /// At the successor of a common prefix (`None`: nothing can follow it).
    At(Option<Vec<u8>>),
}

/// What [`ObjectService::list_uploads`] is asked for.
#[derive(Debug, Clone)]
pub struct UploadsQuery<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub key_marker: Option<&'a str>,
    pub upload_id_marker: Option<&'a str>,
    pub max: usize,
}

/// One page of [`ObjectService::list_uploads`].
#[derive(Debug, Default)]
pub struct UploadsPage {
    pub uploads: Vec<UploadInfo>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// The last entry (an upload's key, or a common prefix) and the last upload's id (`None`
    /// if the last entry is a common prefix).
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

/// An upload in progress, as listed.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub key: String,
    pub upload_id: String,
    pub created_ms: u64,
    pub checksum: Option<ChecksumAlgorithm>,
}

/// Upload ids are 32 hex digits: 8 bytes of creation time (so a key's uploads list in creation
/// order) and 8 random bytes.
pub fn parse_upload_id(s: &str) -> Result<[u8; 16], ObjectError> {
    crate::digest::unhex(s)
        .and_then(|b| b.try_into().ok())
        .ok_or(ObjectError::NoSuchUpload)
}

fn meta_err(e: MetaError) -> ObjectError {
    match e {
        MetaError::NoSuchBucket => ObjectError::NoSuchBucket,
        MetaError::NoSuchUpload => ObjectError::NoSuchUpload,
        MetaError::PreconditionFailed => ObjectError::PreconditionFailed,
        MetaError::PartReplaced { number } => ObjectError::InvalidPart(format!(
            "part {number} was uploaded again while the upload was completing; complete it again"
        )),
        e => ObjectError::Meta(e),
    }
}

impl ObjectService {
    fn upload_record(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<([u8; 16], UploadRecord), ObjectError> {
        self.head_bucket(bucket)?;
        let id = parse_upload_id(upload_id)?;
        let record = self
            .meta
            .upload(bucket, key, &id)?
            .ok_or(ObjectError::NoSuchUpload)?;
        Ok((id, record))
    }

    /// Starts an upload; returns its id.
    pub async fn create_upload(&self, req: CreateUpload) -> Result<String, ObjectError> {
        self.head_bucket(&req.bucket)?;
        self.check_new_key(&req.bucket, &req.key).await?;
        let random = super::put::random_upload_id()?;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&now_ms().to_be_bytes());
        id[8..].copy_from_slice(&random[..8]);
        let record = UploadRecord {
            created_ms: now_ms(),
            content_type: req.content_type,
            user_metadata: req.user_metadata,
            checksum: req.checksum,
            wrapped_key: self.master.wrap(&chunker::DataKey::generate()?)?,
            headers: req.headers,
            tags: req.tags,
            attempts: 0,
        };
        self.meta
            .create_upload(&req.bucket, &req.key, &id, &record)
            .map_err(meta_err)?;
        Ok(hex(&id))
    }

    /// Stores one part from `body`. `verify` may refuse the body once it is read (as for
    /// [`ObjectService::put_object`]); a part replaces an earlier one with the same number.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part<S, E>(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        checksums: &[ChecksumAlgorithm],
        body: S,
        verify: impl FnOnce(&Digests) -> Result<(), ObjectError> + Send,
    ) -> Result<PartInfo, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(ObjectError::Invalid(format!(
                "part number {number} is outside 1 ..= {MAX_PART_NUMBER}"
            )));
        }
        let (id, record) = self.upload_record(bucket, key, upload_id)?;
        let data_key = self.master.unwrap(&record.wrapped_key)?;
        let mut algorithms = checksums.to_vec();
        algorithms.extend(record.checksum);
        let stream = self
            .meta
            .next_part_stream(bucket, key, &id)
            .map_err(meta_err)?;
        let mut guard = UploadGuard::new(self.meta.clone())?;
        let spec = BodySpec {
            stream,
            allow_inline: false,
            checksums: &algorithms,
            parity_to: self.parity_target(bucket).await?,
        };
        let (body, digests) = self.store_body(&guard.id, spec, data_key, body).await?;
        verify(&digests)?;
        let Body::Segments(segments) = body else {
            return Err(ObjectError::Task("a part came back inline".into()));
        };
        let part = StoredPart {
            number,
            size: digests.size,
            md5: digests.md5,
            checksums: digests.checksums,
            created_ms: now_ms(),
            segments,
        };
        self.meta
            .commit_part(bucket, key, &id, &part, &guard.id)
            .map_err(meta_err)?;
        guard.committed = true;
        Ok(PartInfo::from(&part))
    }

    /// Completes an upload from `chosen` parts (ascending numbers, each matching its ETag and
    /// any stated checksum, all but the last at least 5 MiB) and makes the object visible.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        chosen: &[ChosenPart],
        expect: &Expect,
    ) -> Result<ObjectManifest, ObjectError> {
        let (id, record) = self.upload_record(bucket, key, upload_id)?;
        self.check_expect(bucket, key, expect)?;
        if chosen.is_empty() {
            return Err(ObjectError::Invalid(
                "You must specify at least one part".into(),
            ));
        }
        if chosen.windows(2).any(|w| w[0].number >= w[1].number) {
            return Err(ObjectError::InvalidPartOrder);
        }
        let stored: HashMap<u32, StoredPart> = self
            .meta
            .parts(&id)?
            .into_iter()
            .map(|p| (p.number, p))
            .collect();
        let mut parts = Vec::with_capacity(chosen.len());
        for c in chosen {
            let Some(p) = stored.get(&c.number) else {
                return Err(ObjectError::InvalidPart(format!(
                    "part {} was not uploaded",
                    c.number
                )));
            };
            if c.etag.trim_matches('"') != hex(&p.md5) {
                return Err(ObjectError::InvalidPart(format!(
                    "part {}'s ETag does not match",
                    c.number
                )));
            }
            for (algorithm, value) in &c.checksums {
                let have = p.checksums.iter().find(|s| s.algorithm == *algorithm);
                if have.map(|s| &s.value) != Some(value) {
                    return Err(ObjectError::InvalidPart(format!(
                        "part {}'s {algorithm:?} checksum does not match",
                        c.number
                    )));
                }
            }
            parts.push(p);
        }
        // Sizes are judged once every named part is known to exist, as S3 does.
        let last = parts.len() - 1;
        if let Some(p) = parts[..last].iter().find(|p| p.size < MIN_PART_SIZE) {
            return Err(ObjectError::EntityTooSmall {
                part: p.number,
                size: p.size,
            });
        }

        if parts.iter().map(|p| p.size).sum::<u64>() > super::put::MAX_OBJECT {
            return Err(ObjectError::EntityTooLarge {
                limit: super::put::MAX_OBJECT,
            });
        }
        let mut md5s = Vec::with_capacity(16 * parts.len());
        for p in &parts {
            md5s.extend_from_slice(&p.md5);
        }
        let mut etag_digest = BodyDigest::new(&[]);
        etag_digest.update(&md5s);
        let etag = format!("{}-{}", etag_digest.finish().etag(), parts.len());
        let manifest = ObjectManifest {
            size: parts.iter().map(|p| p.size).sum(),
            etag,
            content_type: record.content_type,
            user_metadata: record.user_metadata,
            checksums: multipart_checksums(record.checksum, &parts),
            created_ms: now_ms(),
            wrapped_key: record.wrapped_key,
            parts: parts
                .iter()
                .map(|p| PartRecord {
                    number: p.number,
                    size: p.size,
                    etag: hex(&p.md5),
                })
                .collect(),
            body: Body::Segments(parts.iter().flat_map(|p| p.segments.clone()).collect()),
            headers: record.headers,
            tags: record.tags,
        };
        manifest
            .validate()
            .map_err(|e| ObjectError::Task(format!("stitched manifest is invalid: {e}")))?;
        self.meta
            .complete_upload(bucket, key, &id, &parts, &manifest, expect)
            .map_err(meta_err)?;
        self.after_write(bucket, key).await?;
        Ok(manifest)
    }

    /// Aborts an upload, deleting its parts.
    pub fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        self.head_bucket(bucket)?;
        let id = parse_upload_id(upload_id)?;
        if self.meta.abort_upload(bucket, key, &id)? {
            Ok(())
        } else {
            Err(ObjectError::NoSuchUpload)
        }
    }

    /// Parts of an upload numbered above `after`, at most `max`; `true` if more follow.
    pub fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartInfo>, bool), ObjectError> {
        let (id, _) = self.upload_record(bucket, key, upload_id)?;
        let mut parts: Vec<PartInfo> = self
            .meta
            .parts(&id)?
            .iter()
            .filter(|p| p.number > after)
            .map(PartInfo::from)
            .collect();
        let more = parts.len() > max;
        parts.truncate(max);
        Ok((parts, more))
    }

    /// Uploads in progress under `prefix`, after a key (and upload id) marker, with keys that
    /// hold `delimiter` after the prefix rolled up into common prefixes (each counts as one
    /// entry against `max`), as S3 lists them.
    pub fn list_uploads(
        &self,
        bucket: &str,
        q: &UploadsQuery<'_>,
    ) -> Result<UploadsPage, ObjectError> {
        self.head_bucket(bucket)?;
        let id_marker = match q.upload_id_marker {
            Some(m) if q.key_marker.is_some() => Some(parse_upload_id(m)?),
            _ => None,
        };
        let delimiter = q.delimiter.filter(|d| !d.is_empty());
        // The common prefix `key` rolls up into, if any.
        let rolled = |key: &str| -> Option<String> {
            let d = delimiter?;
            let rest = key.get(q.prefix.len()..)?;
            rest.find(d)
                .map(|pos| key[..q.prefix.len() + pos + d.len()].to_string())
        };
        let mut page = UploadsPage::default();
        if q.max == 0 {
            return Ok(page);
        }
        // A key marker that is a common prefix resumes past everything under it.
        let mut pos = match (q.key_marker, id_marker) {
            (Some(k), Some(id)) => Resume::AfterUpload(k.to_string(), id),
            (Some(k), None) if rolled(k).as_deref() == Some(k) => {
                Resume::At(crate::meta::prefix_successor(k.as_bytes()))
            }
            (Some(k), None) => Resume::AfterKey(k.to_string()),
            (None, _) => Resume::Start,
        };
        let mut entries = 0usize;
        loop {
            let from = match &pos {
                Resume::Start => UploadsFrom::Start,
                Resume::AfterKey(k) => UploadsFrom::AfterKey(k),
                Resume::AfterUpload(k, id) => UploadsFrom::AfterUpload(k, id),
                Resume::At(Some(at)) => UploadsFrom::AtKey(at),
                // Past an all-0xff prefix: nothing can follow.
                Resume::At(None) => return Ok(page),
            };
            let want = q.max - entries + 1;
            let found = self.meta.uploads(bucket, q.prefix, from, want)?;
            let exhausted = found.len() < want;
            let mut next = None;
            for (key, id, record) in found {
                if entries == q.max {
                    page.truncated = true;
                    return Ok(page);
                }
                entries += 1;
                if let Some(cp) = rolled(&key) {
                    page.next_key_marker = Some(cp.clone());
                    page.next_upload_id_marker = None;
                    // Everything else under it rolls into the same prefix: seek past it.
                    next = Some(Resume::At(crate::meta::prefix_successor(cp.as_bytes())));
                    page.common_prefixes.push(cp);
                    break;
                }
                page.next_key_marker = Some(key.clone());
                page.next_upload_id_marker = Some(hex(&id));
                page.uploads.push(UploadInfo {
                    key: key.clone(),
                    upload_id: hex(&id),
                    created_ms: record.created_ms,
                    checksum: record.checksum,
                });
                next = Some(Resume::AfterUpload(key, id));
            }
            match next {
                Some(n @ Resume::At(_)) => pos = n,
                Some(n) if !exhausted => pos = n,
                _ => return Ok(page),
            }
        }
    }
}

/// A multipart object's checksum, from its parts' checksums, as S3 gives it: for CRC-64/NVME
/// the full-object CRC (the parts' CRCs combined, as if the object had been uploaded whole);
/// for the others the composite checksum, the checksum of the parts' checksums laid end to end
/// (shown as `value-N`). Only for the upload's algorithm, when every part has it.
fn multipart_checksums(
    algorithm: Option<ChecksumAlgorithm>,
    parts: &[&StoredPart],
) -> Vec<Checksum> {
    let Some(algorithm) = algorithm else {
        return Vec::new();
    };
    let mut of_parts = Vec::with_capacity(parts.len());
    for p in parts {
        match p.checksums.iter().find(|c| c.algorithm == algorithm) {
            Some(c) => of_parts.push((&c.value, p.size)),
            None => return Vec::new(),
        }
    }
    if algorithm == ChecksumAlgorithm::Crc64Nvme {
        let mut whole: Option<u64> = None;
        for (value, size) in of_parts {
            let Ok(bytes) = <[u8; 8]>::try_from(value.as_slice()) else {
                return Vec::new();
            };
            let crc = u64::from_be_bytes(bytes);
            whole = Some(match whole {
                None => crc,
                Some(w) => crate::digest::crc64_nvme_combine(w, crc, size),
            });
        }
        return whole
            .map(|w| Checksum {
                algorithm,
                composite: false,
                value: w.to_be_bytes().to_vec(),
            })
            .into_iter()
            .collect();
    }
    let mut digest = BodyDigest::new(&[algorithm]);
    for (value, _) in of_parts {
        digest.update(value);
    }
    digest
        .finish()
        .checksums
        .into_iter()
        .map(|c| Checksum {
            composite: true,
            ..c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_round_trip_and_garbage_is_no_such_upload() {
        let id = [0xab; 16];
        assert_eq!(parse_upload_id(&hex(&id)).unwrap(), id);
        for bad in [
            "",
            "xyz",
            &"g".repeat(32),
            &"a".repeat(31),
            "é".repeat(16).as_str(),
        ] {
            assert!(
                matches!(parse_upload_id(bad), Err(ObjectError::NoSuchUpload)),
                "{bad}"
            );
        }
    }
}
