//! Object metadata in rocksdb: buckets, manifests, access keys, known nodes, and the two piece
//! queues that make uploads and deletes crash-safe.
//!
//! Column families and their keys:
//! - `buckets`: bucket name → [`BucketRecord`].
//! - `objects`: `bucket 0x00 key` → [`chunker::ObjectManifest`]; byte order is S3's listing
//!   order (UTF-8 bytes), and a bucket's objects are one contiguous range.
//! - `keys`: access key id → [`AccessKeyRecord`] (the secret wrapped by the master key).
//! - `grants`: which keys may use which bucket (see [`grants`]).
//! - `nodes`: node id → [`NodeRecord`] (the last registration).
//! - `pending`: `upload id ‖ node ‖ piece` → (): every piece sent for an upload that is not
//!   committed yet. A commit removes its entries and the same write batch queues the pieces the
//!   manifest does not use for deletion; entries left at startup belong to uploads a crash cut
//!   short and are queued for deletion then.
//! - `gc`: `node ‖ piece` → [`Garbage`] and when it was queued: pieces to delete from nodes.
//!   Written in the same batch as whatever made them garbage (an overwrite, a delete, an
//!   abandoned upload), and removed by any later write that references the piece again; drained
//!   by the delete worker when the node is reachable, after a grace period for pieces that were
//!   once readable (see [`crate::gc`]).
//!
//! - `uploads`: `bucket 0x00 key 0x00 upload id` → [`UploadRecord`]: multipart uploads in
//!   progress, in listing order.
//! - `parts`: `upload id ‖ part number` → [`StoredPart`]: their uploaded parts.
//! - `held`, `bad`, `audits`, `reputation`, `repair`, `settings`: audits, reputation and repair
//!   (see [`health`]).
//! - `remotes`, `mirror`: hybrid buckets' remotes and the mirror queue (see [`hybrid`]).
//! - `ledger`: the usage ledger's periods, statements and queues (see [`ledger`]).
//!
//! Every value starts with a format byte.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use chunker::manifest::{Body, NodeId};
use chunker::{ObjectManifest, PieceId, WrappedKey};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use storage_node::protocol::Registration;

const CF_BUCKETS: &str = "buckets";
const CF_OBJECTS: &str = "objects";
const CF_KEYS: &str = "keys";
const CF_NODES: &str = "nodes";
const CF_PENDING: &str = "pending";
const CF_GC: &str = "gc";
const CF_UPLOADS: &str = "uploads";
const CF_PARTS: &str = "parts";
const ALL_CFS: [&str; 18] = [
    CF_BUCKETS,
    CF_OBJECTS,
    CF_KEYS,
    CF_NODES,
    CF_PENDING,
    CF_GC,
    CF_UPLOADS,
    CF_PARTS,
    health::CF_HELD,
    health::CF_BAD,
    health::CF_AUDITS,
    health::CF_REPUTATION,
    health::CF_REPAIR,
    health::CF_SETTINGS,
    hybrid::CF_REMOTES,
    hybrid::CF_MIRROR,
    ledger::CF_LEDGER,
    grants::CF_GRANTS,
];

/// Format byte of every record this module writes.
const RECORD_FORMAT: u8 = 1;

/// A metadata failure.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("stored {what} record is unreadable: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("the bucket already exists")]
    BucketExists,
    #[error("the bucket is not empty")]
    BucketNotEmpty,
    #[error("no such multipart upload")]
    NoSuchUpload,
    #[error("the object's current version does not meet the write's precondition")]
    PreconditionFailed,
    #[error("part {number} was replaced while the upload was being completed")]
    PartReplaced { number: u32 },
    #[error("upload has used all of its {0} part attempts")]
    AttemptsExhausted(u32),
}

/// Why a piece is queued for deletion, which decides how soon it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garbage {
    /// It was never part of anything readable (an abandoned upload's piece, a straggler the
    /// manifest did not use, an aborted upload's part): it may go at once.
    Unseen,
    /// It was readable until now (an overwritten or deleted object, a replaced part, a repair's
    /// old copy): a GET, copy or mirror upload that read the manifest before the change may
    /// still be fetching it, so it waits out the delete grace.
    Dropped,
}

/// Format byte of `gc` values (an empty value is an entry from before it: due at once).
const GC_FORMAT: u8 = 1;

fn encode_garbage(kind: Garbage, queued_ms: u64) -> [u8; 10] {
    let mut v = [0u8; 10];
    v[0] = GC_FORMAT;
    v[1] = match kind {
        Garbage::Unseen => 0,
        Garbage::Dropped => 1,
    };
    v[2..].copy_from_slice(&queued_ms.to_be_bytes());
    v
}

/// When a queued deletion may be carried out, given the delete grace (`None`: unreadable).
fn garbage_due(value: &[u8], grace_ms: u64) -> Option<u64> {
    match value {
        [] => Some(0),
        [GC_FORMAT, kind, ms @ ..] => {
            let queued = u64::from_be_bytes(<[u8; 8]>::try_from(ms).ok()?);
            match kind {
                0 => Some(queued),
                1 => Some(queued.saturating_add(grace_ms)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// What an object's current version must be for a write to go ahead (S3's conditional writes:
/// `If-None-Match: *`, `If-Match`). Checked under the write lock, in the committing write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    #[default]
    Anything,
    /// The key must not exist.
    Absent,
    /// The key must exist.
    Present,
    /// The key must exist with this ETag.
    ETag(String),
    /// The key must hold exactly this version (a repair swapping pieces of what it read).
    Unchanged(Box<ObjectManifest>),
}

impl Expect {
    /// Whether `current` (the version now stored, if any) satisfies the condition.
    pub fn holds(&self, current: Option<&ObjectManifest>) -> bool {
        match self {
            Expect::Anything => true,
            Expect::Absent => current.is_none(),
            Expect::Present => current.is_some(),
            Expect::ETag(e) => current.is_some_and(|m| m.etag == *e),
            Expect::Unchanged(v) => current == Some(&**v),
        }
    }
}

/// What a commit changes, which decides what else its write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// New bytes (a write): a mirrored bucket's remote must hear of it.
    Content,
    /// A new tag set: a mirrored bucket's remote must hear of it too.
    Tags,
    /// The same bytes on other nodes (a repair).
    Placement,
    /// The same bytes moved to the bucket's remote: refused while a change of the key is
    /// queued for the remote (the mirror worker could otherwise delete the tiered copy).
    Tiering,
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub created_ms: u64,
}

/// An S3 access key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    /// The secret, as a data key wrapped by the master key.
    pub secret: WrappedKey,
    pub created_ms: u64,
    pub description: String,
    /// A disabled key is refused (`InvalidAccessKeyId`, as S3 refuses an inactive key).
    pub disabled: bool,
}

/// Format of access key records this build writes; format 1 lacks `disabled`.
const KEY_FORMAT: u8 = 2;

/// Format 1 of [`AccessKeyRecord`].
#[derive(Deserialize)]
struct AccessKeyRecordV1 {
    secret: WrappedKey,
    created_ms: u64,
    description: String,
}

fn encode_key(record: &AccessKeyRecord) -> Vec<u8> {
    match postcard::to_extend(record, vec![KEY_FORMAT]) {
        Ok(v) => v,
        Err(e) => unreachable!("serializing to a Vec can't fail: {e}"),
    }
}

fn decode_key(bytes: &[u8]) -> Result<AccessKeyRecord, MetaError> {
    match bytes.split_first() {
        Some((&KEY_FORMAT, body)) => {
            let mut v = vec![RECORD_FORMAT];
            v.extend_from_slice(body);
            decode("access key", &v)
        }
        _ => {
            let old: AccessKeyRecordV1 = decode("access key", bytes)?;
            Ok(AccessKeyRecord {
                secret: old.secret,
                created_ms: old.created_ms,
                description: old.description,
                disabled: false,
            })
        }
    }
}

/// What the gateway remembers about a node between restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub registration: Registration,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

/// A piece on a node, as the queues name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PieceRef {
    pub node: NodeId,
    pub piece: PieceId,
}

/// One listed object.
#[derive(Debug, Clone)]
pub struct ListedObject {
    pub key: String,
    pub manifest: ObjectManifest,
}

/// The metadata database.
pub struct Meta {
    db: DB,
    /// Serializes read-modify-write changes (commit over an old version, delete, bucket
    /// removal) so their gc entries match what they replaced.
    write_lock: Mutex<()>,
    /// Keys the order of the `held` index (see [`health`]).
    order_key: [u8; 32],
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meta").finish_non_exhaustive()
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    match postcard::to_extend(value, vec![RECORD_FORMAT]) {
        Ok(v) => v,
        Err(e) => unreachable!("serializing to a Vec can't fail: {e}"),
    }
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, MetaError> {
    let corrupt = |reason: String| MetaError::Corrupt { what, reason };
    match bytes.split_first() {
        Some((&RECORD_FORMAT, body)) => match postcard::take_from_bytes(body) {
            Ok((v, [])) => Ok(v),
            Ok((_, rest)) => Err(corrupt(format!("{} trailing bytes", rest.len()))),
            Err(e) => Err(corrupt(e.to_string())),
        },
        Some((&f, _)) => Err(corrupt(format!("unknown format {f}"))),
        None => Err(corrupt("empty".into())),
    }
}

fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + key.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `node ‖ piece` with the node id length-prefixed, so one node's entries are a contiguous range.
fn node_piece_key(node: &NodeId, piece: &PieceId) -> Vec<u8> {
    let mut k = node_prefix(node);
    k.extend_from_slice(piece.as_bytes());
    k
}

fn node_prefix(node: &NodeId) -> Vec<u8> {
    let id = node.as_bytes();
    let mut k = Vec::with_capacity(1 + id.len() + 32);
    k.push(id.len() as u8); // NodeId is at most 128 bytes
    k.extend_from_slice(id);
    k
}

/// The node of a key that starts with [`node_prefix`], and the rest of the key.
fn split_node_prefix(key: &[u8]) -> Option<(NodeId, &[u8])> {
    let (&len, rest) = key.split_first()?;
    let (node, rest) = rest.split_at_checked(usize::from(len))?;
    Some((NodeId::new(node.to_vec()).ok()?, rest))
}

fn parse_node_piece(key: &[u8]) -> Option<PieceRef> {
    let (node, piece) = split_node_prefix(key)?;
    let piece: [u8; 32] = piece.try_into().ok()?;
    Some(PieceRef {
        node,
        piece: PieceId::from_bytes(piece),
    })
}

/// The smallest byte string greater than every string starting with `prefix` (`None`: there
/// is none, the prefix is all `0xff`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xff {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// Every piece an object's manifest places on a node.
pub fn placed_pieces(manifest: &ObjectManifest) -> Vec<PieceRef> {
    let Body::Segments(segments) = &manifest.body else {
        return Vec::new();
    };
    segments
        .iter()
        .flat_map(|s| &s.pieces)
        .filter_map(|p| p.node.clone().map(|node| PieceRef { node, piece: p.id }))
        .collect()
}

impl Meta {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, MetaError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = ALL_CFS
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        let mut meta = Meta {
            db,
            write_lock: Mutex::new(()),
            order_key: [0; 32],
        };
        meta.open_health()?;
        Ok(meta)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        match self.db.cf_handle(name) {
            Some(cf) => cf,
            None => unreachable!("column family {name} is created on open"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `batch` durably (synced to disk before returning).
    fn write(&self, batch: WriteBatch) -> Result<(), MetaError> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        Ok(self.db.write_opt(batch, &opts)?)
    }

    // --- buckets ---

    /// Creates a bucket, owned by the access key `owner` if given (see [`grants`]);
    /// [`MetaError::BucketExists`] if it is there.
    pub fn create_bucket(
        &self,
        name: &str,
        created_ms: u64,
        owner: Option<&str>,
    ) -> Result<(), MetaError> {
        let _guard = self.lock();
        if self.db.get_cf(self.cf(CF_BUCKETS), name)?.is_some() {
            return Err(MetaError::BucketExists);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_BUCKETS),
            name,
            encode(&BucketRecord { created_ms }),
        );
        if let Some(owner) = owner {
            self.add_owner(&mut batch, name, owner);
        }
        self.write(batch)
    }

    /// A bucket's record.
    pub fn bucket(&self, name: &str) -> Result<Option<BucketRecord>, MetaError> {
        self.db
            .get_cf(self.cf(CF_BUCKETS), name)?
            .map(|v| decode("bucket", &v))
            .transpose()
    }

    /// Every bucket, by name.
    pub fn buckets(&self) -> Result<Vec<(String, BucketRecord)>, MetaError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_BUCKETS), IteratorMode::Start)
        {
            let (k, v) = item?;
            let name = String::from_utf8(k.to_vec()).map_err(|_| MetaError::Corrupt {
                what: "bucket",
                reason: "name is not UTF-8".into(),
            })?;
            out.push((name, decode("bucket", &v)?));
        }
        Ok(out)
    }

    /// Removes an empty bucket.
    pub fn delete_bucket(&self, name: &str) -> Result<(), MetaError> {
        let _guard = self.lock();
        if self.bucket(name)?.is_none() {
            return Err(MetaError::NoSuchBucket);
        }
        let prefix = object_key(name, "");
        let mut it = self.db.iterator_cf(
            self.cf(CF_OBJECTS),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        if let Some(item) = it.next() {
            if item?.0.starts_with(&prefix) {
                return Err(MetaError::BucketNotEmpty);
            }
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_BUCKETS), name);
        self.unpair(&mut batch, name);
        self.drop_grants_of_bucket(&mut batch, name)?;
        self.write(batch)
    }

    // --- objects ---

    /// An object's manifest.
    pub fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectManifest>, MetaError> {
        match self
            .db
            .get_cf(self.cf(CF_OBJECTS), object_key(bucket, key))?
        {
            Some(bytes) => {
                ObjectManifest::decode(&bytes)
                    .map(Some)
                    .map_err(|e| MetaError::Corrupt {
                        what: "manifest",
                        reason: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    /// Records that `pieces` were sent for upload `upload`, before they are sent.
    pub fn add_pending(&self, upload: &[u8; 16], pieces: &[PieceRef]) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        for p in pieces {
            let mut k = upload.to_vec();
            k.extend_from_slice(&node_piece_key(&p.node, &p.piece));
            batch.put_cf(self.cf(CF_PENDING), k, []);
        }
        self.write(batch)
    }

    fn pending_of(&self, upload: &[u8; 16]) -> Result<Vec<(Vec<u8>, PieceRef)>, MetaError> {
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_PENDING),
            IteratorMode::From(upload, Direction::Forward),
        );
        for item in it {
            let (k, _) = item?;
            if !k.starts_with(upload) {
                break;
            }
            if let Some(p) = parse_node_piece(&k[16..]) {
                out.push((k.to_vec(), p));
            }
        }
        Ok(out)
    }

    /// Makes an object visible, atomically: stores its manifest, queues the pieces of the
    /// version it replaces and the upload's unused pieces for deletion, and clears the upload's
    /// pending entries. [`MetaError::NoSuchBucket`] if the bucket went away meanwhile.
    pub fn commit_object(
        &self,
        bucket: &str,
        key: &str,
        manifest: &ObjectManifest,
        upload: &[u8; 16],
        expect: &Expect,
    ) -> Result<(), MetaError> {
        self.commit(bucket, key, manifest, Some(upload), expect, Change::Content)
    }

    /// [`Meta::commit_object`], for a `change` of the given kind (`upload`: the upload whose
    /// pending pieces the manifest settles, if any).
    fn commit(
        &self,
        bucket: &str,
        key: &str,
        manifest: &ObjectManifest,
        upload: Option<&[u8; 16]>,
        expect: &Expect,
        change: Change,
    ) -> Result<(), MetaError> {
        let _guard = self.lock();
        if self.bucket(bucket)?.is_none() {
            return Err(MetaError::NoSuchBucket);
        }
        let mut batch = WriteBatch::default();
        let used: HashSet<PieceRef> = placed_pieces(manifest).into_iter().collect();
        match change {
            Change::Content => self.queue_mirror(&mut batch, bucket, key, Queued::Write)?,
            Change::Tags => self.queue_mirror(&mut batch, bucket, key, Queued::Tags)?,
            Change::Placement => {}
            Change::Tiering => {
                if self.mirror_entry(bucket, key)?.is_some() {
                    return Err(MetaError::PreconditionFailed);
                }
            }
        }
        self.replace_object(&mut batch, bucket, key, manifest, &used, expect)?;
        if let Some(upload) = upload {
            self.settle_pending(&mut batch, upload, &used)?;
        }
        self.write(batch)
    }

    /// Replaces the object version `old` with `new` (the same object, changed in where its
    /// bytes are or in its attributes) if `old` is still what is stored; `false` if the object
    /// changed or went away meanwhile.
    fn swap(
        &self,
        bucket: &str,
        key: &str,
        old: &ObjectManifest,
        new: &ObjectManifest,
        upload: Option<&[u8; 16]>,
        change: Change,
    ) -> Result<bool, MetaError> {
        let expect = Expect::Unchanged(Box::new(old.clone()));
        match self.commit(bucket, key, new, upload, &expect, change) {
            Ok(()) => Ok(true),
            Err(MetaError::PreconditionFailed | MetaError::NoSuchBucket) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds to `batch`: clear `upload`'s pending entries, queueing those not in `used`.
    fn settle_pending(
        &self,
        batch: &mut WriteBatch,
        upload: &[u8; 16],
        used: &HashSet<PieceRef>,
    ) -> Result<(), MetaError> {
        for (k, piece) in self.pending_of(upload)? {
            batch.delete_cf(self.cf(CF_PENDING), k);
            if !used.contains(&piece) {
                self.queue_gc(batch, &piece, Garbage::Unseen);
            }
        }
        Ok(())
    }

    /// Adds to `batch`: store `manifest` under `bucket`/`key`, queueing the pieces of the
    /// version it replaces that are not in `used`. [`MetaError::PreconditionFailed`] (and
    /// nothing added) if the version it replaces does not meet `expect`.
    fn replace_object(
        &self,
        batch: &mut WriteBatch,
        bucket: &str,
        key: &str,
        manifest: &ObjectManifest,
        used: &HashSet<PieceRef>,
        expect: &Expect,
    ) -> Result<(), MetaError> {
        let old = self.object(bucket, key)?;
        if !expect.holds(old.as_ref()) {
            return Err(MetaError::PreconditionFailed);
        }
        if let Some(old) = old {
            for p in placed_pieces(&old) {
                if !used.contains(&p) {
                    self.queue_gc(batch, &p, Garbage::Dropped);
                    self.drop_held(batch, &p);
                }
            }
        }
        self.unqueue_gc(batch, used);
        self.add_held(batch, bucket, key, manifest);
        batch.put_cf(
            self.cf(CF_OBJECTS),
            object_key(bucket, key),
            manifest.encode(),
        );
        Ok(())
    }

    fn queue_gc(&self, batch: &mut WriteBatch, piece: &PieceRef, kind: Garbage) {
        batch.put_cf(
            self.cf(CF_GC),
            node_piece_key(&piece.node, &piece.piece),
            encode_garbage(kind, crate::time::now_ms()),
        );
    }

    /// Adds to `batch`: cancel any queued deletion of `pieces` (a write that references a
    /// piece makes it live again, whatever queued it before).
    fn unqueue_gc<'a>(
        &self,
        batch: &mut WriteBatch,
        pieces: impl IntoIterator<Item = &'a PieceRef>,
    ) {
        for p in pieces {
            batch.delete_cf(self.cf(CF_GC), node_piece_key(&p.node, &p.piece));
        }
    }

    /// Gives up upload `upload`: all its pieces are queued for deletion.
    pub fn abandon_upload(&self, upload: &[u8; 16]) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        for (k, piece) in self.pending_of(upload)? {
            batch.delete_cf(self.cf(CF_PENDING), k);
            self.queue_gc(&mut batch, &piece, Garbage::Unseen);
        }
        self.write(batch)
    }

    /// At startup: every pending entry belongs to an upload that died with the last process;
    /// queue them all for deletion. Returns how many pieces were queued.
    pub fn abandon_all_uploads(&self) -> Result<usize, MetaError> {
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for item in self
            .db
            .iterator_cf(self.cf(CF_PENDING), IteratorMode::Start)
        {
            let (k, _) = item?;
            if let Some(piece) = k.get(16..).and_then(parse_node_piece) {
                self.queue_gc(&mut batch, &piece, Garbage::Unseen);
                n += 1;
            }
            batch.delete_cf(self.cf(CF_PENDING), k);
        }
        self.write(batch)?;
        Ok(n)
    }

    /// Deletes an object (queuing its pieces for deletion, and the key for a remote that
    /// wants to hear of deletes, which may hold it even if this bucket does not). `false` if
    /// there was none.
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<bool, MetaError> {
        let _guard = self.lock();
        let mut batch = WriteBatch::default();
        self.queue_mirror(&mut batch, bucket, key, Queued::Delete)?;
        let Some(old) = self.object(bucket, key)? else {
            if !batch.is_empty() {
                self.write(batch)?;
            }
            return Ok(false);
        };
        for p in placed_pieces(&old) {
            self.queue_gc(&mut batch, &p, Garbage::Dropped);
            self.drop_held(&mut batch, &p);
        }
        batch.delete_cf(self.cf(CF_OBJECTS), object_key(bucket, key));
        self.write(batch)?;
        Ok(true)
    }

    /// Objects of `bucket` whose keys start with `prefix` and are not below `from` (raw key
    /// bytes), in order, calling `visit` on each until it returns `false`.
    pub fn scan_objects(
        &self,
        bucket: &str,
        prefix: &str,
        from: &[u8],
        mut visit: impl FnMut(ListedObject) -> Result<bool, MetaError>,
    ) -> Result<(), MetaError> {
        let base = object_key(bucket, "");
        let mut start = base.clone();
        start.extend_from_slice(from.max(prefix.as_bytes()));
        let full_prefix = object_key(bucket, prefix);
        let it = self.db.iterator_cf(
            self.cf(CF_OBJECTS),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&full_prefix) {
                break;
            }
            let key = std::str::from_utf8(&k[base.len()..])
                .map_err(|_| MetaError::Corrupt {
                    what: "object key",
                    reason: "not UTF-8".into(),
                })?
                .to_string();
            let manifest = ObjectManifest::decode(&v).map_err(|e| MetaError::Corrupt {
                what: "manifest",
                reason: e.to_string(),
            })?;
            if !visit(ListedObject { key, manifest })? {
                break;
            }
        }
        Ok(())
    }

    // --- the delete queue ---

    /// Up to `limit` queued deletions for `node` that are due at `now_ms` (pieces once readable
    /// wait `grace_ms` after they were queued), in key order after the piece `after`.
    pub fn gc_due(
        &self,
        node: &NodeId,
        after: Option<&PieceId>,
        limit: usize,
        now_ms: u64,
        grace_ms: u64,
    ) -> Result<Vec<PieceId>, MetaError> {
        let prefix = node_prefix(node);
        let start = match after {
            Some(p) => {
                let mut k = node_piece_key(node, p);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_GC),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            // An unreadable value is due at once: deleting an unreferenced piece early is safe
            // (the worker re-checks references), keeping it forever is a leak.
            let due = garbage_due(&v, grace_ms).unwrap_or(0);
            if due > now_ms {
                continue;
            }
            if let Some(p) = parse_node_piece(&k) {
                out.push(p.piece);
            }
        }
        Ok(out)
    }

    /// The nodes with queued deletions and how many each.
    pub fn gc_nodes(&self) -> Result<Vec<(NodeId, u64)>, MetaError> {
        let mut out: Vec<(NodeId, u64)> = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_GC), IteratorMode::Start) {
            let (k, _) = item?;
            let Some(p) = parse_node_piece(&k) else {
                continue;
            };
            match out.last_mut() {
                Some((n, count)) if *n == p.node => *count += 1,
                _ => out.push((p.node, 1)),
            }
        }
        Ok(out)
    }

    /// Removes deletions that are done.
    pub fn gc_done(&self, node: &NodeId, pieces: &[PieceId]) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        for p in pieces {
            batch.delete_cf(self.cf(CF_GC), node_piece_key(node, p));
        }
        self.write(batch)
    }

    // --- access keys ---

    /// Stores an access key.
    pub fn put_access_key(&self, id: &str, record: &AccessKeyRecord) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_KEYS), id, encode_key(record));
        self.write(batch)
    }

    /// An access key.
    pub fn access_key(&self, id: &str) -> Result<Option<AccessKeyRecord>, MetaError> {
        self.db
            .get_cf(self.cf(CF_KEYS), id)?
            .map(|v| decode_key(&v))
            .transpose()
    }

    /// Every access key id with its record.
    pub fn access_keys(&self) -> Result<Vec<(String, AccessKeyRecord)>, MetaError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_KEYS), IteratorMode::Start) {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(&k).into_owned(), decode_key(&v)?));
        }
        Ok(out)
    }

    /// Removes an access key and its grants; `false` if there was none.
    pub fn delete_access_key(&self, id: &str) -> Result<bool, MetaError> {
        let _guard = self.lock();
        if self.access_key(id)?.is_none() {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_KEYS), id);
        self.drop_grants_of_key(&mut batch, id)?;
        self.write(batch)?;
        Ok(true)
    }

    // --- nodes ---

    /// Records a node's registration.
    pub fn put_node(&self, node: &NodeId, record: &NodeRecord) -> Result<(), MetaError> {
        Ok(self
            .db
            .put_cf(self.cf(CF_NODES), node.as_bytes(), encode(record))?)
    }

    /// Every node ever registered.
    pub fn nodes(&self) -> Result<Vec<(NodeId, NodeRecord)>, MetaError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_NODES), IteratorMode::Start) {
            let (k, v) = item?;
            let Ok(id) = NodeId::new(k.to_vec()) else {
                continue;
            };
            out.push((id, decode("node", &v)?));
        }
        Ok(out)
    }
}

pub mod grants;
pub mod health;
pub mod hybrid;
pub mod ledger;
mod multipart;
pub use grants::{BucketGrants, Grant};
pub use health::{AuditRecord, BadPiece, HeldPiece, RepairEntry, Verdict};
use hybrid::Queued;
pub use hybrid::{MirrorBacklog, MirrorEntry, MirrorItem, RemoteRecord};
pub use multipart::{StoredPart, UploadRecord, UploadsFrom};

#[cfg(test)]
mod tests;
