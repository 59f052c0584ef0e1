//! The mirror worker: drains the metadata's mirror queue (keys of hybrid buckets whose remote
//! copy may be behind) by making each remote copy match the local state
//! ([`ObjectService::sync_remote`]).
//!
//! Entries are written in the same metadata batch as the commit or delete that made them, so a
//! crash loses none, and removed only if no newer change of the key was queued while the copy
//! ran. A remote that cannot be reached (connection refused, timeouts, 5xx) puts its whole
//! bucket on hold with exponential backoff (1 s doubling to `MAX_BUCKET_BACKOFF`): nothing is
//! lost, the queue grows and drains when the remote returns. Other failures (access denied, a
//! local object that cannot be read right now) back the entry alone off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::hybrid::RemoteError;
use crate::meta::{Meta, MirrorItem};
use crate::objects::ObjectService;
use crate::time::now_ms;

/// Entries read from the queue at a time.
const BATCH: usize = 64;
/// Longest hold on a bucket whose remote is unreachable.
const MAX_BUCKET_BACKOFF: Duration = Duration::from_secs(60);
/// Longest wait before an entry that failed on its own is tried again.
const MAX_ENTRY_BACKOFF: Duration = Duration::from_secs(3600);

/// How the mirror worker runs.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Pause between passes over the queue.
    pub interval: Duration,
    /// Keys copied at once.
    pub concurrency: usize,
}

/// Counters since start.
#[derive(Debug, Default, Serialize)]
pub struct MirrorStats {
    /// Remote copies brought up to date (uploads and deletes).
    pub synced: AtomicU64,
    /// Tries that failed (each is retried).
    pub failed: AtomicU64,
}

/// The mirror worker.
pub struct Mirror {
    meta: Arc<Meta>,
    objects: Arc<ObjectService>,
    cfg: MirrorConfig,
    pub stats: MirrorStats,
    /// Buckets whose remote is unreachable: until when, and how many failures in a row.
    held: Mutex<HashMap<String, (Instant, u32)>>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// What one try did.
enum Outcome {
    Synced,
    /// A newer change was queued meanwhile, or the bucket is on hold: it stays.
    Left,
    Failed,
}

impl Mirror {
    pub fn new(meta: Arc<Meta>, objects: Arc<ObjectService>, cfg: MirrorConfig) -> Self {
        Mirror {
            meta,
            objects,
            cfg,
            stats: MirrorStats::default(),
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, u32)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Works through the queue every interval until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let interval = self.cfg.interval;
        crate::worker::every("remote copies brought up to date", interval, cancel, || {
            self.pass()
        })
        .await;
    }

    /// One pass over the entries due now; returns how many remote copies were brought up to
    /// date.
    pub async fn pass(&self) -> anyhow::Result<usize> {
        let now = now_ms();
        let mut after: Option<(String, String)> = None;
        let mut synced = 0;
        loop {
            let items = self.meta.mirror_due(
                now,
                after.as_ref().map(|(b, k)| (b.as_str(), k.as_str())),
                &|bucket| self.on_hold(bucket),
                BATCH,
            )?;
            let Some(last) = items.last() else { break };
            after = Some((last.bucket.clone(), last.key.clone()));
            let outcomes: Vec<Outcome> = futures::stream::iter(items)
                .map(|item| self.sync(item))
                .buffer_unordered(self.cfg.concurrency)
                .collect()
                .await;
            synced += outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Synced))
                .count();
        }
        Ok(synced)
    }

    async fn sync(&self, item: MirrorItem) -> Outcome {
        let MirrorItem { bucket, key, entry } = item;
        if self.on_hold(&bucket) {
            return Outcome::Left;
        }
        let result = match self.objects.remotes().get(&bucket).await {
            Ok(Some(remote)) => {
                self.objects
                    .sync_remote(&remote, &bucket, &key, entry.tags_only)
                    .await
            }
            // The bucket was unpaired (its queue goes with it) between the read and now.
            Ok(None) => Ok(()),
            Err(e) => Err(RemoteError::Refused(e.to_string())),
        };
        match result {
            Ok(()) => {
                self.held().remove(&bucket);
                match self.meta.mirror_done(&bucket, &key, entry.seq) {
                    Ok(true) => {
                        self.stats.synced.fetch_add(1, Ordering::Relaxed);
                        Outcome::Synced
                    }
                    Ok(false) => Outcome::Left,
                    Err(e) => {
                        tracing::warn!(bucket, key, error = %e, "could not record a mirrored key");
                        Outcome::Failed
                    }
                }
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let wait = match &e {
                    RemoteError::Unavailable(_) => self.hold(&bucket),
                    _ => backoff(entry.attempts, MAX_ENTRY_BACKOFF),
                };
                tracing::info!(bucket, key, error = %e, retry_in = ?wait, "mirroring failed; will retry");
                let next =
                    now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                if let Err(e) =
                    self.meta
                        .mirror_failed(&bucket, &key, entry.seq, next, &e.to_string())
                {
                    tracing::warn!(bucket, key, error = %e, "could not record a mirror failure");
                }
                Outcome::Failed
            }
        }
    }

    fn on_hold(&self, bucket: &str) -> bool {
        self.held()
            .get(bucket)
            .is_some_and(|(until, _)| *until > Instant::now())
    }

    /// Puts `bucket` on hold after its remote was unreachable (once per hold: the other keys
    /// of a batch that fail the same way do not lengthen it); returns for how long.
    fn hold(&self, bucket: &str) -> Duration {
        let now = Instant::now();
        let mut held = self.held();
        if let Some((until, _)) = held.get(bucket).filter(|(until, _)| *until > now) {
            return *until - now;
        }
        let failures = held.get(bucket).map_or(0, |(_, n)| n + 1);
        let wait = backoff(failures, MAX_BUCKET_BACKOFF);
        held.insert(bucket.to_string(), (now + wait, failures));
        wait
    }
}

/// 1 s doubling per failure, at most `max`.
fn backoff(failures: u32, max: Duration) -> Duration {
    Duration::from_secs(1u64 << failures.min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(0, MAX_BUCKET_BACKOFF), Duration::from_secs(1));
        assert_eq!(backoff(3, MAX_BUCKET_BACKOFF), Duration::from_secs(8));
        assert_eq!(backoff(40, MAX_BUCKET_BACKOFF), MAX_BUCKET_BACKOFF);
    }
}
