//! `storage-node run`: the composition root of a running node. Builds the store, the host and
//! the service from the configuration, runs until SIGINT or SIGTERM, and shuts down in order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::NodeLedger;
use crate::net;
use crate::node::{keep_registered, NodeService};
use crate::protocol::Registration;
use crate::store::{DiskStore, DiskStoreOptions, NodeCounters, PieceStore};

/// How long in-flight requests may take to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The glibc malloc settings of our daemons, as environment variables glibc reads at startup.
///
/// - `MALLOC_ARENA_MAX=2`: glibc gives every thread that allocates its own arena (up to 8 per
///   core), and the data path allocates segment-sized buffers on whichever blocking thread
///   encodes or decodes. With the default the gateway's peak RSS at four concurrent 64 MiB
///   uploads was 188–197 MiB and each fresh arena's pages cost faults; with two arenas it was
///   159 MiB, and single streams stayed under 77 MiB (docs/performance.md).
/// - `MALLOC_MMAP_THRESHOLD_=2 MiB`, `MALLOC_TRIM_THRESHOLD_=32 MiB`: pieces (1 MiB) and Yamux
///   frames (128 KiB) are allocated and freed thousands of times a second. Under glibc's sliding
///   defaults (blocks above the largest one freed so far are mapped afresh, the heap is trimmed
///   at twice that) each came from the kernel and went back: page faults, zeroing and unmapping
///   were about a fifth of the transport's CPU. Now they are reused from the heap; segment
///   buffers (6 MiB) are still mapped per use. The gateway's peak RSS stayed inside its budget
///   (docs/performance.md).
pub const MALLOC_SETTINGS: [(&str, &str); 3] = [
    ("MALLOC_ARENA_MAX", "2"),
    ("MALLOC_MMAP_THRESHOLD_", "2097152"),
    ("MALLOC_TRIM_THRESHOLD_", "33554432"),
];

/// Applies [`MALLOC_SETTINGS`] by re-executing this binary once with them in its environment
/// (glibc reads them only at startup; the process keeps its pid). Call first thing in `main`,
/// before any thread exists. A setting the operator made is kept; if `MALLOC_ARENA_MAX` is
/// already set (by the operator, or by the re-execution), nothing happens.
pub fn tune_malloc() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut command = std::process::Command::new(exe);
    command.args(std::env::args_os().skip(1));
    for (name, value) in MALLOC_SETTINGS {
        if std::env::var_os(name).is_none() {
            command.env(name, value);
        }
    }
    let err = command.exec();
    // Only reached if the exec failed: run on with glibc's defaults.
    tracing::warn!(error = %err, "could not re-execute with the malloc settings; using glibc's defaults");
}

/// Runs the node until `shutdown` fires.
pub async fn run(
    config: Config,
    keypair: libp2p::identity::Keypair,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_wrapped(config, keypair, |store| store, shutdown).await
}

/// [`run`], with the store the service answers from wrapped by `wrap` (how tests stand in a
/// node that misbehaves, e.g. forges proofs, on top of a real store).
pub async fn run_wrapped(
    config: Config,
    keypair: libp2p::identity::Keypair,
    wrap: impl FnOnce(Arc<DiskStore>) -> Arc<dyn PieceStore>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = Arc::new(
        DiskStore::open(&config.data_dir, DiskStoreOptions::new(config.capacity))
            .context("open the piece store")?,
    );
    let stats = store.stats();
    tracing::info!(
        node = %keypair.public().to_peer_id(),
        pieces = stats.pieces,
        used = stats.used_bytes,
        capacity = stats.capacity_bytes,
        "store open"
    );
    let saved = store.counters().context("read the node counters")?;

    let host = net::spawn_with(keypair.clone(), net::HostLimits::NODE)?;
    for addr in &config.listen {
        host.listen(addr.clone())
            .await
            .with_context(|| format!("listen on {addr}"))?;
    }

    let ledger = NodeLedger::open(store.clone()).context("read the usage ledger")?;
    let data_dir = config.data_dir.clone();
    let service = Arc::new(NodeService::new(
        wrap(store.clone()),
        keypair,
        config.gateways.iter().map(|g| g.peer),
        // What puts may use: the store keeps DISK_RESERVE free.
        Box::new(move || {
            crate::store::disk_free(&data_dir).map(|f| f.saturating_sub(crate::store::DISK_RESERVE))
        }),
        ledger,
    ));
    service.accrue_storage(); // starts the ledger's clock

    for gateway in config.gateways.clone() {
        let (stats_of, host2, labels) = (service.clone(), host.clone(), config.labels.clone());
        let registration = move || {
            let stats = stats_of.stats();
            let listen = host2
                .listen_addrs_now()
                .iter()
                .take(crate::protocol::MAX_LISTEN_ADDRS)
                .map(|a| a.to_string())
                .collect();
            Registration {
                software: format!("storage-node {}", env!("CARGO_PKG_VERSION")),
                capacity_bytes: stats.capacity_bytes,
                used_bytes: stats.used_bytes,
                disk_free_bytes: stats.disk_free_bytes,
                labels: labels.clone(),
                listen,
            }
        };
        tokio::spawn(keep_registered(
            service.clone(),
            host.clone(),
            gateway,
            registration,
            shutdown.clone(),
        ));
    }

    let metrics =
        crate::metrics::serve(config.metrics_listen, service.clone(), shutdown.clone()).await?;
    tracing::info!(address = %metrics, "serving /metrics and /health");

    let scrub = tokio::spawn(crate::scrub::run(
        service.clone(),
        config.scrub_rate,
        config.scrub_interval,
        shutdown.clone(),
    ));

    // The counters and the usage ledger on disk follow the running node (for `storage-node
    // status`, and so that a kill loses at most one interval of them; a receipt saves the
    // ledger before it is signed, so a restart never starts below a signed figure).
    let saver = {
        let (store, service, saved, shutdown) = (
            store.clone(),
            service.clone(),
            saved.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(COUNTERS_SAVE_INTERVAL) => {}
                    () = shutdown.cancelled() => return,
                }
                service.accrue_storage();
                let totals = totals(&saved, &service);
                let (store, ledger) = (store.clone(), service.ledger.clone());
                let saved = tokio::task::spawn_blocking(move || {
                    store.save_counters(&totals)?;
                    ledger.save()
                })
                .await;
                if let Ok(Err(e)) = saved {
                    tracing::warn!(error = %e, "could not save the node counters");
                }
            }
        })
    };

    service
        .clone()
        .serve(&host, shutdown.clone(), SHUTDOWN_GRACE)
        .await?;

    let _ = scrub.await;
    let _ = saver.await;
    store
        .save_counters(&totals(&saved, &service))
        .context("save the node counters")?;
    service.accrue_storage();
    service.ledger.save().context("save the usage ledger")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// How often the running node writes its counters to the store.
const COUNTERS_SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// The counters saved before this run plus this run's.
fn totals(saved: &NodeCounters, service: &NodeService) -> NodeCounters {
    let c = &service.counters;
    let last_scrub = c.last_scrub_finished_ms.load(Ordering::Relaxed);
    NodeCounters {
        audits_answered: saved.audits_answered + c.audits_answered.load(Ordering::Relaxed),
        audits_failed: saved.audits_failed + c.audits_failed.load(Ordering::Relaxed),
        scrub_corrupt_found: saved.scrub_corrupt_found + c.scrub_corrupt.load(Ordering::Relaxed),
        last_scrub_finished_ms: (last_scrub > 0)
            .then_some(last_scrub)
            .or(saved.last_scrub_finished_ms),
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        token.cancel();
    });
    Ok(())
}
