//! The loop of a periodic background worker: a pass, then a pause, until cancelled. A pass
//! reports how many items it handled (logged when more than none) or fails (logged; the next
//! pass tries again).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `pass` every `interval` until `cancel` fires; `what` names the items in the log.
pub async fn every<F, Fut>(
    what: &'static str,
    interval: Duration,
    cancel: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    loop {
        match pass().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "{what}"),
            Err(e) => tracing::warn!(error = %e, "{what}: pass failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = cancel.cancelled() => return,
        }
    }
}
