//! Piece transfer over loopback: our libp2p stack (TCP + TLS + Yamux, and QUIC, each with
//! `libp2p-stream` and our framing) against plain HTTP/1.1 (axum server, keep-alive client),
//! 1 MiB pieces, at concurrency 1 and 16. Reports throughput and the CPU time both sides spent per GB.
//! A reference row runs our TLS upgrade alone over a connection per worker, as HTTP does; the
//! `lane` row is what the gateway runs: `NodeClient::call` over the data lanes a node dialed
//! (sealed headers, payloads authenticated but not encrypted again).
//!
//! `cargo bench -p benches --bench transport` (add `-- --quick` for a short run,
//! `-- --concurrency 16` for one concurrency, `-- --only tcp` (or `lane`, `tls`, `quic`, `http`) for
//! one transport, e.g. under `perf record`; `-- --connections 4` to spread the libp2p rows'
//! streams over that many connections to the one receiver instead of one; `-- --workers 1` for
//! one worker thread per end instead of two; `-- --node-workers N` for N on the receiving end
//! only).
//!
//! Both ends run in this process, each on its own runtime (two worker threads unless told
//! otherwise) as the gateway and node processes do (one shared runtime lets Tokio run both
//! ends' tasks on one worker, which no deployment does). CPU-s/GB is the sum of sender and
//! receiver. The receiver only reads the bytes (no hashing, no storing): this measures the
//! transport.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::put;
use chunker::PieceId;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, StreamProtocol};
use storage_node::client::NodeClient;
use storage_node::net::{self, lane};
use storage_node::protocol::{
    read_header, read_payload, write_frame, Frames, LaneKey, Request, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Handle;

const PIECE: usize = 1 << 20;

/// Process CPU time (all threads, user + system) so far.
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

struct Figures {
    gb_per_s: f64,
    cpu_s_per_gb: f64,
}

async fn measure<F, Fut>(concurrency: usize, total: usize, one: F) -> Figures
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (wall, cpu) = (Instant::now(), cpu_time());
    let per_worker = total / concurrency;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let one = one.clone();
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    one().await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let gb = (per_worker * concurrency * PIECE) as f64 / 1e9;
    Figures {
        gb_per_s: gb / wall.elapsed().as_secs_f64(),
        cpu_s_per_gb: (cpu_time() - cpu).as_secs_f64() / gb,
    }
}

/// libp2p on the transport `listen` names: one pooled stream per worker over `connections`
/// connections, our request/response framing. The receiving host runs on `server`.
async fn libp2p_run(
    server: &Handle,
    listen: &str,
    connections: usize,
    concurrency: usize,
    total: usize,
) -> Figures {
    let protocol = StreamProtocol::new("/bench/put/1");
    let (host, addr) = server
        .spawn(receiver(listen.parse().unwrap(), protocol.clone()))
        .await
        .unwrap();
    let client = net::spawn(Keypair::generate_ed25519()).unwrap();
    // libp2p-stream opens each stream on one of the peer's connections, at random. The host
    // reports connected peers, not connections, so each dial gets a pause to finish its
    // handshake (setup, outside the timed part).
    for _ in 0..connections {
        client.dial(addr.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        client
            .wait_connected(&host.peer_id(), Duration::from_secs(5))
            .await
    );
    // One long-lived stream per worker, opened up front.
    let mut streams = Vec::new();
    for _ in 0..concurrency {
        let s = client
            .control()
            .open_stream(host.peer_id(), protocol.clone())
            .await
            .unwrap();
        streams.push(s);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send_pieces(streams, total).await
}

/// Sends `total` pieces over `conns`, one worker per connection, each piece answered before
/// the next.
async fn send_pieces<S>(conns: Vec<S>, total: usize) -> Figures
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static,
{
    let data = Arc::new(vec![7u8; PIECE]);
    let request = Request::PutPiece {
        id: PieceId::of(&data),
        len: PIECE as u64,
    };
    let concurrency = conns.len();
    let conns: Arc<Vec<_>> = Arc::new(conns.into_iter().map(tokio::sync::Mutex::new).collect());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    measure(concurrency, total, move || {
        let (conns, next, data, request) =
            (conns.clone(), next.clone(), data.clone(), request.clone());
        async move {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % conns.len();
            let mut s = conns[i].lock().await;
            write_frame(&mut *s, &request, &data).await.unwrap();
            let _: Response = read_header(&mut *s).await.unwrap();
        }
    })
    .await
}

/// Reads pieces from `stream` and answers each, until the sender goes away.
async fn receive_pieces<S: futures::AsyncRead + futures::AsyncWrite + Unpin>(mut stream: S) {
    while let Ok(req) = read_header::<_, Request>(&mut stream).await {
        if read_payload(&mut stream, req.payload_len()).await.is_err() {
            return;
        }
        let reply = Response::Stored { already: false };
        if write_frame(&mut stream, &reply, &[]).await.is_err() {
            return;
        }
    }
}

/// The receiving libp2p host: listens on `listen` and reads every piece sent on `protocol`.
async fn receiver(listen: Multiaddr, protocol: StreamProtocol) -> (net::HostHandle, Multiaddr) {
    let host = net::spawn(Keypair::generate_ed25519()).unwrap();
    host.listen(listen).await.unwrap();
    let addr = host.listen_addrs(1, Duration::from_secs(5)).await.remove(0);
    let mut incoming = host.control().accept(protocol).unwrap();
    tokio::spawn(async move {
        while let Some((_, stream)) = incoming.next().await {
            tokio::spawn(receive_pieces(stream));
        }
    });
    (host, addr)
}

/// A loopback TCP listener registered with `server`'s runtime, so the tasks serving it run
/// there.
async fn listen_tcp(server: &Handle) -> tokio::net::TcpListener {
    server
        .spawn(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap()
        .unwrap()
}

/// Our TLS upgrade alone (`net::tls`, no muxer), one TCP connection per worker like HTTP's, our
/// framing: what encryption costs without multiplexing.
async fn tls_run(server: &Handle, concurrency: usize, total: usize) -> Figures {
    use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
    // libp2p-tcp's stream, as the tcp row has: it passes vectored writes through (tokio-util's
    // compat adapter would write only the first slice, a syscall per TLS record).
    use libp2p::tcp::tokio::TcpStream;
    let listener = listen_tcp(server).await;
    let addr = listener.local_addr().unwrap();
    server.spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            socket.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let config = net::tls::Config::new(&Keypair::generate_ed25519()).unwrap();
                let (_, stream) = config
                    .upgrade_inbound(TcpStream(socket), "/tls/1.0.0")
                    .await
                    .unwrap();
                receive_pieces(stream).await;
            });
        }
    });
    let mut conns = Vec::new();
    for _ in 0..concurrency {
        let c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        let config = net::tls::Config::new(&Keypair::generate_ed25519()).unwrap();
        let (_, s) = config
            .upgrade_outbound(TcpStream(c), "/tls/1.0.0")
            .await
            .unwrap();
        conns.push(s);
    }
    send_pieces(conns, total).await
}

/// Data lanes as a gateway and a node run them: the receiving end dials one lane per worker
/// (`net::lane`: sealed headers, payloads authenticated as they are) to a `NodeClient` on the
/// sending end, which sends every piece with `NodeClient::call`, taking an idle lane from its
/// pool and putting it back.
async fn lane_run(server: &Handle, concurrency: usize, total: usize) -> Figures {
    let client = NodeClient::new(net::spawn(Keypair::generate_ed25519()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap().to_string();
    let key = LaneKey([7; 32]);
    let serving = client.clone();
    tokio::spawn(async move {
        serving
            .serve_lanes(listener, Arc::new(move |_| Some(key)))
            .await
    });
    let node = Keypair::generate_ed25519().public().to_peer_id();
    for _ in 0..concurrency {
        let at = at.clone();
        server.spawn(async move {
            let mut lane = lane::dial(&at, node, &key).await.unwrap();
            while let Ok(req) = lane.read_header::<Request>().await {
                if lane.read_payload(req.payload_len()).await.is_err() {
                    return;
                }
                let reply = Response::Stored { already: false };
                if lane.write_frame(&reply, &[]).await.is_err() {
                    return;
                }
            }
        });
    }
    while client.idle_lanes(&node) < concurrency {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let data = Arc::new(vec![7u8; PIECE]);
    let request = Request::PutPiece {
        id: PieceId::of(&data),
        len: PIECE as u64,
    };
    measure(concurrency, total, move || {
        let (client, data, request) = (client.clone(), data.clone(), request.clone());
        async move {
            client
                .call(node, &request, &data, Duration::from_secs(30))
                .await
                .unwrap();
        }
    })
    .await
}

/// Plain HTTP/1.1: an axum server (on `server`) that reads each body; a minimal keep-alive
/// client per worker.
async fn http_run(server: &Handle, concurrency: usize, total: usize) -> Figures {
    let app = axum::Router::new()
        .route(
            "/piece",
            put(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(PIECE * 2));
    let listener = listen_tcp(server).await;
    let addr = listener.local_addr().unwrap();
    server.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let data = Arc::new(vec![7u8; PIECE]);
    let mut conns = Vec::new();
    for _ in 0..concurrency {
        let c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        conns.push(Arc::new(tokio::sync::Mutex::new(c)));
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    measure(concurrency, total, move || {
        let (conns, next, data) = (conns.clone(), next.clone(), data.clone());
        async move {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % conns.len();
            let mut c = conns[i].lock().await;
            let head =
                format!("PUT /piece HTTP/1.1\r\nHost: bench\r\nContent-Length: {PIECE}\r\n\r\n");
            c.write_all(head.as_bytes()).await.unwrap();
            c.write_all(&data).await.unwrap();
            // The answer is small: headers plus "1048576".
            let mut buf = [0u8; 512];
            let mut got = Vec::new();
            loop {
                let n = c.read(&mut buf).await.unwrap();
                assert!(n > 0, "server closed");
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"1048576") {
                    break;
                }
            }
        }
    })
    .await
}

/// The value after `--name` on the command line.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    // Both sides run with the allocator settings of the daemons (`gateway`, `storage-node`).
    storage_node::daemon::tune_malloc();
    let quick = std::env::args().any(|a| a == "--quick");
    let total = if quick { 256 } else { 2048 };
    let only = arg("--only");
    let concurrencies: Vec<usize> = match arg("--concurrency") {
        Some(c) => vec![c.parse().expect("--concurrency N")],
        None => vec![1, 16],
    };
    let connections: usize =
        arg("--connections").map_or(1, |c| c.parse().expect("--connections N"));
    // Worker threads of each end's runtime: 2, as each daemon would have on this 2-core machine.
    let workers: usize = arg("--workers").map_or(2, |w| w.parse().expect("--workers N"));
    let node_workers: usize =
        arg("--node-workers").map_or(workers, |w| w.parse().expect("--node-workers N"));
    let runtime = |workers| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap()
    };
    // The sending end runs on `rt`, the receiving end on `receiving`.
    let (rt, receiving) = (runtime(workers), runtime(node_workers));
    let server = receiving.handle();
    println!("1 MiB pieces over loopback, {total} per run; CPU is both sides together\n");
    println!("{:<34} {:>10} {:>12}", "transport", "GB/s", "CPU-s/GB");
    for concurrency in concurrencies {
        let mut rows: Vec<(&str, Figures)> = Vec::new();
        for (key, name) in [
            ("http", "plain HTTP/1.1 (axum)"),
            ("tcp", "libp2p TCP+TLS+Yamux, streams"),
            ("lane", "data lanes, NodeClient"),
            ("tls", "TLS alone, connection per worker"),
            ("quic", "libp2p QUIC, streams"),
        ] {
            if only.as_deref().is_some_and(|o| o != key) {
                continue;
            }
            let f = match key {
                "http" => rt.block_on(http_run(server, concurrency, total)),
                "tls" => rt.block_on(tls_run(server, concurrency, total)),
                "lane" => rt.block_on(lane_run(server, concurrency, total)),
                "tcp" => rt.block_on(libp2p_run(
                    server,
                    "/ip4/127.0.0.1/tcp/0",
                    connections,
                    concurrency,
                    total,
                )),
                _ => rt.block_on(libp2p_run(
                    server,
                    "/ip4/127.0.0.1/udp/0/quic-v1",
                    connections,
                    concurrency,
                    total,
                )),
            };
            println!(
                "{:<34} {:>10.3} {:>12.2}   concurrency {concurrency}",
                name, f.gb_per_s, f.cpu_s_per_gb
            );
            rows.push((key, f));
        }
        let http = rows.iter().find(|(k, _)| *k == "http").map(|(_, f)| f);
        for (key, f) in rows.iter().filter(|(k, _)| *k != "http") {
            if let Some(http) = http {
                println!(
                    "{key} / HTTP: {:.0} % of the throughput at {:.2}x the CPU per GB",
                    f.gb_per_s / http.gb_per_s * 100.0,
                    f.cpu_s_per_gb / http.cpu_s_per_gb
                );
            }
        }
        println!();
    }
}
