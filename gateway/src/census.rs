//! The segment census: every `census_interval` one pass over every manifest counts segments by
//! health, for `/metrics` (`gateway_segments{health}`) and `/admin/v1/status`. Counting on a
//! schedule keeps a scrape cheap however many objects there are; the figures are as old as the
//! last pass (`gateway_census_age_seconds`).
//!
//! Health of a segment, by its healthy pieces (see [`crate::repair::Health`]):
//! - `full`: every piece healthy;
//! - `degraded`: some lost, still at or above the repair threshold (k + `repair_margin`);
//! - `repair_due`: below the threshold, still readable (at least k) — the repairer's work;
//! - `unreadable`: fewer than k healthy pieces (readable again only if lost nodes come back).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chunker::manifest::Body;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::meta::Meta;
use crate::repair::Health;

/// What one census counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentCensus {
    pub objects: u64,
    /// Objects whose bytes live in the metadata or in a remote (no segments on nodes).
    pub objects_without_segments: u64,
    pub full: u64,
    pub degraded: u64,
    pub repair_due: u64,
    pub unreadable: u64,
}

impl SegmentCensus {
    /// The counts by health label, in the order `/metrics` shows them.
    pub fn by_health(&self) -> [(&'static str, u64); 4] {
        [
            ("full", self.full),
            ("degraded", self.degraded),
            ("repair_due", self.repair_due),
            ("unreadable", self.unreadable),
        ]
    }
}

/// The census worker and its last result.
#[derive(Debug)]
pub struct Census {
    meta: Arc<Meta>,
    health: Arc<Health>,
    interval: Duration,
    last: Mutex<Option<(Instant, SegmentCensus)>>,
}

impl Census {
    pub fn new(meta: Arc<Meta>, health: Arc<Health>, interval: Duration) -> Self {
        Census {
            meta,
            health,
            interval,
            last: Mutex::new(None),
        }
    }

    /// The last census and its age (`None` before the first pass ends).
    pub fn last(&self) -> Option<(Duration, SegmentCensus)> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.as_ref().map(|(at, c)| (at.elapsed(), c.clone()))
    }

    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let interval = self.interval;
        crate::worker::every("segment census", interval, cancel, || {
            let census = self.clone();
            async move {
                tokio::task::spawn_blocking(move || census.pass())
                    .await
                    .map_err(|e| anyhow::anyhow!("census task: {e}"))??;
                // Logged only on failure: a census every minute is not news.
                Ok(0)
            }
        })
        .await;
    }

    /// Counts every segment of every object now.
    pub fn pass(&self) -> anyhow::Result<SegmentCensus> {
        let mut c = SegmentCensus::default();
        for (bucket, _) in self.meta.buckets()? {
            self.meta.scan_objects(&bucket, "", b"", |o| {
                c.objects += 1;
                let Body::Segments(segments) = &o.manifest.body else {
                    c.objects_without_segments += 1;
                    return Ok(true);
                };
                for seg in segments {
                    let healthy = self.health.healthy(seg);
                    let slot = if healthy >= seg.pieces.len() {
                        &mut c.full
                    } else if healthy >= self.health.threshold(seg) {
                        &mut c.degraded
                    } else if healthy >= seg.params.k() {
                        &mut c.repair_due
                    } else {
                        &mut c.unreadable
                    };
                    *slot += 1;
                }
                Ok(true)
            })?;
        }
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), c.clone()));
        Ok(c)
    }
}
