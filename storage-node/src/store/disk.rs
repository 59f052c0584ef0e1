//! The on-disk store: a rocksdb index, small pieces inline in it, large pieces as files.
//!
//! Layout under the data directory:
//! - `index/`: rocksdb with two column families: `pieces` (id → [`Record`]) and `inline`
//!   (id → bytes, for pieces up to [`DiskStoreOptions::inline_max`]).
//! - `pieces/ab/cd/<id hex>`: one file per large piece, fanned out by the id's first two bytes.
//! - `tmp/`: pieces being written.
//!
//! A large put writes `tmp/…`, fsyncs it, renames it into place, fsyncs the directory, and only
//! then writes the index record (synced): a piece is acknowledged only once both are durable. A
//! delete removes the record first, then the file. So a file without a record was never
//! acknowledged or is being deleted, and [`DiskStore::open`] removes such files and everything in
//! `tmp/`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use chunker::{Challenge, Outboard, PieceId, Proof};
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use super::{
    check_incoming, check_range, decode_record, encode_record, now_ms, PieceInfo, PieceStore,
    PutOutcome, Rot, ScrubResult, StateEntry, StateStore, StoreError, StoreStats,
};

const CF_PIECES: &str = "pieces";
const CF_INLINE: &str = "inline";
const CF_STATE: &str = "state";
const COUNTERS_KEY: &[u8] = b"counters";
const LOCK_STRIPES: usize = 64;
/// Disk space a put leaves free, so that the index (rocksdb) always has room for its log and
/// deletes can still be recorded: a put that would leave less is refused as
/// [`StoreError::DiskFull`] before anything is written.
pub const DISK_RESERVE: u64 = 16 << 20;

/// Free bytes on the filesystem holding `path` (what an unprivileged writer may use).
pub fn disk_free(path: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Tuning of a [`DiskStore`].
#[derive(Debug, Clone)]
pub struct DiskStoreOptions {
    /// Most bytes of pieces the store will hold.
    pub capacity: u64,
    /// Pieces up to this size live in the index instead of their own file.
    pub inline_max: usize,
    /// fsync every acknowledged write (turn off only in benchmarks).
    pub sync: bool,
}

impl DiskStoreOptions {
    /// Defaults for a capacity: pieces up to 32 KiB inline, every write synced.
    pub fn new(capacity: u64) -> Self {
        DiskStoreOptions {
            capacity,
            inline_max: 32 * 1024,
            sync: true,
        }
    }
}

/// The index record of one piece.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    len: u64,
    stored_ms: u64,
    verified_ms: u64,
    inline: bool,
    outboard: Vec<u8>,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        encode_record(self)
    }

    fn decode(id: &PieceId, bytes: &[u8]) -> Result<Self, StoreError> {
        decode_record(bytes).ok_or(StoreError::BadRecord {
            id: *id,
            rot: Rot::Record,
        })
    }

    fn info(&self, id: PieceId) -> PieceInfo {
        PieceInfo {
            id,
            len: self.len,
            stored_ms: self.stored_ms,
            verified_ms: self.verified_ms,
        }
    }
}

/// What a node has done, kept across restarts (shown by `storage-node status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounters {
    pub audits_answered: u64,
    pub audits_failed: u64,
    pub last_scrub_finished_ms: Option<u64>,
    pub scrub_corrupt_found: u64,
}

impl NodeCounters {
    fn encode(&self) -> Vec<u8> {
        encode_record(self)
    }

    /// Unreadable counters (a newer format, damage) start again from zero rather than stop the
    /// node: they are statistics, not data.
    fn decode(bytes: &[u8]) -> Self {
        decode_record(bytes).unwrap_or_default()
    }
}

/// A read-only look at a store: see [`DiskStore::inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub pieces: u64,
    pub used_bytes: u64,
    pub counters: NodeCounters,
    /// Every [`StateStore`] entry, in key order (the usage ledger).
    pub state: Vec<StateEntry>,
}

/// Pieces on a local disk. See the module docs for the layout and the crash-safety argument.
#[derive(Debug)]
pub struct DiskStore {
    /// The index. `None` only after a reopen failed (see [`DiskStore::index`]).
    db: RwLock<Option<DB>>,
    /// rocksdb reported a full disk. From then on it refuses every write until it is reopened,
    /// which the next operation does once there is room again.
    index_full: AtomicBool,
    root: PathBuf,
    opts: DiskStoreOptions,
    used: AtomicU64,
    count: AtomicU64,
    /// Puts and deletes of one id are serialized; different ids proceed in parallel.
    locks: Vec<Mutex<()>>,
}

/// The open index, borrowed for one operation.
struct Index<'a>(RwLockReadGuard<'a, Option<DB>>);

impl std::ops::Deref for Index<'_> {
    type Target = DB;

    fn deref(&self) -> &DB {
        match self.0.as_ref() {
            Some(db) => db,
            None => unreachable!("an Index is only made of an open index"),
        }
    }
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    match db.cf_handle(name) {
        Some(cf) => cf,
        None => unreachable!("column family {name} is created on open"),
    }
}

fn open_index(root: &Path) -> Result<DB, StoreError> {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    let cfs = [CF_PIECES, CF_INLINE, CF_STATE]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    Ok(DB::open_cf_descriptors(&db_opts, root.join("index"), cfs)?)
}

fn id_from_key(key: &[u8]) -> Option<PieceId> {
    let bytes: [u8; 32] = key.try_into().ok()?;
    Some(PieceId::from_bytes(bytes))
}

/// Every entry of `cf` whose key starts with `prefix`, in key order.
fn scan_prefix(
    db: &DB,
    cf: &rocksdb::ColumnFamily,
    prefix: &[u8],
) -> Result<Vec<StateEntry>, StoreError> {
    let mut out = Vec::new();
    let from = IteratorMode::From(prefix, rocksdb::Direction::Forward);
    for item in db.iterator_cf(cf, from) {
        let (k, v) = item?;
        if !k.starts_with(prefix) {
            break;
        }
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}

/// Bytes and pieces recorded in the index (unreadable records are skipped; reads of them report
/// them).
fn totals(db: &DB, pieces: &rocksdb::ColumnFamily) -> Result<(u64, u64), StoreError> {
    let (mut used, mut count) = (0u64, 0u64);
    for item in db.iterator_cf(pieces, IteratorMode::Start) {
        let (key, value) = item?;
        let Some(id) = id_from_key(&key) else {
            continue;
        };
        if let Ok(rec) = Record::decode(&id, &value) {
            used += rec.len;
            count += 1;
        }
    }
    Ok((used, count))
}

impl DiskStore {
    /// Opens (or creates) the store under `root`, removes unacknowledged leftovers of a crash,
    /// and counts what it holds.
    pub fn open(root: &Path, opts: DiskStoreOptions) -> Result<Self, StoreError> {
        for dir in ["index", "pieces", "tmp"] {
            fs::create_dir_all(root.join(dir))
                .map_err(|e| StoreError::io("create store directories", e))?;
        }
        let store = DiskStore {
            db: RwLock::new(Some(open_index(root)?)),
            index_full: AtomicBool::new(false),
            root: root.to_path_buf(),
            opts,
            used: AtomicU64::new(0),
            count: AtomicU64::new(0),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        };
        store.recover()?;
        Ok(store)
    }

    /// Empties `tmp/`, removes piece files that have no record, and totals the records.
    fn recover(&self) -> Result<(), StoreError> {
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(|e| StoreError::io("list tmp", e))? {
            let entry = entry.map_err(|e| StoreError::io("list tmp", e))?;
            let _ = fs::remove_file(entry.path());
        }
        let (used, count) = {
            let db = self.index()?;
            totals(&db, cf(&db, CF_PIECES))?
        };
        self.used.store(used, Ordering::SeqCst);
        self.count.store(count, Ordering::SeqCst);
        self.remove_orphan_files()
    }

    fn remove_orphan_files(&self) -> Result<(), StoreError> {
        let walk = |dir: &Path| -> Result<Vec<PathBuf>, StoreError> {
            let mut out = Vec::new();
            for entry in fs::read_dir(dir).map_err(|e| StoreError::io("list pieces", e))? {
                out.push(entry.map_err(|e| StoreError::io("list pieces", e))?.path());
            }
            Ok(out)
        };
        for a in walk(&self.root.join("pieces"))? {
            if !a.is_dir() {
                continue;
            }
            for b in walk(&a)? {
                if !b.is_dir() {
                    continue;
                }
                for file in walk(&b)? {
                    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    let Ok(id) = name.parse::<PieceId>() else {
                        tracing::warn!(path = %file.display(), "unknown file in the piece directory, left alone");
                        continue;
                    };
                    if self.record(&id)?.is_none() {
                        tracing::info!(%id, "removing a piece file with no index record (crash leftover)");
                        let _ = fs::remove_file(&file);
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the totals and the node's counters without taking the store's lock, so it works
    /// while the node runs (it sees the state as of the call).
    pub fn inspect(root: &Path) -> Result<Inspection, StoreError> {
        let cfs = [CF_PIECES, CF_INLINE, CF_STATE];
        let db = DB::open_cf_for_read_only(&Options::default(), root.join("index"), cfs, false)?;
        let pieces_cf = db
            .cf_handle(CF_PIECES)
            .ok_or(StoreError::MissingColumnFamily)?;
        let (used, count) = totals(&db, pieces_cf)?;
        let state_cf = db
            .cf_handle(CF_STATE)
            .ok_or(StoreError::MissingColumnFamily)?;
        let counters = match db.get_cf(state_cf, COUNTERS_KEY)? {
            Some(bytes) => NodeCounters::decode(&bytes),
            None => NodeCounters::default(),
        };
        Ok(Inspection {
            pieces: count,
            used_bytes: used,
            counters,
            state: scan_prefix(&db, state_cf, b"")?
                .into_iter()
                .filter(|(k, _)| k.as_slice() != COUNTERS_KEY)
                .collect(),
        })
    }

    /// The node's persisted counters.
    pub fn counters(&self) -> Result<NodeCounters, StoreError> {
        let db = self.index()?;
        Ok(match db.get_cf(cf(&db, CF_STATE), COUNTERS_KEY)? {
            Some(bytes) => NodeCounters::decode(&bytes),
            None => NodeCounters::default(),
        })
    }

    /// Persists the node's counters.
    pub fn save_counters(&self, counters: &NodeCounters) -> Result<(), StoreError> {
        let db = self.index()?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&db, CF_STATE), COUNTERS_KEY, counters.encode());
        self.write(&db, batch)
    }

    /// The index for one operation; first reopened if a full disk stopped it and there is room
    /// again. Never called while the same thread holds an `Index` (a reopen waits for them).
    fn index(&self) -> Result<Index<'_>, StoreError> {
        if self.index_full.load(Ordering::SeqCst)
            && disk_free(&self.root).is_some_and(|free| free >= DISK_RESERVE)
        {
            self.reopen();
        }
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            return Err(StoreError::IndexClosed);
        }
        Ok(Index(guard))
    }

    /// Closes and opens the index again: the way out of rocksdb's stopped state after a full
    /// disk. Waits for the operations under way.
    fn reopen(&self) {
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if !self.index_full.swap(false, Ordering::SeqCst) {
            return; // another operation reopened it meanwhile
        }
        *db = None; // rocksdb allows one open instance per directory
        match open_index(&self.root) {
            Ok(new) => {
                tracing::info!("piece index reopened after a full disk");
                *db = Some(new);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not reopen the piece index; retrying on the next request");
                self.index_full.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Writes `batch` durably (per [`DiskStoreOptions::sync`]), noting a full disk.
    fn write(&self, db: &DB, batch: WriteBatch) -> Result<(), StoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(self.opts.sync);
        db.write_opt(batch, &w).map_err(|e| {
            let e = StoreError::from(e);
            if matches!(e, StoreError::DiskFull) {
                self.index_full.store(true, Ordering::SeqCst);
            }
            e
        })
    }

    fn lock(&self, id: &PieceId) -> MutexGuard<'_, ()> {
        let stripe = usize::from(id.as_bytes()[0]) % LOCK_STRIPES;
        // A poisoned stripe only means another put panicked; the index is still consistent.
        self.locks[stripe].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: &PieceId) -> PathBuf {
        let hex = id.to_string();
        self.root
            .join("pieces")
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(hex)
    }

    fn record(&self, id: &PieceId) -> Result<Option<Record>, StoreError> {
        let db = self.index()?;
        let found = db.get_pinned_cf(cf(&db, CF_PIECES), id.as_bytes())?;
        match found {
            Some(bytes) => Record::decode(id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Reserves `len` bytes of capacity, or says how much is free.
    fn reserve(&self, len: u64) -> Result<(), StoreError> {
        let capacity = self.opts.capacity;
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(len).filter(|&n| n <= capacity)
            })
            .map(|_| ())
            .map_err(|used| StoreError::CapacityFull {
                needed: len,
                free: capacity.saturating_sub(used),
                capacity,
            })
    }

    fn write_file(&self, id: &PieceId, data: &[u8]) -> Result<(), StoreError> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{id}.{}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| StoreError::io("create piece file", e))?;
            f.write_all(data)
                .map_err(|e| StoreError::io("write piece file", e))?;
            if self.opts.sync {
                f.sync_all()
                    .map_err(|e| StoreError::io("sync piece file", e))?;
            }
            let dest = self.path(id);
            let dir = dest.parent().unwrap_or(&self.root);
            fs::create_dir_all(dir).map_err(|e| StoreError::io("create piece directory", e))?;
            fs::rename(&tmp, &dest).map_err(|e| StoreError::io("move piece file into place", e))?;
            if self.opts.sync {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| StoreError::io("sync piece directory", e))?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Reads `range` of a stored piece's bytes (no verification).
    fn read(&self, id: &PieceId, rec: &Record, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        if rec.inline {
            let db = self.index()?;
            let bytes = db.get_pinned_cf(cf(&db, CF_INLINE), id.as_bytes())?.ok_or(
                StoreError::Corrupt {
                    id: *id,
                    rot: Rot::FileMissing,
                },
            )?;
            if bytes.len() as u64 != rec.len {
                return Err(StoreError::Corrupt {
                    id: *id,
                    rot: Rot::Length {
                        expected: rec.len,
                        found: bytes.len() as u64,
                    },
                });
            }
            return Ok(bytes[range.start as usize..range.end as usize].to_vec());
        }
        let mut f = match File::open(self.path(id)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Corrupt {
                    id: *id,
                    rot: Rot::FileMissing,
                })
            }
            Err(e) => return Err(StoreError::io("open piece file", e)),
        };
        let found = f
            .metadata()
            .map_err(|e| StoreError::io("stat piece file", e))?
            .len();
        if found != rec.len {
            return Err(StoreError::Corrupt {
                id: *id,
                rot: Rot::Length {
                    expected: rec.len,
                    found,
                },
            });
        }
        f.seek(SeekFrom::Start(range.start))
            .map_err(|e| StoreError::io("seek piece file", e))?;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        f.read_exact(&mut buf)
            .map_err(|e| StoreError::io("read piece file", e))?;
        Ok(buf)
    }

    fn outboard(&self, id: &PieceId, rec: &Record) -> Result<Outboard, StoreError> {
        Outboard::from_bytes(rec.len, &rec.outboard).map_err(|_| StoreError::BadRecord {
            id: *id,
            rot: Rot::Outboard,
        })
    }
}

impl PieceStore for DiskStore {
    fn put(&self, id: PieceId, data: &[u8]) -> Result<PutOutcome, StoreError> {
        let outboard = check_incoming(&id, data)?;
        let _guard = self.lock(&id);
        if self.record(&id)?.is_some() {
            return Ok(PutOutcome::AlreadyStored);
        }
        let len = data.len() as u64;
        if disk_free(&self.root).is_some_and(|free| free < len.saturating_add(DISK_RESERVE)) {
            return Err(StoreError::DiskFull);
        }
        self.reserve(len)?;
        let now = now_ms();
        let rec = Record {
            len,
            stored_ms: now,
            verified_ms: now,
            inline: data.len() <= self.opts.inline_max,
            outboard: outboard.to_bytes(),
        };
        let result = (|| {
            let db = self.index()?;
            let mut batch = WriteBatch::default();
            if rec.inline {
                batch.put_cf(cf(&db, CF_INLINE), id.as_bytes(), data);
            } else {
                self.write_file(&id, data)?;
            }
            batch.put_cf(cf(&db, CF_PIECES), id.as_bytes(), rec.encode());
            self.write(&db, batch)
        })();
        match result {
            Ok(()) => {
                self.count.fetch_add(1, Ordering::SeqCst);
                Ok(PutOutcome::Stored)
            }
            Err(e) => {
                self.used.fetch_sub(len, Ordering::SeqCst);
                if !rec.inline {
                    let _ = fs::remove_file(self.path(&id));
                }
                Err(e)
            }
        }
    }

    fn get(&self, id: &PieceId, range: Option<Range<u64>>) -> Result<Vec<u8>, StoreError> {
        let rec = self.record(id)?.ok_or(StoreError::NotFound { id: *id })?;
        match range {
            None => {
                let bytes = self.read(id, &rec, 0..rec.len)?;
                id.verify(&bytes).map_err(|_| StoreError::Corrupt {
                    id: *id,
                    rot: Rot::Hash,
                })?;
                Ok(bytes)
            }
            Some(range) => {
                check_range(id, rec.len, &range)?;
                let outboard = self.outboard(id, &rec)?;
                let span = outboard.covering_blocks(range.clone());
                let bytes = self.read(id, &rec, span.clone())?;
                outboard
                    .verify_span(id, span.start, &bytes)
                    .map_err(|e| StoreError::corrupt_span(*id, e))?;
                let from = (range.start - span.start) as usize;
                Ok(bytes[from..from + (range.end - range.start) as usize].to_vec())
            }
        }
    }

    fn delete(&self, id: &PieceId) -> Result<bool, StoreError> {
        let _guard = self.lock(id);
        let Some(rec) = self.record(id)? else {
            return Ok(false);
        };
        {
            let db = self.index()?;
            let mut batch = WriteBatch::default();
            batch.delete_cf(cf(&db, CF_PIECES), id.as_bytes());
            if rec.inline {
                batch.delete_cf(cf(&db, CF_INLINE), id.as_bytes());
            }
            self.write(&db, batch)?;
        }
        if !rec.inline {
            match fs::remove_file(self.path(id)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // The record is gone; the next open removes the orphan file.
                Err(e) => {
                    tracing::warn!(%id, error = %e, "could not remove a deleted piece's file")
                }
            }
        }
        self.used.fetch_sub(rec.len, Ordering::SeqCst);
        self.count.fetch_sub(1, Ordering::SeqCst);
        Ok(true)
    }

    fn info(&self, id: &PieceId) -> Result<Option<PieceInfo>, StoreError> {
        Ok(self.record(id)?.map(|r| r.info(*id)))
    }

    fn list(&self, after: Option<PieceId>, limit: usize) -> Result<Vec<PieceInfo>, StoreError> {
        let start = after.map(|a| *a.as_bytes());
        let mode = match &start {
            Some(key) => IteratorMode::From(key, rocksdb::Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        let db = self.index()?;
        for item in db.iterator_cf(cf(&db, CF_PIECES), mode) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            let Some(id) = id_from_key(&key) else {
                continue;
            };
            if Some(id) == after {
                continue;
            }
            out.push(Record::decode(&id, &value)?.info(id));
        }
        Ok(out)
    }

    fn prove(&self, challenge: &Challenge) -> Result<Proof, StoreError> {
        let id = challenge.piece_id();
        let rec = self.record(&id)?.ok_or(StoreError::NotFound { id })?;
        let outboard = self.outboard(&id, &rec)?;
        outboard
            .prove(challenge, |range| self.read(&id, &rec, range))?
            .map_err(|source| StoreError::Challenge { id, source })
    }

    fn scrub(&self, id: &PieceId, now: u64) -> Result<ScrubResult, StoreError> {
        let Some(mut rec) = self.record(id)? else {
            return Ok(ScrubResult::Missing);
        };
        match self.read(id, &rec, 0..rec.len) {
            Ok(bytes) if id.verify(&bytes).is_ok() => {
                let _guard = self.lock(id);
                // Still the same piece (not deleted meanwhile)? Then record the check.
                if self.record(id)?.is_some() {
                    rec.verified_ms = now;
                    let db = self.index()?;
                    let mut batch = WriteBatch::default();
                    batch.put_cf(cf(&db, CF_PIECES), id.as_bytes(), rec.encode());
                    self.write(&db, batch)?;
                }
                Ok(ScrubResult::Intact)
            }
            Ok(_) => Ok(ScrubResult::Corrupt(Rot::Hash)),
            Err(StoreError::Corrupt { rot, .. }) => Ok(ScrubResult::Corrupt(rot)),
            Err(e) => Err(e),
        }
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            pieces: self.count.load(Ordering::SeqCst),
            used_bytes: self.used.load(Ordering::SeqCst),
            capacity_bytes: self.opts.capacity,
        }
    }
}

impl StateStore for DiskStore {
    fn load_state(&self, prefix: &[u8]) -> Result<Vec<StateEntry>, StoreError> {
        let db = self.index()?;
        scan_prefix(&db, cf(&db, CF_STATE), prefix)
    }

    fn save_state(&self, entries: &[StateEntry]) -> Result<(), StoreError> {
        let db = self.index()?;
        let mut batch = WriteBatch::default();
        for (k, v) in entries {
            batch.put_cf(cf(&db, CF_STATE), k, v);
        }
        self.write(&db, batch)
    }
}
