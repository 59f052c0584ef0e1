//! Hybrid buckets: a bucket of ours paired with a bucket on another S3 service (AWS S3, GCS's S3
//! interface, any S3-compatible store), see `docs/hybrid.md`.
//!
//! - [`RemoteConfig`]: where the remote bucket is, how to sign in, and what the pairing does
//!   (mirror writes, fall back on reads, tier objects by a [`TierPolicy`]). Persisted per bucket in the metadata, the static
//!   secret wrapped by the master key; never logged, never returned by the admin API.
//! - [`RemoteStore`]: the few operations the gateway needs from a remote bucket, behind a trait;
//!   [`s3::S3Remote`] implements it with `aws-sdk-s3`.
//! - [`Remotes`]: the per-bucket configurations and one client per bucket, built on first use.
//! - [`pieces::RoutedPieces`]: pieces whose "node" is a remote's stand-in peer
//!   ([`parity_peer`]) are stored as objects in that remote (parity in the cloud).
//!
//! The mirror queue and its worker are in [`crate::mirror`]; reads that fall back to the remote
//! and writes that wait for it are in the object service ([`crate::objects`]).

pub mod pieces;
pub mod s3;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chunker::MasterKey;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::meta::{Meta, MetaError, RemoteRecord};
use crate::nodes::RemotePeers;

/// Format byte of a stored configuration (JSON follows).
const CONFIG_FORMAT: u8 = 1;

/// How a bucket's writes reach its remote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorMode {
    /// Writes are not copied.
    #[default]
    Off,
    /// Every committed write and delete is queued (in the same metadata write as the commit)
    /// and applied to the remote in the background, with retries.
    Async,
    /// As `Async`, and a write is acknowledged only once the remote holds it too.
    Sync,
}

/// Where the remote's credentials come from. (Its `Debug` leaves secrets out.)
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Credentials {
    /// Given here. The secret (and session token) is accepted when the remote is set and stored
    /// wrapped by the master key; it is never returned.
    Static {
        access_key_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_access_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_token: Option<String>,
    },
    /// An AWS shared credentials file (`[profile]` sections with `aws_access_key_id`, ...).
    File {
        path: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// The standard AWS chain of the gateway's process: environment variables, the shared
    /// config and credentials files (optionally a named profile), web identity, ECS, IMDS.
    Environment {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// Unsigned requests (a public bucket).
    Anonymous,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .finish_non_exhaustive(),
            Credentials::File { path, profile } => f
                .debug_struct("File")
                .field("path", path)
                .field("profile", profile)
                .finish(),
            Credentials::Environment { profile } => f
                .debug_struct("Environment")
                .field("profile", profile)
                .finish(),
            Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// A bucket's remote: where it is and what the pairing does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteConfig {
    /// The S3 endpoint URL; `None`: AWS S3's own endpoint for `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub region: String,
    /// The remote bucket's name.
    pub bucket: String,
    /// Prepended to every key in the remote bucket (e.g. `backup/`).
    #[serde(default)]
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible services need.
    #[serde(default)]
    pub path_style: bool,
    pub credentials: Credentials,
    #[serde(default)]
    pub mirror: MirrorMode,
    /// A GET or HEAD of a key this bucket does not have is answered from the remote.
    #[serde(default)]
    pub fallback: bool,
    /// With `fallback`: an object read from the remote is also copied into this bucket.
    #[serde(default)]
    pub copy_in: bool,
    /// Objects matching this policy have their bytes moved to the remote (their pieces are
    /// deleted from the nodes); reads follow them there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierPolicy>,
    /// Parity in the cloud: each new segment's `m` parity pieces are stored in the remote (as
    /// objects under `<prefix>.pieces/`), its `k` data pieces on nodes, so the remote holds no
    /// readable data but can always stand in for `m` lost nodes.
    #[serde(default)]
    pub parity: bool,
}

/// The stand-in peer id of `bucket`'s remote in manifests (for pieces stored there): a peer id
/// built from a hash, which no node can have (a node's id is its public key).
pub fn parity_peer(bucket: &str) -> libp2p::PeerId {
    let digest = blake3::hash(format!("gateway remote parity\0{bucket}").as_bytes());
    match libp2p::multihash::Multihash::<64>::wrap(0x12, digest.as_bytes())
        .map_err(|e| e.to_string())
        .and_then(|h| libp2p::PeerId::from_multihash(h).map_err(|_| "not a peer id".into()))
    {
        Ok(peer) => peer,
        Err(e) => unreachable!("a 32-byte sha2-256 multihash is a peer id: {e}"),
    }
}

/// Which objects a tiered bucket keeps in its remote: those matching every given condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPolicy {
    /// At least this old, e.g. `30d` (`None`: any age).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
    /// At least this large, e.g. `100MiB` (`None`: any size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub larger_than: Option<String>,
    /// Only while the online nodes' free space is below this share of their capacity, e.g.
    /// `10%` (`None`: whatever the free space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_free_below: Option<String>,
}

impl TierPolicy {
    /// The policy as (minimum age in ms, minimum size in bytes).
    pub fn limits(&self) -> Result<(u64, u64), ConfigError> {
        let invalid = |e: storage_node::units::UnitError| ConfigError::Invalid(e.to_string());
        let age = match &self.older_than {
            Some(a) => storage_node::units::parse_duration(a).map_err(invalid)?,
            None => std::time::Duration::ZERO,
        };
        let size = match &self.larger_than {
            Some(s) => storage_node::units::parse_size(s).map_err(invalid)?,
            None => 0,
        };
        Ok((u64::try_from(age.as_millis()).unwrap_or(u64::MAX), size))
    }

    /// The free-space condition as a fraction (`None`: none set).
    pub fn free_below(&self) -> Result<Option<f64>, ConfigError> {
        let Some(text) = &self.when_free_below else {
            return Ok(None);
        };
        match text
            .trim()
            .strip_suffix('%')
            .map(|n| n.trim().parse::<f64>())
        {
            Some(Ok(p)) if p > 0.0 && p <= 100.0 => Ok(Some(p / 100.0)),
            _ => Err(ConfigError::Invalid(format!(
                "when_free_below: a percentage above 0 and at most 100, like 10%, not {text:?}"
            ))),
        }
    }

    /// Whether an object of `size` bytes committed at `created_ms` belongs in the remote.
    pub fn matches(&self, size: u64, created_ms: u64, now_ms: u64) -> bool {
        self.limits()
            .is_ok_and(|(age, min)| size >= min && now_ms.saturating_sub(created_ms) >= age)
    }
}

/// Why a remote configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("key material: {0}")]
    Crypto(#[from] chunker::CryptoError),
}

impl RemoteConfig {
    /// Checks the fields a client sent.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.bucket.is_empty() || self.bucket.len() > 255 {
            return invalid("the remote bucket name must be 1 to 255 characters");
        }
        if self.region.is_empty() {
            return invalid("a region is required (us-east-1 for most S3-compatible services)");
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return invalid("the endpoint must be an http:// or https:// URL");
            }
        }
        if self.prefix.len() > 512 {
            return invalid("the prefix must be at most 512 bytes");
        }
        if self.copy_in && !self.fallback {
            return invalid("copy_in needs fallback");
        }
        if self.mirror == MirrorMode::Off && !self.fallback && self.tier.is_none() && !self.parity {
            return invalid("set at least one of mirror, fallback, tier and parity");
        }
        if let Some(t) = &self.tier {
            if t.older_than.is_none() && t.larger_than.is_none() && t.when_free_below.is_none() {
                return invalid(
                    "a tier policy needs at least one of older_than, larger_than, when_free_below",
                );
            }
            t.limits()?;
            t.free_below()?;
        }
        if let Credentials::Static {
            access_key_id,
            secret_access_key,
            ..
        } = &self.credentials
        {
            if access_key_id.is_empty() || secret_access_key.as_deref().unwrap_or("").is_empty() {
                return invalid("static credentials need access_key_id and secret_access_key");
            }
        }
        Ok(())
    }

    /// The configuration without its secrets (what the admin API shows).
    pub fn redacted(&self) -> RemoteConfig {
        let mut c = self.clone();
        if let Credentials::Static {
            secret_access_key,
            session_token,
            ..
        } = &mut c.credentials
        {
            *secret_access_key = None;
            *session_token = None;
        }
        c
    }

    /// The remote key of our `key`.
    pub fn remote_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// The secrets of static credentials, sealed for storage.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    wrapped_key: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// The stored form: the configuration without secrets, and the secrets sealed.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    config: RemoteConfig,
    #[serde(default)]
    sealed: Option<Sealed>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Secrets {
    secret_access_key: Option<String>,
    session_token: Option<String>,
}

/// A failure talking to a remote bucket.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("the remote has no such key")]
    NotFound,
    /// Worth retrying: the remote could not be reached, timed out or answered 5xx.
    #[error("the remote is unavailable: {0}")]
    Unavailable(String),
    /// Not worth retrying as is: access denied, no such bucket, a bad request.
    #[error("the remote refused: {0}")]
    Refused(String),
    /// The remote's answer does not match what was asked or stored.
    #[error("the remote's data is wrong: {0}")]
    Corrupt(String),
    /// The local side of a transfer failed (reading the object to send).
    #[error("reading the local object failed: {0}")]
    Source(String),
    /// The remote does not implement the operation (501 NotImplemented): retrying won't help.
    #[error("the remote does not support this: {0}")]
    Unsupported(String),
}

/// One object in a remote bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    pub last_modified_ms: u64,
    pub content_type: Option<String>,
    pub user_metadata: BTreeMap<String, String>,
    /// Stored response headers, by lower-case name (as in [`chunker::ObjectManifest`]).
    pub headers: BTreeMap<String, String>,
}

/// One page of a remote listing (keys with the remote's prefix, in UTF-8 byte order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteListing {
    pub objects: Vec<(String, RemoteObject)>,
    pub common_prefixes: Vec<String>,
    /// More entries follow.
    pub truncated: bool,
}

/// What an upload to a remote carries besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct UploadMeta {
    pub content_type: Option<String>,
    pub user_metadata: BTreeMap<String, String>,
    /// Stored response headers, by lower-case name (as in [`chunker::ObjectManifest`]).
    pub headers: BTreeMap<String, String>,
    /// The object's tag set.
    pub tags: BTreeMap<String, String>,
}

/// Bytes from or to a remote.
pub type ByteStream = BoxStream<'static, Result<Bytes, RemoteError>>;

/// The operations the gateway needs from a remote bucket. Keys are the remote's own keys
/// (prefix applied).
#[async_trait::async_trait]
pub trait RemoteStore: Send + Sync + std::fmt::Debug {
    /// An object's description, `None` if the key does not exist.
    async fn head(&self, key: &str) -> Result<Option<RemoteObject>, RemoteError>;
    /// Bytes `range` of an object (which must lie inside it).
    async fn get(&self, key: &str, range: Range<u64>) -> Result<ByteStream, RemoteError>;
    /// Stores `size` bytes from `body` under `key`, replacing what is there. Large bodies go as
    /// multipart uploads, read one part at a time.
    async fn put(
        &self,
        key: &str,
        meta: &UploadMeta,
        size: u64,
        body: ByteStream,
    ) -> Result<(), RemoteError>;
    /// An object's tag set as the remote gives it (not yet checked against S3's rules);
    /// [`RemoteError::NotFound`] if the key does not exist.
    async fn tags(&self, key: &str) -> Result<Vec<(String, String)>, RemoteError>;
    /// Replaces an object's tag set (an empty set removes its tags); [`RemoteError::NotFound`]
    /// if the key does not exist.
    async fn put_tags(&self, key: &str, tags: &BTreeMap<String, String>)
        -> Result<(), RemoteError>;
    /// Deletes a key; a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), RemoteError>;
    /// Up to `max` (≤ 1000) entries under `prefix` strictly after `after`, keys rolled up into
    /// common prefixes at `delimiter`. Listed objects carry no content type or metadata.
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Result<RemoteListing, RemoteError>;
}

/// Per-bucket remote configurations, with one client each (built when first needed, dropped
/// when the configuration changes). Buckets without a remote are remembered too, so the data
/// path's question "does this bucket have a remote?" costs a map lookup, not a metadata read.
pub struct Remotes {
    meta: Arc<Meta>,
    master: Arc<MasterKey>,
    peers: Arc<RemotePeers>,
    cache: Mutex<Cache>,
}

/// What [`Remotes::get`] learned, and a generation that every change bumps (a lookup that
/// overlapped a change does not store what it read).
#[derive(Default)]
struct Cache {
    remotes: HashMap<String, Option<Remote>>,
    generation: u64,
}

impl std::fmt::Debug for Remotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remotes").finish_non_exhaustive()
    }
}

/// A bucket's remote: its configuration and a client for it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub config: RemoteConfig,
    pub store: Arc<dyn RemoteStore>,
}

impl Remotes {
    /// The remotes in `meta`; those holding parity pieces get their stand-in peer registered
    /// in `peers`.
    pub fn new(
        meta: Arc<Meta>,
        master: Arc<MasterKey>,
        peers: Arc<RemotePeers>,
    ) -> Result<Self, ConfigError> {
        let remotes = Remotes {
            meta,
            master,
            peers,
            cache: Mutex::new(Cache::default()),
        };
        for (bucket, config) in remotes.all()? {
            if config.parity {
                remotes.peers.add(parity_peer(&bucket), &bucket);
            }
        }
        Ok(remotes)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets what is known of `bucket`'s remote (after it changed, or the bucket went away).
    pub fn forget(&self, bucket: &str) {
        let mut cache = self.cache();
        cache.generation += 1;
        cache.remotes.remove(bucket);
    }

    /// Pairs `bucket` with a remote (replacing any earlier pairing). With mirroring on, every
    /// object already in the bucket is queued for copying.
    pub fn set(&self, bucket: &str, config: &RemoteConfig) -> Result<(), ConfigError> {
        config.validate()?;
        if let Some(old) = self.config(bucket)? {
            let moved = (&old.endpoint, &old.bucket, &old.prefix)
                != (&config.endpoint, &config.bucket, &config.prefix);
            if moved {
                self.refuse_if_tiered(bucket)?;
            }
        }
        let sealed = match &config.credentials {
            Credentials::Static {
                secret_access_key,
                session_token,
                ..
            } => {
                let secrets = serde_json::to_vec(&Secrets {
                    secret_access_key: secret_access_key.clone(),
                    session_token: session_token.clone(),
                })
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
                let key = chunker::DataKey::generate()?;
                Some(Sealed {
                    wrapped_key: self.master.wrap(&key)?.as_bytes().to_vec(),
                    ciphertext: key.seal_inline(&secrets)?,
                })
            }
            _ => None,
        };
        let stored = Stored {
            config: config.redacted(),
            sealed,
        };
        let mut bytes = vec![CONFIG_FORMAT];
        serde_json::to_writer(&mut bytes, &stored)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mirrored = config.mirror != MirrorMode::Off;
        // A tiered bucket hears of writes too: overwriting a tiered object leaves a stale copy
        // in the remote to delete.
        let record = RemoteRecord {
            queue_writes: mirrored || config.tier.is_some(),
            queue_deletes: mirrored || config.fallback || config.tier.is_some(),
            config: bytes,
        };
        self.meta.set_remote(bucket, &record, mirrored)?;
        self.forget(bucket);
        if config.parity {
            self.peers.add(parity_peer(bucket), bucket);
        }
        Ok(())
    }

    /// Refuses to move or drop `bucket`'s remote while objects of the bucket (tiered) or
    /// pieces of them (parity) live there.
    fn refuse_if_tiered(&self, bucket: &str) -> Result<(), ConfigError> {
        let peer = crate::nodes::node_id(&parity_peer(bucket));
        let mut found = None;
        self.meta.scan_objects(bucket, "", b"", |o| {
            if matches!(o.manifest.body, chunker::manifest::Body::Remote { .. })
                || crate::meta::placed_pieces(&o.manifest)
                    .iter()
                    .any(|p| p.node == peer)
            {
                found = Some(o.key);
            }
            Ok(found.is_none())
        })?;
        match found {
            Some(key) => Err(ConfigError::Invalid(format!(
                "data of this bucket (such as object {key:?}) lives in its remote; \
                 the remote's endpoint, bucket and prefix cannot change while it does"
            ))),
            None => Ok(()),
        }
    }

    /// Unpairs `bucket`; `false` if it had no remote. Queued mirror work for it is dropped.
    /// Refused while objects of the bucket live in the remote (tiered).
    pub fn remove(&self, bucket: &str) -> Result<bool, ConfigError> {
        self.refuse_if_tiered(bucket)?;
        let had = self.meta.remove_remote(bucket)?;
        self.forget(bucket);
        Ok(had)
    }

    /// `bucket`'s remote configuration, secrets included.
    pub fn config(&self, bucket: &str) -> Result<Option<RemoteConfig>, ConfigError> {
        let Some(record) = self.meta.remote(bucket)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| {
            ConfigError::Meta(MetaError::Corrupt {
                what: "remote",
                reason,
            })
        };
        let stored: Stored = match record.config.split_first() {
            Some((&CONFIG_FORMAT, json)) => {
                serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?
            }
            _ => return Err(corrupt("unknown format".into())),
        };
        let mut config = stored.config;
        if let (
            Credentials::Static {
                secret_access_key,
                session_token,
                ..
            },
            Some(sealed),
        ) = (&mut config.credentials, stored.sealed)
        {
            let key = self
                .master
                .unwrap(&chunker::WrappedKey::from_bytes(sealed.wrapped_key))?;
            let secrets: Secrets = serde_json::from_slice(&key.open_inline(&sealed.ciphertext)?)
                .map_err(|e| {
                    ConfigError::Meta(MetaError::Corrupt {
                        what: "remote secret",
                        reason: e.to_string(),
                    })
                })?;
            *secret_access_key = secrets.secret_access_key;
            *session_token = secrets.session_token;
        }
        Ok(Some(config))
    }

    /// Every paired bucket with its configuration (secrets removed).
    pub fn all(&self) -> Result<Vec<(String, RemoteConfig)>, ConfigError> {
        let mut out = Vec::new();
        for bucket in self.meta.remote_buckets()? {
            if let Some(c) = self.config(&bucket)? {
                out.push((bucket, c.redacted()));
            }
        }
        Ok(out)
    }

    /// `bucket`'s remote with a client for it, `None` if the bucket has no remote.
    pub async fn get(&self, bucket: &str) -> Result<Option<Remote>, ConfigError> {
        let generation = {
            let cache = self.cache();
            if let Some(known) = cache.remotes.get(bucket) {
                return Ok(known.clone());
            }
            cache.generation
        };
        let remote = match self.config(bucket)? {
            Some(config) => {
                let store: Arc<dyn RemoteStore> = Arc::new(s3::S3Remote::connect(&config).await);
                Some(Remote { config, store })
            }
            None => None,
        };
        let mut cache = self.cache();
        if cache.generation == generation {
            cache.remotes.insert(bucket.to_string(), remote.clone());
        }
        Ok(remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RemoteConfig {
        RemoteConfig {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            bucket: "b".into(),
            prefix: "p/".into(),
            path_style: true,
            credentials: Credentials::Static {
                access_key_id: "AK".into(),
                secret_access_key: Some("SECRET".into()),
                session_token: None,
            },
            mirror: MirrorMode::Async,
            fallback: false,
            copy_in: false,
            tier: None,
            parity: false,
        }
    }

    #[test]
    fn secrets_are_stored_sealed_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(Meta::open(&dir.path().join("m")).unwrap());
        let master = Arc::new(MasterKey::from_bytes(&[7; 32]).unwrap());
        meta.create_bucket("local", 1, None).unwrap();
        let remotes = Remotes::new(meta.clone(), master, Default::default()).unwrap();
        remotes.set("local", &config()).unwrap();
        let raw = meta.remote("local").unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw.config).contains("SECRET"));
        assert_eq!(remotes.config("local").unwrap().unwrap(), config());
        let shown = serde_json::to_string(&remotes.all().unwrap()).unwrap();
        assert!(!shown.contains("SECRET"), "{shown}");
        let debug = format!("{:?}", remotes.config("local").unwrap());
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(remotes.remove("local").unwrap());
        assert!(remotes.config("local").unwrap().is_none());
    }

    #[tokio::test]
    async fn what_is_known_of_a_remote_follows_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(Meta::open(&dir.path().join("m")).unwrap());
        let master = Arc::new(MasterKey::from_bytes(&[7; 32]).unwrap());
        meta.create_bucket("b", 1, None).unwrap();
        let remotes = Remotes::new(meta.clone(), master, Default::default()).unwrap();
        assert!(remotes.get("b").await.unwrap().is_none()); // remembered as unpaired
        remotes.set("b", &config()).unwrap();
        assert_eq!(remotes.get("b").await.unwrap().unwrap().config, config());
        // The bucket goes (unpaired in the metadata) and comes back: no stale remote.
        meta.delete_bucket("b").unwrap();
        remotes.forget("b");
        meta.create_bucket("b", 2, None).unwrap();
        assert!(remotes.get("b").await.unwrap().is_none());
    }

    #[test]
    fn tier_policies_need_every_condition() {
        let p = TierPolicy {
            older_than: Some("1h".into()),
            larger_than: Some("1MiB".into()),
            when_free_below: None,
        };
        let hour = 3_600_000;
        assert!(p.matches(1 << 20, 0, hour));
        assert!(!p.matches((1 << 20) - 1, 0, hour));
        assert!(!p.matches(1 << 20, 1, hour));
        let any_age = TierPolicy {
            older_than: None,
            larger_than: Some("0".into()),
            when_free_below: Some("12.5%".into()),
        };
        assert!(any_age.matches(0, 5, 5));
        assert_eq!(any_age.free_below().unwrap(), Some(0.125));
        for bad in ["0%", "101%", "10", "x%"] {
            let p = TierPolicy {
                when_free_below: Some(bad.into()),
                ..any_age.clone()
            };
            assert!(p.free_below().is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_configurations_are_refused() {
        let mut c = config();
        c.endpoint = Some("ftp://x".into());
        assert!(c.validate().is_err());
        let mut c = config();
        c.mirror = MirrorMode::Off;
        assert!(c.validate().is_err());
        let mut c = config();
        c.copy_in = true;
        assert!(c.validate().is_err());
        let mut c = config();
        c.tier = Some(TierPolicy {
            older_than: None,
            larger_than: None,
            when_free_below: None,
        });
        assert!(c.validate().is_err());
        c.tier = Some(TierPolicy {
            older_than: Some("soon".into()),
            larger_than: None,
            when_free_below: None,
        });
        assert!(c.validate().is_err());
        let mut c = config();
        c.credentials = Credentials::Static {
            access_key_id: "AK".into(),
            secret_access_key: None,
            session_token: None,
        };
        assert!(c.validate().is_err());
    }
}
