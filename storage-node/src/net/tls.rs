//! The libp2p TLS 1.3 handshake (`/tls/1.0.0`) with AES-GCM preferred.
//!
//! `libp2p-tls` lists ChaCha20-Poly1305 first, so two of its peers always agree on ChaCha20,
//! which on this hardware costs about a quarter of the transport's CPU (the transport bench's
//! profile: `chacha20_poly1305_{seal,open}` 23 % of all samples), while AES-GCM runs at ~10 GB/s.
//! This upgrade is the same handshake as libp2p-tls (a self-signed certificate carrying the
//! libp2p extension that binds it to the peer's identity key, exactly one certificate, no SNI,
//! ALPN `libp2p`, mutual authentication), built from `libp2p-tls`'s own certificate functions,
//! with the cipher suites ordered AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305. It interoperates
//! with stock libp2p peers (they negotiate whatever both support).

use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite, FutureExt};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use libp2p::identity::Keypair;
use libp2p::tls::certificate;
use libp2p::PeerId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::aws_lc_rs::cipher_suite::{
    TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use futures::io::BufReader;

/// A secured connection: rustls over a read buffer (rustls reads at most 4 KiB per call; the
/// buffer turns those into one socket read per 64 KiB), under [`JoinWrites`] (Yamux writes each
/// frame's 12-byte header and its body separately; joined, they leave as one TLS write).
///
/// The read buffer lives as long as the connection, so it is kept small: a gateway holds one
/// connection per node. 256 KiB measured no faster (docs/performance.md).
pub type TlsStream<C> = JoinWrites<futures_rustls::TlsStream<BufReader<C>>>;

const READ_BUFFER: usize = 64 * 1024;
/// Writes up to this size wait in [`JoinWrites`] for the next one.
const SMALL_WRITE: usize = 8 * 1024;
/// Plaintext rustls seals ahead of the socket: two Yamux frames, so each frame leaves in one
/// `writev` (rustls' default, 64 KiB, split every frame in two). Held only while the socket is
/// backed up.
const SEND_BUFFER: usize = 2 * super::mux::FRAME;

/// ALPN protocol id of the libp2p TLS handshake.
const ALPN: &[u8] = b"libp2p";

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("generate the TLS certificate: {0}")]
    Certificate(#[from] certificate::GenError),
    #[error("build the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsUpgradeError {
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("the peer's certificate is not a libp2p certificate")]
    Certificate,
}

/// The security upgrade: TLS 1.3 per the libp2p spec, AES-GCM first.
#[derive(Clone)]
pub struct Config {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tls::Config").finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

impl Config {
    /// A configuration proving `identity` to peers.
    pub fn new(identity: &Keypair) -> Result<Self, TlsConfigError> {
        let (cert, key) = certificate::generate(identity)?;
        let provider = provider();
        let signer = provider.key_provider.load_private_key(key)?;
        // A resolver rather than `with_single_cert`: webpki would refuse the certificate for its
        // critical libp2p extension, which our verifier checks instead.
        let own = Arc::new(OwnCert(Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert],
            signer,
        ))));
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(Libp2pVerifier))
            .with_cert_resolver(own.clone());
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Libp2pVerifier))
            .with_client_cert_resolver(own);
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Config {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// Always presents our one certificate.
#[derive(Debug)]
struct OwnCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OwnCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl rustls::client::ResolvesClientCert for OwnCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The peer id the (already verified) certificate of a finished handshake proves.
fn peer_of(state: &rustls::CommonState) -> Result<PeerId, TlsUpgradeError> {
    match state.peer_certificates() {
        Some([cert]) => certificate::parse(cert)
            .map(|c| c.peer_id())
            .map_err(|_| TlsUpgradeError::Certificate),
        _ => Err(TlsUpgradeError::Certificate),
    }
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once("/tls/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsUpgradeError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            let mut stream = futures_rustls::TlsAcceptor::from(self.server)
                .accept(BufReader::with_capacity(READ_BUFFER, socket))
                .await
                .map_err(TlsUpgradeError::Handshake)?;
            let peer = peer_of(stream.get_ref().1)?;
            stream.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
            Ok((peer, JoinWrites::new(stream.into())))
        }
        .boxed()
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsUpgradeError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            // The spec forbids SNI: an unspecified IP address as the name sends none.
            let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
            let mut stream = futures_rustls::TlsConnector::from(self.client)
                .connect(name, BufReader::with_capacity(READ_BUFFER, socket))
                .await
                .map_err(TlsUpgradeError::Handshake)?;
            // The swarm checks this id against the one it dialed.
            let peer = peer_of(stream.get_ref().1)?;
            stream.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
            Ok((peer, JoinWrites::new(stream.into())))
        }
        .boxed()
    }
}

/// Holds writes of up to [`SMALL_WRITE`] bytes and sends them together with the next write, as
/// one vectored write (rustls joins the slices into one record), or on flush.
///
/// Yamux writes a frame's 12-byte header and then its body; through a plain buffer the header
/// went out alone, its own TLS record and its own `writev`. Window updates and pings are small
/// writes too and join whatever follows.
#[derive(Debug)]
pub struct JoinWrites<W> {
    inner: W,
    held: Vec<u8>,
}

impl<W> JoinWrites<W> {
    fn new(inner: W) -> Self {
        JoinWrites {
            inner,
            held: Vec::with_capacity(SMALL_WRITE),
        }
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: AsyncWrite + Unpin> JoinWrites<W> {
    /// Writes out what is held.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for JoinWrites<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.len() + buf.len() <= SMALL_WRITE {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        while !this.held.is_empty() {
            let both = [IoSlice::new(&this.held), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &both))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n > this.held.len() {
                let taken = n - this.held.len();
                this.held.clear();
                return Poll::Ready(Ok(taken));
            }
            this.held.drain(..n);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

impl<W: AsyncRead + Unpin> AsyncRead for JoinWrites<W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

/// Checks what the spec demands of a peer's certificate chain: exactly one certificate,
/// self-signed, with a valid libp2p extension (`certificate::parse` checks both), and handshake
/// signatures made with that certificate's key.
#[derive(Debug)]
struct Libp2pVerifier;

fn check_chain(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), rustls::Error> {
    if !intermediates.is_empty() {
        return Err(rustls::Error::General(
            "libp2p TLS requires exactly one certificate".into(),
        ));
    }
    certificate::parse(end_entity)
        .map(|_| ())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))
}

fn check_signature(
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    message: &[u8],
) -> Result<HandshakeSignatureValid, rustls::Error> {
    certificate::parse(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?
        .verify_signature(dss.scheme, message, dss.signature())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}

fn schemes() -> Vec<SignatureScheme> {
    vec![
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ED25519,
        SignatureScheme::RSA_PSS_SHA512,
        SignatureScheme::RSA_PSS_SHA384,
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA512,
        SignatureScheme::RSA_PKCS1_SHA384,
        SignatureScheme::RSA_PKCS1_SHA256,
    ]
}

fn no_tls12() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

impl ServerCertVerifier for Libp2pVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_chain(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_signature(cert, dss, message)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

impl ClientCertVerifier for Libp2pVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_chain(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_signature(cert, dss, message)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn peers_authenticate_each_other_agree_on_aes_gcm_and_exchange_bytes() {
        use futures::{AsyncReadExt, AsyncWriteExt};
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (ca, cb) = (Config::new(&a).unwrap(), Config::new(&b).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // More than both buffers, in an odd size, then a small write that only a flush sends.
        let big: Vec<u8> = (0..(READ_BUFFER + SEND_BUFFER + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        let expected = big.clone();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (peer, mut stream) = cb
                .upgrade_inbound(socket.compat(), "/tls/1.0.0")
                .await
                .unwrap();
            let mut got = vec![0u8; expected.len()];
            stream.read_exact(&mut got).await.unwrap();
            assert!(got == expected, "bytes changed in transit");
            stream.write_all(b"thanks").await.unwrap();
            stream.flush().await.unwrap();
            peer
        });
        let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (seen_b, mut stream) = ca
            .upgrade_outbound(socket.compat(), "/tls/1.0.0")
            .await
            .unwrap();
        assert_eq!(seen_b, b.public().to_peer_id());
        let suite = stream
            .get_ref()
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .unwrap();
        assert_eq!(suite.suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        stream.write_all(&big[..7]).await.unwrap();
        stream.write_all(&big[7..]).await.unwrap();
        stream.flush().await.unwrap();
        let mut reply = [0u8; 6];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"thanks");
        assert_eq!(server.await.unwrap(), a.public().to_peer_id());
    }

    /// Takes at most `max` bytes per call (across slices when vectored) and is not ready every
    /// other call, like a socket with a full send buffer.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
        ready: bool,
    }

    impl Trickle {
        fn poll_take(
            &mut self,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.ready = !self.ready;
            if !self.ready {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut taken = 0;
            for buf in bufs {
                let n = buf.len().min(self.max - taken);
                self.out.extend_from_slice(&buf[..n]);
                taken += n;
            }
            Poll::Ready(Ok(taken))
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().poll_take(cx, &[IoSlice::new(buf)])
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().poll_take(cx, bufs)
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn joined_writes_arrive_whole_and_in_order_through_partial_writes() {
        use futures::AsyncWriteExt;
        // Yamux-like: 12-byte headers, window updates, bodies up to a frame, in mixed sizes.
        let sizes = [
            12,
            131_072,
            12,
            12,
            5,
            70_000,
            12,
            SMALL_WRITE,
            1,
            SMALL_WRITE + 1,
            12,
            3,
        ];
        let mut expected = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            expected.extend((0..n).map(|j| (i * 31 + j) as u8));
        }
        for max in [1, 7, 12, 4096, SMALL_WRITE + 5, 1 << 20] {
            let mut w = JoinWrites::new(Trickle {
                out: Vec::new(),
                max,
                ready: false,
            });
            futures::executor::block_on(async {
                let mut at = 0;
                for &n in &sizes {
                    w.write_all(&expected[at..at + n]).await.unwrap();
                    at += n;
                }
                w.flush().await.unwrap();
            });
            assert!(
                w.inner.out == expected,
                "bytes changed with {max} bytes per write"
            );
            assert!(w.held.is_empty());
        }
    }
}
