//! HTTP listeners that a flood cannot take down: a bounded number of connections in total and
//! per client address, and a deadline for every request head (which is also how long an idle
//! keep-alive connection may wait for its next request), so slowloris connections and idle
//! crowds are shed instead of holding the port. Refusals are counted and logged once per flood,
//! not once per connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub connections: usize,
    /// Connections open at once from one client address.
    pub per_address: usize,
    /// Time a client has to send a whole request head, and an idle connection to start one.
    pub header_timeout: Duration,
}

/// How often a flood is logged.
const FLOOD_LOG_EVERY: Duration = Duration::from_secs(10);

/// Open connections per address, and the flood log's state.
#[derive(Debug, Default)]
struct Census {
    per_address: HashMap<IpAddr, usize>,
    refused: u64,
    last_log: Option<Instant>,
}

/// A connection slot: gives its address's count back when dropped.
struct Slot {
    census: Arc<Mutex<Census>>,
    ip: IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.census.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_address.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `cancel` fires, then lets open requests finish.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: Router,
    limits: Limits,
    cancel: CancellationToken,
) {
    let total = Arc::new(Semaphore::new(limits.connections.max(1)));
    let census = Arc::new(Mutex::new(Census::default()));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = cancel.cancelled() => break,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, mostly: pause instead of spinning on the error.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = peer.ip().to_canonical();
        let slot = {
            let mut c = census.lock().unwrap_or_else(|p| p.into_inner());
            let here = c.per_address.get(&ip).copied().unwrap_or(0);
            let permit = (here < limits.per_address)
                .then(|| total.clone().try_acquire_owned().ok())
                .flatten();
            match permit {
                Some(permit) => {
                    *c.per_address.entry(ip).or_default() += 1;
                    Some(Slot {
                        census: census.clone(),
                        ip,
                        _permit: permit,
                    })
                }
                None => {
                    c.refused += 1;
                    if c.last_log.is_none_or(|t| t.elapsed() >= FLOOD_LOG_EVERY) {
                        c.last_log = Some(Instant::now());
                        tracing::warn!(
                            listener = name,
                            client = %ip,
                            from_client = here,
                            open = limits.connections - total.available_permits(),
                            refused_so_far = c.refused,
                            "connection limit reached; refusing connections"
                        );
                    }
                    None
                }
            }
        };
        let Some(slot) = slot else {
            drop(stream); // closed at once
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let conn = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                // A client that vanished or timed out mid-request: the request's own handler
                // reported what mattered.
                tracing::debug!(listener = name, error = %e, "connection ended with an error");
            }
        });
    }
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let cancel = CancellationToken::new();
        tokio::spawn(serve("test", listener, app, limits, cancel.clone()));
        (addr, cancel)
    }

    async fn get(addr: std::net::SocketAddr) -> std::io::Result<String> {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn idle_crowds_are_bounded_per_address_and_slow_heads_time_out() {
        let (addr, cancel) = start(Limits {
            connections: 64,
            per_address: 8,
            header_timeout: Duration::from_millis(300),
        })
        .await;
        // Eight idle connections from one address fill its share; a ninth is closed at once.
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = get(addr).await.unwrap_or_default();
        assert!(!refused.contains("200 OK"), "{refused}");
        // Once the idle ones time out without sending a head, the address is served again.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let ok = get(addr).await.unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        for mut s in idle {
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap_or(0);
            assert!(
                n == 0 || buf.starts_with(b"HTTP/1.1 408"),
                "an idle connection was closed"
            );
        }
        cancel.cancel();
    }
}
