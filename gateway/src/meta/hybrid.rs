//! The tables behind hybrid buckets (see [`crate::hybrid`] and [`crate::mirror`]).
//!
//! - `remotes`: bucket → [`RemoteRecord`]: the bucket's remote (its configuration is opaque
//!   here) and which changes it wants to hear of.
//! - `mirror`: `bucket 0x00 key` → [`MirrorEntry`]: keys whose remote copy may differ from the
//!   local object. Written in the same batch as the commit or delete that made them differ, so
//!   a crash cannot lose one; removed once the worker has made the remote match the local
//!   state, and only if no newer change was queued meanwhile (the entry's `seq`).

use std::sync::atomic::{AtomicU64, Ordering};

use chunker::ObjectManifest;
use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{decode, encode, object_key, prefix_successor, Meta, MetaError};

pub(super) const CF_REMOTES: &str = "remotes";
pub(super) const CF_MIRROR: &str = "mirror";

/// A bucket's remote, as the metadata keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRecord {
    /// Queue commits (mirroring).
    pub queue_writes: bool,
    /// Queue deletes (mirroring, or a fallback whose remote copies must go when deleted here).
    pub queue_deletes: bool,
    /// The configuration, in [`crate::hybrid`]'s own (versioned) encoding.
    pub config: Vec<u8>,
}

/// A key waiting for its remote copy to be brought up to date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorEntry {
    /// Changes with every queued change of the key.
    pub seq: u64,
    /// When the remote copy first fell behind.
    pub queued_ms: u64,
    /// Failed tries so far.
    pub attempts: u32,
    /// Not before this time.
    pub next_ms: u64,
    pub last_error: String,
    /// Every change queued since the remote copy was last brought up to date changed only the
    /// object's tags: sending the tag set is enough.
    pub tags_only: bool,
}

/// A [`MirrorEntry`] as written before entries knew `tags_only` (read as a full change).
#[derive(Deserialize)]
struct MirrorEntryV1 {
    seq: u64,
    queued_ms: u64,
    attempts: u32,
    next_ms: u64,
    last_error: String,
}

fn decode_entry(bytes: &[u8]) -> Result<MirrorEntry, MetaError> {
    decode("mirror entry", bytes).or_else(|e| {
        let Ok(old) = decode::<MirrorEntryV1>("mirror entry", bytes) else {
            return Err(e);
        };
        Ok(MirrorEntry {
            seq: old.seq,
            queued_ms: old.queued_ms,
            attempts: old.attempts,
            next_ms: old.next_ms,
            last_error: old.last_error,
            tags_only: false,
        })
    })
}

/// What a change did to a key, as far as its remote copy is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queued {
    /// New bytes or attributes.
    Write,
    Delete,
    /// A new tag set, nothing else.
    Tags,
}

/// A queued key with its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorItem {
    pub bucket: String,
    pub key: String,
    pub entry: MirrorEntry,
}

/// The mirror queue of one bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorBacklog {
    pub depth: u64,
    /// When the oldest queued change was made (`None`: nothing queued).
    pub oldest_ms: Option<u64>,
    /// Entries that failed at least once.
    pub failing: u64,
}

/// Unique sequence numbers across restarts: the clock in µs at open, counted up.
static SEQ: AtomicU64 = AtomicU64::new(0);

fn next_seq() -> u64 {
    let floor = crate::time::now_ms().saturating_mul(1000);
    let _ = SEQ.fetch_max(floor, Ordering::Relaxed);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

fn split_object_key(k: &[u8]) -> Option<(String, String)> {
    let split = k.iter().position(|&b| b == 0)?;
    Some((
        std::str::from_utf8(&k[..split]).ok()?.to_string(),
        std::str::from_utf8(&k[split + 1..]).ok()?.to_string(),
    ))
}

impl Meta {
    /// Pairs `bucket` with a remote. With `backfill`, every object now in the bucket is queued
    /// (in the same write). [`MetaError::NoSuchBucket`] if the bucket does not exist.
    pub fn set_remote(
        &self,
        bucket: &str,
        record: &RemoteRecord,
        backfill: bool,
    ) -> Result<(), MetaError> {
        let _guard = self.lock();
        if self.bucket(bucket)?.is_none() {
            return Err(MetaError::NoSuchBucket);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_REMOTES), bucket, encode(record));
        if backfill {
            let prefix = object_key(bucket, "");
            let it = self.db.iterator_cf(
                self.cf(super::CF_OBJECTS),
                IteratorMode::From(&prefix, Direction::Forward),
            );
            for item in it {
                let (k, _) = item?;
                if !k.starts_with(&prefix) {
                    break;
                }
                self.queue_mirror_key(&mut batch, &k, false)?;
            }
        }
        self.write(batch)
    }

    /// Unpairs `bucket` and drops its queued mirror work; `false` if it had no remote.
    pub fn remove_remote(&self, bucket: &str) -> Result<bool, MetaError> {
        let _guard = self.lock();
        if self.remote(bucket)?.is_none() {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        self.unpair(&mut batch, bucket);
        self.write(batch)?;
        Ok(true)
    }

    /// Adds to `batch`: forget `bucket`'s remote and mirror queue.
    pub(super) fn unpair(&self, batch: &mut WriteBatch, bucket: &str) {
        batch.delete_cf(self.cf(CF_REMOTES), bucket);
        let from = object_key(bucket, "");
        if let Some(to) = prefix_successor(&from) {
            batch.delete_range_cf(self.cf(CF_MIRROR), from, to);
        }
    }

    /// `bucket`'s remote.
    pub fn remote(&self, bucket: &str) -> Result<Option<RemoteRecord>, MetaError> {
        self.db
            .get_cf(self.cf(CF_REMOTES), bucket)?
            .map(|v| decode("remote", &v))
            .transpose()
    }

    /// Every bucket with a remote.
    pub fn remote_buckets(&self) -> Result<Vec<String>, MetaError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_REMOTES), IteratorMode::Start)
        {
            let (k, _) = item?;
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }

    /// Adds to `batch` (under the write lock): queue `bucket`/`key` for the mirror if the
    /// bucket's remote wants to hear of this kind of change.
    pub(super) fn queue_mirror(
        &self,
        batch: &mut WriteBatch,
        bucket: &str,
        key: &str,
        change: Queued,
    ) -> Result<(), MetaError> {
        let Some(remote) = self.remote(bucket)? else {
            return Ok(());
        };
        let wanted = match change {
            Queued::Delete => remote.queue_deletes,
            Queued::Write | Queued::Tags => remote.queue_writes,
        };
        if wanted {
            self.queue_mirror_key(batch, &object_key(bucket, key), change == Queued::Tags)?;
        }
        Ok(())
    }

    /// Adds to `batch`: `k`'s entry, merged with the one already queued (which keeps its
    /// age, and makes the entry a full change unless both changed only tags).
    fn queue_mirror_key(
        &self,
        batch: &mut WriteBatch,
        k: &[u8],
        tags_only: bool,
    ) -> Result<(), MetaError> {
        let now = crate::time::now_ms();
        let queued = self
            .db
            .get_cf(self.cf(CF_MIRROR), k)?
            .map(|v| decode_entry(&v).ok());
        let (queued_ms, tags_only) = match queued {
            None => (now, tags_only),
            Some(Some(e)) => (e.queued_ms, e.tags_only && tags_only),
            Some(None) => (now, false),
        };
        let entry = MirrorEntry {
            seq: next_seq(),
            queued_ms,
            attempts: 0,
            next_ms: 0,
            last_error: String::new(),
            tags_only,
        };
        batch.put_cf(self.cf(CF_MIRROR), k, encode(&entry));
        Ok(())
    }

    /// Up to `limit` entries due at `now_ms`, in key order from `from` (a bucket ‖ key to
    /// resume after, exclusive), skipping the buckets in `skip`.
    pub fn mirror_due(
        &self,
        now_ms: u64,
        after: Option<(&str, &str)>,
        skip: &dyn Fn(&str) -> bool,
        limit: usize,
    ) -> Result<Vec<MirrorItem>, MetaError> {
        let start = match after {
            Some((b, k)) => {
                let mut s = object_key(b, k);
                s.push(0);
                s
            }
            None => Vec::new(),
        };
        let mut out = Vec::new();
        let mut it = self.db.iterator_cf(
            self.cf(CF_MIRROR),
            IteratorMode::From(&start, Direction::Forward),
        );
        while let Some(item) = it.next() {
            let (k, v) = item?;
            let Some((bucket, key)) = split_object_key(&k) else {
                continue;
            };
            if skip(&bucket) {
                // Jump past the whole bucket.
                if let Some(next) = prefix_successor(&object_key(&bucket, "")) {
                    it.set_mode(IteratorMode::From(&next, Direction::Forward));
                    continue;
                }
                break;
            }
            let entry = decode_entry(&v)?;
            if entry.next_ms <= now_ms {
                out.push(MirrorItem { bucket, key, entry });
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Swaps in `tiered` (the same object with its bytes in the bucket's remote) if the object
    /// is still exactly `old` and no change of it is queued for the remote; its pieces are
    /// queued for deletion. `false` if the object changed meanwhile (or a change is queued).
    pub fn commit_tiered(
        &self,
        bucket: &str,
        key: &str,
        old: &ObjectManifest,
        tiered: &ObjectManifest,
    ) -> Result<bool, MetaError> {
        self.swap(bucket, key, old, tiered, None, super::Change::Tiering)
    }

    /// Swaps in `new`, the same object with other attributes (tags), if the object is still
    /// exactly `old`. `false` if it changed meanwhile.
    pub fn commit_attributes(
        &self,
        bucket: &str,
        key: &str,
        old: &ObjectManifest,
        new: &ObjectManifest,
    ) -> Result<bool, MetaError> {
        self.swap(bucket, key, old, new, None, super::Change::Tags)
    }

    /// Queues `bucket`/`key` for the mirror worker (which makes the remote match the local
    /// state) whatever the bucket's remote wants to hear of.
    pub fn requeue_mirror(&self, bucket: &str, key: &str) -> Result<(), MetaError> {
        let _guard = self.lock();
        let mut batch = WriteBatch::default();
        self.queue_mirror_key(&mut batch, &object_key(bucket, key), false)?;
        self.write(batch)
    }

    /// The entry of `bucket`/`key`, if queued.
    pub fn mirror_entry(&self, bucket: &str, key: &str) -> Result<Option<MirrorEntry>, MetaError> {
        self.db
            .get_cf(self.cf(CF_MIRROR), object_key(bucket, key))?
            .map(|v| decode_entry(&v))
            .transpose()
    }

    /// Removes `bucket`/`key`'s entry if it is still the one with `seq` (a change queued
    /// meanwhile stays). `true` if removed.
    pub fn mirror_done(&self, bucket: &str, key: &str, seq: u64) -> Result<bool, MetaError> {
        let _guard = self.lock();
        match self.mirror_entry(bucket, key)? {
            Some(e) if e.seq == seq => {
                let mut batch = WriteBatch::default();
                batch.delete_cf(self.cf(CF_MIRROR), object_key(bucket, key));
                self.write(batch)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Records a failed try of the entry with `seq`: another at `next_ms`.
    pub fn mirror_failed(
        &self,
        bucket: &str,
        key: &str,
        seq: u64,
        next_ms: u64,
        error: &str,
    ) -> Result<(), MetaError> {
        let _guard = self.lock();
        let Some(mut e) = self.mirror_entry(bucket, key)? else {
            return Ok(());
        };
        if e.seq != seq {
            return Ok(());
        }
        e.attempts = e.attempts.saturating_add(1);
        e.next_ms = next_ms;
        e.last_error = error.chars().take(500).collect();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_MIRROR), object_key(bucket, key), encode(&e));
        self.write(batch)
    }

    /// The mirror queue per bucket (a scan of the queue).
    pub fn mirror_backlog(
        &self,
    ) -> Result<std::collections::BTreeMap<String, MirrorBacklog>, MetaError> {
        let mut out = std::collections::BTreeMap::<String, MirrorBacklog>::new();
        for item in self.db.iterator_cf(self.cf(CF_MIRROR), IteratorMode::Start) {
            let (k, v) = item?;
            let Some((bucket, _)) = split_object_key(&k) else {
                continue;
            };
            let entry = decode_entry(&v)?;
            let b = out.entry(bucket).or_default();
            b.depth += 1;
            b.oldest_ms = Some(
                b.oldest_ms
                    .map_or(entry.queued_ms, |o| o.min(entry.queued_ms)),
            );
            if entry.attempts > 0 {
                b.failing += 1;
            }
        }
        Ok(out)
    }
}
