//! The background scrub: re-hashes every piece against its id at a throttled rate, one pass
//! every `scrub_interval`, and hands the corrupt ones to the service, which reports them to the
//! gateway when it asks ([`crate::protocol::Request::ScrubReport`]) so it can rebuild them
//! elsewhere.
//!
//! The first pass starts right after the node starts; pieces are visited in id order, a page
//! at a time, so a pass over millions of pieces holds only one page in memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use chunker::PieceId;

use crate::node::NodeService;
use crate::store::{now_ms, PieceStore, ScrubResult};

/// Pieces listed per page.
const PAGE: usize = 256;

/// Runs scrub passes until `cancel` fires. `rate`: most bytes re-hashed per second.
pub async fn run(
    service: Arc<NodeService>,
    rate: u64,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        let started = Instant::now();
        match pass(&service, rate, &cancel).await {
            Ok(Some((pieces, corrupt))) => {
                service
                    .counters
                    .last_scrub_finished_ms
                    .store(now_ms(), Ordering::Relaxed);
                tracing::info!(pieces, corrupt, took = ?started.elapsed(), "scrub pass finished");
            }
            Ok(None) => return, // cancelled
            Err(e) => tracing::warn!(error = %e, "scrub pass failed; retrying next interval"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// How often a running pass logs how far it is.
const PROGRESS_LOG: Duration = Duration::from_secs(60);

/// How far a pass has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub pieces: u64,
    pub bytes: u64,
    pub corrupt: u64,
}

/// One pass of the running node over every piece (counters, rot kept for the gateway, a log
/// line every minute); `(pieces, corrupt)`, or `None` if cancelled.
pub async fn pass(
    service: &Arc<NodeService>,
    rate: u64,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<(u64, u64)>> {
    let total = service.store().stats().pieces;
    let mut logged = Instant::now();
    let done = scrub_all(service.store().clone(), rate, cancel, |id, result, p| {
        service.counters.scrubbed.fetch_add(1, Ordering::Relaxed);
        if let ScrubResult::Corrupt(rot) = result {
            service
                .counters
                .scrub_corrupt
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(piece = %id, ?rot, "scrub found a corrupt piece");
            service.report_rot(id);
        }
        if logged.elapsed() >= PROGRESS_LOG {
            logged = Instant::now();
            tracing::info!(
                pieces = p.pieces,
                of = total,
                bytes = p.bytes,
                corrupt = p.corrupt,
                "scrub in progress"
            );
        }
    })
    .await?;
    Ok(done.map(|p| (p.pieces, p.corrupt)))
}

/// Re-hashes every piece of `store` in id order, at most `rate` bytes per second on average,
/// calling `visit` with each piece's id, its result and the progress including it. Returns the
/// final progress, or `None` if `cancel` fired.
pub async fn scrub_all(
    store: Arc<dyn PieceStore>,
    rate: u64,
    cancel: &CancellationToken,
    mut visit: impl FnMut(PieceId, &ScrubResult, &Progress),
) -> anyhow::Result<Option<Progress>> {
    let started = Instant::now();
    let mut progress = Progress::default();
    let mut after = None;
    loop {
        let list = store.clone();
        let page = tokio::task::spawn_blocking(move || list.list(after, PAGE)).await??;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for info in page {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            // Throttle before hashing: no faster than `rate` bytes per second on average (and
            // no wait after the last piece, so a pass ends when its work does).
            let due = Duration::from_secs_f64(progress.bytes as f64 / rate.max(1) as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = cancel.cancelled() => return Ok(None),
                }
            }
            let (one, id) = (store.clone(), info.id);
            let result = tokio::task::spawn_blocking(move || one.scrub(&id, now_ms())).await??;
            progress.pieces += 1;
            progress.bytes += info.len;
            if matches!(result, ScrubResult::Corrupt(_)) {
                progress.corrupt += 1;
            }
            visit(id, &result, &progress);
        }
    }
    Ok(Some(progress))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Request, Response};
    use crate::store::{DiskStore, DiskStoreOptions};

    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                files(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }

    #[tokio::test]
    async fn a_pass_finds_rot_and_the_report_holds_it_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DiskStore::open(dir.path(), DiskStoreOptions::new(1 << 30)).unwrap());
        for seed in 0..3u8 {
            let data = vec![seed; 200_000];
            store.put(PieceId::of(&data), &data).unwrap();
        }
        let mut pieces = Vec::new();
        files(&dir.path().join("pieces"), &mut pieces);
        assert_eq!(pieces.len(), 3);
        let mut bytes = std::fs::read(&pieces[1]).unwrap();
        bytes[150_000] ^= 1;
        std::fs::write(&pieces[1], bytes).unwrap();

        let ledger = crate::ledger::NodeLedger::open(store.clone()).unwrap();
        let service = Arc::new(NodeService::new(
            store,
            libp2p::identity::Keypair::generate_ed25519(),
            [],
            Box::new(|| None),
            ledger,
        ));
        let found = pass(&service, u64::MAX, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(found, Some((3, 1)));

        let gateway = libp2p::PeerId::random();
        let report = |acknowledged| {
            let service = service.clone();
            async move {
                match service
                    .handle(gateway, Request::ScrubReport { acknowledged }, Vec::new())
                    .await
                    .0
                {
                    Response::ScrubReport { corrupt } => corrupt,
                    other => panic!("{other:?}"),
                }
            }
        };
        let corrupt = report(vec![]).await;
        assert_eq!(corrupt.len(), 1);
        assert_eq!(report(vec![]).await, corrupt, "kept until acknowledged");
        assert!(report(corrupt).await.is_empty());
    }
}
