//! An S3 service other than ours, for hybrid-bucket tests: `s3s-fs` (an independent S3
//! implementation storing objects as files) served in this process on an ephemeral port, with
//! SigV4 checked against its own key. It can be stopped and started again on the same port to
//! play a remote outage.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use axum::error_handling::HandleError;
use gateway::hybrid::{MirrorMode, RemoteConfig};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The remote's access key.
pub const REMOTE_KEY: &str = "REMOTEACCESSKEY";
/// The remote's secret.
pub const REMOTE_SECRET: &str = "remote-secret-key-for-tests";

/// A running (or stopped) S3 server.
#[derive(Debug)]
pub struct RemoteS3 {
    pub addr: SocketAddr,
    root: PathBuf,
    serving: Option<(CancellationToken, JoinHandle<()>)>,
    _dir: Option<tempfile::TempDir>,
}

impl RemoteS3 {
    /// Starts a server with an empty store.
    pub async fn start() -> RemoteS3 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut remote = RemoteS3 {
            addr,
            root,
            serving: None,
            _dir: Some(dir),
        };
        remote.serve(listener);
        remote
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let fs = s3s_fs::FileSystem::new(&self.root).unwrap();
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(REMOTE_KEY, REMOTE_SECRET));
        let service = HandleError::new(b.build(), |_e: s3s::HttpError| async move {
            axum::http::StatusCode::BAD_REQUEST
        });
        let app = axum::Router::new().fallback_service(service);
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        self.serving = Some((cancel, task));
    }

    /// The files behind it (bucket directories, object files).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stops serving: connections are refused until [`RemoteS3::restart`].
    pub async fn stop(&mut self) {
        if let Some((cancel, task)) = self.serving.take() {
            cancel.cancel();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
    }

    /// Serves again on the same port, with the same store.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client of the remote itself (to look behind the gateway's back).
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(Credentials::new(
                REMOTE_KEY,
                REMOTE_SECRET,
                None,
                None,
                "remote",
            ))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Creates a bucket on it.
    pub async fn create_bucket(&self, name: &str) {
        self.client()
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap();
    }

    /// A remote configuration pointing at `bucket` here with static credentials.
    pub fn config(&self, bucket: &str, mirror: MirrorMode, fallback: bool) -> RemoteConfig {
        RemoteConfig {
            endpoint: Some(self.endpoint()),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            prefix: String::new(),
            path_style: true,
            credentials: gateway::hybrid::Credentials::Static {
                access_key_id: REMOTE_KEY.into(),
                secret_access_key: Some(REMOTE_SECRET.into()),
                session_token: None,
            },
            mirror,
            fallback,
            copy_in: false,
            tier: None,
            parity: false,
        }
    }

    /// The remote's object, `None` if it has none under `key`.
    pub async fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
            Err(e) => {
                let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e).map(str::to_string);
                assert_eq!(code.as_deref(), Some("NoSuchKey"), "{e:?}");
                None
            }
        }
    }
}
