//! The stream multiplexer of TCP connections: Yamux (`/yamux/1.0.0`, the same wire protocol as
//! `libp2p-yamux`), configured for pieces rather than for chat.
//!
//! `libp2p-yamux` exposes only the stream limit and leaves Yamux's defaults: 16 KiB data frames
//! (one TLS write and one socket write each, 64 per 1 MiB piece) and a receive window of up to
//! 1 GiB per connection. This upgrade drives the `yamux` crate itself with
//!
//! - [`FRAME`]-sized data frames: a 1 MiB piece crosses in 8 frames, so the connection task, TLS
//!   and the socket see a few large writes instead of 64 small ones. Larger frames measured no
//!   better (256 KiB) and would hold other streams' frames back longer on a slow uplink (128 KiB
//!   is 100 ms at 10 Mbit/s); a stream queues at most 11 frames;
//! - at most [`MAX_STREAMS`] streams per connection, the most a node serves at once;
//! - a receive window of at most [`MAX_RECEIVE_WINDOW`] per connection: what one peer can make
//!   this host buffer.
//!
//! Frame size is the sender's choice; Yamux peers accept data frames of up to 1 MiB, so this
//! interoperates with stock libp2p peers.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use futures::future::{ready, Ready};
use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};

/// Payload of one data frame.
pub const FRAME: usize = 128 * 1024;
/// Streams per connection (the node serves at most [`crate::node::MAX_STREAMS`] in all).
pub const MAX_STREAMS: usize = crate::node::MAX_STREAMS;
/// Receive window of one connection, all its streams together. Every stream is guaranteed
/// Yamux's initial 256 KiB; windows grow (towards the bandwidth-delay product) only as the
/// application reads.
pub const MAX_RECEIVE_WINDOW: usize = 128 * 1024 * 1024;
/// Inbound streams kept while nobody accepts them; more are reset.
const MAX_PENDING_INBOUND: usize = 256;

/// The multiplexer upgrade.
#[derive(Debug, Clone)]
pub struct Config(yamux::Config);

impl Config {
    /// Our settings (see the module docs).
    pub fn new() -> Self {
        let mut config = yamux::Config::default();
        config
            .set_max_num_streams(MAX_STREAMS)
            .set_max_connection_receive_window(Some(MAX_RECEIVE_WINDOW))
            .set_split_send_size(FRAME);
        Config(config)
    }

    fn connection<C>(self, socket: C, mode: yamux::Mode) -> Muxer<C>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        Muxer {
            connection: yamux::Connection::new(socket, self.0, mode),
            inbound: VecDeque::new(),
            inbound_waker: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once("/yamux/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = std::io::Error;
    type Future = Ready<Result<Muxer<C>, std::io::Error>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        ready(Ok(self.connection(socket, yamux::Mode::Server)))
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = std::io::Error;
    type Future = Ready<Result<Muxer<C>, std::io::Error>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        ready(Ok(self.connection(socket, yamux::Mode::Client)))
    }
}

/// One multiplexed connection.
///
/// Yamux makes progress (reads frames, sends window updates) only while someone polls for
/// inbound streams. libp2p polls [`StreamMuxer::poll`] for that and asks for inbound streams
/// separately, so streams that arrive during `poll` wait in a bounded queue.
#[derive(Debug)]
pub struct Muxer<C> {
    connection: yamux::Connection<C>,
    inbound: VecDeque<yamux::Stream>,
    inbound_waker: Option<Waker>,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Muxer<C> {
    /// Drives the connection until a new inbound stream arrives; a closed connection is an error.
    fn next_inbound(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<yamux::Stream, yamux::ConnectionError>> {
        self.connection
            .poll_next_inbound(cx)
            .map(|next| next.unwrap_or(Err(yamux::ConnectionError::Closed)))
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Substream = yamux::Stream;
    type Error = yamux::ConnectionError;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        if let Some(stream) = this.inbound.pop_front() {
            return Poll::Ready(Ok(stream));
        }
        let next = this.next_inbound(cx);
        if next.is_pending() {
            this.inbound_waker = Some(cx.waker().clone());
        }
        next
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.get_mut().connection.poll_new_outbound(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().connection.poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        loop {
            let stream = ready!(this.next_inbound(cx))?;
            if this.inbound.len() >= MAX_PENDING_INBOUND {
                tracing::warn!(%stream, "too many inbound streams waiting; resetting one");
                continue;
            }
            this.inbound.push_back(stream);
            if let Some(waker) = this.inbound_waker.take() {
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::poll_fn;
    use futures::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::compat::TokioAsyncReadCompatExt;

    /// A peer with stock Yamux settings (what libp2p-yamux runs) takes our large frames, and our
    /// muxer carries several streams at once both ways.
    #[tokio::test]
    async fn streams_cross_to_a_stock_yamux_peer_and_back() {
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        tokio::spawn(async move {
            let mut stock = yamux::Connection::new(
                theirs.compat(),
                yamux::Config::default(),
                yamux::Mode::Server,
            );
            while let Some(Ok(mut stream)) = poll_fn(|cx| stock.poll_next_inbound(cx)).await {
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    stream.read_to_end(&mut data).await.unwrap();
                    data.reverse();
                    stream.write_all(&data).await.unwrap();
                    stream.close().await.unwrap();
                });
            }
        });
        let mut muxer = Config::new().connection(ours.compat(), yamux::Mode::Client);
        let mut streams = Vec::new();
        for _ in 0..4 {
            let stream = poll_fn(|cx| Pin::new(&mut muxer).poll_outbound(cx)).await;
            streams.push(stream.unwrap());
        }
        tokio::spawn(async move { poll_fn(|cx| Pin::new(&mut muxer).poll(cx)).await });
        let exchanges = streams
            .into_iter()
            .enumerate()
            .map(|(i, mut stream)| async move {
                // Several frames and an odd tail.
                let sent: Vec<u8> = (0..3 * FRAME + 1000 * i + 7)
                    .map(|b| (b % 251) as u8)
                    .collect();
                stream.write_all(&sent).await.unwrap();
                stream.close().await.unwrap();
                let mut back = Vec::new();
                stream.read_to_end(&mut back).await.unwrap();
                back.reverse();
                assert!(back == sent, "stream {i} came back changed");
            });
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            futures::future::join_all(exchanges),
        )
        .await
        .expect("the exchanges finish");
    }
}
