//! The tiering worker: moves the bytes of objects that match their bucket's tier policy (older
//! than, larger than; with `when_free_below`, only while the online nodes' free space is below
//! that share of their capacity) to the bucket's remote, then points the manifest there
//! ([`chunker::manifest::Body::Remote`]); the pieces go to the delete queue, reads follow the
//! manifest to the remote.
//!
//! Per object: copy its plaintext to the remote (skipped when the bucket mirrors and the mirror
//! already holds this version), then swap the manifest in one write that succeeds only if the
//! object is still the version copied and no change of it waits in the mirror queue
//! ([`crate::meta::Meta::commit_tiered`]). If it was overwritten meanwhile, the key is queued
//! for the mirror worker, which deletes the copy that is now stale.
//!
//! Each pass looks at up to `SCAN_PER_PASS` objects per tiered bucket, resuming where the last
//! pass stopped and wrapping around at the end, so a large bucket is covered over several
//! passes without any pass taking long.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chunker::manifest::Body;
use chunker::ObjectManifest;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::hybrid::{MirrorMode, Remote, TierPolicy};
use crate::meta::Meta;
use crate::nodes::Nodes;
use crate::objects::ObjectService;
use crate::time::now_ms;

/// Objects looked at per bucket and pass.
const SCAN_PER_PASS: usize = 1000;
/// Objects moved per bucket and pass.
const MOVE_PER_PASS: usize = 16;

/// Counters since start.
#[derive(Debug, Default, Serialize)]
pub struct TierStats {
    pub objects_tiered: AtomicU64,
    pub bytes_tiered: AtomicU64,
    pub failed: AtomicU64,
}

/// The tiering worker.
pub struct Tierer {
    meta: Arc<Meta>,
    objects: Arc<ObjectService>,
    nodes: Arc<Nodes>,
    interval: Duration,
    pub stats: TierStats,
    /// Per bucket, the key the next pass starts after.
    cursors: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Tierer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tierer").finish_non_exhaustive()
    }
}

impl Tierer {
    pub fn new(
        meta: Arc<Meta>,
        objects: Arc<ObjectService>,
        nodes: Arc<Nodes>,
        interval: Duration,
    ) -> Self {
        Tierer {
            meta,
            objects,
            nodes,
            interval,
            stats: TierStats::default(),
            cursors: Mutex::new(HashMap::new()),
        }
    }

    /// A pass every interval until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let interval = self.interval;
        crate::worker::every(
            "objects moved to their buckets' remotes",
            interval,
            cancel,
            || self.pass(),
        )
        .await;
    }

    /// One pass over every tiered bucket; returns how many objects were moved.
    pub async fn pass(&self) -> anyhow::Result<usize> {
        let mut moved = 0;
        for (bucket, config) in self.objects.remotes().all()? {
            let Some(policy) = config.tier.clone() else {
                continue;
            };
            if let Some(below) = policy.free_below()? {
                let free = self.free_share();
                if free >= below {
                    continue;
                }
                tracing::debug!(bucket, free, below, "node space is short; tiering");
            }
            let Some(remote) = self.objects.remotes().get(&bucket).await? else {
                continue;
            };
            for (key, m) in self.candidates(&bucket, &policy)? {
                match self.move_one(&remote, &bucket, &key, &m).await {
                    Ok(true) => {
                        moved += 1;
                        self.stats.objects_tiered.fetch_add(1, Ordering::Relaxed);
                        self.stats.bytes_tiered.fetch_add(m.size, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        self.stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(bucket, key, error = %e, "tiering failed; next pass retries");
                    }
                }
            }
        }
        Ok(moved)
    }

    /// The online nodes' free space as a share of their capacity (1 with no capacity at all,
    /// so an empty network moves nothing on this condition alone... and has nothing to move).
    fn free_share(&self) -> f64 {
        let (free, capacity) = self.nodes.online().iter().fold((0u64, 0u64), |(f, c), n| {
            (
                f.saturating_add(n.free()),
                c.saturating_add(n.registration.capacity_bytes),
            )
        });
        if capacity == 0 {
            1.0
        } else {
            free as f64 / capacity as f64
        }
    }

    /// Up to `MOVE_PER_PASS` objects of `bucket` on nodes that match `policy`, from the
    /// bucket's cursor on.
    fn candidates(
        &self,
        bucket: &str,
        policy: &TierPolicy,
    ) -> anyhow::Result<Vec<(String, ObjectManifest)>> {
        let now = now_ms();
        let start = self
            .cursors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(bucket)
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        let mut seen = 0;
        let mut last = None;
        let mut from = start.as_bytes().to_vec();
        if !from.is_empty() {
            from.push(0); // strictly after the cursor
        }
        self.meta.scan_objects(bucket, "", &from, |o| {
            seen += 1;
            if matches!(o.manifest.body, Body::Segments(_))
                && policy.matches(o.manifest.size, o.manifest.created_ms, now)
            {
                out.push((o.key.clone(), o.manifest));
            }
            last = Some(o.key);
            Ok(seen < SCAN_PER_PASS && out.len() < MOVE_PER_PASS)
        })?;
        // At the end of the bucket (nothing more to scan), start over next time.
        let next = if seen < SCAN_PER_PASS && out.len() < MOVE_PER_PASS {
            String::new()
        } else {
            last.unwrap_or_default()
        };
        self.cursors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bucket.to_string(), next);
        Ok(out)
    }

    /// Copies `m` to the remote and points its manifest there; `false` if it changed (or has a
    /// change queued for the remote) meanwhile.
    async fn move_one(
        &self,
        remote: &Remote,
        bucket: &str,
        key: &str,
        m: &ObjectManifest,
    ) -> anyhow::Result<bool> {
        if self.meta.mirror_entry(bucket, key)?.is_some() {
            return Ok(false); // the mirror worker settles it first
        }
        let remote_key = remote.config.remote_key(key);
        let mirrored = remote.config.mirror != MirrorMode::Off
            && remote
                .store
                .head(&remote_key)
                .await?
                .is_some_and(|o| o.size == m.size);
        if !mirrored {
            self.objects
                .upload_to_remote(remote, bucket, key, m)
                .await?;
        }
        let mut tiered = m.clone();
        tiered.body = Body::Remote { key: remote_key };
        if self.meta.commit_tiered(bucket, key, m, &tiered)? {
            tracing::debug!(bucket, key, size = m.size, "object moved to the remote");
            Ok(true)
        } else {
            // Overwritten or deleted while copying: the mirror worker makes the remote match
            // (deleting the copy unless the bucket mirrors).
            self.meta.requeue_mirror(bucket, key)?;
            Ok(false)
        }
    }
}
